package resp

import (
	"bytes"
	"math"
	"slices"

	"github.com/tidwall/redcon"
)

// A client's requests are read by a RequestScanner as they arrive, so an
// oversized or malformed request is refused with a Redis-style error before
// it is buffered whole: a "$999999999999" header is refused at once instead
// of being waited for.

// Limits taken from Redis (PROTO_INLINE_MAX_SIZE for headers, and the
// unauthenticated request caps of processMultibulkBuffer). Inline commands,
// meant for people typing, get tighter caps than Redis' 64 KiB.
const (
	MaxInlineLen        = 16 << 10
	maxInlineSeparators = 128
	maxHeaderLen        = 64 << 10
	maxUnauthArgs       = 10
	maxUnauthBulkLen    = 16 << 10
)

// RequestError is a request refused, Msg the reason told the client. Limit
// marks refusals caused by a configured cap, as opposed to bytes that are not
// RESP at all.
type RequestError struct {
	Msg   string
	Limit bool
}

func (e *RequestError) Error() string { return e.Msg }

var (
	errInvalidMultibulk  = &RequestError{Msg: "Protocol error: invalid multibulk length"}
	errInvalidBulk       = &RequestError{Msg: "Protocol error: invalid bulk length"}
	errTooManyArgs       = &RequestError{Msg: "Protocol error: invalid multibulk length", Limit: true}
	errBulkTooLong       = &RequestError{Msg: "Protocol error: invalid bulk length", Limit: true}
	errInlineTooLong     = &RequestError{Msg: "Protocol error: too big inline request", Limit: true}
	errInlineTooManyArgs = &RequestError{Msg: "Protocol error: too many separators in inline request", Limit: true}
	errMbulkHeaderLong   = &RequestError{Msg: "Protocol error: too big mbulk count string", Limit: true}
	errBulkHeaderLong    = &RequestError{Msg: "Protocol error: too big bulk count string", Limit: true}
	errUnauthMultibulk   = &RequestError{Msg: "Protocol error: unauthenticated multibulk length", Limit: true}
	errUnauthBulk        = &RequestError{Msg: "Protocol error: unauthenticated bulk length", Limit: true}
	errRequestTooLarge   = &RequestError{Msg: "Protocol error: request exceeds the proxy's size limit", Limit: true}
	errUnbalancedQuotes  = &RequestError{Msg: "Protocol error: unbalanced quotes in request"}
)

