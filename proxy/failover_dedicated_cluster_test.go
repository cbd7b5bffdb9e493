package proxy

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
	"kvproxy/internal/resp"
	"kvproxy/router"
)

var (
	_ DedicatedBackend = (*router.Router)(nil)
	_ WriteHold        = (*router.Router)(nil)
)

// blockedOn reads blocked_clients from n.
func blockedOn(t *testing.T, n *cluster.Node) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := n.Client().Info(ctx, "clients").Result()
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "blocked_clients:"); ok {
			return int(mustAtoi(t, v))
		}
	}
	return -1
}

// Real Redis Cluster, manual failover (the master pauses its writers, the
// replica takes over, the old master answers MOVED): transactions run in a
// loop through the proxy all along, plain ones (MULTI INCR EXEC) and
// optimistic ones (WATCH, GET, MULTI SET EXEC, again on a nil EXEC). Redis
// refuses the ones caught by the handover without running them (EXEC
// blocked by the pause then MOVED, queued commands MOVED, EXECABORT); the
// proxy resends exactly those, or aborts a WATCHed one as if its key
// changed. So every plain EXEC succeeds, and each counter counts each
// successful EXEC once: nothing ran twice, nothing was lost.
func TestTransactionsAcrossARedisFailover(t *testing.T) {
	cp := startClusterProxy(t)
	const plainKey, watchedKey = "{fo}plain", "{fo}watched"
	master := cp.cluster.MasterForKey(plainKey)
	replica := cp.cluster.ReplicasOf(master.ID)[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var stop atomic.Bool
	var plainDone, watchedDone, watchAborts atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(replies []string) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, strings.Join(replies, " | "))
	}
	// exchange sends raw and reads n replies.
	exchange := func(c *respConn, raw string, n int) []string {
		c.send(raw)
		var replies []string
		for range n {
			reply, err := c.tryRead()
			if err != nil {
				reply = "read error: " + err.Error()
			}
			replies = append(replies, reply)
		}
		return replies
	}
	var wg sync.WaitGroup
	for range 3 {
		c := dialResp(t, cp.addr)
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				r := exchange(c, encodeCommand("MULTI")+encodeCommand("INCR", plainKey)+encodeCommand("EXEC"), 3)
				if r[0] != "+OK\r\n" || r[1] != "+QUEUED\r\n" || !strings.HasPrefix(r[2], "*1\r\n:") {
					fail(r)
					return
				}
				plainDone.Add(1)
			}
		})
	}
	for range 2 {
		c := dialResp(t, cp.addr)
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				r := exchange(c, encodeCommand("WATCH", watchedKey)+encodeCommand("GET", watchedKey), 2)
				if r[0] != "+OK\r\n" || (r[1] != "$-1\r\n" && !strings.HasPrefix(r[1], "$")) {
					fail(r)
					return
				}
				n, ok := int64(0), true
				if r[1] != "$-1\r\n" {
					n, ok = resp.ParseInt([]byte(strings.Split(r[1], "\r\n")[1]))
				}
				if !ok {
					fail(r)
					return
				}
				r = exchange(c, encodeCommand("MULTI")+encodeCommand("SET", watchedKey, strconv.FormatInt(n+1, 10))+encodeCommand("EXEC"), 3)
				switch {
				case r[0] != "+OK\r\n" || r[1] != "+QUEUED\r\n":
					fail(r)
					return
				case r[2] == "*1\r\n+OK\r\n":
					watchedDone.Add(1)
				case r[2] == "*-1\r\n":
					watchAborts.Add(1)
				default:
					fail(r)
					return
				}
			}
		})
	}
	require.Eventually(t, func() bool { return plainDone.Load() >= 50 && watchedDone.Load() >= 20 }, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, cp.cluster.Failover(ctx, replica))
	plainAfter, watchedAfter := plainDone.Load(), watchedDone.Load()
	// On failure the test goes on, so that what the clients saw is reported.
	if !assert.Eventually(t, func() bool { return plainDone.Load() >= plainAfter+50 && watchedDone.Load() >= watchedAfter+20 },
		30*time.Second, 5*time.Millisecond, "transactions go on after the failover") {
		t.Logf("since the failover: plain EXECs %d, optimistic %d, aborted optimistic %d", plainDone.Load()-plainAfter,
			watchedDone.Load()-watchedAfter, watchAborts.Load())
	}
	stop.Store(true)
	wg.Wait()

	assert.Empty(t, failures, "no EXECABORT, MOVED or lost connection reaches a client")
	plain, err := replica.Client().Get(ctx, plainKey).Int64()
	require.NoError(t, err)
	assert.Equal(t, plainDone.Load(), plain, "the new master counted every successful EXEC once")
	watched, err := replica.Client().Get(ctx, watchedKey).Int64()
	require.NoError(t, err)
	assert.Equal(t, watchedDone.Load(), watched, "every successful optimistic EXEC counted once")
	t.Logf("plain EXECs: %d, optimistic: %d, aborted optimistic: %d", plainDone.Load(), watchedDone.Load(), watchAborts.Load())
}

// A BLPOP blocked on the master when it fails over is unblocked by Redis
// without popping (the old master answers MOVED, or UNBLOCKED as it turns
// replica): the proxy resends it to the new master, where an LPUSH wakes it.
// One sent while the master pauses its writers waits there and then runs on
// the new master too. Afterwards BLPOP works as ever.
func TestBlockingCommandsAcrossARedisFailover(t *testing.T) {
	cp := startClusterProxy(t)
	const inFlight, duringPause = "{fo}inflight", "{fo}paused"
	master := cp.cluster.MasterForKey(inFlight)
	replica := cp.cluster.ReplicasOf(master.ID)[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	blocked := dialResp(t, cp.addr)
	blocked.send(encodeCommand("BLPOP", inFlight, "20"))
	require.Eventually(t, func() bool { return blockedOn(t, master) == 1 }, 10*time.Second, 5*time.Millisecond)

	// Writers on the master pause (as a manual failover pauses them) past
	// the handover, so this BLPOP reaches the old master during a pause.
	require.NoError(t, master.Client().Do(ctx, "CLIENT", "PAUSE", "1500", "WRITE").Err())
	paused := dialResp(t, cp.addr)
	paused.send(encodeCommand("BLPOP", duringPause, "20"))
	require.NoError(t, cp.cluster.Failover(ctx, replica))

	require.Eventually(t, func() bool { return blockedOn(t, replica) == 2 }, 10*time.Second, 5*time.Millisecond,
		"both BLPOPs wait on the new master")
	pusher := dialResp(t, cp.addr)
	assert.Equal(t, ":1\r\n", pusher.do("LPUSH", inFlight, "a"))
	assert.Equal(t, ":1\r\n", pusher.do("LPUSH", duringPause, "b"))
	assert.Equal(t, "*2\r\n$"+strconv.Itoa(len(inFlight))+"\r\n"+inFlight+"\r\n$1\r\na\r\n", blocked.read())
	assert.Equal(t, "*2\r\n$"+strconv.Itoa(len(duringPause))+"\r\n"+duringPause+"\r\n$1\r\nb\r\n", paused.read())

	assert.Equal(t, ":1\r\n", pusher.do("RPUSH", inFlight, "c"))
	assert.Equal(t, "*2\r\n$"+strconv.Itoa(len(inFlight))+"\r\n"+inFlight+"\r\n$1\r\nc\r\n", blocked.do("BLPOP", inFlight, "1"))
}
