package kvsim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The cases of the graceful-failover pull request's suite (spec section 3).

func ntWaitFailoverState(t *testing.T, c *redis.Client, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return ntFailoverState(t, c) == want }, 15*time.Second, 5*time.Millisecond,
		"failover state never became %s (now %s)", want, ntFailoverState(t, c))
}

func TestFailoverBasicFlow(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntClient(t, s.master.Addr(), "")
	assert.Equal(t, "none", ntFailoverState(t, m), "state before any failover")
	for i := range 20 {
		require.NoError(t, m.Set(t.Context(), "k"+strconv.Itoa(i), i, 0).Err())
	}
	require.NoError(t, m.Do(t.Context(), "CLUSTERX", "FAILOVER", ntID('b')).Err())
	ntWaitFailoverState(t, m, "success")

	raw := ntDial(t, s.master.Addr())
	slot := strconv.Itoa(hashSlot([]byte("k1")))
	moved := "-MOVED " + slot + " " + s.replicas[0].Addr() + "\r\n"
	assert.Equal(t, moved, raw.do("SET", "k1", "x"))
	assert.Equal(t, moved, raw.do("GET", "k1"))
	assert.Equal(t, ntBulk("1"), ntDial(t, s.replicas[0].Addr()).do("GET", "k1"), "the replica serves the keys")
	assert.Equal(t, ntBulk("1"), raw.do("CLUSTERX", "VERSION"), "the version does not change")
	assert.Contains(t, raw.do("CLUSTER", "NODES"), "myself,master", "CLUSTER NODES still shows the old topology")
	assert.Equal(t, "-ERR Failover is already in progress\r\n", raw.do("CLUSTERX", "FAILOVER", ntID('b')),
		"success is sticky")
}

func TestFailoverCustomTimeout(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntClient(t, s.master.Addr(), "")
	require.NoError(t, m.Do(t.Context(), "CLUSTERX", "FAILOVER", ntID('b'), "5000").Err())
	ntWaitFailoverState(t, m, "success")
}

func TestFailoverArgumentErrors(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	assert.Equal(t, "-ERR wrong number of arguments\r\n", c.do("CLUSTERX", "FAILOVER"))
	assert.Equal(t, "-ERR wrong number of arguments\r\n", c.do("CLUSTERX", "FAILOVER", "a", "1", "2"))
	assert.Equal(t, "-ERR Invalid timeout\r\n", c.do("CLUSTERX", "FAILOVER", ntID('b'), "soon"))
	assert.Equal(t, "-ERR timeout is negative\r\n", c.do("CLUSTERX", "FAILOVER", ntID('b'), "-1"))
}

func TestFailoverUnknownNodeFails(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntClient(t, s.master.Addr(), "")
	require.Equal(t, "OK", m.Do(t.Context(), "CLUSTERX", "FAILOVER", ntID('x')).Val())
	ntWaitFailoverState(t, m, "failed")
	assert.Equal(t, "OK", m.Set(t.Context(), "k", "v", 0).Val(), "failed unblocks writes")

	// Restart after a failure.
	require.Equal(t, "OK", m.Do(t.Context(), "CLUSTERX", "FAILOVER", ntID('b')).Val())
	ntWaitFailoverState(t, m, "success")
}

func TestFailoverToAMasterFails(t *testing.T) {
	ntSkipShort(t)
	me, _, _ := ntClusterOfTwo(t)
	m := ntClient(t, me.Addr(), "")
	require.Equal(t, "OK", m.Do(t.Context(), "CLUSTERX", "FAILOVER", ntID('b')).Val())
	ntWaitFailoverState(t, m, "failed")
}

func TestFailoverReplicaNotConnectedFails(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	s.replicas[0].Kill()
	m := ntClient(t, s.master.Addr(), "")
	require.Eventually(t, func() bool { return ntInfoField(t, m, "replication", "connected_slaves") == "0" },
		10*time.Second, 5*time.Millisecond)
	require.Equal(t, "OK", m.Do(t.Context(), "CLUSTERX", "FAILOVER", ntID('b')).Val())
	ntWaitFailoverState(t, m, "failed")
}

