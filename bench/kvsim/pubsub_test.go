package kvsim

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// psFrame is a Pub/Sub confirmation or message frame: the elements are bulk
// strings, except a trailing integer given as ":n" and a nil given as "nil".
func psFrame(elems ...string) string {
	out := "*" + strconv.Itoa(len(elems)) + "\r\n"
	for _, e := range elems {
		switch {
		case e == "nil":
			out += "$-1\r\n"
		case strings.HasPrefix(e, ":"):
			out += e + "\r\n"
		default:
			out += ntBulk(e)
		}
	}
	return out
}

// psReadAll reads count frames.
func psReadAll(c *ntConn, count int) []string {
	c.t.Helper()
	out := make([]string, count)
	for i := range out {
		out[i] = c.read()
	}
	return out
}

func TestPubSubSubscribeConfirmationsAndMessages(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	sub := ntDial(t, n.Addr())
	pub := ntDial(t, n.Addr())

	sub.send("SUBSCRIBE", "news", "sport", "news")
	assert.Equal(t, []string{
		psFrame("subscribe", "news", ":1"),
		psFrame("subscribe", "sport", ":2"),
		psFrame("subscribe", "news", ":2"), // already subscribed: confirmed again, counted once
	}, psReadAll(sub, 3))
	sub.send("PSUBSCRIBE", "n*", "[ns]*")
	assert.Equal(t, []string{
		psFrame("psubscribe", "n*", ":3"),
		psFrame("psubscribe", "[ns]*", ":4"),
	}, psReadAll(sub, 2))

	// The channel's subscriber, then each matching pattern in byte order.
	assert.Equal(t, ":3\r\n", pub.do("PUBLISH", "news", "hello"))
	assert.Equal(t, []string{
		psFrame("message", "news", "hello"),
		psFrame("pmessage", "[ns]*", "news", "hello"),
		psFrame("pmessage", "n*", "news", "hello"),
	}, psReadAll(sub, 3))
	assert.Equal(t, ":0\r\n", pub.do("PUBLISH", "weather", "rain"), "nobody listens")
	assert.Equal(t, ":4\r\n", pub.do("MPUBLISH", "sport", "a", "b"), "the receivers of both messages")
	assert.Equal(t, []string{
		psFrame("message", "sport", "a"), psFrame("pmessage", "[ns]*", "sport", "a"),
		psFrame("message", "sport", "b"), psFrame("pmessage", "[ns]*", "sport", "b"),
	}, psReadAll(sub, 4))

	// Channels and patterns count together; the counts go down one by one.
	sub.send("UNSUBSCRIBE", "sport", "never")
	assert.Equal(t, []string{
		psFrame("unsubscribe", "sport", ":3"),
		psFrame("unsubscribe", "never", ":3"),
	}, psReadAll(sub, 2))
	sub.send("PUNSUBSCRIBE")
	assert.Equal(t, []string{
		psFrame("punsubscribe", "n*", ":2"),
		psFrame("punsubscribe", "[ns]*", ":1"),
	}, psReadAll(sub, 2))
	sub.send("PUNSUBSCRIBE")
	assert.Equal(t, psFrame("punsubscribe", "nil", ":1"), sub.read(), "no pattern left: a nil name")
	sub.send("UNSUBSCRIBE")
	assert.Equal(t, psFrame("unsubscribe", "news", ":0"), sub.read())
	assert.Equal(t, ":0\r\n", pub.do("PUBLISH", "news", "late"))

	// An empty channel name is confirmed as nil, as Kvrocks writes it.
	sub.send("SUBSCRIBE", "")
	assert.Equal(t, psFrame("subscribe", "nil", ":1"), sub.read())
	assert.Equal(t, ":1\r\n", pub.do("PUBLISH", "", "x"))
	assert.Equal(t, psFrame("message", "", "x"), sub.read())
}

