package soak

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/bench/kvsim"
	"kvproxy/controller"
)

// replyError builds the error go-redis returns for an error reply: a
// scripted server answers every command with it.
func replyError(t *testing.T, text string) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	defer func() {
		ln.Close()
		<-served
	}()
	go func() {
		defer close(served)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		rd := redcon.NewReader(conn)
		for {
			if _, err := rd.ReadCommand(); err != nil {
				return
			}
			if _, err := conn.Write([]byte("-" + text + "\r\n")); err != nil {
				return
			}
		}
	}()
	cl := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	err = cl.Get(t.Context(), "k").Err()
	require.NoError(t, cl.Close())
	require.Error(t, err)
	return err
}

func TestTallyCountsErrorsByKind(t *testing.T) {
	start := time.Now()
	tally := NewTally(start)
	moved := replyError(t, "MOVED 1234 127.0.0.1:7001")
	tally.Error(OpGet, moved, start.Add(2*time.Second))
	tally.Error(OpSet, replyError(t, "MOVED 99 127.0.0.1:7002"), start.Add(3*time.Second))
	tally.Error(OpExec, replyError(t, "TRYAGAIN the shard's master is failing over: the command was held and not executed, retry"), start)
	tally.Error(OpSet, fmt.Errorf("read tcp 127.0.0.1:1->127.0.0.1:2: %w", io.ErrUnexpectedEOF), start)
	tally.Error(OpSet, io.EOF, start)
	tally.Error(OpMGet, badReply("MGET of %d keys answered %d values", 8, 7), start)
	tally.Request(OpGet, 3, time.Millisecond, start.Add(time.Second))
	tally.Request(OpGet, 1, 5*time.Millisecond, start.Add(4*time.Second))
	tally.Request(OpGet, 1, 4*time.Millisecond, start.Add(5*time.Second))
	tally.Request(OpPipeline, 1, time.Millisecond, start)
	tally.Request(OpVerify, 7, time.Millisecond, start)
	tally.Request(OpSet, 2, 2*time.Millisecond, start)

	assert.Equal(t, uint64(6), tally.ErrorTotal())
	assert.Equal(t, uint64(7), tally.Commands(), "pipelines and the final check are not commands")
	requests, longest, errs, anomalies := tally.snapshot()
	assert.Equal(t, map[Op]uint64{OpGet: 5, OpSet: 2, OpPipeline: 1, OpVerify: 7}, requests)
	assert.Equal(t, Latency{5 * time.Millisecond, 4 * time.Second}, longest[OpGet])
	assert.Empty(t, anomalies)
	require.Len(t, errs, 5)
	assert.Equal(t, ErrorCount{Prefix: "MOVED", Text: "MOVED N N.N.N.N:N", Count: 2,
		First: ErrorExample{At: 2 * time.Second, Op: OpGet, Text: "MOVED 1234 127.0.0.1:7001"}}, errs[0])
	prefixes := map[string]string{}
	for _, e := range errs[1:] {
		assert.Equal(t, uint64(1), e.Count)
		prefixes[e.Text] = e.Prefix
	}
	assert.Equal(t, map[string]string{
		"TRYAGAIN the shard's master is failing over: the command was held and not executed, retry": "TRYAGAIN",
		"read tcp N.N.N.N:N->N.N.N.N:N: unexpected EOF":                                             "network",
		"EOF": "network",
		"bad reply: MGET of N keys answered N values": "reply",
	}, prefixes)
}

func TestTallyBoundsErrorKinds(t *testing.T) {
	tally := NewTally(time.Now())
	for i := range maxErrorKinds + 10 {
		tally.Error(OpGet, errors.New("failure "+string(rune('a'+i%26))+string(rune('a'+i/26))), time.Now())
	}
	_, _, errs, _ := tally.snapshot()
	assert.Len(t, errs, maxErrorKinds+1, "later kinds go to one overflow entry")
	assert.Equal(t, "(other texts)", errs[0].Text)
	assert.Equal(t, uint64(10), errs[0].Count)
	assert.Equal(t, uint64(maxErrorKinds+10), tally.ErrorTotal())
}

