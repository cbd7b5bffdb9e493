package kvsim

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim/keyspace"
)

func TestHashSlotKnownVectors(t *testing.T) {
	assert.Equal(t, uint16(0x31C3), crc16([]byte("123456789")))
	for key, slot := range map[string]int{
		"123456789":             12739,
		"foo":                   12182,
		"bar":                   5061,
		"somekey":               11058,
		"{user1000}.following":  hashSlot([]byte("user1000")),
		"{user1000}.followers":  hashSlot([]byte("user1000")),
		"foo{}{bar}":            hashSlot([]byte("foo{}{bar}")), // empty tag: whole key
		"foo{{bar}}zap":         hashSlot([]byte("{bar")),
		"foo{bar}{zap}":         hashSlot([]byte("bar")),
		"{unclosed":             hashSlot([]byte("{unclosed")),
		"":                      0,
		"abc{123456789}xyz":     12739,
		"{123456789}{ignored}x": 12739,
	} {
		assert.Equal(t, slot, hashSlot([]byte(key)), "key %q", key)
	}
}

func TestHashSlotDoesNotAllocate(t *testing.T) {
	key := []byte("user:{1000}:profile")
	assert.Zero(t, testing.AllocsPerRun(100, func() { hashSlot(key) }))
}

// ntKeyInSlots finds a key whose slot lies in [lo, hi].
func ntKeyInSlots(t testing.TB, lo, hi int) string {
	for i := range 100000 {
		k := "key" + strconv.Itoa(i)
		if s := hashSlot([]byte(k)); s >= lo && s <= hi {
			return k
		}
	}
	t.Fatalf("no key in slots %d-%d", lo, hi)
	return ""
}

func ntRequireCommand(t *testing.T, name string) {
	if keyspace.Lookup([]byte(name)) == nil {
		t.Skipf("the keyspace does not implement %s yet", strings.ToUpper(name))
	}
}

func TestBeforeTopology(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	for _, sub := range []string{"INFO", "NODES", "SLOTS"} {
		assert.Equal(t, "-CLUSTERDOWN The cluster is not initialized\r\n", c.do("CLUSTER", sub), sub)
	}
	assert.Equal(t, ntBulk("-1"), c.do("CLUSTERX", "VERSION"))
	assert.Equal(t, ntBulk(""), c.do("CLUSTERX", "MYID"))
	assert.Equal(t, "-CLUSTERDOWN Hash slot not served\r\n", c.do("GET", "foo"))
	assert.Equal(t, ":12182\r\n", c.do("CLUSTER", "KEYSLOT", "foo"))
	assert.Equal(t, "-ERR Cluster is not initialized\r\n", c.do("CLUSTERX", "TAKEOVER"))
	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "SETNODEID", ntID('z')))
	assert.Equal(t, ntBulk(ntID('z')), c.do("CLUSTERX", "MYID"))
	assert.Equal(t, ntID('z'), n.ID())
}

