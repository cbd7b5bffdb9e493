package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

// clientTimeout bounds one client call or one redis-cli run.
const clientTimeout = 10 * time.Second

// keysAcrossSlots returns n keys named prefix:0..n-1; with n of 20 or more
// they land on every shard of a 3-master cluster.
func keysAcrossSlots(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + ":" + strconv.Itoa(i)
	}
	return keys
}

// redisCLI runs redis-cli against addr and returns its output, trimmed.
// Its output is not a terminal, so replies come in raw form, one value a
// line, and error replies are printed as they are received.
func redisCLI(t *testing.T, bin, addr string, args ...string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	require.NoError(t, ctx.Err(), "redis-cli %v timed out", args)
	// redis-cli exits 1 after an error reply; the reply is what is checked.
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		require.NoError(t, err, "redis-cli %v: %s", args, stderr.String())
	}
	require.Empty(t, stderr.String(), "redis-cli %v", args)
	return strings.TrimSpace(stdout.String())
}

func TestRedisCLI(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			addr := proxyAddr(t, backend)
			bin := loadgen.RequireBinary(t, "redis-cli")
			cli := func(args ...string) string { t.Helper(); return redisCLI(t, bin, addr, args...) }

			assert.Equal(t, "PONG", cli("PING"))
			assert.Equal(t, "OK", cli("SET", "cli:string", "hello world"))
			assert.Equal(t, "hello world", cli("GET", "cli:string"))
			cli("DEL", "cli:counter")
			assert.Equal(t, "1", cli("INCR", "cli:counter"))
			assert.Equal(t, "11", cli("INCRBY", "cli:counter", "10"))
			cli("DEL", "cli:list")
			assert.Equal(t, "3", cli("RPUSH", "cli:list", "a", "b", "c"))
			assert.Equal(t, "a\nb\nc", cli("LRANGE", "cli:list", "0", "-1"))
			assert.Equal(t, "OK", cli("MSET", "cli:m:1", "x", "cli:m:2", "y", "cli:m:3", "z"))
			assert.Equal(t, "x\ny\nz", cli("MGET", "cli:m:1", "cli:m:2", "cli:m:3"))
			assert.Equal(t, "3", cli("DEL", "cli:m:1", "cli:m:2", "cli:m:3"))
			assert.Equal(t,
				"WRONGTYPE Operation against a key holding the wrong kind of value",
				cli("LPUSH", "cli:string", "x"))
			assert.True(t, strings.HasPrefix(cli("NOSUCHCOMMAND"), "ERR unknown command"))

			// Without --cluster, CLUSTER SLOTS shows the proxy alone owning
			// every slot: start, end, then host, port and id of the proxy.
			host, port, _ := net.SplitHostPort(addr)
			slots := strings.Split(cli("CLUSTER", "SLOTS"), "\n")
			require.Len(t, slots, 5, "CLUSTER SLOTS: %q", slots)
			assert.Equal(t, []string{"0", "16383", host, port}, slots[:4])
			assert.Len(t, slots[4], 40, "node id")
		})
	}
}

// TestGoRedis drives the proxy with go-redis v9 in its default settings: it
// opens every connection with HELLO 3 and speaks RESP3.
func TestGoRedis(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			addr := proxyAddr(t, backend)
			t.Run("client", func(t *testing.T) {
				c := redis.NewClient(&redis.Options{Addr: addr})
				t.Cleanup(func() { c.Close() })
				exerciseGoRedis(t, c, "goredis")
			})
			t.Run("cluster client", func(t *testing.T) {
				c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}})
				t.Cleanup(func() { c.Close() })
				exerciseGoRedis(t, c, "goredis-cluster")
				ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
				defer cancel()
				var shards []string
				require.NoError(t, c.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error {
					shards = append(shards, shard.Options().Addr)
					return nil
				}))
				assert.Equal(t, []string{addr}, shards, "the cluster client sees the proxy as the only node")
			})
		})
	}
}

