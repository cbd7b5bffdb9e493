package proxy

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

var _ DedicatedBackend = (*router.Router)(nil)

// requireNoGoroutineLeak checks, when the test ends, that the goroutine
// count went back to what it was once the clients hung up, while the servers
// still run (their cleanups were registered earlier, so they run later).
func requireNoGoroutineLeak(t *testing.T, baseline int) {
	t.Helper()
	t.Cleanup(func() {
		// Eventually runs the condition on a goroutine of its own.
		assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= baseline+1 }, 10*time.Second, 20*time.Millisecond,
			"goroutines left behind")
	})
}

// runBoth sends the same commands through the proxy, then straight to a
// master, and returns both reply sequences; the commands must leave no keys.
func runBoth(t *testing.T, proxy, direct *respConn, cmds [][]string) (viaProxy, viaNode []string) {
	t.Helper()
	for _, cmd := range cmds {
		viaProxy = append(viaProxy, proxy.do(cmd...))
	}
	for _, cmd := range cmds {
		viaNode = append(viaNode, direct.do(cmd...))
	}
	return viaProxy, viaNode
}

func TestTransactionsOnRealCluster(t *testing.T) {
	cp := startClusterProxy(t)
	requireNoGoroutineLeak(t, runtime.NumGoroutine())

	t.Run("replies are byte-identical to the owning node", func(t *testing.T) {
		p := dialResp(t, cp.addr)
		d := dialResp(t, cp.cluster.MasterForKey("{tx}").Addr)
		cmds := [][]string{
			{"EXEC"}, {"DISCARD"},
			{"MULTI"}, {"SET", "{tx}k", "v"}, {"INCR", "{tx}n"}, {"GET", "{tx}k"}, {"INCR", "{tx}k"},
			{"RPUSH", "{tx}l", "a", "b"}, {"LRANGE", "{tx}l", "0", "-1"}, {"MULTI"}, {"EXEC"},
			{"MULTI"}, {"SET", "{tx}k", "x"}, {"DISCARD"}, {"GET", "{tx}k"},
			{"MULTI"}, {"NOSUCHCMD", "a"}, {"SET", "{tx}k"}, {"GET", "{tx}k"}, {"EXEC"},
			{"MULTI"}, {"EXEC"},
			{"MULTI"}, {"WATCH", "{tx}k"}, {"DISCARD"},
			{"MULTI"}, {"MULTI"}, {"WATCH", "{tx}k"}, {"SET", "{tx}k", "w"}, {"UNWATCH"}, {"BLPOP", "{tx}l", "0"}, {"EXEC"},
			{"WATCH", "{tx}k"}, {"MULTI"}, {"GET", "{tx}k"}, {"EXEC"}, {"UNWATCH"}, {"EXEC"},
			{"DEL", "{tx}k", "{tx}n", "{tx}l"},
		}
		viaProxy, viaNode := runBoth(t, p, d, cmds)
		assert.Equal(t, viaNode, viaProxy)
	})

	t.Run("a WATCH conflict makes EXEC return nil", func(t *testing.T) {
		a := dialResp(t, cp.addr)
		b := dialResp(t, cp.addr)
		require.Equal(t, "+OK\r\n", a.do("WATCH", "{w}k"))
		require.Equal(t, "+OK\r\n", b.do("SET", "{w}k", "other"))
		assert.Equal(t, "+OK\r\n", a.do("MULTI"))
		assert.Equal(t, "+QUEUED\r\n", a.do("SET", "{w}k", "mine"))
		assert.Equal(t, "*-1\r\n", a.do("EXEC"))
		assert.Equal(t, "$5\r\nother\r\n", a.do("GET", "{w}k"))

		// Unchallenged, the same transaction runs.
		require.Equal(t, "+OK\r\n", a.do("WATCH", "{w}k"))
		assert.Equal(t, "+OK\r\n", a.do("MULTI"))
		assert.Equal(t, "+QUEUED\r\n", a.do("SET", "{w}k", "mine"))
		assert.Equal(t, "*1\r\n+OK\r\n", a.do("EXEC"))
		assert.Equal(t, "$4\r\nmine\r\n", b.do("GET", "{w}k"))
	})

	t.Run("a key of another slot aborts the transaction", func(t *testing.T) {
		c := dialResp(t, cp.addr)
		assert.Equal(t, "+OK\r\n", c.do("MULTI"))
		assert.Equal(t, "+QUEUED\r\n", c.do("SET", "{a}k", "1"))
		assert.Equal(t, "-"+errCrossSlot+"\r\n", c.do("SET", "{b}k", "1"))
		assert.Equal(t, "-"+errExecAbort+"\r\n", c.do("EXEC"))
		assert.Equal(t, "$-1\r\n", c.do("GET", "{a}k"))
		assert.Equal(t, "-"+errCrossSlot+"\r\n", c.do("WATCH", "{a}k", "{b}k"))
	})

	t.Run("a pipelined transaction keeps its order", func(t *testing.T) {
		c := dialResp(t, cp.addr)
		c.send(encodeCommand("SET", "{pipe}k", "1") + encodeCommand("MULTI") + encodeCommand("INCR", "{pipe}k") +
			encodeCommand("EXEC") + encodeCommand("GET", "{pipe}k"))
		for _, want := range []string{"+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*1\r\n:2\r\n", "$1\r\n2\r\n"} {
			assert.Equal(t, want, c.read())
		}
	})

	t.Run("go-redis TxPipelined and Watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client := goRedisClient(t, cp.addr)
		cmds, err := client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, "{gr}a", "1", 0)
			pipe.Incr(ctx, "{gr}a")
			return nil
		})
		require.NoError(t, err)
		require.Len(t, cmds, 2)
		assert.Equal(t, int64(2), cmds[1].(*redis.IntCmd).Val())
		err = client.Watch(ctx, func(tx *redis.Tx) error {
			n, err := tx.Get(ctx, "{gr}a").Int()
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Set(ctx, "{gr}a", n*10, 0)
				return nil
			})
			return err
		}, "{gr}a")
		require.NoError(t, err)
		assert.Equal(t, "20", client.Get(ctx, "{gr}a").Val())
	})
}

