package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// ReplyError is an error reply a node sent where a value was expected, such
// as NOAUTH.
type ReplyError struct {
	// Msg is the reply without its leading '-', e.g.
	// "NOAUTH Authentication required.".
	Msg string
}

func (e *ReplyError) Error() string { return "replied -" + e.Msg }

// MaxRoleDepth bounds how deep a ROLE reply nests arrays: a master's reply
// holds a list of replicas, each an array.
const MaxRoleDepth = 3

// Reader reads one reply at a time from a connection that carries one
// request at a time (a poller's), each reply bounded in size.
type Reader struct {
	r    *bufio.Reader
	read countingReader
	body []byte
}

// NewReader returns a Reader of the replies rd carries.
func NewReader(rd io.Reader) *Reader {
	r := &Reader{read: countingReader{r: rd}}
	r.r = bufio.NewReader(&r.read)
	return r
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// Consumed is how many bytes of the connection have been parsed.
func (r *Reader) Consumed() int64 { return r.read.n - int64(r.r.Buffered()) }

// ReadString reads one reply: a bulk string (RESP2) or a verbatim string
// (RESP3) of at most maxLen bytes is the body, valid until the next read; an
// error reply is a *ReplyError.
func (r *Reader) ReadString(maxLen int) ([]byte, error) {
	line, err := r.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("%w: reply header longer than %d bytes", ErrProtocol, len(line))
	}
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: header %q", ErrProtocol, line)
	}
	kind, text := line[0], line[1:len(line)-2]
	switch kind {
	case '-':
		return nil, &ReplyError{Msg: string(text)}
	case '$', '=':
	default:
		return nil, fmt.Errorf("%w: header %q", ErrProtocol, line)
	}
	n, err := strconv.Atoi(string(text))
	switch {
	case err != nil || n < 0:
		return nil, fmt.Errorf("%w: header %q", ErrProtocol, line)
	case n > maxLen:
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrProtocol, n, maxLen)
	}
	r.body = slices.Grow(r.body[:0], n+2)[:n+2]
	if _, err := io.ReadFull(r.r, r.body); err != nil {
		return nil, err
	}
	if r.body[n] != '\r' || r.body[n+1] != '\n' {
		return nil, fmt.Errorf("%w: %d-byte body not followed by CRLF", ErrProtocol, n)
	}
	body := r.body[:n]
	if kind == '=' {
		// A verbatim string starts with its three-letter format and ':'.
		if len(body) < 4 || body[3] != ':' {
			return nil, fmt.Errorf("%w: verbatim string without a format", ErrProtocol)
		}
		body = body[4:]
	}
	return body, nil
}

// ReadRole reads one ROLE reply of at most maxLen bytes and reports whether
// its first element names a master ("master") or a replica ("slave"); any
// other role is an error. The rest is read and checked for framing only. An
// error reply is a *ReplyError.
func (r *Reader) ReadRole(maxLen int) (master bool, err error) {
	start := r.Consumed()
	kind, text, err := r.readLine()
	if err != nil {
		return false, err
	}
	if kind == '-' {
		return false, &ReplyError{Msg: string(text)}
	}
	n, err := arrayLength(kind, text)
	if err != nil {
		return false, err
	}
	if n == 0 {
		return false, fmt.Errorf("%w: empty ROLE reply", ErrProtocol)
	}
	name, isString, err := r.readRoleElement(start, maxLen, 1)
	if err != nil {
		return false, err
	}
	switch {
	case !isString:
		return false, fmt.Errorf("%w: ROLE reply does not start with a string", ErrProtocol)
	case string(name) == "master":
		master = true
	case string(name) == "slave":
	default:
		return false, fmt.Errorf("%w: role %q is neither master nor slave", ErrProtocol, Clip(name))
	}
	for range n - 1 {
		if _, _, err := r.readRoleElement(start, maxLen, 1); err != nil {
			return false, err
		}
	}
	return master, nil
}

// readRoleElement reads one value nested depth arrays deep in a ROLE reply
// that began at start. A string is returned (valid until the next read)
// with isString.
func (r *Reader) readRoleElement(start int64, maxLen, depth int) (body []byte, isString bool, err error) {
	first, err := r.r.Peek(1)
	if err != nil {
		return nil, false, err
	}
	switch first[0] {
	case '$', '=':
		body, err := r.ReadString(maxLen)
		if err != nil {
			return nil, false, err
		}
		return body, true, r.checkSize(start, maxLen)
	case ':':
		_, text, err := r.readLine()
		if err != nil {
			return nil, false, err
		}
		if _, err := strconv.ParseInt(string(text), 10, 64); err != nil {
			return nil, false, fmt.Errorf("%w: integer %q", ErrProtocol, Clip(text))
		}
		return nil, false, r.checkSize(start, maxLen)
	case '*':
		if depth >= MaxRoleDepth {
			return nil, false, fmt.Errorf("%w: ROLE reply nests arrays more than %d deep", ErrProtocol, MaxRoleDepth)
		}
		kind, text, err := r.readLine()
		if err != nil {
			return nil, false, err
		}
		n, err := arrayLength(kind, text)
		if err != nil {
			return nil, false, err
		}
		for range n {
			// Every element read checks the size, which ends a long array.
			if _, _, err := r.readRoleElement(start, maxLen, depth+1); err != nil {
				return nil, false, err
			}
		}
		return nil, false, r.checkSize(start, maxLen)
	}
	return nil, false, fmt.Errorf("%w: unexpected %q in a ROLE reply", ErrProtocol, first[0])
}

// readLine reads a header line and splits it into its type byte and text.
func (r *Reader) readLine() (kind byte, text []byte, err error) {
	line, err := r.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return 0, nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, len(line))
	}
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, nil, fmt.Errorf("%w: line %q", ErrProtocol, Clip(line))
	}
	return line[0], line[1 : len(line)-2], nil
}

// arrayLength checks an array header and returns its length.
func arrayLength(kind byte, text []byte) (int, error) {
	n, err := strconv.Atoi(string(text))
	if kind != '*' || err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %q is not an array header", ErrProtocol, Clip(append([]byte{kind}, text...)))
	}
	return n, nil
}

// checkSize fails once the reply that began at start exceeds maxLen.
func (r *Reader) checkSize(start int64, maxLen int) error {
	if size := r.Consumed() - start; size > int64(maxLen) {
		return fmt.Errorf("%w: ROLE reply longer than %d bytes", ErrProtocol, maxLen)
	}
	return nil
}

// clip shortens what a node sent for an error message.
func Clip(b []byte) []byte {
	const keep = 32
	if len(b) > keep {
		return b[:keep]
	}
	return b
}
