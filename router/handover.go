package router

import "kvproxy/failover"

// actOnNotices does what the hold tells: dial a replica about to be
// promoted, route a handed-over master's slots to its replica.
func (r *Router) actOnNotices() {
	defer r.wg.Done()
	notices := r.hold.Notices()
	for {
		select {
		case <-r.ctx.Done():
			return
		case n := <-notices:
			switch n.Kind {
			case failover.NoticeWarm:
				r.nodeOf(n.Replica)
			case failover.NoticeHandedOver:
				r.routeToNewMaster(n.Master, n.Replica)
			}
			n.Ack()
		}
	}
}

// routeToNewMaster routes every slot of master to replica at once: a
// failover of master has just succeeded. No topology at the current epoch
// or an older one, and no MOVED, routes them back to master: only a
// topology that makes master a master again at a higher config epoch does
// (see handover). A handover recorded for replica ends: it took over. With
// replica "", master's only replica in the topology is taken; with none or
// several, nothing changes (MOVED will tell).
func (r *Router) routeToNewMaster(master, replica string) {
	r.tableMu.Lock()
	defer r.tableMu.Unlock()
	cur := r.table.Load()
	if replica == "" {
		if replica = cur.onlyReplicaOf(master); replica == "" {
			return
		}
	}
	base := *cur
	base.handovers = withHandover(withoutHandover(cur.handovers, replica), master, cur.epoch)
	var patches []slotPatch
	for s, n := range cur.owner {
		if n != nil && n.addr == master {
			patches = append(patches, slotPatch{s, replica, master})
		}
	}
	nt := &base
	if len(patches) > 0 {
		nt = base.withPatches(patches, r.nodeOf)
	}
	if nt.sameAs(cur) {
		return
	}
	r.storeTableLocked(nt)
	r.log.Info("failover succeeded: slots routed to the new master", "from", master, "to", replica, "slots", len(patches),
		"epoch", cur.epoch)
}
