package kvsim

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseInfoFields(t *testing.T) {
	text := "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nslave0:ip=127.0.0.1,port=40003,offset=1,lag=0\r\n" +
		"\r\n# Keyspace\r\nsequence:42\r\nnot a field\r\nempty:\r\n"
	fields := ParseInfoFields(text)
	assert.Equal(t, map[string]string{
		"role":        "slave",
		"master_host": "127.0.0.1",
		"slave0":      "ip=127.0.0.1,port=40003,offset=1,lag=0",
		"sequence":    "42",
		"empty":       "",
	}, fields)
	seq, err := fieldInt(fields, "sequence")
	require.NoError(t, err)
	assert.Equal(t, int64(42), seq)
	_, err = fieldInt(fields, "missing")
	assert.Error(t, err)
	_, err = fieldInt(fields, "role")
	assert.Error(t, err)
	// CLUSTER NODES-style bare "\n" line ends work too.
	assert.Equal(t, map[string]string{"a": "1", "b": "2"}, ParseInfoFields("a:1\nb:2"))
}

func FuzzParseInfoFields(f *testing.F) {
	f.Add("# Replication\r\nrole:master\r\nmaster_repl_offset:7\r\n")
	f.Add("cluster_state:ok\r\ncluster_failover_state:success\r\n")
	f.Add(":\n#x:y\r\r\n")
	f.Fuzz(func(t *testing.T, text string) {
		for k, v := range ParseInfoFields(text) {
			if strings.ContainsAny(k, "\n:") || strings.Contains(v, "\n") {
				t.Fatalf("field %q=%q spans lines or splits badly", k, v)
			}
			if !strings.Contains(text, k+":"+v) {
				t.Fatalf("field %q=%q is not in the text", k, v)
			}
		}
	})
}

// slowSyncOptions keep the manual failover's timing out of the way of tests
// that check what it does, not how fast: noisy machines are slow.
func slowSyncOptions() FailoverOptions {
	opts := DefaultFailoverOptions()
	opts.SyncTimeout = 5 * time.Second
	opts.PauseTimeout = 10 * time.Second
	return opts
}

func TestManualFailoverSwapsMasterAndReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.ReplDelay = 20 * time.Millisecond
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	oldMaster, replica := c.Nodes()[0], c.Nodes()[1]
	oldCl, newCl := dial(t, oldMaster, ""), dial(t, replica, "")
	require.NoError(t, oldCl.Set(ctx, "bar", "v1", 0).Err())

	require.NoError(t, c.Controller().FailoverShard(ctx, 0, slowSyncOptions()))

	topo := c.Topology()
	assert.Equal(t, int64(2), topo.Version)
	assert.Equal(t, nodeRef(replica), topo.Shards[0].Master)
	assert.Equal(t, []NodeRef{nodeRef(oldMaster)}, topo.Shards[0].Replicas)
	assert.Equal(t, []*Node{replica, c.Nodes()[2]}, c.Masters())
	assert.Same(t, replica, c.MasterOfSlot(slotOfBar))
	for _, n := range c.Nodes() {
		v, err := dial(t, n, "").Do(ctx, "CLUSTERX", "VERSION").Text()
		require.NoError(t, err)
		assert.Equal(t, "2", v, "FailoverShard returns once every node has version 2")
	}

	v, err := newCl.Get(ctx, "bar").Result()
	require.NoError(t, err)
	assert.Equal(t, "v1", v, "the new master has the data")
	err = oldCl.Set(ctx, "bar", "v2", 0).Err()
	assert.True(t, isMoved(err, slotOfBar, replica.Addr()), "old master redirects writes: %v", err)

	assert.Equal(t, "slave", infoField(t, ctx, oldCl, "replication", "role"))
	assert.Equal(t, port(t, replica), infoField(t, ctx, oldCl, "replication", "master_port"))
	require.NoError(t, newCl.Set(ctx, "{bar}after", "v3", 0).Err())
	readonly := redis.NewClient(&redis.Options{
		Addr: oldMaster.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() },
	})
	t.Cleanup(func() { _ = readonly.Close() })
	require.Eventually(t, func() bool {
		v, err := readonly.Get(ctx, "{bar}after").Result()
		return err == nil && v == "v3"
	}, 10*time.Second, 20*time.Millisecond, "the old master replicates from the new one")
}

