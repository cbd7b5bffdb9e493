package resp

import (
	"bytes"
	"fmt"
	"io"
)

// Reasons a reply frame is malformed. They are allocated once so that even the
// error path of Scan does not allocate.
var (
	errBadType        = fmt.Errorf("%w: unknown type byte", ErrProtocol)
	errMissingCRLF    = fmt.Errorf("%w: missing CRLF", ErrProtocol)
	errBadNumber      = fmt.Errorf("%w: malformed integer or length", ErrProtocol)
	errNegativeLength = fmt.Errorf("%w: negative length other than -1", ErrProtocol)
	errBadValue       = fmt.Errorf("%w: malformed RESP3 value", ErrProtocol)
	errTooLarge       = fmt.Errorf("%w: bulk or line longer than the limit", ErrProtocol)
	errTooDeep        = fmt.Errorf("%w: aggregates nested too deep", ErrProtocol)
)

// MaxNesting is how many aggregates (arrays, maps, sets, pushes, attributes)
// may be nested inside one reply. Redis' deepest replies (XINFO STREAM FULL,
// COMMAND DOCS) nest well under 10 levels; the cap keeps a Scanner's state in a
// fixed array.
const MaxNesting = 32

// DefaultMaxBulkLen is Redis' default proto-max-bulk-len (512 MB).
const DefaultMaxBulkLen = 512 << 20

// maxNumberLine bounds the header line of integers, lengths and counts: a sign
// and 19 digits fit, with room to spare for leading zeros.
const maxNumberLine = 32

// Scanner finds where the next RESP2 or RESP3 reply frame ends in a growing
// buffer. It keeps its position between calls, so a huge reply that arrives in
// many reads is scanned once in total, not once per read (redcon.ReadNextRESP
// restarts from the first byte each time, which is quadratic for big arrays).
//
// A Scanner is not safe for concurrent use; each backend reader owns one.
type Scanner struct {
	maxBulkLen int64
	// pos is the offset of the first element of the frame not yet scanned.
	pos int
	// lineFrom is where the search for the LF ending the line at pos resumes.
	lineFrom int
	// depth is the number of open levels; 0 means no frame is in progress.
	depth int
	// pending[i] is how many elements level i still expects; level 0 is the
	// frame itself, which expects one value.
	pending [MaxNesting + 1]int64

	// skipOversized: see SkipOversized.
	skipOversized bool
	// discarding: the frame in progress is consumed without being kept,
	// oversized says a bulk longer than maxBulkLen is why. Both describe
	// the last frame until the next one starts.
	discarding, oversized bool
	// skip is how many bytes of a discarded blob, its CRLF included, are
	// still to pass.
	skip int64
}

// NewScanner returns a Scanner that rejects bulk strings, blob errors,
// verbatim strings and text lines longer than maxBulkLen bytes.
// maxBulkLen must be positive.
func NewScanner(maxBulkLen int) *Scanner {
	if maxBulkLen <= 0 {
		panic("resp: NewScanner needs a positive maxBulkLen")
	}
	return &Scanner{maxBulkLen: int64(maxBulkLen)}
}

// SkipOversized makes a bulk longer than the limit discard its frame (see
// Discard) instead of failing the stream: a backend's reply is skipped, so
// the connection stays in step.
func (s *Scanner) SkipOversized() { s.skipOversized = true }

// Reset forgets the frame in progress.
func (s *Scanner) Reset() {
	s.pos, s.lineFrom, s.depth = 0, 0, 0
	s.discarding, s.oversized, s.skip = false, false, 0
}

// Discard makes the rest of the frame in progress pass without being kept:
// blobs are skipped as they arrive instead of awaited whole, and the caller
// drops the bytes scanned so far (Scanned, Drop), so a frame of any size
// costs a bounded buffer. Scan still reports where the frame ends, and
// Discarded tells the frame was dropped.
func (s *Scanner) Discard() {
	if s.depth > 0 {
		s.discarding = true
	}
}

// Scanned is how many bytes at the start of the frame in progress are
// scanned; a discarding caller may remove them from its buffer (Drop).
func (s *Scanner) Scanned() int {
	if s.depth == 0 {
		return 0
	}
	return s.pos
}

