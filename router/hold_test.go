package router

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/failover"
)

// testHold is the router's hold in these tests: a failover.Buffer that
// follows no master, whose writes the test pauses and resumes itself, and
// that records the TRYAGAINs it is told of.
type testHold struct {
	*failover.Buffer
	mu         sync.Mutex
	tryAgain   []string
	onTryAgain func(addr string)
}

// newTestHold returns a testHold holding at most maxBytes (0: the default).
func newTestHold(t *testing.T, maxBytes int64) *testHold {
	t.Helper()
	cfg := failover.DefaultConfig()
	if maxBytes > 0 {
		cfg.MaxBytes = maxBytes
	}
	b, err := failover.New(cfg)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return &testHold{Buffer: b}
}

func (h *testHold) Observe(addr string, ev failover.Event) {
	if ev == failover.EventTryAgain {
		h.mu.Lock()
		h.tryAgain = append(h.tryAgain, addr)
		on := h.onTryAgain
		h.mu.Unlock()
		if on != nil {
			on(addr)
		}
	}
	h.Buffer.Observe(addr, ev)
}

func (h *testHold) hold(addr string) { h.Observe(addr, failover.EventWritesPaused) }

func (h *testHold) release(addr string) { h.Observe(addr, failover.EventWritesResumed) }

// bufferOf is the failover.Buffer r holds its requests in.
func bufferOf(r *Router) *failover.Buffer {
	if h, ok := r.hold.(*testHold); ok {
		return h.Buffer
	}
	return r.hold.(*failover.Buffer)
}

// holdTotals counts the requests r held, over every node.
func holdTotals(r *Router) failover.Counts { return bufferOf(r).Report().Totals }

// recordCommands makes n log the first argument of every GET and SET.
func recordCommands(n *fakeNode) func() []string {
	var mu sync.Mutex
	var log []string
	n.setScript(func(_ redcon.Conn, args []string) bool {
		if isCommand(args, "GET") || isCommand(args, "SET") {
			mu.Lock()
			log = append(log, args[0]+" "+args[1])
			mu.Unlock()
		}
		return false
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), log...)
	}
}

func assertHoldsConserved(t *testing.T, r *Router) {
	t.Helper()
	st := holdTotals(r)
	assert.Equal(t, st.Held, st.Released+st.Expired+st.Abandoned, "held = released + expired + abandoned: %+v", st)
}

// A hold starting mid-batch: reads to the held node before its first write
// go at once; that write and everything after it to the node wait, in order;
// other nodes are not held.
func TestHoldStartingMidBatchKeepsTheNodesOrder(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	hold := newTestHold(t, 0)
	cfg := testConfig(fc.seeds()...)
	cfg.Hold = hold
	r := newTestRouter(t, cfg)
	logB := recordCommands(b)
	kb1, kb2, ka := keyOwnedBy(fc, b, "b1"), keyOwnedBy(fc, b, "b2"), keyOwnedBy(fc, a, "a")
	hold.hold(b.addr)

	reqs := []*Request{
		keyed(true, "GET", kb1),
		keyed(false, "SET", kb2, "x"),
		keyed(true, "GET", kb2),
		keyed(false, "SET", ka, "y"),
	}
	done := make(chan struct{})
	r.Start(context.Background(), reqs, func() { close(done) }, nil)
	require.Eventually(t, func() bool { return len(logB()) == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []string{"GET " + kb1}, logB(), "only the read before the held write reached the held node")
	select {
	case <-done:
		t.Fatal("the batch was answered while its write was held")
	case <-time.After(30 * time.Millisecond):
	}
	assert.Equal(t, uint64(2), holdTotals(r).Held)

	hold.release(b.addr)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the held requests were not sent after the release")
	}
	assert.Equal(t, []string{"GET " + kb1, "SET " + kb2, "GET " + kb2}, logB())
	assert.Equal(t, "$1\r\nx\r\n", string(reqs[2].Reply))
	assert.Equal(t, "+OK\r\n", string(reqs[3].Reply))
	st := holdTotals(r)
	assert.Equal(t, uint64(2), st.Released)
	assertHoldsConserved(t, r)
}

