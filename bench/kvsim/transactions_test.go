package kvsim

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const execAbort = "-EXECABORT Transaction discarded\r\n"

// ntMulti sends MULTI, then each command (requiring +QUEUED), and returns
// EXEC's reply.
func ntMulti(t *testing.T, c *ntConn, cmds ...[]string) string {
	t.Helper()
	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	for _, cmd := range cmds {
		require.Equal(t, "+QUEUED\r\n", c.do(cmd...), "%v", cmd)
	}
	return c.do("EXEC")
}

func TestTransactionReplies(t *testing.T) {
	_, _, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)

	assert.Equal(t, "-ERR EXEC without MULTI\r\n", c.do("EXEC"))
	assert.Equal(t, "-ERR DISCARD without MULTI\r\n", c.do("DISCARD"))
	assert.Equal(t, "*0\r\n", ntMulti(t, c), "an empty transaction")

	assert.Equal(t, "*4\r\n+OK\r\n$1\r\nv\r\n+PONG\r\n:1\r\n", ntMulti(t, c,
		[]string{"SET", k, "v"}, []string{"GET", k}, []string{"PING"}, []string{"DEL", k}))

	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	assert.Equal(t, "-ERR MULTI calls can not be nested\r\n", c.do("MULTI"))
	assert.Equal(t, "-ERR WATCH inside MULTI is not allowed\r\n", c.do("WATCH", k))
	require.Equal(t, "+QUEUED\r\n", c.do("SET", k, "v"))
	assert.Equal(t, "+OK\r\n", c.do("DISCARD"))
	assert.Equal(t, "$-1\r\n", c.do("GET", k), "DISCARD drops the queue")
	assert.Equal(t, "*0\r\n", ntMulti(t, c), "neither nested MULTI nor WATCH doomed the transaction")

	// Errors at run time are elements of EXEC's array; the rest runs.
	require.Equal(t, "+OK\r\n", c.do("SET", k, "text"))
	assert.Equal(t, "*2\r\n-ERR value is not an integer or out of range\r\n$4\r\ntext\r\n",
		ntMulti(t, c, []string{"INCR", k}, []string{"GET", k}))

	// Control commands are queued and answer inside EXEC's array.
	assert.Equal(t, "*3\r\n$2\r\nhi\r\n"+ntBulk(ntID('a'))+"+OK\r\n",
		ntMulti(t, c, []string{"ECHO", "hi"}, []string{"CLUSTERX", "MYID"}, []string{"READONLY"}))

	// UNWATCH runs at once inside MULTI, as every "multi"-flagged command.
	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	assert.Equal(t, "+OK\r\n", c.do("UNWATCH"))
	assert.Equal(t, "*0\r\n", c.do("EXEC"))

	assert.Equal(t, "-ERR wrong number of arguments for 'exec' command\r\n", c.do("EXEC", "x"))
}

func TestTransactionQueueTimeRefusalsAbortExec(t *testing.T) {
	_, other, c := ntClusterOfTwo(t)
	mine, theirs := ntKeyInSlots(t, 0, 8191), ntKeyInSlots(t, 8192, 16383)
	theirSlot := strconv.Itoa(hashSlot([]byte(theirs)))
	for _, tc := range []struct {
		name  string
		cmd   []string
		reply string
	}{
		{"unknown command", []string{"NOSUCH", "a"}, "-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n"},
		{"data command arity", []string{"GET"}, "-ERR wrong number of arguments for 'get' command\r\n"},
		{"control command arity", []string{"ECHO"}, "-ERR wrong number of arguments for 'echo' command\r\n"},
		{"no-multi command", []string{"SUBSCRIBE", "ch"}, "-ERR SUBSCRIBE inside MULTI is not allowed\r\n"},
		{"CROSSSLOT", []string{"MSET", mine, "1", theirs, "2"},
			"-CROSSSLOT Attempted to access keys that don't hash to the same slot\r\n"},
		{"MOVED", []string{"SET", theirs, "1"}, "-MOVED " + theirSlot + " " + other.Addr() + "\r\n"},
		{"MOVED for a WATCH inside MULTI", []string{"WATCH", theirs}, "-MOVED " + theirSlot + " " + other.Addr() + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, "+OK\r\n", c.do("MULTI"))
			require.Equal(t, "+QUEUED\r\n", c.do("SET", mine, tc.name))
			assert.Equal(t, tc.reply, c.do(tc.cmd...))
			require.Equal(t, "+QUEUED\r\n", c.do("PING"))
			assert.Equal(t, execAbort, c.do("EXEC"))
			assert.Equal(t, "$-1\r\n", c.do("GET", mine), "nothing of the transaction ran")
			assert.Equal(t, "*0\r\n", ntMulti(t, c), "the next transaction starts clean")
		})
	}

	// A topology where nobody serves the slot: CLUSTERDOWN.
	lone := ntStartNode(t, NodeConfig{})
	ntPush(t, 1, []string{ntMasterLine(ntID('c'), lone, "0-8191")}, map[string]*Node{ntID('c'): lone})
	lc := ntDial(t, lone.Addr())
	require.Equal(t, "+OK\r\n", lc.do("MULTI"))
	assert.Equal(t, "-CLUSTERDOWN Hash slot not served\r\n", lc.do("SET", theirs, "v"))
	assert.Equal(t, execAbort, lc.do("EXEC"))
}

