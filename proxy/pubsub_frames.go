// Pub/Sub reply frames: reading them, and the pong a subscribed client
// expects.

package proxy

import "kvproxy/internal/resp"

// appendPong appends the reply Redis gives PING on a subscribed RESP2
// connection: ["pong", payload], an empty payload without an argument.
func appendPong(b, payload []byte) []byte {
	b = resp.AppendArray(b, 2)
	b = resp.AppendBulkString(b, "pong")
	return resp.AppendBulk(b, payload)
}

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
