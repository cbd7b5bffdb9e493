package failover_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/failover"
	"kvproxy/router"
)

// The tests in this file pin down races between a master's failover and the
// router's resends, against a two-node fake Kvrocks shard whose every state
// change is made by the test (or by a hook at an exact point of a reply), so
// the order of events is fixed rather than left to timing.

// raceWait bounds every wait of these tests: they fail rather than hang.
const raceWait = 10 * time.Second

// fakeShard is a Kvrocks shard as its nodes describe it: one topology
// version, the owner of every slot, and the nodes. Every field of the shard
// and of its nodes is guarded by mu.
type fakeShard struct {
	mu    sync.Mutex
	epoch int64
	owner *fakeKvrocks
	nodes []*fakeKvrocks
}

// update changes the shard's state in one step, as seen by every command.
func (sh *fakeShard) update(change func()) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	change()
}

// setnodes applies a topology in which owner serves every slot at epoch,
// as CLUSTERX SETNODES does on every node: replication follows the new
// roles, and failover and takeover states are reset. replicas become
// replicas of owner; any other node stays a master without slots.
func (sh *fakeShard) setnodes(epoch int64, owner *fakeKvrocks, replicas ...*fakeKvrocks) {
	sh.update(func() {
		sh.epoch, sh.owner = epoch, owner
		for _, n := range sh.nodes {
			n.replicaOf = nil
			if slices.Contains(replicas, n) {
				n.replicaOf = owner
			}
			n.phase, n.infoPhase, n.migratedTo, n.takenOver = failover.PhaseNone, failover.PhaseNone, "", false
		}
	})
}

// fakeKvrocks is one node of a fakeShard, answering CLUSTER INFO, SLOTS and
// NODES and keyed SETs as spec sections 1 to 3 describe.
type fakeKvrocks struct {
	shard  *fakeShard
	id     string
	addr   string
	ln     net.Listener
	srv    *redcon.Server
	served chan struct{}
	quit   chan struct{}

	replicaOf *fakeKvrocks // nil for a master
	// phase decides how writes are treated; infoPhase is what CLUSTER INFO
	// prints. They differ only when a test makes the printed state lag.
	phase, infoPhase failover.Phase
	// migratedTo is where a master whose failover succeeded sends its slots.
	migratedTo string
	// takenOver makes a replica serve its master's slots (CLUSTERX TAKEOVER).
	takenOver bool
	data      map[string]string
	executed  []string // keys of the SETs run, in order
	// stall, when set, holds the SET of its key before it is looked at.
	stall *stalledSet
	// forbidden, when set, says whether a slot is in the write-forbidden
	// phase of a migration (spec section 6).
	forbidden func(slot int) bool
	// onWrite runs, with the shard locked, once a SET's reply ("OK" or an
	// error without its '-') is decided and before it is sent.
	onWrite func(key, reply string)
	// onInfo runs, with the shard locked, once a CLUSTER INFO reply printing
	// phase is decided and before it is sent; remote is the client address.
	onInfo func(remote string, printed failover.Phase)
}

// stalledSet is a SET a node keeps from deciding until resume is closed.
type stalledSet struct {
	key     string
	arrived chan struct{}
	resume  chan struct{}
}

func startFakeKvrocks(t *testing.T, sh *fakeShard, id string) *fakeKvrocks {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n := &fakeKvrocks{shard: sh, id: id, addr: ln.Addr().String(), ln: ln, served: make(chan struct{}),
		quit: make(chan struct{}), phase: failover.PhaseNone, infoPhase: failover.PhaseNone, data: map[string]string{}}
	n.srv = redcon.NewServer(n.addr, n.handle, nil, nil)
	go func() {
		defer close(n.served)
		_ = n.srv.Serve(ln)
	}()
	t.Cleanup(n.stop)
	sh.update(func() { sh.nodes = append(sh.nodes, n) })
	return n
}

// stop ends stalled commands, closes the listener (Serve then closes every
// connection) and waits for Serve to return.
func (n *fakeKvrocks) stop() {
	close(n.quit)
	_ = n.srv.Close() // fails only if Serve has not started: closing ln below suffices
	_ = n.ln.Close()
	<-n.served
}

