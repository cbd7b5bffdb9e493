package loadgen

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProxyConfigValidate(t *testing.T) {
	require.NoError(t, DefaultProxyConfig().Validate())
	cases := map[string]func(*ProxyConfig){
		"no rounds":              func(c *ProxyConfig) { c.Rounds = 0 },
		"no clients":             func(c *ProxyConfig) { c.Clients = 0 },
		"negative -r":            func(c *ProxyConfig) { c.Keyspace = -1 },
		"no pipelines":           func(c *ProxyConfig) { c.Pipelines, c.Requests = nil, nil },
		"pipeline 0":             func(c *ProxyConfig) { c.Pipelines = []int{16, 0} },
		"pipeline twice":         func(c *ProxyConfig) { c.Pipelines = []int{16, 16} },
		"requests per pipeline":  func(c *ProxyConfig) { c.Requests = []int{1000} },
		"zero requests":          func(c *ProxyConfig) { c.Requests = []int{1000, 0} },
		"no tests":               func(c *ProxyConfig) { c.Tests = nil },
		"two tests glued":        func(c *ProxyConfig) { c.Tests = []string{"set,get"} },
		"goal vs unknown peer":   func(c *ProxyConfig) { c.Goals[0].Peer = TargetKvproxy },
		"goal at unmeasured -P":  func(c *ProxyConfig) { c.Goals[1].Pipeline = 8 },
		"goal ratio 0":           func(c *ProxyConfig) { c.Goals[0].MinRatio = 0 },
		"goal ratio NaN":         func(c *ProxyConfig) { c.Goals[0].MinRatio = math.NaN() },
		"goal ratio is infinite": func(c *ProxyConfig) { c.Goals[0].MinRatio = math.Inf(1) },
	}
	for name, mutate := range cases {
		cfg := DefaultProxyConfig()
		mutate(&cfg)
		assert.Error(t, cfg.Validate(), name)
	}
	noGoals := DefaultProxyConfig()
	noGoals.Goals = nil
	assert.NoError(t, noGoals.Validate(), "goals are optional")
}

func TestGoalResultVerdict(t *testing.T) {
	g := GoalResult{Goal: ProxyGoal{Peer: TargetTwemproxy, Pipeline: 16, MinRatio: 1.3},
		Worst: "GET -P 16 req/s", Ratio: 1.3}
	assert.True(t, g.Pass())
	assert.Equal(t, "verdict: PASS: at -P 16 kvproxy reaches 1.30x twemproxy at worst (GET -P 16 req/s), target 1.30x",
		g.Verdict())
	g.Ratio = 1.29
	assert.False(t, g.Pass())
	assert.Equal(t, "verdict: FAIL: at -P 16 kvproxy reaches 1.29x twemproxy at worst (GET -P 16 req/s), target 1.30x",
		g.Verdict())
}

func TestNewProxyReport(t *testing.T) {
	cfg := DefaultProxyConfig()
	set16, get16 := ThroughputMetric("set", 16), ThroughputMetric("get", 16)
	set1, get1 := ThroughputMetric("set", 1), ThroughputMetric("get", 1)
	cmp := &Comparison{Medians: map[string]Metrics{
		TargetDirect:    {set16: 800, get16: 1000, set1: 100, get1: 100, ProxyCPUMetric(16): 0},
		TargetKvproxy:   {set16: 600, get16: 500, set1: 70, get1: 55, ProxyCPUMetric(16): 3},
		TargetTwemproxy: {set16: 400, get16: 400, set1: 80, get1: 90, ProxyCPUMetric(16): 8},
	}}
	r, err := newProxyReport(cfg, cmp, true)
	require.NoError(t, err)
	assert.Equal(t, []string{set16, get16, set1, get1}, r.Throughput)
	assert.Equal(t, []string{ProxyCPUMetric(16), ServerCPUMetric(16), IdleMetric(16), MachineCPUMetric(16),
		ProxyCPUMetric(1), ServerCPUMetric(1), IdleMetric(1), MachineCPUMetric(1), ProxyCPUWholeRunMetric}, r.CPU)
	assert.InDelta(t, 1.5, r.VsTwemproxy[set16], 1e-9)
	assert.InDelta(t, 0.375, r.VsTwemproxy[ProxyCPUMetric(16)], 1e-9)

	require.Len(t, r.Goals, 2)
	assert.Equal(t, get16, r.Goals[0].Worst)
	assert.InDelta(t, 1.25, r.Goals[0].Ratio, 1e-9)
	assert.False(t, r.Goals[0].Pass(), "1.25x twemproxy misses 1.3x")
	assert.Equal(t, get1, r.Goals[1].Worst)
	assert.InDelta(t, 0.55, r.Goals[1].Ratio, 1e-9)
	assert.False(t, r.Pass())
	assert.Len(t, r.Verdicts(), 2)

	cmp.Medians[TargetKvproxy][get16] = 600
	cmp.Medians[TargetKvproxy][get1] = 65
	r, err = newProxyReport(cfg, cmp, true)
	require.NoError(t, err)
	assert.True(t, r.Pass(), r.Verdicts())

	cmp.Medians[TargetTwemproxy][get16] = 0
	_, err = newProxyReport(cfg, cmp, true)
	assert.ErrorContains(t, err, "twemproxy measured 0 GET -P 16 req/s")
}

