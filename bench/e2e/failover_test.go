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

	"kvproxy/bench/cluster"
	"kvproxy/bench/kvsim"
	"kvproxy/bench/loadgen"
	"kvproxy/failover"
	"kvproxy/proxy"
	"kvproxy/router"
)

// failoverFixture is a kvsim cluster with proxies in front, each built as
// cmd/kvproxy builds it (a failover.Buffer as the router's hold and the proxy's
// handovers). The proxies know nothing of each other.
type failoverFixture struct {
	sim     *kvsim.Cluster
	proxies []*failoverProxy
}

type failoverProxy struct {
	rt    *router.Router
	holds *failover.Buffer
	addr  string
}

func startFailoverFixture(t testing.TB, replDelay time.Duration, proxies int) *failoverFixture {
	t.Helper()
	cfg := kvsim.DefaultClusterConfig()
	cfg.ReplDelay = replDelay
	sim, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	fx := &failoverFixture{sim: sim}
	for range proxies {
		fx.proxies = append(fx.proxies, startFailoverProxy(t, sim.Masters()[0].Addr()))
	}
	return fx
}

func startFailoverProxy(t testing.TB, seed string) *failoverProxy {
	t.Helper()
	fp := &failoverProxy{}
	rcfg := router.DefaultConfig()
	rcfg.Seeds = []string{seed}
	hcfg := failover.DefaultConfig()
	hcfg.Dial = router.Dialer{Password: rcfg.Password, Timeout: rcfg.DialTimeout}.Dial
	holds, err := failover.New(hcfg)
	require.NoError(t, err)
	t.Cleanup(holds.Close)
	fp.holds = holds
	rcfg.Hold = holds
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

// failoverScenario is one way a shard's master hands over to its replica.
type failoverScenario struct {
	name      string
	replDelay time.Duration
	proxies   int
	// handover starts the handover of master to replica and returns once
	// it is over; adminAddr is the first proxy's address.
	handover func(t *testing.T, ctx context.Context, fx *failoverFixture, master, replica *kvsim.Node)
	// serverFailover: the master ran CLUSTERX FAILOVER (its state must end
	// in success, and the proxy must have held writes).
	serverFailover bool
}

// The failover issue's acceptance runs: redis-benchmark (SET and GET over
// every shard, pipeline 1 and 16) in a loop through a proxy, and a writer
// checking its acknowledged writes, around a master handover. Every
// redis-benchmark run exits 0 (it exits 1 at the first error reply), no
// write fails, none is lost, and the shard is routed to the new master.
func TestFailoverIsInvisibleToClients(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	loadgen.RequireBinary(t, "redis-benchmark")
	redisCLI := loadgen.RequireBinary(t, "redis-cli")
	cliFailover := func(t *testing.T, ctx context.Context, addr string, replica *kvsim.Node) {
		out, err := exec.CommandContext(ctx, redisCLI, "-h", "127.0.0.1", "-p", portOf(addr),
			"CLUSTERX", "FAILOVER", replica.ID(), "3000").CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Equal(t, "OK", strings.TrimSpace(string(out)))
	}
	awaitFinal := func(t *testing.T, ctx context.Context, master *kvsim.Node) {
		direct := redis.NewClient(&redis.Options{Addr: master.Addr()})
		defer direct.Close()
		require.Eventually(t, func() bool {
			info, _ := direct.Do(ctx, "CLUSTER", "INFO").Text()
			phase, _ := failover.ParsePhase([]byte(info))
			return phase.Final()
		}, 30*time.Second, 5*time.Millisecond)
	}
	scenarios := []failoverScenario{
		{name: "CLUSTERX FAILOVER through the proxy", replDelay: 200 * time.Millisecond, proxies: 1, serverFailover: true,
			handover: func(t *testing.T, ctx context.Context, fx *failoverFixture, master, replica *kvsim.Node) {
				cliFailover(t, ctx, fx.proxies[0].addr, replica)
				awaitFinal(t, ctx, master)
			}},
		{name: "CLUSTERX FAILOVER on the master behind the proxy's back", replDelay: 200 * time.Millisecond, proxies: 1, serverFailover: true,
			handover: func(t *testing.T, ctx context.Context, fx *failoverFixture, master, replica *kvsim.Node) {
				cliFailover(t, ctx, master.Addr(), replica)
				awaitFinal(t, ctx, master)
			}},
		{name: "two proxies, failover through one, load through the other", replDelay: 200 * time.Millisecond, proxies: 2, serverFailover: true,
			handover: func(t *testing.T, ctx context.Context, fx *failoverFixture, master, replica *kvsim.Node) {
				cliFailover(t, ctx, fx.proxies[0].addr, replica)
				awaitFinal(t, ctx, master)
			}},
		// The released Kvrocks way: CLIENT PAUSE WRITE, wait for the
		// replica (its delay is below the controller's sync timeout, so
		// the handover happens), push the swapped topology, unpause.
		{name: "controller CLIENT PAUSE failover", replDelay: 30 * time.Millisecond, proxies: 1,
			handover: func(t *testing.T, ctx context.Context, fx *failoverFixture, master, replica *kvsim.Node) {
				opts := kvsim.DefaultFailoverOptions()
				opts.Replica = replica.ID()
				require.NoError(t, fx.sim.Controller().FailoverShard(ctx, 0, opts))
				assert.Equal(t, replica.ID(), fx.sim.Masters()[0].ID(), "the roles swapped")
			}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { runFailoverScenario(t, sc) })
	}
}

func runFailoverScenario(t *testing.T, sc failoverScenario) {
	fx := startFailoverFixture(t, sc.replDelay, sc.proxies)
	load := fx.proxies[len(fx.proxies)-1]
	master := fx.sim.Masters()[0]
	replica := fx.sim.ReplicasOf(master.ID())[0]
	slot := -1
	for s := 0; s < router.SlotCount && slot < 0; s++ {
		if fx.sim.MasterOfSlot(s) == master {
			slot = s
		}
	}
	require.GreaterOrEqual(t, slot, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	loadAround(t, ctx, load, func() { sc.handover(t, ctx, fx, master, replica) })

	if sc.serverFailover {
		direct := redis.NewClient(&redis.Options{Addr: master.Addr()})
		defer direct.Close()
		info, err := direct.Do(ctx, "CLUSTER", "INFO").Text()
		require.NoError(t, err)
		phase, err := failover.ParsePhase([]byte(info))
		require.NoError(t, err)
		assert.Equal(t, failover.PhaseSuccess, phase)
		assert.Positive(t, load.holds.Report().Totals.Held, "writes were held during the handover")
		// Operators see the handover in INFO.
		client := redis.NewClient(&redis.Options{Addr: load.addr})
		defer client.Close()
		info, err = client.Info(ctx, "failover").Result()
		require.NoError(t, err)
		// The shard's line names the roles as routed now, and the
		// handover's old master.
		assert.Contains(t, info, "master="+replica.Addr()+",replicas="+master.Addr()+",")
		assert.Contains(t, info, ",phase=success,following=0,holding=0,")
		assert.Contains(t, info, ",last_from="+master.Addr()+",")
		assert.Contains(t, info, ",handovers=1,")
		assert.Contains(t, info, ",last_result=success,")
		assert.Contains(t, info, "held_now:0\r\n")
		t.Logf("INFO failover:\n%s", info)
	}
	assert.Equal(t, replica.Addr(), load.rt.MasterOf(slot), "the shard's writes go to the new master")
}

// loadAround runs redis-benchmark in a loop (SET and GET, pipeline 1 and
// 16) and a writer that records every write it got OK for, through the
// proxy, from before handover until after it; then it checks that every
// run exited 0, no write failed, no acknowledged write is missing, and the
// hold counters add up.
func loadAround(t *testing.T, ctx context.Context, load *failoverProxy, handover func()) {
	t.Helper()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var benchMu sync.Mutex
	var benchErrs []error
	benchRuns := 0
	for _, pipeline := range []int{1, 16} {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				_, err := loadgen.RunRedisBenchmark(ctx, loadgen.BenchmarkOptions{
					Addr: load.addr, Clients: 25, Requests: 5000 * pipeline, Pipeline: pipeline,
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
	client := redis.NewClient(&redis.Options{Addr: load.addr, PoolSize: 4})
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
	handover()
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	require.NoError(t, ctx.Err(), "the run hit its time limit")

	assert.Positive(t, benchRuns)
	assert.Empty(t, benchErrs, "every redis-benchmark run exits 0")
	assert.Empty(t, writeErrs, "no write fails")
	st := load.holds.Report().Totals
	t.Logf("load proxy's holds: %+v; router: %+v; redis-benchmark runs: %d, acknowledged writes: %d", st, load.rt.Stats(), benchRuns, len(acked))
	assert.Equal(t, st.Held, st.Released+st.Expired+st.Abandoned, "held = released + expired + abandoned")
	assert.Zero(t, st.Expired)

	require.NotEmpty(t, acked)
	pipe := client.Pipeline()
	gets := map[string]*redis.StringCmd{}
	for key := range acked {
		gets[key] = pipe.Get(ctx, key)
	}
	_, err := pipe.Exec(ctx)
	require.NoError(t, err)
	lost := 0
	for key, c := range gets {
		if c.Val() != key {
			lost++
		}
	}
	assert.Zero(t, lost, "of %d acknowledged writes, %d are missing", len(acked), lost)
}

// Real Redis Cluster: a manual failover (Redis pauses the master's clients,
// then the replica takes over and the old master answers MOVED) is invisible
// to clients of the proxy, whether CLUSTER FAILOVER is sent to the replica
// directly or CLUSTERX FAILOVER goes through the proxy, which carries it out
// as CLUSTER FAILOVER on the replica.
func TestRedisClusterFailoverIsInvisibleToClients(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	loadgen.RequireBinary(t, "redis-benchmark")
	redisCLI := loadgen.RequireBinary(t, "redis-cli")
	t.Run("CLUSTER FAILOVER on the replica", func(t *testing.T) {
		runRedisFailover(t, func(ctx context.Context, c *cluster.Cluster, _ *failoverProxy, replica *cluster.Node) {
			require.NoError(t, c.Failover(ctx, replica))
		})
	})
	t.Run("CLUSTERX FAILOVER through the proxy", func(t *testing.T) {
		runRedisFailover(t, func(ctx context.Context, c *cluster.Cluster, load *failoverProxy, replica *cluster.Node) {
			out, err := exec.CommandContext(ctx, redisCLI, "-h", "127.0.0.1", "-p", portOf(load.addr),
				"CLUSTERX", "FAILOVER", replica.ID).CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Equal(t, "OK", strings.TrimSpace(string(out)))
			direct := redis.NewClient(&redis.Options{Addr: replica.Addr})
			defer direct.Close()
			require.Eventually(t, func() bool {
				role, err := direct.Do(ctx, "ROLE").Slice()
				return err == nil && len(role) > 0 && role[0] == "master"
			}, 30*time.Second, 10*time.Millisecond, "the replica took over")
			require.NoError(t, c.WaitHealthy(ctx))
			// The proxy followed it: the report shows the swap.
			require.Eventually(t, func() bool {
				reports := load.holds.Report().Masters
				return len(reports) == 1 && reports[0].Last.Final == failover.PhaseSuccess && reports[0].Handovers == 1
			}, 30*time.Second, 10*time.Millisecond, "the handover was followed to success: %+v", load.holds.Report())
			t.Logf("followed: %+v", load.holds.Report())
		})
	})
}

// failoverClusters prepares the clusters of runRedisFailover while the
// tests before them run (TestMain closes the one left).
var failoverClusters = cluster.NewSpare(cluster.Options{Masters: 3, ReplicasPerMaster: 1}, 1)

func runRedisFailover(t *testing.T, handover func(ctx context.Context, c *cluster.Cluster, load *failoverProxy, replica *cluster.Node)) {
	c := failoverClusters.Start(t)
	load := startFailoverProxy(t, c.Masters()[0].Addr)
	master := c.Masters()[0]
	replica := c.ReplicasOf(master.ID)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	loadAround(t, ctx, load, func() { handover(ctx, c, load, replica) })
	slot := -1
	for s := 0; s < router.SlotCount && slot < 0; s++ {
		if c.MasterForSlot(s).ID == replica.ID {
			slot = s
		}
	}
	require.GreaterOrEqual(t, slot, 0)
	assert.Equal(t, replica.Addr, load.rt.MasterOf(slot), "the shard's writes go to the new master")
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// A master killed unannounced, its replica promoted by the controller
// (probes every 200 ms, 3 failures): every request is answered; only writes
// that were in flight on the dead connection may fail, with an error that
// says they may have run. The rest wait in the dead master's outage: with a
// promotion within about a second they all reach the new master; with one
// slower than the hold budget (probes every 1.2 s), those that waited the
// whole budget get a TRYAGAIN saying they were not executed, and nothing
// hangs.
func TestUnplannedMasterDeathAnswersEveryRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	t.Run("promoted within the hold budget", func(t *testing.T) { unplannedMasterDeath(t, 200*time.Millisecond, false) })
	t.Run("promoted after the hold budget", func(t *testing.T) { unplannedMasterDeath(t, 1200*time.Millisecond, true) })
}

func unplannedMasterDeath(t *testing.T, probeInterval time.Duration, slow bool) {
	cfg := kvsim.DefaultClusterConfig()
	cfg.Controller.ProbeInterval = probeInterval
	cfg.Controller.ProbeTimeout = 100 * time.Millisecond
	cfg.Controller.FailureCount = 3
	cfg.Controller.AutoFailover = true
	sim, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	load := startFailoverProxy(t, sim.Masters()[1].Addr())
	master := sim.Masters()[0]
	replica := sim.ReplicasOf(master.ID())[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// go-redis retries TRYAGAIN and network errors itself: off, so what
	// the proxy answers is what the test sees. Its read timeout is above
	// the hold budget.
	client := redis.NewClient(&redis.Options{Addr: load.addr, PoolSize: 8, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer client.Close()
	var stop atomic.Bool
	var mu sync.Mutex
	replies := map[string]int{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for n := 0; !stop.Load() && ctx.Err() == nil; n++ {
				pipe := client.Pipeline()
				var cmds []redis.Cmder
				for i := range 8 {
					key := fmt.Sprintf("u:%d:%d:%d", w, n, i)
					cmds = append(cmds, pipe.Set(ctx, key, key, 0), pipe.Get(ctx, key))
				}
				_, _ = pipe.Exec(ctx)
				mu.Lock()
				for _, c := range cmds {
					// A GET after a lost SET may find no value: a reply.
					switch err := c.Err(); {
					case err == nil, errors.Is(err, redis.Nil):
						replies["ok"]++
					default:
						replies[c.Name()+": "+err.Error()]++
					}
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, sim.Controller().Kill(master.ID()))
	require.Eventually(t, func() bool { return sim.Masters()[0].ID() == replica.ID() }, 30*time.Second, 10*time.Millisecond,
		"the controller promotes the replica")
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	require.NoError(t, ctx.Err(), "a request hung")

	t.Logf("replies: %v; router: %+v", replies, load.rt.Stats())
	assert.Positive(t, replies["ok"])
	notExecuted := 0
	for reply, n := range replies {
		switch {
		case reply == "ok":
		case slow && strings.Contains(reply, ": TRYAGAIN backend "+master.Addr()+" is unreachable: the command was not executed"):
			notExecuted += n
		default:
			assert.True(t, strings.HasPrefix(reply, "set: ERR backend connection lost after the command was sent"),
				"%d x %q: only writes in flight on the dead connection may fail", n, reply)
		}
	}
	// The dead master's unsent requests (and the reads lost with its
	// connection) waited in its outage.
	deadMaster := load.holds.Report().Of(master.Addr())
	dead := deadMaster.Holds
	t.Logf("dead master's holds: %+v", deadMaster)
	assert.Positive(t, deadMaster.Outages)
	assert.Positive(t, dead.Held, "requests waited in the outage")
	if slow {
		assert.Positive(t, notExecuted, "the promotion came after the hold budget")
		// Each expired hold was answered TRYAGAIN; so were requests resent
		// to the dead master as their budget ran out.
		assert.GreaterOrEqual(t, uint64(notExecuted), dead.Expired, "%+v", dead)
	} else {
		assert.Equal(t, dead.Held, dead.Released, "every one was sent once the replica took over: %+v", dead)
	}
	st := load.holds.Report().Totals
	assert.Equal(t, st.Held, st.Released+st.Expired+st.Abandoned, "held = released + expired + abandoned: %+v", st)
}