func (n *fakeKvrocks) handle(conn redcon.Conn, cmd redcon.Command) {
	name := strings.ToUpper(string(cmd.Args[0]))
	switch {
	case name == "CLUSTER" && len(cmd.Args) == 2:
		n.cluster(conn, strings.ToUpper(string(cmd.Args[1])))
	case name == "SET" && len(cmd.Args) == 3:
		n.set(conn, string(cmd.Args[1]), string(cmd.Args[2]))
	default:
		conn.WriteError("ERR unknown command '" + string(cmd.Args[0]) + "'")
	}
}

// set answers a SET in the order of spec section 2: TRYAGAIN while the
// failover pauses writes, then MOVED or run depending on ownership.
func (n *fakeKvrocks) set(conn redcon.Conn, key, value string) {
	sh := n.shard
	sh.mu.Lock()
	stall := n.stall
	if stall != nil && stall.key == key {
		n.stall = nil
		sh.mu.Unlock()
		close(stall.arrived)
		select {
		case <-stall.resume:
		case <-n.quit:
			return
		}
		sh.mu.Lock()
	}
	slot := int(router.Slot([]byte(key)))
	reply := "OK"
	switch {
	case n.phase.HoldsWrites():
		reply = "TRYAGAIN Failover in progress"
	case sh.owner == n && n.forbidden != nil && n.forbidden(slot):
		reply = "TRYAGAIN Can't write to slot being migrated which is in write forbidden phase"
	case sh.owner == n && n.migratedTo != "":
		reply = fmt.Sprintf("MOVED %d %s", slot, n.migratedTo)
	case sh.owner == n || n.takenOver:
		n.data[key] = value
		n.executed = append(n.executed, key)
	default:
		reply = fmt.Sprintf("MOVED %d %s", slot, sh.owner.addr)
	}
	if n.onWrite != nil {
		n.onWrite(key, reply)
	}
	sh.mu.Unlock()
	if reply == "OK" {
		conn.WriteString(reply)
	} else {
		conn.WriteError(reply)
	}
}

func (n *fakeKvrocks) cluster(conn redcon.Conn, sub string) {
	sh := n.shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	switch sub {
	case "INFO":
		var b strings.Builder
		fmt.Fprintf(&b, "cluster_state:ok\r\ncluster_slots_assigned:%d\r\ncluster_slots_ok:%d\r\n", router.SlotCount, router.SlotCount)
		fmt.Fprintf(&b, "cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:%d\r\ncluster_size:1\r\n", len(sh.nodes))
		fmt.Fprintf(&b, "cluster_current_epoch:%d\r\ncluster_my_epoch:%d\r\n", sh.epoch, sh.epoch)
		if n.replicaOf == nil { // only masters print it
			fmt.Fprintf(&b, "cluster_failover_state:%s\r\n", n.infoPhase)
		}
		if n.onInfo != nil {
			n.onInfo(conn.RemoteAddr(), n.infoPhase)
		}
		conn.WriteBulkString(b.String())
	case "SLOTS":
		var replicas []*fakeKvrocks
		for _, r := range sh.nodes {
			if r.replicaOf == sh.owner {
				replicas = append(replicas, r)
			}
		}
		conn.WriteArray(1)
		conn.WriteArray(3 + len(replicas))
		conn.WriteInt(0)
		conn.WriteInt(router.SlotCount - 1)
		for _, node := range append([]*fakeKvrocks{sh.owner}, replicas...) {
			host, port := node.hostPort()
			conn.WriteArray(3)
			conn.WriteBulkString(host)
			conn.WriteInt(port)
			conn.WriteBulkString(node.id)
		}
	case "NODES":
		var b strings.Builder
		for _, node := range sh.nodes {
			myself := ""
			if node == n {
				myself = "myself,"
			}
			_, port := node.hostPort()
			fmt.Fprintf(&b, "%s %s@%d %s", node.id, node.addr, port+10000, myself)
			if node.replicaOf != nil {
				fmt.Fprintf(&b, "slave %s 0 0 %d connected\n", node.replicaOf.id, sh.epoch)
				continue
			}
			fmt.Fprintf(&b, "master - 0 0 %d connected", sh.epoch)
			if node == sh.owner {
				fmt.Fprintf(&b, " 0-%d", router.SlotCount-1)
			}
			b.WriteByte('\n')
		}
		conn.WriteBulkString(b.String())
	default:
		conn.WriteError("ERR CLUSTER command, CLUSTER INFO|NODES|SLOTS|KEYSLOT|RESET|REPLICAS")
	}
}

