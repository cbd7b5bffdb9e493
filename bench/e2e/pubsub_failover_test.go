package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/failover"
)

// pubsubFailover is one way shard 0 (the first master's, where the proxy
// subscribes and publishes) hands over to its replica; it returns once the
// handover is over.
type pubsubFailover struct {
	name string
	// replDelay is every replica's; a master's PUBLISH reaches its
	// replica's subscribers that much later.
	replDelay time.Duration
	handover  func(t *testing.T, ctx context.Context, sim *kvsim.Cluster, proxy *failoverProxy, master, replica *kvsim.Node)
}

var pubsubFailovers = []pubsubFailover{
	{name: "CLUSTERX FAILOVER through the proxy", replDelay: 200 * time.Millisecond,
		handover: func(t *testing.T, ctx context.Context, _ *kvsim.Cluster, proxy *failoverProxy, master, replica *kvsim.Node) {
			admin := redis.NewClient(&redis.Options{Addr: proxy.addr})
			defer admin.Close()
			require.NoError(t, admin.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "3000").Err())
			direct := redis.NewClient(&redis.Options{Addr: master.Addr()})
			defer direct.Close()
			var phase failover.Phase
			require.Eventually(t, func() bool {
				info, _ := direct.Do(ctx, "CLUSTER", "INFO").Text()
				phase, _ = failover.ParsePhase([]byte(info))
				return phase.Final()
			}, 30*time.Second, 5*time.Millisecond)
			require.Equal(t, failover.PhaseSuccess, phase)
		}},
	// The delay is below the controller's 100 ms catch-up budget.
	{name: "controller CLIENT PAUSE failover", replDelay: 30 * time.Millisecond,
		handover: func(t *testing.T, ctx context.Context, sim *kvsim.Cluster, _ *failoverProxy, _, replica *kvsim.Node) {
			opts := kvsim.DefaultFailoverOptions()
			opts.Replica = replica.ID()
			require.NoError(t, sim.Controller().FailoverShard(ctx, 0, opts))
			require.Equal(t, replica.ID(), sim.Masters()[0].ID(), "the roles swapped")
		}},
}

// startPubSubCluster starts a kvsim cluster of 3 shards with one replica
// each and a proxy in front, built as cmd/kvproxy builds it.
func startPubSubCluster(t *testing.T, replDelay time.Duration) (*kvsim.Cluster, *failoverProxy) {
	t.Helper()
	cfg := kvsim.DefaultClusterConfig()
	cfg.ReplDelay = replDelay
	sim, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	return sim, startFailoverProxy(t, sim.Masters()[0].Addr())
}