func TestTransactionOnReplica(t *testing.T) {
	s := ntStartShard(t, 1, NodeConfig{})
	r := ntDial(t, s.replicas[0].Addr())
	slot := strconv.Itoa(hashSlot([]byte("k")))
	// A keyed write is MOVED at queue time; a keyless one passes the
	// queue-time checks and gets READONLY inside EXEC.
	require.Equal(t, "+OK\r\n", r.do("MULTI"))
	assert.Equal(t, "-MOVED "+slot+" "+s.master.Addr()+"\r\n", r.do("SET", "k", "v"))
	assert.Equal(t, execAbort, r.do("EXEC"))
	assert.Equal(t, "*1\r\n-READONLY You can't write against a read only slave.\r\n",
		ntMulti(t, r, []string{"FLUSHDB"}))
	require.Equal(t, "+OK\r\n", r.do("READONLY"))
	assert.Equal(t, "*1\r\n$-1\r\n", ntMulti(t, r, []string{"GET", "k"}), "READONLY reads run inside EXEC")
}

func TestWatch(t *testing.T) {
	me, other, c := ntClusterOfTwo(t)
	tag := ntKeyInSlots(t, 0, 8191)
	x, y := "{"+tag+"}x", "{"+tag+"}y"
	theirs := ntKeyInSlots(t, 8192, 16383)
	c2 := ntDial(t, me.Addr())
	exec := func() string { return ntMulti(t, c, []string{"PING"}) }
	const pong, aborted = "*1\r\n+PONG\r\n", "$-1\r\n"

	require.Equal(t, "+OK\r\n", c.do("WATCH", x, y))
	assert.Equal(t, pong, exec(), "untouched watched keys")

	require.Equal(t, "+OK\r\n", c.do("WATCH", x))
	require.Equal(t, "+OK\r\n", c2.do("SET", y, "1"))
	assert.Equal(t, pong, exec(), "a write to a key not watched")

	require.Equal(t, "+OK\r\n", c.do("WATCH", y, x))
	require.Equal(t, "+OK\r\n", c2.do("SET", x, "1"))
	assert.Equal(t, aborted, exec(), "another connection wrote a watched key")
	assert.Equal(t, pong, exec(), "EXEC ended the watches")

	require.Equal(t, "+OK\r\n", c.do("WATCH", x))
	require.Equal(t, "+OK\r\n", c.do("SET", x, "2"))
	assert.Equal(t, aborted, exec(), "the watcher's own write counts")

	require.Equal(t, "+OK\r\n", c.do("WATCH", x))
	require.Equal(t, "+OK\r\n", c2.do("SET", x, "2"))
	require.Equal(t, "+OK\r\n", c.do("UNWATCH"))
	assert.Equal(t, pong, exec(), "UNWATCH forgets the write")

	require.Equal(t, "+OK\r\n", c.do("WATCH", x))
	require.Equal(t, "+OK\r\n", c2.do("SET", x, "3"))
	assert.Equal(t, "-ERR EXEC without MULTI\r\n", c.do("EXEC"))
	assert.Equal(t, "-ERR DISCARD without MULTI\r\n", c.do("DISCARD"))
	assert.Equal(t, aborted, exec(), "EXEC and DISCARD without MULTI keep the watches")

	require.Equal(t, "+OK\r\n", c.do("WATCH", x))
	require.Equal(t, "+OK\r\n", c2.do("SET", x, "4"))
	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	require.Equal(t, "+OK\r\n", c.do("DISCARD"))
	assert.Equal(t, pong, exec(), "DISCARD ends the watches")

	require.Equal(t, "+OK\r\n", c.do("WATCH", x))
	require.Equal(t, "+OK\r\n", c2.do("FLUSHDB"))
	assert.Equal(t, aborted, exec(), "a keyless write touches every watched key")

	require.Equal(t, "+OK\r\n", c2.do("SET", x, "text"))
	require.Equal(t, "+OK\r\n", c.do("WATCH", x))
	require.Contains(t, c2.do("LPUSH", x, "a"), "-WRONGTYPE")
	assert.Equal(t, pong, exec(), "a write that failed changed nothing")

	require.Equal(t, "+OK\r\n", c.do("WATCH", x))
	require.Equal(t, "+OK\r\n", c2.do("MULTI"))
	require.Equal(t, "+QUEUED\r\n", c2.do("INCRBY", y, "1"))
	require.Equal(t, "+QUEUED\r\n", c2.do("SET", x, "5"))
	require.Equal(t, "*2\r\n:1\r\n+OK\r\n", c2.do("EXEC"), "FLUSHDB emptied y")
	assert.Equal(t, aborted, exec(), "a write inside another transaction")

	slot := strconv.Itoa(hashSlot([]byte(theirs)))
	assert.Equal(t, "-MOVED "+slot+" "+other.Addr()+"\r\n", c.do("WATCH", theirs), "WATCH passes the cluster checks")
	assert.Equal(t, "-CROSSSLOT Attempted to access keys that don't hash to the same slot\r\n", c.do("WATCH", x, theirs))
	assert.Equal(t, "-ERR wrong number of arguments for 'watch' command\r\n", c.do("WATCH"))

	// A closed connection's watches go away.
	c3 := ntDial(t, me.Addr())
	require.Equal(t, "+OK\r\n", c3.do("WATCH", x, y))
	require.NoError(t, c3.conn.Close())
	require.Eventually(t, func() bool { return me.watches.keys.Load() == 0 }, 10*time.Second, time.Millisecond)
}

