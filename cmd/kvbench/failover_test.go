package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/failbench"
	"kvproxy/bench/loadgen"
)

func TestFailoverRejectsBadFlags(t *testing.T) {
	cases := map[string][]string{
		"unknown flag":         {"-nosuchflag"},
		"unknown backend":      {"-backend", "mongo"},
		"unknown trigger":      {"-trigger", "reboot"},
		"trigger vs backend":   {"-backend", "redis", "-trigger", "pause"},
		"target without seeds": {"-target", "127.0.0.1:1"},
		"seeds without target": {"-cluster", "127.0.0.1:1"},
		"zero repeat":          {"-repeat", "0"},
		"reads over 1":         {"-reads", "2"},
		"zero clients":         {"-clients", "0"},
		"zero value size":      {"-value-size", "0"},
		"positional argument":  {"extra"},
	}
	for name, args := range cases {
		code, stdout, stderr := runKvbench(t, append([]string{"failover"}, args...)...)
		assert.Equal(t, exitUsage, code, name)
		assert.Empty(t, stdout, name)
		assert.NotEmpty(t, stderr, name)
	}
	code, _, stderr := runKvbench(t, "failover", "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stderr, "-trigger")
	assert.Contains(t, stderr, "-png")
}

// A short run end to end: it completes and writes a report, JSON and a
// PNG that decode. What it measured is not judged here: the machine is
// shared and small.
func TestFailoverEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds kvproxy and runs a failover; runs without -short")
	}
	loadgen.RequireBinary(t, "redis-benchmark")
	dir := t.TempDir()
	jsonPath, pngPath := filepath.Join(dir, "failover.json"), filepath.Join(dir, "failover.png")
	code, stdout, stderr := runKvbench(t, "failover", "-kvproxy", buildKvproxy(t), "-at", "1s", "-tail", "1s", "-clients", "2",
		"-benchmark-clients", "4", "-keys", "100", "-json", jsonPath, "-png", pngPath)
	require.Contains(t, []int{exitOK, exitError}, code, "stdout: %s\nstderr: %s", stdout, stderr)
	assert.Contains(t, stdout, "kvbench failover: kvsim, trigger proxied")
	assert.Contains(t, stdout, "failover 0 at ")

	raw, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var report failbench.Report
	require.NoError(t, json.Unmarshal(raw, &report), "%s", raw)
	require.Len(t, report.Failovers, 1)
	assert.NotEmpty(t, report.Failovers[0].Phases)
	assert.Len(t, report.Latencies, 9)
	assert.NotEmpty(t, report.Timeline)
	assert.NotNil(t, report.Benchmark)

	f, err := os.Open(pngPath)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Positive(t, img.Bounds().Dx())
}

// Cancelling a run (Ctrl-C) in the middle of a failover ends it with a
// partial report and no child process left: kvproxy and redis-benchmark
// are killed.
func TestFailoverInterruptedLeavesNoChild(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds kvproxy and runs a failover; runs without -short")
	}
	loadgen.RequireBinary(t, "redis-benchmark")
	kvproxy := buildKvproxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	errOut := &syncBuffer{}
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"failover", "-kvproxy", kvproxy, "-at", "1s", "-tail", "30s", "-clients", "2", "-benchmark-clients", "4",
			"-keys", "100", "-repl-delay", "200ms"}, &out, errOut)
	}()
	// Progress lines come every second; the first one "during" the
	// failover (its check_slave phase alone lasts longer) is the moment.
	for !strings.Contains(errOut.String(), " failover 0 ") {
		select {
		case code := <-done:
			t.Fatalf("the run ended (%d) before the failover: %s", code, errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	require.NotEmpty(t, childPids(t), "the run has children (kvproxy, redis-benchmark) while it runs")
	cancel()
	code := <-done
	assert.Contains(t, []int{exitOK, exitError}, code, "stderr: %s", errOut.String())
	assert.Contains(t, out.String(), "INTERRUPTED (partial report)")
	assert.Contains(t, out.String(), "failover 0 at ")
	assert.Empty(t, childPids(t), "processes the run started are still there")
}

// childPids are the live processes whose parent is this one.
func childPids(t *testing.T) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(t, err)
	me := os.Getpid()
	var pids []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		rest := string(b[bytes.LastIndexByte(b, ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == me {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			pids = append(pids, pid)
		}
	}
	return pids
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
