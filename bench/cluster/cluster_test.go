package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"kvproxy/internal/leaktest"
)

// The end-to-end tests share one 3x1 cluster to stay within the time budget.
// Each test leaves it healthy with the slot layout it was formed with (a
// failover swaps which node serves a range, never the ranges), so they may
// run in any order or more than once.
var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// TestMain closes the shared cluster after the tests and then fails them if
// a goroutine they started is still running.
func TestMain(m *testing.M) {
	leakOptions := leaktest.Options()
	code := m.Run()
	if shared.c != nil {
		if err := shared.c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing shared cluster:", err)
			code = 1
		}
	}
	// Checked once the shared cluster is closed: its clients' goroutines
	// end with it.
	if code == 0 {
		if err := goleak.Find(leakOptions...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// requireRedisServer returns the redis-server path, skipping the test when
// there is none (failing it when CI=true).
func requireRedisServer(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("redis-server is required when CI=true: %v", err)
	}
	t.Skipf("redis-server not found (%v): install redis-server to run this test", err)
	return ""
}

func sharedCluster(t *testing.T) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	requireRedisServer(t)
	shared.once.Do(func() {
		shared.c, shared.err = New(context.Background(), Options{Masters: 3, ReplicasPerMaster: 1})
	})
	require.NoError(t, shared.err, "starting the shared cluster")
	c := shared.c
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes() {
				t.Logf("log tail of %s:\n%s", n, n.logTail(30))
			}
		}
	})
	return c
}

func newClusterClient(t *testing.T, c *Cluster) *redis.ClusterClient {
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { client.Close() })
	return client
}

func TestFormsHealthyCluster(t *testing.T) {
	c := sharedCluster(t)
	ctx := t.Context()

	masters, replicas := c.Masters(), c.Replicas()
	require.Len(t, masters, 3)
	require.Len(t, replicas, 3)
	for _, m := range masters {
		assert.Len(t, c.ReplicasOf(m.ID), 1, "replicas of %s", m)
		assert.True(t, m.Running())
		assert.Empty(t, m.MasterID())
	}

	// The layout is redis-cli's, one contiguous range per master.
	var ranges []SlotRange
	for id, owned := range c.SlotRanges() {
		require.NotNil(t, c.NodeByID(id))
		require.Len(t, owned, 1, "master %s owns one range", id)
		ranges = append(ranges, owned[0])
	}
	slices.SortFunc(ranges, func(a, b SlotRange) int { return a.Start - b.Start })
	assert.Equal(t, splitSlots(3), ranges)

	// Every node says so itself.
	for _, n := range c.Nodes() {
		info, err := n.Client().ClusterInfo(ctx).Result()
		require.NoError(t, err)
		assert.Equal(t, "ok", parseInfo(info)["cluster_state"], "%s", n)
		assert.Equal(t, "6", parseInfo(info)["cluster_known_nodes"], "%s", n)
		slots, err := n.Client().ClusterSlots(ctx).Result()
		require.NoError(t, err)
		assert.Len(t, slots, 3, "%s", n)
		for _, s := range slots {
			require.Len(t, s.Nodes, 2, "%s: master and replica of %d-%d", n, s.Start, s.End)
			assert.Equal(t, c.MasterForSlot(s.Start).Addr, s.Nodes[0].Addr)
			assert.Equal(t, s.Nodes[0].ID, c.NodeByAddr(s.Nodes[1].Addr).MasterID())
		}
	}
	for _, r := range replicas {
		info, err := r.Client().Info(ctx, "replication").Result()
		require.NoError(t, err)
		assert.Equal(t, "up", parseInfo(info)["master_link_status"], "%s", r)
	}
	assert.Equal(t, c.Nodes()[0], c.NodeByAddr(c.Addrs()[0]))
	assert.Nil(t, c.NodeByAddr("127.0.0.1:1"))
}

func TestClusterClientRoundTrip(t *testing.T) {
	c := sharedCluster(t)
	ctx := t.Context()
	client := newClusterClient(t, c)

	const keys = 200
	for i := range keys {
		require.NoError(t, client.Set(ctx, fmt.Sprintf("roundtrip:%d", i), i, 0).Err())
	}
	for i := range keys {
		key := fmt.Sprintf("roundtrip:%d", i)
		got, err := client.Get(ctx, key).Int()
		require.NoError(t, err, key)
		assert.Equal(t, i, got, key)
		// The key lives on the master the cached slot map names.
		direct, err := c.MasterForKey(key).Client().Get(ctx, key).Int()
		require.NoError(t, err, "%s on %s", key, c.MasterForKey(key))
		assert.Equal(t, i, direct, key)
	}
}

