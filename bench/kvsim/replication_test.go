package kvsim

import (
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim/keyspace"
)

// ntSeqOf reads INFO keyspace's sequence of n.
func ntSeqOf(t *testing.T, n *Node) uint64 {
	t.Helper()
	seq, err := strconv.ParseUint(ntInfoField(t, ntClient(t, n.Addr(), n.cfg.Password), "keyspace", "sequence"), 10, 64)
	require.NoError(t, err)
	return seq
}

// ntWaitCaughtUp waits until replica's sequence equals master's.
func ntWaitCaughtUp(t *testing.T, master, replica *Node) {
	t.Helper()
	require.Eventually(t, func() bool {
		return replica.Keyspace().Sequence() == master.Keyspace().Sequence()
	}, 10*time.Second, 5*time.Millisecond, "replica never caught up")
}

func TestReplicationStreamsWritesAndReportsOffsets(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntClient(t, s.master.Addr(), "")
	for i := range 50 {
		require.NoError(t, m.Set(t.Context(), "k"+strconv.Itoa(i), i, 0).Err())
	}
	ntWaitCaughtUp(t, s.master, s.replicas[0])
	r := ntDial(t, s.replicas[0].Addr())
	require.Equal(t, "+OK\r\n", r.do("READONLY"))
	assert.Equal(t, ntBulk("49"), r.do("GET", "k49"))

	seq := strconv.FormatUint(s.master.Keyspace().Sequence(), 10)
	_, rport, _ := strings.Cut(s.replicas[0].Addr(), ":")
	want := "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=" + rport +
		",offset=" + seq + ",lag=0\r\nmaster_repl_offset:" + seq + "\r\n"
	require.Eventually(t, func() bool {
		return m.Info(t.Context(), "replication").Val() == want
	}, 10*time.Second, 5*time.Millisecond, "master INFO replication never showed the ack")

	_, mport, _ := strings.Cut(s.master.Addr(), ":")
	replInfo := ntClient(t, s.replicas[0].Addr(), "").Info(t.Context(), "replication").Val()
	pattern := "^# Replication\r\nrole:slave\r\nmaster_host:127\\.0\\.0\\.1\r\nmaster_port:" + mport +
		"\r\nmaster_link_status:up\r\nmaster_sync_unrecoverable_error:no\r\nmaster_sync_in_progress:0\r\n" +
		"master_last_io_seconds_ago:[0-9]+\r\nslave_repl_offset:" + seq + "\r\nslave_priority:100\r\n" +
		"connected_slaves:0\r\nmaster_repl_offset:" + seq + "\r\n$"
	assert.Regexp(t, regexp.MustCompile(pattern), replInfo)
}

func TestReplicationDelayIsRespected(t *testing.T) {
	ntSkipShort(t)
	const delay = 300 * time.Millisecond
	s := ntStartShard(t, 1, NodeConfig{ReplDelay: delay})
	m := ntDial(t, s.master.Addr())
	start := time.Now()
	require.Equal(t, "+OK\r\n", m.do("SET", "k", "v"))
	ntWaitCaughtUp(t, s.master, s.replicas[0])
	assert.GreaterOrEqual(t, time.Since(start), delay, "applied before ReplDelay")
}

func TestPartialResyncAfterReplicaRestart(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "+OK\r\n", m.do("SET", "a", "1"))
	ntWaitCaughtUp(t, s.master, s.replicas[0])
	full := s.master.syncFull.Load()
	s.replicas[0].Kill()
	require.Equal(t, "+OK\r\n", m.do("SET", "b", "2"))
	require.NoError(t, s.replicas[0].Start())
	ntWaitLinkUp(t, s.replicas[0])
	ntWaitCaughtUp(t, s.master, s.replicas[0])
	assert.Equal(t, full, s.master.syncFull.Load(), "no full resync")
	assert.GreaterOrEqual(t, s.master.syncPartial.Load(), int64(2))
	r := ntDial(t, s.replicas[0].Addr())
	r.do("READONLY")
	assert.Equal(t, ntBulk("2"), r.do("GET", "b"))
}