func TestTallyJudgesAnomalies(t *testing.T) {
	start := time.Now()
	tally := NewTally(start)
	tally.Judge(Consistent, true, OpGet, "k", "v", "v", start)
	tally.Judge(Lost, true, OpGet, "k1", "v1", "(nil)", start.Add(time.Second))
	tally.Judge(Lost, false, OpVerify, "k2", "v2", "v0", start)
	for i := range maxAnomalyExamples + 2 {
		tally.Judge(Duplicated, true, OpIncr, "n"+strconv.Itoa(i), "5", "6", start)
	}
	_, _, _, anomalies := tally.snapshot()
	require.Len(t, anomalies, 3)
	assert.Equal(t, DuplicatedWrite, anomalies[0].Anomaly)
	assert.Equal(t, uint64(maxAnomalyExamples+2), anomalies[0].Count)
	assert.Len(t, anomalies[0].Examples, maxAnomalyExamples)
	assert.Equal(t, AnomalyCount{Anomaly: LostWrite, Op: OpVerify, Count: 1,
		Examples: []AnomalyExample{{Key: "k2", Want: "v2", Got: "v0"}}}, anomalies[1])
	assert.Equal(t, AnomalyCount{Anomaly: StaleRead, Op: OpGet, Count: 1,
		Examples: []AnomalyExample{{At: time.Second, Key: "k1", Want: "v1", Got: "(nil)"}}}, anomalies[2])
}

func TestParseFailoverKindsAndValidate(t *testing.T) {
	kinds, err := ParseFailoverKinds(" pause, clusterx ,controller,push")
	require.NoError(t, err)
	assert.Equal(t, []FailoverKind{FailoverPause, FailoverClusterx, FailoverController, FailoverPush}, kinds)
	_, err = ParseFailoverKinds("kill")
	assert.ErrorContains(t, err, `unknown failover kind "kill"`)
	_, err = ParseFailoverKinds(" , ")
	assert.Error(t, err)

	require.NoError(t, DefaultConfig().Validate())
	for name, edit := range map[string]func(*Config){
		"duration":          func(c *Config) { c.Duration = 0 },
		"interval":          func(c *Config) { c.FailoverInterval = -time.Second },
		"interval too long": func(c *Config) { c.FailoverInterval = c.Duration },
		"no kinds":          func(c *Config) { c.FailoverKinds = nil },
		"bad kind":          func(c *Config) { c.FailoverKinds = []FailoverKind{"kill"} },
		"failover timeout":  func(c *Config) { c.FailoverTimeout = 0 },
		"sample":            func(c *Config) { c.SampleInterval = 0 },
		"clients":           func(c *Config) { c.Clients = 0 },
		"keys":              func(c *Config) { c.Keys = 0 },
		"pipeline":          func(c *Config) { c.Pipeline = 0 },
		"shards":            func(c *Config) { c.Shards = 0 },
		"repl delay":        func(c *Config) { c.ReplDelay = -time.Millisecond },
		"client timeout":    func(c *Config) { c.ClientTimeout = 0 },
		"report wait":       func(c *Config) { c.ProxyReports, c.ReportWait = true, 0 },
		"push planned":      func(c *Config) { c.FailoverKinds = []FailoverKind{FailoverClusterx, FailoverPush} },
		"bad between kind":  func(c *Config) { c.Between = []FailoverKind{"kill"} },
		"one shard between": func(c *Config) { c.Shards, c.Between = 1, []FailoverKind{FailoverPause} },
		"planned count":     func(c *Config) { c.PlannedFailovers = -1 },
		"benchmark clients": func(c *Config) { c.RedisBenchmark, c.BenchmarkClients = true, 0 },
		"benchmark pipe":    func(c *Config) { c.RedisBenchmark, c.BenchmarkPipeline = true, 0 },
	} {
		cfg := DefaultConfig()
		edit(&cfg)
		assert.Error(t, cfg.Validate(), name)
	}
	cfg := DefaultConfig()
	cfg.Shards, cfg.Between, cfg.PlannedFailovers = 1, []FailoverKind{FailoverPush}, 3
	cfg.FailoverKinds = []FailoverKind{FailoverController}
	assert.NoError(t, cfg.Validate(), "pushes need no other shard")
}

