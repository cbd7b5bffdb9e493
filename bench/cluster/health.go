package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// view is one node's picture of the cluster.
type view struct {
	entries []nodeEntry
	slots   []redis.ClusterSlot
}

// roleSignature renders the roles of the given nodes as this view sees them,
// so views can be compared.
func (v view) roleSignature(nodes []*Node) (string, error) {
	var b strings.Builder
	for _, n := range nodes {
		i := slices.IndexFunc(v.entries, func(e nodeEntry) bool { return e.ID == n.ID })
		if i < 0 {
			return "", fmt.Errorf("does not know %s", n)
		}
		e := v.entries[i]
		for _, bad := range []string{"fail", "fail?", "handshake", "noaddr"} {
			if e.has(bad) {
				return "", fmt.Errorf("flags %s %s", n, bad)
			}
		}
		if !e.has("myself") && e.LinkState != "connected" {
			return "", fmt.Errorf("link to %s is %s", n, e.LinkState)
		}
		switch {
		case e.has("master"):
			fmt.Fprintf(&b, "%s master\n", n.ID)
		case e.has("slave"):
			fmt.Fprintf(&b, "%s replica of %s\n", n.ID, e.MasterID)
		default:
			return "", fmt.Errorf("gives %s no role (%v)", n, e.Flags)
		}
	}
	return b.String(), nil
}

// slotSignature renders CLUSTER SLOTS canonically: ranges sorted, replicas
// sorted. It also checks that every slot is covered exactly once.
func (v view) slotSignature() (string, error) {
	slots := slices.Clone(v.slots)
	slices.SortFunc(slots, func(a, b redis.ClusterSlot) int { return a.Start - b.Start })
	var b strings.Builder
	next := 0
	for _, s := range slots {
		if s.Start != next || s.End < s.Start || len(s.Nodes) == 0 {
			return "", fmt.Errorf("slot map has a gap or overlap at %d-%d", s.Start, s.End)
		}
		next = s.End + 1
		ids := make([]string, 0, len(s.Nodes)-1)
		for _, rn := range s.Nodes[1:] {
			ids = append(ids, rn.ID)
		}
		slices.Sort(ids)
		fmt.Fprintf(&b, "%d-%d %s %v\n", s.Start, s.End, s.Nodes[0].ID, ids)
	}
	if next != SlotCount {
		return "", fmt.Errorf("slot map covers 0-%d only", next-1)
	}
	return b.String(), nil
}

// listsReplicas checks that CLUSTER SLOTS lists every running replica next
// to its master; clients that read from replicas find them only there.
func (v view) listsReplicas(running []*Node) error {
	for _, n := range running {
		i := slices.IndexFunc(v.entries, func(e nodeEntry) bool { return e.ID == n.ID })
		if i < 0 || !v.entries[i].has("slave") {
			continue
		}
		for _, s := range v.slots {
			if len(s.Nodes) == 0 || s.Nodes[0].ID != v.entries[i].MasterID {
				continue
			}
			if !slices.ContainsFunc(s.Nodes[1:], func(rn redis.ClusterNode) bool { return rn.ID == n.ID }) {
				return fmt.Errorf("CLUSTER SLOTS does not list replica %s at %d-%d yet", n, s.Start, s.End)
			}
		}
	}
	return nil
}

func (c *Cluster) viewOf(ctx context.Context, n *Node) (view, error) {
	text, err := n.client.ClusterNodes(ctx).Result()
	if err != nil {
		return view{}, fmt.Errorf("CLUSTER NODES on %s: %w", n, err)
	}
	slots, err := n.client.ClusterSlots(ctx).Result()
	if err != nil {
		return view{}, fmt.Errorf("CLUSTER SLOTS on %s: %w", n, err)
	}
	return view{entries: parseClusterNodes(text), slots: slots}, nil
}

// WaitHealthy waits until, among the running nodes: each reports
// cluster_state:ok, sees every other one connected and not failing, and all
// agree on the roles and the slot map (CLUSTER NODES, CLUSTER SLOTS); and
// every replica has master_link_status:up and has caught up with its
// master's replication offset. It then refreshes the cached topology.
//
// A killed master that no replica replaced leaves slots uncovered, so
// WaitHealthy fails until it is restarted.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var agreed view
	err := c.poll(ctx, "a healthy cluster", func(ctx context.Context) error {
		v, err := c.checkHealthy(ctx)
		agreed = v
		return err
	})
	if err != nil {
		return err
	}
	c.apply(agreed)
	return nil
}

