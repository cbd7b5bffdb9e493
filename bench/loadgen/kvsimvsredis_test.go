package loadgen

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartKvsimMasterServesEverySlot(t *testing.T) {
	ctx := testContext(t)
	node, err := StartKvsimMaster(ctx)
	require.NoError(t, err)
	t.Cleanup(node.Kill)

	client := redis.NewClient(&redis.Options{Addr: node.Addr(), Protocol: 2})
	t.Cleanup(func() { client.Close() })
	assert.Equal(t, "1", client.Do(ctx, "CLUSTERX", "VERSION").Val())
	assert.Equal(t, node.ID(), client.Do(ctx, "CLUSTERX", "MYID").Val())
	// Keys in slots 0, 8000 and 16383.
	for _, key := range []string{"{06S}", "{42}", "{apX}"} {
		require.NoError(t, client.Set(ctx, key, "v", 0).Err(), key)
		assert.Equal(t, "v", client.Get(ctx, key).Val(), key)
	}
}

func TestKvsimVsRedisConfigValidate(t *testing.T) {
	require.NoError(t, DefaultKvsimVsRedisConfig().Validate())
	cases := map[string]func(*KvsimVsRedisConfig){
		"no rounds":       func(c *KvsimVsRedisConfig) { c.Rounds = 0 },
		"no clients":      func(c *KvsimVsRedisConfig) { c.Clients = 0 },
		"no requests":     func(c *KvsimVsRedisConfig) { c.Requests = 0 },
		"negative -r":     func(c *KvsimVsRedisConfig) { c.Keyspace = -1 },
		"no pipelines":    func(c *KvsimVsRedisConfig) { c.Pipelines = nil },
		"pipeline 0":      func(c *KvsimVsRedisConfig) { c.Pipelines = []int{16, 0} },
		"no tests":        func(c *KvsimVsRedisConfig) { c.Tests = nil },
		"two tests glued": func(c *KvsimVsRedisConfig) { c.Tests = []string{"set,get"} },
		"zero target":     func(c *KvsimVsRedisConfig) { c.Target = 0 },
	}
	for name, mutate := range cases {
		cfg := DefaultKvsimVsRedisConfig()
		mutate(&cfg)
		assert.Error(t, cfg.Validate(), name)
	}
}

func TestKvsimVsRedisVerdict(t *testing.T) {
	r := &KvsimVsRedisReport{Config: KvsimVsRedisConfig{Target: 0.5}, Worst: "GET -P 16 req/s", WorstRatio: 0.61}
	assert.True(t, r.Pass())
	assert.Equal(t, "verdict: PASS: kvsim reaches 0.61x redis-server at worst (GET -P 16 req/s), target 0.50x",
		r.Verdict())
	r.WorstRatio = 0.49
	assert.False(t, r.Pass())
	assert.True(t, strings.HasPrefix(r.Verdict(), "verdict: FAIL: kvsim reaches 0.49x"), r.Verdict())
}

func TestRunKvsimVsRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	RequireBinary(t, "redis-server")
	RequireBinary(t, "redis-benchmark")
	cfg := KvsimVsRedisConfig{Rounds: 2, Clients: 10, Requests: 2000, Keyspace: 1000, Pipelines: []int{8, 1},
		Tests: []string{"set", "get"}, Target: 0.5}
	report, err := RunKvsimVsRedis(testContext(t), cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"SET -P 8 req/s", "GET -P 8 req/s", "SET -P 1 req/s", "GET -P 1 req/s"},
		report.Throughput)
	assert.Equal(t, []string{"-P 8 cpu us/req", "-P 1 cpu us/req"}, report.CPU)
	for _, name := range report.Throughput {
		for _, target := range []string{TargetRedis, TargetKvsim} {
			assert.Len(t, report.Comparison.Samples[target][name], 2, "%s %s", target, name)
			assert.Positive(t, report.Comparison.Medians[target][name], "%s %s", target, name)
		}
		assert.Positive(t, report.Comparison.Ratios[TargetKvsim][name], name)
		assert.GreaterOrEqual(t, report.Comparison.Ratios[TargetKvsim][name], report.WorstRatio, name)
	}
	assert.Contains(t, report.Throughput, report.Worst)
	assert.Contains(t, report.Verdict(), report.Worst)
}

// BenchmarkKvsimVsRedis runs the project's kvsim vs redis-server comparison
// (DefaultKvsimVsRedisConfig) once per iteration and reports the last one's
// kvsim/redis ratios of requests/s (higher is better for kvsim) and of CPU
// per request (lower is better).
func BenchmarkKvsimVsRedis(b *testing.B) {
	RequireBinary(b, "redis-server")
	RequireBinary(b, "redis-benchmark")
	cfg := DefaultKvsimVsRedisConfig()
	var report *KvsimVsRedisReport
	for b.Loop() {
		var err error
		report, err = RunKvsimVsRedis(b.Context(), cfg)
		require.NoError(b, err)
	}
	ratios := report.Comparison.Ratios[TargetKvsim]
	for _, pipeline := range cfg.Pipelines {
		for _, test := range cfg.Tests {
			b.ReportMetric(ratios[ThroughputMetric(test, pipeline)], fmt.Sprintf("kvsim/redis-%s-P%d", test, pipeline))
		}
		if ratio, ok := ratios[CPUMetric(pipeline)]; ok {
			b.ReportMetric(ratio, fmt.Sprintf("kvsim/redis-cpu-P%d", pipeline))
		}
	}
	b.ReportMetric(0, "ns/op") // one op is a whole comparison: its duration says nothing
	b.Log(report.Verdict())
}