func TestSetNodesValidation(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	id, id2 := ntID('a'), ntID('b')
	ok := id + " 127.0.0.1 7000 master - 0-16383"
	for _, tc := range []struct {
		name  string
		args  []string
		reply string
	}{
		{"missing version", []string{"SETNODES", ok}, "-" + clusterxUsage + "\r\n"},
		{"extra word", []string{"SETNODES", ok, "1", "extra"}, "-ERR Invalid setnodes options\r\n"},
		{"two extra words", []string{"SETNODES", ok, "1", "force", "x"}, "-ERR Invalid setnodes options\r\n"},
		{"version not a number", []string{"SETNODES", ok, "one"}, "-ERR Invalid version\r\n"},
		{"too few fields", []string{"SETNODES", id + " 127.0.0.1 7000", "1"}, "-ERR Invalid cluster nodes info\r\n"},
		{"short id", []string{"SETNODES", "abc 127.0.0.1 7000 master - 0-1", "1"}, "-ERR Invalid cluster node id\r\n"},
		{"bad port", []string{"SETNODES", id + " 127.0.0.1 x master - 0-1", "1"}, "-ERR Invalid cluster node port\r\n"},
		{"port out of range", []string{"SETNODES", id + " 127.0.0.1 70000 master - 0-1", "1"}, "-ERR Invalid cluster node port\r\n"},
		{"bad role", []string{"SETNODES", id + " 127.0.0.1 7000 slave,fail " + id2, "1"}, "-ERR Invalid cluster node role\r\n"},
		{"master without dash", []string{"SETNODES", id + " 127.0.0.1 7000 master 0-16383", "1"}, "-ERR Invalid cluster node id\r\n"},
		{"replica with bad master id", []string{"SETNODES", id + " 127.0.0.1 7000 slave abc", "1"}, "-ERR Invalid cluster node id\r\n"},
		{"replica with a slot range", []string{"SETNODES", id + " 127.0.0.1 7000 slave " + id2 + " 0-10", "1"}, "-ERR Invalid cluster nodes info\r\n"},
		{"reversed range", []string{"SETNODES", id + " 127.0.0.1 7000 master - 10-5", "1"}, "-ERR Slot is out of range\r\n"},
		{"slot too big", []string{"SETNODES", id + " 127.0.0.1 7000 master - 16384", "1"}, "-ERR Slot is out of range\r\n"},
		{"overlap", []string{"SETNODES", id + " 127.0.0.1 7000 master - 0-10\n" + id2 + " 127.0.0.1 7001 master - 10-20", "1"}, "-ERR Slot distribution is overlapped\r\n"},
	} {
		assert.Equal(t, tc.reply, c.do(append([]string{"CLUSTERX"}, tc.args...)...), tc.name)
		assert.Equal(t, ntBulk("-1"), c.do("CLUSTERX", "VERSION"), "%s must not apply", tc.name)
	}

	// Accepted: duplicate ids, `replica`, a replica of an unknown master, unmerged ranges.
	body := id + " 127.0.0.1 7000 master - 0-100 101-199 200-8000\n" +
		id + " 127.0.0.1 7000 master - 8001\n" +
		id2 + " 127.0.0.1 7001 replica " + ntID('q') + "\n"
	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "SETNODES", body, "5"))
	assert.Equal(t, ntBulk("5"), c.do("CLUSTERX", "VERSION"))
	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "SETNODES", "garbage", "5"), "same version: body not parsed")
	assert.Equal(t, "-ERR Invalid cluster version\r\n", c.do("CLUSTERX", "SETNODES", ok, "4"))
	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "SETNODES", ok, "4", "FORCE"))
	assert.Equal(t, ntBulk("4"), c.do("CLUSTERX", "VERSION"))
	assert.Equal(t, "-ERR Invalid cluster nodes info\r\n", c.do("CLUSTERX", "SETNODES", "garbage", "9", "force"))
	assert.Equal(t, "-"+clusterxUsage+"\r\n", c.do("CLUSTERX", "SETSLOT", "1", "NODE", id))
	assert.Equal(t, "-"+clusterxUsage+"\r\n", c.do("CLUSTERX", "MIGRATE", "1", id))
	assert.Equal(t, "-"+clusterUsage+"\r\n", c.do("CLUSTER", "FOO"))
}

// ntClusterOfTwo starts two masters splitting the slots at 8191/8192; me owns the lower half.
func ntClusterOfTwo(t *testing.T) (me, other *Node, c *ntConn) {
	me = ntStartNode(t, NodeConfig{})
	other = ntStartNode(t, NodeConfig{})
	ntPush(t, 1, []string{
		ntMasterLine(ntID('a'), me, "0-8191"),
		ntMasterLine(ntID('b'), other, "8192-16383"),
	}, map[string]*Node{ntID('a'): me, ntID('b'): other})
	return me, other, ntDial(t, me.Addr())
}