// A subscriber of the proxy (SUBSCRIBE and PSUBSCRIBE) keeps receiving
// across a failover of the shard whose master the proxy subscribes and
// publishes on: no message published during the handover arrives twice,
// the subscription ends up on the new master and on it only, and from then
// on every message published through the proxy arrives exactly once. The
// subscriber never sees a frame it did not ask for (no second confirmation,
// no message nobody published).
func TestPubSubSubscriberFollowsFirstShardFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	for _, sc := range pubsubFailovers {
		t.Run(sc.name, func(t *testing.T) {
			sim, proxy := startPubSubCluster(t, sc.replDelay)
			master := sim.Masters()[0]
			replica := sim.ReplicasOf(master.ID())[0]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			client := redis.NewClient(&redis.Options{Addr: proxy.addr, MaxRetries: -1})
			defer client.Close()
			ps := client.Subscribe(ctx, "news")
			frames := make(chan any, 1024)
			defer func() {
				ps.Close()
				for range frames { // until the receiver below has returned
				}
			}()
			require.NoError(t, ps.PSubscribe(ctx, "sport.*"))
			go func() {
				defer close(frames)
				for {
					msg, err := ps.Receive(ctx)
					if err != nil {
						return
					}
					select {
					case frames <- msg:
					case <-ctx.Done():
						return
					}
				}
			}()
			next := func() any {
				t.Helper()
				select {
				case f, ok := <-frames:
					require.True(t, ok, "the subscription ended")
					return f
				case <-time.After(10 * time.Second):
					require.FailNow(t, "no frame within 10s")
					return nil
				}
			}
			assert.Equal(t, &redis.Subscription{Kind: "subscribe", Channel: "news", Count: 1}, next())
			assert.Equal(t, &redis.Subscription{Kind: "psubscribe", Channel: "sport.*", Count: 2}, next())

			// exactlyOnce are the payloads that must arrive once each.
			var exactlyOnce []string
			publish := func(channel, payload string) {
				t.Helper()
				n, err := client.Publish(ctx, channel, payload).Result()
				require.NoError(t, err, "PUBLISH %s %s", channel, payload)
				require.Equal(t, int64(1), n, "PUBLISH %s %s", channel, payload)
				exactlyOnce = append(exactlyOnce, payload)
			}
			publish("news", "before")
			publish("sport.golf", "before-pattern")

			// Messages published while the proxy moves the subscription may
			// be lost (Pub/Sub keeps nothing) or arrive twice: Kvrocks
			// replays a master's PUBLISH on its replicas, so one received on
			// the old master can arrive again, replicated, on the new one.
			stopDuring := make(chan struct{})
			during := 0 // messages published during the handover
			var publisher sync.WaitGroup
			publisher.Go(func() {
				for {
					select {
					case <-stopDuring:
						return
					case <-time.After(5 * time.Millisecond):
					}
					_ = client.Publish(ctx, "news", fmt.Sprintf("during-%d", during)).Err()
					during++
				}
			})
			stopPublishing := sync.OnceFunc(func() {
				close(stopDuring)
				publisher.Wait()
			})
			defer stopPublishing()
			sc.handover(t, ctx, sim, proxy, master, replica)
			// A keyed command tells the proxy of a topology it has not seen yet.
			_ = client.Get(ctx, "{06S}probe").Err()
			require.Eventually(t, func() bool { return proxy.rt.MasterOf(0) == replica.Addr() },
				30*time.Second, 10*time.Millisecond, "shard 0 is routed to the new master")
			require.Eventually(t, func() bool {
				return subscribers(ctx, replica) == 2 && subscribers(ctx, master) == 0
			}, 30*time.Second, 10*time.Millisecond, "the subscription moved to the new master and left the old one")
			stopPublishing()

			publish("news", "after")
			publish("sport.chess", "after-pattern")
			publish("news", "end")

			// Frames of one connection come in order: everything published
			// before "end" has arrived once "end" has.
			seen := map[string]int{}
			for last := ""; last != "end"; {
				switch m := next().(type) {
				case *redis.Message:
					seen[m.Payload]++
					last = m.Payload
					if m.Pattern != "" {
						assert.Equal(t, "sport.*", m.Pattern)
					}
				default:
					assert.Failf(t, "a frame the subscriber did not ask for", "%#v", m)
				}
			}
			received := 0
			for payload := range seen {
				if strings.HasPrefix(payload, "during-") {
					received++
				}
			}
			t.Logf("%d of the %d messages published during the handover arrived", received, during)
			for _, payload := range exactlyOnce {
				assert.Equal(t, 1, seen[payload], "%q arrives exactly once", payload)
			}
			for payload, times := range seen {
				var i int
				if _, err := fmt.Sscanf(payload, "during-%d", &i); err == nil {
					assert.Less(t, i, during, "%q was published", payload)
					assert.LessOrEqual(t, times, 2, "%q arrives at most twice", payload)
				} else {
					assert.Contains(t, exactlyOnce, payload, "only what was published arrives")
				}
			}
		})
	}
}

// subscribers is the node's count of channel subscribers of "news" plus its
// patterns, what the proxy's one subscription adds up to; -1 if the node
// does not answer.
func subscribers(ctx context.Context, n *kvsim.Node) int64 {
	c := redis.NewClient(&redis.Options{Addr: n.Addr()})
	defer c.Close()
	counts, err := c.PubSubNumSub(ctx, "news").Result()
	if err != nil {
		return -1
	}
	patterns, err := c.PubSubNumPat(ctx).Result()
	if err != nil {
		return -1
	}
	return counts["news"] + patterns
}

// shardSubscribers is the node's count of subscribers of a shard channel;
// -1 if the node does not answer.
func shardSubscribers(ctx context.Context, n *kvsim.Node, channel string) int64 {
	c := redis.NewClient(&redis.Options{Addr: n.Addr()})
	defer c.Close()
	counts, err := c.PubSubShardNumSub(ctx, channel).Result()
	if err != nil {
		return -1
	}
	return counts[channel]
}

