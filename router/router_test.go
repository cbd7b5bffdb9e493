package router

import (
	"context"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

func TestNewLoadsUnmergedRangesAndRoutesBySlot(t *testing.T) {
	fc := newFakeCluster(t, 2)
	r := newTestRouter(t, testConfig(fc.seeds()...))
	a, b := fc.nodes[0], fc.nodes[1]

	assert.Equal(t, []string{a.addr, b.addr}, r.Masters())
	assert.Equal(t, a.addr, r.MasterOf(0))
	assert.Equal(t, b.addr, r.MasterOf(SlotCount-1))
	assert.Empty(t, r.MasterOf(SlotCount))
	topo := r.Topology()
	assert.Equal(t, int64(1), topo.Epoch)
	require.Len(t, topo.Nodes, 2)
	assert.Equal(t, NodeInfo{ID: a.id, Addr: a.addr, Role: "master", Slots: []SlotRange{{0, 8191}}}, topo.Nodes[0])

	keyA, keyB := keyOwnedBy(fc, a, "a"), keyOwnedBy(fc, b, "b")
	reqs := []*Request{keyed(false, "SET", keyA, "1"), keyed(false, "SET", keyB, "2"), keyed(true, "GET", keyA), keyed(true, "GET", keyB)}
	doWithin(t, r, reqs...)
	assert.Equal(t, "+OK\r\n", string(reqs[0].Reply))
	assert.Equal(t, "+OK\r\n", string(reqs[1].Reply))
	assert.Equal(t, "$1\r\n1\r\n", string(reqs[2].Reply))
	assert.Equal(t, "$1\r\n2\r\n", string(reqs[3].Reply))
	assert.Equal(t, "1", a.data[keyA])
	assert.Equal(t, "2", b.data[keyB])

	keyless := &Request{Raw: command("PING"), Slot: -1, Addr: b.addr}
	unroutable := []*Request{{Raw: command("PING"), Slot: -1}, {Raw: command("PING"), Slot: SlotCount}}
	doWithin(t, r, append(unroutable, keyless)...)
	assert.Equal(t, "+OK\r\n", string(keyless.Reply))
	for _, q := range unroutable {
		assert.Equal(t, string(replyNoRoute), string(q.Reply))
	}
}

func TestNewFailsClearlyWhenNoSeedAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := ln.Addr().String()
	require.NoError(t, ln.Close())

	_, err = New(context.Background(), testConfig(refused, refused))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no seed returned the cluster topology")
	assert.Contains(t, err.Error(), refused)
	assert.NotContains(t, err.Error(), "\n", "the command line prints it on one line")
	var opErr *net.OpError
	assert.ErrorAs(t, err, &opErr, "the cause stays inspectable")

	cfg := testConfig()
	_, err = New(context.Background(), cfg)
	assert.ErrorContains(t, err, "at least one seed")
}

func TestMovedPatchesTableAtOnceAndSurvivesStaleReload(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	fc.setOwner(a, 1) // a owns everything
	r := newTestRouter(t, testConfig(a.addr))
	key := "user:1"
	slot := int(Slot([]byte(key)))
	require.Equal(t, a.addr, r.MasterOf(slot))

	// A finished Kvrocks failover: a redirects to b, CLUSTER SLOTS still
	// names a at the same epoch.
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "SET") || isCommand(args, "GET") {
			conn.WriteError("MOVED " + itoa(slot) + " " + b.addr)
			return true
		}
		return false
	})
	req := keyed(false, "SET", key, "v")
	doWithin(t, r, req)
	assert.Equal(t, "+OK\r\n", string(req.Reply))
	assert.Equal(t, b.addr, r.MasterOf(slot), "MOVED patches the table at once")
	assert.Equal(t, uint64(1), r.Stats().Moved)

	// The refresh MOVED triggered, and any later one, keep the patch.
	before := a.slotsCalls.Load()
	r.awaitRefresh(context.Background())
	require.Greater(t, a.slotsCalls.Load(), before)
	assert.Equal(t, b.addr, r.MasterOf(slot), "a stale reload at the same epoch must not undo MOVED")
	assert.Contains(t, r.Masters(), b.addr)

	// A newer epoch is authoritative.
	fc.setOwner(a, 2)
	a.setScript(nil)
	r.awaitRefresh(context.Background())
	assert.Equal(t, a.addr, r.MasterOf(slot))
	assert.Equal(t, int64(2), r.Topology().Epoch)
}

