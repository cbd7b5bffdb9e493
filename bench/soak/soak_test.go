package soak

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