// A shard subscription (SSUBSCRIBE) of a channel in shard 0 moves to the new
// master when the shard fails over. Kvrocks never checks SSUBSCRIBE's slot
// and never unsubscribes a shard channel whose slot moves, so nothing the
// node sends tells the proxy: only PUBSUB SHARDNUMSUB on each node shows
// where the subscription is. (Kvrocks has no SPUBLISH, so a message cannot
// show it.) The proxy moves it when its topology names the new master: after
// the controller's failover, at its periodic reload, as no command here
// gets a MOVED that would tell it sooner.
func TestPubSubShardSubscriptionFollowsFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	for _, sc := range pubsubFailovers {
		t.Run(sc.name, func(t *testing.T) {
			sim, proxy := startPubSubCluster(t, sc.replDelay)
			master := sim.Masters()[0]
			replica := sim.ReplicasOf(master.ID())[0]
			require.Same(t, master, sim.MasterOfSlot(0))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const channel = "{06S}shard" // slot 0

			client := redis.NewClient(&redis.Options{Addr: proxy.addr, MaxRetries: -1})
			defer client.Close()
			ps := client.SSubscribe(ctx, channel)
			defer ps.Close()
			msg, err := ps.ReceiveTimeout(ctx, 10*time.Second)
			require.NoError(t, err)
			require.Equal(t, &redis.Subscription{Kind: "ssubscribe", Channel: channel, Count: 1}, msg)
			require.Equal(t, int64(1), shardSubscribers(ctx, master, channel))

			sc.handover(t, ctx, sim, proxy, master, replica)

			if !assert.Eventually(t, func() bool {
				return shardSubscribers(ctx, replica, channel) == 1 && shardSubscribers(ctx, master, channel) == 0
			}, 30*time.Second, 20*time.Millisecond, "the shard subscription moved to the new master") {
				t.Logf("subscribers now: old master %d, new master %d",
					shardSubscribers(ctx, master, channel), shardSubscribers(ctx, replica, channel))
			}
		})
	}
}

// A subscribed client of the proxy PINGs (go-redis's PubSub does so by
// itself every minute in Channel mode) and goes on receiving. Kvrocks
// answers PING with +PONG (or the bulk payload) even on a subscribed
// connection. A RESP2 client gets Redis' ["pong", payload] array from the
// proxy; a RESP3 one PING's usual reply, as Redis 7 sends it (+PONG or the
// payload); either way the client's later commands are answered.
func TestPubSubPingWhileSubscribed(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	_, proxy := startPubSubCluster(t, 0)
	for _, tc := range []struct {
		protocol  int
		pong      *redis.Pong
		pongTells string
	}{
		{2, &redis.Pong{}, "Redis' [pong, \"\"], not Kvrocks' +PONG (Payload \"PONG\")"},
		{3, &redis.Pong{Payload: "PONG"}, "Redis 7 answers a RESP3 subscriber's PING with +PONG"},
	} {
		t.Run(fmt.Sprintf("RESP%d", tc.protocol), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			client := redis.NewClient(&redis.Options{Addr: proxy.addr, MaxRetries: -1, Protocol: tc.protocol})
			defer client.Close()
			ps := client.Subscribe(ctx, "news")
			defer ps.Close()
			receive := func() any {
				t.Helper()
				msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
				require.NoError(t, err)
				return msg
			}
			require.Equal(t, &redis.Subscription{Kind: "subscribe", Channel: "news", Count: 1}, receive())
			require.NoError(t, ps.Ping(ctx))
			assert.Equal(t, tc.pong, receive(), tc.pongTells)
			require.NoError(t, ps.Ping(ctx, "payload"))
			assert.Equal(t, &redis.Pong{Payload: "payload"}, receive())
			require.NoError(t, client.Publish(ctx, "news", "still here").Err())
			assert.Equal(t, &redis.Message{Channel: "news", Payload: "still here"}, receive())
			require.NoError(t, ps.Subscribe(ctx, "sport"))
			assert.Equal(t, &redis.Subscription{Kind: "subscribe", Channel: "sport", Count: 2}, receive())
		})
	}
}
