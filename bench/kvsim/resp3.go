package kvsim

import (
	"bytes"
	"strconv"

	"github.com/tidwall/redcon"
)

// RESP3 for a connection that chose it with HELLO 3. The keyspace writes
// RESP2; a data command's reply is rewritten here as Kvrocks' reply helpers
// write it for RESP3: every null (NilString, NilArray and MGET's missing
// values) is `_`, and the commands below have a map or set at the top.
// Kvrocks sends scores and INCRBYFLOAT results as bulk strings in both
// protocols, so no double is produced. CLUSTER INFO and NODES are verbatim
// strings (writeText).

// resp3Aggregates maps a command to the RESP3 type of its top-level array:
// '%' a map (its array holds key, value, key, value...), '~' a set.
var resp3Aggregates = map[string]byte{
	"hgetall": '%', // MapOfBulkStrings
	// SetOfBulkStrings
	"smembers": '~', "sdiff": '~', "sunion": '~', "sinter": '~', "srandmember": '~', "spop": '~',
}

// appendRESP3 appends reply, one well-formed RESP2 value, rewritten for
// RESP3; top is the RESP3 type of a top-level array (0: it stays an array).
// A reply it cannot walk is appended unchanged.
func appendRESP3(out, reply []byte, top byte) []byte {
	converted, rest, ok := convertRESP3(out, reply, top)
	if !ok || len(rest) != 0 {
		return append(out, reply...)
	}
	return converted
}

// convertRESP3 converts the first value of in, returning what follows it.
func convertRESP3(out, in []byte, aggregate byte) ([]byte, []byte, bool) {
	line := bytes.Index(in, []byte("\r\n"))
	if line < 1 {
		return out, in, false
	}
	header, rest := in[:line], in[line+2:]
	switch header[0] {
	case '+', '-', ':':
		return append(out, in[:line+2]...), rest, true
	case '$', '*':
	default:
		return out, in, false
	}
	n, err := strconv.Atoi(string(header[1:]))
	switch {
	case err != nil || n < -1:
		return out, in, false
	case n == -1:
		return append(out, "_\r\n"...), rest, true
	case header[0] == '$':
		if n > len(rest)-2 || rest[n] != '\r' || rest[n+1] != '\n' {
			return out, in, false
		}
		return append(out, in[:line+2+n+2]...), rest[n+2:], true
	}
	switch aggregate {
	case '%':
		if n%2 != 0 {
			return out, in, false
		}
		out = appendAggregateHeader(out, '%', n/2)
	case '~':
		out = appendAggregateHeader(out, '~', n)
	default:
		out = appendAggregateHeader(out, '*', n)
	}
	for range n {
		var ok bool
		if out, rest, ok = convertRESP3(out, rest, 0); !ok {
			return out, in, false
		}
	}
	return out, rest, true
}

func appendAggregateHeader(out []byte, kind byte, n int) []byte {
	out = append(out, kind)
	out = strconv.AppendInt(out, int64(n), 10)
	return append(out, '\r', '\n')
}

// appendMapHeader is Kvrocks' HeaderOfMap: a map of n pairs in RESP3, an
// array of 2n elements in RESP2.
func appendMapHeader(out []byte, n int, resp3 bool) []byte {
	if resp3 {
		return appendAggregateHeader(out, '%', n)
	}
	return appendAggregateHeader(out, '*', 2*n)
}

// writeText is Kvrocks' VerbatimString("txt", text): a bulk string in RESP2.
func writeText(conn redcon.Conn, text string, resp3 bool) {
	if !resp3 {
		conn.WriteBulkString(text)
		return
	}
	out := append([]byte{'='}, strconv.Itoa(len(text)+4)...)
	out = append(out, "\r\ntxt:"...)
	out = append(out, text...)
	conn.WriteRaw(append(out, '\r', '\n'))
}

// writeNil is Kvrocks' NilString: `$-1` in RESP2, `_` in RESP3.
func writeNil(conn redcon.Conn, resp3 bool) {
	if resp3 {
		conn.WriteRaw([]byte("_\r\n"))
		return
	}
	conn.WriteNull()
}
