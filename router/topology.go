package router

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"kvproxy/internal/resp"
)

// SlotRange is an inclusive range of hash slots.
type SlotRange struct {
	Start, End int
}

// NodeInfo describes one cluster node as the router sees it.
type NodeInfo struct {
	// ID is the node's 40-character cluster id ("" when unknown, e.g. a node
	// learnt only from a MOVED).
	ID string
	// Addr is host:port.
	Addr string
	// Role is "master" or "replica", as the cluster reported it.
	Role string
	// MasterID is the id of a replica's master; "" for a master.
	MasterID string
	// Slots are the ranges this node serves in the router's slot table,
	// which includes what MOVED replies taught since the last reload.
	Slots []SlotRange
}

// Topology is a read-only snapshot of the router's view of the cluster.
type Topology struct {
	// Epoch is the cluster's current epoch (Kvrocks: topology version) at
	// the last reload.
	Epoch int64
	// Nodes lists the masters that serve slots, in slot order, then the
	// other known nodes in the order the cluster listed them.
	Nodes []NodeInfo
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, masterID string
	master             bool
	// configEpoch is the version of the node's claim on its slots: Redis'
	// configEpoch (a replica shows its master's), Kvrocks' topology version
	// (the same on every line). A node that handed its slots over gets them
	// back only with a higher one (see handover).
	configEpoch int64
}

// parseClusterNodes reads CLUSTER NODES output, Redis or Kvrocks flavour.
// hostOfReplier replaces an empty host (Redis prints ":0" for a node without
// an address yet). Slot fields are ignored: CLUSTER SLOTS is the source of
// slot ownership.
func parseClusterNodes(text, hostOfReplier string) ([]clusterNode, error) {
	var nodes []clusterNode
	for line, err := range resp.ClusterNodes(text) {
		if err != nil {
			return nil, err
		}
		host, port, err := net.SplitHostPort(line.HostPort())
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES line has a bad address %q", line.Addr)
		}
		if port == "0" || strings.Contains(line.Flags, "noaddr") || strings.Contains(line.Flags, "handshake") {
			continue // not reachable yet: nothing to route to
		}
		if host == "" {
			host = hostOfReplier
		}
		configEpoch, err := strconv.ParseInt(line.ConfigEpoch, 10, 64)
		if err != nil || configEpoch < 0 {
			return nil, fmt.Errorf("CLUSTER NODES line has a bad config epoch %q", line.ConfigEpoch)
		}
		n := clusterNode{id: line.ID, addr: net.JoinHostPort(host, port), configEpoch: configEpoch}
		if line.HasFlag("master") {
			n.master = true
		}
		if (line.HasFlag("slave") || line.HasFlag("replica")) && line.MasterID != "-" {
			n.masterID = line.MasterID
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// parseClusterEpoch returns cluster_current_epoch from CLUSTER INFO.
func parseClusterEpoch(text string) (int64, error) {
	value, ok := resp.InfoField(text, "cluster_current_epoch")
	if !ok {
		return 0, errors.New("CLUSTER INFO has no cluster_current_epoch")
	}
	epoch, err := strconv.ParseInt(value, 10, 64)
	if err != nil || epoch < 0 {
		return 0, fmt.Errorf("CLUSTER INFO has a bad cluster_current_epoch %q", strings.TrimSpace(value))
	}
	return epoch, nil
}

// slotOwner is one range of CLUSTER SLOTS: its master's address and id.
type slotOwner struct {
	SlotRange
	addr, id string
}

// clusterView is what one reload read from one node.
type clusterView struct {
	epoch  int64
	owners []slotOwner
	nodes  []clusterNode
}

// node returns the node the view lists at addr.
func (v *clusterView) node(addr string) (clusterNode, bool) {
	for _, n := range v.nodes {
		if n.addr == addr {
			return n, true
		}
	}
	return clusterNode{}, false
}

// nodeByID returns the node the view lists with id.
func (v *clusterView) nodeByID(id string) (clusterNode, bool) {
	for _, n := range v.nodes {
		if n.id == id {
			return n, true
		}
	}
	return clusterNode{}, false
}

// validateOwners checks that the ranges are in bounds and do not overlap.
// Adjacent ranges of one node need not be merged (Kvrocks does not).
func validateOwners(owners []slotOwner) error {
	var seen [SlotCount]bool
	for _, o := range owners {
		if o.Start < 0 || o.End >= SlotCount || o.Start > o.End {
			return fmt.Errorf("slot range %d-%d is out of bounds", o.Start, o.End)
		}
		if o.addr == "" {
			return fmt.Errorf("slot range %d-%d has no master address", o.Start, o.End)
		}
		for s := o.Start; s <= o.End; s++ {
			if seen[s] {
				return fmt.Errorf("slot %d is listed twice", s)
			}
			seen[s] = true
		}
	}
	return nil
}