func TestRefusedForSync(t *testing.T) {
	assert.True(t, refusedForSync(fmt.Errorf("failover shard 2: %w within 150ms", kvsim.ErrSyncTimeout)))
	assert.True(t, refusedForSync(&controller.Error{Status: 500,
		Message: "replication sync timeout: slave 127.0.0.1:1 did not catch up within 150ms"}))
	assert.False(t, refusedForSync(fmt.Errorf("failover shard 2: %w", kvsim.ErrPauseFailed)))
	assert.False(t, refusedForSync(&controller.Error{Status: 500, Message: "no match new master in shard"}))
	assert.False(t, refusedForSync(errors.New("replication sync timeout, but not the controller's")))
}

func TestPauseFailoverOptionsWaitForTheReplica(t *testing.T) {
	opts := PauseFailoverOptions(0)
	require.NoError(t, opts.Validate())
	assert.Equal(t, 100*time.Millisecond, opts.SyncTimeout, "upstream's default")
	opts = PauseFailoverOptions(200 * time.Millisecond)
	require.NoError(t, opts.Validate())
	assert.Equal(t, 600*time.Millisecond, opts.SyncTimeout)
	assert.Greater(t, opts.PauseTimeout, opts.SyncTimeout)
}

func TestIsReplicaOf(t *testing.T) {
	nodes := "aaa 127.0.0.1:1@10001 master - 0 0 3 connected 0-8191\n" +
		"bbb 127.0.0.1:2@10002 slave aaa 0 0 3 connected\n" +
		"ccc 127.0.0.1:3@10003 master - 0 0 3 connected 8192-16383\n"
	assert.True(t, isReplicaOf(nodes, "bbb", "aaa"))
	assert.False(t, isReplicaOf(nodes, "bbb", "ccc"))
	assert.False(t, isReplicaOf(nodes, "aaa", "bbb"))
	assert.False(t, isReplicaOf("", "bbb", "aaa"))
}

func TestParseProcStatus(t *testing.T) {
	status := "Name:\tkvproxy\nVmHWM:\t   30720 kB\nVmRSS:\t   20480 kB\nThreads:\t9\nbad line\nVmSwap:\t0 kB\n"
	rss, hwm, threads := parseProcStatus([]byte(status))
	assert.Equal(t, [3]int64{20480, 30720, 9}, [3]int64{rss, hwm, threads})
	rss, hwm, threads = parseProcStatus([]byte("Name:\tx\n"))
	assert.Equal(t, [3]int64{-1, -1, -1}, [3]int64{rss, hwm, threads})

	// This process has a status file.
	var s Sample
	sampleProcess(&s, os.Getpid())
	assert.Positive(t, s.RSSKiB)
	assert.GreaterOrEqual(t, s.HWMKiB, s.RSSKiB)
	assert.Positive(t, s.Threads)
}

func TestSampleInfo(t *testing.T) {
	var s Sample
	assert.False(t, sampleInfo(&s, map[string]string{"connected_clients": "12"}))
	assert.Equal(t, [2]int64{-1, 12}, [2]int64{s.Goroutines, s.Clients})
	assert.True(t, sampleInfo(&s, map[string]string{"connected_clients": "3", "process_goroutines": "41"}))
	assert.Equal(t, [2]int64{41, 3}, [2]int64{s.Goroutines, s.Clients})
	assert.False(t, sampleInfo(&s, nil), "INFO failed")
	assert.Equal(t, [2]int64{-1, -1}, [2]int64{s.Goroutines, s.Clients})
}

func TestPubSubReport(t *testing.T) {
	// Numbers 0-5 published; 2 found no subscriber, 3 got an error.
	p := &publisher{received: []bool{true, true, false, false, true, true}, noOne: 1}
	// 0 arrived twice, 1 never, 4 after 5.
	s := &subscriber{counts: []uint8{2, 0, 0, 0, 1, 1}, outOfOrder: 1}
	assert.Equal(t, PubSubReport{Published: 5, NoReceivers: 1, Received: 4, Missing: 1, Duplicates: 1, OutOfOrder: 1},
		pubSubReport(p, s))
}

