package router

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
	"kvproxy/bench/kvsim"
)

// pushTopology sends CLUSTERX SETNODES with topo to the nodes at addrs, one
// after the other in that order, pausing between two, as a controller that
// pushes node by node (or an operator by hand) does. force adds FORCE, which
// lets a node take a version at or below its own.
func pushTopology(t *testing.T, ctx context.Context, topo kvsim.Topology, addrs []string, force bool, pause time.Duration) {
	t.Helper()
	args := []any{"CLUSTERX", "SETNODES", topo.Render(), strconv.FormatInt(topo.Version, 10)}
	if force {
		args = append(args, "FORCE")
	}
	for i, addr := range addrs {
		if i > 0 {
			time.Sleep(pause)
		}
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DisableIdentity: true})
		err := c.Do(ctx, args...).Err()
		_ = c.Close()
		require.NoError(t, err, "SETNODES version %d to %s", topo.Version, addr)
	}
}

// withRolesSwapped returns topo at version with the master and the first
// replica of each of shards swapped.
func withRolesSwapped(topo kvsim.Topology, version int64, shards ...int) kvsim.Topology {
	next := topo.Clone()
	next.Version = version
	for _, s := range shards {
		sh := &next.Shards[s]
		sh.Master, sh.Replicas[0] = sh.Replicas[0], sh.Master
	}
	return next
}

func nodeAddrs(sim *kvsim.Cluster) []string {
	var addrs []string
	for _, n := range sim.Nodes() {
		addrs = append(addrs, n.Addr())
	}
	return addrs
}

// kvsimRouterConfig is the default Config on sim's first master.
func kvsimRouterConfig(sim *kvsim.Cluster) Config {
	cfg := DefaultConfig()
	cfg.Seeds = []string{sim.Masters()[0].Addr()}
	return cfg
}

// load sends SET and GET pipelines on keys of every slot through r from
// callers goroutines until stopped, and keeps the error replies.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	sent    atomic.Int64
	mu      sync.Mutex
	errored []string
}

func startLoad(t *testing.T, r *Router, callers int) *load {
	l := &load{stop: make(chan struct{})}
	for c := range callers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				key := fmt.Sprintf("load:%d:%d", c, rand.IntN(1000))
				reqs := []*Request{keyed(false, "SET", key, strconv.Itoa(i)), keyed(true, "GET", key)}
				r.Do(ctx, reqs)
				for _, q := range reqs {
					if q.Reply[0] == '-' {
						l.mu.Lock()
						l.errored = append(l.errored, string(q.Reply))
						l.mu.Unlock()
					}
				}
				l.sent.Add(int64(len(reqs)))
			}
		}()
	}
	t.Cleanup(func() { l.end() })
	return l
}

// end stops the load and returns its error replies; it may be called again.
func (l *load) end() []string {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errored
}

// startKvsimUnderLoad starts a kvsim cluster of 3 shards and a router on
// it, and has 8 callers send through it for a moment before it returns.
func startKvsimUnderLoad(t *testing.T) (*kvsim.Cluster, *Router, *load) {
	sim := startKvsim(t, 3)
	r := newTestRouter(t, kvsimRouterConfig(sim))
	l := startLoad(t, r, 8)
	time.Sleep(200 * time.Millisecond)
	return sim, r, l
}

