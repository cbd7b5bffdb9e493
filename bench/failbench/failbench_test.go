package failbench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

func TestHistogramQuantilesWithinItsPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var all []time.Duration
	for range 20000 {
		d := time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond))
		h.add(d, 1)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := all[int(q*float64(len(all)))-1]
		got := h.quantile(q)
		assert.InEpsilon(t, float64(exact), float64(got), 0.07, "q=%v exact %v got %v", q, exact, got)
	}
	assert.Equal(t, all[len(all)-1], h.max)
	assert.Equal(t, h.max, h.quantile(1))
	var empty histogram
	assert.Zero(t, empty.quantile(0.99))
}

func TestHistogramBinsAreOrderedAndCoverEveryLatency(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<20; us += 1 + us/64 {
		bin := histBin(us)
		require.GreaterOrEqual(t, bin, prev, "us=%d", us)
		require.LessOrEqual(t, histLow(bin), us, "us=%d bin=%d", us, bin)
		if bin+1 < histBins {
			require.Greater(t, histLow(bin+1), us, "us=%d bin=%d", us, bin)
		}
		prev = bin
	}
	assert.Equal(t, histBins-1, histBin(1<<40))
	var h histogram
	h.add(time.Hour, 3)
	assert.Equal(t, time.Hour, h.quantile(0.5))
}

func TestRecorderFilesRequestsByWindowClassAndFailover(t *testing.T) {
	start := time.Now()
	rec := newRecorder(start, 1)
	write := func(shard int) outcome { return outcome{shard: shard, write: true} }
	read := func(shard int) outcome { return outcome{shard: shard} }

	st := rec.snapshot()
	rec.record(start, time.Millisecond, st, []outcome{write(1), read(1), read(0), {shard: 1, write: true, err: errors.New("boom")}})
	// A batch sent before the failover but answered during it belongs to it.
	st = rec.snapshot()
	rec.begin(0, 1)
	rec.record(start.Add(15*time.Millisecond), 200*time.Millisecond, st, []outcome{write(1)})
	st = rec.snapshot()
	rec.record(start.Add(20*time.Millisecond), 2*time.Millisecond, st, []outcome{read(2)})
	rec.end(0, 1)
	st = rec.snapshot()
	rec.record(start.Add(250*time.Millisecond), time.Millisecond, st, []outcome{write(1), write(0)})

	count := func(w Window, c Class) uint64 { return rec.windows[w][c].total }
	assert.Equal(t, uint64(1), count(WindowBefore, ClassShardWrite))
	assert.Equal(t, uint64(1), count(WindowBefore, ClassShardRead))
	assert.Equal(t, uint64(1), count(WindowBefore, ClassOtherShard))
	assert.Equal(t, uint64(1), count(WindowDuring, ClassShardWrite))
	assert.Equal(t, uint64(1), count(WindowDuring, ClassOtherShard))
	assert.Equal(t, uint64(1), count(WindowAfter, ClassShardWrite))
	assert.Equal(t, uint64(1), count(WindowAfter, ClassOtherShard))
	require.Len(t, rec.failovers, 1)
	assert.Equal(t, 200*time.Millisecond, rec.failovers[0][ClassShardWrite].max)
	assert.Equal(t, uint64(1), rec.errTotal)
	assert.Equal(t, map[string]uint64{"network": 1}, rec.errors)
	require.Len(t, rec.buckets, 26)
	assert.Equal(t, Bucket{OK: 3, Errors: 1, MaxMs: 1}, rec.buckets[0])
	assert.Equal(t, Bucket{OK: 1, MaxMs: 200}, rec.buckets[1])
	assert.Equal(t, uint32(2), rec.buckets[25].OK)
	require.Len(t, rec.slots, 3)
	assert.Equal(t, uint64(5), rec.slots[0].total)
}

// replyError is an error reply, as go-redis returns one.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func TestErrorKind(t *testing.T) {
	assert.Equal(t, "TRYAGAIN", errorKind(fmt.Errorf("wrapped: %w", replyError("TRYAGAIN Multiple keys request during rehashing of slot"))))
	assert.Equal(t, "timeout", errorKind(fmt.Errorf("read: %w", os.ErrDeadlineExceeded)))
	assert.Equal(t, "network", errorKind(errors.New("connection reset")))
}

