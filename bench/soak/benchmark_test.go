package soak

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/bench/loadgen"
)

func TestBenchmarkErrorsReadTheErrorLines(t *testing.T) {
	exit := &loadgen.BenchmarkError{ExitCode: 1, Stderr: "WARNING: Could not fetch server CONFIG\n" +
		"Error from server: CLUSTERDOWN slot 42: more than 5 redirects, last to 127.0.0.1:7000\n" +
		"Error: Server closed the connection\n"}
	errs := benchmarkErrors(exit)
	require.Len(t, errs, 2)
	tally := NewTally(time.Now())
	for _, err := range errs {
		tally.Error(OpBenchmark, err, time.Now())
	}
	_, _, counted, _ := tally.snapshot()
	require.Len(t, counted, 2)
	assert.Equal(t, "CLUSTERDOWN", counted[0].Prefix, "an error reply is filed under its prefix")
	assert.Equal(t, "CLUSTERDOWN slot N: more than N redirects, last to N.N.N.N:N", counted[0].Text)
	assert.Equal(t, OpBenchmark, counted[0].First.Op)
	assert.Equal(t, "network", counted[1].Prefix)
	assert.Equal(t, "redis-benchmark: Error: Server closed the connection", counted[1].Text)

	silent := &loadgen.BenchmarkError{ExitCode: 1}
	assert.Equal(t, []error{silent}, benchmarkErrors(silent), "a failed run without an error line is one error")
	other := errors.New("loadgen: redis-benchmark target is not reachable")
	assert.Equal(t, []error{other}, benchmarkErrors(other))
}

// The loop counts runs that complete and errors of those that do not, and
// the one the end of the load kills is neither.
func TestBenchmarkerCountsRunsAndErrors(t *testing.T) {
	loadgen.RequireBinary(t, "redis-benchmark")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	master, err := loadgen.StartKvsimMaster(ctx)
	require.NoError(t, err)
	t.Cleanup(master.Kill)
	// A node no topology reached answers every key with CLUSTERDOWN.
	uninitialized, err := kvsim.StartNode(kvsim.NodeConfig{Addr: "127.0.0.1:0"})
	require.NoError(t, err)
	t.Cleanup(uninitialized.Kill)

	cfg := DefaultConfig()
	cfg.BenchmarkClients, cfg.BenchmarkPipeline = 4, 4
	// run loops until it counted 2000 requests or 2 errors.
	run := func(addr string) (*benchmarker, *Tally) {
		tally := NewTally(time.Now())
		b := newBenchmarker(addr, cfg, tally)
		b.opts.Requests = 500
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.run(runCtx)
		}()
		require.Eventually(t, func() bool {
			select {
			case <-done:
				return true
			default:
			}
			return tally.Commands() >= 2000 || tally.ErrorTotal() >= 2
		}, 30*time.Second, 10*time.Millisecond)
		stop()
		<-done
		return b, tally
	}

	b, tally := run(master.Addr())
	assert.GreaterOrEqual(t, b.report.Completed, 2)
	assert.Equal(t, b.report.Completed, b.report.Runs, "the killed run is not counted")
	assert.Zero(t, b.report.Failed)
	assert.Equal(t, uint64(b.report.Completed*1000), b.report.Requests)
	assert.Zero(t, tally.ErrorTotal())
	assert.Positive(t, b.report.RPS["SET"])
	assert.Positive(t, b.report.RPS["GET"])
	assert.Equal(t, "redis-benchmark -c 4 -P 4 -n 200000 -r 100000 -t set,get", b.report.Command)

	b, tally = run(uninitialized.Addr())
	assert.Zero(t, b.report.Completed)
	assert.GreaterOrEqual(t, b.report.Failed, 2, "a run that fails is started again")
	_, _, errs, _ := tally.snapshot()
	require.NotEmpty(t, errs)
	assert.Equal(t, "CLUSTERDOWN", errs[0].Prefix, "%+v", errs)
	assert.Equal(t, OpBenchmark, errs[0].First.Op)
	assert.Equal(t, uint64(b.report.Failed), tally.ErrorTotal(), "redis-benchmark exits at its first error")
}
