package loadgen

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func ms(v float64) time.Duration { return time.Duration(math.Round(v * float64(time.Millisecond))) }

func TestParseCSVCapturedOutput(t *testing.T) {
	cases := []struct {
		file  string
		names []string
		first TestResult
	}{
		{"set_get_p16.csv", []string{"SET", "GET"}, TestResult{Name: "SET", RequestsPerSec: 555555.56,
			AvgLatency: ms(1.292), MinLatency: ms(0.624), P50Latency: ms(1.183), P95Latency: ms(2.255),
			P99Latency: ms(2.919), MaxLatency: ms(3.095)}},
		{"set_get_p1.csv", []string{"SET", "GET"}, TestResult{Name: "SET", RequestsPerSec: 90497.73,
			AvgLatency: ms(0.288), MinLatency: ms(0.096), P50Latency: ms(0.287), P95Latency: ms(0.367),
			P99Latency: ms(0.463), MaxLatency: ms(0.663)}},
		{"default_suite_precision3.csv",
			[]string{"PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "MSET (10 keys)"},
			TestResult{Name: "PING_INLINE", RequestsPerSec: 90909.09, AvgLatency: ms(0.064), MinLatency: ms(0.016),
				P50Latency: ms(0.063), P95Latency: ms(0.087), P99Latency: ms(0.151), MaxLatency: ms(0.247)}},
		{"names_with_spaces.csv",
			[]string{"LPUSH (needed to benchmark LRANGE)", "LRANGE_100 (first 100 elements)", "MSET (10 keys)"},
			TestResult{Name: "LPUSH (needed to benchmark LRANGE)", RequestsPerSec: 40000, AvgLatency: ms(0.071),
				MinLatency: ms(0.024), P50Latency: ms(0.063), P95Latency: ms(0.119), P99Latency: ms(0.207),
				MaxLatency: ms(0.311)}},
		{"custom_command.csv", []string{"set k:__rand_int__ v"}, TestResult{Name: "set k:__rand_int__ v",
			RequestsPerSec: 33333.33, AvgLatency: ms(0.150), MinLatency: ms(0.016), P50Latency: ms(0.071),
			P95Latency: ms(0.167), P99Latency: ms(1.703), MaxLatency: ms(1.743)}},
		{"twemproxy_p16.csv", []string{"SET", "GET"}, TestResult{Name: "SET", RequestsPerSec: 89285.71,
			AvgLatency: ms(8.792), MinLatency: ms(1.432), P50Latency: ms(7.559), P95Latency: ms(22.239),
			P99Latency: ms(36.287), MaxLatency: ms(37.407)}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			tests, err := ParseCSV(bytes.NewReader(readTestdata(t, tc.file)))
			require.NoError(t, err)
			var names []string
			for _, tr := range tests {
				names = append(names, tr.Name)
				assert.Positive(t, tr.RequestsPerSec, tr.Name)
				assert.Positive(t, tr.P50Latency, tr.Name)
			}
			assert.Equal(t, tc.names, names)
			require.NotEmpty(t, tests)
			assert.Equal(t, tc.first, tests[0])
		})
	}
}

func TestParseCSVHeaderOnlyIsNoResults(t *testing.T) {
	// What redis-benchmark prints before exiting 1 on an error reply.
	for _, file := range []string{"clusterdown.csv", "wrongtype.csv"} {
		tests, err := ParseCSV(bytes.NewReader(readTestdata(t, file)))
		assert.NoError(t, err, file)
		assert.Empty(t, tests, file)
	}
}

func TestParseCSVFindsColumnsByName(t *testing.T) {
	// redis-benchmark 6 printed only these two columns; order must not matter.
	tests, err := ParseCSV(strings.NewReader("\"rps\",\"extra\",\"test\"\n\"1234.5\",\"x\",\"SET\"\n"))
	require.NoError(t, err)
	assert.Equal(t, []TestResult{{Name: "SET", RequestsPerSec: 1234.5}}, tests)
}

func TestParseCSVRejectsMalformedOutput(t *testing.T) {
	header := `"test","rps","avg_latency_ms"` + "\n"
	cases := map[string]string{
		"empty":                 "",
		"no rps column":         "\"test\",\"avg_latency_ms\"\n\"SET\",\"1\"\n",
		"no test column":        "\"rps\"\n\"1\"\n",
		"rps not a number":      header + "\"SET\",\"fast\",\"1\"\n",
		"negative rps":          header + "\"SET\",\"-1\",\"1\"\n",
		"NaN latency":           header + "\"SET\",\"1\",\"NaN\"\n",
		"infinite latency":      header + "\"SET\",\"1\",\"+Inf\"\n",
		"latency overflow":      header + "\"SET\",\"1\",\"1e300\"\n",
		"missing field":         header + "\"SET\",\"1\"\n",
		"empty test name":       header + "\"\",\"1\",\"1\"\n",
		"unterminated quote":    header + "\"SET,\"1\",\"1\"\n",
		"progress line instead": "SET: rps=1234.0 (overall: 1234.0) avg_msec=0.1\n",
	}
	for name, input := range cases {
		_, err := ParseCSV(strings.NewReader(input))
		assert.Error(t, err, name)
	}
}

