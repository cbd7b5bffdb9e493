// Pub/Sub reply frames: reading them, and the pong a subscribed client
// expects.

package proxy

// appendPong appends the reply Redis gives PING on a subscribed RESP2
// connection: ["pong", payload], an empty payload without an argument.
func appendPong(b, payload []byte) []byte {
	b = appendArray(b, 2)
	b = appendBulkString(b, "pong")
	return appendBulk(b, payload)
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
		payload, next, ok := bulkAt(frame, 0)
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
	line, next, ok := replyLine(frame)
	if !ok {
		return "", nil, false
	}
	if n, ok := parseInt64(line); !ok || n < 2 {
		return "", nil, false
	}
	first, next, ok := bulkAt(frame, next)
	if !ok || first == nil {
		return "", nil, false
	}
	channel, _, ok = bulkAt(frame, next)
	if !ok {
		return "", nil, false
	}
	return string(first), channel, true
}

// bulkAt reads the bulk string at frame[at:]; nil for a nil bulk.
func bulkAt(frame []byte, at int) (data []byte, next int, ok bool) {
	if at >= len(frame) || frame[at] != '$' {
		return nil, 0, false
	}
	line, n, ok := replyLine(frame[at:])
	if !ok {
		return nil, 0, false
	}
	size, ok := parseInt64(line)
	switch {
	case !ok || size < -1:
		return nil, 0, false
	case size == -1:
		return nil, at + n, true
	}
	start := at + n
	end := start + int(size)
	if size > int64(len(frame)) || end+2 > len(frame) || frame[end] != '\r' || frame[end+1] != '\n' {
		return nil, 0, false
	}
	return frame[start:end], end + 2, true
}
