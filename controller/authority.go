package controller

import (
	"context"
	"errors"
	"fmt"
)

// The two things kvproxy asks of the controller, which stays the cluster's
// topology authority for the failovers that pass through the proxy:
//   - Failover: a shard's failover, on released Kvrocks, which has no
//     CLUSTERX FAILOVER (the controller's CLIENT PAUSE way);
//   - RecordFailover: recording a failover the servers did themselves
//     (CLUSTERX FAILOVER of kvrocks#3295), so that no later push of the
//     controller gives the slots back to the old master. The caller
//     retries it until it succeeds.

// ErrPromotedOther is a failover in which the controller promoted another
// replica than the one asked for (upstream ignores a preferred node it does
// not find eligible).
var ErrPromotedOther = errors.New("the controller promoted another replica")

// Failover asks the controller to fail over the shard holding replica (its
// node id or host:port) to it, and waits for the answer. The error is an
// *Error, or wraps ErrPromotedOther when the failover happened to another
// replica.
func (c *Client) Failover(ctx context.Context, replica string) error {
	cluster, err := c.GetCluster(ctx)
	if err != nil {
		return err
	}
	shard, ok := cluster.ShardOfNode(replica)
	if !ok {
		return &Error{Message: fmt.Sprintf("node %s is not in the controller's cluster", replica)}
	}
	s := cluster.Shards[shard]
	if s.Master.ID == replica || s.Master.Addr == replica {
		return &Error{Message: fmt.Sprintf("node %s is already the master of shard %d in the controller's topology", replica, shard)}
	}
	return c.failoverTo(ctx, shard, s, replica)
}

// failoverTo fails shard s over to its replica whose id or address is
// replica.
func (c *Client) failoverTo(ctx context.Context, shard int, s Shard, replica string) error {
	want := replica
	for _, r := range s.Replicas {
		if r.Addr == replica {
			want = r.ID
		}
	}
	promoted, err := c.FailoverShard(ctx, shard, want)
	if err != nil {
		return err
	}
	if promoted != want {
		return fmt.Errorf("%w: %s instead of %s (shard %d)", ErrPromotedOther, promoted, want, shard)
	}
	return nil
}

// ErrMovedOn is a failover to record whose shard the controller already
// gave a master other than both of its nodes: a later change it knows of.
var ErrMovedOn = errors.New("the controller has another master for the shard")

// RecordFailover makes the controller's topology have newMaster (host:port)
// as the master of the shard oldMaster served: nothing to do if it already
// has it; a failover of the shard to it if the controller still has
// oldMaster (it then pushes the swapped topology, new master first).
func (c *Client) RecordFailover(ctx context.Context, oldMaster, newMaster string) error {
	cluster, err := c.GetCluster(ctx)
	if err != nil {
		return err
	}
	shard, ok := cluster.ShardOfNode(newMaster)
	if !ok {
		return &Error{Message: fmt.Sprintf("node %s is not in the controller's cluster", newMaster)}
	}
	s := cluster.Shards[shard]
	switch s.Master.Addr {
	case newMaster:
		return nil
	case oldMaster:
		return c.failoverTo(ctx, shard, s, newMaster)
	}
	return fmt.Errorf("%w: %s, not %s or %s (shard %d)", ErrMovedOn, s.Master.Addr, oldMaster, newMaster, shard)
}