// FuzzParseCSV reads arbitrary redis-benchmark output: every test it
// accepts has a name and non-negative, finite numbers. A report built from
// the other inputs with encoding/csv (any test name, quotes and commas
// included) reads back.
func FuzzParseCSV(f *testing.F) {
	for _, file := range []string{"set_get_p16.csv", "default_suite_precision3.csv", "names_with_spaces.csv",
		"custom_command.csv", "clusterdown.csv"} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		require.NoError(f, err)
		f.Add(b, "SET", uint32(12345678), uint32(250))
	}
	f.Add([]byte("\"rps\",\"test\"\n\"1\",\"x\"\n"), "MSET (10 keys)", uint32(0), uint32(0))
	f.Add([]byte("\"test\",\"rps\"\n\"SET\",\"NaN\"\n"), "\"quoted\", and, commas", uint32(1<<32-1), uint32(1<<32-1))
	f.Add([]byte("\"test\",\"rps\"\n\"SET\",\"1e300\"\n"), "multi\nline", uint32(1), uint32(1))
	f.Fuzz(func(t *testing.T, input []byte, name string, rpsCents, latencyMicros uint32) {
		tests, err := ParseCSV(bytes.NewReader(input))
		if err == nil {
			for _, tr := range tests {
				require.NotEmpty(t, tr.Name, "%q", input)
				for _, v := range []time.Duration{tr.AvgLatency, tr.MinLatency, tr.P50Latency, tr.P95Latency,
					tr.P99Latency, tr.MaxLatency} {
					require.GreaterOrEqual(t, v, time.Duration(0), "%q", input)
				}
				require.True(t, tr.RequestsPerSec >= 0 && !math.IsInf(tr.RequestsPerSec, 0), "rps %v from %q", tr.RequestsPerSec, input)
			}
		}

		if name == "" || strings.Contains(name, "\r") {
			return // an empty name is refused; CSV reads "\r\n" in a field as "\n"
		}
		rps, latency := float64(rpsCents)/100, float64(latencyMicros)/1000
		var report bytes.Buffer
		w := csv.NewWriter(&report)
		require.NoError(t, w.WriteAll([][]string{
			{"test", "rps", "avg_latency_ms", "p99_latency_ms"},
			{name, strconv.FormatFloat(rps, 'f', -1, 64), strconv.FormatFloat(latency, 'f', 3, 64), "0"},
		}))
		tests, err = ParseCSV(&report)
		require.NoError(t, err, "%q", report.String())
		require.Equal(t, []TestResult{{Name: name, RequestsPerSec: rps, AvgLatency: time.Duration(latencyMicros) * time.Microsecond}}, tests)
	})
}

func TestBenchmarkOptionsArgs(t *testing.T) {
	opts := BenchmarkOptions{Addr: "127.0.0.1:7001", Clients: 50, Requests: 1000, Pipeline: 16,
		Keyspace: 100000, Tests: []string{"set", "get"}, DataSize: 64, Password: "s3cret",
		ExtraArgs: []string{"--threads", "2"}}
	require.NoError(t, opts.Validate())
	assert.Equal(t, []string{"-h", "127.0.0.1", "-p", "7001", "-c", "50", "-n", "1000", "-P", "16",
		"-r", "100000", "-t", "set,get", "-d", "64", "-a", "s3cret", "--csv", "-q", "--threads", "2"},
		opts.args(false))
	assert.Contains(t, opts.args(true), "***")
	assert.NotContains(t, opts.args(true), "s3cret")

	minimal := BenchmarkOptions{Addr: "[::1]:6379", Clients: 1, Requests: 1, Pipeline: 1}
	require.NoError(t, minimal.Validate())
	assert.Equal(t, []string{"-h", "::1", "-p", "6379", "-c", "1", "-n", "1", "-P", "1", "--csv", "-q"},
		minimal.args(false))
}

func TestBenchmarkOptionsValidate(t *testing.T) {
	valid := BenchmarkOptions{Addr: "127.0.0.1:1", Clients: 1, Requests: 1, Pipeline: 1}
	cases := map[string]func(*BenchmarkOptions){
		"no port":          func(o *BenchmarkOptions) { o.Addr = "127.0.0.1" },
		"no clients":       func(o *BenchmarkOptions) { o.Clients = 0 },
		"no requests":      func(o *BenchmarkOptions) { o.Requests = 0 },
		"no pipeline":      func(o *BenchmarkOptions) { o.Pipeline = 0 },
		"negative -r":      func(o *BenchmarkOptions) { o.Keyspace = -1 },
		"negative -d":      func(o *BenchmarkOptions) { o.DataSize = -1 },
		"empty test":       func(o *BenchmarkOptions) { o.Tests = []string{""} },
		"two tests in one": func(o *BenchmarkOptions) { o.Tests = []string{"set,get"} },
	}
	for name, mutate := range cases {
		o := valid
		mutate(&o)
		assert.Error(t, o.Validate(), name)
	}
}