func (n *fakeKvrocks) hostPort() (string, int) {
	host, port, _ := net.SplitHostPort(n.addr)
	p, _ := strconv.Atoi(port)
	return host, p
}

// stored returns what n's store holds for key.
func (n *fakeKvrocks) stored(key string) (string, bool) {
	n.shard.mu.Lock()
	defer n.shard.mu.Unlock()
	v, ok := n.data[key]
	return v, ok
}

// executedKeys returns the keys of the SETs n ran, in order.
func (n *fakeKvrocks) executedKeys() []string {
	n.shard.mu.Lock()
	defer n.shard.mu.Unlock()
	return slices.Clone(n.executed)
}

// failoverRig is master A (every slot) and its replica B, and a router whose
// hold is a failover.Buffer polling every millisecond.
type failoverRig struct {
	t     *testing.T
	shard *fakeShard
	a, b  *fakeKvrocks
	holds *failover.Buffer
	rt    *router.Router

	ctx     context.Context
	callers sync.WaitGroup

	mu sync.Mutex
	// bufferConns are the local addresses of the connections the buffer dialled,
	// so the fake can tell its polls from the router's.
	bufferConns map[string]bool
}

func newFailoverRig(t *testing.T) *failoverRig {
	t.Helper()
	f := &failoverRig{t: t, shard: &fakeShard{epoch: 1}, bufferConns: map[string]bool{}}
	f.a = startFakeKvrocks(t, f.shard, strings.Repeat("a", 40))
	f.b = startFakeKvrocks(t, f.shard, strings.Repeat("b", 40))
	f.shard.owner, f.b.replicaOf = f.a, f.a

	hcfg := failover.DefaultConfig()
	hcfg.Interval = time.Millisecond
	hcfg.MaxFollow = 3 * raceWait
	hcfg.Logger = slog.New(slog.DiscardHandler)
	hcfg.Dial = f.dialForBuffer
	var err error
	f.holds, err = failover.New(hcfg)
	require.NoError(t, err)
	t.Cleanup(f.holds.Close)

	rcfg := router.DefaultConfig()
	rcfg.Seeds = []string{f.a.addr}
	rcfg.Hold = f.holds
	rcfg.ConnsPerNode = 4
	// Nothing may expire or be reloaded behind the test's back, and the
	// resends before a hold starts must not run out.
	rcfg.HoldTimeout = 3 * raceWait
	rcfg.ReadTimeout = 3 * raceWait
	rcfg.RefreshInterval = time.Hour
	rcfg.MaxRetries = 40
	rcfg.MaxRetryBackoff = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), raceWait)
	defer cancel()
	f.rt, err = router.New(ctx, rcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.rt.Close() })

	// Callers give up when the test ends, so none outlives it.
	callCtx, stopCalls := context.WithTimeout(context.Background(), 3*raceWait)
	f.ctx = callCtx
	t.Cleanup(func() {
		stopCalls()
		f.callers.Wait()
	})
	return f
}

func (f *failoverRig) dialForBuffer(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.bufferConns[conn.LocalAddr().String()] = true
	f.mu.Unlock()
	return conn, nil
}

func (f *failoverRig) isBufferConn(remote string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bufferConns[remote]
}

// pipeline is one caller's Do of SETs (each key set to itself).
type pipeline struct {
	keys []string
	reqs []*router.Request
	done chan struct{}
}