func TestInfoInt(t *testing.T) {
	info := "# Stats\r\ntotal_connections_received:12\r\ntotal_commands_processed:3456\r\ninstantaneous_ops_per_sec:0\r\n"
	n, err := infoInt(info, "total_commands_processed")
	require.NoError(t, err)
	assert.Equal(t, int64(3456), n)
	_, err = infoInt(info, "total_commands")
	assert.ErrorContains(t, err, "no field total_commands")
	_, err = infoInt("total_commands_processed:x\r\n", "total_commands_processed")
	assert.Error(t, err)
}

// FuzzInfoInt reads arbitrary INFO text: a value found comes from a line
// naming the field, and a field on a line of its own before the text is
// found, with its value, whatever the text holds.
func FuzzInfoInt(f *testing.F) {
	f.Add("# Stats\r\ntotal_connections_received:12\r\ntotal_commands_processed:3456\r\ninstantaneous_ops_per_sec:0\r\n", int64(3456))
	f.Add("total_commands_processed:x\r\n", int64(-1))
	f.Add("total_commands_processed:99999999999999999999\n", int64(0))
	f.Add("  total_commands_processed:+7  \n", int64(1<<62))
	f.Add(strings.Repeat("x", 70000)+"\ntotal_commands_processed:1\n", int64(1))
	const name = "total_commands_processed"
	f.Fuzz(func(t *testing.T, info string, value int64) {
		if _, err := infoInt(info, name); err == nil {
			require.Contains(t, info, name+":")
		}
		got, err := infoInt(name+":"+strconv.FormatInt(value, 10)+"\r\n"+info, name)
		require.NoError(t, err)
		require.Equal(t, value, got)
	})
}

// startProxyBenchWithoutKvproxy starts a cluster-enabled redis-server and
// twemproxy in front of it, and a proxyBench over both.
func startProxyBenchWithoutKvproxy(t *testing.T, cfg ProxyConfig) *proxyBench {
	t.Helper()
	RequireBinary(t, "redis-benchmark")
	server := StartRedis(t, RedisOptions{Cluster: true})
	twemproxy := StartTwemproxy(t, TwemproxyOptions{Servers: []string{server.Addr()}})
	bench := newProxyBench(cfg, server)
	t.Cleanup(bench.close)
	bench.addTarget(TargetDirect, server.Addr(), 0)
	bench.addTarget(TargetTwemproxy, twemproxy.Addr(), twemproxy.Pid())
	return bench
}

func tinyProxyConfig() ProxyConfig {
	return ProxyConfig{Rounds: 1, Clients: 10, Keyspace: 1000, Pipelines: []int{4, 1}, Requests: []int{4000, 2000},
		Tests: []string{"set", "get"}, Goals: []ProxyGoal{
			{Peer: TargetTwemproxy, Pipeline: 4, MinRatio: 1.3},
			{Peer: TargetDirect, Pipeline: 1, MinRatio: 0.6},
		}}
}

func TestProxyBenchMeasuresDirectAndTwemproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := tinyProxyConfig()
	bench := startProxyBenchWithoutKvproxy(t, cfg)
	ctx := testContext(t)
	targets := []string{TargetDirect, TargetTwemproxy}
	require.NoError(t, bench.warmUp(ctx, targets))
	for _, target := range targets {
		m, err := bench.measure(ctx, target)
		require.NoError(t, err, target)
		for _, pipeline := range cfg.Pipelines {
			for _, test := range cfg.Tests {
				assert.Positive(t, m[ThroughputMetric(test, pipeline)], "%s %s -P %d", target, test, pipeline)
			}
			// Runs this short may fall within one clock tick, so CPU may
			// read 0: only its presence is checked.
			assert.Contains(t, m, ProxyCPUMetric(pipeline), target)
			assert.Contains(t, m, ServerCPUMetric(pipeline), target)
			assert.GreaterOrEqual(t, m[IdleMetric(pipeline)], 0.0, target)
			assert.LessOrEqual(t, m[IdleMetric(pipeline)], 100.0, target)
			assert.GreaterOrEqual(t, m[MachineCPUMetric(pipeline)], 0.0, target)
		}
		require.Greater(t, len(cfg.Pipelines), 1)
		assert.Contains(t, m, ProxyCPUWholeRunMetric, target)
		assert.Len(t, m, len(cfg.Pipelines)*(3*len(cfg.Tests)+4)+1, "%s: %v", target, m)
	}
	direct, err := bench.measure(ctx, TargetDirect)
	require.NoError(t, err)
	assert.Zero(t, direct[ProxyCPUMetric(1)], "the direct target has no proxy")
	assert.Zero(t, direct[ProxyCPUWholeRunMetric], "the direct target has no proxy")
}

