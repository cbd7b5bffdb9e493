package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"
)

// migrateBatch is how many keys MigrateKeys moves per MIGRATE call.
const migrateBatch = 100

// migrateTimeout is the MIGRATE timeout argument.
const migrateTimeout = 5 * time.Second

// manualFailoverRetry is how long Failover waits for a promotion before it
// sends CLUSTER FAILOVER again: twice the server's 5 s manual failover
// timeout, after which the first attempt has certainly been abandoned.
const manualFailoverRetry = 10 * time.Second

var errClosed = errors.New("cluster: closed")

// Kill SIGKILLs the node and waits for it to exit. The cluster notices after
// NodeTimeout; a killed master with a replica is then replaced by it. The
// cached topology is not refreshed (see Refresh).
func (c *Cluster) Kill(n *Node) error {
	c.mu.Lock()
	proc := n.proc
	n.proc = nil
	c.mu.Unlock()
	if proc == nil {
		return fmt.Errorf("cluster: kill %s: not running", n)
	}
	proc.stop(syscall.SIGKILL, 0)
	return nil
}

// Restart starts a killed node again on the same port and directory, so it
// keeps its id and rejoins the cluster from nodes.conf, then waits until the
// whole cluster is healthy (WaitHealthy). With persistence off, the node
// comes back empty: as a replica it resyncs; as a master that was not
// replaced meanwhile, it serves its slots without their old keys.
func (c *Cluster) Restart(ctx context.Context, n *Node) error {
	c.mu.Lock()
	running, closed := n.proc != nil, c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return errClosed
	case running:
		return fmt.Errorf("cluster: restart %s: still running", n)
	}
	proc, err := c.relaunch(ctx, n)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		proc.stop(syscall.SIGKILL, 0)
		return errClosed
	}
	n.proc = proc
	c.mu.Unlock()
	return c.WaitHealthy(ctx)
}