// write sends the SETs of keys as one pipeline from a goroutine; affinity
// keeps the caller's requests on one connection, in order.
func (f *failoverRig) write(affinity uint32, keys ...string) *pipeline {
	p := &pipeline{keys: keys, done: make(chan struct{})}
	for _, k := range keys {
		p.reqs = append(p.reqs, &router.Request{Raw: command("SET", k, k), Slot: int(router.Slot([]byte(k))), Affinity: affinity})
	}
	f.callers.Go(func() {
		defer close(p.done)
		f.rt.Do(f.ctx, p.reqs)
	})
	return p
}

// replies waits for p to end and returns its replies.
func (f *failoverRig) replies(p *pipeline) []string {
	f.t.Helper()
	select {
	case <-p.done:
	case <-time.After(raceWait):
		require.FailNow(f.t, "a write never got its reply", "keys %v", p.keys)
	}
	out := make([]string, len(p.reqs))
	for i, q := range p.reqs {
		out[i] = string(q.Reply)
	}
	return out
}

// requireAllOK waits for every pipeline and checks that each write ended
// +OK and is in the store of on.
func (f *failoverRig) requireAllOK(on *fakeKvrocks, pipelines ...*pipeline) {
	f.t.Helper()
	for _, p := range pipelines {
		for i, reply := range f.replies(p) {
			assert.Equal(f.t, "+OK\r\n", reply, "write of %s", p.keys[i])
			v, ok := on.stored(p.keys[i])
			assert.True(f.t, ok && v == p.keys[i], "write of %s is not on %s", p.keys[i], on.addr)
		}
	}
}

// waitHeld waits until the router has held n requests in all.
func (f *failoverRig) waitHeld(n uint64) {
	f.t.Helper()
	require.Eventually(f.t, func() bool { return f.holds.Report().Totals.Held == n }, raceWait, time.Millisecond,
		"want %d held, counts %+v", n, f.holds.Report().Totals)
}

// waitReport waits until the buffer reports A with a state that satisfies ok.
func (f *failoverRig) waitReport(ok func(failover.MasterReport) bool, what string) {
	f.t.Helper()
	require.Eventually(f.t, func() bool {
		for _, r := range f.holds.Report().Masters {
			if r.Master == f.a.addr && ok(r) {
				return true
			}
		}
		return false
	}, raceWait, time.Millisecond, "the hold never reported %s: %+v", what, f.holds.Report())
}

// assertHoldsAccounted checks that every held request left its hold once
// and none ran out of HoldTimeout.
func (f *failoverRig) assertHoldsAccounted() {
	f.t.Helper()
	st := f.holds.Report().Totals
	assert.Equal(f.t, st.Held, st.Released+st.Expired+st.Abandoned, "held = released + expired + abandoned: %+v", st)
	assert.Zero(f.t, st.Expired, "no held write may expire: %+v", st)
}

// succeed is what A's failover success does: B serves A's slots (TAKEOVER)
// and A sends them there. It must run with the shard locked.
func (f *failoverRig) succeed() {
	f.a.phase, f.a.infoPhase, f.a.migratedTo = failover.PhaseSuccess, failover.PhaseSuccess, f.b.addr
	f.b.takenOver = true
}

