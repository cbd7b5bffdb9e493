package router

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

// livenessConfig is testConfig with one connection per node and probes fast
// enough for a test.
func livenessConfig(seeds ...string) Config {
	cfg := testConfig(seeds...)
	cfg.ConnsPerNode = 1
	cfg.ProbeInterval = 20 * time.Millisecond
	cfg.ProbeTimeout = 50 * time.Millisecond
	// Reloads ask stopped nodes too: keep them short.
	cfg.ReadTimeout = 200 * time.Millisecond
	return cfg
}

// answerAfter makes name wait d, then answer +OK.
func answerAfter(name string, d time.Duration) func(redcon.Conn, []string) bool {
	return func(conn redcon.Conn, args []string) bool {
		if !isCommand(args, name) {
			return false
		}
		time.Sleep(d)
		conn.WriteString("OK")
		return true
	}
}

// answerWhenReleased makes name wait until release is closed, then answer
// +OK. Its connection reads nothing meanwhile.
func answerWhenReleased(name string, release <-chan struct{}) func(redcon.Conn, []string) bool {
	return func(conn redcon.Conn, args []string) bool {
		if !isCommand(args, name) {
			return false
		}
		<-release
		conn.WriteString("OK")
		return true
	}
}

// A slow command delays the requests behind it on its connection but fails
// none of them: the node answers its probes, so it is alive, however long
// its data connection stays silent (here past ReadTimeout, HoldTimeout and
// DeadTimeout together).
func TestSlowCommandDelaysButDoesNotFail(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := livenessConfig(a.addr)
	cfg.HoldTimeout = 150 * time.Millisecond
	cfg.DeadTimeout = 200 * time.Millisecond
	r := newTestRouter(t, cfg)
	a.setScript(answerAfter("SLOW", 600*time.Millisecond))
	slow := keyed(false, "SLOW", "k")
	set, get := keyed(false, "SET", "k", "v"), keyed(true, "GET", "k")
	doWithin(t, r, slow, set, get)
	assert.Equal(t, "+OK\r\n", string(slow.Reply))
	assert.Equal(t, "+OK\r\n", string(set.Reply))
	assert.Equal(t, "$1\r\nv\r\n", string(get.Reply))
	st := r.Stats()
	assert.Positive(t, st.Probes, "the node was probed while its connection waited")
	assert.Zero(t, st.Unresponsive)
	assert.Zero(t, st.ConnsLost)
	assert.Zero(t, holdTotals(r).Held)
}

// A node that stops answering altogether (SIGSTOP, a network black hole) is
// found by its probe: requests not sent to it get TRYAGAIN not executed once
// their budget is spent, the write already sent gets "may have run" once the
// node is declared dead, other nodes are served meanwhile, and once it
// answers again it is used again.
func TestStoppedNodeIsFoundByItsProbe(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	cfg := livenessConfig(a.addr, b.addr)
	cfg.HoldTimeout = 400 * time.Millisecond
	cfg.DeadTimeout = 800 * time.Millisecond
	r := newTestRouter(t, cfg)
	ka, kb := keyOwnedBy(fc, a, "a"), keyOwnedBy(fc, b, "b")
	warm := []*Request{keyed(false, "SET", ka, "1"), keyed(false, "SET", kb, "1")}
	doWithin(t, r, warm...)
	for _, q := range warm {
		require.Equal(t, "+OK\r\n", string(q.Reply))
	}

	a.stopProcess()
	sent := keyed(false, "SET", ka, "2")
	sentDone := make(chan struct{})
	go func() {
		defer close(sentDone)
		doWithin(t, r, sent)
	}()
	require.Eventually(t, func() bool { return r.Stats().Unresponsive > 0 }, 10*time.Second, time.Millisecond,
		"the stopped node's probe went unanswered")

	onB := keyed(false, "SET", kb, "2")
	doWithin(t, r, onB)
	assert.Equal(t, "+OK\r\n", string(onB.Reply), "another node is served meanwhile")
	unsent := keyed(false, "SET", ka, "3")
	doWithin(t, r, unsent)
	assert.Equal(t, string(replyUnreachable(r.nodeOf(a.addr))), string(unsent.Reply),
		"a request never sent is answered not executed while the node is still stopped")

	select {
	case <-sentDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the write sent to the stopped node was never answered")
	}
	assert.Equal(t, string(replyLost), string(sent.Reply), "declared dead: the sent write may have run")
	assert.Positive(t, r.Stats().Dead)

	a.resume()
	require.Eventually(t, func() bool {
		again := keyed(false, "SET", ka, "4")
		doWithin(t, r, again)
		return string(again.Reply) == "+OK\r\n"
	}, 10*time.Second, 10*time.Millisecond, "the node is used again once it answers")
	assertHoldsConserved(t, r)
}

