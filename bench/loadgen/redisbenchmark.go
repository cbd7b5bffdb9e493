// Package loadgen holds the pieces kvproxy's throughput benchmarks are built
// from: a runner for the real redis-benchmark binary and a parser of its CSV
// output, launchers for a standalone redis-server and for twemproxy
// (nutcracker) to compare against, a per-process CPU meter, and Interleave,
// which alternates targets round by round and reports medians and ratios.
//
// Results are always meant to be read as ratios between targets measured in
// the same run: the machines are small and noisy, so absolute numbers say
// little.
package loadgen

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// BenchmarkOptions describes one redis-benchmark run. It always runs with
// --csv and -q.
type BenchmarkOptions struct {
	// Binary is the redis-benchmark executable; empty looks up
	// "redis-benchmark" in PATH.
	Binary string
	// Addr is the server's host:port.
	Addr string
	// Clients is the number of parallel connections (-c); at least 1.
	Clients int
	// Requests is the number of requests per test (-n); at least 1.
	Requests int
	// Pipeline is the number of requests each client pipelines (-P); 1 means
	// no pipelining.
	Pipeline int
	// Keyspace is the range of random keys (-r); 0 omits -r, so every request
	// of a test uses the same key.
	Keyspace int
	// Tests are the tests to run (-t, e.g. "set", "get"); empty runs
	// redis-benchmark's whole default suite.
	Tests []string
	// DataSize is the SET/GET value size in bytes (-d); 0 omits -d, leaving
	// redis-benchmark's 3 bytes.
	DataSize int
	// Password is sent with -a; empty sends none.
	Password string
	// ExtraArgs are appended after every other argument, so they may end
	// with a command line to benchmark instead of the -t tests.
	ExtraArgs []string
}

// Validate reports the first option that cannot make a valid run.
func (o BenchmarkOptions) Validate() error {
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return fmt.Errorf("loadgen: BenchmarkOptions.Addr %q: %w", o.Addr, err)
	}
	switch {
	case o.Clients < 1:
		return fmt.Errorf("loadgen: BenchmarkOptions.Clients is %d, want at least 1", o.Clients)
	case o.Requests < 1:
		return fmt.Errorf("loadgen: BenchmarkOptions.Requests is %d, want at least 1", o.Requests)
	case o.Pipeline < 1:
		return fmt.Errorf("loadgen: BenchmarkOptions.Pipeline is %d, want at least 1", o.Pipeline)
	case o.Keyspace < 0:
		return fmt.Errorf("loadgen: BenchmarkOptions.Keyspace is %d, want 0 or more", o.Keyspace)
	case o.DataSize < 0:
		return fmt.Errorf("loadgen: BenchmarkOptions.DataSize is %d, want 0 or more", o.DataSize)
	}
	for _, t := range o.Tests {
		if t == "" || strings.Contains(t, ",") {
			return fmt.Errorf("loadgen: BenchmarkOptions.Tests has %q, want one test name per entry", t)
		}
	}
	return nil
}

// args are redis-benchmark's arguments; the password is replaced by "***"
// when masked, for error messages.
func (o BenchmarkOptions) args(masked bool) []string {
	host, port, _ := net.SplitHostPort(o.Addr)
	args := []string{"-h", host, "-p", port,
		"-c", strconv.Itoa(o.Clients), "-n", strconv.Itoa(o.Requests), "-P", strconv.Itoa(o.Pipeline)}
	if o.Keyspace > 0 {
		args = append(args, "-r", strconv.Itoa(o.Keyspace))
	}
	if len(o.Tests) > 0 {
		args = append(args, "-t", strings.Join(o.Tests, ","))
	}
	if o.DataSize > 0 {
		args = append(args, "-d", strconv.Itoa(o.DataSize))
	}
	if o.Password != "" {
		password := o.Password
		if masked {
			password = "***"
		}
		args = append(args, "-a", password)
	}
	args = append(args, "--csv", "-q")
	return append(args, o.ExtraArgs...)
}

// TestResult is one line of redis-benchmark's CSV output. Latencies that the
// output does not have (redis-benchmark before 7 prints only requests/s) are
// zero.
type TestResult struct {
	// Name is the test as redis-benchmark names it: "SET", "GET",
	// "MSET (10 keys)", or the command line of a custom command.
	Name           string
	RequestsPerSec float64
	AvgLatency     time.Duration
	MinLatency     time.Duration
	P50Latency     time.Duration
	P95Latency     time.Duration
	P99Latency     time.Duration
	MaxLatency     time.Duration
}

// Result is what one redis-benchmark run produced.
type Result struct {
	// Tests are the parsed CSV lines, in output order.
	Tests []TestResult
	// ExitCode is redis-benchmark's exit status (-1 when a signal ended it).
	ExitCode int
	// CSV is redis-benchmark's standard output.
	CSV string
	// Stderr is its standard error; a successful run may still print
	// warnings there (e.g. "Could not fetch server CONFIG" through a proxy).
	Stderr string
}

// Test returns the result of the named test; names compare case-insensitively.
func (r Result) Test(name string) (TestResult, bool) {
	for _, t := range r.Tests {
		if strings.EqualFold(t.Name, name) {
			return t, true
		}
	}
	return TestResult{}, false
}

// BenchmarkError is returned when redis-benchmark exits with a non-zero
// status, which it does at the first error reply it receives.
type BenchmarkError struct {
	// Args are the arguments it ran with, the password masked.
	Args     []string
	ExitCode int
	Stdout   string
	Stderr   string
}

// maxErrorOutput bounds how much of the offending output Error quotes.
const maxErrorOutput = 1024