func TestReloadSkipsANodeBehindTheEpoch(t *testing.T) {
	fc := newFakeCluster(t, 2) // a owns the low half, b the high half
	a, b := fc.nodes[0], fc.nodes[1]
	fc.mu.Lock()
	fc.epoch = 6
	fc.mu.Unlock()
	r := newTestRouter(t, testConfig(a.addr, b.addr))
	require.Equal(t, []string{a.addr, b.addr}, r.Masters(), "a is asked first on reload")

	// a answers from epoch 5, where it owned every slot: its view must not
	// be taken while b knows epoch 6.
	fc.freeze(a)
	fc.mu.Lock()
	a.frozenEpoch, a.frozenOwners = 5, []fakeRange{{0, SlotCount - 1, a}}
	fc.mu.Unlock()
	before := a.slotsCalls.Load()
	r.awaitRefresh(context.Background())
	require.Greater(t, a.slotsCalls.Load(), before, "a was asked")
	assert.Equal(t, b.addr, r.MasterOf(SlotCount-1))
	assert.Equal(t, int64(6), r.Topology().Epoch)

	// When every node is behind, the cluster was rebuilt: take the newest.
	fc.freeze(b)
	fc.mu.Lock()
	b.frozenEpoch, b.frozenOwners = 2, []fakeRange{{0, SlotCount - 1, b}}
	fc.mu.Unlock()
	r.awaitRefresh(context.Background())
	assert.Equal(t, a.addr, r.MasterOf(SlotCount-1))
	assert.Equal(t, int64(5), r.Topology().Epoch)
}

// A push that lands on a node while the router reads its topology (here
// between CLUSTER INFO and CLUSTER SLOTS) does not leave slots and nodes of
// the new version under the old epoch: the view is read again.
func TestReloadReadsOneTopologyVersion(t *testing.T) {
	fc := newFakeCluster(t, 2) // a owns the low half, b the high half
	a, b := fc.nodes[0], fc.nodes[1]
	cfg := testConfig(a.addr)
	cfg.RefreshInterval = time.Hour // the only reload is the test's
	r := newTestRouter(t, cfg)
	require.Equal(t, []string{a.addr, b.addr}, r.Masters(), "a is asked first on reload")
	var pushed atomic.Bool
	a.setScript(func(_ redcon.Conn, args []string) bool {
		if isCommand(args, "CLUSTER") && strings.EqualFold(args[1], "SLOTS") && !pushed.Swap(true) {
			fc.setOwner(b, 2)
		}
		return false
	})
	before := a.slotsCalls.Load()
	r.awaitRefresh(context.Background())
	require.True(t, pushed.Load(), "the push landed during the reload")
	assert.Equal(t, before+2, a.slotsCalls.Load(), "the changed view was read again")
	assert.Equal(t, int64(2), r.Topology().Epoch)
	assert.Equal(t, []string{b.addr}, r.Masters())
}

func TestMovedToItselfEndsInClusterDown(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	r := newTestRouter(t, testConfig(a.addr))
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "GET") {
			conn.WriteError("MOVED " + itoa(int(Slot([]byte(args[1])))) + " " + a.addr)
			return true
		}
		return false
	})
	before := a.slotsCalls.Load()
	req := keyed(true, "GET", "k")
	doWithin(t, r, req)
	assert.True(t, strings.HasPrefix(string(req.Reply), "-CLUSTERDOWN "), "got %q", req.Reply)
	assert.Contains(t, string(req.Reply), "redirects it to itself")
	assert.Greater(t, a.slotsCalls.Load(), before, "a reload was attempted")
}

func TestMovedWithEmptyHostMeansReplyingNodesHost(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	fc.setOwner(a, 1)
	r := newTestRouter(t, testConfig(a.addr))
	_, bPort, _ := net.SplitHostPort(b.addr)
	key := "k"
	slot := int(Slot([]byte(key)))
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "GET") {
			conn.WriteError("MOVED " + itoa(slot) + " :" + bPort)
			return true
		}
		return false
	})
	b.data[key] = "from-b"
	req := keyed(true, "GET", key)
	doWithin(t, r, req)
	assert.Equal(t, "$6\r\nfrom-b\r\n", string(req.Reply))
	assert.Equal(t, b.addr, r.MasterOf(slot))
}

