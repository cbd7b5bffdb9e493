// A subscriber's output queue: one writer goroutine sends the client what
// its backend connections and the proxy queue for it, bounded by
// PubSubOutputLimit (see pubsub.go for the subscriber).

package proxy

import (
	"errors"
	"time"
)

// subscriberWriteChunk bounds one write to a subscriber, so the pending
// count follows what the client takes and the pumps resume once it is down
// to half the limit, not only after a whole batch.
const subscriberWriteChunk = 64 << 10

// errSubscriberStalled ends a subscriber that took nothing at its limit.
var errSubscriberStalled = errors.New("proxy: subscriber took no output for its stall timeout")

// writeLoop sends the queued output to the client.
func (sub *subscriber) writeLoop() {
	defer sub.wg.Done()
	// The session writes to the socket again once out of subscriber mode.
	defer func() { _ = sub.client.SetWriteDeadline(time.Time{}) }()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for {
		for len(sub.out) == 0 && !sub.closed {
			sub.cond.Wait()
		}
		if sub.closed {
			return
		}
		batch := sub.out
		sub.out, sub.spare = sub.spare[:0], nil
		sub.writing, sub.unsent = true, len(batch)
		err := sub.writeBatchLocked(batch)
		sub.writing, sub.unsent = false, 0
		if cap(batch) <= maxKeptBuffer {
			sub.spare = batch[:0]
		}
		if err != nil {
			sub.failLocked()
			return
		}
		sub.cond.Broadcast()
	}
}

// writeBatchLocked sends batch a chunk at a time, releasing sub.mu while it
// writes. Each write has a deadline: at the limit, PubSubStallTimeout after
// the later of the last progress and the pause, so a client that takes
// nothing for that long is disconnected (errSubscriberStalled); below the
// limit it only wakes the writer now and then, as such a client costs no
// more than the limit. Progress is dated when a write returns, never
// earlier than it happened.
func (sub *subscriber) writeBatchLocked(batch []byte) error {
	for sent := 0; sent < len(batch); {
		deadline := time.Now().Add(sub.stallTimeout)
		switch {
		case !sub.pausedAt.IsZero():
			deadline = sub.stalledSinceLocked().Add(sub.stallTimeout)
		case sub.encrypted:
			deadline = time.Time{} // enqueueLocked sets one at the limit
		}
		chunk := batch[sent:min(len(batch), sent+subscriberWriteChunk)]
		// Under sub.mu, so that a deadline enqueueLocked sets at the limit
		// comes after this one.
		err := sub.client.SetWriteDeadline(deadline)
		sub.mu.Unlock()
		n := 0
		if err == nil {
			n, err = sub.client.Write(chunk)
		}
		sub.mu.Lock()
		if n > 0 {
			sent += n
			sub.drainedLocked(n)
		}
		switch {
		case err == nil:
		case sub.closed || !isTimeout(err):
			return err
		case sub.encrypted || !sub.pausedAt.IsZero() && time.Since(sub.stalledSinceLocked()) >= sub.stallTimeout:
			sub.srv.stats.pubsubOutputLimitDisconnections.Add(1)
			sub.srv.stalledSubLog.Log("client", sub.client.RemoteAddr().String(), "pending", sub.pendingLocked(),
				"limit", sub.limit, "stalled", sub.stallTimeout)
			return errSubscriberStalled
		}
	}
	return nil
}

// stalledSinceLocked is when a paused subscriber last made progress: the
// later of its pause and its last drained byte.
func (sub *subscriber) stalledSinceLocked() time.Time {
	if sub.drainedAt.After(sub.pausedAt) {
		return sub.drainedAt
	}
	return sub.pausedAt
}

// pendingLocked is the output not yet written to the client.
func (sub *subscriber) pendingLocked() int { return len(sub.out) + sub.unsent }

// drainedLocked notes n bytes written to the client, resuming the pumps
// once the pending output is down to half the limit.
func (sub *subscriber) drainedLocked(n int) {
	sub.unsent -= n
	sub.drainedAt = time.Now()
	if !sub.pausedAt.IsZero() && int64(sub.pendingLocked()) <= sub.limit/2 {
		sub.pausedAt = time.Time{}
		sub.cond.Broadcast()
	}
}

// enqueueLocked queues output for the client; at the limit the pumps stop
// reading until the client has drained half of it. sub.mu is held.
func (sub *subscriber) enqueueLocked(b []byte) {
	if sub.closed {
		return
	}
	sub.out = append(sub.out, b...)
	pending := sub.pendingLocked()
	if pending > sub.peak {
		sub.peak = pending
		sub.srv.stats.notePubSubOutput(int64(pending))
	}
	if int64(pending) >= sub.limit && sub.pausedAt.IsZero() {
		sub.pausedAt = time.Now()
		sub.srv.stats.pubsubOutputLimitPauses.Add(1)
		if sub.encrypted && sub.writing {
			// Bound the write in progress, which has no deadline.
			_ = sub.client.SetWriteDeadline(sub.stalledSinceLocked().Add(sub.stallTimeout))
		}
	}
	sub.cond.Broadcast()
}

// reply writes a reply the proxy made, after everything before it.
func (sub *subscriber) reply(b []byte) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.enqueueLocked(b)
	for !sub.closed && (len(sub.out) > 0 || sub.writing) {
		sub.cond.Wait()
	}
}
