package proxy

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The client matrix's Go side in RESP3: go-redis v9 with Protocol 3 and
// rueidis with default options (RESP3, CLIENT TRACKING ON OPTIN) through
// the proxy, over Redis Cluster and over kvsim.

func TestRESP3ClientsOverRedisCluster(t *testing.T) {
	cp := startClusterProxy(t)
	t.Run("go-redis", func(t *testing.T) { goRedisRESP3Scenario(t, cp.addr) })
	t.Run("rueidis", func(t *testing.T) { rueidisScenario(t, cp.addr) })
}

func TestRESP3ClientsOverKvsim(t *testing.T) {
	kp := startKvsimProxy(t)
	t.Run("go-redis", func(t *testing.T) { goRedisRESP3Scenario(t, kp.addr) })
	t.Run("rueidis", func(t *testing.T) { rueidisScenario(t, kp.addr) })
}

// matrixKeys are keys spread over many slots, so MSET and MGET cross them.
func matrixKeys(prefix string) []string {
	keys := make([]string, 12)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s:%d", prefix, i)
	}
	return keys
}

func goRedisRESP3Scenario(t *testing.T, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3})
	t.Cleanup(func() { _ = client.Close() })

	hello, err := client.Do(ctx, "HELLO", "3").Result()
	require.NoError(t, err)
	require.Equal(t, int64(3), hello.(map[any]any)["proto"], "HELLO 3 answered as a RESP3 map")
	require.NoError(t, client.Set(ctx, "gr3:k", "v", 0).Err())
	assert.Equal(t, "v", client.Get(ctx, "gr3:k").Val())

	keys := matrixKeys("gr3")
	var pairs []any
	for i, k := range keys {
		pairs = append(pairs, k, strconv.Itoa(i))
	}
	require.NoError(t, client.MSet(ctx, pairs...).Err())
	vals, err := client.MGet(ctx, append(keys, "gr3:none")...).Result()
	require.NoError(t, err)
	for i := range keys {
		assert.Equal(t, strconv.Itoa(i), vals[i])
	}
	assert.Nil(t, vals[len(keys)])

	pipe := client.Pipeline()
	incr := pipe.Incr(ctx, "gr3:counter")
	hset := pipe.HSet(ctx, "gr3:h", "f", "1", "g", "2")
	pipe.ZAdd(ctx, "gr3:z", redis.Z{Score: 1.5, Member: "a"})
	_, err = pipe.Exec(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), incr.Val())
	assert.Equal(t, int64(2), hset.Val())
	assert.Equal(t, map[string]string{"f": "1", "g": "2"}, client.HGetAll(ctx, "gr3:h").Val())
	assert.Equal(t, 1.5, client.ZScore(ctx, "gr3:z", "a").Val())

	tx, err := client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{gr3}a", "1", 0)
		p.Incr(ctx, "{gr3}a")
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(2), tx[1].(*redis.IntCmd).Val())

	sub := client.Subscribe(ctx, "gr3:ch")
	t.Cleanup(func() { _ = sub.Close() })
	_, err = sub.Receive(ctx)
	require.NoError(t, err)
	publisher := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3})
	t.Cleanup(func() { _ = publisher.Close() })
	require.NoError(t, publisher.Publish(ctx, "gr3:ch", "hi").Err())
	msg, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "hi", msg.Payload)

	require.NoError(t, client.RPush(ctx, "gr3:list", "x").Err())
	assert.Equal(t, []string{"gr3:list", "x"}, client.BLPop(ctx, time.Second, "gr3:list").Val())

	found := 0
	iter := client.Scan(ctx, 0, "gr3:*", 100).Iterator()
	for iter.Next(ctx) {
		found++
	}
	require.NoError(t, iter.Err())
	assert.Equal(t, len(keys)+4, found, "every gr3 key found by SCAN")

	res, err := client.Eval(ctx, "return redis.call('get', KEYS[1])", []string{"gr3:k"}).Result()
	require.NoError(t, err)
	assert.Equal(t, "v", res)
}

