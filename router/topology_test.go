package router

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseClusterNodesKvrocks(t *testing.T) {
	// Kvrocks: hash order, bare \n, unmerged adjacent ranges, replicas with
	// their master's id.
	text := "" +
		"2222222222222222222222222222222222222222 127.0.0.1:30002@40002 slave 1111111111111111111111111111111111111111 0 0 3 connected\n" +
		"1111111111111111111111111111111111111111 127.0.0.1:30001@40001 myself,master - 0 0 3 connected 0-100 101-199 200-8191\n" +
		"3333333333333333333333333333333333333333 127.0.0.1:30003@40003 master - 0 0 3 connected 8192-16383\n"
	nodes, err := parseClusterNodes(text, "127.0.0.1")
	require.NoError(t, err)
	assert.Equal(t, []clusterNode{
		{id: strings.Repeat("2", 40), addr: "127.0.0.1:30002", masterID: strings.Repeat("1", 40), configEpoch: 3},
		{id: strings.Repeat("1", 40), addr: "127.0.0.1:30001", master: true, configEpoch: 3},
		{id: strings.Repeat("3", 40), addr: "127.0.0.1:30003", master: true, configEpoch: 3},
	}, nodes)
}

func TestParseClusterNodesRedis(t *testing.T) {
	// Redis 7: hostname after a comma, failing and address-less nodes,
	// migration markers in the slot list, an empty host.
	text := "" +
		"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,node-1 myself,master - 0 1426238316232 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]\n" +
		"67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 :30002@31002 master - 0 1426238316232 2 connected 5461-10922\n" +
		"292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 1426238316232 1426238316232 3 disconnected 10923-16383\n" +
		"6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected\n" +
		"824fe116063bc5fcf9f4ffd895bc17aee7731ac3 :0@0 handshake - 0 0 0 disconnected\n"
	nodes, err := parseClusterNodes(text, "10.0.0.9")
	require.NoError(t, err)
	require.Len(t, nodes, 4)
	assert.Equal(t, clusterNode{id: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", addr: "127.0.0.1:30001", master: true, configEpoch: 1}, nodes[0])
	assert.Equal(t, "10.0.0.9:30002", nodes[1].addr)
	assert.True(t, nodes[2].master)
	assert.Equal(t, clusterNode{id: "6ec23923021cf3ffec47632106199cb7f496ce01", addr: "127.0.0.1:30005", masterID: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1", configEpoch: 5}, nodes[3])
}

func TestParseClusterNodesRejectsGarbage(t *testing.T) {
	for _, text := range []string{
		"too few fields\n",
		"id noport master - 0 0 1 connected\n",
		"id 127.0.0.1:7000@17000 master - 0 0 x connected\n", // config epoch
	} {
		_, err := parseClusterNodes(text, "h")
		assert.Error(t, err, "%q", text)
	}
}

func TestParseClusterEpoch(t *testing.T) {
	epoch, err := parseClusterEpoch("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_current_epoch:7\r\ncluster_my_epoch:7\r\n")
	require.NoError(t, err)
	assert.Equal(t, int64(7), epoch)
	epoch, err = parseClusterEpoch("cluster_state:ok\ncluster_current_epoch:12") // no final line end
	require.NoError(t, err)
	assert.Equal(t, int64(12), epoch)
	for _, bad := range []string{"", "cluster_state:ok\r\n", "cluster_current_epoch:x\r\n", "cluster_current_epoch:-1\r\n"} {
		_, err := parseClusterEpoch(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestValidateOwners(t *testing.T) {
	assert.NoError(t, validateOwners([]slotOwner{{SlotRange{0, 100}, "a:1", "x"}, {SlotRange{101, 16383}, "a:1", "x"}}))
	assert.Error(t, validateOwners([]slotOwner{{SlotRange{0, 100}, "a:1", "x"}, {SlotRange{100, 200}, "b:1", "y"}}), "overlap")
	assert.Error(t, validateOwners([]slotOwner{{SlotRange{5, 4}, "a:1", "x"}}), "reversed")
	assert.Error(t, validateOwners([]slotOwner{{SlotRange{0, 16384}, "a:1", "x"}}), "out of range")
	assert.Error(t, validateOwners([]slotOwner{{SlotRange{0, 1}, "", "x"}}), "no address")
}

func TestTablePatchCopiesAndKeepsTheOriginal(t *testing.T) {
	a, b := &node{addr: "a:1"}, &node{addr: "b:1"}
	t0 := &slotTable{epoch: 3}
	for s := range t0.owner {
		t0.owner[s] = a
	}
	t0.masters = distinctOwners(&t0.owner)
	nodes := map[string]*node{"a:1": a, "b:1": b}
	t1 := t0.withPatches([]slotPatch{{10, "b:1", "a:1"}, {11, "b:1", "a:1"}, {11, "a:1", "b:1"}, {16383, "b:1", "a:1"}}, func(addr string) *node { return nodes[addr] })

	assert.Same(t, a, t0.owner[10], "the original table is immutable")
	assert.False(t, t0.patched[10])
	assert.Same(t, b, t1.owner[10])
	assert.Same(t, a, t1.owner[11], "the last patch of a slot wins")
	assert.True(t, t1.patched[10] && t1.patched[11] && t1.patched[16383])
	assert.Equal(t, []string{"a:1", "b:1"}, t1.masters)
	assert.Equal(t, []SlotRange{{10, 10}, {16383, 16383}}, t1.rangesOf("b:1"))
	assert.Equal(t, []SlotRange{{0, 9}, {11, 16382}}, t1.rangesOf("a:1"))
	assert.Equal(t, int64(3), t1.epoch)
}

func TestMovedToOwnReplicaMovesTheWholeShard(t *testing.T) {
	a, b, c := &node{addr: "a:1"}, &node{addr: "b:1"}, &node{addr: "c:1"}
	nodes := map[string]*node{"a:1": a, "b:1": b, "c:1": c}
	t0 := &slotTable{nodes: []clusterNode{
		{id: "A", addr: "a:1", master: true},
		{id: "B", addr: "b:1", master: true},
		{id: "C", addr: "c:1", masterID: "A"},
	}}
	for s := range t0.owner {
		t0.owner[s] = a
		if s >= 8192 {
			t0.owner[s] = b
		}
	}
	nodeOf := func(addr string) *node { return nodes[addr] }

	failover := t0.withPatches([]slotPatch{{5, "c:1", "a:1"}}, nodeOf)
	assert.Equal(t, []SlotRange{{0, 8191}}, failover.rangesOf("c:1"), "a's replica took every slot of a")
	assert.Equal(t, []string{"c:1", "b:1"}, failover.masters)

	migration := t0.withPatches([]slotPatch{{5, "b:1", "a:1"}}, nodeOf)
	assert.Equal(t, []SlotRange{{0, 4}, {6, 8191}}, migration.rangesOf("a:1"), "a migration moves one slot")
}

func TestApplyViewKeepsPatchesUntilTheEpochGrows(t *testing.T) {
	r := &Router{cfg: testConfig("a:1"), nodes: map[string]*node{}}
	r.cfg.Logger = DefaultConfig().Logger
	r.log = r.cfg.Logger
	r.closed.Store(true) // no dialling in this unit test
	view := func(epoch int64, owner string) *clusterView {
		return &clusterView{epoch: epoch, owners: []slotOwner{{SlotRange{0, SlotCount - 1}, owner, "id"}}}
	}
	r.applyView(view(5, "a:1"))
	r.patch([]slotPatch{{42, "b:1", "a:1"}})
	require.Equal(t, "b:1", r.MasterOf(42))

	r.applyView(view(5, "a:1"))
	assert.Equal(t, "b:1", r.MasterOf(42), "same epoch: the patch stays")
	assert.Equal(t, "a:1", r.MasterOf(43))
	assert.Equal(t, int64(5), r.Topology().Epoch)

	r.applyView(view(6, "c:1"))
	assert.Equal(t, "c:1", r.MasterOf(42), "a newer epoch is authoritative")
	assert.Equal(t, []string{"c:1"}, r.Masters())

	r.patch([]slotPatch{{42, "b:1", "c:1"}})
	r.applyView(view(1, "a:1"))
	assert.Equal(t, "a:1", r.MasterOf(42), "an older epoch everywhere means a rebuilt cluster")
	assert.Equal(t, int64(1), r.Topology().Epoch)
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	assert.ErrorContains(t, cfg.Validate(), "seed")
	cfg.Seeds = []string{"127.0.0.1:7000"}
	require.NoError(t, cfg.Validate())
	upper := cfg
	upper.ConnsPerNode, upper.HoldTimeout, upper.MaxBulkLen = MaxConnsPerNode, MaxHoldTimeout, MaxMaxBulkLen
	require.NoError(t, upper.Validate(), "the bounds themselves are valid")

	bad := []func(*Config){
		func(c *Config) { c.Seeds = []string{"no-port"} },
		func(c *Config) { c.ConnsPerNode = 0 },
		func(c *Config) { c.ConnsPerNode = MaxConnsPerNode + 1 },
		func(c *Config) { c.HoldTimeout = 0 },
		func(c *Config) { c.HoldTimeout = MaxHoldTimeout + 1 },
		func(c *Config) { c.MaxBulkLen = MaxMaxBulkLen + 1 },
		func(c *Config) { c.DialTimeout = 0 },
		func(c *Config) { c.ReadTimeout = 0 },
		func(c *Config) { c.RefreshInterval = 0 },
		func(c *Config) { c.RefreshCooldown = 0 },
		func(c *Config) { c.MaxRedirects = 0 },
		func(c *Config) { c.MaxRetries = -1 },
		func(c *Config) { c.RetryBackoff = 0 },
		func(c *Config) { c.MaxRetryBackoff = c.RetryBackoff - 1 },
		func(c *Config) { c.MaxBulkLen = 0 },
		func(c *Config) { c.MaxPending = 0 },
		func(c *Config) { c.Logger = nil },
	}
	for i, mutate := range bad {
		c := cfg
		mutate(&c)
		assert.Error(t, c.Validate(), "case %d", i)
	}
}

func TestCallQueueIsFIFOAcrossGrowth(t *testing.T) {
	var q callQueue
	calls := make([]call, 300)
	next := 0
	for i := range calls {
		q.push(&calls[i])
		if i%3 == 0 { // interleave pops so the ring wraps
			require.Same(t, &calls[next], q.pop())
			next++
		}
	}
	for q.n > 0 {
		require.Same(t, &calls[next], q.pop())
		next++
	}
	assert.Equal(t, len(calls), next)
}

// newTableRouter is a Router with no cluster behind it, for the slot table's
// own rules: nothing is dialled.
func newTableRouter() *Router {
	r := &Router{cfg: testConfig("a:1"), nodes: map[string]*node{}}
	r.cfg.Logger = DefaultConfig().Logger
	r.log = r.cfg.Logger
	r.closed.Store(true)
	return r
}

// shardView is a reload of a one-shard cluster at epoch: master owns every
// slot, with its config epoch, and replica replicates from it. Node ids are
// their addresses.
func shardView(epoch int64, master string, masterEpoch int64, replica string) *clusterView {
	return &clusterView{
		epoch:  epoch,
		owners: []slotOwner{{SlotRange{0, SlotCount - 1}, master, master}},
		nodes: []clusterNode{
			{id: master, addr: master, master: true, configEpoch: masterEpoch},
			{id: replica, addr: replica, masterID: master, configEpoch: masterEpoch},
		},
	}
}

// After routeToNewMaster, neither a reload at the same or an older epoch nor a MOVED
// routes the shard back to the old master; a newer topology that makes it
// master again does.
func TestRoutedHandoverIsUndoneOnlyByANewerTopology(t *testing.T) {
	r := newTableRouter()
	r.applyView(shardView(5, "a:1", 5, "b:1"))
	r.routeToNewMaster("a:1", "b:1")
	require.Equal(t, "b:1", r.MasterOf(0))

	r.applyView(shardView(5, "a:1", 5, "b:1")) // Kvrocks' stale CLUSTER SLOTS
	assert.Equal(t, "b:1", r.MasterOf(0), "same version")
	assert.Equal(t, []string{"b:1"}, r.Masters())
	r.applyView(shardView(3, "a:1", 3, "b:1")) // every node forced back to version 3
	assert.Equal(t, "b:1", r.MasterOf(16383), "lower version")
	assert.Equal(t, int64(3), r.Topology().Epoch, "the rest of the view is taken")
	r.patch([]slotPatch{{7, "a:1", "b:1"}})
	assert.Equal(t, "b:1", r.MasterOf(7), "a MOVED back is not followed")

	r.applyView(shardView(6, "a:1", 6, "b:1"))
	assert.Equal(t, "a:1", r.MasterOf(0), "version 6 makes a master again")
	assert.Equal(t, []handover{{"b:1", 6}}, r.table.Load().handovers, "and b, its replica now, handed back")
}

// Every node forced below the handover's version, then a controller that
// never learnt of it re-syncs them to its own stale topology at that
// version: the view is newer than the table, but the old master's claim is
// no newer than its handover, so its replica listing the new master as a
// replica does not record a handover of the new master.
func TestStaleTopologyAboveAForcedLowerOneDoesNotUndoAHandover(t *testing.T) {
	r := newTableRouter()
	r.applyView(shardView(1, "a:1", 1, "b:1"))
	r.routeToNewMaster("a:1", "b:1")
	r.applyView(shardView(0, "a:1", 0, "b:1")) // forced back to version 0
	require.Equal(t, "b:1", r.MasterOf(0))

	r.applyView(shardView(1, "a:1", 1, "b:1")) // the controller re-syncs version 1
	assert.Equal(t, "b:1", r.MasterOf(0))
	assert.Equal(t, int64(1), r.Topology().Epoch)
	assert.Equal(t, []handover{{"a:1", 1}}, r.table.Load().handovers)

	r.applyView(shardView(2, "a:1", 2, "b:1"))
	assert.Equal(t, "a:1", r.MasterOf(0), "version 2 makes a master again")
}

// Redis Cluster: the cluster's epoch grows with any shard's failover, but
// a node takes its slots back only with a config epoch of its own above the
// epoch its handover was seen at.
func TestRoutedHandoverIsUndoneOnlyByAHigherConfigEpoch(t *testing.T) {
	r := newTableRouter()
	r.applyView(shardView(7, "a:1", 4, "b:1"))
	r.routeToNewMaster("a:1", "b:1")

	r.applyView(shardView(9, "a:1", 4, "b:1")) // a stale node's view, newer epoch
	assert.Equal(t, "b:1", r.MasterOf(0))
	r.applyView(shardView(9, "a:1", 7, "b:1"))
	assert.Equal(t, "b:1", r.MasterOf(0), "config epoch 7 is not above 7")
	r.applyView(shardView(10, "a:1", 10, "b:1")) // a failed back over
	assert.Equal(t, "a:1", r.MasterOf(0))
}

// A newer topology that lists the old master as a replica confirms the
// handover at its own version: a later push of that same version that
// makes the old master master again does not undo it.
func TestConfirmedrouteToNewMasterRisesToTheConfirmingVersion(t *testing.T) {
	r := newTableRouter()
	r.applyView(shardView(1, "a:1", 1, "b:1"))
	r.routeToNewMaster("a:1", "b:1")
	r.applyView(shardView(2, "b:1", 2, "a:1")) // the controller recorded it
	assert.Equal(t, []handover{{"a:1", 2}}, r.table.Load().handovers)
	r.applyView(shardView(2, "a:1", 2, "b:1")) // forced at the same version
	assert.Equal(t, "b:1", r.MasterOf(0))
	r.applyView(shardView(3, "a:1", 3, "b:1"))
	assert.Equal(t, "a:1", r.MasterOf(0))
}

// Handovers the router did not hear of through routeToNewMaster count too: a MOVED
// from a master to its own replica, and a newer reload that lists a slot
// owner as a replica.
func TestRoutedHandoversSeenInMovedAndReloadsAreKept(t *testing.T) {
	r := newTableRouter()
	r.applyView(shardView(4, "a:1", 4, "b:1"))
	r.patch([]slotPatch{{0, "b:1", "a:1"}})
	require.Equal(t, "b:1", r.MasterOf(16383), "the whole shard moved")
	r.applyView(shardView(4, "a:1", 4, "b:1"))
	assert.Equal(t, "b:1", r.MasterOf(16383), "MOVED from a master to its replica")

	r = newTableRouter()
	r.applyView(shardView(4, "a:1", 4, "b:1"))
	r.applyView(shardView(5, "b:1", 5, "a:1")) // the controller failed a over
	r.applyView(shardView(4, "a:1", 4, "b:1")) // then every node forced back
	assert.Equal(t, "b:1", r.MasterOf(0), "a reload that showed a turn replica")
}

// A failover back through the proxy ends the record of the node taking
// over: routeToNewMaster itself is the proof.
func TestRoutedHandoverBackEndsTheNewMastersRecord(t *testing.T) {
	r := newTableRouter()
	r.applyView(shardView(1, "a:1", 1, "b:1"))
	r.routeToNewMaster("a:1", "b:1")
	r.routeToNewMaster("b:1", "a:1")
	assert.Equal(t, "a:1", r.MasterOf(0))
	assert.Equal(t, []handover{{"b:1", 1}}, r.table.Load().handovers)
	r.applyView(shardView(1, "b:1", 1, "a:1"))
	assert.Equal(t, "a:1", r.MasterOf(0))
}

// A reload that changes nothing leaves the table and Changed alone, so a
// short RefreshInterval wakes no subscriber.
func TestReloadWithNothingNewKeepsTheTable(t *testing.T) {
	r := newTableRouter()
	r.applyView(shardView(1, "a:1", 1, "b:1"))
	before, changed := r.table.Load(), r.Changed()
	r.applyView(shardView(1, "a:1", 1, "b:1"))
	assert.Same(t, before, r.table.Load())
	select {
	case <-changed:
		t.Fatal("Changed fired for a reload with nothing new")
	default:
	}
	r.applyView(shardView(2, "a:1", 2, "b:1"))
	assert.NotSame(t, before, r.table.Load())
	<-changed
}