func TestBenchmarkErrorQuotesTheOffendingOutput(t *testing.T) {
	opts := BenchmarkOptions{Addr: "127.0.0.1:7001", Clients: 5, Requests: 100, Pipeline: 1, Password: "s3cret"}
	err := &BenchmarkError{Args: opts.args(true), ExitCode: 1, Stderr: string(readTestdata(t, "noauth.stderr"))}
	msg := err.Error()
	assert.Contains(t, msg, "exited with status 1")
	assert.Contains(t, msg, "NOAUTH Authentication required.")
	assert.NotContains(t, msg, "s3cret")

	onlyStdout := &BenchmarkError{ExitCode: 1, Stdout: "something on stdout"}
	assert.Contains(t, onlyStdout.Error(), "something on stdout")
	huge := &BenchmarkError{ExitCode: 1, Stderr: strings.Repeat("x", 10*maxErrorOutput)}
	assert.Less(t, len(huge.Error()), 2*maxErrorOutput)
}

// fakeServer serves scripted replies with redcon on a free loopback port.
func fakeServer(t *testing.T, handler func(conn redcon.Conn, cmd redcon.Command)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := redcon.NewServer(ln.Addr().String(), handler, nil, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// setGetHandler answers like a server holding nothing: setReply for SET,
// nil for GET, OK for any AUTH, and an empty CONFIG GET.
func setGetHandler(setReply func(conn redcon.Conn)) func(redcon.Conn, redcon.Command) {
	return func(conn redcon.Conn, cmd redcon.Command) {
		switch strings.ToUpper(string(cmd.Args[0])) {
		case "SET":
			setReply(conn)
		case "GET":
			conn.WriteNull()
		case "AUTH":
			conn.WriteString("OK")
		case "CONFIG":
			conn.WriteArray(0)
		default:
			conn.WriteError("ERR unknown command '" + string(cmd.Args[0]) + "'")
		}
	}
}

func TestRunRedisBenchmarkParsesARun(t *testing.T) {
	RequireBinary(t, "redis-benchmark")
	addr := fakeServer(t, setGetHandler(func(conn redcon.Conn) { conn.WriteString("OK") }))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := RunRedisBenchmark(ctx, BenchmarkOptions{Addr: addr, Clients: 2, Requests: 200, Pipeline: 4,
		Keyspace: 100, Tests: []string{"set", "get"}})
	require.NoError(t, err, "stderr: %s", res.Stderr)
	assert.Equal(t, 0, res.ExitCode)
	for _, name := range []string{"SET", "get"} {
		tr, ok := res.Test(name)
		if assert.True(t, ok, name) {
			assert.Positive(t, tr.RequestsPerSec, name)
		}
	}
	_, ok := res.Test("INCR")
	assert.False(t, ok)
}

func TestRunRedisBenchmarkFailsOnAnErrorReply(t *testing.T) {
	RequireBinary(t, "redis-benchmark")
	addr := fakeServer(t, setGetHandler(func(conn redcon.Conn) { conn.WriteError("TRYAGAIN scripted failure") }))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := RunRedisBenchmark(ctx, BenchmarkOptions{Addr: addr, Clients: 2, Requests: 100, Pipeline: 1,
		Tests: []string{"set"}, Password: "pw"})
	var benchErr *BenchmarkError
	require.ErrorAs(t, err, &benchErr)
	assert.Equal(t, 1, benchErr.ExitCode)
	assert.Equal(t, 1, res.ExitCode)
	assert.Contains(t, err.Error(), "TRYAGAIN scripted failure")
	assert.Contains(t, benchErr.Args, "***")
	assert.Empty(t, res.Tests)
}

func TestRunRedisBenchmarkRefusesAnUnreachableAddress(t *testing.T) {
	RequireBinary(t, "redis-benchmark")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = RunRedisBenchmark(ctx, BenchmarkOptions{Addr: addr, Clients: 1, Requests: 1, Pipeline: 1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not reachable")
	assert.NoError(t, ctx.Err(), "it must fail at once, not hang until the deadline")
}

func TestRunRedisBenchmarkStopsWithItsContext(t *testing.T) {
	RequireBinary(t, "redis-benchmark")
	// A server that never answers SET keeps redis-benchmark waiting forever.
	addr := fakeServer(t, setGetHandler(func(redcon.Conn) {}))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := RunRedisBenchmark(ctx, BenchmarkOptions{Addr: addr, Clients: 1, Requests: 10, Pipeline: 1,
		Tests: []string{"set"}})
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
}

func TestRunRedisBenchmarkReportsAMissingBinary(t *testing.T) {
	_, err := RunRedisBenchmark(context.Background(), BenchmarkOptions{Binary: "/nonexistent/redis-benchmark",
		Addr: "127.0.0.1:1", Clients: 1, Requests: 1, Pipeline: 1})
	assert.ErrorIs(t, err, ErrBinaryMissing)
}