func TestShardsOfClusterSlots(t *testing.T) {
	n := func(id string) redis.ClusterNode { return redis.ClusterNode{ID: id, Addr: id + ":1"} }
	ranges := []redis.ClusterSlot{
		{Start: 10000, End: 16383, Nodes: []redis.ClusterNode{n("b"), n("b2")}},
		{Start: 0, End: 4999, Nodes: []redis.ClusterNode{n("a"), n("a2")}},
		{Start: 5000, End: 9999, Nodes: []redis.ClusterNode{n("b"), n("b2")}},
	}
	shards, shardOf, err := shardsOf(ranges)
	require.NoError(t, err)
	assert.Equal(t, []shard{
		{FirstSlot: 0, Master: node{"a", "a:1"}, Replica: node{"a2", "a2:1"}},
		{FirstSlot: 5000, Master: node{"b", "b:1"}, Replica: node{"b2", "b2:1"}},
	}, shards)
	assert.Equal(t, 0, shardOf[4999])
	assert.Equal(t, 1, shardOf[5000])
	assert.Equal(t, 1, shardOf[16383])

	_, _, err = shardsOf(ranges[1:])
	assert.ErrorContains(t, err, "slot 10000 has no master")
	_, _, err = shardsOf([]redis.ClusterSlot{{Start: 0, End: 16383, Nodes: []redis.ClusterNode{n("a")}}})
	assert.ErrorContains(t, err, "no replica")
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	cases := map[string]func(*Config){
		"unknown backend":      func(c *Config) { c.Backend = "mongo" },
		"trigger vs backend":   func(c *Config) { c.Backend, c.Trigger = BackendRedis, TriggerPause },
		"target without seeds": func(c *Config) { c.Target = "127.0.0.1:1" },
		"seeds without target": func(c *Config) { c.Cluster = []string{"127.0.0.1:1"} },
		"kvsim trigger target": func(c *Config) {
			c.Target, c.Cluster = "127.0.0.1:1", []string{"127.0.0.1:2"}
			c.Trigger = TriggerController
		},
		"zero repeat":       func(c *Config) { c.Repeat = 0 },
		"zero interval":     func(c *Config) { c.Repeat, c.Interval = 2, 0 },
		"too long":          func(c *Config) { c.Repeat, c.Interval = 1000, 10*time.Second },
		"reads over 1":      func(c *Config) { c.Reads = 1.5 },
		"zero value size":   func(c *Config) { c.ValueSize = 0 },
		"zero clients":      func(c *Config) { c.Clients = 0 },
		"zero pipeline":     func(c *Config) { c.Pipeline = 0 },
		"zero keys":         func(c *Config) { c.Keys = 0 },
		"zero at":           func(c *Config) { c.At = 0 },
		"zero tail":         func(c *Config) { c.Tail = 0 },
		"benchmark clients": func(c *Config) { c.BenchmarkClients = 0 },
		"zero shards":       func(c *Config) { c.Shards = 0 },
	}
	for name, mutate := range cases {
		c := DefaultConfig()
		mutate(&c)
		assert.Error(t, c.Validate(), name)
	}
	c := DefaultConfig()
	c.Target, c.Cluster, c.Trigger = "127.0.0.1:1", []string{"127.0.0.1:2"}, TriggerRedis
	assert.NoError(t, c.Validate())
}

func TestParseShardLine(t *testing.T) {
	fields := parseShardLine("master=127.0.0.1:1,replicas=127.0.0.1:2|127.0.0.1:3,phase=success,last_pause_ms=201,junk")
	assert.Equal(t, map[string]string{"master": "127.0.0.1:1", "replicas": "127.0.0.1:2|127.0.0.1:3",
		"phase": "success", "last_pause_ms": "201"}, fields)
}

func FuzzParseShardLine(f *testing.F) {
	f.Add("master=127.0.0.1:1,replicas=-,slots=0-5460,phase=success,following=0,last_pause_ms=201")
	f.Add("a=b=c,,=,x")
	f.Fuzz(func(t *testing.T, line string) {
		fields := strings.Split(line, ",")
		for k, v := range parseShardLine(line) {
			if !slices.Contains(fields, k+"="+v) {
				t.Fatalf("%q=%q is no field of %q", k, v, line)
			}
		}
	})
}

func TestBenchmarkErrorLines(t *testing.T) {
	assert.Equal(t, []string{"boom"}, benchmarkErrorLines(errors.New("boom")))
	exit := &loadgen.BenchmarkError{ExitCode: 1, Stderr: "Error from server: TRYAGAIN x\nother\n  Error: Connection reset by peer\n"}
	assert.Equal(t, []string{"Error from server: TRYAGAIN x", "Error: Connection reset by peer"}, benchmarkErrorLines(fmt.Errorf("run: %w", exit)))
	silent := &loadgen.BenchmarkError{ExitCode: 1}
	assert.Equal(t, []string{silent.Error()}, benchmarkErrorLines(silent))
}
