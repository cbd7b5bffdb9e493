package soak

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

// A short soak keeps the long one honest: mixed load through a kvproxy
// process while failovers of both kinds rotate over every shard and back
// sees no error, no stale read, no lost or duplicated write. It leaves
// Config.KvproxyBinary empty, so Run builds kvproxy itself; the other soaks
// share one build.
func TestSoakThroughPlannedFailovers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds kvproxy and runs for 12 s; runs without -short")
	}
	cfg := DefaultConfig()
	cfg.Duration = 12 * time.Second
	cfg.FailoverInterval = time.Second
	cfg.FailoverTimeout = 2 * time.Second
	cfg.SampleInterval = 2 * time.Second
	cfg.Keys = 500
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	report := runLogged(t, ctx, cfg)

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
	cfg.KvproxyBinary = kvproxyBuild.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	report := runLogged(t, ctx, cfg)

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

// With -proxy-reports the proxy, not the soak, tells the controller of the
// CLUSTERX FAILOVERs it runs; the pushes between them would give the slots
// back to the old masters (and lose acknowledged writes) if it did not.
// Skipped while kvproxy has no --controller flag.
func TestSoakProxyReportsHandovers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds kvproxy and runs 11 steps; runs without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := DefaultConfig()
	cfg.KvproxyBinary = kvproxyBuild.Binary(t)
	cfg.ProxyReports = true
	cfg.FailoverKinds = []FailoverKind{FailoverClusterx}
	cfg.Between = []FailoverKind{FailoverPush}
	cfg.PlannedFailovers = 6
	cfg.Duration = 3 * time.Minute // a bound: the run ends after the 6th planned failover
	cfg.FailoverInterval = 500 * time.Millisecond
	cfg.FailoverTimeout = 2 * time.Second
	cfg.Keys = 500

	report := runLogged(t, ctx, cfg)

	assert.Empty(t, report.Errors)
	assert.Empty(t, report.Anomalies, "no push gave a shard back to its old master")
	require.NotNil(t, report.Views)
	assert.Empty(t, report.Views.Disagreements)
	require.Len(t, report.Failovers, 11)
	for _, f := range report.Failovers {
		assert.NoError(t, f.Err, "step %d (%s of shard %d): the controller recorded the handover", f.Seq, f.Kind, f.Shard)
	}
}

// The soak catches issue 10's loss: with -proxy-reports and a proxy that
// does not report (its --controller flags dropped on the way), the
// controller never learns of the CLUSTERX FAILOVER, and the push after it
// gives the shard back to the old master: acknowledged writes are lost.
func TestSoakCatchesAHandoverTheControllerNeverLearnt(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds kvproxy and runs for about 15 s; runs without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	binary := kvproxyBuild.Binary(t)
	deaf := filepath.Join(t.TempDir(), "kvproxy-without-controller")
	script := `#!/bin/sh
# kvproxy without its --controller flags and their values.
skip=
for a in "$@"; do
	shift
	if [ -n "$skip" ]; then skip=; continue; fi
	case "$a" in --controller|--controller-namespace|--controller-cluster) skip=1; continue;; esac
	set -- "$@" "$a"
done
exec ` + binary + ` "$@"
`
	require.NoError(t, os.WriteFile(deaf, []byte(script), 0o755))

	cfg := DefaultConfig()
	cfg.KvproxyBinary = deaf
	cfg.ProxyReports = true
	// clusterx of shard 0, the push, a pause failover of shard 1.
	cfg.FailoverKinds = []FailoverKind{FailoverClusterx, FailoverPause}
	cfg.Between = []FailoverKind{FailoverPush}
	cfg.PlannedFailovers = 2
	cfg.Duration = 3 * time.Minute
	cfg.FailoverInterval = 500 * time.Millisecond
	cfg.FailoverTimeout = 2 * time.Second
	cfg.Keys = 200
	// The deaf proxy never reports, so the wait always runs out; a proxy
	// that reports gets the handover recorded within milliseconds.
	cfg.ReportWait = 3 * time.Second

	report := runLogged(t, ctx, cfg)

	require.Len(t, report.Failovers, 3)
	assert.ErrorContains(t, report.Failovers[0].Err, "the controller did not record")
	assert.Equal(t, FailoverPush, report.Failovers[1].Kind)
	assert.NoError(t, report.Failovers[1].Err)
	assert.NoError(t, report.Failovers[2].Err)
	assert.Positive(t, report.AnomalyTotal(LostWrite)+report.AnomalyTotal(StaleRead),
		"the push undid the handover: writes the new master acknowledged are gone")
	assert.True(t, report.Failed())
}

// runLogged runs a soak and logs its progress and its report.
func runLogged(t *testing.T, ctx context.Context, cfg Config) *Report {
	t.Helper()
	var progress bytes.Buffer // Run writes to it one write at a time
	cfg.Progress = &progress
	report, err := Run(ctx, cfg)
	require.NoError(t, err, "progress:\n%s", progress.String())
	var out bytes.Buffer
	report.Print(&out)
	t.Logf("progress:\n%s\nreport:\n%s", progress.String(), out.String())
	return report
}