func TestFullResyncWhenReplicaIsAheadOrTheLogIsTrimmed(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "+OK\r\n", m.do("SET", "a", "1"))
	ntWaitCaughtUp(t, s.master, s.replicas[0])
	replica := s.replicas[0]

	// Ahead: a write only the replica has (say, from before a failover).
	replica.Kill()
	ks := replica.Keyspace()
	setCmd := mustLookup(t, "set")
	ks.Exec(nil, setCmd, [][]byte{[]byte("set"), []byte("only-on-replica"), []byte("x")})
	ks.Exec(nil, setCmd, [][]byte{[]byte("set"), []byte("only-on-replica2"), []byte("x")})
	full := s.master.syncFull.Load()
	require.NoError(t, replica.Start())
	ntWaitLinkUp(t, replica)
	ntWaitCaughtUp(t, s.master, replica)
	assert.Equal(t, full+1, s.master.syncFull.Load())
	r := ntDial(t, replica.Addr())
	r.do("READONLY")
	assert.Equal(t, "$-1\r\n", r.do("GET", "only-on-replica"), "the full resync replaced the replica's data")
	assert.Equal(t, ntBulk("1"), r.do("GET", "a"))

	// Trimmed: the master's log no longer holds what the replica needs.
	replica.Kill()
	s.master.replLog.mu.Lock()
	s.master.replLog.maxEntries = 2
	s.master.replLog.mu.Unlock()
	for i := range 5 {
		require.Equal(t, "+OK\r\n", m.do("SET", "t"+strconv.Itoa(i), "v"))
	}
	require.NoError(t, replica.Start())
	ntWaitLinkUp(t, replica)
	ntWaitCaughtUp(t, s.master, replica)
	assert.Equal(t, full+2, s.master.syncFull.Load())
	r = ntDial(t, replica.Addr())
	r.do("READONLY")
	assert.Equal(t, ntBulk("v"), r.do("GET", "t0"))
}

func TestSwappedTopologyResyncsAndResetsFailoverState(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "+OK\r\n", m.do("SET", "k", "v"))
	ntWaitCaughtUp(t, s.master, s.replicas[0])
	require.Equal(t, "+OK\r\n", m.do("CLUSTERX", "FAILOVER", ntID('b')))
	mc := ntClient(t, s.master.Addr(), "")
	require.Eventually(t, func() bool { return ntFailoverState(t, mc) == "success" }, 10*time.Second, 10*time.Millisecond)

	// The new master first, as a controller must: the old master deletes
	// its former slots as it applies the swap (TestSwappedTopologyPushOrderDecidesDataLoss).
	newMaster, oldMaster := s.replicas[0], s.master
	swapped := []string{ntMasterLine(ntID('b'), newMaster, "0-16383"), ntReplicaLine(ntID('a'), oldMaster, ntID('b'))}
	ntPush(t, 2, swapped, map[string]*Node{ntID('b'): newMaster})
	ntPush(t, 2, swapped, map[string]*Node{ntID('a'): oldMaster})
	assert.Equal(t, "", ntFailoverState(t, mc), "a replica prints no failover state")
	nc := ntClient(t, newMaster.Addr(), "")
	assert.Equal(t, "none", ntFailoverState(t, nc))
	require.Eventually(t, func() bool { return ntInfoField(t, nc, "replication", "connected_slaves") == "1" },
		10*time.Second, 10*time.Millisecond)
	ntWaitLinkUp(t, oldMaster)

	slot := strconv.Itoa(hashSlot([]byte("k")))
	assert.Equal(t, "-MOVED "+slot+" "+newMaster.Addr()+"\r\n", m.do("GET", "k"), "old master redirects")
	assert.Equal(t, "+OK\r\n", m.do("READONLY"))
	assert.Equal(t, ntBulk("v"), m.do("GET", "k"), "old master, resynced from the new one, serves READONLY reads")
	if mustLookupOK("flushdb") {
		assert.Equal(t, "-READONLY You can't write against a read only slave.\r\n", m.do("FLUSHDB"))
	}
	require.NoError(t, nc.Set(t.Context(), "k2", "v2", 0).Err())
	ntWaitCaughtUp(t, newMaster, oldMaster)
	assert.Equal(t, ntBulk("v2"), m.do("GET", "k2"))
}

