package soak

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

// A short soak keeps the long one honest: mixed load through a kvproxy
// process while failovers of both kinds rotate over every shard and back
// sees no error, no stale read, no lost or duplicated write.
func TestSoakThroughPlannedFailovers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds kvproxy and runs for 20 s; runs without -short")
	}
	cfg := DefaultConfig()
	cfg.Duration = 20 * time.Second
	cfg.FailoverInterval = 2 * time.Second
	cfg.FailoverTimeout = 2 * time.Second
	cfg.SampleInterval = 2 * time.Second
	cfg.Keys = 500
	var progress bytes.Buffer // Run writes to it one write at a time
	cfg.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	report, err := Run(ctx, cfg)
	require.NoError(t, err, "progress:\n%s", progress.String())
	var out bytes.Buffer
	report.Print(&out)
	t.Logf("progress:\n%s\nreport:\n%s", progress.String(), out.String())

	assert.False(t, report.Interrupted)
	assert.Empty(t, report.Errors, "no client saw an error")
	assert.Empty(t, report.Anomalies, "every read showed the acknowledged writes")
	assert.False(t, report.Failed())

	okByShard, okByKind := map[int]int{}, map[FailoverKind]int{}
	for _, f := range report.Failovers {
		if f.Err == nil {
			okByShard[f.Shard]++
			okByKind[f.Kind]++
		}
	}
	assert.GreaterOrEqual(t, report.FailoversOK(), 6)
	for shard := range cfg.Shards {
		assert.GreaterOrEqual(t, okByShard[shard], 2, "shard %d failed over and back", shard)
	}
	assert.GreaterOrEqual(t, okByKind[FailoverClusterx], 2)
	assert.GreaterOrEqual(t, okByKind[FailoverPause], 2)

	for _, op := range []Op{OpSet, OpGet, OpMSet, OpMGet, OpIncr, OpPipeline, OpExec, OpPublish, OpVerify} {
		assert.Positive(t, report.Requests[op], "%s requests", op)
	}
	assert.Positive(t, report.PubSub.Received)
	assert.Greater(t, report.Verified, cfg.Clients*cfg.Keys/2, "the final check read most keys")
	counters := map[string]string{}
	for _, c := range report.ProxyCounters {
		counters[c.Name] = c.Value
	}
	assert.NotEqual(t, "0", counters["held_total"], "the proxy held writes through the CLUSTERX failovers")
	assert.Equal(t, "0", counters["expired_total"])

	require.GreaterOrEqual(t, len(report.Samples), 5)
	for _, s := range report.Samples {
		assert.Positive(t, s.RSSKiB)
		assert.GreaterOrEqual(t, s.HWMKiB, s.RSSKiB)
		assert.GreaterOrEqual(t, s.Clients, int64(cfg.Clients+2), "load clients, publisher and subscriber are connected")
	}
	// Memory is bounded with a generous margin: tens of MiB are expected.
	assert.Less(t, report.Samples[len(report.Samples)-1].HWMKiB, int64(512*1024))
}

// Issue 10's acceptance shape at CI scale: kvsim 3x1 with its controller,
// 20 planned failovers back and forth across every shard, CLUSTERX FAILOVER
// through the proxy and the controller's API alternating, a CLIENT PAUSE
// failover of another shard or an unrelated topology push between two of
// them, under the soak's load and redis-benchmark through the proxy: no
// client error, no lost acknowledged write, and the controller, every node
// and the proxy agree on the masters at the end.
func TestSoakAcceptanceShape(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds kvproxy and runs 39 steps with redis-benchmark; runs without -short")
	}
	loadgen.RequireBinary(t, "redis-benchmark")
	cfg := DefaultConfig()
	cfg.Shards = 3
	cfg.FailoverKinds = []FailoverKind{FailoverClusterx, FailoverController}
	cfg.Between = []FailoverKind{FailoverPause, FailoverPush}
	cfg.PlannedFailovers = 20
	cfg.Duration = 4 * time.Minute // a bound: the run ends after the 20th planned failover
	cfg.FailoverInterval = 500 * time.Millisecond
	cfg.FailoverTimeout = 2 * time.Second
	cfg.Keys = 500
	cfg.RedisBenchmark = true
	var progress bytes.Buffer
	cfg.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	report, err := Run(ctx, cfg)
	require.NoError(t, err, "progress:\n%s", progress.String())
	var out bytes.Buffer
	report.Print(&out)
	t.Logf("progress:\n%s\nreport:\n%s", progress.String(), out.String())

	assert.False(t, report.Interrupted)
	assert.Empty(t, report.Errors, "no client saw an error, redis-benchmark included")
	assert.Empty(t, report.Anomalies, "every read showed the acknowledged writes")
	require.NotNil(t, report.Views)
	assert.Empty(t, report.Views.Disagreements, "the controller, the nodes and the proxy agree at the end")
	assert.False(t, report.Failed())

	planned, between := map[FailoverKind]int{}, map[FailoverKind]int{}
	plannedByShard := map[int]int{}
	for _, f := range report.Failovers {
		assert.NoError(t, f.Err, "step %d (%s of shard %d)", f.Seq, f.Kind, f.Shard)
		if f.Err != nil {
			continue
		}
		if f.Between {
			between[f.Kind]++
			continue
		}
		planned[f.Kind]++
		plannedByShard[f.Shard]++
	}
	assert.Equal(t, map[FailoverKind]int{FailoverClusterx: 10, FailoverController: 10}, planned)
	assert.Equal(t, map[FailoverKind]int{FailoverPause: 10, FailoverPush: 9}, between)
	for shard := range cfg.Shards {
		assert.GreaterOrEqual(t, plannedByShard[shard], 6, "shard %d failed over and back", shard)
	}
	require.NotNil(t, report.Benchmark)
	assert.Positive(t, report.Benchmark.Completed, "redis-benchmark completed runs")
	assert.Zero(t, report.Benchmark.Failed)
	assert.Greater(t, report.Verified, cfg.Clients*cfg.Keys/2, "the final check read most keys")
}