func TestClusterReplies(t *testing.T) {
	me, other, c := ntClusterOfTwo(t)
	info := c.do("CLUSTER", "INFO")
	want := "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n" +
		"cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:2\r\ncluster_size:2\r\n" +
		"cluster_current_epoch:1\r\ncluster_my_epoch:1\r\ncluster_failover_state:none\r\n"
	assert.Equal(t, ntBulk(want), info)

	nodes := c.do("CLUSTER", "NODES")
	lines := strings.Split(strings.TrimSuffix(strings.SplitN(nodes, "\r\n", 2)[1], "\r\n"), "\n")
	require.Len(t, lines, 3, nodes)
	assert.Empty(t, lines[2], "every line ends with a bare LF")
	f := strings.Fields(lines[0])
	_, mePort, _ := strings.Cut(me.Addr(), ":")
	p, _ := strconv.Atoi(mePort)
	assert.Equal(t, []string{ntID('a'), me.Addr() + "@" + strconv.Itoa(p+10000), "myself,master", "-"}, f[:4])
	assert.Equal(t, []string{"1", "connected", "0-8191"}, f[6:])
	f = strings.Fields(lines[1])
	assert.Equal(t, "master", f[2])
	assert.Equal(t, []string{"1", "connected", "8192-16383"}, f[6:])

	host, port, _ := strings.Cut(other.Addr(), ":")
	slots := c.do("CLUSTER", "SLOTS")
	wantSlots := "*2\r\n" +
		"*3\r\n:0\r\n:8191\r\n*3\r\n" + ntBulk("127.0.0.1") + ":" + mePort + "\r\n" + ntBulk(ntID('a')) +
		"*3\r\n:8192\r\n:16383\r\n*3\r\n" + ntBulk(host) + ":" + port + "\r\n" + ntBulk(ntID('b'))
	assert.Equal(t, wantSlots, slots)
}

func TestReplicaClusterInfoHasNoFailoverState(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	info := ntDial(t, s.replicas[0].Addr()).do("CLUSTER", "INFO")
	assert.NotContains(t, info, "cluster_failover_state")
	nodes := ntDial(t, s.replicas[0].Addr()).do("CLUSTER", "NODES")
	assert.Contains(t, nodes, "myself,slave "+ntID('a')+" ")
	slots := ntDial(t, s.master.Addr()).do("CLUSTER", "SLOTS")
	_, rport, _ := strings.Cut(s.replicas[0].Addr(), ":")
	assert.Contains(t, slots, "*4\r\n:0\r\n:16383\r\n", "master entry plus one replica")
	assert.Contains(t, slots, ":"+rport+"\r\n"+ntBulk(ntID('b')))
}

// Spec section 7: slots left out of a newer topology keep their previous owner.
func TestDroppedSlotsKeepTheirPreviousOwner(t *testing.T) {
	me, other, c := ntClusterOfTwo(t)
	gone := ntID('b')
	ntPush(t, 2, []string{ntMasterLine(ntID('a'), me, "0-100")},
		map[string]*Node{ntID('a'): me})
	low := ntKeyInSlots(t, 101, 8191)
	high := ntKeyInSlots(t, 8192, 16383)
	assert.Equal(t, "-MOVED "+strconv.Itoa(hashSlot([]byte(low)))+" "+me.Addr()+"\r\n", c.do("GET", low),
		"a dropped slot of mine redirects to myself")
	assert.Equal(t, "-MOVED "+strconv.Itoa(hashSlot([]byte(high)))+" "+other.Addr()+"\r\n", c.do("SET", high, "v"))
	slots := c.do("CLUSTER", "SLOTS")
	assert.Contains(t, slots, ntBulk(gone), "a dropped master stays in CLUSTER SLOTS")
	assert.Contains(t, slots, "*3\r\n:0\r\n:100\r\n")
	assert.Contains(t, slots, "*3\r\n:101\r\n:8191\r\n", "runs of different topologies are not merged")
	assert.Contains(t, c.do("CLUSTER", "INFO"), "cluster_known_nodes:1\r\n")
	assert.Contains(t, c.do("CLUSTER", "NODES"), "connected 0-100 101-8191\n")
	key := ntKeyInSlots(t, 0, 100)
	assert.Equal(t, "+OK\r\n", c.do("SET", key, "v"))
}

