package controller

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
)

// gateway forwards to a controller, or answers 503 while down.
type gateway struct {
	url  string
	down atomic.Bool
}

func newGateway(t *testing.T, target string) *gateway {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	g := &gateway{}
	forward := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.down.Load() {
			http.Error(w, "controller down", http.StatusServiceUnavailable)
			return
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

// serverFailover runs CLUSTERX FAILOVER on shard's master, as a client
// through the proxy would, and waits for its success.
func serverFailover(t *testing.T, sim *kvsim.Cluster, shard int) (oldMaster, newMaster string) {
	t.Helper()
	s := sim.Topology().Shards[shard]
	rdb := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
	defer rdb.Close()
	ctx := t.Context()
	require.NoError(t, rdb.Do(ctx, "CLUSTERX", "FAILOVER", s.Replicas[0].ID, "3000").Err())
	require.Eventually(t, func() bool {
		info, err := rdb.ClusterInfo(ctx).Result()
		return err == nil && kvsim.ParseInfoFields(info)["cluster_failover_state"] == "success"
	}, 10*time.Second, 10*time.Millisecond)
	return s.Master.Addr, s.Replicas[0].Addr
}

// A failover the servers did is recorded by the controller: its topology
// names the new master, at a higher version; recording it again is a no-op.
func TestFailoverTheServersDidIsRecorded(t *testing.T) {
	sim := startKvsim(t)
	cl := newClient(t, sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "")
	before := sim.Topology().Version
	oldMaster, newMaster := serverFailover(t, sim, 0)
	require.NoError(t, cl.RecordFailover(t.Context(), oldMaster, newMaster))
	topo := sim.Topology()
	assert.Equal(t, newMaster, topo.Shards[0].Master.Addr)
	assert.Greater(t, topo.Version, before)
	require.NoError(t, cl.RecordFailover(t.Context(), oldMaster, newMaster), "already recorded")
	assert.Equal(t, topo.Version, sim.Topology().Version, "nothing pushed")

	other := sim.Topology().Shards[1]
	err := cl.RecordFailover(t.Context(), "10.0.0.1:1", other.Replicas[0].Addr)
	require.ErrorIs(t, err, ErrMovedOn)
	var e *Error
	require.ErrorAs(t, cl.RecordFailover(t.Context(), "10.0.0.1:1", "10.0.0.2:2"), &e)
	assert.Contains(t, e.Message, "not in the controller's cluster")
}

// A controller that cannot be reached is an *Error without status.
func TestRecordFailoverWithTheControllerDown(t *testing.T) {
	sim := startKvsim(t)
	gate := newGateway(t, sim.ControllerAPIURL())
	cl := newClient(t, gate.url, kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "")
	gate.down.Store(true)
	s := sim.Topology().Shards[0]
	var e *Error
	require.ErrorAs(t, cl.RecordFailover(t.Context(), s.Master.Addr, s.Replicas[0].Addr), &e)
	assert.Equal(t, 503, e.Status)
	gate.down.Store(false)
	require.NoError(t, cl.RecordFailover(t.Context(), s.Master.Addr, s.Replicas[0].Addr))
	assert.Equal(t, s.Replicas[0].Addr, sim.Topology().Shards[0].Master.Addr)
}

// Failover asks the controller's CLIENT PAUSE failover for the shard of the
// given replica, by id or address.
func TestFailoverThroughTheController(t *testing.T) {
	sim := startKvsim(t)
	cl := newClient(t, sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s := sim.Topology().Shards[0]
	require.NoError(t, cl.Failover(ctx, s.Replicas[0].ID))
	assert.Equal(t, s.Replicas[0].Addr, sim.Topology().Shards[0].Master.Addr)
	require.NoError(t, cl.Failover(ctx, s.Master.Addr), "and back, by address")
	assert.Equal(t, s.Master.Addr, sim.Topology().Shards[0].Master.Addr)

	var e *Error
	require.ErrorAs(t, cl.Failover(ctx, s.Master.ID), &e)
	assert.Contains(t, e.Message, "already the master")
	require.ErrorAs(t, cl.Failover(ctx, "0123456789012345678901234567890123456789"), &e)
	assert.Contains(t, e.Message, "not in the controller's cluster")
}
