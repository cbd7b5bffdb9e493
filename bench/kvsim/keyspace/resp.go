package keyspace

import "strconv"

// Error replies, worded exactly as Redis 7.0 words them.
const (
	errWrongType   = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
	errSyntax      = "-ERR syntax error\r\n"
	errNotInt      = "-ERR value is not an integer or out of range\r\n"
	errNotFloat    = "-ERR value is not a valid float\r\n"
	errOverflow    = "-ERR increment or decrement would overflow\r\n"
	errNoSuchKey   = "-ERR no such key\r\n"
	errIndexRange  = "-ERR index out of range\r\n"
	errNotPositive = "-ERR value is out of range, must be positive\r\n"
	errNaNOrInf    = "-ERR increment would produce NaN or Infinity\r\n"
	errMinMaxFloat = "-ERR min or max is not a float\r\n"
	errMinMaxLex   = "-ERR min or max not valid string range item\r\n"
	errStringLimit = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
	errScoreNaN    = "-ERR resulting score is not a number (NaN)\r\n"
)

const (
	replyOK        = "+OK\r\n"
	replyNullBulk  = "$-1\r\n"
	replyNullArray = "*-1\r\n"
	replyEmptyArr  = "*0\r\n"
	replyEmptyBulk = "$0\r\n\r\n"
	replyZero      = ":0\r\n"
	replyOne       = ":1\r\n"
)

// AppendArityError appends the reply Redis gives when a command has the wrong
// number of arguments.
func AppendArityError(out []byte, cmd *Command) []byte {
	return appendArityError(out, cmd.Name)
}

func appendArityError(out []byte, name string) []byte {
	out = append(out, "-ERR wrong number of arguments for '"...)
	out = append(out, name...)
	return append(out, "' command\r\n"...)
}

// AppendUnknownCommand appends Redis 7.0's reply to a command it does not
// know: the name and the first arguments, quoted, at most 128 bytes of each.
func AppendUnknownCommand(out []byte, args [][]byte) []byte {
	var msg []byte
	msg = append(msg, "-ERR unknown command '"...)
	if len(args) > 0 {
		msg = append(msg, truncate(args[0], 128)...)
	}
	msg = append(msg, "', with args beginning with: "...)
	start := len(msg)
	for i := 1; i < len(args) && len(msg)-start < 128; i++ {
		msg = append(msg, '\'')
		msg = append(msg, truncate(args[i], 128-(len(msg)-start-1))...)
		msg = append(msg, "' "...)
	}
	for i := 1; i < len(msg); i++ {
		if msg[i] == '\r' || msg[i] == '\n' {
			msg[i] = ' '
		}
	}
	out = append(out, msg...)
	return append(out, "\r\n"...)
}

func truncate(b []byte, n int) []byte {
	if n < 0 {
		n = 0
	}
	if len(b) > n {
		return b[:n]
	}
	return b
}

func appendBulk(out, v []byte) []byte {
	out = append(out, '$')
	out = strconv.AppendInt(out, int64(len(v)), 10)
	out = append(out, "\r\n"...)
	out = append(out, v...)
	return append(out, "\r\n"...)
}

func appendBulkString(out []byte, v string) []byte {
	out = append(out, '$')
	out = strconv.AppendInt(out, int64(len(v)), 10)
	out = append(out, "\r\n"...)
	out = append(out, v...)
	return append(out, "\r\n"...)
}

func appendInt(out []byte, n int64) []byte {
	out = append(out, ':')
	out = strconv.AppendInt(out, n, 10)
	return append(out, "\r\n"...)
}

func appendArray(out []byte, n int) []byte {
	out = append(out, '*')
	out = strconv.AppendInt(out, int64(n), 10)
	return append(out, "\r\n"...)
}

func appendBulkDouble(out []byte, f float64) []byte {
	var buf [32]byte
	return appendBulk(out, appendDouble(buf[:0], f))
}

func appendError(out []byte, msg string) []byte {
	out = append(out, "-ERR "...)
	out = append(out, msg...)
	return append(out, "\r\n"...)
}
