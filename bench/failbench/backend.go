package failbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/cluster"
	"kvproxy/bench/kvsim"
	"kvproxy/bench/loadgen"
	"kvproxy/bench/soak"
	"kvproxy/controller"
)

// startTimeout bounds starting the cluster and building and starting
// kvproxy.
const startTimeout = 2 * time.Minute

// controllerCallTimeout bounds one call of kvsim's controller API.
const controllerCallTimeout = 15 * time.Second

// env is the cluster and the proxy a run measures; close stops what it
// started.
type env struct {
	proxyAddr string
	seeds     []string
	sim       *kvsim.Cluster     // BackendKvsim
	api       *controller.Client // kvsim's controller HTTP API
	redis     *cluster.Cluster   // BackendRedis
	proxy     *loadgen.Kvproxy   // nil with Config.Target
	closers   []func()
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// startEnv starts the cluster and kvproxy in front of it, or takes the
// configured target's. On error what it started is stopped.
func startEnv(ctx context.Context, cfg Config, progress io.Writer) (_ *env, err error) {
	e := &env{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if cfg.RedisBenchmark {
		if _, err := exec.LookPath("redis-benchmark"); err != nil {
			return nil, fmt.Errorf("redis-benchmark: %w", err)
		}
	}
	if cfg.Target != "" {
		e.proxyAddr, e.seeds = cfg.Target, cfg.Cluster
		return e, nil
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	switch cfg.Backend {
	case BackendKvsim:
		if err := e.startKvsim(cfg, progress); err != nil {
			return nil, err
		}
	case BackendRedis:
		rc, err := cluster.New(ctx, cluster.Options{Masters: cfg.Shards, ReplicasPerMaster: 1,
			Logger: slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			return nil, err
		}
		e.redis = rc
		e.closers = append(e.closers, func() { rc.Close() })
		e.seeds = rc.Addrs()
	}
	binary := cfg.KvproxyBinary
	if binary == "" {
		dir, err := os.MkdirTemp("", "kvbench-failover-")
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { os.RemoveAll(dir) })
		if binary, err = loadgen.BuildKvproxy(ctx, dir); err != nil {
			return nil, err
		}
	}
	proxy, err := loadgen.LaunchKvproxy(ctx, loadgen.KvproxyOptions{Binary: binary, Seeds: e.seeds, ExtraArgs: cfg.KvproxyArgs})
	if err != nil {
		return nil, err
	}
	e.proxy = proxy
	e.closers = append(e.closers, proxy.Close)
	e.proxyAddr = proxy.Addr()
	fmt.Fprintf(progress, "failover: kvproxy (pid %d) on %s in front of %s, %d shards x 1 replica\n",
		proxy.Pid(), proxy.Addr(), cfg.Backend, cfg.Shards)
	return e, nil
}

func (e *env) startKvsim(cfg Config, progress io.Writer) error {
	simCfg := kvsim.DefaultClusterConfig()
	simCfg.Shards, simCfg.Replicas, simCfg.ReplDelay = cfg.Shards, 1, cfg.ReplDelay
	// Only the trigger moves a master: a killed one is replaced quickly.
	simCfg.Controller.AutoFailover = cfg.Trigger == TriggerKill
	simCfg.Controller.ProbeInterval, simCfg.Controller.FailureCount = 200*time.Millisecond, 3
	simCfg.Controller.Failover = soak.PauseFailoverOptions(cfg.ReplDelay)
	simCfg.ControllerAPI.Listen = "127.0.0.1:0"
	simCfg.Logger = slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sim, err := kvsim.StartCluster(simCfg)
	if err != nil {
		return err
	}
	e.sim = sim
	e.closers = append(e.closers, sim.Close)
	api, err := controller.New(sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "", controllerCallTimeout)
	if err != nil {
		return err
	}
	e.api = api
	e.closers = append(e.closers, func() { api.Close() })
	for _, m := range sim.Masters() {
		e.seeds = append(e.seeds, m.Addr())
	}
	return nil
}

// node is a cluster node as CLUSTER SLOTS names it.
type node struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// shard is a master's slot range and its nodes. The slots stay the
// shard's through failovers; the master and replica swap.
type shard struct {
	FirstSlot int  `json:"first_slot"`
	Master    node `json:"master"`
	Replica   node `json:"replica"`
}

// clusterShards asks the nodes at addrs, in turn until one answers, for
// CLUSTER SLOTS and returns the shards in slot order and the shard of each
// slot.
func clusterShards(ctx context.Context, addrs []string, timeout time.Duration) ([]shard, []int, error) {
	var errs []error
	for _, addr := range addrs {
		cl := soak.NewClient(addr, timeout, 1)
		ranges, err := cl.ClusterSlots(ctx).Result()
		cl.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("CLUSTER SLOTS on %s: %w", addr, err))
			continue
		}
		shards, shardOf, err := shardsOf(ranges)
		if err != nil {
			errs = append(errs, fmt.Errorf("CLUSTER SLOTS on %s: %w", addr, err))
			continue
		}
		return shards, shardOf, nil
	}
	return nil, nil, errors.Join(errs...)
}

// slotCount is the number of hash slots.
const slotCount = 16384

func shardsOf(ranges []redis.ClusterSlot) ([]shard, []int, error) {
	byMaster := map[string]*shard{}
	for _, r := range ranges {
		if len(r.Nodes) < 2 {
			return nil, nil, fmt.Errorf("slots %d-%d have no replica to fail over to", r.Start, r.End)
		}
		m := r.Nodes[0]
		s := byMaster[m.ID]
		if s == nil {
			s = &shard{FirstSlot: r.Start, Master: node{m.ID, m.Addr}, Replica: node{r.Nodes[1].ID, r.Nodes[1].Addr}}
			byMaster[m.ID] = s
		}
		s.FirstSlot = min(s.FirstSlot, r.Start)
	}
	var shards []shard
	for _, s := range byMaster {
		shards = append(shards, *s)
	}
	slices.SortFunc(shards, func(a, b shard) int { return a.FirstSlot - b.FirstSlot })
	shardOf := make([]int, slotCount)
	for i := range shardOf {
		shardOf[i] = -1
	}
	index := map[string]int{}
	for i, s := range shards {
		index[s.Master.ID] = i
	}
	for _, r := range ranges {
		for slot := max(r.Start, 0); slot <= min(r.End, slotCount-1); slot++ {
			shardOf[slot] = index[r.Nodes[0].ID]
		}
	}
	if i := slices.Index(shardOf, -1); i >= 0 {
		return nil, nil, fmt.Errorf("slot %d has no master", i)
	}
	return shards, shardOf, nil
}