// Other connections' commands never run between a transaction's commands.
func TestTransactionIsAtomic(t *testing.T) {
	me, _, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	done := make(chan struct{})
	t.Cleanup(func() { <-done }) // registered first: runs once w is closed
	w := ntDial(t, me.Addr())
	go func() {
		defer close(done)
		for range 300 {
			if _, err := w.tryDo("MULTI"); err != nil {
				return
			}
			_, _ = w.tryDo("INCR", k)
			_, _ = w.tryDo("INCR", k)
			if _, err := w.tryDo("EXEC"); err != nil {
				return
			}
		}
	}()
	reads := 0
	for running := true; running; reads++ {
		select {
		case <-done:
			running = false
		default:
		}
		reply := c.do("GET", k)
		if reply == "$-1\r\n" {
			continue
		}
		n, err := strconv.Atoi(strings.Split(reply, "\r\n")[1])
		require.NoError(t, err, reply)
		require.Zero(t, n%2, "GET saw a transaction half done: %q", reply)
	}
	assert.Equal(t, ntBulk("600"), c.do("GET", k))
	t.Logf("%d reads", reads)
}

// Queue-time checks see a failover's write pause and its redirect; EXEC
// checks every queued command again (Kvrocks runs the queue through
// ExecuteCommands), so a change between queueing and EXEC shows inside
// EXEC's array.
func TestTransactionAgainstFailoverStates(t *testing.T) {
	me, other, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	slot := strconv.Itoa(hashSlot([]byte(k)))
	const tryAgain = "-TRYAGAIN Failover in progress\r\n"

	me.failover.state.Store(failoverPauseWrite)
	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	assert.Equal(t, "+QUEUED\r\n", c.do("GET", k), "reads pass the pause")
	assert.Equal(t, tryAgain, c.do("SET", k, "v"))
	assert.Equal(t, execAbort, c.do("EXEC"))

	me.failover.state.Store(failoverNone)
	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	require.Equal(t, "+QUEUED\r\n", c.do("SET", k, "v"))
	require.Equal(t, "+QUEUED\r\n", c.do("GET", k))
	me.failover.state.Store(failoverWaitSync)
	assert.Equal(t, "*2\r\n"+tryAgain+"$-1\r\n", c.do("EXEC"), "the write is refused at EXEC, the read runs")

	me.failover.state.Store(failoverNone)
	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	require.Equal(t, "+QUEUED\r\n", c.do("SET", k, "v"))
	me.viewMu.Lock()
	v := *me.view.Load()
	v.migratedTo = other.Addr()
	me.view.Store(&v)
	me.viewMu.Unlock()
	me.failover.state.Store(failoverSuccess)
	moved := "-MOVED " + slot + " " + other.Addr() + "\r\n"
	assert.Equal(t, "*1\r\n"+moved, c.do("EXEC"), "the slot moved after SET was queued")
	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	assert.Equal(t, moved, c.do("GET", k), "after success reads are moved too")
	assert.Equal(t, moved, c.do("SET", k, "v"))
	assert.Equal(t, execAbort, c.do("EXEC"))
}