func TestProxyBenchRejectsATargetThatDoesNotForward(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := tinyProxyConfig()
	bench := startProxyBenchWithoutKvproxy(t, cfg)
	// A separate redis-server answers every request without the measured
	// server seeing any, as a proxy that does not forward would.
	elsewhere := StartRedis(t, RedisOptions{})
	bench.addTarget("elsewhere", elsewhere.Addr(), elsewhere.Pid())
	_, err := bench.measure(testContext(t), "elsewhere")
	assert.ErrorContains(t, err, "while elsewhere was sent 8000 requests at -P 4")
}

func TestRunProxyComparison(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	RequireBinary(t, "redis-server")
	RequireBinary(t, "redis-benchmark")
	RequireBinary(t, "nutcracker")
	cfg := tinyProxyConfig()
	cfg.KvproxyBinary = kvproxyBuild.Binary(t)
	report, err := RunProxyComparison(testContext(t), cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"SET -P 4 req/s", "GET -P 4 req/s", "SET -P 1 req/s", "GET -P 1 req/s"},
		report.Throughput)
	for _, name := range report.Throughput {
		for _, target := range []string{TargetDirect, TargetKvproxy, TargetTwemproxy} {
			assert.Len(t, report.Comparison.Samples[target][name], 1, "%s %s", target, name)
			assert.Positive(t, report.Comparison.Medians[target][name], "%s %s", target, name)
		}
		assert.Positive(t, report.VsTwemproxy[name], name)
	}
	require.Len(t, report.Goals, 2)
	for i, g := range report.Goals {
		assert.Equal(t, cfg.Goals[i], g.Goal)
		assert.Contains(t, report.Throughput, g.Worst)
		assert.Positive(t, g.Ratio)
	}
	assert.Len(t, report.Verdicts(), 2)
}

// BenchmarkProxyVsPeers runs the acceptance comparison (DefaultProxyConfig:
// redis-server directly, through kvproxy and through twemproxy) once per
// iteration and reports the last one's requests/s ratios (kvproxy/direct and
// kvproxy/twemproxy, higher is better for kvproxy) and both proxies' CPU
// microseconds per request (lower is better).
func BenchmarkProxyVsPeers(b *testing.B) {
	RequireBinary(b, "redis-server")
	RequireBinary(b, "redis-benchmark")
	RequireBinary(b, "nutcracker")
	RequireBinary(b, "go")
	cfg := DefaultProxyConfig()
	var err error
	cfg.KvproxyBinary, err = BuildKvproxy(b.Context(), b.TempDir())
	require.NoError(b, err)
	var report *ProxyReport
	for b.Loop() {
		report, err = RunProxyComparison(b.Context(), cfg)
		require.NoError(b, err)
	}
	medians := report.Comparison.Medians
	for _, pipeline := range cfg.Pipelines {
		for _, test := range cfg.Tests {
			name := ThroughputMetric(test, pipeline)
			b.ReportMetric(report.Comparison.Ratios[TargetKvproxy][name], fmt.Sprintf("kvproxy/direct-%s-P%d", test, pipeline))
			b.ReportMetric(report.VsTwemproxy[name], fmt.Sprintf("kvproxy/twemproxy-%s-P%d", test, pipeline))
		}
		cpu := ProxyCPUMetric(pipeline)
		b.ReportMetric(medians[TargetKvproxy][cpu], fmt.Sprintf("kvproxy-cpu-us/req-P%d", pipeline))
		b.ReportMetric(medians[TargetTwemproxy][cpu], fmt.Sprintf("twemproxy-cpu-us/req-P%d", pipeline))
	}
	b.ReportMetric(0, "ns/op") // one op is a whole comparison: its duration says nothing
	for _, line := range report.Verdicts() {
		b.Log(line)
	}
}
