package loadgen

import (
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLaunchKvproxyChecksItsOptions(t *testing.T) {
	ctx := testContext(t)
	_, err := LaunchKvproxy(ctx, KvproxyOptions{Seeds: []string{"127.0.0.1:1"}})
	assert.ErrorContains(t, err, "Binary is empty")
	_, err = LaunchKvproxy(ctx, KvproxyOptions{Binary: "/nonexistent/kvproxy"})
	assert.ErrorContains(t, err, "Seeds is empty")
	_, err = LaunchKvproxy(ctx, KvproxyOptions{Binary: "/nonexistent/kvproxy", Seeds: []string{"127.0.0.1:1"}})
	assert.ErrorIs(t, err, ErrBinaryMissing)
}

func TestLaunchKvproxyReportsAStartupFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	bin := kvproxyBuild.Binary(t)
	// A closed listener's address refuses connections: kvproxy cannot load
	// the topology from it and exits.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = LaunchKvproxy(testContext(t), KvproxyOptions{Binary: bin, Seeds: []string{refused}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exited before answering PING")
	assert.Contains(t, err.Error(), refused, "the error quotes kvproxy's log")
}

func TestLaunchKvproxyServesTheCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	bin := kvproxyBuild.Binary(t)
	server := StartRedis(t, RedisOptions{Cluster: true})
	ctx := testContext(t)
	kvproxy, err := LaunchKvproxy(ctx, KvproxyOptions{Binary: bin, Seeds: []string{server.Addr()},
		ExtraArgs: []string{"--backend-conns", "2"}})
	require.NoError(t, err)
	t.Cleanup(kvproxy.Close)

	client := redis.NewClient(&redis.Options{Addr: kvproxy.Addr(), Protocol: 2})
	t.Cleanup(func() { client.Close() })
	require.NoError(t, client.Set(ctx, "through-kvproxy", "v", 0).Err())
	direct := redis.NewClient(&redis.Options{Addr: server.Addr()})
	t.Cleanup(func() { direct.Close() })
	assert.Equal(t, "v", direct.Get(ctx, "through-kvproxy").Val(), "the SET reached redis-server")
	_, err = CPUTime(kvproxy.Pid())
	assert.NoError(t, err)

	kvproxy.Close()
	assert.True(t, kvproxy.proc.exited())
	assert.NoDirExists(t, kvproxy.dir)
}
