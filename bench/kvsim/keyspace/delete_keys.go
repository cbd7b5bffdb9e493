package keyspace

// DeleteKeys removes every key match accepts and journals effect as one
// change, as Kvrocks deletes a slot range with one range deletion in its
// write-ahead log. It returns the sequence of that change (the current one
// when nothing matched, and nothing is journaled then) and how many keys went.
// effect is the node's own; Apply ignores it, so a replica replays it with
// ApplyDeleteKeys.
func (k *Keyspace) DeleteKeys(match func(key string) bool, effect ...[]byte) (seq uint64, deleted int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	deleted = k.deleteMatching(match)
	if deleted > 0 {
		k.record(effect...)
	}
	return k.seq, deleted
}

// ApplyDeleteKeys replays a master's DeleteKeys: it removes every key match
// accepts, whoever wrote it, and adopts the master's sequence unless its own
// is past it. A replica gets these deletions after a CLUSTERX TAKEOVER, when
// it has written on its own, and a Kvrocks sequence never goes back.
func (k *Keyspace) ApplyDeleteKeys(seq uint64, match func(key string) bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.deleteMatching(match)
	k.seq = max(k.seq, seq)
}

func (k *Keyspace) deleteMatching(match func(key string) bool) int {
	var doomed []string
	k.index.each(0, func(e indexEntry) bool {
		if match(e.key) {
			doomed = append(doomed, e.key)
		}
		return true
	})
	for _, key := range doomed {
		k.remove([]byte(key))
	}
	return len(doomed)
}
