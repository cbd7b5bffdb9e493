package router

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
	"kvproxy/bench/kvsim"
)

// The spares prepare the clusters of the shapes two tests each want while
// the tests before them run (TestMain closes the ones left).
var (
	twoByOneSpare  = cluster.NewSpare(cluster.Options{Masters: 2, ReplicasPerMaster: 1}, 1)
	oneMasterSpare = cluster.NewSpare(cluster.Options{Masters: 1}, 1)
)

func skipIfShort(t testing.TB) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
}

// redisRouterConfig suits a real cluster: the fake-friendly test timings,
// with the default retry budget so a failover in progress is waited out.
func redisRouterConfig(seeds ...string) Config {
	cfg := testConfig(seeds...)
	def := DefaultConfig()
	cfg.MaxRetries, cfg.RetryBackoff, cfg.MaxRetryBackoff = def.MaxRetries, def.RetryBackoff, def.MaxRetryBackoff
	return cfg
}

func TestRedisClusterRoutesToTheRightMaster(t *testing.T) {
	skipIfShort(t)
	c := cluster.Start(t, cluster.Options{Masters: 3, ReplicasPerMaster: 1})
	r := newTestRouter(t, redisRouterConfig(c.Addrs()[0]))

	var masters []string
	for _, m := range c.Masters() {
		masters = append(masters, m.Addr)
	}
	assert.ElementsMatch(t, masters, r.Masters())
	topo := r.Topology()
	assert.Len(t, topo.Nodes, 6)
	for _, n := range topo.Nodes {
		if n.Role == "replica" {
			assert.NotEmpty(t, n.MasterID)
			assert.Empty(t, n.Slots)
		} else {
			assert.Equal(t, c.SlotRanges()[n.ID][0].Start, n.Slots[0].Start)
		}
	}

	reqs := make([]*Request, 60)
	for i := range reqs {
		key := fmt.Sprintf("key:%d", i)
		reqs[i] = keyed(false, "SET", key, "v"+key)
	}
	doWithin(t, r, reqs...)
	ctx := context.Background()
	for i, q := range reqs {
		key := fmt.Sprintf("key:%d", i)
		require.Equal(t, "+OK\r\n", string(q.Reply))
		got, err := c.MasterForKey(key).Client().Get(ctx, key).Result()
		require.NoError(t, err, "the key is on the master that owns its slot")
		assert.Equal(t, "v"+key, got)
	}
	dbsize := &Request{Raw: command("DBSIZE"), Slot: -1, Addr: r.Masters()[0]}
	doWithin(t, r, dbsize)
	assert.True(t, strings.HasPrefix(string(dbsize.Reply), ":"), "got %q", dbsize.Reply)
}

func TestRedisClusterMigrationAskThenMoved(t *testing.T) {
	skipIfShort(t)
	c := cluster.Start(t, cluster.Options{Masters: 2})
	r := newTestRouter(t, redisRouterConfig(c.Addrs()...))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const slot = 100
	moved, fresh := cluster.KeyInSlot(slot, "moved"), cluster.KeyInSlot(slot, "fresh")
	src := c.MasterForSlot(slot)
	var dst *cluster.Node
	for _, m := range c.Masters() {
		if m != src {
			dst = m
		}
	}
	doWithin(t, r, keyed(false, "SET", moved, "1"))
	require.NoError(t, c.BeginMigration(ctx, slot, src, dst))
	n, err := c.MigrateKeys(ctx, slot, src, dst)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// src no longer has the keys: it answers ASK, the router follows it.
	reqs := []*Request{keyed(true, "GET", moved), keyed(false, "SET", fresh, "2")}
	doWithin(t, r, reqs...)
	assert.Equal(t, "$1\r\n1\r\n", string(reqs[0].Reply))
	assert.Equal(t, "+OK\r\n", string(reqs[1].Reply))
	assert.Equal(t, src.Addr, r.MasterOf(slot), "ASK does not change the owner")
	got, err := dst.Client().Do(ctx, "ASKING").Result()
	require.NoError(t, err)
	require.Equal(t, "OK", got)

	require.NoError(t, c.FinishMigration(ctx, slot, src, dst))
	get := keyed(true, "GET", fresh)
	doWithin(t, r, get)
	assert.Equal(t, "$1\r\n2\r\n", string(get.Reply))
	assert.Equal(t, dst.Addr, r.MasterOf(slot), "MOVED patched the table at once")
}