// Kvrocks has no subscribed-mode restriction: a subscribed connection runs
// any command, in order with its messages, and PING answers +PONG.
func TestPubSubSubscribedConnectionRunsAnyCommand(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	sub := ntDial(t, n.Addr())
	pub := ntDial(t, n.Addr())
	require.Equal(t, "+OK\r\n", pub.do("CLUSTERX", "SETNODES", ntMasterLine(n.ID(), n, "0-16383"), "1"))

	// Pipelined around the first SUBSCRIBE, which takes the connection over.
	_, err := sub.conn.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n" +
		"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n" +
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"+OK\r\n", psFrame("subscribe", "c", ":1"), ntBulk("v")}, psReadAll(sub, 3))

	assert.Equal(t, "+PONG\r\n", sub.do("PING"))
	assert.Equal(t, ntBulk("hi"), sub.do("PING", "hi"))
	// Publishing to itself: the message is queued while PUBLISH runs, so it
	// comes before PUBLISH's reply, as in Kvrocks.
	sub.send("PUBLISH", "c", "self")
	assert.Equal(t, []string{psFrame("message", "c", "self"), ":1\r\n"}, psReadAll(sub, 2))
	assert.Equal(t, "+OK\r\n", sub.do("SET", "k", "w"))
	assert.Equal(t, ntBulk("w"), pub.do("GET", "k"))
	assert.Equal(t, "-ERR wrong number of arguments for 'subscribe' command\r\n", sub.do("SUBSCRIBE"))
	assert.Contains(t, sub.do("CLIENT", "LIST"), "addr="+sub.conn.LocalAddr().String()+" ",
		"a subscriber stays in CLIENT LIST")

	// QUIT answers, then closes.
	assert.Equal(t, "+OK\r\n", sub.do("QUIT"))
	_, err = sub.rd.ReadByte()
	assert.Error(t, err, "closed after QUIT")
	require.Eventually(t, func() bool { return pub.do("PUBLISH", "c", "gone") == ":0\r\n" },
		5*time.Second, 5*time.Millisecond, "its subscriptions went with it")
	assert.NotContains(t, pub.do("CLIENT", "LIST"), "addr="+sub.conn.LocalAddr().String()+" ")
}

func TestPubSubUnsubscribeWithoutSubscriptions(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	assert.Equal(t, psFrame("unsubscribe", "nil", ":0"), c.do("UNSUBSCRIBE"))
	assert.Equal(t, psFrame("punsubscribe", "p", ":0"), c.do("PUNSUBSCRIBE", "p"))
	assert.Equal(t, psFrame("sunsubscribe", "nil", ":0"), c.do("SUNSUBSCRIBE"))
	assert.Equal(t, "+PONG\r\n", c.do("PING"))
}

func TestPubSubIntrospection(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	a := ntDial(t, n.Addr())
	b := ntDial(t, n.Addr())
	q := ntDial(t, n.Addr())
	a.send("SUBSCRIBE", "news", "sport")
	psReadAll(a, 2)
	b.send("SUBSCRIBE", "news")
	b.read()
	b.send("PSUBSCRIBE", "n*", "x*")
	psReadAll(b, 2)
	a.send("PSUBSCRIBE", "n*")
	a.read()
	a.send("SSUBSCRIBE", "{u}a", "{u}b")
	psReadAll(a, 2)
	b.send("SSUBSCRIBE", "v")
	b.read()

	assert.Equal(t, "*2\r\n"+ntBulk("news")+ntBulk("sport"), q.do("PUBSUB", "CHANNELS"))
	assert.Equal(t, "*1\r\n"+ntBulk("sport"), q.do("PUBSUB", "channels", "s*"))
	assert.Equal(t, "*2\r\n"+ntBulk("news")+ntBulk("sport"), q.do("PUBSUB", "CHANNELS", ""), "an empty pattern matches all")
	assert.Equal(t, "*4\r\n"+ntBulk("news")+":2\r\n"+ntBulk("none")+":0\r\n", q.do("PUBSUB", "NUMSUB", "news", "none"))
	assert.Equal(t, "*0\r\n", q.do("PUBSUB", "NUMSUB"))
	assert.Equal(t, ":2\r\n", q.do("PUBSUB", "NUMPAT"), "distinct patterns")
	// Shard channels by slot: v is slot 7800, {u} slot 11826 (hash of "u").
	assert.Equal(t, "*3\r\n"+ntBulk("v")+ntBulk("{u}a")+ntBulk("{u}b"), q.do("PUBSUB", "SHARDCHANNELS"))
	assert.Equal(t, "*2\r\n"+ntBulk("{u}a")+":1\r\n", q.do("PUBSUB", "SHARDNUMSUB", "{u}a"))
	for _, bad := range [][]string{{"PUBSUB", "NUMPAT", "x"}, {"PUBSUB", "CHANNELS", "a", "b"}, {"PUBSUB", "HELP"}} {
		assert.Equal(t, "-ERR Unknown subcommand or wrong number of arguments\r\n", q.do(bad...), "%q", bad)
	}
	assert.Equal(t, "-ERR wrong number of arguments for 'pubsub' command\r\n", q.do("PUBSUB"))
	assert.Equal(t, "-ERR wrong number of arguments for 'publish' command\r\n", q.do("PUBLISH", "c"))
}