func rueidisScenario(t *testing.T, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	require.NoError(t, err, "rueidis with default options connects")
	t.Cleanup(client.Close)
	b := client.B

	require.NoError(t, client.Do(ctx, b().Set().Key("ru:k").Value("v").Build()).Error())
	v, err := client.Do(ctx, b().Get().Key("ru:k").Build()).ToString()
	require.NoError(t, err)
	assert.Equal(t, "v", v)

	// Cross-slot MSET and MGET sent whole (Args: no slot of their own).
	keys := matrixKeys("ru")
	var kv []string
	for i, k := range keys {
		kv = append(kv, k, strconv.Itoa(i))
	}
	require.NoError(t, client.Do(ctx, b().Arbitrary("MSET").Args(kv...).Build()).Error())
	vals, err := client.Do(ctx, b().Arbitrary("MGET").Args(append(keys, "ru:none")...).Build()).ToArray()
	require.NoError(t, err)
	require.Len(t, vals, len(keys)+1)
	for i := range keys {
		s, err := vals[i].ToString()
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(i), s)
	}
	assert.True(t, vals[len(keys)].IsNil())

	results := client.DoMulti(ctx,
		b().Incr().Key("ru:counter").Build(),
		b().Hset().Key("ru:h").FieldValue().FieldValue("f", "1").Build(),
		b().Zadd().Key("ru:z").ScoreMember().ScoreMember(2.5, "a").Build())
	for _, r := range results {
		require.NoError(t, r.Error())
	}
	h, err := client.Do(ctx, b().Hgetall().Key("ru:h").Build()).AsStrMap()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"f": "1"}, h)
	score, err := client.Do(ctx, b().Zscore().Key("ru:z").Member("a").Build()).AsFloat64()
	require.NoError(t, err)
	assert.Equal(t, 2.5, score)

	err = client.Dedicated(func(c rueidis.DedicatedClient) error {
		r := c.DoMulti(ctx, b().Multi().Build(), b().Set().Key("{ru}a").Value("1").Build(),
			b().Incr().Key("{ru}a").Build(), b().Exec().Build())
		exec, err := r[3].ToArray()
		if err != nil {
			return err
		}
		n, err := exec[1].AsInt64()
		assert.Equal(t, int64(2), n)
		return err
	})
	require.NoError(t, err)

	got := make(chan string, 1)
	subscribed := make(chan error, 1)
	subCtx, stopSub := context.WithCancel(ctx)
	go func() {
		subscribed <- client.Receive(subCtx, b().Subscribe().Channel("ru:ch").Build(), func(m rueidis.PubSubMessage) {
			select {
			case got <- m.Message:
			default:
			}
		})
	}()
	// Published until the subscription is in place.
	deadline := time.After(10 * time.Second)
publish:
	for {
		require.NoError(t, client.Do(ctx, b().Publish().Channel("ru:ch").Message("hi").Build()).Error())
		select {
		case m := <-got:
			assert.Equal(t, "hi", m)
			break publish
		case <-deadline:
			t.Fatal("no message received")
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The shared RESP3 connection still answers commands.
	require.NoError(t, client.Do(ctx, b().Get().Key("ru:k").Build()).Error())
	stopSub()
	<-subscribed

	require.NoError(t, client.Do(ctx, b().Rpush().Key("ru:list").Element("x").Build()).Error())
	popped, err := client.Do(ctx, b().Blpop().Key("ru:list").Timeout(1).Build()).AsStrSlice()
	require.NoError(t, err)
	assert.Equal(t, []string{"ru:list", "x"}, popped)

	found, cursor := 0, uint64(0)
	for {
		entry, err := client.Do(ctx, b().Scan().Cursor(cursor).Match("ru:*").Count(100).Build()).AsScanEntry()
		require.NoError(t, err)
		found += len(entry.Elements)
		if cursor = entry.Cursor; cursor == 0 {
			break
		}
	}
	assert.Equal(t, len(keys)+4, found, "every ru key found by SCAN")

	r, err := client.Do(ctx, b().Eval().Script("return redis.call('get', KEYS[1])").Numkeys(1).Key("ru:k").Build()).ToString()
	require.NoError(t, err)
	assert.Equal(t, "v", r)

	// Client-side caching is refused, never served from a cache that
	// nothing would invalidate.
	_, err = client.DoCache(ctx, b().Get().Key("ru:k").Cache(), time.Minute).ToString()
	t.Logf("DoCache: %v", err)
	require.Error(t, err)
	_, err = client.DoCache(ctx, b().Get().Key("ru:k").Cache(), time.Minute).ToString()
	require.Error(t, err, "nothing was cached")
}