// checkHealthy performs one round of the checks WaitHealthy describes and
// returns the view all nodes agreed on.
func (c *Cluster) checkHealthy(ctx context.Context) (view, error) {
	running := c.running()
	if len(running) == 0 {
		return view{}, errors.New("no node is running")
	}
	var first view
	var firstRoles, firstSlots string
	for i, n := range running {
		info, err := n.client.ClusterInfo(ctx).Result()
		if err != nil {
			return view{}, fmt.Errorf("CLUSTER INFO on %s: %w", n, err)
		}
		if state := parseInfo(info)["cluster_state"]; state != "ok" {
			return view{}, fmt.Errorf("%s reports cluster_state:%s", n, state)
		}
		v, err := c.viewOf(ctx, n)
		if err != nil {
			return view{}, err
		}
		roles, err := v.roleSignature(running)
		if err != nil {
			return view{}, fmt.Errorf("%s %w", n, err)
		}
		slots, err := v.slotSignature()
		if err != nil {
			return view{}, fmt.Errorf("%s: %w", n, err)
		}
		if i == 0 {
			first, firstRoles, firstSlots = v, roles, slots
			continue
		}
		if roles != firstRoles {
			return view{}, fmt.Errorf("%s and %s disagree on roles:\n%s---\n%s", running[0], n, firstRoles, roles)
		}
		if slots != firstSlots {
			return view{}, fmt.Errorf("%s and %s disagree on slots:\n%s---\n%s", running[0], n, firstSlots, slots)
		}
	}
	if err := first.listsReplicas(running); err != nil {
		return view{}, fmt.Errorf("%s: %w", running[0], err)
	}
	for _, e := range first.entries {
		replica := c.NodeByID(e.ID)
		if replica == nil || !slices.Contains(running, replica) || !e.has("slave") {
			continue
		}
		master := c.NodeByID(e.MasterID)
		if master == nil || !slices.Contains(running, master) {
			return view{}, fmt.Errorf("master of replica %s is not running", replica)
		}
		if err := inSync(ctx, replica, master); err != nil {
			return view{}, err
		}
	}
	return first, nil
}

// inSync checks that replica is linked to master and holds everything master
// had written when asked (master first, so a later replica offset that is at
// least as large proves it).
func inSync(ctx context.Context, replica, master *Node) error {
	mtext, err := master.client.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("INFO replication on %s: %w", master, err)
	}
	minfo := parseInfo(mtext)
	if minfo["role"] != "master" {
		return fmt.Errorf("%s reports role:%s, want master", master, minfo["role"])
	}
	rtext, err := replica.client.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("INFO replication on %s: %w", replica, err)
	}
	rinfo := parseInfo(rtext)
	switch {
	case rinfo["role"] != "slave":
		return fmt.Errorf("%s reports role:%s, want slave", replica, rinfo["role"])
	case rinfo["master_port"] != strconv.Itoa(master.Port):
		return fmt.Errorf("%s replicates from port %s, want %d", replica, rinfo["master_port"], master.Port)
	case rinfo["master_link_status"] != "up":
		return fmt.Errorf("%s reports master_link_status:%s", replica, rinfo["master_link_status"])
	}
	masterOffset, err1 := strconv.ParseInt(minfo["master_repl_offset"], 10, 64)
	replicaOffset, err2 := strconv.ParseInt(rinfo["slave_repl_offset"], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("replication offsets of %s/%s: %w", master, replica, err)
	}
	if replicaOffset < masterOffset {
		return fmt.Errorf("%s is at offset %d, its master %s at %d", replica, replicaOffset, master, masterOffset)
	}
	return nil
}

// Refresh reloads the cached topology (roles and slot owners used by
// Masters, Replicas, ReplicasOf and MasterForSlot) from the first running
// node that answers, healthy or not. Start, WaitHealthy, Failover, Restart
// and the migration calls refresh on their own; call Refresh after Kill
// once the cluster has reacted.
func (c *Cluster) Refresh(ctx context.Context) error {
	var errs []error
	for _, n := range c.running() {
		v, err := c.viewOf(ctx, n)
		if err == nil {
			c.apply(v)
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("cluster: refresh: no node answered: %w", errors.Join(errs...))
}

// apply caches the roles and slot owners of v.
func (c *Cluster) apply(v view) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range v.entries {
		if n := c.NodeByID(e.ID); n != nil {
			n.isMaster = e.has("master")
			n.masterID = e.MasterID
		}
	}
	c.slots = c.slots[:0]
	for _, s := range v.slots {
		if len(s.Nodes) == 0 {
			continue
		}
		if master := c.NodeByID(s.Nodes[0].ID); master != nil {
			c.slots = append(c.slots, slotOwner{SlotRange{s.Start, s.End}, master})
		}
	}
	slices.SortFunc(c.slots, func(a, b slotOwner) int { return a.Start - b.Start })
}