func TestPubSubShardChannels(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	other := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	// The node owns no slot: SSUBSCRIBE is not checked against ownership.
	require.Equal(t, "+OK\r\n", c.do("CLUSTERX", "SETNODES", ntMasterLine(ntID('o'), other, "0-16383")+"\n"+
		ntMasterLine(n.ID(), n), "1"))
	assert.Equal(t, "-ERR CROSSSLOT Keys in request don't hash to the same slot\r\n", c.do("SSUBSCRIBE", "a", "b"))
	c.send("SSUBSCRIBE", "{t}a", "{t}b")
	assert.Equal(t, []string{psFrame("ssubscribe", "{t}a", ":1"), psFrame("ssubscribe", "{t}b", ":2")}, psReadAll(c, 2))
	c.send("SUBSCRIBE", "{t}a")
	assert.Equal(t, psFrame("subscribe", "{t}a", ":1"), c.read(), "shard channels count apart")

	p := ntDial(t, n.Addr())
	assert.Equal(t, ":1\r\n", p.do("PUBLISH", "{t}a", "m"), "PUBLISH reaches the plain subscription only")
	assert.Equal(t, psFrame("message", "{t}a", "m"), c.read())
	assert.Equal(t, "-ERR unknown command 'SPUBLISH', with args beginning with: '{t}a' 'm' \r\n",
		p.do("SPUBLISH", "{t}a", "m"), "Kvrocks has no SPUBLISH")

	c.send("SUNSUBSCRIBE")
	assert.Equal(t, []string{psFrame("sunsubscribe", "{t}a", ":1"), psFrame("sunsubscribe", "{t}b", ":0")}, psReadAll(c, 2))
	assert.Equal(t, psFrame("sunsubscribe", "nil", ":0"), c.do("SUNSUBSCRIBE"))
	assert.Equal(t, "*0\r\n", p.do("PUBSUB", "SHARDCHANNELS"))
}

// A subscriber that never reads is disconnected once its queued output
// passes the limit; PUBLISH never waits for it.
func TestPubSubSlowSubscriberIsDisconnected(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	n.pubsub.outputLimit.Store(64 << 10)
	slow := ntDial(t, n.Addr())
	slow.send("SUBSCRIBE", "c")
	require.Equal(t, psFrame("subscribe", "c", ":1"), slow.read())

	pub := ntClient(t, n.Addr(), "")
	ctx := context.Background()
	payload := strings.Repeat("x", 32<<10)
	delivered := 0
	for range 10000 { // the kernel's socket buffers take some megabytes first
		got, err := pub.Publish(ctx, "c", payload).Result()
		require.NoError(t, err)
		if got == 0 {
			break
		}
		delivered++
	}
	require.Less(t, delivered, 10000, "the slow subscriber was never cut off")
	require.Eventually(t, func() bool { return pub.PubSubNumSub(ctx, "c").Val()["c"] == 0 },
		10*time.Second, 5*time.Millisecond, "its subscription went with its connection")
	// Its connection was closed: reading drains what was sent, then ends.
	require.NoError(t, slow.conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 1<<20)
	var err error
	for err == nil {
		_, err = slow.conn.Read(buf)
	}
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the node closed it")
}

