package keyspace

// JournalPublish moves the sequence and journals effect, which changes no
// key: a master's PUBLISH, which Kvrocks writes to its WAL (the pubsub
// column family) so that its replicas deliver the message to their own
// subscribers. Apply ignores the effect, as it ignores any it does not know,
// and adopts its sequence; the node that replays it delivers the message.
func (k *Keyspace) JournalPublish(effect ...[]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.record(effect...)
}
