package soak

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
	"kvproxy/controller"
	"kvproxy/failover"
)

// FailoverResult is one step of the schedule as the soak ran it: a
// failover, or a push.
type FailoverResult struct {
	Seq   int           // 0 for the first
	At    time.Duration // start, since the load started
	Took  time.Duration
	Kind  FailoverKind
	Shard int // -1 for a push
	// Between is set for a step between two planned failovers.
	Between bool
	// From and To are the old and the new master's addresses; empty for a
	// push.
	From, To string
	// Version is the controller's topology version after the step.
	Version int64
	// Attempts is how many times the failover was asked: a controller
	// failover refused for the replica's sync is asked again. 0 for a push.
	Attempts int
	// Refused is the last refusal before the attempt that ended the step.
	Refused error
	// Err is why the step did not happen; nil when it did.
	Err error
}

// PauseFailoverOptions are the controller's CLIENT PAUSE failover options
// for a replication delay: upstream's 100 ms sync timeout cannot wait for
// a replica that applies changes later than that.
func PauseFailoverOptions(replDelay time.Duration) kvsim.FailoverOptions {
	opts := kvsim.DefaultFailoverOptions()
	opts.SyncTimeout = max(opts.SyncTimeout, 3*replDelay)
	opts.PauseTimeout = opts.SyncTimeout + 400*time.Millisecond
	return opts
}

// failoverRunner runs the steps of a soak's schedule.
type failoverRunner struct {
	sim   *kvsim.Cluster
	admin *redis.Client      // the proxy, for CLUSTERX FAILOVER and PROXY NODES
	api   *controller.Client // the controller's HTTP API
	cfg   Config
}

// proxyTopologyWait bounds the wait for the proxy to know the replica a
// CLUSTERX FAILOVER names: past a failover of the shard the proxy learns
// the swapped topology from MOVED or its periodic reload (10 s).
const proxyTopologyWait = 15 * time.Second

// run carries out step st, number seq.
func (f *failoverRunner) run(ctx context.Context, seq int, st step) FailoverResult {
	res := FailoverResult{Seq: seq, Kind: st.Kind, Shard: st.Shard, Between: st.Between}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, f.cfg.FailoverTimeout+proxyTopologyWait+f.cfg.ReportWait+30*time.Second)
	defer cancel()
	if st.Kind == FailoverPush {
		res.Version, res.Err = f.sim.Controller().PushNextVersion(ctx)
		res.Took = time.Since(start)
		return res
	}
	master := f.sim.Masters()[st.Shard]
	replica := f.sim.ReplicasOf(master.ID())[0]
	res.From, res.To = master.Addr(), replica.Addr()
	for res.Attempts = 1; ; res.Attempts++ {
		res.Err = f.failover(ctx, st, master, replica)
		if res.Err == nil || res.Attempts == refusedAttempts || !refusedForSync(res.Err) {
			break
		}
		res.Refused = res.Err
		select {
		case <-ctx.Done():
		case <-time.After(refusedPause):
		}
	}
	res.Took = time.Since(start)
	res.Version = f.sim.Topology().Version
	return res
}

// A controller failover refused because the replica did not catch up
// within the sync timeout leaves the cluster as it was (the master is
// unpaused), and an operator asks again: on two busy cores the INFO polls
// of the sync wait alone may outlast it. refusedAttempts bounds the tries,
// refusedPause spaces them.
const (
	refusedAttempts = 3
	refusedPause    = 200 * time.Millisecond
)

// refusedForSync reports a controller failover refused for the replica's
// sync: kvsim's error in process, the API's message over HTTP.
func refusedForSync(err error) bool {
	var apiErr *controller.Error
	return errors.Is(err, kvsim.ErrSyncTimeout) ||
		errors.As(err, &apiErr) && strings.HasPrefix(apiErr.Message, "replication sync timeout")
}

// failover runs one attempt of failover step st from master to replica.
func (f *failoverRunner) failover(ctx context.Context, st step, master, replica *kvsim.Node) error {
	switch st.Kind {
	case FailoverClusterx:
		return f.clusterx(ctx, st.Shard, master, replica)
	case FailoverController:
		return f.controllerAPI(ctx, st.Shard, replica)
	default:
		opts := PauseFailoverOptions(f.cfg.ReplDelay)
		opts.Replica = replica.ID()
		return f.sim.Controller().FailoverShard(ctx, st.Shard, opts)
	}
}

// controllerAPI asks the controller's HTTP API for the shard's failover
// with replica preferred, as an operator does.
func (f *failoverRunner) controllerAPI(ctx context.Context, shard int, replica *kvsim.Node) error {
	newMaster, err := f.api.FailoverShard(ctx, shard, replica.ID())
	if err != nil {
		return err
	}
	if newMaster != replica.ID() {
		return fmt.Errorf("the controller promoted %s, not the preferred %s", newMaster, replica.ID())
	}
	return nil
}

// clusterx sends CLUSTERX FAILOVER through the proxy and waits for the
// master to finish it. On success the controller must record the handover:
// the soak commits the swapped topology as a controller does (new master
// first) or, with ProxyReports, waits for the proxy's report to do it.
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
	// With ProxyReports the swapped topology may reach the old master
	// between two polls: a replica has no failover state line, and only a
	// successful handover makes it one (the controller's record is checked
	// next).
	phase, err := awaitFinalPhase(ctx, master.Addr(), f.cfg.ClientTimeout, f.cfg.ProxyReports)
	if err != nil {
		return err
	}
	if phase != failover.PhaseSuccess {
		return fmt.Errorf("master %s: cluster_failover_state:%s", master.Addr(), phase)
	}
	if f.cfg.ProxyReports {
		return f.awaitControllerRecords(ctx, shard, replica.ID())
	}
	return f.sim.Controller().CommitHandover(ctx, shard, replica.ID())
}

// awaitControllerRecords waits until the controller's API shows newMaster
// as the master of shard: the proxy reported the handover.
func (f *failoverRunner) awaitControllerRecords(ctx context.Context, shard int, newMaster string) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.ReportWait)
	defer cancel()
	var last string
	for {
		cl, err := f.api.GetCluster(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case shard >= len(cl.Shards):
			last = fmt.Sprintf("the controller has %d shards", len(cl.Shards))
		case cl.Shards[shard].Master.ID == newMaster:
			return nil
		default:
			last = fmt.Sprintf("version %d, master %s", cl.Version, cl.Shards[shard].Master.ID)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the controller did not record %s as the master of shard %d within %v (the proxy did not report the handover?); last: %s",
				newMaster, shard, f.cfg.ReportWait, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
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
// its failover state is success or failed; with demotedIsSuccess, a node
// that turned replica meanwhile (its state line gone) counts as success.
func awaitFinalPhase(ctx context.Context, addr string, timeout time.Duration, demotedIsSuccess bool) (failover.Phase, error) {
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
			if errors.Is(perr, failover.ErrNoFailoverState) && demotedIsSuccess {
				if nodes, nerr := cl.ClusterNodes(ctx).Result(); nerr == nil && isReplica(nodes) {
					return failover.PhaseSuccess, nil
				}
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

// isReplica reports whether the CLUSTER NODES reply names the node that
// answered (myself) a replica.
func isReplica(nodes string) bool {
	for line := range strings.Lines(nodes) {
		fields := strings.Fields(line)
		if len(fields) > 2 && strings.Contains(fields[2], "myself") {
			return strings.Contains(fields[2], "slave")
		}
	}
	return false
}
