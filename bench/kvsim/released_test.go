package kvsim

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With kvrocks#3295 the CLUSTERX usage error lists FAILOVER; released
// Kvrocks has neither FAILOVER nor TAKEOVER, answers them with the usage
// error ending MIGRATE, and prints no cluster_failover_state (spec sections
// 3, 7 and 8).
func TestReleasedKvrocksHasNoClusterxFailover(t *testing.T) {
	for _, tc := range []struct {
		released        bool
		usage           string
		failover, taken string
		infoTail        string
	}{
		{false, "-ERR CLUSTERX command, CLUSTERX VERSION|MYID|SETNODEID|SETNODES|SETSLOT|MIGRATE|FAILOVER\r\n",
			"-ERR wrong number of arguments\r\n", "+OK\r\n", "cluster_my_epoch:1\r\ncluster_failover_state:none\r\n"},
		{true, "-ERR CLUSTERX command, CLUSTERX VERSION|MYID|SETNODEID|SETNODES|SETSLOT|MIGRATE\r\n",
			"-ERR CLUSTERX command, CLUSTERX VERSION|MYID|SETNODEID|SETNODES|SETSLOT|MIGRATE\r\n",
			"-ERR CLUSTERX command, CLUSTERX VERSION|MYID|SETNODEID|SETNODES|SETSLOT|MIGRATE\r\n", "cluster_my_epoch:1\r\n"},
	} {
		master := ntStartNode(t, NodeConfig{Released: tc.released})
		replica := ntStartNode(t, NodeConfig{Released: tc.released})
		ntPush(t, 1, []string{ntMasterLine(ntID('a'), master, "0-16383"), ntReplicaLine(ntID('b'), replica, ntID('a'))},
			map[string]*Node{ntID('a'): master, ntID('b'): replica})
		m, r := ntDial(t, master.Addr()), ntDial(t, replica.Addr())
		assert.Equal(t, tc.usage, m.do("CLUSTERX", "SETSLOT", "1", "NODE", ntID('b')), "released=%v", tc.released)
		assert.Equal(t, tc.usage, m.do("CLUSTERX", "NOSUCH"), "released=%v", tc.released)
		assert.Equal(t, tc.failover, m.do("CLUSTERX", "FAILOVER"), "released=%v", tc.released)
		assert.Equal(t, tc.taken, r.do("CLUSTERX", "TAKEOVER"), "released=%v", tc.released)
		info := m.do("CLUSTER", "INFO")
		assert.Equal(t, tc.infoTail, info[len(info)-len(tc.infoTail)-2:len(info)-2], "released=%v", tc.released)
		if tc.released {
			assert.Equal(t, tc.usage, m.do("CLUSTERX", "FAILOVER", ntID('b'), "1000"))
			assert.Equal(t, "+OK\r\n", m.do("CLIENT", "PAUSE", "10", "WRITE"), "CLIENT PAUSE is released")
		}
	}
}

// pushOrderLoss runs a CLUSTERX FAILOVER on a 1 x 1 cluster holding keys
// written before it and through the new master after it, pushes the swapped
// topology to both nodes in the given order by hand, and returns how many
// of those keys the new master still has once the old master resynced.
func pushOrderLoss(t *testing.T, oldMasterFirst bool) (kept, written int) {
	cfg := testClusterConfig(t)
	cfg.Shards = 1
	cfg.Controller.AutoFailover = false
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	oldMaster, newMaster := c.Nodes()[0], c.Nodes()[1]
	oldCl, newCl := dial(t, oldMaster, ""), dial(t, newMaster, "")
	const before, after = 400, 100
	for i := range before {
		require.NoError(t, oldCl.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err())
	}
	require.NoError(t, oldCl.Do(ctx, "CLUSTERX", "FAILOVER", newMaster.ID(), "5000").Err())
	require.Eventually(t, func() bool { return clusterInfoField(ctx, oldCl, "cluster_failover_state") == "success" },
		15*time.Second, 5*time.Millisecond)
	for i := before; i < before+after; i++ { // acknowledged by the new master after TAKEOVER
		require.NoError(t, newCl.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err())
	}

	next, err := c.Topology().withPromoted(0, newMaster.ID())
	require.NoError(t, err)
	push := func(n *Node) {
		require.NoError(t, c.Controller().pushTo(ctx, nodeRef(n), next, next.Render()))
	}
	if oldMasterFirst {
		push(oldMaster)
		// The deletions reach the new master while it still replicates.
		require.Eventually(t, func() bool { return newMaster.Keyspace().DBSize() < before+after },
			10*time.Second, 5*time.Millisecond, "the old master's deletions replicate to the new master")
		push(newMaster)
	} else {
		push(newMaster)
		push(oldMaster)
	}
	require.Eventually(t, func() bool {
		return polledInfoField(ctx, oldCl, "replication", "master_link_status") == "up" &&
			oldMaster.Keyspace().Sequence() == newMaster.Keyspace().Sequence()
	}, 10*time.Second, 5*time.Millisecond, "the old master resyncs from the new one")
	for i := range before + after {
		if v, err := newCl.Get(ctx, "k"+strconv.Itoa(i)).Result(); err == nil && v == strconv.Itoa(i) {
			kept++
		}
	}
	assert.Equal(t, newMaster.Keyspace().DBSize(), oldMaster.Keyspace().DBSize(), "the old master has what the new one has")
	return kept, before + after
}

// Spec section 8: applying the swapped topology after a successful
// CLUSTERX FAILOVER, the old master deletes its former slots and the
// deletions replicate to the new master while it is still attached, so a
// push to the old master first loses keys, the new master's own writes
// since TAKEOVER included; a push to the new master first loses none.
func TestSwappedTopologyPushOrderDecidesDataLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	t.Run("old master first", func(t *testing.T) {
		kept, written := pushOrderLoss(t, true)
		assert.Zero(t, kept, "every key of the old master's slots is gone, out of %d", written)
	})
	t.Run("new master first", func(t *testing.T) {
		kept, written := pushOrderLoss(t, false)
		assert.Equal(t, written, kept)
	})
}

// Every topology the controller commits reaches the masters it promotes
// before any other node: manual failover, automatic promotion (and
// CommitHandover, TestCommitHandoverPushesToTheNewMasterFirst).
func TestControllerPushesToNewMastersFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg, logs := loggedClusterConfig(t)
	cfg.Controller.ProbeInterval = 100 * time.Millisecond
	cfg.Controller.FailureCount = 3
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	nodes := c.Nodes()

	require.NoError(t, c.Controller().FailoverShard(ctx, 0, slowSyncOptions()))
	order := appliedOrder(logs.String(), 2)
	require.Len(t, order, 4, "every node applied version 2")
	assert.Equal(t, nodes[1].ID()[:8], order[0], "manual failover: the new master applied it first")

	require.NoError(t, c.Controller().Kill(nodes[2].ID()))
	require.Eventually(t, func() bool { return c.Topology().Version == 3 }, 15*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return len(appliedOrder(logs.String(), 3)) == 3 }, 10*time.Second, 10*time.Millisecond,
		"every running node applied version 3")
	assert.Equal(t, nodes[3].ID()[:8], appliedOrder(logs.String(), 3)[0], "automatic failover: the new master applied it first")
}
