package proxy

import (
	"slices"
	"strconv"

	"kvproxy/router"
)

// topology is the backends' topology with the roles as the proxy routes:
// see routedTopology.
func (srv *Server) topology() router.Topology {
	return routedTopology(srv.backend.Topology())
}

// routedTopology returns topo with every node's role as the proxy routes
// by it. The router reports roles as the cluster last listed them, but its
// slots include what handovers and MOVED taught since: after a Kvrocks
// failover (CLUSTERX FAILOVER and TAKEOVER) the nodes keep listing the old
// roles until the controller pushes a new topology, so the new master
// would show as a replica owning the shard's slots and the old master as a
// master owning none. Here a node serving slots is a master, and when it
// was listed as a replica of a master that now serves none, that master
// and its other replicas become its replicas, as the controller's swapped
// topology will list them.
func routedTopology(topo router.Topology) router.Topology {
	nodes := slices.Clone(topo.Nodes)
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		if n.ID != "" {
			index[n.ID] = i
		}
	}
	for i := range nodes {
		n := &nodes[i]
		if len(n.Slots) == 0 || n.Role == "master" {
			continue
		}
		if old, ok := index[n.MasterID]; ok && len(nodes[old].Slots) == 0 {
			oldID := nodes[old].ID
			for j := range nodes {
				if j == old || (nodes[j].MasterID == oldID && j != i && len(nodes[j].Slots) == 0) {
					nodes[j].Role, nodes[j].MasterID = "replica", n.ID
				}
			}
		}
		n.Role, n.MasterID = "master", ""
	}
	return router.Topology{Epoch: topo.Epoch, Nodes: nodes}
}

// shard is a master serving slots and its replicas, from a routed topology.
type shard struct {
	master   router.NodeInfo
	replicas []router.NodeInfo
}

// shardsOf lists the shards of a routed topology in the order of their
// first slot, which a handover does not change: shard i stays shard i when
// its replica takes over (PROXY FAILOVER and INFO failover number them so).
func shardsOf(topo router.Topology) []shard {
	var shards []shard
	for _, n := range topo.Nodes {
		if len(n.Slots) == 0 {
			continue
		}
		sh := shard{master: n}
		for _, r := range topo.Nodes {
			if n.ID != "" && r.MasterID == n.ID && len(r.Slots) == 0 {
				sh.replicas = append(sh.replicas, r)
			}
		}
		shards = append(shards, sh)
	}
	return shards
}

// findShard finds the shard arg names: its index, or its master's id.
func findShard(shards []shard, arg []byte) (int, bool) {
	for i, sh := range shards {
		if sh.master.ID != "" && sh.master.ID == string(arg) {
			return i, true
		}
	}
	// A node id may be all digits, but it has 40 of them.
	if i, err := strconv.Atoi(string(arg)); err == nil && len(arg) < 40 && i >= 0 && i < len(shards) {
		return i, true
	}
	return 0, false
}

// members lists the addresses of the shard's nodes, master first.
func (sh shard) members() []string {
	addrs := []string{sh.master.Addr}
	for _, r := range sh.replicas {
		addrs = append(addrs, r.Addr)
	}
	return addrs
}