// Past MaxPending requests outstanding on a connection, more wait in the
// proxy, in order, and go out as replies make room: none is refused.
func TestRequestsWaitForRoomOnTheirConnection(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := livenessConfig(a.addr)
	cfg.MaxPending = 2
	r := newTestRouter(t, cfg)
	release := make(chan struct{})
	a.setScript(answerWhenReleased("STALL", release))
	reqs := []*Request{keyed(false, "STALL", "k"), keyed(false, "STALL", "k"), keyed(false, "SET", "k", "v"), keyed(true, "GET", "k")}
	done := make(chan struct{})
	go func() {
		defer close(done)
		doWithin(t, r, reqs...)
	}()
	require.Eventually(t, func() bool { return r.Stats().Parked >= 2 }, 10*time.Second, time.Millisecond)
	close(release)
	<-done
	for i, want := range []string{"+OK\r\n", "+OK\r\n", "+OK\r\n", "$1\r\nv\r\n"} {
		assert.Equal(t, want, string(reqs[i].Reply), "request %d", i)
	}
}

// A reply holding a bulk longer than MaxBulkLen is skipped in the stream: its
// request gets an error, and the requests around it on the same connection
// are answered, the connection kept.
func TestOversizedReplyIsSkippedAndTheConnectionStaysInStep(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := livenessConfig(a.addr)
	cfg.MaxBulkLen = 1 << 20
	r := newTestRouter(t, cfg)
	a.data["small"] = "s"
	a.data["big"] = strings.Repeat("x", 3<<20) // arrives in many reads
	a.data["tiny"] = strings.Repeat("y", 1<<20)
	reqs := []*Request{keyed(true, "GET", "small"), keyed(true, "GET", "big"), keyed(true, "GET", "tiny"), keyed(false, "SET", "small", "t")}
	doWithin(t, r, reqs...)
	assert.Equal(t, "$1\r\ns\r\n", string(reqs[0].Reply))
	assert.Equal(t, string(replyOversized), string(reqs[1].Reply))
	assert.Len(t, reqs[2].Reply, len("$1048576\r\n")+1<<20+2, "a bulk of exactly the limit is kept")
	assert.Equal(t, "+OK\r\n", string(reqs[3].Reply))
	st := r.Stats()
	assert.Equal(t, uint64(1), st.Oversized)
	assert.Zero(t, st.ConnsLost)
}

// Replies past a client's OutputBudget are dropped as they arrive, a big one
// while it streams in, the owner is told once, and the connection serves the
// other clients on with their replies whole.
func TestRepliesPastTheOutputBudgetAreDropped(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	r := newTestRouter(t, livenessConfig(a.addr))
	a.data["v"] = strings.Repeat("v", 6000)
	a.data["huge"] = strings.Repeat("h", 3<<20)
	var told atomic.Int32
	budget := NewOutputBudget(10000, func() { told.Add(1) })
	reqs := []*Request{keyed(true, "GET", "v"), keyed(true, "GET", "v"), keyed(true, "GET", "missing")}
	for _, q := range reqs {
		q.Output = budget
	}
	doWithin(t, r, reqs...)
	assert.Len(t, reqs[0].Reply, 6000+len("$6000\r\n\r\n"))
	assert.Equal(t, string(replyOutputLimit), string(reqs[1].Reply))
	assert.Equal(t, string(replyOutputLimit), string(reqs[2].Reply), "an exceeded budget stays exceeded")
	assert.True(t, budget.Exceeded())
	assert.Equal(t, int32(1), told.Load())

	small := NewOutputBudget(1<<20, func() { told.Add(1) })
	huge, other := keyed(true, "GET", "huge"), keyed(true, "GET", "v")
	huge.Output = small
	doWithin(t, r, huge, other)
	assert.Equal(t, string(replyOutputLimit), string(huge.Reply))
	assert.Len(t, other.Reply, 6000+len("$6000\r\n\r\n"), "the next reply on the connection is whole")
	assert.Equal(t, int32(2), told.Load())
	assert.Zero(t, r.Stats().ConnsLost)
}