// movedTo answers GET and SET with a MOVED to other, while on says so.
func movedTo(other *fakeNode, on func() bool) func(redcon.Conn, []string) bool {
	return func(conn redcon.Conn, args []string) bool {
		if (isCommand(args, "GET") || isCommand(args, "SET")) && on() {
			conn.WriteError("MOVED " + itoa(int(Slot([]byte(args[1])))) + " " + other.addr)
			return true
		}
		return false
	}
}

func always() bool { return true }

// A chain of redirects through ever new nodes ends after MaxRedirects hops.
func TestRedirectChainThroughNewNodesIsBounded(t *testing.T) {
	fc := newFakeCluster(t, 4)
	for i, n := range fc.nodes {
		n.setScript(movedTo(fc.nodes[(i+1)%len(fc.nodes)], always))
	}
	fc.setOwner(fc.nodes[0], 1)
	cfg := testConfig(fc.nodes[0].addr)
	cfg.MaxRedirects = 2
	r := newTestRouter(t, cfg)
	req := keyed(true, "GET", "k")
	doWithin(t, r, req)
	assert.Equal(t, "-CLUSTERDOWN slot "+itoa(int(Slot([]byte("k"))))+": more than 2 redirects, last to "+fc.nodes[3].addr+"\r\n", string(req.Reply))
	assert.Zero(t, r.Stats().Bounces, "no node was visited twice")
}

// Nodes applying a new topology one by one disagree for a while: a sends
// the slot to b, b still sends it back. The request waits, with reloads
// and backoff, and is served once b serves the slot: no hop count ends it.
func TestRedirectPingPongIsWaitedOut(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	fc.setOwner(a, 1)
	r := newTestRouter(t, testConfig(a.addr))
	var bLags atomic.Bool
	bLags.Store(true)
	a.setScript(movedTo(b, always))
	b.setScript(movedTo(a, bLags.Load))
	b.data["k"] = "from-b"
	reloads := r.Stats().Reloads
	done := make(chan struct{})
	req := keyed(true, "GET", "k")
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r.Do(ctx, []*Request{req})
	}()
	// Many more bounces than MaxRedirects before b catches up.
	require.Eventually(t, func() bool { return r.Stats().Bounces > uint64(2*r.cfg.MaxRedirects) }, 10*time.Second, time.Millisecond)
	bLags.Store(false)
	<-done
	assert.Equal(t, "$6\r\nfrom-b\r\n", string(req.Reply))
	assert.Greater(t, r.Stats().Reloads, reloads, "each bounce waits for a reload")
	assert.Equal(t, b.addr, r.MasterOf(int(Slot([]byte("k")))))
}

// A ping-pong that outlasts the request's hold budget ends in a TRYAGAIN
// that says the command did not run, not in a busy loop.
func TestRedirectPingPongPastTheBudgetIsTryAgain(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	fc.setOwner(a, 1)
	cfg := testConfig(a.addr)
	cfg.HoldTimeout = 300 * time.Millisecond
	cfg.RefreshCooldown = 20 * time.Millisecond
	r := newTestRouter(t, cfg)
	a.setScript(movedTo(b, always))
	b.setScript(movedTo(a, always))
	req := keyed(false, "SET", "k", "v")
	doWithin(t, r, req)
	assert.True(t, strings.HasPrefix(string(req.Reply), "-TRYAGAIN slot "), "got %q", req.Reply)
	assert.Contains(t, string(req.Reply), "the command was not executed")
	// Each bounce waits for a reload, at most one per RefreshCooldown.
	assert.Less(t, r.Stats().Bounces, uint64(cfg.HoldTimeout/cfg.RefreshCooldown)+2)
}

