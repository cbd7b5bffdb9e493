// Pub/Sub reply frames: reading them, and the pong a subscribed client
// expects.

package proxy

import (
	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
)

// appendPong appends the reply Redis gives PING on a subscribed RESP2
// connection: ["pong", payload], an empty payload without an argument.
func appendPong(b, payload []byte) []byte {
	b = resp.AppendArray(b, 2)
	b = resp.AppendBulkString(b, "pong")
	return resp.AppendBulk(b, payload)
}

// appendPong appends the reply to PING with payload (nil: none) on the
// subscriber's connection: Redis' pong array in RESP2, PING's usual reply
// in RESP3.
func (sub *subscriber) appendPong(b, payload []byte) []byte {
	switch {
	case !sub.resp3:
		return appendPong(b, payload)
	case payload == nil:
		return resp.AppendSimple(b, "PONG")
	}
	return resp.AppendBulk(b, payload)
}

// pushLocked queues a Pub/Sub frame from a node: a RESP3 subscriber gets
// its arrays as pushes. sub.mu is held.
func (sub *subscriber) pushLocked(frame []byte) {
	if !sub.resp3 {
		sub.enqueueLocked(frame)
		return
	}
	sub.pushes = resp.AppendPushes(sub.pushes[:0], frame)
	sub.enqueueLocked(sub.pushes)
	if cap(sub.pushes) > maxKeptBuffer {
		sub.pushes = nil
	}
}

// replyPushes is reply for Pub/Sub frames the proxy made.
func (sub *subscriber) replyPushes(frames []byte) {
	if sub.resp3 {
		frames = resp.AppendPushes(nil, frames)
	}
	sub.reply(frames)
}

// subscribedCommand serves a command other than a subscription one, PING
// or QUIT, from a RESP3 subscriber, which Redis allows: answered as outside
// subscriber mode, its reply queued after the messages before it. Commands
// that need a connection of their own are refused.
func (s *session) subscribedCommand(c *redcon.Command) {
	class := classOf(c.Args)
	why := ""
	switch {
	case class.kind == kindClusterxFailover || class.kind == kindProxyFailover:
		why = "it needs a connection of its own"
	case class.kind == kindDedicated && class.cmd.Flags&FlagPubSub == 0: // PUBLISH is routed
		// They would hold the session's dedicated connection while the
		// subscriber's connections write to the client as well.
		why = errNeedsOwnConnection
	}
	if why != "" {
		s.sub.reply(resp.AppendError(s.scratch[:0], "ERR Can't execute '"+class.cmd.Name+
			"' in subscriber mode through kvproxy: "+why))
		return
	}
	firstEntry, firstReq := len(s.entries), len(s.reqs)
	s.classifyCommand(c)
	s.shapeEntries(firstEntry, c.Args)
	if len(s.reqs) > firstReq {
		s.srv.backend.Do(s.ctx, s.reqs[firstReq:])
	}
	s.toSubscriber, s.subscriberOut = true, s.subscriberOut[:0]
	for i := firstEntry; i < len(s.entries); i++ {
		s.writeReply(&s.entries[i])
	}
	s.toSubscriber = false
	s.entries, s.reqs = s.entries[:firstEntry], s.reqs[:firstReq]
	s.sub.reply(s.subscriberOut)
	if cap(s.subscriberOut) > maxKeptBuffer {
		s.subscriberOut = nil
	}
}

// errNeedsOwnConnection ends the refusal of a transaction or blocking
// command on a RESP3 subscriber; client libraries report it as it is.
const errNeedsOwnConnection = "transactions (MULTI/EXEC, WATCH) and blocking commands need a connection of their own, use one that is not subscribed"

// subscribedPong turns the reply Kvrocks gives PING on a subscribed
// connection, +PONG as on any other (or the argument as a bulk string), into
// Redis' ["pong", payload]; ok is false for any other frame, Redis' array
// included. Clients get Redis' form: go-redis, redis-py and recent Jedis
// accept both, but Redis only ever sends a RESP2 subscriber the array, and
// parsers that read every subscribed frame as an array (Jedis 3) fail on
// the others.
func subscribedPong(frame []byte) (pong []byte, ok bool) {
	switch {
	case len(frame) > 0 && frame[0] == '+':
		return appendPong(nil, nil), true
	case len(frame) > 0 && frame[0] == '$':
		payload, next, ok := resp.BulkAt(frame, 0)
		if !ok || payload == nil || next != len(frame) {
			return nil, false
		}
		return appendPong(nil, payload), true
	}
	return nil, false
}

// parsePubSubReply reads the kind and channel of a RESP2 Pub/Sub frame
// (an array of at least two elements starting with two bulk strings; a nil
// channel comes back nil).
func parsePubSubReply(frame []byte) (kind string, channel []byte, ok bool) {
	if len(frame) == 0 || frame[0] != '*' {
		return "", nil, false
	}
	line, next, ok := resp.ReplyLine(frame)
	if !ok {
		return "", nil, false
	}
	if n, ok := resp.ParseInt(line); !ok || n < 2 {
		return "", nil, false
	}
	first, next, ok := resp.BulkAt(frame, next)
	if !ok || first == nil {
		return "", nil, false
	}
	channel, _, ok = resp.BulkAt(frame, next)
	if !ok {
		return "", nil, false
	}
	return string(first), channel, true
}