func TestCheckOrder(t *testing.T) {
	me, other, c := ntClusterOfTwo(t)
	mine := ntKeyInSlots(t, 0, 8191)
	theirs := ntKeyInSlots(t, 8192, 16383)
	theirSlot := strconv.Itoa(hashSlot([]byte(theirs)))
	mySlot := strconv.Itoa(hashSlot([]byte(mine)))

	t.Run("own slot is served", func(t *testing.T) {
		assert.Equal(t, "+OK\r\n", c.do("SET", mine, "v"))
		assert.Equal(t, ntBulk("v"), c.do("GET", mine))
	})
	t.Run("other slot is MOVED to its owner", func(t *testing.T) {
		assert.Equal(t, "-MOVED "+theirSlot+" "+other.Addr()+"\r\n", c.do("GET", theirs))
		assert.Equal(t, "-MOVED "+theirSlot+" "+other.Addr()+"\r\n", c.do("SET", theirs, "v"))
	})
	t.Run("CROSSSLOT", func(t *testing.T) {
		ntRequireCommand(t, "mget")
		assert.Equal(t, "-CROSSSLOT Attempted to access keys that don't hash to the same slot\r\n",
			c.do("MGET", mine, theirs))
	})
	t.Run("keyless runs locally", func(t *testing.T) {
		ntRequireCommand(t, "dbsize")
		assert.Equal(t, ":", c.do("DBSIZE")[:1])
	})
	t.Run("TRYAGAIN for writes before ownership, reads pass", func(t *testing.T) {
		me.failover.state.Store(failoverWaitSync)
		defer me.failover.state.Store(failoverNone)
		assert.Equal(t, "-TRYAGAIN Failover in progress\r\n", c.do("SET", theirs, "v"))
		assert.Equal(t, "-TRYAGAIN Failover in progress\r\n", c.do("SET", mine, "v"))
		assert.Equal(t, ntBulk("v"), c.do("GET", mine))
		assert.Equal(t, "-MOVED "+theirSlot+" "+other.Addr()+"\r\n", c.do("GET", theirs))
	})
	t.Run("migrated slots are MOVED for reads and writes", func(t *testing.T) {
		v := *me.view.Load()
		v.migratedTo = "127.0.0.1:1"
		me.view.Store(&v)
		assert.Equal(t, "-MOVED "+mySlot+" 127.0.0.1:1\r\n", c.do("GET", mine))
		assert.Equal(t, "-MOVED "+mySlot+" 127.0.0.1:1\r\n", c.do("SET", mine, "v"))
		assert.Equal(t, "-MOVED "+theirSlot+" "+other.Addr()+"\r\n", c.do("GET", theirs))
	})
}

func TestCheckOrderBeforeTopology(t *testing.T) {
	ntRequireCommand(t, "mget")
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	assert.Equal(t, "-CROSSSLOT Attempted to access keys that don't hash to the same slot\r\n",
		c.do("MGET", "a", "b"), "CROSSSLOT comes before CLUSTERDOWN")
	assert.Equal(t, "-CLUSTERDOWN Hash slot not served\r\n", c.do("MGET", "{a}1", "{a}2"))
}

