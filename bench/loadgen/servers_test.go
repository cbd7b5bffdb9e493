package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestRedisBenchmarkThroughRedisAndTwemproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	RequireBinary(t, "redis-benchmark")
	server := StartRedis(t, RedisOptions{})
	proxy := StartTwemproxy(t, TwemproxyOptions{Servers: []string{server.Addr()}})
	ctx := testContext(t)
	for name, addr := range map[string]string{"redis-server": server.Addr(), "twemproxy": proxy.Addr()} {
		res, err := RunRedisBenchmark(ctx, BenchmarkOptions{Addr: addr, Clients: 10, Requests: 2000, Pipeline: 4,
			Keyspace: 1000, Tests: []string{"set", "get"}})
		require.NoError(t, err, name)
		require.Len(t, res.Tests, 2, name)
		for _, tr := range res.Tests {
			assert.Positive(t, tr.RequestsPerSec, "%s %s", name, tr.Name)
			assert.Positive(t, tr.MaxLatency, "%s %s", name, tr.Name)
		}
	}
	for name, pid := range map[string]int{"redis-server": server.Pid(), "twemproxy": proxy.Pid()} {
		_, err := CPUTime(pid)
		assert.NoError(t, err, name)
	}
}

func TestStartRedisClusterOwnsEverySlot(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	server := StartRedis(t, RedisOptions{Cluster: true, Password: "s3cret"})
	ctx := testContext(t)

	assert.ErrorContains(t, ping(ctx, server.Addr(), ""), "NOAUTH")
	client := redis.NewClient(&redis.Options{Addr: server.Addr(), Password: "s3cret"})
	t.Cleanup(func() { client.Close() })
	info, err := client.ClusterInfo(ctx).Result()
	require.NoError(t, err)
	assert.Contains(t, info, "cluster_state:ok")
	assert.Contains(t, info, "cluster_slots_assigned:16384")
	require.NoError(t, client.Set(ctx, "some-key", "v", 0).Err())
	assert.Equal(t, "v", client.Get(ctx, "some-key").Val())
}

func TestRedisServerCloseKillsIt(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	server := StartRedis(t, RedisOptions{})
	require.NoError(t, ping(testContext(t), server.Addr(), ""))
	server.Close()
	assert.True(t, server.proc.exited())
	assert.NoDirExists(t, server.Dir())
	server.Close() // a second Close, as t.Cleanup will do, is harmless
}

func TestStartRedisReportsAStartupFailure(t *testing.T) {
	RequireBinary(t, "redis-server")
	_, err := LaunchRedis(testContext(t), RedisOptions{ExtraArgs: []string{"--no-such-option", "1"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exited before answering PING")
	assert.Contains(t, err.Error(), "no-such-option", "the error quotes the server's log")
}

func TestLaunchTwemproxyChecksItsConfiguration(t *testing.T) {
	RequireBinary(t, "nutcracker")
	_, err := LaunchTwemproxy(testContext(t), TwemproxyOptions{Servers: []string{"127.0.0.1:notaport"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--test-conf")

	_, err = LaunchTwemproxy(testContext(t), TwemproxyOptions{})
	assert.ErrorContains(t, err, "Servers is empty")
	_, err = LaunchTwemproxy(testContext(t), TwemproxyOptions{Servers: []string{"no-port"}})
	assert.Error(t, err)
}

func TestTwemproxyConfig(t *testing.T) {
	conf := string(twemproxyConfig("127.0.0.1:22121", TwemproxyOptions{
		Servers: []string{"127.0.0.1:7001", "127.0.0.1:7002"}, Password: `p"w`}))
	assert.Equal(t, strings.Join([]string{
		"bench:",
		"  listen: 127.0.0.1:22121",
		"  redis: true",
		`  redis_auth: "p\"w"`,
		"  hash: fnv1a_64",
		"  distribution: ketama",
		"  auto_eject_hosts: false",
		"  preconnect: true",
		"  servers:",
		"    - 127.0.0.1:7001:1",
		"    - 127.0.0.1:7002:1",
		"",
	}, "\n"), conf)
}

func TestLaunchersReportMissingBinaries(t *testing.T) {
	ctx := testContext(t)
	_, err := LaunchRedis(ctx, RedisOptions{Binary: "/nonexistent/redis-server"})
	assert.ErrorIs(t, err, ErrBinaryMissing)
	_, err = LaunchTwemproxy(ctx, TwemproxyOptions{Binary: "/nonexistent/nutcracker", Servers: []string{"127.0.0.1:1"}})
	assert.ErrorIs(t, err, ErrBinaryMissing)
}