func TestAskSendsAskingBackToBackAndDoesNotPatch(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	fc.setOwner(a, 1)
	r := newTestRouter(t, testConfig(a.addr))
	key := "migrating"
	slot := int(Slot([]byte(key)))
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "GET") {
			conn.WriteError("ASK " + itoa(slot) + " " + b.addr)
			return true
		}
		return false
	})
	// b serves the key only right after ASKING on the same connection.
	b.setScript(func(conn redcon.Conn, args []string) bool {
		switch {
		case isCommand(args, "ASKING"):
			conn.SetContext(true)
			conn.WriteString("OK")
		case isCommand(args, "GET"):
			if conn.Context() == true {
				conn.WriteBulkString("imported")
			} else {
				conn.WriteError("MOVED " + itoa(slot) + " " + a.addr)
			}
			conn.SetContext(nil)
		default:
			return false
		}
		return true
	})
	reqs := []*Request{keyed(true, "GET", key), keyed(true, "GET", key)}
	doWithin(t, r, reqs...)
	for _, q := range reqs {
		assert.Equal(t, "$8\r\nimported\r\n", string(q.Reply))
	}
	assert.Equal(t, a.addr, r.MasterOf(slot), "ASK does not change the owner")
	assert.Equal(t, uint64(2), r.Stats().Ask)
}

func TestRejectionsProvenNotExecutedAreRetried(t *testing.T) {
	for _, rejection := range []string{
		"TRYAGAIN Failover in progress",
		"LOADING kvrocks is restoring the db from backup",
		"MASTERDOWN Link with MASTER is down",
		"CLUSTERDOWN Hash slot not served",
		"READONLY You can't write against a read only slave.",
	} {
		t.Run(strings.Fields(rejection)[0], func(t *testing.T) {
			fc := newFakeCluster(t, 1)
			a := fc.nodes[0]
			r := newTestRouter(t, testConfig(a.addr))
			var rejected atomic.Int32
			a.setScript(func(conn redcon.Conn, args []string) bool {
				if isCommand(args, "SET") && rejected.Add(1) <= 2 {
					conn.WriteError(rejection)
					return true
				}
				return false
			})
			req := keyed(false, "SET", "k", "v")
			doWithin(t, r, req)
			assert.Equal(t, "+OK\r\n", string(req.Reply))
			assert.Equal(t, int32(3), rejected.Load())
			stats := r.Stats()
			assert.Equal(t, uint64(2), stats.Rejected)
			assert.Equal(t, uint64(2), stats.Resent)
		})
	}
}

// TRYAGAIN (a failover, or a slot migration's write-forbidden phase) is
// resent within the request's hold budget; past it the client gets the
// server's own error.
func TestTryAgainIsResentWithinTheBudgetAndKeepsTheServersError(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := testConfig(a.addr)
	cfg.HoldTimeout = 100 * time.Millisecond
	r := newTestRouter(t, cfg)
	var attempts atomic.Int32
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "SET") {
			attempts.Add(1)
			conn.WriteError("TRYAGAIN Failover in progress")
			return true
		}
		return false
	})
	req := keyed(false, "SET", "k", "v")
	doWithin(t, r, req)
	assert.Equal(t, "-TRYAGAIN Failover in progress\r\n", string(req.Reply))
	assert.GreaterOrEqual(t, attempts.Load(), int32(2), "resent at least once")
	assert.Equal(t, uint64(attempts.Load()-1), r.Stats().Resent)
}

func TestLostConnectionFailsSentWritesAndResendsReads(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := testConfig(a.addr)
	cfg.ConnsPerNode = 1
	r := newTestRouter(t, cfg)
	var dropped atomic.Bool
	var gets atomic.Int32
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "GET") {
			gets.Add(1)
		}
		// The first DROP closes the connection with the whole pipeline
		// read and nothing answered.
		if isCommand(args, "DROP") && !dropped.Swap(true) {
			_ = conn.NetConn().Close() // unlike conn.Close, flushes nothing
			return true
		}
		if isCommand(args, "DROP") {
			conn.WriteString("OK")
			return true
		}
		return false
	})
	a.data["r"] = "x"
	reqs := []*Request{
		keyed(true, "GET", "r"),
		keyed(false, "SET", "w", "1"),
		{Raw: command("DROP"), Slot: int(Slot([]byte("r")))},
		keyed(true, "GET", "r"),
	}
	doWithin(t, r, reqs...)
	assert.Equal(t, string(replyLost), string(reqs[1].Reply))
	assert.Equal(t, string(replyLost), string(reqs[2].Reply))
	assert.Equal(t, "$1\r\nx\r\n", string(reqs[0].Reply))
	assert.Equal(t, "$1\r\nx\r\n", string(reqs[3].Reply))
	assert.GreaterOrEqual(t, gets.Load(), int32(3), "reads were resent on a new connection")
	stats := r.Stats()
	assert.Equal(t, uint64(2), stats.Lost)
	assert.Equal(t, uint64(1), stats.ConnsLost)
}

