package kvsim

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ntWaitBlocked waits until n has want blocked-client entries (one per key
// a client waits on).
func ntWaitBlocked(t *testing.T, n *Node, want int64) {
	t.Helper()
	require.Eventually(t, func() bool { return n.blocked.count.Load() == want }, 10*time.Second, time.Millisecond,
		"blocked entries never became %d (now %d)", want, n.blocked.count.Load())
}

// ntTaggedKeys returns keys of one slot in 0-8191 (ntClusterOfTwo's first node).
func ntTaggedKeys(t *testing.T, count int) []string {
	tag := ntKeyInSlots(t, 0, 8191)
	keys := make([]string, count)
	for i := range keys {
		keys[i] = "{" + tag + "}" + strconv.Itoa(i)
	}
	return keys
}

func TestBlockingRefusals(t *testing.T) {
	me, other, c := ntClusterOfTwo(t)
	k := ntTaggedKeys(t, 1)[0]
	far := ntKeyInSlots(t, 8192, 16383)
	farSlot := strconv.Itoa(hashSlot([]byte(far)))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"BLPOP", k, "soon"}, "-ERR timeout is not a float or out of range\r\n"},
		{[]string{"BRPOP", k, "nan"}, "-ERR timeout is not a float or out of range\r\n"},
		{[]string{"BLPOP", k, "-1"}, "-ERR timeout should not be negative\r\n"},
		{[]string{"BLPOP", k}, "-ERR wrong number of arguments for 'blpop' command\r\n"},
		{[]string{"BLMOVE", k, k, "up", "left", "0"}, "-ERR syntax error\r\n"},
		{[]string{"BLMOVE", k, k, "left", "right", "x"}, "-ERR timeout is not a float or out of range\r\n"},
		{[]string{"BLMOVE", k, k, "left", "right", "-0.5"}, "-ERR timeout is negative\r\n"},
		{[]string{"BLMOVE", k, k, "left", "right"}, "-ERR wrong number of arguments for 'blmove' command\r\n"},
		{[]string{"BLPOP", k, far, "0"}, "-CROSSSLOT Attempted to access keys that don't hash to the same slot\r\n"},
		{[]string{"BLPOP", far, "0"}, "-MOVED " + farSlot + " " + other.Addr() + "\r\n"},
		{[]string{"BLMOVE", far, far, "LEFT", "RIGHT", "0"}, "-MOVED " + farSlot + " " + other.Addr() + "\r\n"},
		{[]string{"BRPOPLPUSH", k, k, "0"}, "-ERR unknown command 'BRPOPLPUSH', with args beginning with: '" + k + "' '" + k + "' '0' \r\n"},
	} {
		assert.Equal(t, tc.want, c.do(tc.args...), "%q", tc.args)
	}
	me.failover.state.Store(failoverPauseWrite)
	assert.Equal(t, "-TRYAGAIN Failover in progress\r\n", c.do("BLPOP", k, "0"))
	me.failover.state.Store(failoverNone)
	assert.Equal(t, "+OK\r\n", c.do("SET", k, "s"))
	assert.Equal(t, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", c.do("BLPOP", k, "0"))
	assert.Equal(t, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
		c.do("BLMOVE", k, ntTaggedKeys(t, 2)[1], "LEFT", "LEFT", "0"), "the source's type")
	assert.Equal(t, ":1\r\n", c.do("RPUSH", ntTaggedKeys(t, 2)[1], "v"))
	assert.Equal(t, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
		c.do("BLMOVE", ntTaggedKeys(t, 2)[1], k, "LEFT", "LEFT", "0"), "the destination's type")
	assert.Equal(t, ":1\r\n", c.do("LLEN", ntTaggedKeys(t, 2)[1]), "nothing moved")
	assert.Zero(t, me.blocked.count.Load(), "no refused command waits")
}

func TestBlockingPopsAtOnce(t *testing.T) {
	_, _, c := ntClusterOfTwo(t)
	keys := ntTaggedKeys(t, 3)
	require.Equal(t, ":3\r\n", c.do("RPUSH", keys[1], "a", "b", "c"))
	assert.Equal(t, "*2\r\n"+ntBulk(keys[1])+ntBulk("a")+"", c.do("BLPOP", keys[0], keys[1], "0"))
	assert.Equal(t, "*2\r\n"+ntBulk(keys[1])+ntBulk("c"), c.do("BRPOP", keys[1], "1.5"))
	assert.Equal(t, ntBulk("b"), c.do("BLMOVE", keys[1], keys[2], "RIGHT", "LEFT", "0"))
	assert.Equal(t, ":0\r\n", c.do("EXISTS", keys[1]), "the emptied list is gone")
	assert.Equal(t, "*1\r\n"+ntBulk("b"), c.do("LRANGE", keys[2], "0", "-1"))
}

