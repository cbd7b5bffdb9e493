package router

import "slices"

// slotTable is an immutable snapshot of slot ownership. Writers build a new
// one and swap the Router's pointer; the data path loads it once per round.
type slotTable struct {
	owner [SlotCount]*node
	// patched marks slots whose owner a MOVED taught after the last reload;
	// reloads keep them until the cluster's epoch increases.
	patched [SlotCount]bool
	// epoch is the cluster_current_epoch of the reload this table stems from.
	epoch int64
	// nodes is what the last reload listed, for Topology.
	nodes []clusterNode
	// masters are the distinct slot owners in the order of their first slot.
	masters []string
}

// withPatches returns a copy of t with each patch's slot owned by the node
// the patch names (patches are applied in order, so the last one wins).
// A MOVED from a master to its own replica means a failover, which moves
// every slot of the master: all of them are patched at once, rather than one
// MOVED (and one table copy) per slot.
func (t *slotTable) withPatches(patches []slotPatch, nodeOf func(addr string) *node) *slotTable {
	nt := *t
	for _, p := range patches {
		to := nodeOf(p.addr)
		if from := nt.owner[p.slot]; from != nil && from.addr == p.from && t.isReplicaOf(p.addr, p.from) {
			for s, n := range nt.owner {
				if n == from {
					nt.owner[s], nt.patched[s] = to, true
				}
			}
		}
		nt.owner[p.slot] = to
		nt.patched[p.slot] = true
	}
	nt.masters = distinctOwners(&nt.owner)
	return &nt
}

// onlyReplicaOf returns the address of master's replica when the last
// reload listed exactly one, else "".
func (t *slotTable) onlyReplicaOf(master string) string {
	var masterID string
	for _, n := range t.nodes {
		if n.addr == master {
			masterID = n.id
		}
	}
	replica := ""
	for _, n := range t.nodes {
		if masterID != "" && n.masterID == masterID {
			if replica != "" {
				return ""
			}
			replica = n.addr
		}
	}
	return replica
}

// isReplicaOf reports whether the last reload listed replica as a replica
// of master (both addresses).
func (t *slotTable) isReplicaOf(replica, master string) bool {
	var masterID string
	for _, n := range t.nodes {
		if n.addr == replica {
			masterID = n.masterID
		}
	}
	if masterID == "" {
		return false
	}
	for _, n := range t.nodes {
		if n.id == masterID {
			return n.addr == master
		}
	}
	return false
}

func distinctOwners(owner *[SlotCount]*node) []string {
	var masters []string
	var last *node
	for _, n := range owner {
		if n == nil || n == last {
			continue
		}
		last = n
		if !slices.Contains(masters, n.addr) {
			masters = append(masters, n.addr)
		}
	}
	return masters
}

// rangesOf lists the slot ranges addr owns in t, in slot order.
func (t *slotTable) rangesOf(addr string) []SlotRange {
	var ranges []SlotRange
	for s := 0; s < SlotCount; s++ {
		if n := t.owner[s]; n == nil || n.addr != addr {
			continue
		}
		end := s
		for end+1 < SlotCount && t.owner[end+1] != nil && t.owner[end+1].addr == addr {
			end++
		}
		ranges = append(ranges, SlotRange{s, end})
		s = end
	}
	return ranges
}