// errUnexpectedByte is redcon's (and Redis') complaint about an argument that
// does not start with '$'. Line breaks are blanked so the reply stays one line.
func errUnexpectedByte(c byte) *RequestError {
	if c == '\r' || c == '\n' {
		c = ' '
	}
	return &RequestError{Msg: "Protocol error: expected '$', got '" + string(rune(c)) + "'"}
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

// RequestLimits are the caps a RequestScanner enforces.
type RequestLimits struct {
	MaxBulkLen      int64
	MaxArgs         int64
	MaxRequestBytes int64
}

// RequestScanner follows a client's request stream and finds where it stops
// being acceptable, accepting exactly what redcon accepts (within the limits).
// Numbers are parsed as strconv.Atoi does, as redcon does. It also records
// each argument of a RESP command as it passes, so the command needs no
// second parse (proxy's commandReader, which owns the buffer scanned).
type RequestScanner struct {
	Limits RequestLimits
	// Unauthenticated applies Redis' small caps for clients that still owe
	// an AUTH.
	Unauthenticated bool

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
func (s *RequestScanner) Scan(buf []byte, from int) (next int, done bool, err *RequestError) {
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
		if s.requestBytes > s.Limits.MaxRequestBytes ||
			s.state == stBulkData && s.requestBytes+s.dataLeft+2 > s.Limits.MaxRequestBytes {
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

// Args are the arguments of the RESP command Scan completed last, as slices
// of the buffer scanned.
func (s *RequestScanner) Args() [][]byte {
	return s.args[s.argsFrom:len(s.args):len(s.args)]
}

// InCommand reports that a command is in progress: the scanner stopped
// inside one.
func (s *RequestScanner) InCommand() bool { return s.state != stCommand }

// ReleaseArgs forgets the arguments of the commands completed, keeping
// those of the command in progress; a table grown past maxKept arguments is
// not kept when they fit a smaller one.
func (s *RequestScanner) ReleaseArgs(maxKept int) {
	from := s.argsFrom
	if s.state == stCommand {
		from = len(s.args)
	}
	switch {
	case from == 0:
		// Only the command in progress, or nothing.
	case cap(s.args) > maxKept && len(s.args)-from <= maxKept:
		s.args = append(make([][]byte, 0, maxKept), s.args[from:]...)
	default:
		n := copy(s.args, s.args[from:])
		clear(s.args[n:]) // nor pin a buffer replaced since
		s.args = s.args[:n]
	}
	s.argsFrom = 0
}

// MoveArgs follows the input from start on moving from old to the front of
// buf (which may be old): the arguments of the command in progress then point
// into buf.
func (s *RequestScanner) MoveArgs(old, buf []byte, start int) {
	if s.state == stCommand {
		return
	}
	// A slice old[i:j] of the whole buffer has capacity cap(old)-i, which
	// tells where it starts without a table of offsets.
	for k := s.argsFrom; k < len(s.args); k++ {
		from := cap(old) - cap(s.args[k]) - start
		s.args[k] = buf[from : from+len(s.args[k])]
	}
}

// DetachArgs leaves a table grown past maxKept arguments to the commands
// completed, moving those of the command in progress to a table of their
// own, if they fit maxKept.
func (s *RequestScanner) DetachArgs(maxKept int) {
	if cap(s.args) <= maxKept {
		return
	}
	var inProgress [][]byte
	if s.state != stCommand {
		inProgress = s.args[s.argsFrom:]
	}
	if len(inProgress) <= maxKept {
		s.args = append(make([][]byte, 0, maxKept), inProgress...)
		s.argsFrom = 0
	}
}

// growArgs makes room for more arguments: up to four times as many, but no
// more than the command announced. A million-argument command's table is
// then allocated about 1.3 times over, where append (a quarter more at a
// time) would allocate five times its size.
func (s *RequestScanner) growArgs() {
	size := max(4*cap(s.args), 16)
	if end := s.argsFrom + int(s.count); end > len(s.args) {
		size = min(size, end)
	}
	s.args = slices.Grow(s.args, size-len(s.args))
}

// estimate guesses the size of the RESP command in progress from the sizes
// announced so far: its arguments yet to come are taken to be as large as
// those already seen. It is 0 outside a RESP command.
func (s *RequestScanner) Estimate() int64 {
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
func (s *RequestScanner) step(c byte) *RequestError {
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
		if s.lineLen++; s.lineLen > MaxInlineLen {
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
func (s *RequestScanner) arrayLen(count int64, ok bool) *RequestError {
	switch {
	case !ok || count <= 0:
		return errInvalidMultibulk
	case s.Unauthenticated && count > maxUnauthArgs:
		return errUnauthMultibulk
	case count > s.Limits.MaxArgs:
		return errTooManyArgs
	}
	s.count, s.argsLeft = count, count
	s.state = stBulkStart
	return nil
}

// bulkLen takes an argument's length, at its header's LF.
func (s *RequestScanner) bulkLen(size int64, ok bool) *RequestError {
	switch {
	case !ok || size < 0:
		return errInvalidBulk
	case s.Unauthenticated && size > maxUnauthBulkLen:
		return errUnauthBulk
	case size > s.Limits.MaxBulkLen:
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
func (s *RequestScanner) argEnd() {
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
func (s *RequestScanner) fastHeader(p []byte) (int, *RequestError) {
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
		if n == 0 || s.requestBytes+int64(1+n) > s.Limits.MaxRequestBytes {
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

// ParseInline converts an inline command line (ending with LF) to a RESP
// command as Redis splits it (sdssplitargs): the line stops at a NUL byte;
// arguments are separated by white space; a double quote opens a part in
// which \n \r \t \b \a, \xHH (two hex digits) and a backslash before any
// other byte are escapes; a single quote opens one in which only \' is; a
// quote may open inside an argument ("a"b"c" is one), but the closing one
// must end the argument, and must come before the end of the line.
func ParseInline(line []byte) (redcon.Command, *RequestError) {
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if nul := bytes.IndexByte(line, 0); nul >= 0 {
		line = line[:nul]
	}
	// at is the byte at i, 0 past the end, as in the C string Redis reads.
	at := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	var words []byte // the arguments, unquoted, one after the other
	var ends []int   // where each argument ends in words
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		var quote byte // the quote of the part being read, 0 outside one
		for done := false; !done; {
			c := at(i)
			switch {
			case quote == 0:
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"', '\'':
					quote = c
				default:
					words = append(words, c)
				}
			case c == 0:
				return redcon.Command{}, errUnbalancedQuotes
			case c == quote:
				if next := at(i + 1); next != 0 && !isSpace(next) {
					return redcon.Command{}, errUnbalancedQuotes
				}
				done = true
			case c == '\\' && quote == '"' && at(i+1) == 'x' && isHexDigit(at(i+2)) && isHexDigit(at(i+3)):
				words = append(words, hexValue(at(i+2))<<4|hexValue(at(i+3)))
				i += 3
			case c == '\\' && quote == '"' && at(i+1) != 0:
				i++
				words = append(words, unescape(line[i]))
			case c == '\\' && quote == '\'' && at(i+1) == '\'':
				i++
				words = append(words, '\'')
			default:
				words = append(words, c)
			}
			if i < len(line) {
				i++
			}
		}
		ends = append(ends, len(words))
	}
	if len(ends) == 0 {
		return redcon.Command{}, nil
	}
	raw := AppendArray(nil, len(ends))
	starts := make([]int, len(ends)) // where each argument starts in raw
	from := 0
	for k, end := range ends {
		raw = AppendBulk(raw, words[from:end])
		starts[k] = len(raw) - 2 - (end - from)
		from = end
	}
	args := make([][]byte, len(ends))
	for k, start := range starts {
		size := ends[k]
		if k > 0 {
			size -= ends[k-1]
		}
		args[k] = raw[start : start+size]
	}
	return redcon.Command{Raw: raw, Args: args}, nil
}

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || '\t' <= c && c <= '\r'
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexValue(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// unescape is the byte a backslash escape inside double quotes stands for.
func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}