// The writes of several callers held on one master reach it, once the hold
// ends, in the order they were held: the drain releases one caller's round
// at a time, the next once the previous one is queued on the connection.
// Callers alternate Do and Start, whose later rounds run on a goroutine.
func TestHeldCallersReachTheNodeInTheOrderTheyWereHeld(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	hold := newTestHold(t, 0)
	cfg := testConfig(a.addr)
	cfg.Hold = hold
	cfg.ConnsPerNode = 1 // one connection: the order queued is the order sent
	r := newTestRouter(t, cfg)
	log := recordCommands(a)
	hold.hold(a.addr)
	const callers = 8
	var want []string
	reqs := make([]*Request, callers)
	var answered sync.WaitGroup
	for i := range callers {
		key := "caller" + itoa(i)
		want = append(want, "SET "+key)
		reqs[i] = keyed(false, "SET", key, "v")
		answered.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		if i%2 == 0 {
			go func() {
				defer answered.Done()
				r.Do(ctx, reqs[i:i+1])
			}()
		} else {
			r.Start(ctx, reqs[i:i+1], answered.Done, nil)
		}
		require.Eventually(t, func() bool { return holdTotals(r).Held == uint64(i+1) }, 5*time.Second, time.Millisecond)
	}
	assert.Empty(t, log())
	hold.release(a.addr)
	answered.Wait()
	for i, q := range reqs {
		assert.Equal(t, "+OK\r\n", string(q.Reply), "caller %d", i)
	}
	assert.Equal(t, want, log(), "the callers' writes reached the node in the order they were held")
	assert.Equal(t, uint64(callers), holdTotals(r).Released)
	assertHoldsConserved(t, r)
}

// A hold budget expiring: the held write gets a TRYAGAIN error that says it
// was not executed, and the node never sees it.
func TestHoldBudgetExpiring(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	hold := newTestHold(t, 0)
	cfg := testConfig(a.addr)
	cfg.Hold = hold
	cfg.HoldTimeout = 50 * time.Millisecond
	r := newTestRouter(t, cfg)
	log := recordCommands(a)
	hold.hold(a.addr)
	req := keyed(false, "SET", "k", "v")
	doWithin(t, r, req)
	assert.Equal(t, string(replyHoldExpired), string(req.Reply))
	assert.Empty(t, log())
	st := holdTotals(r)
	assert.Equal(t, uint64(1), st.Held)
	assert.Equal(t, uint64(1), st.Expired)
	assertHoldsConserved(t, r)
}

// TRYAGAIN tells the hold, which starts holding; the write is resent once
// the hold ends and nothing reaches the client but its reply.
func TestTryAgainStartsAHoldAndTheWriteIsResentAfterIt(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	hold := newTestHold(t, 0)
	hold.onTryAgain = hold.hold
	cfg := testConfig(a.addr)
	cfg.Hold = hold
	cfg.MaxRetries = 1 // the hold, not the retries, must carry the write
	r := newTestRouter(t, cfg)
	var pausing sync.Mutex
	paused := true
	a.setScript(func(conn redcon.Conn, args []string) bool {
		pausing.Lock()
		defer pausing.Unlock()
		if paused && isCommand(args, "SET") {
			conn.WriteError("TRYAGAIN Failover in progress")
			return true
		}
		return false
	})
	req := keyed(false, "SET", "k", "v")
	done := make(chan struct{})
	r.Start(context.Background(), []*Request{req}, func() { close(done) }, nil)
	require.Eventually(t, func() bool { return holdTotals(r).Held == 1 }, 5*time.Second, time.Millisecond)
	pausing.Lock()
	paused = false
	pausing.Unlock()
	hold.release(a.addr)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("not answered after the release")
	}
	assert.Equal(t, "+OK\r\n", string(req.Reply))
	assert.Equal(t, []string{a.addr}, hold.tryAgain)
	assertHoldsConserved(t, r)
}

