package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// go-redis v9 with default options opens with HELLO 3 and AUTH, and speaks
// RESP3 to the proxy.
func TestGoRedisDefaultClientSpeaksRESP3(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(3), func(c *Config) { c.Password = "pw" })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := redis.NewClient(&redis.Options{Addr: addr, Password: "pw", ClientName: "tester"})
	t.Cleanup(func() { _ = client.Close() })

	require.NoError(t, client.Ping(ctx).Err())
	require.NoError(t, client.Set(ctx, "k1", "v1", 0).Err())
	assert.Equal(t, "v1", client.Get(ctx, "k1").Val())
	assert.Equal(t, "tester", client.ClientGetName(ctx).Val())
	assert.Contains(t, client.ClientInfo(ctx).Val().LibName+client.ClientList(ctx).Val(), "resp=3")
	require.NoError(t, client.MSet(ctx, "a", "1", "b", "2", "c", "3").Err())
	assert.Equal(t, []any{"1", "2", "3", nil}, client.MGet(ctx, "a", "b", "c", "nope").Val())
	assert.Equal(t, int64(4), client.DBSize(ctx).Val())
	assert.Equal(t, int64(2), client.Del(ctx, "a", "c").Val())
	_, err := client.Get(ctx, "a").Result()
	assert.ErrorIs(t, err, redis.Nil)

	pipe := client.Pipeline()
	set := pipe.Set(ctx, "p", "q", 0)
	get := pipe.Get(ctx, "p")
	_, err = pipe.Exec(ctx)
	require.NoError(t, err)
	assert.Equal(t, "OK", set.Val())
	assert.Equal(t, "q", get.Val())
}

// A cluster client learns from CLUSTER SLOTS that the proxy serves every
// slot, and COMMAND gives it the key positions.
func TestGoRedisClusterClientStaysOnTheProxy(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(3), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}})
	t.Cleanup(func() { _ = client.Close() })

	for _, key := range []string{"alpha", "beta", "gamma", "delta"} {
		require.NoError(t, client.Set(ctx, key, key+"!", 0).Err())
		assert.Equal(t, key+"!", client.Get(ctx, key).Val())
	}
	shards, err := client.ClusterSlots(ctx).Result()
	require.NoError(t, err)
	require.Len(t, shards, 1)
	assert.Equal(t, addr, shards[0].Nodes[0].Addr)
	shardList, err := client.ClusterShards(ctx).Result()
	require.NoError(t, err)
	require.Len(t, shardList, 1)
	assert.Equal(t, []redis.SlotRange{{Start: 0, End: 16383}}, shardList[0].Slots)
	assert.Equal(t, "master", shardList[0].Nodes[0].Role)
	info, err := client.Command(ctx).Result()
	require.NoError(t, err)
	assert.True(t, info["get"].ReadOnly)
	assert.Equal(t, int8(1), info["set"].FirstKeyPos)
}

// goRedisClient is a go-redis client with default options, closed when the
// test ends.
func goRedisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = client.Close() })
	return client
}