// Drop tells the Scanner that the first n scanned bytes of the frame in
// progress were removed from the front of its buffer.
func (s *Scanner) Drop(n int) {
	s.pos -= n
	if s.lineFrom > 0 {
		s.lineFrom = max(s.lineFrom-n, 0)
	}
}

// Discarding reports whether the frame in progress is being discarded.
func (s *Scanner) Discarding() bool { return s.discarding }

// Discarded reports whether the frame Scan reported last was discarded
// (Discard), and whether a bulk longer than the limit is why.
func (s *Scanner) Discarded() (discarded, oversized bool) {
	return s.discarding, s.oversized
}

// Scan reports the length of the reply frame at the start of buf: n > 0 when
// buf holds the whole frame (the Scanner is then ready for the next frame,
// which starts at buf[n:]), 0 when more bytes are needed, or an error wrapping
// ErrProtocol for malformed input.
//
// Between calls that return 0, buf must keep its previous contents and only
// grow at the end (it may be reallocated); the Scanner resumes where it
// stopped. After an error the stream is unusable: call Reset before reusing the
// Scanner on another connection.
func (s *Scanner) Scan(buf []byte) (int, error) {
	if s.depth == 0 {
		s.pos, s.lineFrom, s.depth = 0, 0, 1
		s.pending[0] = 1
		s.discarding, s.oversized = false, false
	}
	if s.skip > 0 {
		n := min(int64(len(buf)-s.pos), s.skip)
		s.pos += int(n)
		if s.skip -= n; s.skip > 0 {
			return 0, nil
		}
		s.pending[s.depth-1]--
	}
	for s.depth > 0 {
		if s.pending[s.depth-1] == 0 {
			s.depth--
			continue
		}
		done, err := s.element(buf)
		if err != nil || !done {
			return 0, err
		}
	}
	n := s.pos
	s.pos, s.lineFrom = 0, 0
	return n, nil
}

// element scans the element at s.pos. Apart from the lineFrom hint, it changes
// the state only once the element is complete (for an aggregate: once its
// header is), so an incomplete element is simply scanned again later.
func (s *Scanner) element(buf []byte) (done bool, err error) {
	if s.pos >= len(buf) {
		return false, nil
	}
	typ := buf[s.pos]
	lineLimit := int64(maxNumberLine)
	switch typ {
	case '+', '-', ',', '(':
		lineLimit = s.maxBulkLen
	case ':', '$', '*', '_', '#', '!', '=', '%', '~', '>', '|':
	default:
		return false, errBadType
	}
	line, next, err := s.line(buf, lineLimit)
	if err != nil || next == 0 {
		return false, err
	}
	switch typ {
	case '+', '-':
	case ':':
		if !isInteger(line) {
			return false, errBadNumber
		}
	case ',':
		if len(line) == 0 {
			return false, errBadValue
		}
	case '(':
		digits := line
		if len(digits) > 0 && (digits[0] == '-' || digits[0] == '+') {
			digits = digits[1:]
		}
		if len(digits) == 0 || !allDigits(digits) {
			return false, errBadValue
		}
	case '_':
		if len(line) != 0 {
			return false, errBadValue
		}
	case '#':
		if len(line) != 1 || (line[0] != 't' && line[0] != 'f') {
			return false, errBadValue
		}
	case '$', '!', '=':
		return s.blob(buf, typ, line, next)
	default: // aggregates
		return true, s.aggregate(typ, line, next)
	}
	s.advance(next)
	s.pending[s.depth-1]--
	return true, nil
}

