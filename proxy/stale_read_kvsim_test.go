package proxy

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/failover"
	"kvproxy/router"
)

// A pipeline that sets keys and reads each back right after its SET reads
// the value it set while CLUSTERX FAILOVER through the proxy hands the keys'
// shard back and forth and the controller commits each swapped topology, as
// the soak does. At the failover's pause the master refuses the SETs with
// TRYAGAIN but answers the GETs behind them: the proxy must resend those
// GETs after the SETs, not return what they read before the SETs ran.
func TestNoStaleReadThroughClusterxFailoversAndCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := kvsim.DefaultClusterConfig()
	cfg.ReplDelay = 50 * time.Millisecond // as the soak's
	sim, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	addr := startFailoverProxyOn(t, sim, false)
	admin := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1})
	defer admin.Close()
	// Keys of shard 0 (slots 0-5460).
	var keys []string
	for i := 0; len(keys) < 8; i++ {
		if k := "stale:" + strconv.Itoa(i); router.Slot([]byte(k)) <= 5460 {
			keys = append(keys, k)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var stale []string
	var errs []error
	pipelines := 0
	wg.Go(func() {
		cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1})
		defer cl.Close()
		for i := 1; ctx.Err() == nil; i++ {
			// Each key is set, then read in the same pipeline: a reply in
			// order promises the read ran after the write.
			pipe := cl.Pipeline()
			gets := make([]*redis.StringCmd, len(keys))
			for j, k := range keys {
				pipe.Set(ctx, k, i, 0)
				gets[j] = pipe.Get(ctx, k)
			}
			cmds, err := pipe.Exec(ctx)
			if err != nil {
				if ctx.Err() == nil {
					for _, c := range cmds {
						if c.Err() != nil {
							errs = append(errs, c.Err())
						}
					}
				}
				return
			}
			pipelines++
			for j, g := range gets {
				if got := g.Val(); got != strconv.Itoa(i) {
					stale = append(stale, keys[j]+": want "+strconv.Itoa(i)+", got "+got)
				}
			}
		}
	})

	for round := range 8 {
		master := sim.Masters()[0]
		replica := sim.ReplicasOf(master.ID())[0]
		require.Eventually(t, func() bool {
			nodes, _ := admin.Do(ctx, "PROXY", "NODES").Text()
			return isReplicaLine(nodes, replica.ID(), master.ID())
		}, 15*time.Second, 20*time.Millisecond, "round %d: the proxy knows %s as the replica", round, replica.Addr())
		direct := redis.NewClient(&redis.Options{Addr: master.Addr(), Protocol: 2, MaxRetries: -1})
		viaReplica := redis.NewClient(&redis.Options{Addr: replica.Addr(), Protocol: 2, MaxRetries: -1})
		var phase failover.Phase
		for attempt := 0; phase != failover.PhaseSuccess; attempt++ {
			require.Less(t, attempt, 5, "round %d: the failover keeps failing", round)
			// After a commit the old master resyncs in full before it can
			// take over again.
			require.Eventually(t, func() bool {
				return strings.Contains(viaReplica.Info(ctx, "replication").Val(), "master_link_status:up")
			}, 15*time.Second, 10*time.Millisecond)
			require.Equal(t, "OK", admin.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "3000").Val(), "round %d", round)
			require.Eventually(t, func() bool {
				info, err := direct.ClusterInfo(ctx).Result()
				if err != nil {
					return false
				}
				phase, err = failover.ParsePhase([]byte(info))
				return err == nil && phase.Final()
			}, 15*time.Second, 10*time.Millisecond)
		}
		direct.Close()
		viaReplica.Close()
		require.NoError(t, sim.Controller().CommitHandover(ctx, 0, replica.ID()))
	}
	cancel()
	wg.Wait()
	assert.Empty(t, errs)
	assert.Positive(t, pipelines)
	assert.Empty(t, stale, "stale reads in %d pipelines", pipelines)
	t.Logf("%d pipelines, %d stale reads", pipelines, len(stale))
}

// isReplicaLine reports whether CLUSTER NODES text lists id as a replica
// of master.
func isReplicaLine(nodes, id, master string) bool {
	for line := range strings.SplitSeq(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == id && f[2] == "slave" && f[3] == master {
			return true
		}
	}
	return false
}
