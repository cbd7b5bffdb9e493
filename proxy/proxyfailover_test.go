package proxy

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/failover"
	"kvproxy/router"
)

// After a Kvrocks handover the cluster still lists the old roles: the node
// serving the slots shows as a replica, the old master as a master with
// none. The proxy shows the roles it routes by.
func TestRoutedTopologyShowsTheRolesAHandoverMade(t *testing.T) {
	a, b, c := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)
	m2 := strings.Repeat("2", 40)
	slots := []router.SlotRange{{Start: 0, End: 99}}
	other := router.NodeInfo{ID: m2, Addr: "h:2", Role: "master", Slots: []router.SlotRange{{Start: 100, End: 16383}}}
	reported := router.Topology{Epoch: 1, Nodes: []router.NodeInfo{
		{ID: b, Addr: "h:b", Role: "replica", MasterID: a, Slots: slots}, // took over
		other,
		{ID: a, Addr: "h:a", Role: "master"},
		{ID: c, Addr: "h:c", Role: "replica", MasterID: a},
	}}
	routed := routedTopology(reported)
	assert.Equal(t, []router.NodeInfo{
		{ID: b, Addr: "h:b", Role: "master", Slots: slots},
		other,
		{ID: a, Addr: "h:a", Role: "replica", MasterID: b},
		{ID: c, Addr: "h:c", Role: "replica", MasterID: b},
	}, routed.Nodes)
	assert.Equal(t, "replica", reported.Nodes[0].Role, "the router's topology is not modified")

	shards := shardsOf(routed)
	require.Len(t, shards, 2)
	assert.Equal(t, "h:b", shards[0].master.Addr)
	assert.Equal(t, []string{"h:b", "h:a", "h:c"}, shards[0].members())
	assert.Empty(t, shards[1].replicas)
	for arg, want := range map[string]int{"0": 0, "1": 1, b: 0, m2: 1} {
		i, ok := findShard(shards, []byte(arg))
		assert.True(t, ok, arg)
		assert.Equal(t, want, i, arg)
	}
	for _, arg := range []string{"2", "-1", a, "x", strings.Repeat("0", 40)} {
		_, ok := findShard(shards, []byte(arg))
		assert.False(t, ok, arg)
	}

	// Once the controller pushed the swapped topology, nothing changes.
	assert.Equal(t, routed.Nodes, routedTopology(routed).Nodes)
}

func TestReplicationOfFindsTheReplica(t *testing.T) {
	text := "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.5,port=7001,offset=1,lag=0\r\n" +
		"slave1:ip=10.0.0.6,port=7002,offset=1,lag=0\r\nslave_repl_offset:3\r\nmaster_repl_offset:1\r\n"
	for addr, want := range map[string]bool{"10.0.0.6:7002": true, "10.0.0.5:7001": true, "10.0.0.5:7002": false, "node6:7002": true, "node6:7003": false} {
		role, listed := replicationOf(text, addr)
		assert.Equal(t, "master", role)
		assert.Equal(t, want, listed, addr)
	}
	role, listed := replicationOf("role:slave\nmaster_host:10.0.0.1\n", "10.0.0.1:7000")
	assert.Equal(t, "slave", role)
	assert.False(t, listed)
}

// failoverNode scripts the one node a dedicatedFake dials for every
// address: INFO replication, CLUSTERX FAILOVER and CLUSTER FAILOVER.
type failoverNode struct {
	mu   sync.Mutex
	seen []string
	// replication is the INFO replication text; clusterx the reply to
	// CLUSTERX FAILOVER.
	replication string
	clusterx    string
	// listedAfter: the replica shows in INFO replication from that call on.
	listedAfter int
	infoCalls   int
}

const fakeReplicaLine = "slave0:ip=10.0.0.99,port=7000,offset=1,lag=0\r\n"

func (n *failoverNode) script(args []string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seen = append(n.seen, strings.Join(args, " "))
	switch strings.ToUpper(args[0]) {
	case "INFO":
		n.infoCalls++
		text := n.replication
		if n.infoCalls <= n.listedAfter {
			text = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
		}
		return "$" + itoa(int64(len(text))) + "\r\n" + text + "\r\n", false
	case "CLUSTERX":
		return n.clusterx, false
	}
	return "+OK\r\n", false
}

func (n *failoverNode) commands() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.seen...)
}

func newFailoverNode() *failoverNode {
	return &failoverNode{replication: "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n" + fakeReplicaLine, clusterx: "+OK\r\n"}
}

// recordingAuthority is a topology authority whose first failures answers
// are errors.
type recordingAuthority struct {
	failures atomic.Int32
	mu       sync.Mutex
	recorded []string
}

func (a *recordingAuthority) Name() string { return "test controller" }

func (a *recordingAuthority) RecordHandover(_ context.Context, master, replica router.NodeInfo) error {
	if a.failures.Add(-1) >= 0 {
		return errors.New("connection refused")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recorded = append(a.recorded, master.Addr+">"+replica.Addr)
	return nil
}

func (a *recordingAuthority) handovers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.recorded...)
}