// A write gets TRYAGAIN from A during the switch, and the failover succeeds
// before the router resends it: the resend meets MOVED and the write lands
// on B, whether success came before the buffer's first poll or right after it.
func TestSuccessArrivingWhileTryAgainInFlight(t *testing.T) {
	t.Run("before the first poll", func(t *testing.T) {
		f := newFailoverRig(t)
		f.shard.update(func() {
			f.a.phase, f.a.infoPhase = failover.PhaseSwitching, failover.PhaseSwitching
			f.a.onWrite = func(_, reply string) {
				if strings.HasPrefix(reply, "TRYAGAIN") {
					f.succeed() // while the TRYAGAIN is on its way
				}
			}
		})
		w := f.write(1, "k")
		f.requireAllOK(f.b, w)
		assert.Empty(t, f.a.executedKeys())
		assert.Equal(t, f.b.addr, f.rt.MasterOf(int(router.Slot([]byte("k")))))
		st := f.rt.Stats()
		assert.Positive(t, st.Rejected, "A answered TRYAGAIN: %+v", st)
		assert.Positive(t, st.Moved, "the resend met MOVED: %+v", st)
		// The buffer's first poll saw success: nothing to hold.
		assert.NotEqual(t, failover.StateHolding, f.holds.State(f.a.addr))
		assert.Zero(t, f.holds.Report().Totals.Held)
		assert.Empty(t, f.holds.Report().Masters, "no handover was followed")
		f.assertHoldsAccounted()
	})
	t.Run("right after the first poll", func(t *testing.T) {
		f := newFailoverRig(t)
		f.shard.update(func() {
			f.a.phase, f.a.infoPhase = failover.PhaseSwitching, failover.PhaseSwitching
			f.a.onInfo = func(remote string, printed failover.Phase) {
				if printed == failover.PhaseSwitching && f.isBufferConn(remote) {
					f.succeed() // the buffer has just read switching
				}
			}
		})
		w := f.write(1, "k")
		f.requireAllOK(f.b, w)
		assert.Empty(t, f.a.executedKeys())
		f.waitReport(func(r failover.MasterReport) bool { return r.Handovers == 1 && !r.Following }, "the handover's end")
		report := f.holds.Report().Masters[0]
		assert.Equal(t, []failover.Phase{failover.PhaseSwitching, failover.PhaseSuccess}, report.Last.Phases)
		assert.Equal(t, failover.PhaseSuccess, report.Last.Final)
		assert.NotEqual(t, failover.StateHolding, f.holds.State(f.a.addr))
		f.assertHoldsAccounted()
	})
}

// A already answers MOVED to B while its CLUSTER INFO still says wait_sync:
// a write that was on its way to A before the hold is redirected to B, new
// writes follow the MOVED to B at once, and the writes held on A are sent
// to B once the poll sees success, which is when the hold ends.
func TestMovedArrivingBeforeThePollSeesSuccess(t *testing.T) {
	f := newFailoverRig(t)
	stall := &stalledSet{key: "inflight", arrived: make(chan struct{}), resume: make(chan struct{})}
	f.shard.update(func() { f.a.stall = stall })
	inflight := f.write(1, "inflight")
	select {
	case <-stall.arrived:
	case <-time.After(raceWait):
		require.FailNow(t, "the in-flight write never reached A")
	}

	// The pause begins; the first write to meet it starts the hold.
	f.shard.update(func() { f.a.phase, f.a.infoPhase = failover.PhaseWaitSync, failover.PhaseWaitSync })
	first := f.write(2, "held:1")
	f.waitHeld(1)
	second := f.write(3, "held:2")
	f.waitHeld(2)

	// A switches to MOVED; its CLUSTER INFO lags. The in-flight write meets
	// the MOVED, which teaches the router that B now serves the slots.
	f.shard.update(func() {
		f.succeed()
		f.a.infoPhase = failover.PhaseWaitSync
	})
	close(stall.resume)
	f.requireAllOK(f.b, inflight)
	assert.Equal(t, f.b.addr, f.rt.MasterOf(int(router.Slot([]byte("new")))))

	// A new write goes to B even though A is still held.
	fresh := f.write(4, "new")
	f.requireAllOK(f.b, fresh)
	assert.Equal(t, failover.StateHolding, f.holds.State(f.a.addr), "the poll still sees wait_sync: the hold must go on")

	f.shard.update(func() { f.a.infoPhase = failover.PhaseSuccess })
	require.Eventually(t, func() bool { return f.holds.State(f.a.addr) != failover.StateHolding }, raceWait, time.Millisecond,
		"the hold did not end once the poll saw success")
	f.requireAllOK(f.b, first, second)
	assert.Empty(t, f.a.executedKeys(), "A ran no write: none went where it is not kept")
	f.waitReport(func(r failover.MasterReport) bool { return r.Handovers == 1 }, "the handover's end")
	assert.Equal(t, []failover.Phase{failover.PhaseWaitSync, failover.PhaseSuccess}, f.holds.Report().Masters[0].Last.Phases)
	held := f.holds.Report().Totals
	assert.Equal(t, uint64(2), held.Held, "%+v", held)
	st := f.rt.Stats()
	assert.Positive(t, st.Moved, "the in-flight write met MOVED: %+v", st)
	f.assertHoldsAccounted()
}

