package router

import (
	"slices"
	"strconv"
)

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
	// handovers are the nodes seen handing their slots over; never changed
	// in place (tables share it).
	handovers []handover
}

// handover records that the node at from handed its slots over: HandOver
// said so (a failover through the proxy succeeded), a MOVED came from a
// master to its own replica, or a newer topology listed a slot owner as a
// replica. Until a topology lists from as a master with a config epoch above
// epoch, no slot is routed back to it: a reload at the same or a lower
// version keeps those slots with their current owner, and a MOVED to it is
// not followed (see Router.redirect). After a Kvrocks CLUSTERX FAILOVER,
// CLUSTER SLOTS names the old master until the controller pushes a newer
// version, and a controller that never learnt of the failover may push its
// own stale topology again: neither may undo what the failover did.
type handover struct {
	from string
	// epoch is the highest cluster epoch (Kvrocks: topology version) at
	// which from was seen handed over.
	epoch int64
}

func (h handover) String() string {
	return h.from + " (epoch " + strconv.FormatInt(h.epoch, 10) + ")"
}

// handedOver reports whether addr handed its slots over and no newer
// topology made it a master again.
func (t *slotTable) handedOver(addr string) bool {
	for _, h := range t.handovers {
		if h.from == addr {
			return true
		}
	}
	return false
}

// withHandover returns a copy of hs recording from as handed over at epoch
// (or later, if it was already recorded at a higher one).
func withHandover(hs []handover, from string, epoch int64) []handover {
	out := slices.Clone(hs)
	for i := range out {
		if out[i].from == from {
			out[i].epoch = max(out[i].epoch, epoch)
			return out
		}
	}
	return append(out, handover{from, epoch})
}

// withoutHandover returns a copy of hs without from's record.
func withoutHandover(hs []handover, from string) []handover {
	return slices.DeleteFunc(slices.Clone(hs), func(h handover) bool { return h.from == from })
}

// handoversUnder returns t's handovers as a reloaded view leaves them. A
// node the view lists as a master with a config epoch above its record's
// took its slots back (a newer topology, a failover back): its record goes.
// A newer view listing a recorded node as a replica confirms its handover
// at the view's epoch. A slot owner of t that a newer view lists as the
// replica of a master claiming a config epoch above t's epoch handed over
// too; a replica of a master with an older claim is only a stale node's
// view (Redis' cluster epoch grows with any shard's failover), and so is a
// replica of a master that stays handed over: after every node was forced
// below a handover's version, a controller re-syncing its stale topology at
// that version is newer than t, yet must not undo the handover.
func (t *slotTable) handoversUnder(view *clusterView) []handover {
	var hs []handover
	for _, h := range t.handovers {
		n, listed := view.node(h.from)
		switch {
		case listed && n.master && n.configEpoch > h.epoch:
		case listed && !n.master:
			hs = append(hs, handover{h.from, max(h.epoch, view.epoch)})
		default:
			hs = append(hs, h)
		}
	}
	if view.epoch > t.epoch {
		for _, addr := range t.masters {
			n, listed := view.node(addr)
			if !listed || n.master {
				continue
			}
			m, ok := view.nodeByID(n.masterID)
			if ok && m.master && m.configEpoch > t.epoch && !slices.ContainsFunc(hs, func(h handover) bool { return h.from == m.addr }) {
				hs = withHandover(hs, addr, view.epoch)
			}
		}
	}
	return hs
}

// keepHandedOverSlots gives every slot t routes to a node that handed over
// back to its owner in prev, when prev has one that did not; it returns how
// many slots it kept so.
func (t *slotTable) keepHandedOverSlots(prev *slotTable) int {
	if len(t.handovers) == 0 {
		return 0
	}
	kept := 0
	for s, n := range t.owner {
		if n == nil || !t.handedOver(n.addr) {
			continue
		}
		if p := prev.owner[s]; p != nil && p != n && !t.handedOver(p.addr) {
			t.owner[s] = p
			kept++
		}
	}
	return kept
}

// sameAs reports whether t routes, and remembers, exactly what o does.
func (t *slotTable) sameAs(o *slotTable) bool {
	return t.epoch == o.epoch && t.owner == o.owner && t.patched == o.patched &&
		slices.Equal(t.nodes, o.nodes) && slices.Equal(t.handovers, o.handovers)
}

// withPatches returns a copy of t with each patch's slot owned by the node
// the patch names (patches are applied in order, so the last one wins).
// A MOVED from a master to its own replica means a failover, which moves
// every slot of the master: all of them are patched at once, rather than one
// MOVED (and one table copy) per slot, and the master's handover is
// recorded. A patch to a node that handed over is skipped: only a newer
// topology gives it slots again.
func (t *slotTable) withPatches(patches []slotPatch, nodeOf func(addr string) *node) *slotTable {
	nt := *t
	for _, p := range patches {
		if nt.handedOver(p.addr) {
			continue
		}
		to := nodeOf(p.addr)
		if from := nt.owner[p.slot]; from != nil && from.addr == p.from && t.isReplicaOf(p.addr, p.from) {
			for s, n := range nt.owner {
				if n == from {
					nt.owner[s], nt.patched[s] = to, true
				}
			}
			nt.handovers = withHandover(nt.handovers, p.from, t.epoch)
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