// relaunch starts n's server, retrying while its port is still held (by a
// socket of the old process or a connection that borrowed it).
func (c *Cluster) relaunch(ctx context.Context, n *Node) (*process, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.WaitTimeout)
	defer cancel()
	for {
		proc, err := n.launch(ctx, c.binary)
		if err == nil || !errors.Is(err, errAddrInUse) {
			return proc, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Failover sends CLUSTER FAILOVER to replica and waits until the roles have
// swapped everywhere: replica reports role:master, every running node agrees
// that it is a master and its old master is now its replica, and the old
// master is in sync with it; then the cluster is healthy (WaitHealthy).
func (c *Cluster) Failover(ctx context.Context, replica *Node) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.WaitTimeout)
	defer cancel()
	info, err := replica.client.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("cluster: failover: INFO on %s: %w", replica, err)
	}
	fields := parseInfo(info)
	if fields["role"] != "slave" {
		return fmt.Errorf("cluster: failover: %s is not a replica (role:%s)", replica, fields["role"])
	}
	oldMaster := c.NodeByAddr(nodeAddr(atoi(fields["master_port"])))
	if oldMaster == nil {
		return fmt.Errorf("cluster: failover: master of %s (port %s) is not part of this cluster", replica, fields["master_port"])
	}

	sent := time.Now()
	if err := replica.client.ClusterFailover(ctx).Err(); err != nil {
		return fmt.Errorf("cluster: CLUSTER FAILOVER on %s: %w", replica, err)
	}
	c.log.Info("manual failover", "replica", replica.String(), "master", oldMaster.String())
	err = c.poll(ctx, "roles to swap after failover of "+replica.String(), func(ctx context.Context) error {
		if time.Since(sent) > manualFailoverRetry {
			if text, err := replica.client.Info(ctx, "replication").Result(); err == nil && parseInfo(text)["role"] == "slave" {
				c.log.Info("manual failover timed out, retrying", "replica", replica.String())
				replica.client.ClusterFailover(ctx)
				sent = time.Now()
			}
		}
		if err := inSync(ctx, oldMaster, replica); err != nil {
			return err
		}
		for _, n := range c.running() {
			v, err := c.viewOf(ctx, n)
			if err != nil {
				return err
			}
			if !v.sees(replica.ID, "") || !v.sees(oldMaster.ID, replica.ID) {
				return fmt.Errorf("%s has not seen the swap yet", n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// sees reports whether the view gives node id the master masterID ("" for
// a master).
func (v view) sees(id, masterID string) bool {
	for _, e := range v.entries {
		if e.ID == id {
			if masterID == "" {
				return e.has("master")
			}
			return e.has("slave") && e.MasterID == masterID
		}
	}
	return false
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// BeginMigration opens the migration of slot from src to dst: CLUSTER
// SETSLOT IMPORTING on dst, then MIGRATING on src (redis-cli's order, so no
// moment exists where src redirects to a dst that refuses). From now on src
// answers ASK for keys of slot it no longer holds.
func (c *Cluster) BeginMigration(ctx context.Context, slot int, src, dst *Node) error {
	if err := dst.client.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.ID).Err(); err != nil {
		return fmt.Errorf("cluster: SETSLOT %d IMPORTING on %s: %w", slot, dst, err)
	}
	if err := src.client.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.ID).Err(); err != nil {
		return fmt.Errorf("cluster: SETSLOT %d MIGRATING on %s: %w", slot, src, err)
	}
	return nil
}

// MigrateKeys moves every key of slot from src to dst (CLUSTER
// GETKEYSINSLOT, then MIGRATE in batches) and returns how many it moved.
// It must run between BeginMigration and FinishMigration.
func (c *Cluster) MigrateKeys(ctx context.Context, slot int, src, dst *Node) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.WaitTimeout)
	defer cancel()
	moved := 0
	for {
		keys, err := src.client.ClusterGetKeysInSlot(ctx, slot, migrateBatch).Result()
		if err != nil {
			return moved, fmt.Errorf("cluster: GETKEYSINSLOT %d on %s: %w", slot, src, err)
		}
		if len(keys) == 0 {
			return moved, nil
		}
		args := []any{"MIGRATE", loopback, dst.Port, "", 0, migrateTimeout.Milliseconds(), "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.client.Do(ctx, args...).Err(); err != nil {
			return moved, fmt.Errorf("cluster: MIGRATE %d keys of slot %d from %s to %s: %w", len(keys), slot, src, dst, err)
		}
		moved += len(keys)
	}
}

// FinishMigration assigns slot to dst with CLUSTER SETSLOT NODE on dst, then
// src, then every other running master (redis-cli's order), and waits until
// every running node agrees that dst owns the slot and the cluster is
// healthy. From then on src answers MOVED for the slot.
func (c *Cluster) FinishMigration(ctx context.Context, slot int, src, dst *Node) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.WaitTimeout)
	defer cancel()
	targets := []*Node{dst, src}
	for _, n := range c.running() {
		if n != dst && n != src && n.IsMaster() {
			targets = append(targets, n)
		}
	}
	for _, n := range targets {
		if err := n.client.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dst.ID).Err(); err != nil {
			return fmt.Errorf("cluster: SETSLOT %d NODE %s on %s: %w", slot, dst, n, err)
		}
	}
	err := c.poll(ctx, fmt.Sprintf("every node to give slot %d to %s", slot, dst), func(ctx context.Context) error {
		for _, n := range c.running() {
			v, err := c.viewOf(ctx, n)
			if err != nil {
				return err
			}
			if owner := v.owner(slot); owner != dst.ID {
				return fmt.Errorf("%s still gives slot %d to %s", n, slot, owner)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// owner returns the id of the master that v gives slot to.
func (v view) owner(slot int) string {
	for _, s := range v.slots {
		if s.Start <= slot && slot <= s.End && len(s.Nodes) > 0 {
			return s.Nodes[0].ID
		}
	}
	return ""
}

// MigrateSlot moves slot to dst in one call: BeginMigration, MigrateKeys
// and FinishMigration from its current owner. It does nothing when dst
// already owns the slot.
func (c *Cluster) MigrateSlot(ctx context.Context, slot int, dst *Node) error {
	if err := c.Refresh(ctx); err != nil {
		return err
	}
	src := c.MasterForSlot(slot)
	switch {
	case src == nil:
		return fmt.Errorf("cluster: slot %d has no owner", slot)
	case src == dst:
		return nil
	}
	if err := c.BeginMigration(ctx, slot, src, dst); err != nil {
		return err
	}
	if _, err := c.MigrateKeys(ctx, slot, src, dst); err != nil {
		return err
	}
	return c.FinishMigration(ctx, slot, src, dst)
}