func TestCheckOrderOnReplica(t *testing.T) {
	master := ntStartNode(t, NodeConfig{})
	replica := ntStartNode(t, NodeConfig{})
	other := ntStartNode(t, NodeConfig{})
	ntPush(t, 1, []string{
		ntMasterLine(ntID('a'), master, "0-8191"),
		ntReplicaLine(ntID('b'), replica, ntID('a')),
		ntMasterLine(ntID('c'), other, "8192-16383"),
	}, map[string]*Node{ntID('a'): master, ntID('b'): replica, ntID('c'): other})
	mine := ntKeyInSlots(t, 0, 8191)
	mySlot := strconv.Itoa(hashSlot([]byte(mine)))
	theirs := ntKeyInSlots(t, 8192, 16383)
	theirSlot := strconv.Itoa(hashSlot([]byte(theirs)))
	c := ntDial(t, replica.Addr())

	assert.Equal(t, "-MOVED "+mySlot+" "+master.Addr()+"\r\n", c.do("GET", mine), "no READONLY: MOVED to master")
	assert.Equal(t, "+OK\r\n", c.do("READONLY"))
	assert.Equal(t, "$-1\r\n", c.do("GET", mine), "READONLY read of my master's slot is served")
	assert.Equal(t, "-MOVED "+mySlot+" "+master.Addr()+"\r\n", c.do("SET", mine, "v"), "writes still MOVED")
	assert.Equal(t, "-MOVED "+theirSlot+" "+other.Addr()+"\r\n", c.do("GET", theirs), "other master's slot")
	assert.Equal(t, "+OK\r\n", c.do("READWRITE"))
	assert.Equal(t, "-MOVED "+mySlot+" "+master.Addr()+"\r\n", c.do("GET", mine))

	if keyspace.Lookup([]byte("flushdb")) != nil {
		assert.Equal(t, "-READONLY You can't write against a read only slave.\r\n", c.do("FLUSHDB"))
	}

	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "TAKEOVER"))
	assert.Equal(t, "+OK\r\n", c.do("SET", mine, "v"), "TAKEOVER-imported slots take writes")
	assert.Equal(t, ntBulk("v"), c.do("GET", mine))
	assert.Equal(t, "-MOVED "+theirSlot+" "+other.Addr()+"\r\n", c.do("SET", theirs, "v"))
	if keyspace.Lookup([]byte("flushdb")) != nil {
		assert.Equal(t, "-READONLY You can't write against a read only slave.\r\n", c.do("FLUSHDB"))
	}
	assert.Contains(t, c.do("CLUSTER", "NODES"), "myself,slave", "TAKEOVER changes no role")
	assert.Equal(t, ntBulk("1"), c.do("CLUSTERX", "VERSION"))

	assert.Equal(t, "-ERR No master to takeover\r\n", ntDial(t, master.Addr()).do("CLUSTERX", "TAKEOVER"))
	assert.Equal(t, "-ERR wrong number of arguments\r\n", c.do("CLUSTERX", "TAKEOVER", "x"))
	assert.Equal(t, "-ERR Current node is a slave, can't failover\r\n", c.do("CLUSTERX", "FAILOVER", ntID('a')))

	// An applied topology clears TAKEOVER.
	ntPush(t, 2, []string{
		ntMasterLine(ntID('a'), master, "0-8191"),
		ntReplicaLine(ntID('b'), replica, ntID('a')),
		ntMasterLine(ntID('c'), other, "8192-16383"),
	}, map[string]*Node{ntID('b'): replica})
	assert.Equal(t, "-MOVED "+mySlot+" "+master.Addr()+"\r\n", c.do("SET", mine, "v"))
}

func TestLoadingReplica(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	n.loading.Store(true)
	assert.Equal(t, "-LOADING kvrocks is restoring the db from backup\r\n", c.do("GET", "foo"))
	assert.Equal(t, "+PONG\r\n", c.do("PING"))
	n.loading.Store(false)
	assert.Equal(t, "-CLUSTERDOWN Hash slot not served\r\n", c.do("GET", "foo"))
}

