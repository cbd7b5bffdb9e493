package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/bench/loadgen"
	"kvproxy/failover"
	"kvproxy/proxy"
	"kvproxy/router"
)

// failoverProxy is a kvsim cluster with a proxy in front, built as
// cmd/kvproxy builds it (failover.Holds as the router's gate and the
// proxy's handovers).
type failoverProxy struct {
	sim  *kvsim.Cluster
	rt   *router.Router
	addr string
}

func startFailoverProxy(t *testing.T, replDelay time.Duration) *failoverProxy {
	t.Helper()
	cfg := kvsim.DefaultClusterConfig()
	cfg.ReplDelay = replDelay
	sim, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)

	fp := &failoverProxy{sim: sim}
	hcfg := failover.DefaultHoldsConfig()
	hcfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return fp.rt.DialNode(ctx, addr) }
	holds, err := failover.NewHolds(hcfg)
	require.NoError(t, err)
	t.Cleanup(holds.Close)
	rcfg := router.DefaultConfig()
	rcfg.Seeds = []string{sim.Masters()[0].Addr()}
	rcfg.Gate = holds
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fp.rt, err = router.New(ctx, rcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = fp.rt.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	pcfg := proxy.DefaultConfig()
	pcfg.ListenAddr, pcfg.AnnounceAddr = ln.Addr().String(), ln.Addr().String()
	pcfg.Handovers = holds
	srv, err := proxy.New(pcfg, fp.rt)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Close())
		assert.ErrorIs(t, <-served, proxy.ErrServerClosed)
	})
	fp.addr = ln.Addr().String()
	return fp
}

// TestFailoverThroughTheProxyIsInvisible is the failover issue's first
// acceptance run: redis-benchmark (SET and GET over every shard, pipeline 1
// and 16) in a loop through the proxy while `redis-cli CLUSTERX FAILOVER
// <replica-id> 3000` goes through the proxy, with a 200 ms replication
// delay. Every redis-benchmark run exits 0 (it exits 1 at the first error
// reply), a writer finds every write it got OK for afterwards, the failover
// succeeded, writes were held, and the shard's writes land on the new
// master.
func TestFailoverThroughTheProxyIsInvisible(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	loadgen.RequireBinary(t, "redis-benchmark")
	redisCLI := loadgen.RequireBinary(t, "redis-cli")
	fp := startFailoverProxy(t, 200*time.Millisecond)
	master := fp.sim.Masters()[0]
	replica := fp.sim.ReplicasOf(master.ID())[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var stop atomic.Bool
	var wg sync.WaitGroup
	var benchMu sync.Mutex
	var benchErrs []error
	benchRuns := 0
	for _, pipeline := range []int{1, 16} {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				_, err := loadgen.RunRedisBenchmark(ctx, loadgen.BenchmarkOptions{
					Addr: fp.addr, Clients: 25, Requests: 5000 * pipeline, Pipeline: pipeline,
					Keyspace: 100000, Tests: []string{"set", "get"},
				})
				benchMu.Lock()
				benchRuns++
				if err != nil {
					benchErrs = append(benchErrs, err)
				}
				benchMu.Unlock()
			}
		})
	}
	client := redis.NewClient(&redis.Options{Addr: fp.addr, PoolSize: 4})
	defer client.Close()
	var ackMu sync.Mutex
	acked := map[string]bool{}
	var writeErrs []string
	wg.Go(func() {
		for n := 0; !stop.Load() && ctx.Err() == nil; n++ {
			pipe := client.Pipeline()
			cmds := make([]*redis.StatusCmd, 8)
			for i := range cmds {
				key := fmt.Sprintf("acked:%d:%d", n, i)
				cmds[i] = pipe.Set(ctx, key, key, 0)
			}
			_, _ = pipe.Exec(ctx)
			ackMu.Lock()
			for i, c := range cmds {
				key := fmt.Sprintf("acked:%d:%d", n, i)
				if c.Err() == nil {
					acked[key] = true
				} else {
					writeErrs = append(writeErrs, key+": "+c.Err().Error())
				}
			}
			ackMu.Unlock()
		}
	})

	time.Sleep(500 * time.Millisecond)
	out, err := exec.CommandContext(ctx, redisCLI, "-h", "127.0.0.1", "-p", portOf(fp.addr),
		"CLUSTERX", "FAILOVER", replica.ID(), "3000").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "OK", strings.TrimSpace(string(out)))
	direct := redis.NewClient(&redis.Options{Addr: master.Addr()})
	defer direct.Close()
	require.Eventually(t, func() bool {
		info, _ := direct.Do(ctx, "CLUSTER", "INFO").Text()
		phase, _ := failover.ParsePhase([]byte(info))
		return phase.Final()
	}, 30*time.Second, 5*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	info, err := direct.Do(ctx, "CLUSTER", "INFO").Text()
	require.NoError(t, err)
	phase, err := failover.ParsePhase([]byte(info))
	require.NoError(t, err)
	assert.Equal(t, failover.PhaseSuccess, phase)
	assert.Positive(t, benchRuns)
	assert.Empty(t, benchErrs, "every redis-benchmark run exits 0")
	assert.Empty(t, writeErrs, "no write fails")
	st := fp.rt.Stats()
	t.Logf("router stats: %+v", st)
	assert.Positive(t, st.Held, "writes were held during the handover")
	assert.Equal(t, st.Held, st.Released+st.Expired+st.Abandoned, "held = released + expired + abandoned")
	assert.Zero(t, st.Expired)

	ackMu.Lock()
	defer ackMu.Unlock()
	require.NotEmpty(t, acked)
	pipe := client.Pipeline()
	gets := map[string]*redis.StringCmd{}
	for key := range acked {
		gets[key] = pipe.Get(ctx, key)
	}
	_, err = pipe.Exec(ctx)
	require.NoError(t, err)
	lost := 0
	for key, c := range gets {
		if c.Val() != key {
			lost++
		}
	}
	assert.Zero(t, lost, "of %d acknowledged writes, %d are missing", len(acked), lost)

	// The shard's slots are now routed to the new master.
	slot := -1
	for s := 0; s < router.SlotCount && slot < 0; s++ {
		if fp.sim.MasterOfSlot(s) == master {
			slot = s
		}
	}
	require.GreaterOrEqual(t, slot, 0)
	assert.Equal(t, replica.Addr(), fp.rt.MasterOf(slot))
	assert.False(t, errors.Is(ctx.Err(), context.DeadlineExceeded), "the run hit its time limit")
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
