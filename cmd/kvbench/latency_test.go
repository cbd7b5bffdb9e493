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

func TestLatencyRejectsBadFlags(t *testing.T) {
	cases := map[string][]string{
		"unknown flag":        {"-nosuchflag"},
		"zero rounds":         {"-rounds", "0"},
		"zero rate":           {"-rate", "0"},
		"nothing scheduled":   {"-rate", "1", "-duration", "10ms"},
		"zero conns":          {"-conns", "0"},
		"zero keyspace":       {"-keyspace", "0"},
		"negative datasize":   {"-datasize", "-1"},
		"zero timeout":        {"-timeout", "0s"},
		"peer without port":   {"-peer", "x=/bin/true:--seeds {seeds}"},
		"peer named kvproxy":  {"-peer", "kvproxy=/bin/true:{port}"},
		"peer without binary": {"-peer", "x=:{port}"},
		"peer twice":          {"-peer", "x=/bin/true:{port}", "-peer", "x=/bin/true:{addr}"},
		"both to stdout":      {"-json", "-", "-csv", "-"},
		"png to stdout":       {"-png", "-"},
		"positional argument": {"extra"},
	}
	assertUsageErrors(t, "latency", cases)
	code, _, stderr := runKvbench(t, "latency", "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stderr, "-rate")
	assert.Contains(t, stderr, "coordinated omission")
}

func TestPrintLatencyReport(t *testing.T) {
	targets := []string{loadgen.TargetDirect, loadgen.TargetKvproxy}
	medians := map[string]loadgen.Metrics{}
	samples := map[string]map[string][]float64{}
	for i, target := range targets {
		medians[target] = loadgen.Metrics{}
		samples[target] = map[string][]float64{}
		for j, name := range loadgen.LatencyMetrics {
			v := float64((i + 1) * (j + 1))
			medians[target][name] = v
			samples[target][name] = []float64{v}
		}
	}
	report := &loadgen.LatencyReport{
		Config: loadgen.LatencyConfig{Rounds: 3, Rate: 1000, Duration: 2e9, Conns: 4, Keyspace: 10, DataSize: 3},
		Comparison: &loadgen.Comparison{Targets: targets, Baseline: loadgen.TargetDirect, Medians: medians,
			Samples: samples, Ratios: map[string]loadgen.Metrics{loadgen.TargetKvproxy: {loadgen.LatencyP50: 2}}},
	}
	var out bytes.Buffer
	printLatencyReport(&out, report)
	assert.Equal(t, strings.Join([]string{
		"open-loop latency at 1000 requests/s offered (SET/GET, 4 connections, 2s per run, -r 10, -d 3), medians of 3 interleaved rounds",
		"STOPPED EARLY: medians over the rounds completed (direct 1, kvproxy 1)",
		"metric          direct  kvproxy  kvproxy/direct",
		"p50 ms          1.000   2.000    2.00x",
		"p99 ms          2.000   4.000    -",
		"p999 ms         3.000   6.000    -",
		"max ms          4.000   8.000    -",
		"achieved req/s  5       10       -",
		"error replies   6       12       -",
		"unanswered      7       14       -",
		"",
	}, "\n"), out.String())
}

func TestLatencyEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	requireBenchBinaries(t)
	kvproxy := buildKvproxy(t)
	dir := t.TempDir()
	csvPath, pngPath := filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.png")
	code, stdout, stderr := runKvbench(t, "latency", "-kvproxy", kvproxy, "-rounds", "1", "-rate", "500",
		"-duration", "300ms", "-conns", "2", "-keyspace", "100", "-json", "-", "-csv", csvPath, "-png", pngPath)
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	for _, target := range []string{"direct", "kvproxy", "twemproxy"} {
		assert.Contains(t, stderr, "kvbench: round 1/1 "+target+": p50 ms ")
	}
	doc := requireJSONReport(t, []byte(stdout), "latency", true)
	assert.Equal(t, []string{"direct", "kvproxy", "twemproxy"}, doc.Targets)
	data, err := os.ReadFile(csvPath)
	require.NoError(t, err)
	assert.Len(t, requireCSVReport(t, data), 3*len(loadgen.LatencyMetrics)+1)
	requirePNG(t, pngPath)
}

func TestLatencyStopsOnInterruptWithAPartialReport(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	requireBenchBinaries(t)
	kvproxy := buildKvproxy(t)
	code, stdout, stderr := runInterrupted(t, "latency", "-kvproxy", kvproxy, "-rounds", "3", "-rate", "500",
		"-duration", "300ms", "-conns", "2", "-keyspace", "100")
	assert.Equal(t, exitError, code, "stderr: %s", stderr)
	assert.Contains(t, stderr, "stopped early")
	assert.Contains(t, stdout, "STOPPED EARLY: medians over the rounds completed (direct 1, kvproxy 0, twemproxy 0)")
}