func TestReportVerdictAndPrint(t *testing.T) {
	cfg := DefaultConfig()
	r := &Report{
		Config:   cfg,
		Elapsed:  61 * time.Second,
		Requests: map[Op]uint64{OpSet: 10, OpGet: 12},
		Longest:  map[Op]Latency{OpSet: {time.Millisecond, time.Second}, OpGet: {2 * time.Millisecond, 3 * time.Second}},
		Verified: 20,
		Failovers: []FailoverResult{
			{Seq: 0, At: 5 * time.Second, Took: 1600 * time.Millisecond, Kind: FailoverClusterx, Shard: 0, From: "a:1", To: "b:2"},
			{Seq: 1, At: 10 * time.Second, Took: 100 * time.Millisecond, Kind: FailoverPause, Shard: 1, From: "c:3", To: "d:4",
				Err: errors.Join(errors.New("replica did not catch up"), errors.New("INFO: timeout"))},
		},
		Samples: []Sample{{At: 5 * time.Second, RSSKiB: 20480, HWMKiB: 30720, Threads: 9, Goroutines: -1, Clients: 13,
			Requests: 22, Failovers: 1, FailoversOK: 1}},
		ProxyCounters: []ProxyCounter{{"rejected_requests", "0"}},
	}
	assert.False(t, r.Failed(), "a failover the cluster refused is reported, not failed")
	assert.Equal(t, 1, r.FailoversOK())
	var out bytes.Buffer
	r.Print(&out)
	text := out.String()
	assert.Contains(t, text, "PASS: 0 errors, 0 lost acknowledged writes, 0 stale reads, 0 duplicated writes; 1 of 2 failovers done; 20 keys read back")
	assert.Contains(t, text, "2 SET/GET, 2 MSET/MGET, 2 pipelines of 16 SET/GET/INCR, 2 MULTI/INCR/SET/EXEC")
	assert.Contains(t, text, "errors: none")
	assert.Contains(t, text, "failovers: clusterx 1 (1 done, longest 1.6s); pause 1 (0 done, longest 0s)")
	assert.Regexp(t, `1 +0:10 +planned +1 +pause +c:3 -> d:4 +0 +100ms +not done: replica did not catch up; INFO: timeout\n`, text)
	assert.NotContains(t, text, "views at the end")
	assert.NotContains(t, text, "redis-benchmark through the proxy")
	assert.Regexp(t, `GET +12 +2ms +0:03\n`, text)
	assert.Regexp(t, `0:05 +20.0 MiB +30.0 MiB +9 +- +13 +22 +0 +1/1`, text)
	assert.Contains(t, text, "proxy counters (INFO after the load): rejected_requests:0")
	assert.Contains(t, text, "the proxy's INFO has no goroutine count")

	r.Errors = []ErrorCount{{Prefix: "TRYAGAIN", Text: "TRYAGAIN not executed", Count: 3,
		First: ErrorExample{At: 7 * time.Second, Op: OpMSet, Text: "TRYAGAIN not executed"}}}
	assert.True(t, r.Failed())
	r.Errors = nil
	r.Anomalies = []AnomalyCount{{Anomaly: LostWrite, Op: OpVerify, Count: 1, Examples: []AnomalyExample{{Key: "k", Want: "v", Got: "(nil)"}}}}
	assert.True(t, r.Failed())
	r.Anomalies = nil
	r.Failovers = r.Failovers[1:]
	assert.True(t, r.Failed(), "no failover happened")

	r.Failovers = nil
	r.Errors = []ErrorCount{{Prefix: "TRYAGAIN", Text: "TRYAGAIN not executed", Count: 3,
		First: ErrorExample{At: 7 * time.Second, Op: OpMSet, Text: "TRYAGAIN not executed"}}}
	r.Anomalies = []AnomalyCount{{Anomaly: LostWrite, Op: OpVerify, Count: 1, Examples: []AnomalyExample{{Key: "k", Want: "v", Got: "(nil)"}}}}
	r.GoroutinesReported = true
	r.ProxyLog = "level=WARN msg=boom"
	out.Reset()
	r.Print(&out)
	text = out.String()
	assert.Contains(t, text, "FAIL: 3 errors, 1 lost acknowledged writes")
	assert.Regexp(t, `TRYAGAIN +3 +TRYAGAIN not executed +at 0:07, MSET: TRYAGAIN not executed`, text)
	assert.Contains(t, text, "lost acknowledged write, found by final check: 1")
	assert.Contains(t, text, "at 0:00 key k: want v, got (nil)")
	assert.Contains(t, text, "failovers: none")
	assert.NotContains(t, text, "no goroutine count")
	assert.Contains(t, text, "proxy log (end):\nlevel=WARN msg=boom")
}