func TestBlockingTimeoutReplies(t *testing.T) {
	me, _, c := ntClusterOfTwo(t)
	keys := ntTaggedKeys(t, 2)
	assert.Equal(t, "$-1\r\n", c.do("BLPOP", keys[0], keys[1], "0.01"), "Kvrocks answers BLPOP's timeout with a nil string")
	assert.Equal(t, "$-1\r\n", c.do("BRPOP", keys[0], "0.01"))
	assert.Equal(t, "*-1\r\n", c.do("BLMOVE", keys[0], keys[1], "LEFT", "LEFT", "0.01"), "and BLMOVE's with a nil array")
	assert.Zero(t, me.blocked.count.Load())
	assert.Equal(t, "+PONG\r\n", c.do("PING"), "the connection serves again")
}

func TestBlockingWakesWaitersInOrder(t *testing.T) {
	me, _, c := ntClusterOfTwo(t)
	keys := ntTaggedKeys(t, 3)
	first, second := ntDial(t, me.Addr()), ntDial(t, me.Addr())
	first.send("BLPOP", keys[0], "10")
	ntWaitBlocked(t, me, 1)
	second.send("BRPOP", keys[1], keys[0], "10")
	ntWaitBlocked(t, me, 3)
	assert.Equal(t, "3", ntInfoField(t, ntClient(t, me.Addr(), ""), "clients", "blocked_clients"), "one per key waited on")

	require.Equal(t, ":1\r\n", c.do("LPUSH", keys[0], "one"))
	assert.Equal(t, "*2\r\n"+ntBulk(keys[0])+ntBulk("one"), first.read(), "the oldest waiter is served")
	ntWaitBlocked(t, me, 2)
	// RPUSHX to the emptied list pushes nothing but wakes second, which
	// finds nothing and no longer waits on keys[0], only on keys[1].
	require.Equal(t, ":0\r\n", c.do("RPUSHX", keys[0], "none"))
	ntWaitBlocked(t, me, 1)
	require.Equal(t, ":1\r\n", c.do("RPUSH", keys[0], "ignored"))
	require.Equal(t, ":1\r\n", c.do("RPUSH", keys[1], "two"))
	assert.Equal(t, "*2\r\n"+ntBulk(keys[1])+ntBulk("two"), second.read())
	assert.Equal(t, "*1\r\n"+ntBulk("ignored"), c.do("LRANGE", keys[0], "0", "-1"))
	require.Equal(t, ":1\r\n", c.do("DEL", keys[0]))
	ntWaitBlocked(t, me, 0)

	mover := ntDial(t, me.Addr())
	mover.send("BLMOVE", keys[1], keys[2], "LEFT", "RIGHT", "10")
	ntWaitBlocked(t, me, 1)
	require.Equal(t, ":2\r\n", c.do("RPUSH", keys[1], "x", "y"))
	assert.Equal(t, ntBulk("x"), mover.read())
	assert.Equal(t, "*1\r\n"+ntBulk("y"), c.do("LRANGE", keys[1], "0", "-1"))
	assert.Equal(t, "*1\r\n"+ntBulk("x"), c.do("LRANGE", keys[2], "0", "-1"))
}

// A woken client that finds the list emptied by someone else stays blocked,
// no longer queued on that key (Kvrocks' WakeupBlockingConns dequeues it).
func TestBlockingLostRaceWaitsForTimeout(t *testing.T) {
	me, _, c := ntClusterOfTwo(t)
	k := ntTaggedKeys(t, 1)[0]
	waiter := ntDial(t, me.Addr())
	waiter.send("BLPOP", k, "0.5")
	ntWaitBlocked(t, me, 1)
	require.Equal(t, "*3\r\n:1\r\n"+ntBulk("v")+":0\r\n", ntMulti(t, c, []string{"LPUSH", k, "v"}, []string{"LPOP", k}, []string{"LLEN", k}))
	ntWaitBlocked(t, me, 0)
	assert.Equal(t, "$-1\r\n", waiter.read())
}

func TestBlockingInsideMultiNeverBlocks(t *testing.T) {
	_, _, c := ntClusterOfTwo(t)
	keys := ntTaggedKeys(t, 2)
	assert.Equal(t, "*4\r\n$-1\r\n*-1\r\n:1\r\n*2\r\n"+ntBulk(keys[0])+ntBulk("v"), ntMulti(t, c,
		[]string{"BLPOP", keys[0], "0"},
		[]string{"BLMOVE", keys[0], keys[1], "LEFT", "LEFT", "0"},
		[]string{"LPUSH", keys[0], "v"},
		[]string{"BRPOP", keys[0], "0"}))
}