func TestRedisClusterFailoverMovedIsFollowed(t *testing.T) {
	skipIfShort(t)
	c := twoByOneSpare.Start(t)
	r := newTestRouter(t, redisRouterConfig(c.Addrs()[0]))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	key := "failover:key"
	doWithin(t, r, keyed(false, "SET", key, "before"))
	old := c.MasterForKey(key)
	replica := c.ReplicasOf(old.ID)[0]
	require.NoError(t, c.Failover(ctx, replica))

	reqs := []*Request{keyed(false, "SET", key, "after"), keyed(true, "GET", key)}
	doWithin(t, r, reqs...)
	assert.Equal(t, "+OK\r\n", string(reqs[0].Reply))
	assert.Equal(t, "$5\r\nafter\r\n", string(reqs[1].Reply))
	assert.Equal(t, replica.Addr, r.MasterOf(int(Slot([]byte(key)))))
	for _, rg := range c.SlotRanges()[replica.ID] {
		assert.Equal(t, replica.Addr, r.MasterOf(rg.Start), "one MOVED to the replica moved the whole shard")
		assert.Equal(t, replica.Addr, r.MasterOf(rg.End))
	}
	assert.NotContains(t, r.Masters(), old.Addr)
}

// A handover the router saw is undone only by a topology that makes the old
// master a master again with a higher config epoch: a failover back is such
// a topology on Redis Cluster, and is followed without an error.
func TestRedisClusterFailBackAfterRoutingToTheNewMasterIsFollowed(t *testing.T) {
	skipIfShort(t)
	c := twoByOneSpare.Start(t)
	r := newTestRouter(t, redisRouterConfig(c.Addrs()[0]))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	key := "failback:key"
	slot := int(Slot([]byte(key)))
	doWithin(t, r, keyed(false, "SET", key, "before"))
	old := c.MasterForKey(key)
	replica := c.ReplicasOf(old.ID)[0]
	require.NoError(t, c.Failover(ctx, replica))
	r.routeToNewMaster(old.Addr, replica.Addr)
	r.awaitRefresh(ctx)
	require.Equal(t, replica.Addr, r.MasterOf(slot), "the old master is a replica now")
	require.True(t, r.table.Load().handedOver(old.Addr))

	require.NoError(t, c.Failover(ctx, old))
	reqs := []*Request{keyed(false, "SET", key, "after"), keyed(true, "GET", key)}
	doWithin(t, r, reqs...)
	assert.Equal(t, "+OK\r\n", string(reqs[0].Reply))
	assert.Equal(t, "$5\r\nafter\r\n", string(reqs[1].Reply))
	assert.Equal(t, old.Addr, r.MasterOf(slot))
	assert.NotContains(t, r.Masters(), replica.Addr)
}

func TestRedisClusterKilledMasterNeverHangs(t *testing.T) {
	skipIfShort(t)
	c := cluster.Start(t, cluster.Options{Masters: 3, ReplicasPerMaster: 1, NodeTimeout: time.Second})
	r := newTestRouter(t, redisRouterConfig(c.Addrs()[0]))

	key := "victim"
	doWithin(t, r, keyed(false, "SET", key, "v"))
	victim := c.MasterForKey(key)
	replica := c.ReplicasOf(victim.ID)[0]
	require.NoError(t, c.Kill(victim))

	// Until the replica takes over, requests wait in the master's outage
	// for at most the hold budget, then fail with a clear error saying
	// they did not run; afterwards both work through the new master.
	require.Eventually(t, func() bool {
		reqs := []*Request{keyed(false, "SET", key, "w"), keyed(true, "GET", key)}
		doWithin(t, r, reqs...)
		for _, q := range reqs {
			if q.Reply[0] == '-' {
				assert.True(t, strings.HasPrefix(string(q.Reply), "-TRYAGAIN backend "+victim.Addr+" is unreachable") ||
					strings.HasPrefix(string(q.Reply), "-CLUSTERDOWN "), "unexpected reply %q", q.Reply)
			}
		}
		return string(reqs[0].Reply) == "+OK\r\n" && string(reqs[1].Reply) == "$1\r\nw\r\n"
	}, 30*time.Second, 50*time.Millisecond)
	assert.Equal(t, replica.Addr, r.MasterOf(int(Slot([]byte(key)))))
}

