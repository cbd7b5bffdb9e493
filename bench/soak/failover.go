package soak

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
	"kvproxy/failover"
)

// FailoverResult is one planned failover as the soak ran it.
type FailoverResult struct {
	Seq   int           // 0 for the first
	At    time.Duration // start, since the load started
	Took  time.Duration
	Kind  FailoverKind
	Shard int
	// From and To are the old and the new master's addresses.
	From, To string
	// Err is why the failover did not happen; nil when it did.
	Err error
}

// rotation returns the shard and kind of failover number i: shards in
// turn, so every shard fails over and, the next time round, back; each
// shard's visits take the kinds in turn, so every shard sees every kind.
func rotation(i, shards int, kinds []FailoverKind) (int, FailoverKind) {
	shard, visit := i%shards, i/shards
	return shard, kinds[(visit+shard)%len(kinds)]
}

// pauseFailoverOptions are the controller's CLIENT PAUSE failover options
// for a replication delay: upstream's 100 ms sync timeout cannot wait for
// a replica that applies changes later than that.
func pauseFailoverOptions(replDelay time.Duration) kvsim.FailoverOptions {
	opts := kvsim.DefaultFailoverOptions()
	opts.SyncTimeout = max(opts.SyncTimeout, 3*replDelay)
	opts.PauseTimeout = opts.SyncTimeout + 400*time.Millisecond
	return opts
}

// failoverRunner runs the planned failovers of a soak.
type failoverRunner struct {
	sim   *kvsim.Cluster
	admin *redis.Client // the proxy, for CLUSTERX FAILOVER and PROXY NODES
	cfg   Config
}

// proxyTopologyWait bounds the wait for the proxy to know the replica a
// CLUSTERX FAILOVER names: past a failover of the shard the proxy learns
// the swapped topology from MOVED or its periodic reload (10 s).
const proxyTopologyWait = 15 * time.Second

// run carries out failover i.
func (f *failoverRunner) run(ctx context.Context, i int) FailoverResult {
	shard, kind := rotation(i, f.cfg.Shards, f.cfg.FailoverKinds)
	res := FailoverResult{Seq: i, Kind: kind, Shard: shard}
	master := f.sim.Masters()[shard]
	replica := f.sim.ReplicasOf(master.ID())[0]
	res.From, res.To = master.Addr(), replica.Addr()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, f.cfg.FailoverTimeout+proxyTopologyWait+30*time.Second)
	defer cancel()
	switch kind {
	case FailoverClusterx:
		res.Err = f.clusterx(ctx, shard, master, replica)
	default:
		opts := pauseFailoverOptions(f.cfg.ReplDelay)
		opts.Replica = replica.ID()
		res.Err = f.sim.Controller().FailoverShard(ctx, shard, opts)
	}
	res.Took = time.Since(start)
	return res
}

// clusterx sends CLUSTERX FAILOVER through the proxy, waits for the master
// to finish it and, on success, commits the swapped topology as a
// controller does: new master first.
func (f *failoverRunner) clusterx(ctx context.Context, shard int, master, replica *kvsim.Node) error {
	if err := f.awaitProxyKnows(ctx, master.ID(), replica.ID()); err != nil {
		return err
	}
	timeoutMs := strconv.FormatInt(f.cfg.FailoverTimeout.Milliseconds(), 10)
	reply, err := f.admin.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), timeoutMs).Text()
	if err != nil {
		return fmt.Errorf("CLUSTERX FAILOVER through the proxy: %w", err)
	}
	if reply != "OK" {
		return fmt.Errorf("CLUSTERX FAILOVER through the proxy answered %q", reply)
	}
	phase, err := awaitFinalPhase(ctx, master.Addr(), f.cfg.ClientTimeout)
	if err != nil {
		return err
	}
	if phase != failover.PhaseSuccess {
		return fmt.Errorf("master %s: cluster_failover_state:%s", master.Addr(), phase)
	}
	return f.sim.Controller().CommitHandover(ctx, shard, replica.ID())
}

// awaitProxyKnows waits until PROXY NODES shows replica as a replica of
// master: the proxy sends CLUSTERX FAILOVER to the master its own topology
// names.
func (f *failoverRunner) awaitProxyKnows(ctx context.Context, master, replica string) error {
	ctx, cancel := context.WithTimeout(ctx, proxyTopologyWait)
	defer cancel()
	var last string
	for {
		nodes, err := f.admin.Do(ctx, "PROXY", "NODES").Text()
		if err == nil && isReplicaOf(nodes, replica, master) {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = nodes
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("PROXY NODES did not show %s as a replica of %s within %v; last answer: %q",
				replica, master, proxyTopologyWait, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// isReplicaOf reports whether CLUSTER NODES text lists node id as a
// replica of master.
func isReplicaOf(nodes, id, master string) bool {
	for line := range strings.SplitSeq(nodes, "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 4 && fields[0] == id && fields[2] == "slave" && fields[3] == master {
			return true
		}
	}
	return false
}

// failoverPoll is the pause between two CLUSTER INFO polls of a master
// running CLUSTERX FAILOVER.
const failoverPoll = 10 * time.Millisecond

// awaitFinalPhase polls CLUSTER INFO on the master at addr, directly, until
// its failover state is success or failed.
func awaitFinalPhase(ctx context.Context, addr string, timeout time.Duration) (failover.Phase, error) {
	cl := redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolSize: 1,
	})
	defer cl.Close()
	var lastErr error
	for {
		info, err := cl.ClusterInfo(ctx).Result()
		if err == nil {
			phase, perr := failover.ParsePhase([]byte(info))
			if perr == nil && phase.Final() {
				return phase, nil
			}
			err = perr
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("master %s: failover did not finish: %w (last poll: %v)", addr, ctx.Err(), lastErr)
		case <-time.After(failoverPoll):
		}
	}
}
