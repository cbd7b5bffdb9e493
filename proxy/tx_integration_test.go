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
	"kvproxy/router"
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
	cp := startClusterProxyWith(t, oneMaster, nil)
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

// A pipeline holding MULTI ... EXEC in one write gets the server's
// queue-time replies too (OOM at maxmemory: Redis refuses every command
// queued then) and the server's EXECABORT, byte for byte as straight to Redis: the
// commands go with EXEC in one write, and their replies are passed on.
func TestPipelinedTransactionGetsTheServersQueueTimeErrors(t *testing.T) {
	cp := startClusterProxyWith(t, oneMaster, nil)
	node := dialResp(t, cp.cluster.Addrs()[0])
	require.Equal(t, "+OK\r\n", node.do("CONFIG", "SET", "maxmemory", "1"))
	t.Cleanup(func() { node.do("CONFIG", "SET", "maxmemory", "0") })
	pipeline := encodeCommand("MULTI") + encodeCommand("SET", "{t}k", "v") + encodeCommand("GET", "{t}k") +
		encodeCommand("EXEC")
	replies := func(c *respConn) []string {
		c.send(pipeline)
		return []string{c.read(), c.read(), c.read(), c.read()}
	}
	direct := replies(dialResp(t, cp.cluster.Addrs()[0]))
	require.True(t, strings.HasPrefix(direct[1], "-OOM "), "Redis refuses the SET at queue time: %q", direct)
	require.True(t, strings.HasPrefix(direct[3], "-EXECABORT "), "%q", direct)
	proxied := dialResp(t, cp.addr)
	assert.Equal(t, direct, replies(proxied))
	require.Equal(t, "+OK\r\n", node.do("CONFIG", "SET", "maxmemory", "0"))
	assert.Equal(t, "$-1\r\n", proxied.do("GET", "{t}k"), "nothing ran")
	assert.Equal(t, []string{"+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n"}, replies3(proxied,
		encodeCommand("MULTI")+encodeCommand("SET", "{t}k", "v")+encodeCommand("EXEC")), "the server's QUEUED")
}

// replies3 sends raw and reads three replies.
func replies3(c *respConn, raw string) []string {
	c.send(raw)
	return []string{c.read(), c.read(), c.read()}
}

// interactiveTransactions runs MULTI, INCR key, EXEC in a loop on 3
// clients, each command sent once the previous one is answered (so the
// queue reaches the master before EXEC); a client stops at the first
// transaction that does not succeed, which is recorded in failures.
type interactiveTransactions struct {
	stop     atomic.Bool
	done     atomic.Int64
	mu       sync.Mutex
	failures []string
	wg       sync.WaitGroup
}

func startInteractiveTransactions(t *testing.T, addr, key string) *interactiveTransactions {
	it := &interactiveTransactions{}
	for range 3 {
		c := dialResp(t, addr)
		it.wg.Go(func() {
			for !it.stop.Load() {
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
					it.mu.Lock()
					it.failures = append(it.failures, strings.Join(replies, " | "))
					it.mu.Unlock()
					return
				}
				it.done.Add(1)
			}
		})
	}
	t.Cleanup(it.finish)
	return it
}

// waitFor waits until n more transactions succeeded.
func (it *interactiveTransactions) waitFor(t *testing.T, n int64, msg string) {
	t.Helper()
	from := it.done.Load()
	assert.Eventually(t, func() bool { return it.done.Load() >= from+n }, 30*time.Second, 5*time.Millisecond, msg)
}

func (it *interactiveTransactions) finish() {
	it.stop.Store(true)
	it.wg.Wait()
}

// Clients that send each command of a transaction and wait for its reply
// see no error across a real Redis failover: a queued command the old
// master refuses is replayed with EXEC on the new one, and the counter
// counts each successful EXEC once.
func TestInteractiveTransactionsAcrossARedisFailover(t *testing.T) {
	cp := startClusterProxy(t)
	const key = "{fi}counter"
	master := cp.cluster.MasterForKey(key)
	replica := cp.cluster.ReplicasOf(master.ID)[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	it := startInteractiveTransactions(t, cp.addr, key)
	it.waitFor(t, 50, "transactions run")
	require.NoError(t, cp.cluster.Failover(ctx, replica))
	it.waitFor(t, 50, "transactions go on after the failover")
	it.finish()
	assert.Empty(t, it.failures, "no EXECABORT, MOVED or lost connection reaches a client")
	n, err := replica.Client().Get(ctx, key).Int64()
	require.NoError(t, err)
	assert.Equal(t, it.done.Load(), n, "the new master counted every successful EXEC once")
}

// The same across simulated Kvrocks failovers (PROXY FAILOVER there and
// back), where queued writes meet TRYAGAIN during the failover's pause.
func TestInteractiveTransactionsAcrossKvsimFailovers(t *testing.T) {
	_, addr := startFailoverProxy(t, true)
	key := ""
	for i := 0; key == ""; i++ {
		if k := "counter" + strconv.Itoa(i); router.Slot([]byte(k)) <= 5460 {
			key = k // shard 0's
		}
	}
	c := dialResp(t, addr)
	it := startInteractiveTransactions(t, addr, key)
	it.waitFor(t, 50, "transactions run")
	for range 2 {
		require.True(t, strings.HasPrefix(c.do("PROXY", "FAILOVER", "0"), "+shard 0 failed over"))
		it.waitFor(t, 50, "transactions go on after the failover")
	}
	it.finish()
	assert.Empty(t, it.failures, "no EXECABORT, TRYAGAIN, MOVED or lost connection reaches a client")
	assert.Equal(t, "$"+strconv.Itoa(len(strconv.FormatInt(it.done.Load(), 10)))+"\r\n"+strconv.FormatInt(it.done.Load(), 10)+"\r\n",
		c.do("GET", key), "every successful EXEC counted once")
}