func TestConnectionCommands(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	assert.Equal(t, "+PONG\r\n", c.do("PING"))
	assert.Equal(t, ntBulk("hi"), c.do("PING", "hi"))
	assert.Equal(t, ntBulk("hi"), c.do("ECHO", "hi"))
	assert.Equal(t, "-ERR wrong number of arguments for 'echo' command\r\n", c.do("ECHO"))
	assert.Equal(t, "-ERR wrong number of arguments for 'get' command\r\n", c.do("GET"))
	assert.Equal(t, "+OK\r\n", c.do("SELECT", "0"))
	assert.Equal(t, "-ERR SELECT is not allowed in cluster mode\r\n", c.do("SELECT", "1"))
	assert.Equal(t, "+OK\r\n", c.do("CLIENT", "SETNAME", "me"))
	assert.Equal(t, ntBulk("me"), c.do("CLIENT", "GETNAME"))
	assert.Equal(t, ":", c.do("CLIENT", "ID")[:1])
	assert.Contains(t, c.do("CLIENT", "LIST"), " name=me ")
	assert.Equal(t, "+OK\r\n", c.do("CLIENT", "SETINFO", "LIB-NAME", "x"))
	assert.Equal(t, "-ERR Syntax error, try CLIENT LIST|INFO|KILL ip:port|GETNAME|SETNAME\r\n", c.do("CLIENT", "FOO"))
	assert.Equal(t, "*2\r\n"+ntBulk("save")+ntBulk("")+"", c.do("CONFIG", "GET", "save"))
	assert.Equal(t, "*2\r\n"+ntBulk("appendonly")+ntBulk("no"), c.do("CONFIG", "GET", "appendonly"))
	assert.Equal(t, "*0\r\n", c.do("COMMAND", "DOCS"))
	assert.Equal(t, "+OK\r\n", c.do("READONLY"))
	assert.Equal(t, "+OK\r\n", c.do("ASKING"))
	assert.Equal(t, "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n", c.do("foo", "a", "b"))
	assert.Equal(t, "-ERR unknown command 'foo', with args beginning with: \r\n", c.do("foo"))
	assert.Equal(t, "-ERR unknown command 'KVSIM', with args beginning with: 'HELP' \r\n", c.do("KVSIM", "HELP"))
	assert.Equal(t, "-ERR unknown command 'a  b', with args beginning with: 'x y' \r\n", c.do("a\r\nb", "x\ny"))
	long := strings.Repeat("x", 200)
	assert.Equal(t, "-ERR unknown command '"+long[:128]+"', with args beginning with: '"+long[:128]+"' \r\n", c.do(long, long, long))
	assert.Equal(t, "-ERR Client sent AUTH, but no password is set\r\n", c.do("AUTH", "x"))
	assert.Equal(t, "-ERR Client sent AUTH, but no password is set\r\n", c.do("HELLO", "3", "AUTH", "x"))
	assert.Equal(t, "+OK\r\n", c.do("QUIT"))
}

func TestAdminHook(t *testing.T) {
	n := ntStartNode(t, NodeConfig{Admin: func(args [][]byte) []byte {
		return []byte("+admin " + string(args[1]) + "\r\n")
	}})
	assert.Equal(t, "+admin HELP\r\n", ntDial(t, n.Addr()).do("kvsim", "HELP"))
}

func TestAuth(t *testing.T) {
	n := ntStartNode(t, NodeConfig{Password: "secret"})
	c := ntDial(t, n.Addr())
	for _, args := range [][]string{{"GET", "k"}, {"PING"}, {"CLUSTER", "INFO"}, {"CLUSTERX", "FAILOVER", ntID('b')},
		{"CLUSTERX", "TAKEOVER"}, {"CLIENT", "PAUSE", "100"}, {"nosuch"}} {
		assert.Equal(t, "-NOAUTH Authentication required.\r\n", c.do(args...), args)
	}
	assert.Equal(t, ntHelloReply(2), c.do("HELLO", "2"), "HELLO answers before AUTH")
	assert.Equal(t, "-NOAUTH Authentication required.\r\n", c.do("GET", "k"), "HELLO without AUTH authenticates nothing")
	assert.Equal(t, "-ERR Invalid password\r\n", c.do("HELLO", "3", "AUTH", "wrong"))
	assert.Equal(t, "-ERR Invalid password\r\n", c.do("HELLO", "3", "AUTH", "admin", "secret"))
	assert.Equal(t, "-ERR Invalid password\r\n", c.do("AUTH", "wrong"))
	assert.Equal(t, "-NOAUTH Authentication required.\r\n", c.do("PING"))
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "secret"))
	assert.Equal(t, "+PONG\r\n", c.do("PING"))

	c2 := ntDial(t, n.Addr())
	assert.Equal(t, ntHelloReply(2), c2.do("HELLO", "2", "AUTH", "default", "secret"))
	assert.Equal(t, "+PONG\r\n", c2.do("PING"))
	assert.Equal(t, "PONG", ntClient(t, n.Addr(), "secret").Ping(t.Context()).Val())
}