func TestFailoverTimeoutZeroAfterWritesFails(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntClient(t, s.master.Addr(), "")
	for i := range 100 {
		require.NoError(t, m.Set(t.Context(), "k"+strconv.Itoa(i), i, 0).Err())
	}
	require.Equal(t, "OK", m.Do(t.Context(), "CLUSTERX", "FAILOVER", ntID('b'), "0").Val())
	ntWaitFailoverState(t, m, "failed")
}

func TestFailoverWaitSyncTimeoutFails(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	// Once check_slave passed, a write lands that the replica, killed, never acks.
	s.master.beforePauseWrite = func() {
		s.master.Keyspace().Exec(nil, mustLookup(t, "set"), [][]byte{[]byte("set"), []byte("late"), []byte("v")})
		s.replicas[0].Kill()
	}
	m := ntClient(t, s.master.Addr(), "")
	require.Equal(t, "OK", m.Do(t.Context(), "CLUSTERX", "FAILOVER", ntID('b'), "300").Val())
	ntWaitFailoverState(t, m, "failed")
	assert.Equal(t, "OK", m.Set(t.Context(), "k", "v", 0).Val(), "failed unblocks writes")
}

func TestFailoverWhileRunningIsRefused(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "+OK\r\n", m.do("CLUSTERX", "FAILOVER", ntID('b'), "10000")) // samples for 3 s
	assert.Equal(t, "-ERR Failover is already in progress\r\n", m.do("CLUSTERX", "FAILOVER", ntID('b')))
}

func TestFailoverPausesWritesNotReads(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{ReplDelay: 200 * time.Millisecond})
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "+OK\r\n", m.do("SET", "k", "v"))
	ntWaitCaughtUp(t, s.master, s.replicas[0])
	// Writes during the sample keep the lag closable but non-zero at the pause.
	stop := make(chan struct{})
	done := make(chan struct{})
	w := ntDial(t, s.master.Addr())
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if reply, err := w.tryDo("SET", "w"+strconv.Itoa(i), "v"); err != nil || reply != "+OK\r\n" {
				return // paused or moved
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); <-done }()
	require.Equal(t, "+OK\r\n", m.do("CLUSTERX", "FAILOVER", ntID('b'), "5000"))
	sawTryAgain, sawRead := false, false
	require.Eventually(t, func() bool {
		if s.master.failover.state.Load() == failoverSuccess {
			return true
		}
		if reply := m.do("SET", "k", "v2"); reply == "-TRYAGAIN Failover in progress\r\n" {
			sawTryAgain = true
			sawRead = sawRead || m.do("GET", "k") == ntBulk("v2")
		}
		return false
	}, 15*time.Second, time.Millisecond)
	assert.True(t, sawTryAgain, "writes during the pause get TRYAGAIN")
	assert.True(t, sawRead, "reads are served during the pause")
	slot := strconv.Itoa(hashSlot([]byte("k")))
	assert.Equal(t, "-MOVED "+slot+" "+s.replicas[0].Addr()+"\r\n", m.do("SET", "k", "v3"))
}

func TestFailoverWithAuth(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{Password: "pw"})
	m := ntClient(t, s.master.Addr(), "pw")
	require.NoError(t, m.Set(t.Context(), "k", "v", 0).Err())
	require.Equal(t, "OK", m.Do(t.Context(), "CLUSTERX", "FAILOVER", ntID('b')).Val())
	ntWaitFailoverState(t, m, "success")
	assert.Equal(t, "v", ntClient(t, s.replicas[0].Addr(), "pw").Get(t.Context(), "k").Val())
}

func TestTakeoverByHandLeavesMasterWritable(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	assert.Equal(t, "+OK\r\n", ntDial(t, s.replicas[0].Addr()).do("CLUSTERX", "TAKEOVER"))
	m := ntDial(t, s.master.Addr())
	assert.Equal(t, "+OK\r\n", m.do("SET", "k", "v"))
	assert.Contains(t, m.do("CLUSTER", "INFO"), "cluster_failover_state:none\r\n")
}