// Closing a blocked connection unblocks it: a later push is not lost to it.
func TestBlockingEndsWhenClientCloses(t *testing.T) {
	me, _, c := ntClusterOfTwo(t)
	k := ntTaggedKeys(t, 1)[0]
	waiter := ntDial(t, me.Addr())
	waiter.send("BLPOP", k, "0")
	ntWaitBlocked(t, me, 1)
	require.NoError(t, waiter.conn.Close())
	ntWaitBlocked(t, me, 0)
	require.Equal(t, ":1\r\n", c.do("LPUSH", k, "kept"))
	assert.Equal(t, ":1\r\n", c.do("LLEN", k))
}

func TestBlockingEndsOnKill(t *testing.T) {
	me, _, _ := ntClusterOfTwo(t)
	waiter := ntDial(t, me.Addr())
	waiter.send("BLPOP", ntTaggedKeys(t, 1)[0], "0")
	ntWaitBlocked(t, me, 1)
	me.Kill()
	assert.Zero(t, me.blocked.count.Load())
	_, err := ntReadFrame(waiter.rd)
	assert.Error(t, err, "the killed node closed the connection")
}

// A pop a push caused replicates; a blocked client is not told of a
// failover: it stays blocked on the demoted master, which its new master's
// pushes, replicated, do not wake.
func TestBlockingAcrossClusterxFailover(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{ReplDelay: 50 * time.Millisecond})
	const k = "{b}k"
	m, r := ntDial(t, s.master.Addr()), ntDial(t, s.replicas[0].Addr())
	require.Equal(t, "+OK\r\n", r.do("READONLY"))
	popper := ntDial(t, s.master.Addr())
	popper.send("BLPOP", k, "10")
	ntWaitBlocked(t, s.master, 1)
	require.Equal(t, ":2\r\n", m.do("RPUSH", k, "a", "b"))
	require.Equal(t, "*2\r\n"+ntBulk(k)+ntBulk("a"), popper.read())
	require.Eventually(t, func() bool { return r.do("LRANGE", k, "0", "-1") == "*1\r\n"+ntBulk("b")+"" }, 10*time.Second,
		5*time.Millisecond, "the replica applies the push and the pop")

	waiter := ntDial(t, s.master.Addr())
	waiter.send("BLPOP", "{b}later", "0")
	ntWaitBlocked(t, s.master, 1)
	require.Equal(t, "+OK\r\n", m.do("CLUSTERX", "FAILOVER", ntID('b'), "3000"))
	ntWaitFailoverState(t, ntClient(t, s.master.Addr(), ""), "success")
	assert.Equal(t, int64(1), s.master.blocked.count.Load(), "the failover leaves the client blocked")
	ntPush(t, 2, []string{ntMasterLine(ntID('b'), s.replicas[0], "0-16383"), ntReplicaLine(ntID('a'), s.master, ntID('b'))}, s.nodes)
	require.Equal(t, ":1\r\n", ntDial(t, s.replicas[0].Addr()).do("LPUSH", "{b}later", "v"))
	require.Equal(t, "+OK\r\n", m.do("READONLY"))
	require.Eventually(t, func() bool { return m.do("LLEN", "{b}later") == ":1\r\n" }, 10*time.Second, 5*time.Millisecond,
		"the demoted master applies the new master's push")
	assert.Equal(t, int64(1), s.master.blocked.count.Load(), "a replicated push wakes nobody")
	require.NoError(t, waiter.conn.Close())
	ntWaitBlocked(t, s.master, 0)
	slot := strconv.Itoa(hashSlot([]byte(k)))
	assert.Equal(t, "-MOVED "+slot+" "+s.replicas[0].Addr()+"\r\n", ntDial(t, s.master.Addr()).do("BLPOP", k, "1"))
	assert.Equal(t, "*2\r\n"+ntBulk(k)+ntBulk("b"), ntDial(t, s.replicas[0].Addr()).do("BLPOP", k, "1"),
		"the promoted replica pops")
}

func FuzzParseBlocking(f *testing.F) {
	f.Add(uint8(0), "0")
	f.Add(uint8(2), "1.5")
	f.Add(uint8(1), "-1")
	f.Add(uint8(2), "1e300")
	f.Add(uint8(0), "10000000000")
	names := []string{"blpop", "brpop", "blmove"}
	f.Fuzz(func(t *testing.T, which uint8, timeout string) {
		name := names[int(which)%len(names)]
		args := [][]byte{[]byte(name), []byte("k"), []byte("k")}
		if name == "blmove" {
			args = append(args, []byte("LEFT"), []byte("right"))
		}
		args = append(args, []byte(timeout))
		req, msg := parseBlocking(name, args)
		if msg != "" {
			assert.Nil(t, req)
			return
		}
		require.NotNil(t, req)
		assert.GreaterOrEqual(t, req.timeout, time.Duration(0))
		assert.NotEmpty(t, req.keys)
	})
}
