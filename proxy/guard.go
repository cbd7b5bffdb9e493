package proxy

import (
	"errors"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// redcon parses whatever a client sends and buffers it without bounds: a
// "$999999999999" header makes it wait for (and grow its buffer towards) that
// many bytes, and it re-scans a partial command from its first byte on every
// read. guardConn sits under redcon and follows the request stream as it
// arrives, so an oversized or malformed request is refused with a Redis-style
// error before redcon buffers it.

// Limits taken from Redis (PROTO_INLINE_MAX_SIZE for headers, and the
// unauthenticated request caps of processMultibulkBuffer). Inline commands
// get tighter caps than Redis' 64 KiB: redcon copies the rest of the line at
// every space or quote, so its cost grows with length times separators
// (a 64 KiB line of spaces takes it most of a second).
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
// Numbers are parsed as strconv.Atoi does, as redcon does.
type requestScanner struct {
	limits scanLimits
	// unauthenticated applies Redis' small caps for clients that still owe
	// an AUTH, and makes scan stop after each complete command: the caps
	// must not apply to what follows a successful AUTH in the same read.
	unauthenticated bool

	state scanState
	// requestBytes counts the bytes of the command in progress.
	requestBytes int64
	// lineLen counts the bytes of the inline line or header in progress.
	lineLen int
	// separators counts the spaces and quotes of the inline line.
	separators int
	// argsLeft is how many arguments of the command are still to come.
	argsLeft int64
	// dataLeft is how many bytes of the argument are still to come.
	dataLeft int64
	// endSeen counts the bytes of the CRLF after an argument seen so far;
	// firstEnd is the first of them (redcon only judges both together).
	endSeen  int
	firstEnd byte
	num      numberParser
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

// scan follows p, the next bytes of the stream, and returns how many it
// consumed: all of them, or, for an unauthenticated client, those up to the
// end of the first command that completes. On a refused request it returns
// the error and the offset in p where that request starts (-1 when it started
// in an earlier call), so the caller can pass on the complete requests before
// it. After an error the scanner must not be used again.
func (s *requestScanner) scan(p []byte) (consumed, start int, err *guardError) {
	start = -1
	for i := 0; i < len(p); {
		if s.state == stCommand {
			start = i
			s.requestBytes = 0
		}
		switch s.state {
		case stBulkData:
			// Skip argument bytes in one step.
			n := int64(len(p) - i)
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
			n, e := s.fastHeader(p[i:])
			if n == 0 {
				n, e = 1, s.step(p[i])
			}
			i += n
			s.requestBytes += int64(n)
			if e != nil {
				return i, start, e
			}
		}
		if s.requestBytes > s.limits.maxRequestBytes {
			return i, start, errRequestTooLarge
		}
		if s.state == stCommand {
			start = -1
			if s.unauthenticated {
				return i, start, nil
			}
		}
	}
	return len(p), start, nil
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
	s.argsLeft = count
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
	s.dataLeft = size
	s.state = stBulkData
	if size == 0 {
		s.state = stBulkEnd
		s.endSeen = 0
	}
	return nil
}

// argEnd follows the CRLF after an argument.
func (s *requestScanner) argEnd() {
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

// guardConn is the net.Conn redcon reads from. Read passes on only bytes the
// scanner accepted; at the first refused request it writes the error to the
// client (after the replies to every earlier request, since redcon flushes
// before it reads again) and fails, which makes redcon close the connection.
type guardConn struct {
	net.Conn
	scanner requestScanner
	// authenticated is set by the session once the client has passed AUTH
	// (or when no password is configured).
	authenticated atomic.Bool
	// held are bytes read from the client and not yet passed on: before
	// AUTH, requests go to redcon one at a time.
	held []byte
	// refused is the error found while earlier bytes were still passed on.
	refused *guardError
	// told is set once the client got the error reply.
	told bool
	// refusals counts the connections the guard closed, for INFO.
	refusals *atomic.Int64
	// refusedLog logs the refusals, a line a second at most.
	refusedLog *rateLimitedLog

	closeOnce sync.Once
	closeErr  error
}

// errRefused is what Read returns after the guard refused a request.
var errRefused = errors.New("proxy: request refused by the protocol guard")

func newGuardConn(c net.Conn, limits scanLimits, authenticated bool, refusals *atomic.Int64, refusedLog *rateLimitedLog) *guardConn {
	g := &guardConn{Conn: c, scanner: requestScanner{limits: limits}, refusals: refusals, refusedLog: refusedLog}
	g.authenticated.Store(authenticated)
	return g
}

func (g *guardConn) Read(p []byte) (int, error) {
	if g.refused != nil {
		return 0, g.refuse()
	}
	var n int
	var err error
	if len(g.held) > 0 {
		n = copy(p, g.held)
		g.held = g.held[n:]
	} else {
		n, err = g.Conn.Read(p)
	}
	if n == 0 {
		return n, err
	}
	g.scanner.unauthenticated = !g.authenticated.Load()
	consumed, start, refused := g.scanner.scan(p[:n])
	if refused == nil {
		if consumed < n {
			// Hold the rest until redcon has run the command before it
			// (which may be the AUTH that lifts the caps).
			g.held = append(append([]byte(nil), p[consumed:n]...), g.held...)
			return consumed, nil
		}
		return n, err
	}
	g.refused = refused
	if start > 0 {
		// Hand over the complete requests before the refused one first.
		return start, nil
	}
	return 0, g.refuse()
}

// Write skips empty writes: a client's goroutine flushes its reply buffer
// after every batch, and it is empty when nothing was answered yet.
func (g *guardConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return g.Conn.Write(p)
}

// pending reports input read from the socket and not yet passed on, or a
// refusal not yet told: either way the next Read has something to return.
func (g *guardConn) pending() bool { return len(g.held) > 0 || g.refused != nil }

// refuse tells the client why its connection is being closed.
func (g *guardConn) refuse() error {
	if g.told {
		return errRefused
	}
	g.told = true
	g.refusals.Add(1)
	g.refusedLog.Log("client", g.RemoteAddr().String(), "reason", g.refused.msg)
	_ = g.SetWriteDeadline(time.Now().Add(guardErrorWriteBudget))
	_, _ = g.Conn.Write([]byte("-ERR " + g.refused.msg + "\r\n"))
	return errRefused
}

// Close closes the connection once; redcon and the server's shutdown may
// both try.
func (g *guardConn) Close() error {
	g.closeOnce.Do(func() { g.closeErr = g.Conn.Close() })
	return g.closeErr
}