func TestFailoverKeepsDataOfEveryType(t *testing.T) {
	ntSkipShort(t)
	for _, name := range []string{"hset", "rpush", "sadd", "zadd", "hgetall", "lrange", "smembers", "zrange"} {
		if !mustLookupOK(name) {
			t.Skipf("the keyspace does not implement %s yet", name)
		}
	}
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "+OK\r\n", m.do("SET", "s", "v"))
	require.Equal(t, ":1\r\n", m.do("HSET", "h", "f", "v"))
	require.Equal(t, ":2\r\n", m.do("RPUSH", "l", "a", "b"))
	require.Equal(t, ":1\r\n", m.do("SADD", "set", "m"))
	require.Equal(t, ":1\r\n", m.do("ZADD", "z", "1.5", "m"))
	require.Equal(t, "+OK\r\n", m.do("CLUSTERX", "FAILOVER", ntID('b')))
	ntWaitFailoverState(t, ntClient(t, s.master.Addr(), ""), "success")
	r := ntDial(t, s.replicas[0].Addr())
	assert.Equal(t, ntBulk("v"), r.do("GET", "s"))
	assert.Equal(t, "*2\r\n"+ntBulk("f")+ntBulk("v"), r.do("HGETALL", "h"))
	assert.Equal(t, "*2\r\n"+ntBulk("a")+ntBulk("b"), r.do("LRANGE", "l", "0", "-1"))
	assert.Equal(t, "*1\r\n"+ntBulk("m"), r.do("SMEMBERS", "set"))
	assert.Equal(t, "*2\r\n"+ntBulk("m")+ntBulk("1.5"), r.do("ZRANGE", "z", "0", "-1", "WITHSCORES"))
}

// TestNoWriteAcknowledgedAcrossFailoverSwitch: writers hammer the master with
// distinct keys while CLUSTERX FAILOVER runs to success. Every +OK of the old
// master must already be on the new master when the writers have seen MOVED:
// wait_sync covered everything up to the target sequence, so a write the old
// master acknowledged after recording it, or after the switch, would be one
// the takeover did not wait for. The newest acknowledgements are checked
// first, so the replication delay still holds such a late write back.
func TestNoWriteAcknowledgedAcrossFailoverSwitch(t *testing.T) {
	ntSkipShort(t)
	const writers = 4
	s := ntStartShard(t, 1, NodeConfig{ReplDelay: 10 * time.Millisecond})

	type ack struct {
		key   string
		order int64 // position among every writer's acknowledgements
	}
	var (
		ackCount atomic.Int64
		acks     [writers][]ack
		problems = make(chan string, writers)
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	// Registered before the dials, so the connections close first and
	// unblock any writer still waiting for a reply.
	t.Cleanup(func() { close(stop); wg.Wait() })
	for w := range writers {
		c := ntDial(t, s.master.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := "w" + strconv.Itoa(w) + ":" + strconv.Itoa(i)
				reply, err := c.tryDo("SET", key, key)
				switch {
				case err != nil:
					problems <- fmt.Sprintf("writer %d: %v", w, err)
					return
				case reply == "+OK\r\n":
					acks[w] = append(acks[w], ack{key, ackCount.Add(1)})
				case reply == "-TRYAGAIN Failover in progress\r\n":
				case strings.HasPrefix(reply, "-MOVED "):
					return // the switch is behind this writer
				default:
					problems <- fmt.Sprintf("writer %d: SET %s replied %q", w, key, reply)
					return
				}
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	require.Eventually(t, func() bool { return ackCount.Load() >= 100 }, 10*time.Second, time.Millisecond,
		"the writers never got going")
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "+OK\r\n", m.do("CLUSTERX", "FAILOVER", ntID('b')))
	select {
	case <-writersDone:
	case <-time.After(20 * time.Second):
		require.Fail(t, "writers still running", "failover state %s", s.master.failover.stateName())
	}
	close(problems)
	for p := range problems {
		assert.Fail(t, p)
	}
	require.Equal(t, "success", s.master.failover.stateName())

	var all []ack
	for _, list := range acks {
		all = append(all, list...)
	}
	slices.SortFunc(all, func(a, b ack) int { return int(b.order - a.order) })
	r := ntDial(t, s.replicas[0].Addr())
	var lost []string
	const batch = 100
	for start := 0; start < len(all); start += batch {
		chunk := all[start:min(start+batch, len(all))]
		for _, a := range chunk {
			r.send("GET", a.key)
		}
		for _, a := range chunk {
			if got := r.read(); got != ntBulk(a.key) {
				lost = append(lost, a.key+" -> "+strings.TrimSpace(got))
			}
		}
	}
	assert.Empty(t, lost, "of %d writes acknowledged by the old master, these are not on the new one", len(all))
}