func TestKillLeavesNoGoroutines(t *testing.T) {
	ntSkipShort(t)
	before := runtime.NumGoroutine()
	cfg := NodeConfig{Addr: "127.0.0.1:0", ReplDelay: time.Second}
	master, err := StartNode(cfg)
	require.NoError(t, err)
	replica, err := StartNode(cfg)
	require.NoError(t, err)
	nodes := map[string]*Node{ntID('a'): master, ntID('b'): replica}
	ntPush(t, 1, []string{ntMasterLine(ntID('a'), master, "0-16383"), ntReplicaLine(ntID('b'), replica, ntID('a'))}, nodes)
	ntWaitLinkUp(t, replica)
	c := ntDial(t, master.Addr())
	require.Equal(t, "+OK\r\n", c.do("SET", "k", "v"))                             // pending on the replica for a second
	require.Equal(t, "+OK\r\n", c.do("CLUSTERX", "FAILOVER", ntID('b'), "100000")) // sampling for 3 s
	require.Equal(t, "+OK\r\n", c.do("CLIENT", "PAUSE", "100000", "ALL"))
	c.send("GET", "k") // blocked by the pause
	replica.Kill()
	master.Kill()
	c.conn.Close()
	// A plain bounded poll: Eventually would count its own goroutine.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if left := runtime.NumGoroutine(); left > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines (%d before) left:\n%s", left, before, buf[:runtime.Stack(buf, true)])
	}
}

func mustLookupOK(name string) bool { return keyspace.Lookup([]byte(name)) != nil }

func mustLookupB(t testing.TB, name string) *keyspace.Command {
	c := keyspace.Lookup([]byte(name))
	require.NotNil(t, c, name)
	return c
}

func mustLookup(t *testing.T, name string) *keyspace.Command {
	c := keyspace.Lookup([]byte(name))
	require.NotNil(t, c, name)
	return c
}

// After a CLUSTERX FAILOVER the old master keeps serving keyless commands
// such as PUBLISH, which move its sequence (and, replicated, its other
// replicas') while the new master writes on its own: their histories part.
// Once the swapped topology makes them replicas of the new master they must
// still end up with every write of it: they resync fully, as Kvrocks makes
// the old master do.
func TestReplicasOfTheNewMasterGetAllItsWritesAfterTheOldOnePublished(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 2, NodeConfig{})
	oldMaster, newMaster, other := s.master, s.replicas[0], s.replicas[1]
	m := ntDial(t, oldMaster.Addr())
	require.Equal(t, "+OK\r\n", m.do("SET", "k0", "v0"))
	ntWaitCaughtUp(t, oldMaster, newMaster)
	ntWaitCaughtUp(t, oldMaster, other)
	require.Equal(t, "+OK\r\n", m.do("CLUSTERX", "FAILOVER", ntID('b')))
	ntWaitFailoverState(t, ntClient(t, oldMaster.Addr(), ""), "success")

	n := ntDial(t, newMaster.Addr())
	require.Equal(t, "+OK\r\n", n.do("SET", "k1", "v1"))
	require.Equal(t, ":0\r\n", m.do("PUBLISH", "ch", "m1"))
	require.Equal(t, "+OK\r\n", n.do("SET", "k2", "v2"))
	require.Equal(t, ":0\r\n", m.do("PUBLISH", "ch", "m2"))
	ntWaitCaughtUp(t, oldMaster, other)

	full := newMaster.syncFull.Load()
	swapped := []string{
		ntMasterLine(ntID('b'), newMaster, "0-16383"),
		ntReplicaLine(ntID('a'), oldMaster, ntID('b')),
		ntReplicaLine(ntID('c'), other, ntID('b')),
	}
	ntPush(t, 2, swapped, map[string]*Node{ntID('b'): newMaster}) // first, as a controller must
	ntPush(t, 2, swapped, map[string]*Node{ntID('a'): oldMaster, ntID('c'): other})
	ntWaitLinkUp(t, oldMaster)
	ntWaitLinkUp(t, other)
	require.Equal(t, "+OK\r\n", n.do("SET", "k3", "v3"))
	for _, r := range []*Node{oldMaster, other} {
		c := ntDial(t, r.Addr())
		assert.Equal(t, "+OK\r\n", c.do("READONLY"))
		require.Eventually(t, func() bool { return c.do("GET", "k3") == ntBulk("v3") }, 10*time.Second, 5*time.Millisecond)
		for _, k := range []string{"k0", "k1", "k2"} {
			assert.Equal(t, ntBulk("v"+k[1:]), c.do("GET", k), "%s has %s", r.Addr(), k)
		}
	}
	assert.Equal(t, full+2, newMaster.syncFull.Load(), "both resynced fully")
}
