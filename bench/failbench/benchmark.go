package failbench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"kvproxy/bench/loadgen"
)

// redis-benchmark's runs: SET and GET of random keys over every slot, each
// run a few seconds, again and again while the load runs; the run in
// flight when the load stops is killed and not counted.
const (
	benchmarkRequests = 10_000  // -n, per test: a run of about a second, so runs frame the failover
	benchmarkKeyspace = 100_000 // -r
	// benchmarkRestartPause paces the runs after one that failed.
	benchmarkRestartPause = 100 * time.Millisecond
	// maxBenchmarkErrors bounds the error lines a report quotes.
	maxBenchmarkErrors = 20
)

// BenchmarkRun is one completed redis-benchmark run: when it ran and its
// own figures per test.
type BenchmarkRun struct {
	StartMs float64                  `json:"start_ms"`
	EndMs   float64                  `json:"end_ms"`
	Tests   map[string]BenchmarkTest `json:"tests"`
}

// BenchmarkTest is redis-benchmark's result for one test of a run.
type BenchmarkTest struct {
	RPS   float64 `json:"rps"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// BenchmarkReport is what redis-benchmark met through the proxy.
type BenchmarkReport struct {
	Command string `json:"command"`
	// Completed runs ended with every request answered; Failed ones ended
	// on an error (redis-benchmark stops at the first error reply).
	Completed int            `json:"completed"`
	Failed    int            `json:"failed"`
	Runs      []BenchmarkRun `json:"runs"`
	// Errors are the error lines of the failed runs (the first ones).
	Errors     []string `json:"errors"`
	ErrorCount int      `json:"error_count"`
}

// runBenchmark runs redis-benchmark against addr until ctx ends.
func runBenchmark(ctx context.Context, addr string, cfg Config, start time.Time) *BenchmarkReport {
	opts := loadgen.BenchmarkOptions{Addr: addr, Clients: cfg.BenchmarkClients, Requests: benchmarkRequests,
		Pipeline: cfg.BenchmarkPipeline, Keyspace: benchmarkKeyspace, Tests: []string{"set", "get"}}
	report := &BenchmarkReport{Command: fmt.Sprintf("redis-benchmark -c %d -P %d -n %d -r %d -t set,get",
		opts.Clients, opts.Pipeline, opts.Requests, opts.Keyspace)}
	for ctx.Err() == nil {
		began := time.Now()
		res, err := loadgen.RunRedisBenchmark(ctx, opts)
		if ctx.Err() != nil {
			return report
		}
		if err == nil {
			run := BenchmarkRun{StartMs: ms(began.Sub(start)), EndMs: ms(time.Since(start)), Tests: map[string]BenchmarkTest{}}
			for _, t := range res.Tests {
				run.Tests[t.Name] = BenchmarkTest{RPS: t.RequestsPerSec, P50Ms: ms(t.P50Latency), P99Ms: ms(t.P99Latency), MaxMs: ms(t.MaxLatency)}
			}
			report.Runs = append(report.Runs, run)
			report.Completed++
			continue
		}
		report.Failed++
		for _, line := range benchmarkErrorLines(err) {
			report.ErrorCount++
			if len(report.Errors) < maxBenchmarkErrors {
				report.Errors = append(report.Errors, fmt.Sprintf("at %.1fs: %s", time.Since(start).Seconds(), line))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(benchmarkRestartPause):
		}
	}
	return report
}

// benchmarkErrorLines are the "Error..." lines a failed run printed, or
// its exit when it printed none.
func benchmarkErrorLines(err error) []string {
	var exit *loadgen.BenchmarkError
	if !errors.As(err, &exit) {
		return []string{err.Error()}
	}
	lines := exit.ErrorLines()
	if len(lines) == 0 {
		lines = append(lines, err.Error())
	}
	return lines
}
