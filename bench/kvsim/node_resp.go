package kvsim

import (
	"io"
	"strconv"

	"github.com/tidwall/redcon"
)

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

// replyRecorder is a redcon.Conn whose replies are collected in out rather
// than written: the commands of a subscribed connection (their replies share
// one queue with its messages) and a transaction's control commands (their
// replies become elements of EXEC's array) run on it.
type replyRecorder struct {
	redcon.Conn
	out []byte
	// closeRequested: the command closed the connection (QUIT); the caller
	// closes it once the reply is sent.
	closeRequested bool
}

func (c *replyRecorder) Close() error                { c.closeRequested = true; return nil }
func (c *replyRecorder) WriteError(msg string)       { c.out = redcon.AppendError(c.out, msg) }
func (c *replyRecorder) WriteString(str string)      { c.out = redcon.AppendString(c.out, str) }
func (c *replyRecorder) WriteBulk(bulk []byte)       { c.out = redcon.AppendBulk(c.out, bulk) }
func (c *replyRecorder) WriteBulkString(bulk string) { c.out = redcon.AppendBulkString(c.out, bulk) }
func (c *replyRecorder) WriteInt(num int)            { c.out = redcon.AppendInt(c.out, int64(num)) }
func (c *replyRecorder) WriteInt64(num int64)        { c.out = redcon.AppendInt(c.out, num) }
func (c *replyRecorder) WriteUint64(num uint64)      { c.out = redcon.AppendUint(c.out, num) }
func (c *replyRecorder) WriteArray(count int)        { c.out = redcon.AppendArray(c.out, count) }
func (c *replyRecorder) WriteNull()                  { c.out = redcon.AppendNull(c.out) }
func (c *replyRecorder) WriteRaw(data []byte)        { c.out = append(c.out, data...) }
func (c *replyRecorder) WriteAny(v any)              { c.out = redcon.AppendAny(c.out, v) }

func (c *replyRecorder) WriteBulkFrom(n int64, rb io.Reader) {
	data, _ := io.ReadAll(io.LimitReader(rb, n))
	c.out = redcon.AppendBulk(c.out, data)
}
