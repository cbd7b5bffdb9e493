package controller

import (
	"context"
	"io"
	"log/slog"
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

func newAuthority(t *testing.T, base string) *Authority {
	t.Helper()
	a := NewAuthority(newClient(t, base, kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, ""),
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.retryMin = 20 * time.Millisecond
	t.Cleanup(a.Close)
	return a
}

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

// A failover the servers did is recorded by the controller on the proxy's
// report: its topology names the new master, at a higher version.
func TestReportedFailoverIsRecordedByTheController(t *testing.T) {
	sim := startKvsim(t)
	a := newAuthority(t, sim.ControllerAPIURL())
	before := sim.Topology().Version
	oldMaster, newMaster := serverFailover(t, sim, 0)
	a.Report(oldMaster, newMaster)
	require.Eventually(t, func() bool { return a.Stats().Pending == 0 }, 10*time.Second, 10*time.Millisecond,
		"report pending: %+v", a.Stats())
	st := a.Stats()
	assert.Equal(t, uint64(1), st.Recorded, "%+v", st)
	topo := sim.Topology()
	assert.Equal(t, newMaster, topo.Shards[0].Master.Addr)
	assert.Greater(t, topo.Version, before)
}

// While the controller cannot be reached the report waits, counted, and is
// recorded once it can.
func TestReportIsRetriedUntilTheControllerAnswers(t *testing.T) {
	sim := startKvsim(t)
	gate := newGateway(t, sim.ControllerAPIURL())
	a := newAuthority(t, gate.url)
	gate.down.Store(true)
	oldMaster, newMaster := serverFailover(t, sim, 1)
	a.Report(oldMaster, newMaster)
	require.Eventually(t, func() bool { return a.Stats().Failures >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, a.Stats().Pending)
	assert.NotEmpty(t, a.Stats().LastError)
	gate.down.Store(false)
	require.Eventually(t, func() bool { return a.Stats().Pending == 0 }, 20*time.Second, 10*time.Millisecond)
	assert.Equal(t, newMaster, sim.Topology().Shards[1].Master.Addr)
}

// A failover undone (failed back) before the controller recorded it leaves
// nothing to report.
func TestReportOfAFailBackCancelsThePendingOne(t *testing.T) {
	sim := startKvsim(t)
	gate := newGateway(t, sim.ControllerAPIURL())
	a := newAuthority(t, gate.url)
	gate.down.Store(true)
	a.Report("10.0.0.1:1", "10.0.0.2:2")
	assert.Equal(t, 1, a.Stats().Pending)
	a.Report("10.0.0.2:2", "10.0.0.1:1")
	assert.Equal(t, 0, a.Stats().Pending)
}

// Failover asks the controller's CLIENT PAUSE failover for the shard of the
// given replica, by id or address.
func TestFailoverThroughTheController(t *testing.T) {
	sim := startKvsim(t)
	a := newAuthority(t, sim.ControllerAPIURL())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s := sim.Topology().Shards[0]
	require.NoError(t, a.Failover(ctx, s.Replicas[0].ID))
	assert.Equal(t, s.Replicas[0].Addr, sim.Topology().Shards[0].Master.Addr)
	require.NoError(t, a.Failover(ctx, s.Master.Addr), "and back, by address")
	assert.Equal(t, s.Master.Addr, sim.Topology().Shards[0].Master.Addr)

	err := a.Failover(ctx, s.Master.ID)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Contains(t, e.Message, "already the master")
	err = a.Failover(ctx, "0123456789012345678901234567890123456789")
	require.ErrorAs(t, err, &e)
	assert.Contains(t, e.Message, "not in the controller's cluster")
}
