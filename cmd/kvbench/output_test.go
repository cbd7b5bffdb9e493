package main

import (
	"bytes"
	"context"
	"encoding/csv"
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

	"kvproxy/bench/loadgen"
)

// requireJSONReport parses a -json document and checks its shape: every
// target that completed a round has a row per metric, rows have as many
// samples as their target's rounds.
func requireJSONReport(t *testing.T, data []byte, command string, complete bool) jsonReport {
	t.Helper()
	var doc jsonReport
	require.NoError(t, json.Unmarshal(data, &doc), "%s", data)
	assert.Equal(t, command, doc.Command)
	assert.Equal(t, complete, doc.Complete)
	assert.Equal(t, complete, doc.Error == "", doc.Error)
	assert.Equal(t, loadgen.TargetDirect, doc.Baseline)
	require.NotEmpty(t, doc.Metrics)
	for _, row := range doc.Metrics {
		assert.Contains(t, doc.Targets, row.Target)
		assert.Len(t, row.Samples, doc.Rounds[row.Target], "%s %s", row.Target, row.Metric)
		if row.Target == loadgen.TargetDirect {
			assert.Nil(t, row.RatioToBaseline, row.Metric)
		}
	}
	return doc
}

// requireCSVReport parses a -csv output: the header, then one well-formed
// row per metric and target.
func requireCSVReport(t *testing.T, data []byte) [][]string {
	t.Helper()
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	require.NoError(t, err, "%s", data)
	require.Greater(t, len(records), 1)
	assert.Equal(t, csvHeader, records[0])
	for _, rec := range records[1:] {
		rounds, err := strconv.Atoi(rec[2])
		require.NoError(t, err, rec)
		assert.Positive(t, rounds, rec)
		for _, cell := range rec[3:6] {
			_, err := strconv.ParseFloat(cell, 64)
			assert.NoError(t, err, rec)
		}
		if rec[6] != "" {
			_, err := strconv.ParseFloat(rec[6], 64)
			assert.NoError(t, err, rec)
		}
	}
	return records
}

func requirePNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Positive(t, img.Bounds().Dx())
}

func TestWriteCSVAndJSON(t *testing.T) {
	cmp := &loadgen.Comparison{
		Targets:  []string{"direct", "kvproxy"},
		Baseline: "direct",
		Samples: map[string]map[string][]float64{
			"direct":  {"a": {1, 3}, "b, with comma": {0, 0}},
			"kvproxy": {"a": {2, 2}, "b, with comma": {1, 1}},
		},
		Medians: map[string]loadgen.Metrics{"direct": {"a": 2, "b, with comma": 0}, "kvproxy": {"a": 2, "b, with comma": 1}},
		Ratios:  map[string]loadgen.Metrics{"direct": {"a": 1}, "kvproxy": {"a": 1}},
	}
	rows := comparisonRows(cmp, []string{"a", "b, with comma"}, func(target, metric string) bool {
		return target == "direct" && metric == "b, with comma"
	})
	require.Len(t, rows, 3)
	var out bytes.Buffer
	require.NoError(t, writeCSV(&out, rows))
	assert.Equal(t, strings.Join([]string{
		"metric,target,rounds,median,min,max,ratio_to_baseline",
		"a,direct,2,2,1,3,",
		"a,kvproxy,2,2,2,2,1",
		`"b, with comma",kvproxy,2,1,1,1,`,
		"",
	}, "\n"), out.String())
	requireCSVReport(t, out.Bytes())

	doc := newJSONReport("x", map[string]int{"rounds": 2}, cmp, nil)
	doc.Metrics = rows
	out.Reset()
	require.NoError(t, writeJSON(&out, doc))
	requireJSONReport(t, out.Bytes(), "x", true)

	png := filepath.Join(t.TempDir(), "chart.png")
	require.NoError(t, drawBarChart(png, doc, []string{"a", "b, with comma"}, "title", "unit"))
	requirePNG(t, png)
}

func TestReportFilesValidate(t *testing.T) {
	assert.NoError(t, (&reportFiles{json: "-", csv: "x.csv", png: "x.png"}).validate())
	assert.Error(t, (&reportFiles{json: "-", csv: "-"}).validate())
	assert.Error(t, (&reportFiles{png: "-"}).validate())
}

// cancelAfter is an io.Writer for a run's stderr that cancels the run once
// it printed a progress line, as Ctrl-C would.
type cancelAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), "kvbench: round 1/") {
		w.cancel()
	}
	return len(p), nil
}

// runInterrupted runs kvbench until its first progress line, then cancels
// it, and checks that it left no child process.
func runInterrupted(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	errOut := &cancelAfter{cancel: cancel}
	var out bytes.Buffer
	code = run(ctx, args, &out, errOut)
	assert.Empty(t, childProcesses(t), "child processes left behind")
	return code, out.String(), errOut.buf.String()
}

// childProcesses lists this process's children, by their command.
func childProcesses(t *testing.T) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(t, err)
	self := strconv.Itoa(os.Getpid())
	var children []string
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		stat := string(b)
		end := strings.LastIndexByte(stat, ')')
		if end < 0 {
			continue
		}
		fields := strings.Fields(stat[end+1:])
		if len(fields) > 1 && fields[1] == self {
			children = append(children, stat[:end+1])
		}
	}
	return children
}

// assertUsageErrors checks that each case's flags make subcommand exit with
// the usage status, printing only on stderr.
func assertUsageErrors(t *testing.T, subcommand string, cases map[string][]string) {
	t.Helper()
	for name, args := range cases {
		code, stdout, stderr := runKvbench(t, append([]string{subcommand}, args...)...)
		assert.Equal(t, exitUsage, code, name)
		assert.Empty(t, stdout, name)
		assert.NotEmpty(t, stderr, name)
	}
}

// kvproxyBuild is the kvproxy binary the package's tests share, built once
// into kvproxyDir (removed by TestMain).
var kvproxyBuild struct {
	once sync.Once
	bin  string
	err  error
}

var kvproxyDir string

func buildKvproxy(t *testing.T) string {
	t.Helper()
	loadgen.RequireBinary(t, "go")
	kvproxyBuild.once.Do(func() {
		if kvproxyDir, kvproxyBuild.err = os.MkdirTemp("", "kvbench-test-"); kvproxyBuild.err == nil {
			kvproxyBuild.bin, kvproxyBuild.err = loadgen.BuildKvproxy(context.Background(), kvproxyDir)
		}
	})
	require.NoError(t, kvproxyBuild.err)
	return kvproxyBuild.bin
}

func requireBenchBinaries(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-benchmark", "nutcracker"} {
		loadgen.RequireBinary(t, bin)
	}
}