func TestBlockingCommandsOnRealCluster(t *testing.T) {
	cp := startClusterProxy(t)
	srv, capped := startProxy(t, cp.router, func(c *Config) { c.MaxBlockingConns = 1 })
	requireNoGoroutineLeak(t, runtime.NumGoroutine())

	t.Run("BLPOP is woken by another client's LPUSH; later commands wait", func(t *testing.T) {
		a := dialResp(t, cp.addr)
		b := dialResp(t, cp.addr)
		a.send(encodeCommand("SET", "{bl}x", "1") + encodeCommand("BLPOP", "{bl}list", "10") + encodeCommand("GET", "{bl}x"))
		assert.Equal(t, "+OK\r\n", a.read(), "the reply before the blocking command is not held back")
		require.Eventually(t, func() bool {
			return clientsBlocked(t, cp, "{bl}list") > 0
		}, 5*time.Second, 10*time.Millisecond)
		assert.Equal(t, ":1\r\n", b.do("LPUSH", "{bl}list", "hello"))
		assert.Equal(t, "*2\r\n$8\r\n{bl}list\r\n$5\r\nhello\r\n", a.read())
		assert.Equal(t, "$1\r\n1\r\n", a.read())
		assert.Equal(t, "*-1\r\n", a.do("BRPOP", "{bl}list", "0.05"), "a timeout passes through")
		assert.Equal(t, "*-1\r\n", a.do("XREAD", "BLOCK", "50", "STREAMS", "{bl}s", "$"))
		a.send(encodeCommand("XREAD", "COUNT", "1", "BLOCK", "5000", "STREAMS", "{bl}s", "$"))
		require.Eventually(t, func() bool { return clientsBlocked(t, cp, "{bl}s") > 0 }, 5*time.Second, 10*time.Millisecond)
		assert.Equal(t, "$3\r\n1-1\r\n", b.do("XADD", "{bl}s", "1-1", "f", "v"))
		assert.Equal(t, "*1\r\n*2\r\n$5\r\n{bl}s\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n", a.read())
		assert.Equal(t, "-"+errCrossSlot+"\r\n", a.do("BLPOP", "{a}l", "{b}l", "1"))
	})

	t.Run("past MaxBlockingConns blocking commands are refused", func(t *testing.T) {
		a := dialResp(t, capped)
		b := dialResp(t, capped)
		a.send(encodeCommand("BLPOP", "{cap}list", "0"))
		require.Eventually(t, func() bool { return len(srv.blockingSlots) == 1 }, 5*time.Second, 5*time.Millisecond)
		assert.Equal(t, "-"+errTooManyBlocking+"\r\n", b.do("BLPOP", "{cap}other", "0"))
		assert.Equal(t, ":1\r\n", b.do("RPUSH", "{cap}list", "v"))
		assert.Equal(t, "*2\r\n$9\r\n{cap}list\r\n$1\r\nv\r\n", a.read())
		require.Eventually(t, func() bool { return len(srv.blockingSlots) == 0 }, 5*time.Second, 5*time.Millisecond)
	})

	t.Run("a client hanging up ends its backend wait", func(t *testing.T) {
		a := dialResp(t, capped)
		a.send(encodeCommand("BLPOP", "{hang}list", "0"))
		require.Eventually(t, func() bool { return clientsBlocked(t, cp, "{hang}list") == 1 }, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, a.conn.Close())
		require.Eventually(t, func() bool { return len(srv.blockingSlots) == 0 }, 5*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { return clientsBlocked(t, cp, "{hang}list") == 0 }, 5*time.Second, 10*time.Millisecond)
	})

	t.Run("WAIT goes to the master of the latest command", func(t *testing.T) {
		c := dialResp(t, cp.addr)
		assert.Equal(t, "+OK\r\n", c.do("SET", "{wait}k", "v"))
		assert.Equal(t, ":1\r\n", c.do("WAIT", "1", "5000"))
	})
}

