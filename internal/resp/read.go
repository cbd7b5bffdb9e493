package resp

import (
	"strconv"
	"strings"
)

// Readers of the replies the proxy inspects: each takes a whole frame
// (see Scanner) and reports ok == false for anything else.

// ReplyLine returns the first line of a reply without its type byte and CRLF,
// and the offset after the CRLF; ok is false for a truncated reply.
func ReplyLine(reply []byte) (line []byte, next int, ok bool) {
	for i := 1; i+1 < len(reply); i++ {
		if reply[i] == '\r' && reply[i+1] == '\n' {
			return reply[1:i], i + 2, true
		}
	}
	return nil, 0, false
}

// ParseInt parses a decimal integer with an optional minus sign.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// ParseUint parses an unsigned decimal integer.
func ParseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	return n, err == nil
}

// IsError reports a RESP error (simple or blob).
func IsError(reply []byte) bool {
	return len(reply) > 0 && (reply[0] == '-' || reply[0] == '!')
}

// BulkAt reads the bulk string at frame[at:]; nil for a nil bulk.
func BulkAt(frame []byte, at int) (data []byte, next int, ok bool) {
	if at >= len(frame) || frame[at] != '$' {
		return nil, 0, false
	}
	line, n, ok := ReplyLine(frame[at:])
	if !ok {
		return nil, 0, false
	}
	size, ok := ParseInt(line)
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

// StringText returns the text of a bulk or verbatim string reply (a
// verbatim string's "txt:" format dropped).
func StringText(reply []byte) (string, bool) {
	if len(reply) == 0 || (reply[0] != '$' && reply[0] != '=') {
		return "", false
	}
	_, next, ok := ReplyLine(reply)
	if !ok || len(reply) < next+2 {
		return "", false
	}
	text := string(reply[next : len(reply)-2])
	if reply[0] == '=' {
		text = strings.TrimPrefix(text, "txt:")
	}
	return text, true
}
