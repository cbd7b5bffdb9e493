package proxy

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
)

// txScripts are transactions whose every reply, queue-time errors and
// EXECABORT included, must be Redis' own through the proxy. Keys share one
// hash tag: the proxy's CROSSSLOT check is not Redis' single-node answer.
var txScripts = map[string][][]string{
	"errors at queue time": {
		{"MULTI"}, {"SET", "{t}k", "v"}, {"INCR", "{t}k"}, {"FOO"}, {"EXEC"}, {"GET", "{t}k"},
	},
	"wrong arity": {{"MULTI"}, {"SET", "{t}k"}, {"GET", "{t}k"}, {"EXEC"}},
	"runtime error inside EXEC": {
		{"MULTI"}, {"SET", "{t}s", "v"}, {"INCR", "{t}s"}, {"GET", "{t}s"}, {"EXEC"},
	},
	"without MULTI":  {{"EXEC"}, {"DISCARD"}},
	"nested":         {{"MULTI"}, {"MULTI"}, {"SET", "{t}n", "1"}, {"EXEC"}},
	"WATCH in MULTI": {{"MULTI"}, {"SET", "{t}w", "1"}, {"WATCH", "{t}w"}, {"EXEC"}},
	"DISCARD":        {{"MULTI"}, {"SET", "{t}d", "1"}, {"DISCARD"}, {"GET", "{t}d"}, {"EXEC"}},
	"keyless first":  {{"MULTI"}, {"PING"}, {"ECHO", "x"}, {"SET", "{t}e", "1"}, {"PING"}, {"EXEC"}},
	"WATCH kept": {
		{"SET", "{t}x", "1"}, {"WATCH", "{t}x"}, {"MULTI"}, {"INCR", "{t}x"}, {"EXEC"}, {"GET", "{t}x"},
	},
	"empty": {{"MULTI"}, {"EXEC"}},
}

// Each script runs one command at a time and then as one pipeline, direct
// to a cluster node owning every slot and through the proxy: the replies
// must be equal byte for byte.
func TestTransactionRepliesAreRedis(t *testing.T) {
	cp := startClusterProxyWith(t, cluster.Options{Masters: 1}, nil)
	node := cp.cluster.Addrs()[0]
	for name, script := range txScripts {
		for _, pipelined := range []bool{false, true} {
			direct := runTxScript(t, dialResp(t, node), script, pipelined)
			proxied := runTxScript(t, dialResp(t, cp.addr), script, pipelined)
			assert.Equal(t, direct, proxied, "%s (pipelined %v)", name, pipelined)
		}
	}
}

// runTxScript runs script on c (after FLUSHALL, so both runs start alike)
// and returns its replies.
func runTxScript(t *testing.T, c *respConn, script [][]string, pipelined bool) []string {
	t.Helper()
	require.Equal(t, "+OK\r\n", c.do("FLUSHALL"))
	var replies []string
	if pipelined {
		var raw strings.Builder
		for _, cmd := range script {
			raw.WriteString(encodeCommand(cmd...))
		}
		c.send(raw.String())
		for range script {
			replies = append(replies, c.read())
		}
		return replies
	}
	for _, cmd := range script {
		replies = append(replies, c.do(cmd...))
	}
	return replies
}

// A command refused at queue time by the server (BUSY while a script runs)
// gets the server's error and EXEC the server's EXECABORT, though the
// script is killed before EXEC.
func TestTransactionGetsTheServersBusy(t *testing.T) {
	cp := startClusterProxyWith(t, cluster.Options{Masters: 1, ExtraConfig: []string{"busy-reply-threshold 50"}}, nil)
	node := cp.cluster.Addrs()[0]
	scripted := dialResp(t, node)
	scripted.send(encodeCommand("EVAL", "while true do end", "0"))
	killer := dialResp(t, node)
	t.Cleanup(func() { killer.do("SCRIPT", "KILL") })
	require.Eventually(t, func() bool {
		return strings.HasPrefix(killer.do("SET", "probe", "1"), "-BUSY ")
	}, 5e9, 1e7, "the script runs")

	c := dialResp(t, cp.addr)
	require.Equal(t, "+OK\r\n", c.do("MULTI"))
	assert.True(t, strings.HasPrefix(c.do("SET", "k", "v"), "-BUSY "), "the server's BUSY")
	require.Equal(t, "+OK\r\n", killer.do("SCRIPT", "KILL"))
	assert.True(t, strings.HasPrefix(scripted.read(), "-ERR Script killed"))
	assert.Equal(t, "-"+errExecAbort+"\r\n", c.do("EXEC"))
	assert.Equal(t, "$-1\r\n", c.do("GET", "k"), "nothing ran")
}

// Clients that send each command of a transaction and wait for its reply
// (so the queue reaches the old master before EXEC) see no error across a
// real Redis failover: a queued command the old master refuses is replayed
// with EXEC on the new one, and the counter counts each successful EXEC
// once.
func TestInteractiveTransactionsAcrossARedisFailover(t *testing.T) {
	cp := startClusterProxy(t)
	const key = "{fi}counter"
	master := cp.cluster.MasterForKey(key)
	replica := cp.cluster.ReplicasOf(master.ID)[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var stop atomic.Bool
	var done atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range 3 {
		c := dialResp(t, cp.addr)
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				var replies []string
				for _, cmd := range [][]string{{"MULTI"}, {"INCR", key}, {"EXEC"}} {
					c.send(encodeCommand(cmd...))
					reply, err := c.tryRead()
					if err != nil {
						reply = "read error: " + err.Error()
					}
					replies = append(replies, reply)
				}
				if replies[0] != "+OK\r\n" || replies[1] != "+QUEUED\r\n" || !strings.HasPrefix(replies[2], "*1\r\n:") {
					mu.Lock()
					failures = append(failures, strings.Join(replies, " | "))
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		})
	}
	require.Eventually(t, func() bool { return done.Load() >= 50 }, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, cp.cluster.Failover(ctx, replica))
	after := done.Load()
	assert.Eventually(t, func() bool { return done.Load() >= after+50 }, 30*time.Second, 5*time.Millisecond,
		"transactions go on after the failover")
	stop.Store(true)
	wg.Wait()
	assert.Empty(t, failures, "no EXECABORT, MOVED or lost connection reaches a client")
	n, err := replica.Client().Get(ctx, key).Int64()
	require.NoError(t, err)
	assert.Equal(t, done.Load(), n, "the new master counted every successful EXEC once")
}