func TestMigrateSlotShowsAskThenMoved(t *testing.T) {
	c := sharedCluster(t)
	ctx := t.Context()
	const slot = 1000
	src := c.MasterForSlot(slot)
	require.NotNil(t, src)
	var dst *Node
	for _, m := range c.Masters() {
		if m != src {
			dst = m
			break
		}
	}
	require.NotNil(t, dst)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		assert.NoError(t, c.MigrateSlot(ctx, slot, src), "moving slot %d back", slot)
	})

	keyA, keyB := KeyInSlot(slot, "a"), KeyInSlot(slot, "b")
	require.NoError(t, src.Client().Set(ctx, keyA, "va", 0).Err())
	require.NoError(t, src.Client().Set(ctx, keyB, "vb", 0).Err())

	require.NoError(t, c.BeginMigration(ctx, slot, src, dst))
	got, err := src.Client().Get(ctx, keyA).Result()
	require.NoError(t, err, "keys not yet moved are still served by the source")
	assert.Equal(t, "va", got)

	moved, err := c.MigrateKeys(ctx, slot, src, dst)
	require.NoError(t, err)
	assert.Equal(t, 2, moved)

	_, err = src.Client().Get(ctx, keyA).Result()
	assert.EqualError(t, err, fmt.Sprintf("ASK %d %s", slot, dst.Addr))
	_, err = dst.Client().Get(ctx, keyA).Result()
	assert.EqualError(t, err, fmt.Sprintf("MOVED %d %s", slot, src.Addr), "importing node redirects without ASKING")
	conn := dst.Client().Conn()
	require.NoError(t, conn.Do(ctx, "ASKING").Err())
	got, err = conn.Get(ctx, keyA).Result()
	assert.NoError(t, err)
	assert.Equal(t, "va", got, "importing node serves the key after ASKING")
	require.NoError(t, conn.Close())

	require.NoError(t, c.FinishMigration(ctx, slot, src, dst))
	_, err = src.Client().Get(ctx, keyA).Result()
	assert.EqualError(t, err, fmt.Sprintf("MOVED %d %s", slot, dst.Addr))
	got, err = dst.Client().Get(ctx, keyB).Result()
	assert.NoError(t, err)
	assert.Equal(t, "vb", got)
	assert.Equal(t, dst, c.MasterForSlot(slot))
	assert.Equal(t, dst, c.MasterForKey(keyA))

	got, err = newClusterClient(t, c).Get(ctx, keyA).Result()
	assert.NoError(t, err)
	assert.Equal(t, "va", got)
}

func TestFailoverSwapsRoles(t *testing.T) {
	c := sharedCluster(t)
	ctx := t.Context()
	client := newClusterClient(t, c)
	const key = "failover:key"
	require.NoError(t, client.Set(ctx, key, "before", 0).Err())

	oldMaster := c.MasterForKey(key)
	require.NotNil(t, oldMaster)
	replicas := c.ReplicasOf(oldMaster.ID)
	require.Len(t, replicas, 1)
	replica := replicas[0]

	require.NoError(t, c.Failover(ctx, replica))

	assert.True(t, replica.IsMaster())
	assert.False(t, oldMaster.IsMaster())
	assert.Equal(t, replica.ID, oldMaster.MasterID())
	assert.Equal(t, replica, c.MasterForKey(key))
	assert.Equal(t, []*Node{oldMaster}, c.ReplicasOf(replica.ID))
	info, err := replica.Client().Info(ctx, "replication").Result()
	require.NoError(t, err)
	assert.Equal(t, "master", parseInfo(info)["role"])
	for _, n := range c.Nodes() {
		v, err := c.viewOf(ctx, n)
		require.NoError(t, err)
		assert.True(t, v.sees(replica.ID, ""), "%s sees the new master", n)
		assert.True(t, v.sees(oldMaster.ID, replica.ID), "%s sees the old master as its replica", n)
	}

	got, err := replica.Client().Get(ctx, key).Result()
	assert.NoError(t, err)
	assert.Equal(t, "before", got, "data survives the failover")
	_, err = oldMaster.Client().Get(ctx, key).Result()
	assert.ErrorContains(t, err, "MOVED", "old master redirects")

	require.NoError(t, c.Failover(ctx, oldMaster), "failing back")
	assert.True(t, oldMaster.IsMaster())
	assert.ErrorContains(t, c.Failover(ctx, oldMaster), "not a replica")
}