// ErrorLines are the lines starting "Error" that the failed run printed
// (an error reply reads "Error from server: <reply>"), trimmed, stderr's
// first.
func (e *BenchmarkError) ErrorLines() []string {
	var lines []string
	for line := range strings.Lines(e.Stderr + "\n" + e.Stdout) {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "Error") {
			lines = append(lines, line)
		}
	}
	return lines
}

func (e *BenchmarkError) Error() string {
	out := strings.TrimSpace(e.Stderr)
	if out == "" {
		out = strings.TrimSpace(e.Stdout)
	}
	if len(out) > maxErrorOutput {
		out = out[:maxErrorOutput] + "..."
	}
	if out == "" {
		out = "(no output)"
	}
	return fmt.Sprintf("redis-benchmark %s exited with status %d: %s",
		strings.Join(e.Args, " "), e.ExitCode, out)
}

// RunRedisBenchmark runs redis-benchmark and parses its CSV output. A run
// that exits non-zero returns the partial Result and a *BenchmarkError; ctx
// cancellation kills the process.
func RunRedisBenchmark(ctx context.Context, opts BenchmarkOptions) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	bin, err := lookBinary(opts.Binary, "redis-benchmark")
	if err != nil {
		return Result{}, err
	}
	// redis-benchmark never gives up on an address that refuses connections
	// (it spins at full CPU), so make sure something is listening first.
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", opts.Addr)
	if err != nil {
		return Result{}, fmt.Errorf("loadgen: redis-benchmark target %s is not reachable: %w", opts.Addr, err)
	}
	conn.Close()

	cmd := exec.CommandContext(ctx, bin, opts.args(false)...)
	cmd.SysProcAttr = dieWithParent()
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()

	res := Result{ExitCode: cmd.ProcessState.ExitCode(), CSV: stdout.String(), Stderr: stderr.String()}
	tests, parseErr := ParseCSV(bytes.NewReader(stdout.Bytes()))
	res.Tests = tests
	if ctxErr := ctx.Err(); ctxErr != nil {
		return res, fmt.Errorf("loadgen: redis-benchmark against %s stopped: %w", opts.Addr, ctxErr)
	}
	var exitErr *exec.ExitError
	if errors.As(runErr, &exitErr) {
		return res, &BenchmarkError{Args: opts.args(true), ExitCode: res.ExitCode,
			Stdout: res.CSV, Stderr: res.Stderr}
	}
	if runErr != nil {
		return res, fmt.Errorf("loadgen: running %s: %w", bin, runErr)
	}
	if parseErr != nil {
		return res, fmt.Errorf("loadgen: redis-benchmark output: %w (stderr: %q)", parseErr, res.Stderr)
	}
	if len(tests) == 0 {
		return res, fmt.Errorf("loadgen: redis-benchmark printed no results (stderr: %q)", res.Stderr)
	}
	return res, nil
}

// latencyColumns maps redis-benchmark 7's latency column names (in
// milliseconds) to the field each fills.
var latencyColumns = map[string]func(*TestResult) *time.Duration{
	"avg_latency_ms": func(t *TestResult) *time.Duration { return &t.AvgLatency },
	"min_latency_ms": func(t *TestResult) *time.Duration { return &t.MinLatency },
	"p50_latency_ms": func(t *TestResult) *time.Duration { return &t.P50Latency },
	"p95_latency_ms": func(t *TestResult) *time.Duration { return &t.P95Latency },
	"p99_latency_ms": func(t *TestResult) *time.Duration { return &t.P99Latency },
	"max_latency_ms": func(t *TestResult) *time.Duration { return &t.MaxLatency },
}

// ParseCSV parses redis-benchmark --csv output: a header line naming the
// columns, then one line per test. Columns are found by header name, so
// unknown columns are ignored. A header with no test lines is valid (it is
// what redis-benchmark prints before failing on an error reply).
func ParseCSV(r io.Reader) ([]TestResult, error) {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("no CSV header")
	}
	if err != nil {
		return nil, fmt.Errorf("CSV header: %w", err)
	}
	nameCol, rpsCol := -1, -1
	latencyCol := map[int]func(*TestResult) *time.Duration{}
	for i, h := range header {
		switch {
		case h == "test":
			nameCol = i
		case h == "rps":
			rpsCol = i
		case latencyColumns[h] != nil:
			latencyCol[i] = latencyColumns[h]
		}
	}
	if nameCol < 0 || rpsCol < 0 {
		return nil, fmt.Errorf("CSV header %q lacks the test or rps column", header)
	}
	var tests []TestResult
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return tests, nil
		}
		if err != nil {
			return tests, fmt.Errorf("CSV line %d: %w", line, err)
		}
		t := TestResult{Name: rec[nameCol]}
		if t.Name == "" {
			return tests, fmt.Errorf("CSV line %d: empty test name", line)
		}
		if t.RequestsPerSec, err = parseNonNegative(rec[rpsCol]); err != nil {
			return tests, fmt.Errorf("CSV line %d (%s): rps: %w", line, t.Name, err)
		}
		for col, field := range latencyCol {
			ms, err := parseNonNegative(rec[col])
			if err != nil {
				return tests, fmt.Errorf("CSV line %d (%s): %s: %w", line, t.Name, header[col], err)
			}
			*field(&t) = time.Duration(math.Round(ms * float64(time.Millisecond)))
		}
		tests = append(tests, t)
	}
}

// maxParsedValue bounds parsed numbers so a latency converts to a
// time.Duration without overflow (about 106 days in milliseconds).
const maxParsedValue = 9e9

func parseNonNegative(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if !(v >= 0 && v <= maxParsedValue) {
		return 0, fmt.Errorf("value %q is out of range", s)
	}
	return v, nil
}