// The failover fails after the pause: the writes held during pause_write
// and wait_sync go back to A, each caller's in its original order, and all
// succeed.
func TestFailedFailoverSendsHeldWritesBackToTheOldMaster(t *testing.T) {
	f := newFailoverRig(t)
	keysOf := func(caller int) []string {
		keys := make([]string, 5)
		for i := range keys {
			keys[i] = fmt.Sprintf("caller%d:%d", caller, i)
		}
		return keys
	}
	f.shard.update(func() { f.a.phase, f.a.infoPhase = failover.PhasePauseWrite, failover.PhasePauseWrite })
	callers := []*pipeline{f.write(1, keysOf(0)...)}
	f.waitHeld(5)
	f.waitReport(func(r failover.MasterReport) bool { return r.Holding && r.Phase == failover.PhasePauseWrite }, "a hold in pause_write")

	f.shard.update(func() { f.a.phase, f.a.infoPhase = failover.PhaseWaitSync, failover.PhaseWaitSync })
	f.waitReport(func(r failover.MasterReport) bool { return r.Holding && r.Phase == failover.PhaseWaitSync }, "a hold in wait_sync")
	callers = append(callers, f.write(2, keysOf(1)...), f.write(3, keysOf(2)...))
	f.waitHeld(15)

	f.shard.update(func() { f.a.phase, f.a.infoPhase = failover.PhaseFailed, failover.PhaseFailed })
	f.requireAllOK(f.a, callers...)
	executed := f.a.executedKeys()
	assert.Len(t, executed, 15, "each write ran once: %v", executed)
	for c := range callers {
		prefix := fmt.Sprintf("caller%d:", c)
		var order []string
		for _, k := range executed {
			if strings.HasPrefix(k, prefix) {
				order = append(order, k)
			}
		}
		assert.Equal(t, keysOf(c), order, "caller %d's writes reached A out of order", c)
	}
	assert.Empty(t, f.b.executedKeys())
	f.waitReport(func(r failover.MasterReport) bool { return r.Handovers == 1 }, "the handover's end")
	last := f.holds.Report().Masters[0].Last
	assert.Equal(t, []failover.Phase{failover.PhasePauseWrite, failover.PhaseWaitSync, failover.PhaseFailed}, last.Phases)
	assert.Equal(t, failover.PhaseFailed, last.Final)
	st := f.holds.Report().Totals
	assert.Equal(t, uint64(15), st.Held, "%+v", st)
	f.assertHoldsAccounted()
}

// While writes are held in wait_sync, a controller pushes a topology in
// which B owns every slot under a higher version. That resets A's failover
// state, which ends the follow; the held writes go to A, meet MOVED and end
// on B.
func TestSetnodesLandingMidHold(t *testing.T) {
	for _, tc := range []struct {
		name string
		// aIsReplica: A becomes B's replica, so its CLUSTER INFO loses the
		// cluster_failover_state line (failover.ErrNoFailoverState); otherwise A stays
		// a master without slots and prints none (failover.ErrReset).
		aIsReplica bool
	}{
		{"A left as a master without slots", false},
		{"A made a replica of B", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFailoverRig(t)
			f.shard.update(func() { f.a.phase, f.a.infoPhase = failover.PhaseWaitSync, failover.PhaseWaitSync })
			first := f.write(1, "one:0", "one:1", "one:2")
			f.waitHeld(3)
			second := f.write(2, "two:0", "two:1", "two:2")
			f.waitHeld(6)
			require.Equal(t, failover.StateHolding, f.holds.State(f.a.addr))

			var replicas []*fakeKvrocks
			if tc.aIsReplica {
				replicas = append(replicas, f.a)
			}
			f.shard.setnodes(2, f.b, replicas...)
			f.requireAllOK(f.b, first, second)
			assert.Empty(t, f.a.executedKeys())
			assert.NotEqual(t, failover.StateHolding, f.holds.State(f.a.addr))
			f.waitReport(func(r failover.MasterReport) bool { return !r.Following }, "the follow's end")
			assert.Equal(t, f.b.addr, f.rt.MasterOf(int(router.Slot([]byte("one:0")))))
			st := f.holds.Report().Totals
			assert.Equal(t, uint64(6), st.Held, "%+v", st)
			f.assertHoldsAccounted()
		})
	}
}