func TestManualFailoverGivesUpWhenTheReplicaLags(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.ReplDelay = 2 * time.Second
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	master := dial(t, c.Nodes()[0], "")
	require.NoError(t, master.Set(ctx, "bar", "v1", 0).Err())

	// The replica applies "bar" 2 s late: it cannot catch up within 100 ms.
	opts := DefaultFailoverOptions()
	opts.PauseTimeout = time.Minute // only CLIENT UNPAUSE can let writes through in time
	err := c.Controller().FailoverShard(ctx, 0, opts)
	require.ErrorIs(t, err, ErrSyncTimeout)
	assert.Equal(t, int64(1), c.Topology().Version, "nothing committed")
	assert.Same(t, c.Nodes()[0], c.Masters()[0])
	v, err := master.Do(ctx, "CLUSTERX", "VERSION").Text()
	require.NoError(t, err)
	assert.Equal(t, "1", v, "nothing pushed")
	assert.NoError(t, master.Set(ctx, "bar", "v2", 0).Err(), "the master was unpaused")

	// FORCE promotes the lagging replica anyway.
	opts.Force = true
	require.NoError(t, c.Controller().FailoverShard(ctx, 0, opts))
	assert.Equal(t, int64(2), c.Topology().Version)
	assert.Same(t, c.Nodes()[1], c.Masters()[0])
}

func TestManualFailoverRejectsBadRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.Replicas = 0
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	ctrl := c.Controller()
	assert.ErrorIs(t, ctrl.FailoverShard(ctx, 2, slowSyncOptions()), ErrNoShard)
	assert.ErrorIs(t, ctrl.FailoverShard(ctx, 0, slowSyncOptions()), ErrNoReplica)
	bad := slowSyncOptions()
	bad.PauseTimeout = bad.SyncTimeout
	assert.Error(t, ctrl.FailoverShard(ctx, 0, bad))
	assert.ErrorIs(t, ctrl.ServerFailover(ctx, 0, time.Second), ErrNoReplica)
	assert.Equal(t, int64(1), c.Topology().Version)
}

func TestManualFailoverPromotesTheChosenReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.Shards, cfg.Replicas = 1, 2
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	nodes := c.Nodes()
	opts := slowSyncOptions()
	opts.Replica = nodes[0].ID()
	assert.ErrorIs(t, c.Controller().FailoverShard(ctx, 0, opts), ErrNoReplica, "the master is no replica")

	opts.Replica = nodes[2].ID()
	require.NoError(t, c.Controller().FailoverShard(ctx, 0, opts))
	shard := c.Topology().Shards[0]
	assert.Equal(t, nodeRef(nodes[2]), shard.Master)
	assert.Equal(t, []NodeRef{nodeRef(nodes[0]), nodeRef(nodes[1])}, shard.Replicas)
	newMasterPort := port(t, nodes[2])
	for _, n := range nodes[:2] {
		cl := dial(t, n, "")
		require.Eventually(t, func() bool {
			return polledInfoField(ctx, cl, "replication", "master_port") == newMasterPort
		}, 10*time.Second, 20*time.Millisecond, "%s follows the new master", n.Addr())
	}
}

func TestServerFailoverPushesTheSwappedTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.ReplDelay = 20 * time.Millisecond
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	oldMaster, replica := c.Nodes()[0], c.Nodes()[1]
	oldCl, newCl := dial(t, oldMaster, ""), dial(t, replica, "")
	require.NoError(t, oldCl.Set(ctx, "bar", "v1", 0).Err())

	require.NoError(t, c.Controller().ServerFailover(ctx, 0, 2*time.Second))

	topo := c.Topology()
	assert.Equal(t, int64(2), topo.Version)
	assert.Equal(t, nodeRef(replica), topo.Shards[0].Master)
	v, err := newCl.Get(ctx, "bar").Result()
	require.NoError(t, err)
	assert.Equal(t, "v1", v)
	err = oldCl.Get(ctx, "bar").Err()
	assert.True(t, isMoved(err, slotOfBar, replica.Addr()), "old master redirects: %v", err)
	info, err := oldCl.ClusterInfo(ctx).Result()
	require.NoError(t, err)
	assert.NotContains(t, ParseInfoFields(info), "cluster_failover_state", "a replica has no failover state")
	info, err = newCl.ClusterInfo(ctx).Result()
	require.NoError(t, err)
	assert.Equal(t, "none", ParseInfoFields(info)["cluster_failover_state"])
	require.Eventually(t, func() bool {
		return polledInfoField(ctx, newCl, "replication", "connected_slaves") == "1"
	}, 10*time.Second, 20*time.Millisecond, "the old master replicates from the new one")

	// The old master is now a replica: the server refuses to fail it over.
	err = oldCl.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "1000").Err()
	assert.EqualError(t, err, "ERR Current node is a slave, can't failover")
}