// A caller that gives up while its request is held gets an error and the
// request is counted abandoned, not sent.
func TestHeldRequestAbandonedByItsCaller(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	hold := newTestHold(t, 0)
	cfg := testConfig(a.addr)
	cfg.Hold = hold
	r := newTestRouter(t, cfg)
	log := recordCommands(a)
	hold.hold(a.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	req := keyed(false, "SET", "k", "v")
	r.Do(ctx, []*Request{req})
	assert.Contains(t, string(req.Reply), "-ERR ")
	hold.release(a.addr)
	assert.Empty(t, log())
	assert.Equal(t, uint64(1), holdTotals(r).Abandoned)
	assertHoldsConserved(t, r)
}

// tryAgainOnce makes the first SET of key answer -TRYAGAIN, unrun, as a
// master does at a failover's write pause.
func tryAgainOnce(key string) func(redcon.Conn, []string) bool {
	var done atomic.Bool
	return func(conn redcon.Conn, args []string) bool {
		if !isCommand(args, "SET") || args[1] != key || done.Swap(true) {
			return false
		}
		conn.WriteError("TRYAGAIN Failover in progress")
		return true
	}
}

// A read pipelined after a write of its slot that the node refused unrun is
// answered after that write runs, not before it.
func TestReadBehindARefusedWriteSeesIt(t *testing.T) {
	fc := newFakeCluster(t, 1)
	r := newTestRouter(t, testConfig(fc.seeds()...))
	fc.nodes[0].setScript(tryAgainOnce("{t}k"))
	set, get := keyed(false, "SET", "{t}k", "new"), keyed(true, "GET", "{t}k")
	doWithin(t, r, set, get)
	assert.Equal(t, "+OK\r\n", string(set.Reply))
	assert.Equal(t, "$3\r\nnew\r\n", string(get.Reply), "the read ran ahead of the write it follows")
}

// ... unless a later write of its slot ran: resent, the read would see that
// later write, which the client pipelined after it.
func TestReadIsNotResentPastALaterWriteThatRan(t *testing.T) {
	fc := newFakeCluster(t, 1)
	r := newTestRouter(t, testConfig(fc.seeds()...))
	init := keyed(false, "SET", "{t}b", "old")
	doWithin(t, r, init)
	fc.nodes[0].setScript(tryAgainOnce("{t}a"))
	setA, getB, setB := keyed(false, "SET", "{t}a", "1"), keyed(true, "GET", "{t}b"), keyed(false, "SET", "{t}b", "new")
	doWithin(t, r, setA, getB, setB)
	assert.Equal(t, "+OK\r\n", string(setA.Reply))
	assert.Equal(t, "$3\r\nold\r\n", string(getB.Reply), "the read saw a write pipelined after it")
	assert.Equal(t, "+OK\r\n", string(setB.Reply))
}

// RefusalOf is the one classification of refusals, the router's resends
// and the proxy's dedicated connections' alike.
func TestRefusalOf(t *testing.T) {
	for reply, want := range map[string]Refusal{
		"-TRYAGAIN Failover in progress\r\n":              RefusedTryAgain,
		"-MOVED 3999 127.0.0.1:6381\r\n":                  RefusedMoved,
		"-ASK 3999 127.0.0.1:6381\r\n":                    RefusedAsk,
		"-CLUSTERDOWN Hash slot not served\r\n":           RefusedNotServing,
		"-READONLY You can't write against a replica\r\n": RefusedNotServing,
		"-LOADING Kvrocks is restoring the db\r\n":        RefusedNotServing,
		"-MASTERDOWN Link with MASTER is down\r\n":        RefusedNotServing,
		"-ERR wrong number of arguments\r\n":              NotRefused,
		"-WRONGTYPE Operation against a key\r\n":          NotRefused,
		"+TRYAGAIN\r\n":                                   NotRefused,
		"$8\r\nTRYAGAIN\r\n":                              NotRefused,
		"":                                                NotRefused,
	} {
		assert.Equal(t, want, RefusalOf([]byte(reply)), "%q", reply)
	}
}