// clientsBlocked reads blocked_clients from the master owning key.
func clientsBlocked(t *testing.T, cp *clusterProxy, key string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := cp.cluster.MasterForKey(key).Client().Info(ctx, "clients").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "blocked_clients:"); ok {
			return int(mustAtoi(t, v))
		}
	}
	t.Fatal("no blocked_clients in INFO clients")
	return 0
}

func mustAtoi(t *testing.T, s string) int64 {
	n, ok := resp.ParseInt([]byte(s))
	require.True(t, ok, s)
	return n
}

func TestPubSubOnRealCluster(t *testing.T) {
	cp := startClusterProxy(t)
	requireNoGoroutineLeak(t, runtime.NumGoroutine())

	t.Run("a subscriber gets what another client publishes", func(t *testing.T) {
		sub := dialResp(t, cp.addr)
		pub := dialResp(t, cp.addr)
		assert.Equal(t, "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n", sub.do("SUBSCRIBE", "news"))
		assert.Equal(t, "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n", sub.do("PSUBSCRIBE", "n*"))
		assert.Equal(t, ":2\r\n", pub.do("PUBLISH", "news", "hi"))
		assert.Equal(t, "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n", sub.read())
		assert.Equal(t, "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n", sub.read())

		assert.Equal(t, "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
			sub.do("GET", "k"))
		assert.Equal(t, "*2\r\n$4\r\npong\r\n$0\r\n\r\n", sub.do("PING"))
		assert.Equal(t, "*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:1\r\n", sub.do("PUNSUBSCRIBE"))
		assert.Equal(t, "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n", sub.do("UNSUBSCRIBE"))
		// Out of subscriber mode: ordinary commands work again.
		assert.Equal(t, "$-1\r\n", sub.do("GET", "{ps}nothing"))
		assert.Equal(t, "+PONG\r\n", sub.do("PING"))
		assert.Equal(t, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n", sub.do("UNSUBSCRIBE"))
		assert.Equal(t, ":0\r\n", pub.do("PUBLISH", "news", "nobody"))
	})

	t.Run("SSUBSCRIBE gets SPUBLISH from the shard", func(t *testing.T) {
		sub := dialResp(t, cp.addr)
		pub := dialResp(t, cp.addr)
		assert.Equal(t, "*3\r\n$10\r\nssubscribe\r\n$7\r\n{s}chan\r\n:1\r\n", sub.do("SSUBSCRIBE", "{s}chan"))
		assert.Equal(t, "*3\r\n$9\r\nsubscribe\r\n$5\r\nplain\r\n:1\r\n", sub.do("SUBSCRIBE", "plain"))
		assert.Equal(t, ":1\r\n", pub.do("SPUBLISH", "{s}chan", "m"))
		assert.Equal(t, "*3\r\n$8\r\nsmessage\r\n$7\r\n{s}chan\r\n$1\r\nm\r\n", sub.read())
		assert.Equal(t, "-"+errCrossSlot+"\r\n", sub.do("SSUBSCRIBE", "{a}x", "{b}x"))
		assert.Equal(t, "*3\r\n$12\r\nsunsubscribe\r\n$7\r\n{s}chan\r\n:0\r\n", sub.do("SUNSUBSCRIBE"))
		assert.Equal(t, "*3\r\n$11\r\nunsubscribe\r\n$5\r\nplain\r\n:0\r\n", sub.do("UNSUBSCRIBE", "plain"))
		assert.Equal(t, ":0\r\n", pub.do("SPUBLISH", "{s}chan", "m"))
		assert.Equal(t, "+OK\r\n", sub.do("SET", "{s}k", "v"))
	})

	t.Run("pipelined commands keep their order across subscriber mode", func(t *testing.T) {
		c := dialResp(t, cp.addr)
		c.send(encodeCommand("SET", "{o}k", "1") + encodeCommand("SUBSCRIBE", "a", "b") + encodeCommand("PING", "x") +
			encodeCommand("UNSUBSCRIBE") + encodeCommand("GET", "{o}k"))
		for _, want := range []string{
			"+OK\r\n",
			"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
			"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
			"*2\r\n$4\r\npong\r\n$1\r\nx\r\n",
		} {
			assert.Equal(t, want, c.read())
		}
		// UNSUBSCRIBE without channels answers in the node's order.
		unsubs := []string{c.read(), c.read()}
		assert.ElementsMatch(t, []string{"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n", "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n"},
			[]string{unsubs[0][:len(unsubs[0])-4], unsubs[1][:len(unsubs[1])-4]})
		assert.Equal(t, "$1\r\n1\r\n", c.read())
	})

	t.Run("go-redis PubSub", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client := goRedisClient(t, cp.addr)
		ps := client.Subscribe(ctx, "events")
		defer func() { assert.NoError(t, ps.Close()) }()
		_, err := ps.Receive(ctx) // the subscription confirmation
		require.NoError(t, err)
		require.NoError(t, client.Publish(ctx, "events", "one").Err())
		msg, err := ps.ReceiveMessage(ctx)
		require.NoError(t, err)
		assert.Equal(t, "events", msg.Channel)
		assert.Equal(t, "one", msg.Payload)
		require.NoError(t, ps.PSubscribe(ctx, "ev*"))
		confirmation, err := ps.Receive(ctx)
		require.NoError(t, err)
		assert.Equal(t, &redis.Subscription{Kind: "psubscribe", Channel: "ev*", Count: 2}, confirmation)
		require.NoError(t, client.Publish(ctx, "events", "two").Err())
		require.NoError(t, ps.Ping(ctx, "hey"))
		var got []any
		for range 3 {
			m, err := ps.Receive(ctx)
			require.NoError(t, err)
			got = append(got, m)
		}
		assert.Equal(t, []any{
			&redis.Message{Channel: "events", Payload: "two"},
			&redis.Message{Channel: "events", Pattern: "ev*", Payload: "two"},
			&redis.Pong{Payload: "hey"},
		}, got)
	})

	t.Run("a subscriber hanging up ends its backend subscription", func(t *testing.T) {
		c := dialResp(t, cp.addr)
		assert.Equal(t, "*3\r\n$9\r\nsubscribe\r\n$4\r\ngone\r\n:1\r\n", c.do("SUBSCRIBE", "gone"))
		pub := dialResp(t, cp.addr)
		assert.Equal(t, ":1\r\n", pub.do("PUBLISH", "gone", "x"))
		require.NoError(t, c.conn.Close())
		require.Eventually(t, func() bool { return pub.do("PUBLISH", "gone", "x") == ":0\r\n" }, 5*time.Second, 10*time.Millisecond)
	})

	t.Run("RESET leaves subscriber mode", func(t *testing.T) {
		c := dialResp(t, cp.addr)
		c.do("SUBSCRIBE", "r")
		assert.Equal(t, "+RESET\r\n", c.do("RESET"))
		assert.Equal(t, "+PONG\r\n", c.do("PING"))
	})
}