func TestMalformedRequestsGetErrors(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	_, err := c.conn.Write([]byte("*2\r\n$3\r\nGET\r\n$x\r\n"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(c.read(), "-ERR "), "a protocol error gets an error reply")
	c2 := ntDial(t, n.Addr())
	assert.Equal(t, "+PONG\r\n", c2.do("PING"), "the node survives")
}

func TestKillAndStartKeepDataAndTopology(t *testing.T) {
	me, _, c := ntClusterOfTwo(t)
	key := ntKeyInSlots(t, 0, 8191)
	require.Equal(t, "+OK\r\n", c.do("SET", key, "v"))
	seq := me.Keyspace().Sequence()
	addr := me.Addr()
	me.Kill()
	_, err := c.conn.Write([]byte("PING\r\n"))
	if err == nil {
		_, err = ntReadFrame(c.rd)
	}
	assert.Error(t, err, "Kill closes client connections")
	require.NoError(t, me.Start())
	assert.Equal(t, addr, me.Addr())
	c2 := ntDial(t, me.Addr())
	assert.Equal(t, ntBulk("v"), c2.do("GET", key))
	assert.Equal(t, ntBulk("1"), c2.do("CLUSTERX", "VERSION"))
	assert.Equal(t, seq, me.Keyspace().Sequence())
	assert.Contains(t, c2.do("INFO", "keyspace"), "sequence:"+strconv.FormatUint(seq, 10)+"\r\n")
}

func TestInfoSections(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntClient(t, n.Addr(), "")
	text, err := c.Info(t.Context()).Result()
	require.NoError(t, err)
	for _, h := range []string{"# Server\r\n", "# Clients\r\n", "# Stats\r\n", "# Replication\r\n", "# Keyspace\r\n"} {
		assert.Contains(t, text, h)
	}
	assert.Equal(t, "1", ntInfoField(t, c, "keyspace", "sequence"), "a fresh node reports 1")
	assert.Equal(t, "master", ntInfoField(t, c, "replication", "role"))
	assert.Equal(t, "0", ntInfoField(t, c, "replication", "connected_slaves"))
	assert.Equal(t, "1", ntInfoField(t, c, "replication", "master_repl_offset"))
	repl, err := c.Info(t.Context(), "replication").Result()
	require.NoError(t, err)
	assert.Equal(t, "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:1\r\n", repl)
}

// FuzzParseClusterNodes reads arbitrary SETNODES bodies: an accepted one
// gives slots to masters only, and the node's views of it render. A
// topology built from the other inputs, as the controller renders it,
// reads back with every slot and replica where the topology put them.
func FuzzParseClusterNodes(f *testing.F) {
	id := ntID('a')
	f.Add(id+" 127.0.0.1 7000 master - 0-100 200\n"+ntID('b')+" 127.0.0.1 7001 slave "+id, uint8(3), "127.0.0.1", uint16(7000))
	f.Add(id+" h 1 replica "+id, uint8(1), "::1", uint16(1))
	f.Add("x y z", uint8(0), "node-1.example", uint16(65535))
	f.Add(id+" h 0 master -\n", uint8(200), "h", uint16(0))
	f.Add(id+" h 1 master - 0-16383\n"+ntID('b')+" h 2 master - 5", uint8(7), "", uint16(30001))
	f.Add(id+" h 1 MASTER - 16383-0 16384\n", uint8(2), "a b", uint16(2))
	f.Fuzz(func(t *testing.T, body string, masters uint8, host string, port uint16) {
		if pt, err := parseClusterNodes(body, 1); err == nil {
			v := newClusterView(id, true).withTopology(pt, 1, 1)
			_ = v.clusterNodes(0)
			_ = v.clusterInfo("none")
			_ = v.appendClusterSlots(nil)
			for s, nd := range pt.owner {
				if s < 0 || s >= numSlots || !nd.master {
					t.Fatalf("slot %d owned by %+v", s, nd)
				}
			}
		}

		// Render splits each NodeRef.Addr, a listening node's address, back
		// into host and port, so only hosts a node's address can carry are
		// generated: one word that net.SplitHostPort gets back from
		// net.JoinHostPort. A host of "]" joins to "]:30001", which does not
		// split, so Render wrote a line with no port, and the parser (like
		// Kvrocks) rightly rejected it with "Invalid cluster node port".
		split, _, err := net.SplitHostPort(net.JoinHostPort(host, "1"))
		if err != nil || split != host || len(strings.Fields(host)) != 1 || strings.Fields(host)[0] != host || port == 0 || port > 65535-16 {
			host, port = "127.0.0.1", 7000
		}
		topo := Topology{Version: 1}
		for i, slots := range SplitSlots(1 + int(masters)%8) {
			at := func(n int) NodeRef {
				return NodeRef{ID: fmt.Sprintf("%040d", n), Addr: net.JoinHostPort(host, strconv.Itoa(int(port)+n))}
			}
			topo.Shards = append(topo.Shards, ShardTopology{Master: at(2 * i), Replicas: []NodeRef{at(2*i + 1)}, Slots: []SlotRange{slots}})
		}
		pt, err := parseClusterNodes(topo.Render(), 1)
		require.NoError(t, err, topo.Render())
		// A plain comparison: require.Equal per slot made each input cost
		// 16,384 reflective compares, a few executions a second.
		for slot := range numSlots {
			if want := topo.Shards[topo.ShardOfSlot(slot)].Master.ID; pt.owner[slot].id != want {
				t.Fatalf("slot %d: owner %q, want %q\n%s", slot, pt.owner[slot].id, want, topo.Render())
			}
		}
		for _, nd := range pt.nodes {
			if nd.master {
				require.Len(t, nd.replicas, 1)
				require.Equal(t, nd.id[:39], nd.replicas[0].id[:39])
			}
		}
	})
}

// FuzzCommandHandler sends random commands to a node with a topology; it must
// answer each with one well-formed reply and keep serving.
func FuzzCommandHandler(f *testing.F) {
	for _, seed := range [][]string{
		{"SET", "k", "v"}, {"CLUSTERX", "SETNODES", "x", "2"}, {"CLUSTERX", "FAILOVER", "x", "-1"},
		{"CLIENT", "PAUSE", "x"}, {"HELLO", "2", "AUTH"}, {"CLUSTER", "KEYSLOT"}, {"INFO", "x"},
		{"CLUSTERX", "TAKEOVER"}, {"CONFIG", "GET"}, {"COMMAND", "INFO", "GET"},
		{"GETEX", "k", "EX", "0x10"}, {"GETEX", "k", "PERSIST", "PX"}, {"COPY", "k", "{k}2", "DB", "-0", "REPLACE"},
		{"HELLO", "3", "SETNAME", "n"},
	} {
		f.Add(strings.Join(seed, "\x00"))
	}
	n := ntStartNode(f, NodeConfig{})
	setup := ntDial(f, n.Addr())
	require.Equal(f, "+OK\r\n", setup.do("CLUSTERX", "SETNODES", ntMasterLine(ntID('a'), n, "0-16383"), "1"))
	c := ntDial(f, n.Addr())
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		if args[0] == "" || len(args) > 16 {
			return
		}
		name := strings.ToLower(args[0])
		if name == "quit" || name == "client" && len(args) > 1 && strings.EqualFold(args[1], "pause") ||
			name == "clusterx" && len(args) > 1 && (strings.EqualFold(args[1], "setnodes") || strings.EqualFold(args[1], "setnodeid")) ||
			name == replPsyncCommand || keyspace.Lookup([]byte(args[0])) != nil && keyspace.Lookup([]byte(args[0])).Write && strings.Contains(joined, "flush") {
			return // would close, stall or reconfigure the shared node
		}
		c.t = t
		reply := c.do(args...)
		require.NotEmpty(t, reply)
		c.t = f
	})
}

func TestKillRightAfterStart(t *testing.T) {
	for range 20 {
		n, err := StartNode(NodeConfig{Addr: "127.0.0.1:0"})
		require.NoError(t, err)
		addr := n.Addr()
		n.Kill()
		ln, err := net.Listen("tcp", addr)
		require.NoError(t, err, "Kill released the port")
		ln.Close()
	}
}

func TestCommandSlotDoesNotAllocate(t *testing.T) {
	set := mustLookup(t, "set")
	args := [][]byte{[]byte("SET"), []byte("user:{1000}:name"), []byte("v")}
	assert.Zero(t, testing.AllocsPerRun(100, func() { commandSlot(set, args) }))
	slot, keyed, cross := commandSlot(set, args)
	assert.Equal(t, hashSlot([]byte("1000")), slot)
	assert.True(t, keyed)
	assert.False(t, cross)
}
