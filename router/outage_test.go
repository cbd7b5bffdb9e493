package router

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heldNowOn reports the requests waiting in addr's hold now.
func heldNowOn(r *Router, addr string) uint64 {
	return bufferOf(r).Report().Of(addr).Holds.HeldNow
}

// A dead master's requests wait in its outage; once the topology gives its
// slots to another node, they are sent there and succeed.
func TestOutageHeldRequestsGoToTheNewMaster(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	cfg := testConfig(a.addr)
	cfg.HoldTimeout = 10 * time.Second
	r := newTestRouter(t, cfg)
	b.stop()
	require.Eventually(t, func() bool { st := r.Stats(); return st.ConnsLost+st.DialFailures >= uint64(cfg.ConnsPerNode) }, 5*time.Second, time.Millisecond)
	key := keyOwnedBy(fc, b, "b")
	write, read := keyed(false, "SET", key, "v"), keyed(true, "GET", key)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r.Do(ctx, []*Request{write, read})
	}()
	require.Eventually(t, func() bool { return heldNowOn(r, b.addr) == 2 }, 5*time.Second, time.Millisecond,
		"the write and the read wait in b's outage")
	fc.setOwner(a, 2) // the controller promoted a
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("held requests were not released")
	}
	assert.Equal(t, "+OK\r\n", string(write.Reply))
	assert.Equal(t, "$1\r\nv\r\n", string(read.Reply))
	a.mu.Lock()
	assert.Equal(t, "v", a.data[key], "the write landed on the new master")
	a.mu.Unlock()
	assertHoldsConserved(t, r)
	st := holdTotals(r)
	assert.Equal(t, st.Held, st.Released, "every held request was sent: %+v", st)
}

// Past HoldMaxBytes a request is answered TRYAGAIN instead of held, and the
// requests held before it are unaffected.
func TestHoldMaxBytesRefusesWhatWouldPassTheCap(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	small := keyed(false, "SET", "k", "v")
	hold := newTestHold(t, int64(len(small.Raw)+10))
	cfg := testConfig(a.addr)
	cfg.Hold = hold
	r := newTestRouter(t, cfg)
	hold.hold(a.addr)
	big := keyed(false, "SET", "k2", strings.Repeat("x", 64))
	done := make(chan struct{})
	go func() {
		defer close(done)
		doWithin(t, r, small)
	}()
	require.Eventually(t, func() bool { return holdTotals(r).Held == 1 }, 5*time.Second, time.Millisecond)
	doWithin(t, r, big)
	assert.Contains(t, string(big.Reply), "-TRYAGAIN ")
	assert.Contains(t, string(big.Reply), "not executed")
	assert.Equal(t, uint64(1), holdTotals(r).Full)
	hold.release(a.addr)
	<-done
	assert.Equal(t, "+OK\r\n", string(small.Reply))
	assertHoldsConserved(t, r)
	// Released, the cap is free again.
	hold.hold(a.addr)
	again := keyed(false, "SET", "k", "w")
	go func() {
		assert.Eventually(t, func() bool { return holdTotals(r).Held == 2 }, 5*time.Second, time.Millisecond)
		hold.release(a.addr)
	}()
	doWithin(t, r, again)
	assert.Equal(t, "+OK\r\n", string(again.Reply))
	assertHoldsConserved(t, r)
}

// routeToNewMaster routes every slot of a master to its replica at once.
func TestRouteToNewMasterRoutesTheShardToTheReplica(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	r := newTestRouter(t, testConfig(a.addr))
	// Without a replica in the topology, nothing moves.
	r.routeToNewMaster(b.addr, "")
	assert.Equal(t, b.addr, r.MasterOf(int(Slot([]byte(keyOwnedBy(fc, b, "x"))))))
	r.routeToNewMaster(b.addr, a.addr)
	for s := range SlotCount {
		require.Equal(t, a.addr, r.MasterOf(s), "slot %d", s)
	}
	assert.Equal(t, []string{a.addr}, r.Masters())
}

// Changed is closed by the next table change, and only then.
func TestChangedSignalsTheNextTableChange(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	r := newTestRouter(t, testConfig(a.addr))
	changed := r.Changed()
	select {
	case <-changed:
		t.Fatal("closed before any change")
	default:
	}
	r.routeToNewMaster(b.addr, a.addr)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("routeToNewMaster did not signal")
	}
	assert.NotEqual(t, changed, r.Changed(), "a new channel for the next change")
}

// waitWritable waits, as the proxy's dedicated connections do, until the
// hold lets a write to addr arrived now go: false when its budget ran out.
func waitWritable(r *Router, addr string) bool {
	ticket := r.AdmitWrite(addr, time.Now())
	if ticket == nil {
		return true
	}
	ticket.Join(0)
	<-ticket.Done()
	ticket.Sent()
	return ticket.Released()
}

// AdmitWrite holds a write to a held master, at most HoldTimeout.
func TestAdmitWriteWaitsOutTheHold(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	hold := newTestHold(t, 0)
	cfg := testConfig(a.addr)
	cfg.Hold = hold
	cfg.HoldTimeout = 50 * time.Millisecond
	r := newTestRouter(t, cfg)
	assert.True(t, waitWritable(r, a.addr), "nothing held")
	assert.True(t, waitWritable(r, "127.0.0.1:1"), "a node the router never used")
	hold.hold(a.addr)
	assert.False(t, waitWritable(r, a.addr), "held past HoldTimeout")

	patient := cfg
	patient.HoldTimeout = 10 * time.Second
	r2 := newTestRouter(t, patient)
	go func() {
		time.Sleep(10 * time.Millisecond)
		hold.release(a.addr) // still held from above
	}()
	assert.True(t, waitWritable(r2, a.addr), "released within HoldTimeout")
}

// New dials a node's connections while it installs the first slot table;
// dials that fail then (refused, or EMFILE when --backend-conns asks for
// more descriptors than the process may open) must not start an outage
// that looks for the node's slots in a table not there yet: that was a nil
// pointer panic in ownsSlots.
func TestDialFailureBeforeTheFirstTableStartsNoOutage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := ln.Addr().String()
	require.NoError(t, ln.Close())
	cfg := testConfig(refused)
	r := newRouter(cfg) // New's state while it loads the first view
	r.nodeOf(refused)
	require.Eventually(t, func() bool { return r.Stats().DialFailures >= uint64(cfg.ConnsPerNode) }, 5*time.Second, time.Millisecond)
	require.NoError(t, r.Close()) // waits for any outage follower
	assert.Empty(t, bufferOf(r).Report().Masters, "no outage before the slot table exists")
}