// Kill ends every subscriber, even one whose client stopped reading with a
// write pending, and a restarted node has no subscriptions.
func TestPubSubKillEndsSubscribers(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	stuck := ntDial(t, n.Addr())
	stuck.send("SUBSCRIBE", "c")
	require.Equal(t, psFrame("subscribe", "c", ":1"), stuck.read())
	pub := ntClient(t, n.Addr(), "")
	payload := strings.Repeat("y", 256<<10)
	for range 64 { // 16 MiB, under the default limit: the writer blocks
		require.NoError(t, pub.Publish(context.Background(), "c", payload).Err())
	}
	killed := make(chan struct{})
	go func() {
		n.Kill()
		close(killed)
	}()
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		t.Fatal("Kill waited for a subscriber that does not read")
	}
	require.NoError(t, n.Start())
	assert.Equal(t, map[string]int64{"c": 0}, pub.PubSubNumSub(context.Background(), "c").Val())
}

// go-redis's PubSub works against the node, PING included.
func TestPubSubGoRedisClient(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	ctx := context.Background()
	c := ntClient(t, n.Addr(), "")
	ps := c.Subscribe(ctx, "a")
	t.Cleanup(func() { ps.Close() })
	require.NoError(t, ps.PSubscribe(ctx, "b*"))
	for _, want := range []any{&redis.Subscription{Kind: "subscribe", Channel: "a", Count: 1},
		&redis.Subscription{Kind: "psubscribe", Channel: "b*", Count: 2}} {
		got, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	require.NoError(t, ps.Ping(ctx))
	got, err := ps.ReceiveTimeout(ctx, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, &redis.Pong{Payload: "PONG"}, got)
	assert.Equal(t, int64(1), c.Publish(ctx, "bee", "m").Val())
	got, err = ps.ReceiveTimeout(ctx, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, &redis.Message{Channel: "bee", Pattern: "b*", Payload: "m"}, got)
}

// Any node runs Pub/Sub: a replica accepts SUBSCRIBE and PUBLISH (no
// READONLY). A master's PUBLISH also reaches its replica's subscribers, as
// Kvrocks replicates it through its WAL; a replica's stays local. Both
// survive a topology that swaps the roles.
func TestPubSubOnReplicaAndAcrossRoleSwap(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{ReplDelay: 20 * time.Millisecond})
	master, replica := s.master, s.replicas[0]
	onMaster := ntDial(t, master.Addr())
	onReplica := ntDial(t, replica.Addr())
	onMaster.send("SUBSCRIBE", "c")
	require.Equal(t, psFrame("subscribe", "c", ":1"), onMaster.read())
	onReplica.send("SUBSCRIBE", "c")
	require.Equal(t, psFrame("subscribe", "c", ":1"), onReplica.read())
	toMaster := ntDial(t, master.Addr())
	toReplica := ntDial(t, replica.Addr())

	seq := master.Keyspace().Sequence()
	assert.Equal(t, ":1\r\n", toMaster.do("PUBLISH", "c", "m1"), "PUBLISH counts this node's receivers only")
	assert.Equal(t, seq+1, master.Keyspace().Sequence(), "a master's PUBLISH moves its sequence")
	assert.Equal(t, psFrame("message", "c", "m1"), onMaster.read())
	assert.Equal(t, psFrame("message", "c", "m1"), onReplica.read(), "the replica delivers it when it applies it")

	seq = replica.Keyspace().Sequence()
	assert.Equal(t, ":1\r\n", toReplica.do("PUBLISH", "c", "r1"))
	assert.Equal(t, seq, replica.Keyspace().Sequence(), "a replica's PUBLISH leaves its sequence alone")
	assert.Equal(t, psFrame("message", "c", "r1"), onReplica.read())

	ntPush(t, 2, []string{
		ntReplicaLine(ntID('a'), master, ntID('b')),
		ntMasterLine(ntID('b'), replica, "0-16383"),
	}, s.nodes)
	// The old master's subscriber never saw r1: its next message is the new
	// master's, replicated once the new link is up (after a full resync:
	// messages published during it are not replayed).
	ntWaitLinkUp(t, master)
	assert.Equal(t, ":1\r\n", toReplica.do("PUBLISH", "c", "m2"))
	assert.Equal(t, psFrame("message", "c", "m2"), onReplica.read())
	assert.Equal(t, psFrame("message", "c", "m2"), onMaster.read())
	assert.Equal(t, ":1\r\n", toMaster.do("PUBLISH", "c", "r2"), "the old master, now a replica, publishes locally")
	assert.Equal(t, psFrame("message", "c", "r2"), onMaster.read())
	assert.Equal(t, ":1\r\n", toReplica.do("PUBLISH", "c", "m3"))
	assert.Equal(t, psFrame("message", "c", "m3"), onReplica.read(), "r2 did not reach the new master")
}