// A CLUSTERX FAILOVER started by someone else (a proxy) is committed by
// CommitHandover: the swapped topology reaches the new master before any
// other node, so a real old master's deletion of its former slots cannot
// replicate to it.
func TestCommitHandoverPushesToTheNewMasterFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg, logs := loggedClusterConfig(t)
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	oldMaster, replica := c.Nodes()[0], c.Nodes()[1]
	ctrl := c.Controller()

	assert.ErrorIs(t, ctrl.CommitHandover(ctx, 2, replica.ID()), ErrNoShard)
	assert.Error(t, ctrl.CommitHandover(ctx, 0, c.Nodes()[3].ID()), "a replica of another shard")
	assert.Equal(t, int64(1), c.Topology().Version, "nothing committed")

	masterCl := dial(t, oldMaster, "")
	require.NoError(t, masterCl.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "5000").Err())
	require.Eventually(t, func() bool {
		return clusterInfoField(ctx, masterCl, "cluster_failover_state") == "success"
	}, 15*time.Second, 10*time.Millisecond)
	require.NoError(t, ctrl.CommitHandover(ctx, 0, replica.ID()))

	topo := c.Topology()
	assert.Equal(t, int64(2), topo.Version)
	assert.Equal(t, nodeRef(replica), topo.Shards[0].Master)
	assert.Equal(t, []NodeRef{nodeRef(oldMaster)}, topo.Shards[0].Replicas)
	order := appliedOrder(logs.String(), 2)
	require.Len(t, order, len(c.Nodes()), "every node applied version 2")
	assert.Equal(t, replica.ID()[:8], order[0], "the new master applied it first")
	assert.Equal(t, "none", clusterInfoField(ctx, dial(t, replica, ""), "cluster_failover_state"))
}

// An unrelated push moves nothing: every node gets the same topology one
// version up, the masters keep their slots and their data.
func TestPushNextVersionMovesNoMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	c := startTestCluster(t, testClusterConfig(t))
	ctx := testContext(t)
	before := c.Topology()
	require.NoError(t, dial(t, c.MasterOfSlot(slotOfBar), "").Set(ctx, "bar", "v1", 0).Err())

	version, err := c.Controller().PushNextVersion(ctx)
	require.NoError(t, err)

	assert.Equal(t, before.Version+1, version)
	after := c.Topology()
	assert.Equal(t, version, after.Version)
	assert.Equal(t, before.Shards, after.Shards, "the same shards, masters and slots")
	for _, n := range c.Nodes() {
		v, err := dial(t, n, "").Do(ctx, "CLUSTERX", "VERSION").Text()
		require.NoError(t, err)
		assert.Equal(t, strconv.FormatInt(version, 10), v, "node %s has the new version", n.Addr())
	}
	got, err := dial(t, c.MasterOfSlot(slotOfBar), "").Get(ctx, "bar").Result()
	require.NoError(t, err)
	assert.Equal(t, "v1", got)
}

// clusterInfoField is one CLUSTER INFO field of cl, "" when it fails.
func clusterInfoField(ctx context.Context, cl *redis.Client, key string) string {
	info, err := cl.ClusterInfo(ctx).Result()
	if err != nil {
		return ""
	}
	return ParseInfoFields(info)[key]
}

// appliedOrder lists the nodes (8-character id prefixes) that logged
// applying topology version, in log order.
func appliedOrder(logs string, version int) []string {
	var nodes []string
	for line := range strings.SplitSeq(logs, "\n") {
		if !strings.Contains(line, `msg="kvsim topology applied"`) || !strings.Contains(line, " version="+strconv.Itoa(version)+" ") {
			continue
		}
		for field := range strings.FieldsSeq(line) {
			if id, ok := strings.CutPrefix(field, "node="); ok {
				nodes = append(nodes, id)
			}
		}
	}
	return nodes
}

func TestServerFailoverReportsFailureAndRejection(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.ReplDelay = 2 * time.Second
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	master, replica := c.Nodes()[0], c.Nodes()[1]
	masterCl := dial(t, master, "")

	// The replica applies "bar" 2 s late: a 0 ms failover cannot wait for it.
	require.NoError(t, masterCl.Set(ctx, "bar", "v1", 0).Err())
	require.ErrorIs(t, c.Controller().ServerFailover(ctx, 0, 0), ErrServerFailover)
	assert.Equal(t, int64(1), c.Topology().Version, "nothing committed")

	// A failover started behind the controller's back, with time to wait for
	// the replica, succeeds and makes the master refuse another one.
	require.NoError(t, masterCl.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "10000").Err())
	require.Eventually(t, func() bool {
		info, err := masterCl.ClusterInfo(ctx).Result()
		return err == nil && ParseInfoFields(info)["cluster_failover_state"] == "success"
	}, 15*time.Second, 20*time.Millisecond)
	err := c.Controller().ServerFailover(ctx, 0, time.Second)
	require.ErrorIs(t, err, ErrFailoverRejected)
	assert.ErrorContains(t, err, "ERR Failover is already in progress")
	assert.Equal(t, int64(1), c.Topology().Version)
}

func TestAutomaticFailoverPromotesTheReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.Controller.ProbeInterval = 200 * time.Millisecond
	cfg.Controller.FailureCount = 3
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	master, replica := c.Nodes()[0], c.Nodes()[1]
	require.NoError(t, dial(t, master, "").Set(ctx, "bar", "v1", 0).Err())
	replicaCl, masterCl := dial(t, replica, ""), dial(t, master, "")
	require.Eventually(t, func() bool {
		seq := polledInfoField(ctx, replicaCl, "replication", "slave_repl_offset")
		return seq != "" && seq == polledInfoField(ctx, masterCl, "replication", "master_repl_offset")
	}, 10*time.Second, 20*time.Millisecond, "the replica caught up")

	require.NoError(t, c.Controller().Kill(master.ID()))
	assert.True(t, c.Controller().IsDown(master.ID()))
	require.Eventually(t, func() bool { return c.Topology().Version == 2 },
		15*time.Second, 20*time.Millisecond, "the controller promotes after 3 failed probes")
	// The controller commits the topology, then pushes it.
	require.Eventually(t, func() bool {
		v, err := replicaCl.Do(ctx, "CLUSTERX", "VERSION").Text()
		return err == nil && v == "2"
	}, 10*time.Second, 20*time.Millisecond, "the promoted replica got version 2")
	topo := c.Topology()
	assert.Equal(t, nodeRef(replica), topo.Shards[0].Master)
	assert.Equal(t, []NodeRef{nodeRef(master)}, topo.Shards[0].Replicas, "the dead master stays, as a replica")
	assert.Equal(t, "master", infoField(t, ctx, replicaCl, "replication", "role"))
	v, err := replicaCl.Get(ctx, "bar").Result()
	require.NoError(t, err)
	assert.Equal(t, "v1", v)
	assert.Contains(t, c.Table(), "down")

	// Restarted, the old master gets version 2 from the probe loop and follows.
	require.NoError(t, c.Controller().Restart(master.ID()))
	assert.ErrorIs(t, c.Controller().Restart(master.ID()), ErrNodeRunning)
	oldCl := dial(t, master, "")
	require.Eventually(t, func() bool {
		v, err := oldCl.Do(ctx, "CLUSTERX", "VERSION").Text()
		return err == nil && v == "2"
	}, 15*time.Second, 20*time.Millisecond, "the probe loop re-syncs the restarted node")
	assert.Equal(t, "slave", infoField(t, ctx, oldCl, "replication", "role"))
	assert.Equal(t, port(t, replica), infoField(t, ctx, oldCl, "replication", "master_port"))
}

func TestAutomaticFailoverWaitsWhileDisabled(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.Controller.ProbeInterval = 200 * time.Millisecond
	cfg.Controller.FailureCount = 3
	cfg.Controller.AutoFailover = false
	c := startTestCluster(t, cfg)
	ctrl := c.Controller()
	master := c.Nodes()[2]
	require.NoError(t, ctrl.Kill(master.ID()))
	assert.ErrorIs(t, ctrl.Kill(master.ID()), ErrNodeDown)
	failures := func() int {
		ctrl.mu.Lock()
		defer ctrl.mu.Unlock()
		return ctrl.failures[master.ID()]
	}
	require.Eventually(t, func() bool { return failures() > cfg.Controller.FailureCount },
		15*time.Second, 20*time.Millisecond)
	assert.Equal(t, int64(1), c.Topology().Version, "no promotion while disabled")

	ctrl.SetAutoFailover(true)
	assert.True(t, ctrl.AutoFailover())
	require.Eventually(t, func() bool { return c.Topology().Version == 2 }, 15*time.Second, 20*time.Millisecond)
	assert.Same(t, c.Nodes()[3], c.Masters()[1])
}

func TestControllerKillAndRestartUnknownNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	c := startTestCluster(t, testClusterConfig(t))
	unknown := strings.Repeat("f", 40)
	assert.ErrorIs(t, c.Controller().Kill(unknown), ErrUnknownNode)
	assert.ErrorIs(t, c.Controller().Restart(unknown), ErrUnknownNode)
	assert.ErrorIs(t, c.Controller().Restart(c.Nodes()[0].ID()), ErrNodeRunning)
}
