package proxy

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
)

// readWithin returns the next frame, waiting up to d: longer than read's
// own deadline, for what only comes once the cluster has recovered.
func (c *respConn) readWithin(d time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		reply, err := c.tryRead()
		if err == nil {
			return reply
		}
		require.True(c.t, isTimeout(err) && time.Now().Before(deadline), "no frame within %v: %v", d, err)
	}
}

// numSub returns how many clients of node are subscribed to channel,
// through PUBSUB NUMSUB, or PUBSUB SHARDNUMSUB for a shard channel.
func numSub(node *cluster.Node, channel string, shard bool) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var counts map[string]int64
	var err error
	if shard {
		counts, err = node.Client().PubSubShardNumSub(ctx, channel).Result()
	} else {
		counts, err = node.Client().PubSubNumSub(ctx, channel).Result()
	}
	if err != nil {
		return -1 // a node restarting or failing over: asked again
	}
	return counts[channel]
}

func numPat(node *cluster.Node) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := node.Client().PubSubNumPat(ctx).Result()
	if err != nil {
		return -1
	}
	return n
}

// requireNoSubscriberLeft checks, when the test ends, that no subscriber
// goroutine is left once the clients hung up. The goroutine count cannot
// tell: the router keeps connections to the masters a failover promoted.
func requireNoSubscriberLeft(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		assert.Eventually(t, func() bool {
			stacks := make([]byte, 1<<20)
			return !strings.Contains(string(stacks[:runtime.Stack(stacks, true)]), "proxy.(*subscriber)")
		}, 10*time.Second, 20*time.Millisecond, "subscriber goroutines left behind")
	})
}

func TestPubSubSurvivesLostConnectionsOnRealCluster(t *testing.T) {
	cp := startClusterProxy(t)
	requireNoSubscriberLeft(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	t.Run("SUBSCRIBE and PSUBSCRIBE come back after CLIENT KILL, unseen", func(t *testing.T) {
		sub := dialResp(t, cp.addr)
		pub := dialResp(t, cp.addr)
		require.Equal(t, subscribeFrame("subscribe", "news", 1), sub.do("SUBSCRIBE", "news"))
		require.Equal(t, subscribeFrame("psubscribe", "n*", 2), sub.do("PSUBSCRIBE", "n*"))
		node := cp.cluster.NodeByAddr(cp.router.Masters()[0])
		require.NotNil(t, node)

		killed, err := node.Client().ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		require.NoError(t, err)
		require.Positive(t, killed)
		require.Eventually(t, func() bool { return numSub(node, "news", false) == 1 && numPat(node) == 1 },
			10*time.Second, 10*time.Millisecond, "re-subscribed on %s", node)

		assert.Equal(t, ":2\r\n", pub.do("PUBLISH", "news", "after"))
		assert.Equal(t, messageFrame("message", "news", "after"), sub.read(), "no confirmation of the re-subscription")
		assert.Equal(t, "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nafter\r\n", sub.read())
		assert.Equal(t, pongFrame, sub.do("PING"), "nothing else came")
		assert.Equal(t, subscribeFrame("subscribe", "more", 3), sub.do("SUBSCRIBE", "more"))
		assert.Equal(t, subscribeFrame("punsubscribe", "n*", 2), sub.do("PUNSUBSCRIBE", "n*"))
	})

	t.Run("SSUBSCRIBE follows CLUSTER FAILOVER of its shard", func(t *testing.T) {
		sub := dialResp(t, cp.addr)
		pub := dialResp(t, cp.addr)
		require.Equal(t, subscribeFrame("ssubscribe", "{fo}chan", 1), sub.do("SSUBSCRIBE", "{fo}chan"))
		oldMaster := cp.cluster.MasterForKey("{fo}chan")
		replicas := cp.cluster.ReplicasOf(oldMaster.ID)
		require.NotEmpty(t, replicas)
		require.Equal(t, int64(1), numSub(oldMaster, "{fo}chan", true))

		require.NoError(t, cp.cluster.Failover(ctx, replicas[0]))
		require.Eventually(t, func() bool { return numSub(replicas[0], "{fo}chan", true) == 1 },
			30*time.Second, 10*time.Millisecond, "re-subscribed on the new master %s", replicas[0])
		// SPUBLISH answers how many subscribers the node it ran on has: once
		// the router knows the new master (its refresh is periodic), one.
		slot := int(cluster.Slot("{fo}chan"))
		require.Eventually(t, func() bool { return cp.router.MasterOf(slot) == replicas[0].Addr },
			30*time.Second, 10*time.Millisecond, "the router sees the new master")
		assert.Equal(t, ":1\r\n", pub.do("SPUBLISH", "{fo}chan", "after"))
		assert.Equal(t, messageFrame("smessage", "{fo}chan", "after"), sub.read(), "the old master's sunsubscribe is hidden")
		assert.Equal(t, pongFrame, sub.do("PING"), "nothing else came")
		assert.Equal(t, subscribeFrame("sunsubscribe", "{fo}chan", 0), sub.do("SUNSUBSCRIBE", "{fo}chan"))
		assert.Equal(t, "+PONG\r\n", sub.do("PING"), "out of subscriber mode")
	})

	t.Run("UNSUBSCRIBE while a killed master is replaced", func(t *testing.T) {
		sub := dialResp(t, cp.addr)
		pub := dialResp(t, cp.addr)
		require.Equal(t, subscribeFrame("subscribe", "stay", 1), sub.do("SUBSCRIBE", "stay"))
		require.Equal(t, subscribeFrame("subscribe", "leave", 2), sub.do("SUBSCRIBE", "leave"))
		dead := cp.cluster.NodeByAddr(cp.router.Masters()[0])
		replicas := cp.cluster.ReplicasOf(dead.ID)
		require.NotEmpty(t, replicas)
		successor := replicas[0]

		require.NoError(t, cp.cluster.Kill(dead))
		sub.send(encodeCommand("UNSUBSCRIBE", "leave"))
		// Answered once a replica has taken over (node timeout, election,
		// the router's refresh), well within resubscribeTimeout.
		assert.Equal(t, subscribeFrame("unsubscribe", "leave", 1), sub.readWithin(resubscribeTimeout))
		assert.Equal(t, int64(1), numSub(successor, "stay", false))
		assert.Equal(t, int64(0), numSub(successor, "leave", false))
		assert.Equal(t, ":0\r\n", pub.do("PUBLISH", "leave", "x"))
		assert.Equal(t, ":1\r\n", pub.do("PUBLISH", "stay", "y"))
		assert.Equal(t, messageFrame("message", "stay", "y"), sub.read())
		assert.Equal(t, pongFrame, sub.do("PING"), "nothing else came")
	})
}
