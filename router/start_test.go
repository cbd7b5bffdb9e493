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

// startWithin runs Start and waits for done, failing if it never comes or
// comes twice.
func startWithin(t *testing.T, r *Router, reqs ...*Request) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var calls atomic.Int32
	done := make(chan struct{})
	// The first round's writes are deferred, as an event loop does.
	var writes Writes
	r.Start(ctx, reqs, func() {
		if calls.Add(1) == 1 {
			close(done)
		}
	}, &writes)
	size := 0
	for _, q := range reqs {
		size += len(q.Raw)
	}
	require.Equal(t, size, writes.Queued(), "every request queued for the flush")
	writes.Flush()
	require.Zero(t, writes.Queued())
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Start never called done")
	}
	// A second call would come from the same completion path; give it a
	// moment to show up.
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, int32(1), calls.Load(), "done must run exactly once")
	for i, q := range reqs {
		require.NotEmpty(t, q.Reply, "request %d has no reply", i)
	}
}

func TestStartAnswersEveryRequestInOneRound(t *testing.T) {
	fc := newFakeCluster(t, 2)
	r := newTestRouter(t, testConfig(fc.seeds()...))
	reqs := []*Request{
		keyed(false, "SET", "a", "1"),
		keyed(false, "SET", "b", "2"),
		keyed(true, "GET", "a"),
		keyed(true, "GET", "b"),
		keyed(true, "GET", "missing"),
	}
	startWithin(t, r, reqs...)
	assert.Equal(t, "+OK\r\n", string(reqs[0].Reply))
	assert.Equal(t, "+OK\r\n", string(reqs[1].Reply))
	assert.Equal(t, "$1\r\n1\r\n", string(reqs[2].Reply))
	assert.Equal(t, "$1\r\n2\r\n", string(reqs[3].Reply))
	assert.Equal(t, "$-1\r\n", string(reqs[4].Reply))
}

func TestStartFollowsMovedInALaterRound(t *testing.T) {
	fc := newFakeCluster(t, 2)
	a, b := fc.nodes[0], fc.nodes[1]
	fc.setOwner(a, 1)
	r := newTestRouter(t, testConfig(a.addr))
	key := "user:1"
	slot := int(Slot([]byte(key)))
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "SET") {
			conn.WriteError("MOVED " + itoa(slot) + " " + b.addr)
			return true
		}
		return false
	})
	req := keyed(false, "SET", key, "v")
	startWithin(t, r, req)
	assert.Equal(t, "+OK\r\n", string(req.Reply))
	assert.Equal(t, b.addr, r.MasterOf(slot))
	b.mu.Lock()
	defer b.mu.Unlock()
	assert.Equal(t, "v", b.data[key], "the write landed on the node MOVED named")
}

func TestStartAnswersRequestsOfALostConnection(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := testConfig(a.addr)
	cfg.ConnsPerNode = 1
	r := newTestRouter(t, cfg)
	var dropped atomic.Bool
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "DROP") && !dropped.Swap(true) {
			_ = conn.NetConn().Close()
			return true
		}
		return false
	})
	a.data["r"] = "x"
	reqs := []*Request{
		keyed(false, "SET", "w", "1"),
		{Raw: command("DROP"), Slot: int(Slot([]byte("r")))},
		keyed(true, "GET", "r"),
	}
	startWithin(t, r, reqs...)
	assert.Equal(t, string(replyLost), string(reqs[0].Reply))
	assert.Equal(t, string(replyLost), string(reqs[1].Reply))
	assert.Equal(t, "$1\r\nx\r\n", string(reqs[2].Reply), "the read is resent on a new connection")
}

func TestStartAfterCloseAnswersAtOnce(t *testing.T) {
	fc := newFakeCluster(t, 1)
	r, err := New(context.Background(), testConfig(fc.seeds()...))
	require.NoError(t, err)
	require.NoError(t, r.Close())
	req := keyed(true, "GET", "a")
	called := false
	r.Start(context.Background(), []*Request{req}, func() { called = true }, nil)
	assert.True(t, called)
	assert.Equal(t, string(replyShuttingDown), string(req.Reply))
}

func TestAffinityKeepsACallersRequestsOnOneConnection(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := testConfig(a.addr)
	cfg.ConnsPerNode = 4
	r := newTestRouter(t, cfg)
	var mu sync.Mutex
	seen := map[string]bool{}
	a.setScript(func(conn redcon.Conn, args []string) bool {
		if isCommand(args, "SET") {
			mu.Lock()
			seen[conn.RemoteAddr()] = true
			mu.Unlock()
		}
		return false
	})
	connsUsed := func(affinity uint32) int {
		mu.Lock()
		clear(seen)
		mu.Unlock()
		var reqs []*Request
		for i := range 40 {
			q := keyed(false, "SET", "key:"+itoa(i), "v")
			q.Affinity = affinity
			reqs = append(reqs, q)
		}
		doWithin(t, r, reqs...)
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	assert.Equal(t, 1, connsUsed(7))
	assert.Greater(t, connsUsed(0), 1, "without affinity, requests spread by slot")
}