// A followed handover's success routes A's slots to B before the held
// writes are let go, so they reach B without meeting A's MOVED first.
func TestSuccessRoutesHeldWritesStraightToTheNewMaster(t *testing.T) {
	f := newFailoverRig(t)
	f.shard.update(func() { f.a.phase, f.a.infoPhase = failover.PhaseWaitSync, failover.PhaseWaitSync })
	f.holds.FollowClusterxFailover(f.a.addr, f.b.addr)
	f.waitReport(func(r failover.MasterReport) bool { return r.Holding }, "holding")
	w := f.write(1, "k1", "k2", "k3")
	f.waitHeld(3)
	f.shard.update(f.succeed)
	f.requireAllOK(f.b, w)
	assert.Empty(t, f.a.executedKeys())
	assert.Zero(t, f.rt.Stats().Moved, "the held writes went straight to B: %+v", f.rt.Stats())
	assert.Equal(t, []string{f.b.addr}, f.rt.Masters())
	f.assertHoldsAccounted()
}

// A slot migration's TRYAGAIN concerns its slot only: the write is resent
// until the slot takes writes again, and the rest of the shard is not held.
func TestMigrationTryAgainHoldsNothing(t *testing.T) {
	f := newFailoverRig(t)
	migrating := int(router.Slot([]byte("m")))
	refusals := 0
	f.shard.update(func() {
		f.a.forbidden = func(slot int) bool {
			if slot != migrating || refusals == 5 {
				return false
			}
			refusals++
			return true
		}
	})
	w := f.write(1, "m")
	other := f.write(2, "other")
	f.requireAllOK(f.a, w, other)
	st := f.rt.Stats()
	assert.Equal(t, uint64(5), st.Rejected, "five TRYAGAINs, each resent: %+v", st)
	assert.Zero(t, f.holds.Report().Totals.Held, "nothing was held: %+v", f.holds.Report().Totals)
	assert.Empty(t, f.holds.Report().Masters, "no handover was followed")
	assert.NotEqual(t, failover.StateHolding, f.holds.State(f.a.addr))
}

// Follow's channel tells how the followed handover ended, a second Follow
// of the same master gets the same end, and a Follow after Close is told at
// once that nothing is followed.
func TestFollowTellsHowTheHandoverEnded(t *testing.T) {
	f := newFailoverRig(t)
	f.shard.update(func() { f.a.phase, f.a.infoPhase = failover.PhaseWaitSync, failover.PhaseWaitSync })
	first := f.holds.FollowClusterxFailover(f.a.addr, f.b.addr)
	f.waitReport(func(r failover.MasterReport) bool { return r.Following }, "following")
	second := f.holds.FollowClusterxFailover(f.a.addr, f.b.addr)
	f.shard.update(f.succeed)
	for _, done := range []<-chan failover.Outcome{first, second} {
		select {
		case out := <-done:
			require.NoError(t, out.Err)
			assert.Equal(t, failover.PhaseSuccess, out.Handover.Final)
			assert.Equal(t, []failover.Phase{failover.PhaseWaitSync, failover.PhaseSuccess}, out.Handover.Phases)
		case <-time.After(raceWait):
			t.Fatal("no outcome")
		}
	}

	f.shard.update(func() { f.a.phase, f.a.infoPhase = failover.PhaseFailed, failover.PhaseFailed })
	out := <-f.holds.FollowClusterxFailover(f.a.addr, f.b.addr)
	require.NoError(t, out.Err)
	assert.Equal(t, failover.PhaseFailed, out.Handover.Final)

	f.holds.Close()
	out = <-f.holds.FollowClusterxFailover(f.a.addr, f.b.addr)
	assert.ErrorIs(t, out.Err, failover.ErrHoldsClosed)
}
