package kvsim

import "strconv"

// Small RESP2 appenders for replies built outside redcon's writer.

func appendArrayHeader(out []byte, n int) []byte {
	out = append(out, '*')
	out = strconv.AppendInt(out, int64(n), 10)
	return append(out, '\r', '\n')
}

func appendInteger(out []byte, n int64) []byte {
	out = append(out, ':')
	out = strconv.AppendInt(out, n, 10)
	return append(out, '\r', '\n')
}

func appendBulkString(out []byte, s string) []byte {
	out = append(out, '$')
	out = strconv.AppendInt(out, int64(len(s)), 10)
	out = append(out, '\r', '\n')
	out = append(out, s...)
	return append(out, '\r', '\n')
}

func appendBulkBytes(out []byte, b []byte) []byte {
	out = append(out, '$')
	out = strconv.AppendInt(out, int64(len(b)), 10)
	out = append(out, '\r', '\n')
	out = append(out, b...)
	return append(out, '\r', '\n')
}

// appendCommand encodes args as a RESP array of bulk strings.
func appendCommand(out []byte, args ...[]byte) []byte {
	out = appendArrayHeader(out, len(args))
	for _, a := range args {
		out = appendBulkBytes(out, a)
	}
	return out
}
