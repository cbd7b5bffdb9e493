package proxy

import (
	"errors"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The guard follows a client's request stream as it arrives (requestScanner,
// driven by commandReader), so an oversized or malformed request is refused
// with a Redis-style error before it is buffered whole: a "$999999999999"
// header is refused at once instead of being waited for.

// Limits taken from Redis (PROTO_INLINE_MAX_SIZE for headers, and the
// unauthenticated request caps of processMultibulkBuffer). Inline commands,
// meant for people typing, get tighter caps than Redis' 64 KiB.
const (
	maxInlineLen          = 16 << 10
	maxInlineSeparators   = 128
	maxHeaderLen          = 64 << 10
	maxUnauthArgs         = 10
	maxUnauthBulkLen      = 16 << 10
	guardErrorWriteBudget = time.Second
)

// guardError is a request the guard refuses. limit marks refusals caused by a
// configured cap, as opposed to bytes that are not RESP at all.
type guardError struct {
	msg   string
	limit bool
}

func (e *guardError) Error() string { return e.msg }

var (
	errInvalidMultibulk  = &guardError{msg: "Protocol error: invalid multibulk length"}
	errInvalidBulk       = &guardError{msg: "Protocol error: invalid bulk length"}
	errTooManyArgs       = &guardError{msg: "Protocol error: invalid multibulk length", limit: true}
	errBulkTooLong       = &guardError{msg: "Protocol error: invalid bulk length", limit: true}
	errInlineTooLong     = &guardError{msg: "Protocol error: too big inline request", limit: true}
	errInlineTooManyArgs = &guardError{msg: "Protocol error: too many separators in inline request", limit: true}
	errMbulkHeaderLong   = &guardError{msg: "Protocol error: too big mbulk count string", limit: true}
	errBulkHeaderLong    = &guardError{msg: "Protocol error: too big bulk count string", limit: true}
	errUnauthMultibulk   = &guardError{msg: "Protocol error: unauthenticated multibulk length", limit: true}
	errUnauthBulk        = &guardError{msg: "Protocol error: unauthenticated bulk length", limit: true}
	errRequestTooLarge   = &guardError{msg: "Protocol error: request exceeds the proxy's size limit", limit: true}
	errUnbalancedQuotes  = &guardError{msg: "Protocol error: unbalanced quotes in request"}
)

// errUnexpectedByte is redcon's (and Redis') complaint about an argument that
// does not start with '$'. Line breaks are blanked so the reply stays one line.
func errUnexpectedByte(c byte) *guardError {
	if c == '\r' || c == '\n' {
		c = ' '
	}
	return &guardError{msg: "Protocol error: expected '$', got '" + string(rune(c)) + "'"}
}

type scanState uint8

const (
	stCommand   scanState = iota // at a command boundary
	stInline                     // inside an inline (telnet) command line
	stArrayLen                   // inside "*<count>\r\n"
	stBulkStart                  // expecting the '$' of the next argument
	stBulkLen                    // inside "$<len>\r\n"
	stBulkData                   // inside an argument's bytes
	stBulkEnd                    // expecting the CRLF after an argument
)

// scanLimits are the caps the guard enforces.
type scanLimits struct {
	maxBulkLen      int64
	maxArgs         int64
	maxRequestBytes int64
}

// requestScanner follows a client's request stream and finds where it stops
// being acceptable, accepting exactly what redcon accepts (within the limits).
// Numbers are parsed as strconv.Atoi does, as redcon does. It also records
// each argument of a RESP command as it passes, so the command needs no
// second parse (commandReader).
type requestScanner struct {
	limits scanLimits
	// unauthenticated applies Redis' small caps for clients that still owe
	// an AUTH.
	unauthenticated bool

	state scanState
	// requestBytes counts the bytes of the command in progress.
	requestBytes int64
	// lineLen counts the bytes of the inline line or header in progress.
	lineLen int
	// separators counts the spaces and quotes of the inline line.
	separators int
	// count is the command's argument count, argsLeft how many of them are
	// still to come.
	count, argsLeft int64
	// dataLeft is how many bytes of the argument are still to come, of
	// argLen in all.
	dataLeft, argLen int64
	// argDone is set when an argument's CRLF was taken, for scan to record
	// the argument.
	argDone bool
	// endSeen counts the bytes of the CRLF after an argument seen so far;
	// firstEnd is the first of them (redcon only judges both together).
	endSeen  int
	firstEnd byte
	num      numberParser
	// args are the arguments recorded, as slices of the buffer scanned:
	// those of the commands completed since the caller last reset it, then
	// those of the command in progress, from argsFrom on.
	args     [][]byte
	argsFrom int
}

// numberParser parses a header number byte by byte the way strconv.Atoi
// parses the text between the type byte and the CRLF.
type numberParser struct {
	value    int64
	digits   int
	negative bool
	sign     bool // a sign was seen
	bad      bool // not an Atoi-valid int64
	// pendingCR is a CR not yet known to be the terminator.
	pendingCR bool
}

func (n *numberParser) reset() { *n = numberParser{} }

// add takes one byte that is not LF.
func (n *numberParser) add(c byte) {
	if n.pendingCR {
		n.bad = true // a CR inside the number
		n.pendingCR = false
	}
	switch {
	case c == '\r':
		n.pendingCR = true
	case (c == '+' || c == '-') && !n.sign && n.digits == 0:
		n.sign = true
		n.negative = c == '-'
	case '0' <= c && c <= '9':
		// A negative magnitude of 2^63 would fit Atoi, but every negative
		// count or length is refused anyway, so one bound serves both signs.
		d := int64(c - '0')
		if n.value > (math.MaxInt64-d)/10 {
			n.bad = true
		} else {
			n.value = n.value*10 + d
		}
		n.digits++
	default:
		n.bad = true
	}
}

// finish is called at the LF: ok reports an Atoi-valid number ended by CRLF.
func (n *numberParser) finish() (v int64, ok bool) {
	if !n.pendingCR || n.bad || n.digits == 0 {
		return 0, false
	}
	if n.negative {
		return -n.value, true
	}
	return n.value, true
}

// scan follows buf[from:], the next bytes of the stream, buf holding the
// command in progress from its first byte on, and returns where it stopped:
// at the end of buf, or just after a command that completed (done). A RESP
// command's arguments are then args[argsFrom:]; an inline command is left
// to the caller, which has its line. On a refused request it returns the
// error. After an error the scanner must not be used again.
func (s *requestScanner) scan(buf []byte, from int) (next int, done bool, err *guardError) {
	i := from
	for i < len(buf) {
		if s.state == stCommand {
			s.requestBytes = 0
			s.argsFrom = len(s.args)
		}
		switch s.state {
		case stBulkData:
			// Skip argument bytes in one step.
			n := int64(len(buf) - i)
			if n > s.dataLeft {
				n = s.dataLeft
			}
			s.dataLeft -= n
			s.requestBytes += n
			i += int(n)
			if s.dataLeft == 0 {
				s.state = stBulkEnd
				s.endSeen = 0
			}
		default:
			n, e := s.fastHeader(buf[i:])
			if n == 0 {
				n, e = 1, s.step(buf[i])
			}
			i += n
			s.requestBytes += int64(n)
			if e != nil {
				return i, false, e
			}
			if s.argDone {
				// i is just past the argument's CRLF.
				s.argDone = false
				if len(s.args) == cap(s.args) {
					s.growArgs()
				}
				s.args = append(s.args, buf[i-2-int(s.argLen):i-2])
			}
		}
		if s.requestBytes > s.limits.maxRequestBytes ||
			s.state == stBulkData && s.requestBytes+s.dataLeft+2 > s.limits.maxRequestBytes {
			// Refused as soon as a header announces more than the limit,
			// not once that much was read.
			return i, false, errRequestTooLarge
		}
		if s.state == stCommand {
			return i, true, nil
		}
	}
	return i, false, nil
}

// growArgs makes room for more arguments: up to four times as many, but no
// more than the command announced. A million-argument command's table is
// then allocated about 1.3 times over, where append (a quarter more at a
// time) would allocate five times its size.
func (s *requestScanner) growArgs() {
	size := max(4*cap(s.args), 16)
	if end := s.argsFrom + int(s.count); end > len(s.args) {
		size = min(size, end)
	}
	s.args = slices.Grow(s.args, size-len(s.args))
}

// estimate guesses the size of the RESP command in progress from the sizes
// announced so far: its arguments yet to come are taken to be as large as
// those already seen. It is 0 outside a RESP command.
func (s *requestScanner) estimate() int64 {
	switch s.state {
	case stCommand, stInline, stArrayLen:
		return 0
	}
	left := s.argsLeft
	current := int64(0)
	switch s.state {
	case stBulkData:
		current, left = s.dataLeft+2, left-1
	case stBulkEnd:
		current, left = int64(2-s.endSeen), left-1
	}
	done := max(s.count-s.argsLeft, 1)
	known := s.requestBytes + current
	if average := s.requestBytes / done; left > 0 && average > (math.MaxInt64-known)/left {
		return math.MaxInt64
	}
	return known + left*(s.requestBytes/done)
}

// step takes one byte in any state but stBulkData.
func (s *requestScanner) step(c byte) *guardError {
	switch s.state {
	case stCommand:
		if c == '*' {
			s.state = stArrayLen
			s.lineLen = 0
			s.num.reset()
			return nil
		}
		s.state = stInline
		s.lineLen, s.separators = 0, 0
		return s.step(c)
	case stInline:
		switch c {
		case '\n':
			s.state = stCommand
			return nil
		case ' ', '"', '\'':
			if s.separators++; s.separators > maxInlineSeparators {
				return errInlineTooManyArgs
			}
		}
		if s.lineLen++; s.lineLen > maxInlineLen {
			return errInlineTooLong
		}
	case stArrayLen:
		if c != '\n' {
			if s.lineLen++; s.lineLen > maxHeaderLen {
				return errMbulkHeaderLong
			}
			s.num.add(c)
			return nil
		}
		return s.arrayLen(s.num.finish())
	case stBulkStart:
		if c != '$' {
			return errUnexpectedByte(c)
		}
		s.state = stBulkLen
		s.lineLen = 0
		s.num.reset()
	case stBulkLen:
		if c != '\n' {
			if s.lineLen++; s.lineLen > maxHeaderLen {
				return errBulkHeaderLong
			}
			s.num.add(c)
			return nil
		}
		return s.bulkLen(s.num.finish())
	case stBulkEnd:
		if s.endSeen == 0 {
			s.firstEnd = c
			s.endSeen = 1
			return nil
		}
		if s.firstEnd != '\r' || c != '\n' {
			return errInvalidBulk
		}
		s.argEnd()
	}
	return nil
}

// arrayLen takes a command's argument count, at its header's LF.
func (s *requestScanner) arrayLen(count int64, ok bool) *guardError {
	switch {
	case !ok || count <= 0:
		return errInvalidMultibulk
	case s.unauthenticated && count > maxUnauthArgs:
		return errUnauthMultibulk
	case count > s.limits.maxArgs:
		return errTooManyArgs
	}
	s.count, s.argsLeft = count, count
	s.state = stBulkStart
	return nil
}

// bulkLen takes an argument's length, at its header's LF.
func (s *requestScanner) bulkLen(size int64, ok bool) *guardError {
	switch {
	case !ok || size < 0:
		return errInvalidBulk
	case s.unauthenticated && size > maxUnauthBulkLen:
		return errUnauthBulk
	case size > s.limits.maxBulkLen:
		return errBulkTooLong
	}
	s.dataLeft, s.argLen = size, size
	s.state = stBulkData
	if size == 0 {
		s.state = stBulkEnd
		s.endSeen = 0
	}
	return nil
}

// argEnd follows the CRLF after an argument.
func (s *requestScanner) argEnd() {
	s.argDone = true
	s.argsLeft--
	if s.argsLeft == 0 {
		s.state = stCommand
	} else {
		s.state = stBulkStart
	}
}

// fastHeader takes, in one step, a "*<digits>\r\n" or "$<digits>\r\n" header
// or an argument's CRLF found whole at the start of p, which is what nearly
// every read holds: stepping through them byte by byte was most of the
// guard's cost. It returns 0 and leaves everything else to step (signs,
// malformed or long numbers, bytes split across reads, and headers that
// would cross maxRequestBytes, so refusals stay those of step).
func (s *requestScanner) fastHeader(p []byte) (int, *guardError) {
	if len(p) < 2 {
		return 0, nil
	}
	switch {
	case s.state == stBulkEnd && s.endSeen == 0:
		if p[0] != '\r' || p[1] != '\n' {
			return 0, nil
		}
		s.argEnd()
		return 2, nil
	case s.state == stBulkStart && p[0] == '$', s.state == stCommand && p[0] == '*':
		v, n := headerNumber(p[1:])
		if n == 0 || s.requestBytes+int64(1+n) > s.limits.maxRequestBytes {
			return 0, nil
		}
		if p[0] == '*' {
			return 1 + n, s.arrayLen(v, true)
		}
		return 1 + n, s.bulkLen(v, true)
	}
	return 0, nil
}

// headerNumber parses "<digits>\r\n" at the start of p, with at most 18
// digits so it cannot overflow; n is the bytes it spans, 0 if p does not
// start that way.
func headerNumber(p []byte) (v int64, n int) {
	digits := 0
	for digits < len(p) && digits < 18 && '0' <= p[digits] && p[digits] <= '9' {
		v = v*10 + int64(p[digits]-'0')
		digits++
	}
	if digits == 0 || digits+1 >= len(p) || p[digits] != '\r' || p[digits+1] != '\n' {
		return 0, 0
	}
	return v, digits + 2
}

// guardConn is a client's connection as the proxy writes to it and closes
// it. Its commands are read by a commandReader, which refuses a bad request
// through it: the client is told why (after the replies to every earlier
// request, since they are written before the next read) and the connection
// is closed.
type guardConn struct {
	net.Conn
	// authenticated is set by the session once the client has passed AUTH
	// (or when no password is configured).
	authenticated atomic.Bool
	// told is set once the client got the error reply.
	told bool
	// refusals counts the connections the guard closed, for INFO.
	refusals *atomic.Int64
	// refusedLog logs the refusals, a line a second at most.
	refusedLog *rateLimitedLog

	closeOnce sync.Once
	closeErr  error
}

// errRefused is what reading returns after the guard refused a request.
var errRefused = errors.New("proxy: request refused by the protocol guard")

func newGuardConn(c net.Conn, authenticated bool, refusals *atomic.Int64, refusedLog *rateLimitedLog) *guardConn {
	g := &guardConn{Conn: c, refusals: refusals, refusedLog: refusedLog}
	g.authenticated.Store(authenticated)
	return g
}

// Write skips empty writes: a client's goroutine flushes its reply buffer
// after every batch, and it is empty when nothing was answered yet.
func (g *guardConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return g.Conn.Write(p)
}

// refuse tells the client why its connection is being closed.
func (g *guardConn) refuse(refused *guardError) error {
	if g.told {
		return errRefused
	}
	g.told = true
	g.refusals.Add(1)
	g.refusedLog.Log("client", g.RemoteAddr().String(), "reason", refused.msg)
	_ = g.SetWriteDeadline(time.Now().Add(guardErrorWriteBudget))
	_, _ = g.Conn.Write([]byte("-ERR " + refused.msg + "\r\n"))
	return errRefused
}

// Close closes the connection once; redcon and the server's shutdown may
// both try.
func (g *guardConn) Close() error {
	g.closeOnce.Do(func() { g.closeErr = g.Conn.Close() })
	return g.closeErr
}
