package kvsim

import (
	"context"
	"strings"
	"sync"
	"time"
)

// startProbing starts the probe loop; close ends it.
func (c *Controller) startProbing() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stopProbe = cancel
	c.probeDone = make(chan struct{})
	go c.probeLoop(ctx)
}

func (c *Controller) probeLoop(ctx context.Context) {
	defer close(c.probeDone)
	tick := time.NewTicker(c.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.probeAll(ctx)
		}
	}
}

// probeAll probes every node with CLUSTER INFO, as kvrocks-controller's
// ClusterChecker does: a node that answers resets its failure count and, if
// it reports an older cluster_current_epoch, gets the topology again; a node
// that does not answer counts a failure (an uninitialized or loading node is
// not a failure); a master at FailureCount failures is failed over.
func (c *Controller) probeAll(ctx context.Context) {
	t := c.Topology()
	rendered := t.Render()
	var mu sync.Mutex
	var failing []NodeRef
	probe := func(ref NodeRef) error {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout)
		defer cancel()
		fields, err := c.clusterInfo(pctx, ref)
		switch {
		case err != nil && strings.Contains(err.Error(), "LOADING"):
			return nil
		case err != nil && !strings.Contains(err.Error(), "CLUSTERDOWN The cluster is not initialized"):
			if ctx.Err() != nil {
				return nil
			}
			mu.Lock()
			failing = append(failing, ref)
			mu.Unlock()
			return nil
		}
		c.mu.Lock()
		if c.failures[ref.ID] > 0 {
			c.log.Info("node reachable again", "id", ref.ID, "addr", ref.Addr)
		}
		delete(c.failures, ref.ID)
		c.mu.Unlock()
		epoch, perr := fieldInt(fields, "cluster_current_epoch")
		if err != nil || perr != nil || epoch < t.Version {
			if err := c.pushTo(ctx, ref, t, rendered); err != nil {
				c.log.Warn("re-sync failed", "id", ref.ID, "addr", ref.Addr, "err", err)
			} else {
				c.log.Info("node re-synced", "id", ref.ID, "addr", ref.Addr, "version", t.Version)
			}
		}
		return nil
	}
	if err := c.fanout(t.allNodes(), probe); err != nil || ctx.Err() != nil {
		return
	}
	for _, ref := range failing {
		c.mu.Lock()
		c.failures[ref.ID]++
		count := c.failures[ref.ID]
		c.mu.Unlock()
		shard, master := t.ShardOfNode(ref.ID)
		if count == 1 {
			c.log.Warn("node unreachable", "id", ref.ID, "addr", ref.Addr, "master", master)
		}
		// Like upstream, retry a promotion that could not be made, but only
		// every FailureCount probes so a shard without replicas logs little.
		if master && count%c.cfg.FailureCount == 0 && c.auto.Load() {
			c.promote(ctx, shard, ref.ID)
		}
	}
}

// promote replaces the unreachable master id of shard by its replica with the
// highest sequence and commits the topology one version up (the new master
// gets it first, see commit). Nothing is paused: writes the replica had not
// applied are lost, as with the real controller.
func (c *Controller) promote(ctx context.Context, shard int, id string) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	t := c.Topology()
	if shard >= len(t.Shards) || t.Shards[shard].Master.ID != id {
		return // a failover already replaced it
	}
	log := c.log.With("shard", shard, "old_master", t.Shards[shard].Master.Addr)
	replica, err := c.pickReplica(ctx, t.Shards[shard], "", false)
	if err != nil {
		log.Warn("automatic failover impossible", "err", err)
		return
	}
	next, err := t.withPromoted(shard, replica.ID)
	if err != nil {
		log.Warn("automatic failover impossible", "err", err)
		return
	}
	log.Info("automatic failover: promoting replica", "new_master", replica.Addr, "version", next.Version)
	if err := c.commit(ctx, next); err != nil {
		if c.Topology().Version != next.Version {
			log.Warn("automatic failover not committed: the new master did not take the topology", "err", err)
			return
		}
		log.Warn("automatic failover pushed with errors", "err", err)
	}
	c.mu.Lock()
	delete(c.failures, id)
	delete(c.failures, replica.ID)
	c.mu.Unlock()
}
