package kvsim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// pickReplica chooses the replica of shard s to promote: preferred if given
// and eligible (reachable, reporting role:slave), else the eligible one with
// the highest sequence. Without fallback, a preferred node that is no
// eligible replica is an error; with it, it is ignored, as kvrocks-controller
// ignores it.
func (c *Controller) pickReplica(ctx context.Context, s ShardTopology, preferred string, fallback bool) (NodeRef, error) {
	if preferred != "" {
		i := slices.IndexFunc(s.Replicas, func(r NodeRef) bool { return r.ID == preferred })
		switch {
		case i >= 0 && c.eligible(ctx, s.Replicas[i]) >= 0:
			return s.Replicas[i], nil
		case fallback:
		case i < 0:
			return NodeRef{}, fmt.Errorf("%w: %s is not a replica of master %s", ErrNoReplica, preferred, s.Master.ID)
		default:
			return NodeRef{}, fmt.Errorf("%w: replica %s does not answer as one", ErrNoReplica, preferred)
		}
	}
	best, bestSeq := NodeRef{}, int64(-1)
	for _, r := range s.Replicas {
		if seq := c.eligible(ctx, r); seq > bestSeq {
			best, bestSeq = r, seq
		}
	}
	if bestSeq < 0 {
		return NodeRef{}, fmt.Errorf("%w: shard of master %s", ErrNoReplica, s.Master.ID)
	}
	return best, nil
}

// eligible is the sequence of replica r if it answers INFO with role:slave,
// else -1.
func (c *Controller) eligible(ctx context.Context, r NodeRef) int64 {
	fields, err := c.info(ctx, r) // role is in Replication, sequence in Keyspace
	if err != nil {
		c.log.Warn("replica skipped", "id", r.ID, "addr", r.Addr, "err", err)
		return -1
	}
	seq, err := fieldInt(fields, "sequence")
	if fields["role"] != "slave" || err != nil || seq < 0 {
		c.log.Warn("replica skipped", "id", r.ID, "addr", r.Addr, "role", fields["role"], "err", err)
		return -1
	}
	return seq
}

func (c *Controller) shard(t Topology, shard int) (ShardTopology, error) {
	if shard < 0 || shard >= len(t.Shards) {
		return ShardTopology{}, fmt.Errorf("%w %d (the cluster has %d)", ErrNoShard, shard, len(t.Shards))
	}
	return t.Shards[shard], nil
}

// FailoverShard runs kvrocks-controller's manual failover on shard: CLIENT
// PAUSE <PauseTimeout> WRITE on the master; poll INFO replication on master
// and replica until the replica's slave_repl_offset reaches the master's
// master_repl_offset (past SyncTimeout: CLIENT UNPAUSE and fail, unless
// Force); commit the topology one version up with master and replica swapped,
// pushed to the new master first, then to every other node in parallel;
// CLIENT UNPAUSE the old master.
func (c *Controller) FailoverShard(ctx context.Context, shard int, opts FailoverOptions) error {
	_, err := c.failoverShard(ctx, shard, opts, false)
	return err
}

// failoverResult is what a manual failover got done, also when it failed.
type failoverResult struct {
	newMaster NodeRef // the replica chosen; zero before one was
	committed bool    // the swapped topology is the controller's
}

// failoverShard is FailoverShard; fallback ignores an opts.Replica that is
// no eligible replica (see pickReplica).
func (c *Controller) failoverShard(ctx context.Context, shard int, opts FailoverOptions, fallback bool) (failoverResult, error) {
	var res failoverResult
	if err := opts.Validate(); err != nil {
		return res, err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	t := c.Topology()
	s, err := c.shard(t, shard)
	if err != nil {
		return res, err
	}
	if res.newMaster, err = c.pickReplica(ctx, s, opts.Replica, fallback); err != nil {
		return res, err
	}
	next, err := t.withPromoted(shard, res.newMaster.ID)
	if err != nil {
		return res, err
	}
	log := c.log.With("shard", shard, "old_master", s.Master.Addr, "new_master", res.newMaster.Addr)
	log.Info("manual failover started")
	if _, err := c.do(ctx, s.Master, "CLIENT", "PAUSE", strconv.FormatInt(opts.PauseTimeout.Milliseconds(), 10), "WRITE"); err != nil {
		return res, fmt.Errorf("failover shard %d: %w: %w", shard, ErrPauseFailed, err)
	}
	// Unpause on a fresh context: ctx may be what ended the failover.
	unpause := func() {
		uctx, cancel := context.WithTimeout(context.Background(), c.cfg.CommandTimeout)
		defer cancel()
		if _, err := c.do(uctx, s.Master, "CLIENT", "UNPAUSE"); err != nil {
			log.Warn("CLIENT UNPAUSE failed", "err", err)
		}
	}
	defer unpause()
	if err := c.waitSync(ctx, s.Master, res.newMaster, opts); err != nil {
		if !opts.Force {
			log.Warn("manual failover abandoned", "err", err)
			return res, fmt.Errorf("failover shard %d: %w", shard, err)
		}
		log.Warn("replica not caught up, forcing failover", "err", err)
	}
	err = c.commit(ctx, next)
	res.committed = c.Topology().Version == next.Version // under opMu: nobody else commits
	if err != nil {
		return res, fmt.Errorf("failover shard %d: %w", shard, err)
	}
	log.Info("manual failover done", "version", next.Version)
	return res, nil
}

// waitSync polls INFO replication on master and replica until the replica's
// applied offset reaches the master's, within opts.SyncTimeout.
func (c *Controller) waitSync(ctx context.Context, master, replica NodeRef, opts FailoverOptions) error {
	ctx, cancel := context.WithTimeout(ctx, opts.SyncTimeout)
	defer cancel()
	tick := time.NewTicker(opts.PollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		caughtUp, err := c.replicaCaughtUp(ctx, master, replica)
		if caughtUp {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w within %v: %s: %w", ErrSyncTimeout, opts.SyncTimeout, replica.Addr, lastErr)
			}
			return fmt.Errorf("%w within %v: %s", ErrSyncTimeout, opts.SyncTimeout, replica.Addr)
		case <-tick.C:
		}
	}
}

