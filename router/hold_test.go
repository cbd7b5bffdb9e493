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
)

// testGate holds the nodes it is told to and records TryAgain notices.
type testGate struct {
	mu         sync.Mutex
	holds      map[string]chan struct{}
	tryAgain   []string
	onTryAgain func(addr string)
}

func newTestGate() *testGate { return &testGate{holds: map[string]chan struct{}{}} }

func (g *testGate) Hold(addr string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holds[addr]
}

func (g *testGate) TryAgain(addr string) {
	g.mu.Lock()
	g.tryAgain = append(g.tryAgain, addr)
	on := g.onTryAgain
	g.mu.Unlock()
	if on != nil {
		on(addr)
	}
}

func (g *testGate) hold(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holds[addr] == nil {
		g.holds[addr] = make(chan struct{})
	}
}

func (g *testGate) release(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ch := g.holds[addr]; ch != nil {
		close(ch)
		delete(g.holds, addr)
	}
}

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
	st := r.Stats()
	assert.Equal(t, st.Held, st.Released+st.Expired+st.Abandoned, "held = released + expired + abandoned: %+v", st)
}

// A hold starting mid-batch: reads to the held node before its first write
// go at once; that write and everything after it to the node wait, in order;
// other nodes are not held.
func TestHoldStartingMidBatchKeepsTheNodesOrder(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	gate := newTestGate()
	cfg := testConfig(fc.seeds()...)
	cfg.Gate = gate
	r := newTestRouter(t, cfg)
	logB := recordCommands(b)
	kb1, kb2, ka := keyOwnedBy(fc, b, "b1"), keyOwnedBy(fc, b, "b2"), keyOwnedBy(fc, a, "a")
	gate.hold(b.addr)

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
	assert.Equal(t, uint64(2), r.Stats().Held)

	gate.release(b.addr)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the held requests were not sent after the release")
	}
	assert.Equal(t, []string{"GET " + kb1, "SET " + kb2, "GET " + kb2}, logB())
	assert.Equal(t, "$1\r\nx\r\n", string(reqs[2].Reply))
	assert.Equal(t, "+OK\r\n", string(reqs[3].Reply))
	st := r.Stats()
	assert.Equal(t, uint64(2), st.Released)
	assertHoldsConserved(t, r)
}

// A hold budget expiring: the held write gets a TRYAGAIN error that says it
// was not executed, and the node never sees it.
func TestHoldBudgetExpiring(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	gate := newTestGate()
	cfg := testConfig(a.addr)
	cfg.Gate = gate
	cfg.HoldTimeout = 50 * time.Millisecond
	r := newTestRouter(t, cfg)
	log := recordCommands(a)
	gate.hold(a.addr)
	req := keyed(false, "SET", "k", "v")
	doWithin(t, r, req)
	assert.Equal(t, string(replyHoldExpired), string(req.Reply))
	assert.Empty(t, log())
	st := r.Stats()
	assert.Equal(t, uint64(1), st.Held)
	assert.Equal(t, uint64(1), st.Expired)
	assertHoldsConserved(t, r)
}

// TRYAGAIN tells the gate, which starts holding; the write is resent once
// the hold ends and nothing reaches the client but its reply.
func TestTryAgainStartsAHoldAndTheWriteIsResentAfterIt(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	gate := newTestGate()
	gate.onTryAgain = gate.hold
	cfg := testConfig(a.addr)
	cfg.Gate = gate
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
	require.Eventually(t, func() bool { return r.Stats().Held == 1 }, 5*time.Second, time.Millisecond)
	pausing.Lock()
	paused = false
	pausing.Unlock()
	gate.release(a.addr)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("not answered after the release")
	}
	assert.Equal(t, "+OK\r\n", string(req.Reply))
	assert.Equal(t, []string{a.addr}, gate.tryAgain)
	assertHoldsConserved(t, r)
}

// A caller that gives up while its request is held gets an error and the
// request is counted abandoned, not sent.
func TestHeldRequestAbandonedByItsCaller(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	gate := newTestGate()
	cfg := testConfig(a.addr)
	cfg.Gate = gate
	r := newTestRouter(t, cfg)
	log := recordCommands(a)
	gate.hold(a.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	req := keyed(false, "SET", "k", "v")
	r.Do(ctx, []*Request{req})
	assert.Contains(t, string(req.Reply), "-ERR ")
	gate.release(a.addr)
	assert.Empty(t, log())
	assert.Equal(t, uint64(1), r.Stats().Abandoned)
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