// A WRITE pause holds PUBLISH, which moves a master's sequence, and lets the
// other Pub/Sub commands through.
func TestPubSubClientPauseWriteHoldsPublish(t *testing.T) {
	ntSkipShort(t)
	n := ntStartNode(t, NodeConfig{})
	sub := ntDial(t, n.Addr())
	sub.send("SUBSCRIBE", "c")
	require.Equal(t, psFrame("subscribe", "c", ":1"), sub.read())
	c := ntDial(t, n.Addr())
	require.Equal(t, "+OK\r\n", c.do("CLIENT", "PAUSE", "100000", "WRITE"))
	publish := ntBlocked(t, n.Addr(), "PUBLISH", "c", "held")
	sub.send("SUBSCRIBE", "d")
	assert.Equal(t, psFrame("subscribe", "d", ":2"), sub.read(), "SUBSCRIBE passes a WRITE pause")
	assert.Equal(t, "*2\r\n"+ntBulk("c")+":1\r\n", c.do("PUBSUB", "NUMSUB", "c"))
	assert.Never(t, func() bool { return len(publish) > 0 }, 200*time.Millisecond, 10*time.Millisecond,
		"a paused PUBLISH must block, not fail")
	require.Equal(t, "+OK\r\n", c.do("CLIENT", "UNPAUSE"))
	select {
	case reply := <-publish:
		assert.Equal(t, ":1\r\n", reply)
	case <-time.After(10 * time.Second):
		t.Fatal("PUBLISH never resumed after UNPAUSE")
	}
	assert.Equal(t, psFrame("message", "c", "held"), sub.read())
}

// A WATCH made on a subscribed connection ends with the connection.
func TestPubSubWatchEndsWithTheSubscriber(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	sub := ntDial(t, n.Addr())
	pub := ntDial(t, n.Addr())
	require.Equal(t, "+OK\r\n", pub.do("CLUSTERX", "SETNODES", ntMasterLine(n.ID(), n, "0-16383"), "1"))
	assert.Equal(t, psFrame("subscribe", "c", ":1"), sub.do("SUBSCRIBE", "c"))
	assert.Equal(t, "+OK\r\n", sub.do("WATCH", "k"))
	require.Equal(t, int64(1), n.watches.keys.Load())
	require.NoError(t, sub.conn.Close())
	require.Eventually(t, func() bool { return n.watches.keys.Load() == 0 }, 5*time.Second, time.Millisecond,
		"the closed subscriber's watch is gone")
}
