package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

func runKvbench(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSubcommandDispatch(t *testing.T) {
	code, _, stderr := runKvbench(t)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "usage: kvbench")

	code, stdout, _ := runKvbench(t, "help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout, "kvsim-vs-redis")

	code, _, stderr = runKvbench(t, "no-such-thing")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, `unknown subcommand "no-such-thing"`)
}

func TestKvsimVsRedisRejectsBadFlags(t *testing.T) {
	cases := map[string][]string{
		"unknown flag":        {"-nosuchflag"},
		"not a number":        {"-rounds", "x"},
		"zero rounds":         {"-rounds", "0"},
		"zero clients":        {"-clients", "0"},
		"zero requests":       {"-requests", "0"},
		"negative keyspace":   {"-keyspace", "-1"},
		"empty pipelines":     {"-pipelines", ""},
		"pipeline not int":    {"-pipelines", "16,a"},
		"pipeline zero":       {"-pipelines", "0"},
		"empty tests":         {"-tests", " , "},
		"zero target":         {"-target", "0"},
		"zero timeout":        {"-timeout", "0s"},
		"positional argument": {"extra"},
	}
	for name, args := range cases {
		code, stdout, stderr := runKvbench(t, append([]string{"kvsim-vs-redis"}, args...)...)
		assert.Equal(t, exitUsage, code, name)
		assert.Empty(t, stdout, name)
		assert.NotEmpty(t, stderr, name)
	}
	code, _, stderr := runKvbench(t, "kvsim-vs-redis", "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stderr, "-pipelines")
}

func TestParseInts(t *testing.T) {
	got, err := parseInts(" 16, 1 ,4")
	require.NoError(t, err)
	assert.Equal(t, []int{16, 1, 4}, got)
	for _, bad := range []string{"", ",", "x", "-1", "0", "1.5"} {
		_, err := parseInts(bad)
		assert.Error(t, err, bad)
	}
}

func TestPrintReport(t *testing.T) {
	set, cpu := loadgen.ThroughputMetric("set", 16), loadgen.CPUMetric(16)
	report := &loadgen.KvsimVsRedisReport{
		Config: loadgen.KvsimVsRedisConfig{Rounds: 3, Clients: 50, Requests: 1000, Keyspace: 10,
			Pipelines: []int{16}, Tests: []string{"set"}, Target: 0.5},
		Comparison: &loadgen.Comparison{
			Medians: map[string]loadgen.Metrics{
				loadgen.TargetRedis: {set: 400000, cpu: 1.5},
				loadgen.TargetKvsim: {set: 300000, cpu: 0},
			},
			Ratios: map[string]loadgen.Metrics{loadgen.TargetKvsim: {set: 0.75}},
		},
		Throughput: []string{set},
		CPU:        []string{cpu},
		Worst:      set,
		WorstRatio: 0.75,
	}
	var out bytes.Buffer
	printReport(&out, report)
	assert.Equal(t, strings.Join([]string{
		"kvsim vs redis-server: redis-benchmark -c 50 -n 1000 -r 10, medians of 3 interleaved rounds",
		"metric            redis   kvsim   kvsim/redis",
		"SET -P 16 req/s   400000  300000  0.75x",
		"-P 16 cpu us/req  1.50    0.00    -",
		"verdict: PASS: kvsim reaches 0.75x redis-server at worst (SET -P 16 req/s), target 0.50x",
		"",
	}, "\n"), out.String())
}

func TestKvsimVsRedisEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	loadgen.RequireBinary(t, "redis-server")
	loadgen.RequireBinary(t, "redis-benchmark")
	code, stdout, stderr := runKvbench(t, "kvsim-vs-redis", "-rounds", "1", "-clients", "10",
		"-requests", "2000", "-keyspace", "1000", "-pipelines", "4")
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	assert.Contains(t, stdout, "SET -P 4 req/s")
	assert.Contains(t, stdout, "GET -P 4 req/s")
	assert.Contains(t, stdout, "\nverdict: ")
}
