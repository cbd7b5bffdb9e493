package kvsim

import "time"

// delSlotsEffect is the journaled effect of a node deleting the keys of
// slots it handed over, followed by the slot ranges: one change, as the
// range deletions Kvrocks writes to its WAL.
const delSlotsEffect = "__kvsim_delslots"

// sentWait bounds how long an old master applying a topology waits for its
// streams to carry its slot deletions before it drops its replicas.
const sentWait = time.Second

// deleteFormerSlots is what Kvrocks with kvrocks#3295 does when a node whose
// slots were all marked migrated by a successful CLUSTERX FAILOVER applies a
// topology that no longer gives it those slots: it deletes their keys (spec
// section 8). The deletions replicate like any write, so a replica still
// attached, which is the new master until it applies the swap itself, loses
// every key of those slots, its own writes since TAKEOVER included. Hence a
// controller must push a swapped topology to the new master first. Caller
// holds viewMu; next is not stored yet.
func (n *Node) deleteFormerSlots(cur, next *clusterView) {
	if cur.migratedTo == "" {
		return
	}
	var former [numSlots]bool
	var spans []slotSpan
	for s := range numSlots {
		if owner := cur.slots[s]; owner == nil || !cur.owns(owner) {
			continue
		}
		if owner := next.slots[s]; owner != nil && next.owns(owner) {
			continue
		}
		former[s] = true
		if k := len(spans) - 1; k >= 0 && spans[k].end == s-1 {
			spans[k].end = s
		} else {
			spans = append(spans, slotSpan{s, s})
		}
	}
	if len(spans) == 0 {
		return
	}
	effect := [][]byte{[]byte(delSlotsEffect)}
	for _, sp := range spans {
		effect = append(effect, []byte(SlotRange{sp.start, sp.end}.String()))
	}
	seq, deleted := n.ks.DeleteKeys(func(key string) bool { return former[hashSlot([]byte(key))] }, effect...)
	n.log.Info("kvsim deleted the keys of handed-over slots", "keys", deleted, "ranges", len(spans))
	if deleted > 0 {
		n.streams.waitSent(seq, sentWait)
	}
}

// applyEffect applies one change received from the master.
func (n *Node) applyEffect(seq uint64, effect [][]byte) {
	if len(effect) == 0 || string(effect[0]) != delSlotsEffect {
		n.ks.Apply(seq, effect)
		return
	}
	var slots [numSlots]bool
	for _, arg := range effect[1:] {
		span, err := parseSlotSpan(string(arg))
		if err != nil {
			continue // a master of ours writes none; a fuzzed stream may
		}
		for s := span.start; s <= span.end; s++ {
			slots[s] = true
		}
	}
	n.ks.ApplyDeleteKeys(seq, func(key string) bool { return slots[hashSlot([]byte(key))] })
}