func TestReportJudgesViewsAndShowsStepsAndBenchmark(t *testing.T) {
	r := &Report{
		Config: DefaultConfig(),
		Failovers: []FailoverResult{
			{Seq: 0, At: time.Second, Took: 300 * time.Millisecond, Kind: FailoverClusterx, Shard: 0, From: "a:1", To: "b:2", Version: 2},
			{Seq: 1, At: 2 * time.Second, Took: 5 * time.Millisecond, Kind: FailoverPush, Shard: -1, Between: true, Version: 3},
			{Seq: 2, At: 3 * time.Second, Took: 200 * time.Millisecond, Kind: FailoverController, Shard: 1, From: "c:3", To: "d:4", Version: 4,
				Attempts: 2, Refused: errors.New("controller: replication sync timeout")},
			{Seq: 3, At: 4 * time.Second, Took: time.Millisecond, Kind: FailoverPush, Shard: -1, Between: true, Version: 4,
				Err: errors.New("push topology version 5: boom")},
		},
		Views:     &ViewCheck{Version: 4, Masters: "[0-8191 aaaaaaaa, 8192-16383 cccccccc]", Waited: 20 * time.Millisecond},
		Benchmark: &BenchmarkReport{Command: "redis-benchmark -c 50", Runs: 3, Completed: 2, Requests: 800000, RPS: map[string]float64{"SET": 51000, "GET": 60000}},
	}
	assert.Equal(t, 2, r.FailoversOK(), "pushes are no failovers")
	assert.False(t, r.Failed())
	var out bytes.Buffer
	r.Print(&out)
	text := out.String()
	assert.Contains(t, text, "PASS: 0 errors, 0 lost acknowledged writes, 0 stale reads, 0 duplicated writes; 2 of 2 failovers done, 1 of 2 pushes; 0 keys read back; controller, nodes and proxy agree")
	assert.Contains(t, text, "failovers: clusterx 1 (1 done, longest 300ms); controller 1 (1 done, longest 200ms); push 2 (1 done, longest 5ms)")
	assert.Regexp(t, `1 +0:02 +between +- +push +- +3 +5ms +ok\n`, text)
	assert.Regexp(t, `2 +0:03 +planned +1 +controller +c:3 -> d:4 +4 +200ms +ok \(attempt 2; refused before: controller: replication sync timeout\)\n`, text)
	assert.Contains(t, text, "controller: version 4, masters [0-8191 aaaaaaaa, 8192-16383 cccccccc]; looked for 20ms")
	assert.Contains(t, text, "redis-benchmark through the proxy (redis-benchmark -c 50, again and again): 3 runs, 2 completed (800000 requests), 0 ended by an error (in errors, as op redis-benchmark); last completed run: GET 60000/s, SET 51000/s")
	assert.Equal(t, "push 1 at 0:02 (between): version 3, 5ms: ok", r.Failovers[1].line())
	assert.Equal(t, "failover 2 at 0:03: controller of shard 1 (planned), c:3 -> d:4, version 4, 200ms: ok (attempt 2; refused before: controller: replication sync timeout)",
		r.Failovers[2].line())

	r.Views.Disagreements = []string{"proxy: PROXY NODES: [0-16383 aaaaaaaa], the controller's [0-8191 aaaaaaaa, 8192-16383 cccccccc]"}
	assert.True(t, r.Failed(), "views that disagree fail the soak")
	out.Reset()
	r.Print(&out)
	text = out.String()
	assert.Contains(t, text, "FAIL: 0 errors")
	assert.Contains(t, text, "; 1 disagreements between controller, nodes and proxy")
	assert.Contains(t, text, "\n  proxy: PROXY NODES: [0-16383 aaaaaaaa], the controller's")
	assert.Contains(t, r.Views.summary(), "still 1 disagreements after 20ms: proxy: PROXY NODES")
}
