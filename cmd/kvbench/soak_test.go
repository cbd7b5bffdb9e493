package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSoakRejectsBadFlags(t *testing.T) {
	cases := map[string][]string{
		"unknown flag":        {"-nosuchflag"},
		"zero duration":       {"-duration", "0s"},
		"negative interval":   {"-interval", "-1s"},
		"interval too long":   {"-duration", "5s", "-interval", "5s"},
		"unknown failover":    {"-failovers", "clusterx,kill"},
		"no failover kind":    {"-failovers", ","},
		"push planned":        {"-failovers", "clusterx,push"},
		"unknown between":     {"-between", "pause,kill"},
		"between on 1 shard":  {"-shards", "1", "-between", "pause"},
		"negative planned":    {"-planned", "-1"},
		"benchmark clients":   {"-redis-benchmark", "-benchmark-clients", "0"},
		"zero clients":        {"-clients", "0"},
		"zero keys":           {"-keys", "0"},
		"zero pipeline":       {"-pipeline", "0"},
		"zero shards":         {"-shards", "0"},
		"negative delay":      {"-repl-delay", "-1ms"},
		"zero sample":         {"-sample", "0s"},
		"seed not a number":   {"-seed", "x"},
		"positional argument": {"extra"},
	}
	for name, args := range cases {
		code, stdout, stderr := runKvbench(t, append([]string{"soak"}, args...)...)
		assert.Equal(t, exitUsage, code, name)
		assert.Empty(t, stdout, name)
		assert.NotEmpty(t, stderr, name)
	}
	code, _, stderr := runKvbench(t, "soak", "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stderr, "-repl-delay")
	assert.Contains(t, stderr, "-proxy-reports")
	assert.Contains(t, stderr, "kvbench soak -failovers clusterx,controller -between pause,push -planned 20")
}

// The subcommand end to end, briefly: bench/soak's own test runs the soak
// long enough to judge it.
func TestSoakEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds kvproxy and runs a soak; runs without -short")
	}
	code, stdout, stderr := runKvbench(t, "soak", "-kvproxy", buildKvproxy(t), "-duration", "1m", "-interval", "1s", "-sample", "2s",
		"-clients", "4", "-keys", "100", "-failovers", "pause,clusterx", "-between", "controller,push", "-planned", "2",
		"-failover-timeout", "2s")
	require.Equal(t, exitOK, code, "stdout: %s\nstderr: %s", stdout, stderr)
	assert.Contains(t, stdout, "PASS: 0 errors, 0 lost acknowledged writes, 0 stale reads, 0 duplicated writes; 3 of 3 failovers done; ")
	assert.Contains(t, stdout, "keys read back; controller, nodes and proxy agree")
	assert.Contains(t, stdout, "failovers: clusterx 1 (1 done")
	assert.Contains(t, stdout, "controller 1 (1 done")
	assert.Contains(t, stdout, "pause 1 (1 done")
	assert.Contains(t, stderr, "failover 0 at 0:01: pause of shard 0 (planned)")
	assert.Contains(t, stderr, "failover 1 at 0:02: controller of shard 1 (between)")
	assert.Contains(t, stderr, "soak 0:02  rss ")
}