var successfulHandover = failover.Outcome{Handover: failover.Handover{
	FirstPoll: time.UnixMilli(1000), LastPoll: time.UnixMilli(1400),
	Phases: []failover.Phase{failover.PhaseCheckSlave, failover.PhaseSuccess}, Final: failover.PhaseSuccess,
}}

// PROXY FAILOVER refuses with a clear error what it cannot do, and only
// then asks the backend.
func TestProxyFailoverRefusals(t *testing.T) {
	node := newFailoverNode()
	scripted := startScriptedNode(t, node.script)
	handovers := &recordingHandovers{outcome: successfulHandover}
	backend := &dedicatedFake{fakeCluster: newFakeCluster(3), node: scripted.addr}
	_, addr := startProxy(t, backend, func(c *Config) {
		c.Handovers = handovers
		c.Password = "clients"
		c.AdminPassword = "operators"
	})
	c := dialResp(t, addr)
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "clients"))
	assert.Equal(t, "-"+errNoAdmin+"\r\n", c.do("PROXY", "FAILOVER", "0"))
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "admin", "operators"))
	assert.Equal(t, "-ERR wrong number of arguments for 'proxy|failover' command\r\n", c.do("PROXY", "FAILOVER"))
	for _, arg := range []string{"3", "x", strings.Repeat("9", 40)} {
		assert.Equal(t, "-ERR no shard "+arg+": kvproxy routes 3 shards, numbered from 0 in slot order, or named by their master's id (see PROXY NODES)\r\n",
			c.do("PROXY", "FAILOVER", arg))
	}
	assert.Equal(t, "-ERR shard 1 (master 10.0.0.2:7000) has no replica to fail over to\r\n", c.do("PROXY", "FAILOVER", "1"))
	assert.Empty(t, node.commands(), "nothing was sent")

	handovers.mu.Lock()
	handovers.following = true
	handovers.mu.Unlock()
	assert.Equal(t, "-ERR a failover of shard 0 (master 10.0.0.1:7000) is already under way (see INFO failover)\r\n",
		c.do("PROXY", "FAILOVER", strings.Repeat("1", 40)))
	handovers.mu.Lock()
	handovers.following = false
	handovers.mu.Unlock()
	assert.Empty(t, node.commands(), "nothing was sent")

	node.mu.Lock()
	node.clusterx = "-ERR Failover is already in progress\r\n"
	node.mu.Unlock()
	assert.Equal(t, "-ERR shard 0 (master 10.0.0.1:7000) refused to fail over to 10.0.0.99:7000: ERR Failover is already in progress\r\n",
		c.do("PROXY", "FAILOVER", "0", "3000"))
	assert.Equal(t, []string{"INFO replication", "CLUSTERX FAILOVER " + strings.Repeat("9", 40) + " 3000"}, node.commands())
	assert.Empty(t, handovers.followed(), "a refused failover is not followed")

	node.mu.Lock()
	node.replication = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.99\r\n"
	node.mu.Unlock()
	assert.Equal(t, "-ERR shard 0 (master 10.0.0.1:7000): 10.0.0.1:7000 still calls itself a replica (INFO replication role:slave), so it cannot fail over\r\n",
		c.do("PROXY", "FAILOVER", "0"))

	assert.Equal(t, "+PONG\r\n", c.do("PING"), "the client is served on")

	// A backend that cannot be reached.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, closed.Close())
	_, addr = startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: closed.Addr().String()}, func(c *Config) { c.Handovers = handovers })
	reply := dialResp(t, addr).do("PROXY", "FAILOVER", "0")
	assert.True(t, strings.HasPrefix(reply, "-ERR shard 0 (master 10.0.0.1:7000): cannot connect to backend 10.0.0.1:7000: "), reply)
}