func TestKillAndRestart(t *testing.T) {
	c := sharedCluster(t)
	ctx := t.Context()
	client := newClusterClient(t, c)
	const key = "restart:key"
	require.NoError(t, client.Set(ctx, key, "kept", 0).Err())
	master := c.MasterForKey(key)
	require.NotNil(t, master)
	replicas := c.ReplicasOf(master.ID)
	require.Len(t, replicas, 1)
	replica := replicas[0]
	acked, err := master.Client().Wait(ctx, 1, 5000).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), acked, "the replica must hold the key before anything is killed")

	t.Run("replica", func(t *testing.T) {
		require.NoError(t, c.Kill(replica))
		assert.False(t, replica.Running())
		assert.Error(t, c.Kill(replica), "killing twice")
		require.NoError(t, client.Set(ctx, key, "while-replica-down", 0).Err(), "the master keeps serving")

		require.NoError(t, c.Restart(ctx, replica))
		assert.True(t, replica.Running())
		assert.Equal(t, master.ID, replica.MasterID(), "same id, same master after restart")
		conn := replica.Client().Conn()
		t.Cleanup(func() { conn.Close() })
		require.NoError(t, conn.ReadOnly(ctx).Err())
		got, err := conn.Get(ctx, key).Result()
		assert.NoError(t, err)
		assert.Equal(t, "while-replica-down", got, "the restarted replica resynced")
	})

	t.Run("master", func(t *testing.T) {
		require.NoError(t, c.Kill(master))
		assert.Error(t, c.Restart(ctx, replica), "restarting a running node")
		require.Eventually(t, func() bool {
			info, err := replica.Client().Info(ctx, "replication").Result()
			return err == nil && parseInfo(info)["role"] == "master"
		}, 30*time.Second, 50*time.Millisecond, "the replica takes over a killed master")

		require.NoError(t, c.Restart(ctx, master))
		assert.True(t, replica.IsMaster())
		assert.Equal(t, replica.ID, master.MasterID(), "the old master rejoins as a replica")
		got, err := client.Get(ctx, key).Result()
		assert.NoError(t, err)
		assert.Equal(t, "while-replica-down", got)

		require.NoError(t, c.Failover(ctx, master), "restoring the original roles")
	})
}

func TestCloseStopsEveryServer(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	requireRedisServer(t)
	c := Start(t, Options{Masters: 1})
	require.Len(t, c.Masters(), 1)
	require.Empty(t, c.Replicas())
	n := c.Nodes()[0]
	pid := n.proc.cmd.Process.Pid
	dir := c.baseDir
	assert.Equal(t, n, c.MasterForSlot(0))
	assert.Equal(t, n, c.MasterForSlot(SlotCount-1))

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")
	assert.False(t, n.Running())
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "redis-server must be gone")
	_, err := os.Stat(dir)
	assert.True(t, errors.Is(err, os.ErrNotExist), "temporary directory removed: %v", err)
	assert.ErrorIs(t, c.Restart(t.Context(), n), errClosed)
}

func TestStartSkipsOrFailsWithoutRedisServer(t *testing.T) {
	if os.Getenv("CI") == "true" {
		t.Skip("under CI=true Start fails instead of skipping, which would fail this test")
	}
	skipped := false
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Start(t, Options{RedisServer: "no-such-redis-server-" + strings.Repeat("x", 8)})
	})
	assert.True(t, skipped, "Start skips when redis-server is missing")
}

func TestSpareHandsOutFreshClustersAndClosesTheLast(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	requireRedisServer(t)
	s := NewSpare(Options{Masters: 1}, 1)
	first := s.Start(t)
	second := s.Start(t)
	assert.NotEqual(t, first.Addrs(), second.Addrs(), "each Start gets a cluster of its own")
	for _, c := range []*Cluster{first, second} {
		require.Len(t, c.Masters(), 1)
		assert.NoError(t, c.Masters()[0].Client().Set(t.Context(), "k", "v", 0).Err(), "%s serves", c.Addrs())
	}

	// The servers of a third, launched for a Start that never comes, are
	// Close's to stop.
	require.Len(t, s.next, 1)
	third := s.next[0]
	require.NoError(t, third.err)
	pid := third.c.Nodes()[0].proc.cmd.Process.Pid
	require.NoError(t, s.Close())
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "the third cluster's redis-server must be gone")
	assert.NoError(t, s.Close(), "nothing left to close")
}
