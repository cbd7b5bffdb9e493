package main

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
)

// startControlledKvsim starts a 3 x 1 kvsim cluster serving its
// controller's HTTP API; released: without CLUSTERX FAILOVER.
func startControlledKvsim(t *testing.T, released bool) *kvsim.Cluster {
	t.Helper()
	cfg := kvsim.DefaultClusterConfig()
	cfg.Released = released
	cfg.Controller.AutoFailover = false
	cfg.ControllerAPI.Listen = "127.0.0.1:0"
	sim, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	return sim
}

// proxyArgs starts kvproxy in front of sim, with its controller unless
// withController is false.
func proxyArgs(sim *kvsim.Cluster, withController bool) []string {
	args := []string{"--listen", "127.0.0.1:0", "--seeds", sim.Nodes()[0].Addr()}
	if withController {
		args = append(args, "--controller", sim.ControllerAPIURL(),
			"--controller-namespace", kvsim.DefaultAPINamespace, "--controller-cluster", kvsim.DefaultAPICluster)
	}
	return args
}

// writer SETs fresh keys through the proxy until stopped and reports every
// error and every key it was told OK for.
type writer struct {
	stop   atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  []string
	errors []error
}

func startWriter(c *redis.Client, workers int) *writer {
	w := &writer{}
	for i := range workers {
		w.wg.Go(func() {
			for n := 0; !w.stop.Load(); n++ {
				key := "w" + strconv.Itoa(i) + ":" + strconv.Itoa(n)
				err := c.Set(context.Background(), key, key, 0).Err()
				w.mu.Lock()
				if err != nil {
					w.errors = append(w.errors, err)
				} else {
					w.acked = append(w.acked, key)
				}
				w.mu.Unlock()
			}
		})
	}
	return w
}

// end stops the writer and checks that it saw no error and that every
// acknowledged key reads back.
func (w *writer) end(t *testing.T, c *redis.Client) {
	t.Helper()
	w.stop.Store(true)
	w.wg.Wait()
	assert.Empty(t, w.errors, "client errors")
	lost := 0
	for _, k := range w.acked {
		if v, err := c.Get(context.Background(), k).Result(); err != nil || v != k {
			lost++
		}
	}
	assert.Zero(t, lost, "acknowledged writes lost, of %d", len(w.acked))
	t.Logf("%d acknowledged writes, %d errors, %d lost", len(w.acked), len(w.errors), lost)
}

// On released Kvrocks, CLUSTERX FAILOVER through a proxy started with
// --controller is the controller's failover, hidden from clients: no
// error, no acknowledged write lost, the controller's topology swapped;
// run again for the new replica, it fails back.
func TestClusterxFailoverOnReleasedKvrocksGoesThroughTheController(t *testing.T) {
	sim := startControlledKvsim(t, true)
	addr, _, _, stop := runInBackground(t, proxyArgs(sim, true), noEnv)
	defer stop()
	c := newClient(t, addr, "")
	ctx := context.Background()
	w := startWriter(c, 4)
	for round := range 2 {
		time.Sleep(300 * time.Millisecond)
		s := sim.Topology().Shards[0]
		require.Equal(t, "OK", c.Do(ctx, "CLUSTERX", "FAILOVER", s.Replicas[0].ID).Val(), "round %d", round)
		assert.Equal(t, s.Replicas[0].Addr, sim.Topology().Shards[0].Master.Addr, "round %d: the controller swapped the roles", round)
	}
	time.Sleep(300 * time.Millisecond)
	w.end(t, c)
}

// Without --controller, the same command is a clear error saying what to do.
func TestClusterxFailoverOnReleasedKvrocksWithoutController(t *testing.T) {
	sim := startControlledKvsim(t, true)
	addr, _, _, stop := runInBackground(t, proxyArgs(sim, false), noEnv)
	defer stop()
	c := newClient(t, addr, "")
	s := sim.Topology().Shards[0]
	err := c.Do(context.Background(), "CLUSTERX", "FAILOVER", s.Replicas[0].ID).Err()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ERR this Kvrocks has no CLUSTERX FAILOVER")
	assert.Contains(t, err.Error(), "--controller")
	assert.Equal(t, s.Master.Addr, sim.Topology().Shards[0].Master.Addr, "nothing failed over")
}

// Issue 10's reproduction: a CLUSTERX FAILOVER through the proxy (the
// server's own, kvrocks#3295), a write acknowledged after it, then an
// unrelated failover by the controller of another shard, which pushes the
// controller's whole topology: the write still reads back, since the proxy
// had the controller record the first failover.
func TestControllerPushAfterAProxiedFailoverKeepsItsWrites(t *testing.T) {
	sim := startControlledKvsim(t, false)
	addr, _, _, stop := runInBackground(t, proxyArgs(sim, true), noEnv)
	defer stop()
	c := newClient(t, addr, "")
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "b", "before", 0).Err())
	slot := 3300 // "b" is in slot 3300, shard 0
	s := sim.Topology().Shards[0]
	require.True(t, s.Master.Addr == sim.MasterOfSlot(slot).Addr(), "b's slot is shard 0's")
	require.Equal(t, "OK", c.Do(ctx, "CLUSTERX", "FAILOVER", s.Replicas[0].ID, "3000").Val())
	require.Eventually(t, func() bool { return sim.Topology().Shards[0].Master.Addr == s.Replicas[0].Addr },
		20*time.Second, 10*time.Millisecond, "the controller recorded the failover done through the proxy")
	require.NoError(t, c.Set(ctx, "b", "acknowledged-after-failover", 0).Err())

	opts := kvsim.DefaultFailoverOptions()
	require.NoError(t, sim.Controller().FailoverShard(ctx, 1, opts), "an unrelated controller failover")
	assert.Equal(t, "acknowledged-after-failover", c.Get(ctx, "b").Val())
	assert.Equal(t, s.Replicas[0].Addr, sim.Topology().Shards[0].Master.Addr)
}
