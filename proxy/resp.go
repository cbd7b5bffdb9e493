package proxy

import (
	"strconv"
)

// Small RESP2 encoders: they append to a caller's buffer so that replies and
// rewritten commands are built without allocating.

func appendSimple(b []byte, s string) []byte {
	b = append(b, '+')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// appendError appends an error reply; msg starts with its prefix ("ERR ...").
func appendError(b []byte, msg string) []byte {
	b = append(b, '-')
	b = append(b, msg...)
	return append(b, '\r', '\n')
}

func appendInt(b []byte, n int64) []byte {
	b = append(b, ':')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

func appendArray(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

func appendBulk(b, data []byte) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(data)), 10)
	b = append(b, '\r', '\n')
	b = append(b, data...)
	return append(b, '\r', '\n')
}

func appendBulkString(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

func appendNullBulk(b []byte) []byte {
	return append(b, "$-1\r\n"...)
}

// replyLine returns the first line of a reply without its type byte and CRLF,
// and the offset after the CRLF; ok is false for a truncated reply.
func replyLine(reply []byte) (line []byte, next int, ok bool) {
	for i := 1; i+1 < len(reply); i++ {
		if reply[i] == '\r' && reply[i+1] == '\n' {
			return reply[1:i], i + 2, true
		}
	}
	return nil, 0, false
}

// parseInt64 parses a decimal integer with an optional minus sign.
func parseInt64(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// parseUint64 parses an unsigned decimal integer.
func parseUint64(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	return n, err == nil
}

// isErrorReply reports a RESP error (simple or blob).
func isErrorReply(reply []byte) bool {
	return len(reply) > 0 && (reply[0] == '-' || reply[0] == '!')
}

// appendCommand appends args as a RESP command: an array of bulk strings.
func appendCommand(b []byte, args ...[]byte) []byte {
	b = appendArray(b, len(args))
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}