// Item 3 of issue 10: after a failover the router saw (routeToNewMaster), a
// controller that never learnt of it pushes its stale topology: at the same
// version (which the nodes ignore), forced at the same version and forced at
// a lower one (which they apply, making the old master master again), then
// unforced at its own version, as its probe re-syncs nodes behind it. The
// router keeps the shard on the new master throughout: a request to it gets
// a TRYAGAIN, never the old master's stale value. A genuinely newer
// topology that makes the old master master again is followed.
func TestKvsimStaleTopologyNeverUndoesAHandover(t *testing.T) {
	skipIfShort(t)
	// The controller's probe would re-sync the forced nodes whenever it
	// runs: here the test does it, in order.
	sim := startKvsim(t, 2, func(cfg *kvsim.ClusterConfig) { cfg.Controller.ProbeInterval = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := kvsimRouterConfig(sim)
	cfg.HoldTimeout = 500 * time.Millisecond
	r := newTestRouter(t, cfg)
	stale := sim.Topology()
	slot := stale.Shards[0].Slots[0].Start
	key := cluster.KeyInSlot(slot, "handover")
	set := keyed(false, "SET", key, "before")
	doWithin(t, r, set)
	require.Equal(t, "+OK\r\n", string(set.Reply))

	oldMaster, newMaster := kvsimFailover(t, ctx, sim)
	r.routeToNewMaster(oldMaster, newMaster)
	require.Equal(t, newMaster, r.MasterOf(slot))
	set = keyed(false, "SET", key, "after")
	doWithin(t, r, set)
	require.Equal(t, "+OK\r\n", string(set.Reply))
	moved := r.Stats().Moved

	require.NoError(t, sim.Controller().PushTopology(ctx)) // version 1 again: ignored
	r.awaitRefresh(ctx)
	get := keyed(true, "GET", key)
	doWithin(t, r, get)
	assert.Equal(t, "$5\r\nafter\r\n", string(get.Reply), "the controller's own push at the same version")
	assert.Equal(t, moved, r.Stats().Moved, "served by the new master at once")

	for _, push := range []struct {
		name    string
		version int64
		force   bool
	}{
		{"forced at the same version", stale.Version, true},
		{"forced at a lower version", stale.Version - 1, true},
		{"re-synced above the forced version", stale.Version, false},
	} {
		old := stale.Clone()
		old.Version = push.version
		pushTopology(t, ctx, old, nodeAddrs(sim), push.force, 0)
		r.awaitRefresh(ctx)
		assert.Equal(t, push.version, r.Topology().Epoch, "%s: the view was loaded", push.name)
		assert.Equal(t, newMaster, r.MasterOf(slot), push.name)
		assert.NotContains(t, r.Masters(), oldMaster, push.name)
		bounces := r.Stats().Bounces
		get := keyed(true, "GET", key)
		doWithin(t, r, get)
		assert.True(t, strings.HasPrefix(string(get.Reply), "-TRYAGAIN "), "%s: got %q, not the old master's value", push.name, get.Reply)
		assert.Contains(t, string(get.Reply), "not executed")
		assert.Greater(t, r.Stats().Bounces, bounces, "%s: the new master's MOVED back was not followed", push.name)
	}

	newer := stale.Clone()
	newer.Version = stale.Version + 1
	pushTopology(t, ctx, newer, nodeAddrs(sim), false, 0)
	get = keyed(true, "GET", key)
	doWithin(t, r, get)
	assert.Equal(t, "$6\r\nbefore\r\n", string(get.Reply), "version 2 makes the old master master again")
	assert.Equal(t, oldMaster, r.MasterOf(slot))
	assert.Equal(t, newer.Version, r.Topology().Epoch)
}

// Item 6 of issue 10: a role swap of every shard pushed node by node, in
// node order with a pause between two, so that each old master redirects to
// its new master, which still redirects back, for a whole pause. Under load,
// no client sees an error: the bouncing requests wait for the push within
// their hold budget.
func TestKvsimRoleSwapPushedNodeByNodeUnderLoadHasNoClientErrors(t *testing.T) {
	skipIfShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sim, r, l := startKvsimUnderLoad(t)

	topo := sim.Topology()
	next := withRolesSwapped(topo, topo.Version+1, 0, 1, 2)
	pushTopology(t, ctx, next, nodeAddrs(sim), false, 300*time.Millisecond)
	sent := l.sent.Load()
	require.Eventually(t, func() bool { return l.sent.Load() > sent+100 }, 30*time.Second, 10*time.Millisecond,
		"the load goes on after the push")
	errored := l.end()
	assert.Empty(t, errored, "%d error replies", len(errored))
	assert.Positive(t, r.Stats().Bounces, "the nodes disagreed while the push went on")
	for _, s := range next.Shards {
		assert.Equal(t, s.Master.Addr, r.MasterOf(s.Slots[0].Start))
	}
}

// Item 7 of issue 10, with traffic: kvsim's controller fails shards over
// (pushing each swapped topology to every node at once) while requests
// flow; they follow the new masters without an error.
func TestKvsimControllerPushUnderLoadIsFollowedWithoutErrors(t *testing.T) {
	skipIfShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sim, r, l := startKvsimUnderLoad(t)
	for _, shard := range []int{0, 1, 0} {
		require.NoError(t, sim.Controller().FailoverShard(ctx, shard, kvsim.DefaultFailoverOptions()))
		time.Sleep(100 * time.Millisecond)
	}
	errored := l.end()
	assert.Empty(t, errored, "%d error replies", len(errored))
	assert.Positive(t, r.Stats().Moved, "MOVED told the router")
	topo := sim.Topology()
	require.Eventually(t, func() bool { return r.Topology().Epoch == topo.Version }, 30*time.Second, 10*time.Millisecond)
	for _, s := range topo.Shards {
		assert.Equal(t, s.Master.Addr, r.MasterOf(s.Slots[0].Start))
	}
}

// Item 7 of issue 10, idle: nothing redirects, so the periodic reload is
// what notices a push; the first reload that starts after it does.
func TestKvsimIdlePushIsPickedUpByThePeriodicReload(t *testing.T) {
	skipIfShort(t)
	sim := startKvsim(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := kvsimRouterConfig(sim)
	cfg.RefreshInterval = 200 * time.Millisecond
	r := newTestRouter(t, cfg)
	require.NoError(t, sim.Controller().FailoverShard(ctx, 0, kvsim.DefaultFailoverOptions()))
	reloads := r.Stats().Reloads
	// The second reload to finish after the push started after it.
	require.Eventually(t, func() bool { return r.Stats().Reloads >= reloads+2 }, 30*time.Second, time.Millisecond)
	topo := sim.Topology()
	assert.Equal(t, topo.Version, r.Topology().Epoch)
	assert.Equal(t, topo.Shards[0].Master.Addr, r.MasterOf(topo.Shards[0].Slots[0].Start))
	assert.Zero(t, r.Stats().Moved, "no request told the router")
}

// startKvsim starts a kvsim cluster of shards masters with one replica each,
// without automatic failover and with what tune changes, closed when tb
// ends.
func startKvsim(tb testing.TB, shards int, tune ...func(*kvsim.ClusterConfig)) *kvsim.Cluster {
	tb.Helper()
	cfg := kvsim.DefaultClusterConfig()
	cfg.Shards, cfg.Replicas = shards, 1
	cfg.Controller.AutoFailover = false
	for _, f := range tune {
		f(&cfg)
	}
	sim, err := kvsim.StartCluster(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sim.Close)
	return sim
}
