package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

func TestProxyRejectsBadFlags(t *testing.T) {
	cases := map[string][]string{
		"unknown flag":           {"-nosuchflag"},
		"zero rounds":            {"-rounds", "0"},
		"zero clients":           {"-clients", "0"},
		"negative keyspace":      {"-keyspace", "-1"},
		"pipeline not int":       {"-pipelines", "16,a"},
		"requests not int":       {"-requests", "x,1"},
		"requests per pipeline":  {"-requests", "1000"},
		"empty tests":            {"-tests", ","},
		"goal without colon":     {"-vs-twemproxy", "16"},
		"goal pipeline not int":  {"-vs-twemproxy", "x:1.3"},
		"goal ratio not number":  {"-vs-direct", "1:y"},
		"goal at unmeasured -P":  {"-vs-direct", "8:0.6"},
		"goal ratio zero":        {"-vs-direct", "1:0"},
		"zero timeout":           {"-timeout", "0s"},
		"positional argument":    {"extra"},
		"pipelines, no requests": {"-pipelines", "16,8,1"},
	}
	assertUsageErrors(t, "proxy", cases)
	code, _, stderr := runKvbench(t, "proxy", "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stderr, "-vs-twemproxy")
	assert.Contains(t, stderr, `(default "16:1.3")`)
	assert.Contains(t, stderr, `(default "1:0.6")`)

	code, stdout, _ := runKvbench(t, "help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout, "proxy ")
}

func TestParseGoal(t *testing.T) {
	g, ok, err := parseGoal(loadgen.TargetTwemproxy, " 16:1.3 ")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, loadgen.ProxyGoal{Peer: loadgen.TargetTwemproxy, Pipeline: 16, MinRatio: 1.3}, g)
	assert.Equal(t, "16:1.3", formatGoal(g))
	for _, none := range []string{"", "none"} {
		_, ok, err := parseGoal(loadgen.TargetDirect, none)
		assert.NoError(t, err, none)
		assert.False(t, ok, none)
	}
}

func TestPrintProxyReport(t *testing.T) {
	set, pcpu, rcpu := loadgen.ThroughputMetric("set", 16), loadgen.ProxyCPUMetric(16), loadgen.ServerCPUMetric(16)
	goal := loadgen.ProxyGoal{Peer: loadgen.TargetTwemproxy, Pipeline: 16, MinRatio: 1.3}
	report := &loadgen.ProxyReport{
		Config: loadgen.ProxyConfig{Rounds: 3, Clients: 50, Keyspace: 10, Pipelines: []int{16},
			Requests: []int{1000}, Tests: []string{"set"}, Goals: []loadgen.ProxyGoal{goal}},
		Complete: true,
		Comparison: &loadgen.Comparison{
			Targets:  []string{loadgen.TargetDirect, loadgen.TargetKvproxy, loadgen.TargetTwemproxy},
			Baseline: loadgen.TargetDirect,
			Medians: map[string]loadgen.Metrics{
				loadgen.TargetDirect:    {set: 400000, pcpu: 0, rcpu: 2},
				loadgen.TargetKvproxy:   {set: 300000, pcpu: 3, rcpu: 1},
				loadgen.TargetTwemproxy: {set: 200000, pcpu: 8, rcpu: 1.5},
			},
			Ratios: map[string]loadgen.Metrics{
				loadgen.TargetKvproxy:   {set: 0.75, rcpu: 0.5},
				loadgen.TargetTwemproxy: {set: 0.5, rcpu: 0.75},
			},
		},
		Throughput:  []string{set},
		CPU:         []string{pcpu, rcpu},
		VsTwemproxy: loadgen.Metrics{set: 1.5, pcpu: 0.375, rcpu: 2.0 / 3},
		Goals:       []loadgen.GoalResult{{Goal: goal, Worst: set, Ratio: 1.5}},
	}
	var out bytes.Buffer
	printProxyReport(&out, report)
	assert.Equal(t, strings.Join([]string{
		"kvproxy vs redis-server direct vs twemproxy: redis-benchmark -c 50 -r 10 (-n 1000 at -P 16), medians of 3 interleaved rounds",
		"metric                  direct  kvproxy  twemproxy  kvproxy/direct  twemproxy/direct  kvproxy/twemproxy",
		"SET -P 16 req/s         400000  300000   200000     0.75x           0.50x             1.50x",
		"-P 16 proxy cpu us/req  -       3.00     8.00       -               -                 0.38x",
		"-P 16 redis cpu us/req  2.00    1.00     1.50       0.50x           0.75x             0.67x",
		"verdict: PASS: at -P 16 kvproxy reaches 1.50x twemproxy at worst (SET -P 16 req/s), target 1.30x",
		"",
	}, "\n"), out.String())

	report.Comparison.Samples = map[string]map[string][]float64{
		loadgen.TargetDirect:    {set: {400000, 390000}, pcpu: {0, 0}, rcpu: {2, 2.5}},
		loadgen.TargetKvproxy:   {set: {300000, 310000}, pcpu: {3, 3.25}, rcpu: {1, 1}},
		loadgen.TargetTwemproxy: {set: {200000, 200001}, pcpu: {8, 8}, rcpu: {1.5, 1.5}},
	}
	out.Reset()
	printProxySamples(&out, report)
	assert.Equal(t, strings.Join([]string{
		"samples, in round order:",
		"SET -P 16 req/s         direct     400000  390000",
		"SET -P 16 req/s         kvproxy    300000  310000",
		"SET -P 16 req/s         twemproxy  200000  200001",
		"-P 16 proxy cpu us/req  kvproxy    3.00    3.25",
		"-P 16 proxy cpu us/req  twemproxy  8.00    8.00",
		"-P 16 redis cpu us/req  direct     2.00    2.50",
		"-P 16 redis cpu us/req  kvproxy    1.00    1.00",
		"-P 16 redis cpu us/req  twemproxy  1.50    1.50",
		"",
	}, "\n"), out.String())
}

func TestProxyEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	requireBenchBinaries(t)
	kvproxy := buildKvproxy(t)
	dir := t.TempDir()
	jsonPath, csvPath, pngPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.png")
	// A second kvproxy stands in for a peer proxy the user names.
	code, stdout, stderr := runKvbench(t, "proxy", "-kvproxy", kvproxy, "-rounds", "1", "-clients", "10",
		"-keyspace", "1000", "-pipelines", "4,1", "-requests", "4000,2000", "-vs-twemproxy", "4:1.3", "-samples",
		"-peer", "other="+kvproxy+":--listen {addr} --seeds {seeds}",
		"-json", jsonPath, "-csv", csvPath, "-png", pngPath)
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	for _, want := range []string{"SET -P 4 req/s", "GET -P 1 req/s", "SET -P 4 p50 ms", "GET -P 1 p99 ms",
		"-P 4 proxy cpu us/req", "all -P proxy cpu us/req", "-P 1 idle cpu %", "-P 4 machine cpu us/req", "other/direct", "\nverdict: ", "at -P 4 kvproxy reaches", "at -P 1 kvproxy reaches",
		"\nsamples, in round order:\n", "\nload average (1 min) on "} {
		assert.Contains(t, stdout, want)
	}
	for _, target := range []string{"direct", "kvproxy", "twemproxy", "other"} {
		assert.Contains(t, stderr, "kvbench: round 1/1 "+target+": SET -P 4 req/s ")
	}
	data, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	doc := requireJSONReport(t, data, "proxy", true)
	assert.Equal(t, []string{"direct", "kvproxy", "twemproxy", "other"}, doc.Targets)
	assert.Len(t, doc.Verdicts, 2)
	data, err = os.ReadFile(csvPath)
	require.NoError(t, err)
	// 4 targets x (4 throughput + 8 latency + 2 redis cpu + 2 idle cpu +
	// 2 machine cpu) + 3 proxies x (2 proxy cpu + the whole run's), and the
	// header.
	assert.Len(t, requireCSVReport(t, data), 4*18+3*3+1)
	requirePNG(t, pngPath)
}

func TestProxyStopsOnInterruptWithAPartialReport(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	requireBenchBinaries(t)
	kvproxy := buildKvproxy(t)
	code, stdout, stderr := runInterrupted(t, "proxy", "-kvproxy", kvproxy, "-rounds", "3", "-clients", "10",
		"-keyspace", "1000", "-pipelines", "1", "-requests", "2000", "-vs-twemproxy", "none", "-json", "-")
	assert.Equal(t, exitError, code, "stderr: %s", stderr)
	assert.Contains(t, stderr, "stopped early")
	doc := requireJSONReport(t, []byte(stdout), "proxy", false)
	assert.Equal(t, 1, doc.Rounds[loadgen.TargetDirect])
	assert.Contains(t, doc.Error, "context canceled")
}