// Without a controller, a failover through the proxy that succeeded is
// logged and counted as unknown to the topology authority, and PROXY
// FAILOVER says so; CLUSTERX FAILOVER keeps the master's +OK.
func TestFailoverWithoutControllerWarns(t *testing.T) {
	node := newFailoverNode()
	node.listedAfter = 2 // the replica reconnects while PROXY FAILOVER waits
	scripted := startScriptedNode(t, node.script)
	handovers := &recordingHandovers{outcome: successfulHandover}
	var logs logRecorder
	_, addr := startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: scripted.addr}, func(c *Config) {
		c.Handovers = handovers
		c.Logger = logs.logger()
	})
	c := dialResp(t, addr)
	reply := c.do("PROXY", "FAILOVER", "0")
	assert.True(t, strings.HasPrefix(reply, "+shard 0 failed over in 400 ms: 10.0.0.99:7000 is its master now, 10.0.0.1:7000 its replica; "+
		"WARNING: no controller configured, so the cluster's topology authority was not told: a topology push from it may give the slots back to the old master"), reply)
	node.mu.Lock()
	assert.Equal(t, 3, node.infoCalls, "INFO replication asked until it listed the replica")
	node.mu.Unlock()
	assert.Equal(t, []string{"10.0.0.1:7000"}, handovers.followed())
	info := c.do("INFO", "failover")
	assert.Contains(t, info, "\r\ncontroller:none\r\ncontroller_reported:0\r\ncontroller_report_failures:0\r\ncontroller_unreported:1\r\n")
	require.Len(t, logs.lines("was not told"), 1)
	assert.Contains(t, logs.lines("was not told")[0], "new_master=10.0.0.99:7000")

	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "FAILOVER", strings.Repeat("9", 40)), "clients compare CLUSTERX FAILOVER's reply with OK")
	require.Eventually(t, func() bool { return len(logs.lines("was not told")) == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.Contains(t, c.do("INFO", "failover"), "\r\ncontroller_unreported:2\r\n")

	// A failed handover is nothing to report.
	handovers.mu.Lock()
	handovers.outcome = failover.Outcome{Handover: failover.Handover{
		Phases: []failover.Phase{failover.PhaseCheckSlave, failover.PhaseFailed}, Final: failover.PhaseFailed,
	}}
	handovers.mu.Unlock()
	assert.Equal(t, "-ERR the failover of shard 0 from 10.0.0.1:7000 to 10.0.0.99:7000 failed "+
		"(phases check_slave>failed): 10.0.0.1:7000 still serves the shard; its log says why\r\n", c.do("PROXY", "FAILOVER", "0"))
	handovers.mu.Lock()
	handovers.outcome = failover.Outcome{Err: errors.New("dial tcp: connection refused")}
	handovers.mu.Unlock()
	assert.Equal(t, "-ERR the end of the failover of shard 0 from 10.0.0.1:7000 to 10.0.0.99:7000 was not seen "+
		"(dial tcp: connection refused): see INFO failover and PROXY NODES\r\n", c.do("PROXY", "FAILOVER", "0"))
	assert.Contains(t, c.do("INFO", "failover"), "\r\ncontroller_unreported:2\r\n")
}

// With a topology authority, PROXY FAILOVER replies once it recorded the
// handover; a failed report is said, counted and retried.
func TestFailoverIsReportedToTheAuthority(t *testing.T) {
	node := newFailoverNode()
	scripted := startScriptedNode(t, node.script)
	handovers := &recordingHandovers{outcome: successfulHandover}
	authority := &recordingAuthority{}
	_, addr := startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: scripted.addr}, func(c *Config) {
		c.Handovers = handovers
		c.Authority = authority
	})
	c := dialResp(t, addr)
	assert.Equal(t, "+shard 0 failed over in 400 ms: 10.0.0.99:7000 is its master now, 10.0.0.1:7000 its replica; "+
		"recorded by the topology authority (test controller)\r\n", c.do("PROXY", "FAILOVER", "0"))
	assert.Equal(t, []string{"10.0.0.1:7000>10.0.0.99:7000"}, authority.handovers())
	assert.Contains(t, c.do("INFO", "failover"), "\r\ncontroller:test controller\r\ncontroller_reported:1\r\ncontroller_report_failures:0\r\ncontroller_unreported:0\r\n")

	authority.failures.Store(1)
	reply := c.do("PROXY", "FAILOVER", "0")
	assert.True(t, strings.HasSuffix(reply, "; WARNING: the topology authority (test controller) could not be told (connection refused): "+
		"the proxy retries, and until it succeeds a topology push may give the slots back to the old master\r\n"), reply)
	assert.Contains(t, c.do("INFO", "failover"), "\r\ncontroller_reported:1\r\ncontroller_report_failures:1\r\ncontroller_unreported:1\r\n")
	require.Eventually(t, func() bool { return len(authority.handovers()) == 2 }, 5*time.Second, 10*time.Millisecond, "the report is retried")
	assert.Contains(t, c.do("INFO", "failover"), "\r\ncontroller_reported:2\r\ncontroller_report_failures:1\r\ncontroller_unreported:0\r\n")
}

// A Redis Cluster's nodes agree on the new roles themselves: nothing is
// reported, and nothing is warned of.
func TestProxyFailoverOnRedisCluster(t *testing.T) {
	node := newFailoverNode()
	node.clusterx = "-ERR unknown command 'CLUSTERX', with args beginning with: 'FAILOVER' \r\n"
	scripted := startScriptedNode(t, node.script)
	handovers := &recordingHandovers{outcome: successfulHandover}
	_, addr := startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: scripted.addr}, func(c *Config) { c.Handovers = handovers })
	c := dialResp(t, addr)
	assert.Equal(t, "+shard 0 failed over in 400 ms: 10.0.0.99:7000 is its master now, 10.0.0.1:7000 its replica\r\n", c.do("PROXY", "FAILOVER", "0"))
	assert.Equal(t, []string{"INFO replication", "CLUSTERX FAILOVER " + strings.Repeat("9", 40), "CLUSTER FAILOVER"}, node.commands())
	handovers.mu.Lock()
	assert.Equal(t, []string{"10.0.0.1:7000"}, handovers.redis)
	handovers.mu.Unlock()
	assert.Contains(t, c.do("INFO", "failover"), "\r\ncontroller_unreported:0\r\n")
}