// A CLIENT PAUSE sent inside a transaction takes effect after it: it does not
// wait for the transaction holding the write gate.
func TestClientPauseInsideTransaction(t *testing.T) {
	_, _, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	assert.Equal(t, "*4\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n", ntMulti(t, c,
		[]string{"SET", k, "1"}, []string{"CLIENT", "PAUSE", "1", "WRITE"},
		[]string{"SET", k, "2"}, []string{"CLIENT", "UNPAUSE"}))
	assert.Equal(t, ntBulk("2"), c.do("GET", k))
}

func TestTransactionWaitsOutClientPauseWrite(t *testing.T) {
	ntSkipShort(t)
	me, _, admin := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	c := ntDial(t, me.Addr())
	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	require.Equal(t, "+QUEUED\r\n", c.do("SET", k, "v"))
	require.Equal(t, "+QUEUED\r\n", c.do("GET", k))
	require.Equal(t, "+OK\r\n", admin.do("CLIENT", "PAUSE", "100000", "WRITE"))

	exec := make(chan string, 1)
	go func() {
		reply, err := c.tryDo("EXEC")
		if err != nil {
			reply = "error: " + err.Error()
		}
		exec <- reply
	}()
	queued := ntDial(t, me.Addr())
	require.Equal(t, "+OK\r\n", queued.do("MULTI"))
	plainWrite := ntBlocked(t, me.Addr(), "SET", k, "w")
	reads := ntDial(t, me.Addr())
	assert.Equal(t, "*1\r\n$-1\r\n", ntMulti(t, reads, []string{"GET", k}), "a read-only transaction runs")
	assert.Never(t, func() bool { return len(exec)+len(plainWrite) > 0 }, 200*time.Millisecond, 10*time.Millisecond,
		"EXEC of a transaction that writes waits, as a write")
	queued.send("SET", k, "q")
	require.Equal(t, "+OK\r\n", admin.do("CLIENT", "UNPAUSE"))
	select {
	case reply := <-exec:
		assert.Equal(t, "*2\r\n+OK\r\n$1\r\nv\r\n", reply)
	case <-time.After(10 * time.Second):
		t.Fatal("EXEC never resumed after UNPAUSE")
	}
	assert.Equal(t, "+QUEUED\r\n", queued.read(), "a write waited for the pause before being queued")
	assert.Equal(t, "+OK\r\n", <-plainWrite)
}

func TestTransactionReplicatesInOrder(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "*4\r\n+OK\r\n:2\r\n:2\r\n:1\r\n", ntMulti(t, m,
		[]string{"SET", "{t}a", "1"}, []string{"INCR", "{t}a"}, []string{"RPUSH", "{t}l", "x", "y"},
		[]string{"DEL", "{t}l"}))
	ntWaitCaughtUp(t, s.master, s.replicas[0])
	r := ntDial(t, s.replicas[0].Addr())
	require.Equal(t, "+OK\r\n", r.do("READONLY"))
	assert.Equal(t, "*2\r\n$1\r\n2\r\n:0\r\n", ntMulti(t, r, []string{"GET", "{t}a"}, []string{"EXISTS", "{t}l"}))
}