// line finds the CRLF-terminated line of the element at s.pos. It returns the
// line without type byte and CRLF, and the offset after the CRLF, or next == 0
// when the line is not complete yet.
func (s *Scanner) line(buf []byte, limit int64) (line []byte, next int, err error) {
	from := max(s.lineFrom, s.pos+1)
	i := bytes.IndexByte(buf[from:], '\n')
	if i < 0 {
		// The unterminated part can lose at most a trailing CR.
		if int64(len(buf)-s.pos-1) > limit+1 {
			return nil, 0, errTooLarge
		}
		s.lineFrom = len(buf)
		return nil, 0, nil
	}
	lf := from + i
	// Length first, so the verdict does not depend on how the bytes arrived.
	if int64(lf-s.pos-2) > limit {
		return nil, 0, errTooLarge
	}
	if buf[lf-1] != '\r' { // lf-1 >= s.pos, and the type byte is never CR
		return nil, 0, errMissingCRLF
	}
	return buf[s.pos+1 : lf-1], lf + 1, nil
}

// blob scans a length-prefixed string: bulk string, blob error or verbatim.
func (s *Scanner) blob(buf []byte, typ byte, header []byte, next int) (bool, error) {
	n, ok := parseLength(header)
	switch {
	case !ok:
		return false, errBadNumber
	case n == -1 && typ == '$':
		s.advance(next)
		s.pending[s.depth-1]--
		return true, nil
	case n < 0:
		return false, errNegativeLength
	case n > s.maxBulkLen && !s.skipOversized:
		return false, errTooLarge
	case n > s.maxBulkLen:
		s.discarding, s.oversized = true, true
	}
	end := int64(next) + n
	if s.discarding && int64(len(buf)) < end+2 {
		// Pass over what is here; Scan skips the rest as it comes.
		s.skip = end + 2 - int64(len(buf))
		s.advance(len(buf))
		return false, nil
	}
	if int64(len(buf)) < end+2 {
		// Remember the header's end so the next call finds it at once.
		s.lineFrom = next - 1
		return false, nil
	}
	if buf[end] != '\r' || buf[end+1] != '\n' {
		return false, errMissingCRLF
	}
	if typ == '=' && (n < 4 || buf[next+3] != ':') {
		return false, errBadValue
	}
	s.advance(int(end + 2))
	s.pending[s.depth-1]--
	return true, nil
}

// aggregate opens a level for an array, set, push, map or attribute header.
func (s *Scanner) aggregate(typ byte, header []byte, next int) error {
	n, ok := parseLength(header)
	switch {
	case !ok:
		return errBadNumber
	case n == -1 && typ == '*':
		n = 0 // null array
	case n < 0:
		return errNegativeLength
	}
	if typ == '%' || typ == '|' {
		if n > (1<<62)-1 {
			return errBadNumber
		}
		n *= 2 // key and value per entry
	}
	if s.depth > MaxNesting {
		return errTooDeep
	}
	s.advance(next)
	// An attribute decorates the value that follows it, which still counts
	// as the parent's element.
	if typ != '|' {
		s.pending[s.depth-1]--
	}
	if n > 0 {
		s.pending[s.depth] = n
		s.depth++
	}
	return nil
}

func (s *Scanner) advance(pos int) {
	s.pos = pos
	s.lineFrom = 0
}

// isInteger accepts what redcon accepts for an integer reply: an optional
// minus sign and at least one digit. The value is not needed, so it may exceed
// int64.
func isInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	return len(b) > 0 && allDigits(b)
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseLength parses a length or count: an optional minus sign and decimal
// digits that fit in an int64.
func parseLength(b []byte) (int64, bool) {
	negative := len(b) > 0 && b[0] == '-'
	if negative {
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63-1-9)/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if negative {
		n = -n
	}
	return n, true
}

// ReadReply reads one reply frame of at most limit bytes from r, which
// must hold nothing before it; what r holds after it is lost (the
// connection carries one request at a time: a probe's, a handshake's).
func ReadReply(r io.Reader, limit int) ([]byte, error) {
	buf := make([]byte, limit)
	scanner := NewScanner(limit)
	have := 0
	for {
		n, err := r.Read(buf[have:])
		have += n
		if size, serr := scanner.Scan(buf[:have]); serr != nil || size > 0 {
			return buf[:size], serr
		}
		if err != nil {
			return nil, err
		}
		if have == len(buf) {
			return nil, fmt.Errorf("%w: reply longer than %d bytes", ErrProtocol, limit)
		}
	}
}