func TestMalformedReplyBreaksTheConnection(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	r := newTestRouter(t, testConfig(a.addr))
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "BAD") {
			conn.WriteRaw([]byte("?what\r\n"))
			return true
		}
		return false
	})
	bad := &Request{Raw: command("BAD", "k"), Slot: int(Slot([]byte("k")))}
	doWithin(t, r, bad)
	assert.Equal(t, string(replyLost), string(bad.Reply))

	// The next request gets a fresh connection.
	good := keyed(false, "SET", "k", "v")
	doWithin(t, r, good)
	assert.Equal(t, "+OK\r\n", string(good.Reply))
}

func TestDoReturnsAtContextDeadline(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	r := newTestRouter(t, testConfig(a.addr))
	a.setScript(stallOn(t, "STALL"))
	req := &Request{Raw: command("STALL", "k"), Slot: int(Slot([]byte("k")))}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r.Do(ctx, []*Request{req})
	assert.Equal(t, "-ERR proxy timed out waiting for the backend\r\n", string(req.Reply))
}

// stallOn returns a script that blocks the connection at the command name
// until the test ends, like a server stuck in a long command.
func stallOn(t *testing.T, name string) func(redcon.Conn, []string) bool {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(_ redcon.Conn, args []string) bool {
		if !isCommand(args, name) {
			return false
		}
		<-release
		return true
	}
}

// A master that stays unreachable holds its requests for the hold budget,
// then they are answered TRYAGAIN, not executed.
func TestUnreachableMasterHoldsThenAnswersNotExecuted(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	cfg := testConfig(a.addr)
	cfg.HoldTimeout = 200 * time.Millisecond
	r := newTestRouter(t, cfg)
	b.stop()
	// Wait until the router saw b's connections go, or a write could still
	// be sent on one and fail as "may have run".
	require.Eventually(t, func() bool { st := r.Stats(); return st.ConnsLost+st.DialFailures >= uint64(cfg.ConnsPerNode) }, 5*time.Second, time.Millisecond)
	write, read := keyed(false, "SET", keyOwnedBy(fc, b, "b"), "1"), keyed(true, "GET", keyOwnedBy(fc, b, "c"))
	doWithin(t, r, write, read)
	for _, q := range []*Request{write, read} {
		assert.True(t, strings.HasPrefix(string(q.Reply), "-TRYAGAIN backend "+b.addr), "got %q", q.Reply)
		assert.Contains(t, string(q.Reply), "not executed")
	}
	assertHoldsConserved(t, r)
	holds := bufferOf(r).Report().Masters
	require.Len(t, holds, 1)
	assert.Equal(t, b.addr, holds[0].Master)
	assert.GreaterOrEqual(t, holds[0].Outages, uint64(1))
	assert.GreaterOrEqual(t, holds[0].Holds.Held, uint64(2), "both requests waited in the outage")
	assert.Zero(t, holds[0].Holds.HeldNow)
}

func TestCloseLeavesNoGoroutineAndAnswersLaterCalls(t *testing.T) {
	fc := newFakeCluster(t, 2)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(ctx, testConfig(fc.seeds()...))
	require.NoError(t, err)
	doWithin(t, r, keyed(false, "SET", "k", "v"))
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close is idempotent")

	req := keyed(false, "SET", "k", "v")
	r.Do(context.Background(), []*Request{req})
	assert.Equal(t, string(replyShuttingDown), string(req.Reply))
	_, err = r.DialNode(context.Background(), fc.nodes[0].addr)
	assert.ErrorIs(t, err, ErrClosed)
	assertGoroutinesAtMost(t, before)
}

func TestConcurrentCallersGetTheirOwnReplies(t *testing.T) {
	fc := newFakeCluster(t, 2)
	r := newTestRouter(t, testConfig(fc.seeds()...))
	const callers, rounds, pipeline = 8, 20, 10
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			reqs := make([]*Request, pipeline)
			for round := range rounds {
				for i := range reqs {
					key := "k" + itoa(c) + ":" + itoa(i)
					if round%2 == 0 {
						reqs[i] = keyed(false, "SET", key, key+"@"+itoa(round))
					} else {
						reqs[i] = keyed(true, "GET", key)
					}
				}
				doWithin(t, r, reqs...)
				for i, q := range reqs {
					key := "k" + itoa(c) + ":" + itoa(i)
					want := "+OK\r\n"
					if round%2 == 1 {
						v := key + "@" + itoa(round-1)
						want = "$" + itoa(len(v)) + "\r\n" + v + "\r\n"
					}
					assert.Equal(t, want, string(q.Reply))
				}
			}
		})
	}
	wg.Wait()
}