// The same interplay on a real CLUSTERX FAILOVER: TRYAGAIN at queue time and
// inside EXEC during its write pause, MOVED at queue time after its success,
// and the new master serves transactions on the slots it took over.
func TestTransactionAcrossClusterxFailover(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{ReplDelay: 300 * time.Millisecond})
	const k = "{t}k"
	slot := strconv.Itoa(hashSlot([]byte(k)))
	atPause, resume := make(chan struct{}), make(chan struct{})
	set := mustLookup(t, "set")
	// Just before the pause: a write the replica needs ReplDelay to apply
	// keeps the pause on for that long.
	s.master.beforePauseWrite = func() {
		s.master.Keyspace().Exec(nil, set, [][]byte{[]byte("SET"), []byte("{t}last"), []byte("1")})
		close(atPause)
		<-resume
	}
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "+OK\r\n", m.do("CLUSTERX", "FAILOVER", ntID('b'), "2000"))
	select {
	case <-atPause:
	case <-time.After(10 * time.Second):
		t.Fatal("the failover never reached its pause")
	}
	require.Equal(t, "+OK\r\n", m.do("MULTI"))
	require.Equal(t, "+QUEUED\r\n", m.do("SET", k, "before"))
	close(resume)
	require.Eventually(t, s.master.failover.blocksWrites, 10*time.Second, time.Millisecond)
	assert.Equal(t, "*1\r\n-TRYAGAIN Failover in progress\r\n", m.do("EXEC"))
	require.Equal(t, "+OK\r\n", m.do("MULTI"))
	assert.Equal(t, "-TRYAGAIN Failover in progress\r\n", m.do("SET", k, "during"))
	assert.Equal(t, execAbort, m.do("EXEC"))

	ntWaitFailoverState(t, ntClient(t, s.master.Addr(), ""), "success")
	require.Equal(t, "+OK\r\n", m.do("MULTI"))
	assert.Equal(t, "-MOVED "+slot+" "+s.replicas[0].Addr()+"\r\n", m.do("SET", k, "after"))
	assert.Equal(t, execAbort, m.do("EXEC"))
	r := ntDial(t, s.replicas[0].Addr())
	assert.Equal(t, "*2\r\n+OK\r\n$5\r\nafter\r\n", ntMulti(t, r, []string{"SET", k, "after"}, []string{"GET", k}))
}

// WATCH as Kvrocks has it, where Redis differs: Kvrocks marks watchers by
// write commands only (Server::UpdateWatchedKeysFromArgs after a command
// that did not fail), so FLUSHALL marks every watcher, a DEL that deleted
// nothing marks the key's, and a key expiring marks nobody. Redis 7 marks
// only existing keys on FLUSHALL and DEL, and aborts on a watched key that
// expired.
func TestWatchAsKvrocks(t *testing.T) {
	me, _, c := ntClusterOfTwo(t)
	tag := ntKeyInSlots(t, 0, 8191)
	x, missing := "{"+tag+"}x", "{"+tag+"}missing"
	c2 := ntDial(t, me.Addr())
	exec := func() string { return ntMulti(t, c, []string{"PING"}) }
	const pong, aborted = "*1\r\n+PONG\r\n", "$-1\r\n"

	require.Equal(t, "+OK\r\n", c.do("WATCH", missing))
	require.Equal(t, "+OK\r\n", c2.do("FLUSHALL"))
	assert.Equal(t, aborted, exec(), "FLUSHALL marks a watcher of a key that does not exist")

	require.Equal(t, "+OK\r\n", c.do("WATCH", missing))
	require.Equal(t, ":0\r\n", c2.do("DEL", missing))
	assert.Equal(t, aborted, exec(), "a DEL that deleted nothing marks")

	require.Equal(t, "+OK\r\n", c2.do("SET", x, "1", "PX", "1"))
	require.Equal(t, "+OK\r\n", c.do("WATCH", x))
	require.Eventually(t, func() bool { return c2.do("EXISTS", x) == ":0\r\n" }, 10*time.Second, time.Millisecond)
	assert.Equal(t, pong, exec(), "a watched key that expired marks nobody")
}