// A backend that stops reading never makes a caller wait: Start returns
// with its requests queued or parked, whatever the socket takes, and they
// are all answered once the backend reads again.
func TestBackendWritesNeverWaitForTheBackend(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := livenessConfig(a.addr)
	// Probes stay answered here: a roomy timeout keeps a loaded machine
	// (the race detector, 32 MB in flight) from starting an outage that
	// would answer the writes TRYAGAIN, which is not what this test is about.
	cfg.ProbeTimeout = 2 * time.Second
	r := newTestRouter(t, cfg)
	release := make(chan struct{})
	a.setScript(answerWhenReleased("BLOCK", release))
	blocked := keyed(false, "BLOCK", "k")
	blockedDone := make(chan struct{})
	go func() {
		defer close(blockedDone)
		doWithin(t, r, blocked)
	}()
	require.Eventually(t, func() bool { return a.accepted.Load() > 0 && r.Stats().Probes > 0 }, 10*time.Second, time.Millisecond,
		"BLOCK reached the node, whose connection now reads nothing")

	const batches = 4
	value := strings.Repeat("x", 8<<20) // more than the sockets buffer
	var answered atomic.Int32
	reqs := make([]*Request, batches)
	started := make(chan struct{})
	go func() {
		defer close(started)
		for i := range reqs {
			reqs[i] = keyed(false, "SET", "k", value)
			r.Start(context.Background(), reqs[i:i+1], func() { answered.Add(1) }, nil)
		}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("Start waited for a backend that reads nothing")
	}
	assert.Zero(t, answered.Load())
	close(release)
	<-blockedDone
	require.Eventually(t, func() bool { return answered.Load() == batches }, 20*time.Second, time.Millisecond)
	for _, q := range reqs {
		assert.Equal(t, "+OK\r\n", string(q.Reply))
	}
}

// Requests an outage took back unsent are routed again when their batch
// settles, which may be after the outage ended (here the batch waits for
// its first request, in flight on the stopped node): they are sent, and
// start no outage of their own.
func TestReclaimedRequestsDoNotRestartTheOutage(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := livenessConfig(a.addr)
	cfg.MaxPending = 1
	cfg.HoldTimeout = 5 * time.Second
	cfg.DeadTimeout = 5 * time.Second
	r := newTestRouter(t, cfg)
	warm := keyed(false, "SET", "k", "0")
	doWithin(t, r, warm)
	require.Equal(t, "+OK\r\n", string(warm.Reply))

	a.stopProcess()
	var reqs []*Request
	for i := range 20 {
		reqs = append(reqs, keyed(false, "SET", "k", itoa(i)))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		doWithin(t, r, reqs...)
	}()
	require.Eventually(t, func() bool { return bufferOf(r).Report().Of(a.addr).InOutage }, 10*time.Second, time.Millisecond)
	a.resume()
	<-done
	for i, q := range reqs {
		assert.Equal(t, "+OK\r\n", string(q.Reply), "request %d", i)
	}
	assert.Equal(t, uint64(1), bufferOf(r).Report().Of(a.addr).Outages, "one stop, one outage")
	assertHoldsConserved(t, r)
}

// A node whose probe goes unanswered while replies keep coming on its data
// connection (a busy event loop, a proxy short of CPU) is alive: no outage.
func TestRepliesProveLifeWhenTheProbeIsLate(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := livenessConfig(a.addr)
	cfg.ProbeTimeout = 300 * time.Millisecond
	// One at a time, so that each is answered on its own (a server answers
	// a pipeline read in one go).
	cfg.MaxPending = 1
	r := newTestRouter(t, cfg)
	warm := keyed(false, "SET", "k", "0")
	doWithin(t, r, warm)
	require.Equal(t, "+OK\r\n", string(warm.Reply))

	never := make(chan struct{})
	defer close(never)
	slowSet := answerAfter("SLOWSET", 25*time.Millisecond)
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "PING") {
			<-never
			return true
		}
		return slowSet(conn, args)
	})
	var reqs []*Request
	for range 40 {
		reqs = append(reqs, keyed(false, "SLOWSET", "k"))
	}
	doWithin(t, r, reqs...)
	for i, q := range reqs {
		assert.Equal(t, "+OK\r\n", string(q.Reply), "request %d", i)
	}
	st := r.Stats()
	assert.Positive(t, st.Probes, "the silent gaps were probed")
	assert.Zero(t, st.Unresponsive, "replies arrived while the probe waited")
	assert.Zero(t, bufferOf(r).Report().Of(a.addr).Outages)
}