func exerciseGoRedis(t *testing.T, c redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	keys := keysAcrossSlots(prefix, 30)

	require.NoError(t, c.Set(ctx, keys[0], "v0", 0).Err())
	got, err := c.Get(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.Equal(t, "v0", got)
	assert.ErrorIs(t, c.Get(ctx, prefix+":missing").Err(), redis.Nil)

	pairs := make([]any, 0, 2*len(keys))
	want := make([]any, len(keys))
	for i, k := range keys {
		pairs = append(pairs, k, "value-"+strconv.Itoa(i))
		want[i] = "value-" + strconv.Itoa(i)
	}
	require.NoError(t, c.MSet(ctx, pairs...).Err())
	assert.Equal(t, want, c.MGet(ctx, keys...).Val(), "MGET across slots")

	// A pipeline mixing slots and commands; replies come back in order.
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			p.Incr(ctx, k+":n")
			p.Get(ctx, keys[i])
		}
		return nil
	})
	require.NoError(t, err)
	require.Len(t, cmds, 2*len(keys))
	for i := range keys {
		assert.Positive(t, cmds[2*i].(*redis.IntCmd).Val())
		assert.Equal(t, want[i], cmds[2*i+1].(*redis.StringCmd).Val())
	}

	require.NoError(t, c.HSet(ctx, prefix+":hash", "f1", "a", "f2", "b").Err())
	assert.Equal(t, map[string]string{"f1": "a", "f2": "b"}, c.HGetAll(ctx, prefix+":hash").Val())
	deleted, err := c.Del(ctx, append(keys, prefix+":hash")...).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(len(keys)+1), deleted)
	assert.Equal(t, int64(0), c.Exists(ctx, keys...).Val())

	err = c.LPush(ctx, keys[0]+":n", "x").Err()
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "WRONGTYPE"), err.Error())
	for _, k := range keys {
		assert.NoError(t, c.Del(ctx, k+":n").Err())
	}
}

// TestRueidis drives the proxy with rueidis speaking RESP2. rueidis finds the
// proxy's CLUSTER SLOTS and so runs its cluster client against it.
func TestRueidis(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			addr := proxyAddr(t, backend)
			c, err := rueidis.NewClient(rueidis.ClientOption{
				InitAddress:  []string{addr},
				AlwaysRESP2:  true,
				DisableCache: true,
			})
			require.NoError(t, err)
			t.Cleanup(c.Close)
			assert.Equal(t, []string{addr}, mapKeys(c.Nodes()))

			ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
			defer cancel()
			keys := keysAcrossSlots("rueidis", 30)
			require.NoError(t, c.Do(ctx, c.B().Set().Key(keys[0]).Value("v0").Build()).Error())
			got, err := c.Do(ctx, c.B().Get().Key(keys[0]).Build()).ToString()
			require.NoError(t, err)
			assert.Equal(t, "v0", got)
			assert.True(t, rueidis.IsRedisNil(c.Do(ctx, c.B().Get().Key("rueidis:missing").Build()).Error()))

			// A pipeline across slots.
			cmds := make(rueidis.Commands, 0, 2*len(keys))
			for i, k := range keys {
				cmds = append(cmds, c.B().Set().Key(k).Value(fmt.Sprint("value-", i)).Build())
			}
			for _, k := range keys {
				cmds = append(cmds, c.B().Get().Key(k).Build())
			}
			results := c.DoMulti(ctx, cmds...)
			require.Len(t, results, 2*len(keys))
			for i := range keys {
				assert.NoError(t, results[i].Error())
				v, err := results[len(keys)+i].ToString()
				assert.NoError(t, err)
				assert.Equal(t, fmt.Sprint("value-", i), v)
			}

			// MGET within one hash tag as one command, and across slots
			// through rueidis' helper, which splits it by slot.
			tagged := []string{"{rueidis}:a", "{rueidis}:b"}
			require.NoError(t, c.Do(ctx, c.B().Mset().KeyValue().KeyValue(tagged[0], "A").KeyValue(tagged[1], "B").Build()).Error())
			values, err := c.Do(ctx, c.B().Mget().Key(tagged...).Build()).AsStrSlice()
			require.NoError(t, err)
			assert.Equal(t, []string{"A", "B"}, values)
			byKey, err := rueidis.MGet(c, ctx, keys)
			require.NoError(t, err)
			for i, k := range keys {
				msg := byKey[k]
				v, err := msg.ToString()
				assert.NoError(t, err)
				assert.Equal(t, fmt.Sprint("value-", i), v)
			}

			err = c.Do(ctx, c.B().Lpush().Key(keys[0]).Element("x").Build()).Error()
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "WRONGTYPE"), err.Error())
			for _, k := range append(keys, tagged...) {
				assert.NoError(t, c.Do(ctx, c.B().Del().Key(k).Build()).Error())
			}
		})
	}
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