func TestRedisClusterConnectionLossResendsReads(t *testing.T) {
	skipIfShort(t)
	c := oneMasterSpare.Start(t)
	cfg := redisRouterConfig(c.Addrs()...)
	cfg.ConnsPerNode = 1
	r := newTestRouter(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := c.Masters()[0].Client()
	require.NoError(t, admin.Set(ctx, "{k}str", "v", 0).Err())

	// BLPOP holds the pipeline unanswered on the router's only connection
	// until CLIENT KILL drops it: BLPOP and INCR were sent (the INCR did not
	// run, but the router cannot know), the GET is safe to resend.
	reqs := []*Request{
		keyed(false, "BLPOP", "{k}list", "10"),
		keyed(true, "GET", "{k}str"),
		keyed(false, "INCR", "{k}counter"),
	}
	killed := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			list, err := admin.ClientList(ctx).Result()
			if err == nil && strings.Contains(list, "cmd=blpop") {
				killed <- admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		killed <- ctx.Err()
	}()
	doWithin(t, r, reqs...)
	require.NoError(t, <-killed)
	assert.Equal(t, string(replyLost), string(reqs[0].Reply))
	assert.Equal(t, "$1\r\nv\r\n", string(reqs[1].Reply), "a read is resent on a new connection")
	assert.Equal(t, string(replyLost), string(reqs[2].Reply))
	counter, err := admin.Get(ctx, "{k}counter").Result()
	assert.ErrorIs(t, err, redis.Nil, "the INCR was not resent, got %q", counter)
}

func TestDoDoesNotAllocatePerRequest(t *testing.T) {
	skipIfShort(t)
	c := oneMasterSpare.Start(t)
	r := newTestRouter(t, redisRouterConfig(c.Addrs()...))
	reqs := make([]*Request, 16)
	for i := range reqs {
		key := fmt.Sprintf("alloc:%d", i)
		if i%2 == 0 {
			reqs[i] = keyed(false, "SET", key, "value")
		} else {
			reqs[i] = keyed(true, "GET", key)
		}
	}
	ctx := context.Background()
	for range 100 { // warm up buffers, pools and FIFOs
		r.Do(ctx, reqs)
	}
	allocs := testing.AllocsPerRun(200, func() { r.Do(ctx, reqs) })
	assert.Less(t, allocs, 1.0, "allocations per Do of %d requests", len(reqs))
	for _, q := range reqs {
		assert.NotEqual(t, byte('-'), q.Reply[0], "%q", q.Reply)
	}
}

// kvsimFailover runs the in-server graceful failover of shard 0 by hand,
// without pushing the new topology, like Kvrocks between CLUSTERX FAILOVER
// success and the controller's push: CLUSTER SLOTS stays stale.
func kvsimFailover(t *testing.T, ctx context.Context, sim *kvsim.Cluster) (oldMaster, newMaster string) {
	shard := sim.Topology().Shards[0]
	replica := shard.Replicas[0]
	master := redis.NewClient(&redis.Options{Addr: shard.Master.Addr, Protocol: 2, MaxRetries: -1, DisableIdentity: true})
	defer master.Close()
	require.NoError(t, master.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID, "3000").Err())
	require.Eventually(t, func() bool {
		info, err := master.ClusterInfo(ctx).Result()
		require.NoError(t, err)
		require.NotContains(t, info, "cluster_failover_state:failed")
		return strings.Contains(info, "cluster_failover_state:success")
	}, 20*time.Second, 20*time.Millisecond)
	return shard.Master.Addr, replica.Addr
}

func TestKvsimMovedAfterFailoverOutlivesStaleSlots(t *testing.T) {
	skipIfShort(t)
	cfg := kvsim.DefaultClusterConfig()
	cfg.Shards, cfg.Replicas = 2, 1
	sim, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	sim.Controller().SetAutoFailover(false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var seeds []string
	for _, m := range sim.Masters() {
		seeds = append(seeds, m.Addr())
	}
	r := newTestRouter(t, redisRouterConfig(seeds[0]))
	assert.ElementsMatch(t, seeds, r.Masters())
	topo := r.Topology()
	require.Len(t, topo.Nodes, 4)
	assert.Equal(t, int64(1), topo.Epoch)
	for _, n := range topo.Nodes[2:] {
		assert.Equal(t, "replica", n.Role)
		assert.Len(t, n.ID, 40)
		assert.NotNil(t, sim.NodeByID(n.MasterID), "a replica names its master")
	}

	shard0 := sim.Topology().Shards[0]
	slot := shard0.Slots[0].Start
	key := cluster.KeyInSlot(slot, "kv")
	set := keyed(false, "SET", key, "1")
	doWithin(t, r, set)
	require.Equal(t, "+OK\r\n", string(set.Reply))

	oldMaster, newMaster := kvsimFailover(t, ctx, sim)
	require.Equal(t, oldMaster, r.MasterOf(slot))
	reqs := []*Request{keyed(false, "SET", key, "2"), keyed(true, "GET", key)}
	doWithin(t, r, reqs...)
	assert.Equal(t, "+OK\r\n", string(reqs[0].Reply))
	assert.Equal(t, "$1\r\n2\r\n", string(reqs[1].Reply))
	assert.Equal(t, newMaster, r.MasterOf(slot), "MOVED patched the table")
	assert.NotContains(t, r.Masters(), oldMaster, "the whole shard moved to the replica")

	// CLUSTER SLOTS still names the old master at the same version.
	r.awaitRefresh(ctx)
	assert.Equal(t, newMaster, r.MasterOf(slot), "a stale reload must not undo MOVED")
	assert.Contains(t, r.Masters(), newMaster)
}
