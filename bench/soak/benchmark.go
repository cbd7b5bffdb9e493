package soak

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"kvproxy/bench/loadgen"
)

// redis-benchmark's run: SET and GET of random keys over every slot. A run
// takes seconds, so most runs end and their errors and results are read
// while the soak goes on; the run in flight when the load stops is killed.
const (
	benchmarkRequests = 200_000 // -n, per test
	benchmarkKeyspace = 100_000 // -r
)

var benchmarkTests = []string{"set", "get"}

// benchmarkRestartPause paces the runs after one that failed, so a proxy
// that refuses connections is not hammered by restarts.
const benchmarkRestartPause = 100 * time.Millisecond

// BenchmarkReport is what redis-benchmark met through the proxy.
type BenchmarkReport struct {
	// Command is the command line, without the proxy's address.
	Command string
	// Runs were started; Completed ended with every request answered;
	// Failed ended with an error (redis-benchmark exits at the first error
	// reply). The run the end of the load killed is neither.
	Runs, Completed, Failed int
	// Requests are the requests of the completed runs.
	Requests uint64
	// RPS are the requests per second of the last completed run, by test.
	RPS map[string]float64
}

// benchmarker runs redis-benchmark through the proxy until its context ends.
type benchmarker struct {
	opts   loadgen.BenchmarkOptions
	tally  *Tally
	report BenchmarkReport
}

func newBenchmarker(addr string, cfg Config, tally *Tally) *benchmarker {
	opts := loadgen.BenchmarkOptions{Addr: addr, Clients: cfg.BenchmarkClients, Requests: benchmarkRequests,
		Pipeline: cfg.BenchmarkPipeline, Keyspace: benchmarkKeyspace, Tests: benchmarkTests}
	return &benchmarker{opts: opts, tally: tally, report: BenchmarkReport{
		Command: fmt.Sprintf("redis-benchmark -c %d -P %d -n %d -r %d -t %s", opts.Clients, opts.Pipeline,
			opts.Requests, opts.Keyspace, strings.Join(opts.Tests, ",")),
	}}
}

// run starts redis-benchmark again and again until ctx ends; the report is
// complete once it returns.
func (b *benchmarker) run(ctx context.Context) {
	for ctx.Err() == nil {
		b.report.Runs++
		res, err := loadgen.RunRedisBenchmark(ctx, b.opts)
		now := time.Now()
		switch {
		case ctx.Err() != nil:
			b.report.Runs-- // killed by the end of the load: it saw nothing wrong
			return
		case err == nil:
			b.report.Completed++
			b.report.RPS = map[string]float64{}
			var longest time.Duration
			for _, t := range res.Tests {
				b.report.RPS[t.Name] = t.RequestsPerSec
				longest = max(longest, t.MaxLatency)
			}
			n := len(b.opts.Tests) * b.opts.Requests
			b.report.Requests += uint64(n)
			b.tally.Request(OpBenchmark, n, longest, now)
			continue
		}
		b.report.Failed++
		for _, e := range benchmarkErrors(err) {
			b.tally.Error(OpBenchmark, e, now)
		}
		select {
		case <-ctx.Done():
		case <-time.After(benchmarkRestartPause):
		}
	}
}

// benchmarkReplyError is an error reply redis-benchmark printed: the tally
// files it under its RESP prefix, as go-redis' error replies.
type benchmarkReplyError string

func (e benchmarkReplyError) Error() string { return string(e) }

// RedisError marks it as a reply (go-redis' redis.Error).
func (benchmarkReplyError) RedisError() {}

// benchmarkErrors are the errors a failed run met: each "Error from
// server: <reply>" line is an error reply, any other "Error..." line (a
// lost connection) another error; a run that failed without such a line is
// one error, its exit.
func benchmarkErrors(err error) []error {
	var exit *loadgen.BenchmarkError
	if !errors.As(err, &exit) {
		return []error{err}
	}
	var errs []error
	for _, line := range exit.ErrorLines() {
		if reply, ok := strings.CutPrefix(line, "Error from server: "); ok {
			errs = append(errs, benchmarkReplyError(reply))
		} else {
			errs = append(errs, errors.New("redis-benchmark: "+line))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, err)
	}
	return errs
}
