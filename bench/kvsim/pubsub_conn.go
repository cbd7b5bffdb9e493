package kvsim

import (
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/tidwall/redcon"

	"kvproxy/bench/kvsim/keyspace"
)

// A connection's first SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE takes it over
// from redcon, whose writer only the connection's own goroutine may use:
// from then on one queue holds everything the client is sent, the replies
// to its commands and the messages other connections publish, and a writer
// goroutine drains it. A publisher only appends to the queue, so a
// subscriber that does not read never stalls PUBLISH; past the hub's output
// limit it is disconnected instead.

// subscriber is the Pub/Sub side of a taken-over connection.
type subscriber struct {
	conn  net.Conn
	limit int

	mu       sync.Mutex
	pending  []byte // queued, not yet handed to the writer
	inflight int    // bytes the writer is writing now
	quitting bool   // QUIT: close once everything queued is written
	closed   bool
	wake     chan struct{} // capacity 1: something was queued, or quitting set
	done     chan struct{} // closed with the connection

	// The subscriptions, in subscription order. Only the connection's reader
	// goroutine (the one running its commands) touches them.
	names [3][]string // by subscriptionKind
}

// queue appends frame to the output; false if the connection is closed, or
// closes now because frame would take its output past the limit.
func (s *subscriber) queue(frame []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queueLocked(frame)
}

func (s *subscriber) queueLocked(frame []byte) bool {
	if s.closed || s.quitting {
		return false
	}
	if len(s.pending)+s.inflight+len(frame) > s.limit {
		s.closeLocked()
		return false
	}
	s.pending = append(s.pending, frame...)
	s.signal()
	return true
}

func (s *subscriber) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

func (s *subscriber) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	s.pending = nil
	close(s.done)
	_ = s.conn.Close()
}

// quit makes the writer close the connection once the queue is written.
func (s *subscriber) quit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quitting = true
	s.signal()
}

// subscribe adds names of kind and queues a confirmation for each. The
// subscriber's lock is held from the first table change to the last
// confirmation queued, so no message a new subscription lets through is
// queued before its confirmation.
func (s *subscriber) subscribe(h *pubsubHub, kind subscriptionKind, names [][]byte, resp3 bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h.mu.Lock()
	var out []byte
	for _, b := range names {
		name := string(b)
		if !slices.Contains(s.names[kind], name) {
			s.names[kind] = append(s.names[kind], name)
			h.add(kind, name, s)
		}
		out = appendSubscriptionReply(out, subscribeName[kind], name, s.count(kind), resp3)
	}
	h.mu.Unlock()
	s.queueLocked(out)
}

// unsubscribe removes names of kind (every one of that kind when names is
// empty) and queues the confirmations.
func (s *subscriber) unsubscribe(h *pubsubHub, kind subscriptionKind, names [][]byte, resp3 bool) {
	h.mu.Lock()
	var out []byte
	if len(names) == 0 {
		held := s.names[kind]
		s.names[kind] = nil
		if len(held) == 0 {
			out = appendSubscriptionReply(out, unsubscribeName[kind], "", s.count(kind), resp3)
		}
		for i, name := range held {
			h.remove(kind, name, s)
			out = appendSubscriptionReply(out, unsubscribeName[kind], name, len(held)-1-i+s.count(kind), resp3)
		}
	}
	for _, b := range names {
		name := string(b)
		if i := slices.Index(s.names[kind], name); i >= 0 {
			s.names[kind] = slices.Delete(s.names[kind], i, i+1)
			h.remove(kind, name, s)
		}
		out = appendSubscriptionReply(out, unsubscribeName[kind], name, s.count(kind), resp3)
	}
	h.mu.Unlock()
	s.queue(out)
}

// count is the subscription count a confirmation of kind reports: channels
// and patterns count together, shard channels alone.
func (s *subscriber) count(kind subscriptionKind) int {
	if kind == kindShard {
		return len(s.names[kindShard])
	}
	return len(s.names[kindChannel]) + len(s.names[kindPattern])
}

// dropAll removes every subscription from the hub.
func (s *subscriber) dropAll(h *pubsubHub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for kind, names := range s.names {
		for _, name := range names {
			h.remove(subscriptionKind(kind), name, s)
		}
	}
}

// startSubscriber takes conn over for its first subscription (of kind, to
// names) and serves it from then on.
func (n *Node) startSubscriber(conn redcon.Conn, sess *session, kind subscriptionKind, names [][]byte) {
	run := n.currentRun()
	if run == nil {
		return
	}
	dc := conn.Detach()
	sub := &subscriber{
		conn:  dc.NetConn(),
		limit: n.pubsub.limit(),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	// removeSession leaves a subscriber's session to endSubscriber.
	sess.sub = sub
	run.wg.Add(3) // the handler's own count keeps the group above zero here
	go func() {
		defer run.wg.Done()
		select {
		case <-run.stop:
			sub.close()
		case <-sub.done:
		}
	}()
	go func() {
		defer run.wg.Done()
		sub.writeLoop()
	}()
	go func() {
		defer run.wg.Done()
		defer n.endSubscriber(sess, sub)
		// Replies to the commands before this one in the batch go first.
		if dc.Flush() != nil {
			return
		}
		sub.subscribe(&n.pubsub, kind, names, sess.resp3)
		n.serveSubscriber(sub, dc)
	}()
}

// serveSubscriber runs the connection's commands until it closes.
func (n *Node) serveSubscriber(sub *subscriber, dc redcon.DetachedConn) {
	capture := &replyRecorder{Conn: dc}
	for {
		cmd, err := dc.ReadCommand()
		if err != nil {
			return
		}
		capture.out = capture.out[:0]
		if len(cmd.Args) > 0 && strings.EqualFold(string(cmd.Args[0]), replPsyncCommand) {
			// Replication takes a connection over too: not a subscribed one.
			capture.WriteRaw(keyspace.AppendUnknownCommand(nil, cmd.Args))
		} else {
			n.serve(capture, cmd)
		}
		if len(capture.out) > 0 && !sub.queue(capture.out) {
			return
		}
		if capture.closeRequested {
			sub.quit()
			<-sub.done
			return
		}
	}
}

// endSubscriber closes the connection and forgets its subscriptions and its
// session.
func (n *Node) endSubscriber(sess *session, sub *subscriber) {
	sub.close()
	sub.dropAll(&n.pubsub)
	n.endSession(sess)
}

// writeLoop writes the queue to the connection until it closes.
func (s *subscriber) writeLoop() {
	var buf []byte
	for {
		s.mu.Lock()
		buf, s.pending = s.pending, buf[:0]
		s.inflight = len(buf)
		closed, quitting := s.closed, s.quitting
		s.mu.Unlock()
		if closed {
			return
		}
		if len(buf) > 0 {
			if _, err := s.conn.Write(buf); err != nil {
				s.close()
				return
			}
			s.mu.Lock()
			s.inflight = 0
			s.mu.Unlock()
			continue
		}
		if quitting {
			s.close()
			return
		}
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}