// replicaCaughtUp reads INFO replication from both nodes at once and compares
// the replica's slave_repl_offset (the master's slaveN offset lags) with the
// master's master_repl_offset.
func (c *Controller) replicaCaughtUp(ctx context.Context, master, replica NodeRef) (bool, error) {
	var (
		wg                 sync.WaitGroup
		mFields, rFields   map[string]string
		mErr, rErr         error
		masterOff, replOff int64
	)
	wg.Add(2)
	go func() { defer wg.Done(); mFields, mErr = c.info(ctx, master, "replication") }()
	go func() { defer wg.Done(); rFields, rErr = c.info(ctx, replica, "replication") }()
	wg.Wait()
	if err := errors.Join(mErr, rErr); err != nil {
		return false, err
	}
	switch {
	case mFields["role"] != "master":
		return false, fmt.Errorf("%s has role %q, not master", master.Addr, mFields["role"])
	case rFields["role"] != "slave":
		return false, fmt.Errorf("%s has role %q, not slave", replica.Addr, rFields["role"])
	case rFields["master_link_status"] != "up":
		return false, fmt.Errorf("%s master_link_status is %q", replica.Addr, rFields["master_link_status"])
	}
	masterOff, mErr = fieldInt(mFields, "master_repl_offset")
	replOff, rErr = fieldInt(rFields, "slave_repl_offset")
	if err := errors.Join(mErr, rErr); err != nil {
		return false, err
	}
	if replOff < masterOff {
		return false, fmt.Errorf("%s slave_repl_offset %d < master_repl_offset %d", replica.Addr, replOff, masterOff)
	}
	return true, nil
}

// ServerFailover drives the in-server graceful failover (CLUSTERX FAILOVER,
// kvrocks#3295) of shard: it sends CLUSTERX FAILOVER <replica-id> <timeout-ms>
// to the master, polls its cluster_failover_state until success or failed and,
// on success, commits the swapped topology one version up as CommitHandover
// does. The wait is bounded by ctx and by timeout plus
// the longest check_slave phase (3 s) plus CommandTimeout.
func (c *Controller) ServerFailover(ctx context.Context, shard int, timeout time.Duration) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	t := c.Topology()
	s, err := c.shard(t, shard)
	if err != nil {
		return err
	}
	replica, err := c.pickReplica(ctx, s, "", false)
	if err != nil {
		return err
	}
	next, err := t.withPromoted(shard, replica.ID)
	if err != nil {
		return err
	}
	log := c.log.With("shard", shard, "old_master", s.Master.Addr, "new_master", replica.Addr)
	if _, err := c.do(ctx, s.Master, "CLUSTERX", "FAILOVER", replica.ID, strconv.FormatInt(timeout.Milliseconds(), 10)); err != nil {
		return fmt.Errorf("%w: %w", ErrFailoverRejected, err)
	}
	log.Info("server failover started", "timeout", timeout)
	waitCtx, cancel := context.WithTimeout(ctx, timeout+3*time.Second+c.cfg.CommandTimeout)
	defer cancel()
	tick := time.NewTicker(c.cfg.Failover.PollInterval)
	defer tick.Stop()
	for {
		fields, err := c.clusterInfo(waitCtx, s.Master)
		if err == nil {
			switch fields["cluster_failover_state"] {
			case "success":
				log.Info("server failover succeeded")
				return c.commit(ctx, next)
			case "failed":
				log.Warn("server failover failed")
				return fmt.Errorf("%w on %s", ErrServerFailover, s.Master.Addr)
			}
		}
		select {
		case <-waitCtx.Done():
			return fmt.Errorf("%w: %s did not finish: %w (last poll: %v)", ErrServerFailover, s.Master.Addr, waitCtx.Err(), err)
		case <-tick.C:
		}
	}
}

// CommitHandover records that replica has taken over shard after a CLUSTERX
// FAILOVER that succeeded, however it was started (through a proxy, say), as
// a controller does then: it commits the topology one version up with master
// and replica swapped, which reaches the new master before any other node
// (see commit). When the new master cannot be told, nothing is committed and
// a later call retries.
func (c *Controller) CommitHandover(ctx context.Context, shard int, replica string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	t := c.Topology()
	if _, err := c.shard(t, shard); err != nil {
		return err
	}
	next, err := t.withPromoted(shard, replica)
	if err != nil {
		return err
	}
	return c.commit(ctx, next)
}

// PushNextVersion commits the current topology one version up, unchanged,
// and pushes it to every node, as kvrocks-controller does after changing
// another part of the cluster (a node added, a slot migrated): a push that
// moves no master of its own. It returns the version pushed.
func (c *Controller) PushNextVersion(ctx context.Context) (int64, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	next := c.Topology()
	next.Version++
	return next.Version, c.commit(ctx, next)
}