func TestDialNodeAuthenticates(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	var authed atomic.Value
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "AUTH") {
			if args[1] == "secret" {
				authed.Store(args[1])
				conn.WriteString("OK")
			} else {
				conn.WriteError("WRONGPASS invalid username-password pair or user is disabled.")
			}
			return true
		}
		return false
	})
	cfg := testConfig(a.addr)
	cfg.Password = "secret"
	r := newTestRouter(t, cfg)
	nc, err := r.DialNode(context.Background(), a.addr)
	require.NoError(t, err)
	require.NoError(t, nc.Close())
	assert.Equal(t, "secret", authed.Load())

	cfg.Password = "wrong"
	_, err = New(context.Background(), cfg)
	assert.ErrorContains(t, err, "WRONGPASS")
}

// assertGoroutinesAtMost waits up to 5 s for the goroutine count to drop to
// limit, then fails with a dump. (assert.Eventually runs its condition in a
// goroutine of its own, which would be counted.)
func assertGoroutinesAtMost(t *testing.T, limit int) {
	t.Helper()
	for range 500 {
		if runtime.NumGoroutine() <= limit {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	var dump strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
	t.Errorf("%d goroutines left, want at most %d:\n%s", runtime.NumGoroutine(), limit, dump.String())
}

// TestChaosEveryReplyBelongsToItsRequest mixes concurrent callers, dropped
// connections mid-pipeline, MOVED ping-pong and cancelled contexts, and
// checks that every request gets exactly its own reply or a router error.
// Even callers use Do, odd ones Start.
func TestChaosEveryReplyBelongsToItsRequest(t *testing.T) {
	fc := newFakeCluster(t, 2)
	for i, n := range fc.nodes {
		other := fc.nodes[1-i]
		n.setScript(func(conn redcon.Conn, args []string) bool {
			if !isCommand(args, "ECHO") {
				return false
			}
			switch p := rand.IntN(100); {
			case p < 1:
				_ = conn.NetConn().Close()
			case p < 6:
				conn.WriteError("MOVED " + itoa(int(Slot([]byte(args[1])))) + " " + other.addr)
			case p < 9:
				conn.WriteError("TRYAGAIN busy")
			default:
				conn.WriteBulkString(args[1])
			}
			return true
		})
	}
	cfg := testConfig(fc.seeds()...)
	cfg.MaxRedirects = 3
	r := newTestRouter(t, cfg)

	const callers, batches, pipeline = 6, 20, 12
	var answered, failed atomic.Int32
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			reqs := make([]*Request, pipeline)
			for i := range reqs {
				reqs[i] = &Request{}
			}
			for n := range batches {
				for i, q := range reqs {
					id := itoa(c) + "-" + itoa(n) + "-" + itoa(i)
					q.Raw, q.Slot, q.ReadOnly = command("ECHO", id), int(Slot([]byte(id))), i%2 == 0
				}
				timeout := 20 * time.Second
				if n%10 == 9 {
					timeout = time.Millisecond // abandon some batches
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				if c%2 == 0 {
					r.Do(ctx, reqs)
				} else {
					// Start's first round ignores ctx; later ones honour it.
					done := make(chan struct{})
					r.Start(ctx, reqs, func() { close(done) }, nil)
					<-done
				}
				cancel()
				for i, q := range reqs {
					id := itoa(c) + "-" + itoa(n) + "-" + itoa(i)
					reply := string(q.Reply)
					switch {
					case reply == "$"+itoa(len(id))+"\r\n"+id+"\r\n":
						answered.Add(1)
					case strings.HasPrefix(reply, "-ERR backend "), strings.HasPrefix(reply, "-CLUSTERDOWN "),
						strings.HasPrefix(reply, "-TRYAGAIN "), strings.HasPrefix(reply, "-ERR proxy timed out"):
						failed.Add(1)
					default:
						t.Errorf("request %s got %q", id, reply)
					}
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(callers*batches*pipeline), answered.Load()+failed.Load())
	assert.Positive(t, answered.Load())
}
