package proxy

import (
	"io"
	"runtime"
	"sync/atomic"

	"github.com/tidwall/redcon"
)

// commandReader reads a client's commands off its socket in one pass: the
// guard's scanner follows the bytes as they arrive, refusing a bad request
// before it is buffered whole, and records each argument as it passes, so a
// partial command is never parsed again and a complete one costs no copy.
// A command's Raw and Args point into the read buffer (a RESP command) or
// into a buffer of its own (an inline one, converted to RESP as redcon
// does); they stay valid until the next ReadCommands.
//
// It replaces redcon's Reader, which re-parses a partial command from its
// first byte on every read, rebuilding its table of argument offsets each
// time, grows its buffer by doubling and keeps it for good, and copies every
// command: a 1M-argument MSET cost it tens of times its size.
type commandReader struct {
	src     io.Reader
	guard   *guardConn
	scanner requestScanner
	// buf[start:end] is input not yet returned as commands, buf[start:pos]
	// the part scanned; the command in progress starts at start.
	buf             []byte
	start, pos, end int
	cmds            []redcon.Command
	// refused is a bad request found behind commands still to be returned.
	refused *guardError
	// leftBig is set when the commands returned kept a big buffer for
	// themselves (detach).
	leftBig bool
}

// bigGarbage is the size from which a buffer that became garbage starts a
// collection (collectSoon).
const bigGarbage = 16 << 20

// collecting is set while a collection started by collectSoon runs.
var collecting atomic.Bool

// collectSoon starts a garbage collection in the background unless one is
// running. kvproxy runs with a high GOGC, which lets the heap grow to
// several times what is live before a collection: fine for the small
// buffers of ordinary traffic, but a huge request leaves garbage of its own
// size (the read buffers it outgrew, its copy once served), and waiting for
// GOGC would multiply the memory it costs. Huge buffers hold no pointers, so
// a collection costs little next to serving them.
func collectSoon() {
	if collecting.CompareAndSwap(false, true) {
		go func() {
			defer collecting.Store(false)
			runtime.GC()
		}()
	}
}

const (
	// readBufSize is a client's read buffer until a command does not fit;
	// it comes back to this size once a larger buffer was emptied.
	readBufSize = 8 << 10
	// minRead is the least room a read is given.
	minRead = 4 << 10
	// maxKeptArgs and maxKeptCommands bound the tables kept for reuse.
	maxKeptArgs     = 4 << 10
	maxKeptCommands = 1 << 10
)

func newCommandReader(src io.Reader, g *guardConn, limits scanLimits) *commandReader {
	return &commandReader{src: src, guard: g, scanner: requestScanner{limits: limits}, buf: make([]byte, readBufSize)}
}

// ReadCommands returns the complete commands buffered, reading the source
// while there are none; input that does not complete a command stays for
// the next call. Before AUTH it returns one command at a time, so the
// unauthenticated caps apply exactly until an AUTH has run. A refused
// request is told to the client (after the commands before it were
// returned) and ends reading with errRefused.
func (r *commandReader) ReadCommands() ([]redcon.Command, error) {
	r.release()
	for {
		r.parse()
		if len(r.cmds) > 0 {
			r.detach()
			return r.cmds, nil
		}
		if r.refused != nil {
			return nil, r.guard.refuse(r.refused)
		}
		if err := r.fill(); err != nil {
			return nil, err
		}
	}
}

// pending reports that the next ReadCommands has something to return
// without reading: input held back until an AUTH has run, or a refusal not
// yet told.
func (r *commandReader) pending() bool { return r.pos < r.end || r.refused != nil }

// release forgets the commands last returned, keeping the arguments of the
// command in progress.
func (r *commandReader) release() {
	if r.leftBig {
		r.leftBig = false
		collectSoon() // the session is done with the big buffer
	}
	if cap(r.cmds) > maxKeptCommands {
		r.cmds = nil
	}
	r.cmds = r.cmds[:0]
	s := &r.scanner
	from := s.argsFrom
	if s.state == stCommand {
		from = len(s.args)
	}
	switch {
	case from == 0:
		// Only the command in progress, or nothing.
	case cap(s.args) > maxKeptArgs && len(s.args)-from <= maxKeptArgs:
		s.args = append(make([][]byte, 0, maxKeptArgs), s.args[from:]...)
	default:
		n := copy(s.args, s.args[from:])
		clear(s.args[n:]) // nor pin a buffer replaced since
		s.args = s.args[:n]
	}
	s.argsFrom = 0
}

// parse scans the input read and collects the commands it completes.
func (r *commandReader) parse() {
	unauthenticated := !r.guard.authenticated.Load()
	for r.pos < r.end && r.refused == nil {
		if unauthenticated && len(r.cmds) > 0 {
			return // the rest waits until this command (an AUTH?) has run
		}
		r.scanner.unauthenticated = unauthenticated
		next, done, err := r.scanner.scan(r.buf[:r.end], r.pos)
		r.pos = next
		if err != nil {
			r.refused = err
			return
		}
		if done {
			r.complete()
		}
	}
}

// complete takes the command that ends at pos.
func (r *commandReader) complete() {
	raw := r.buf[r.start:r.pos:r.pos]
	r.start = r.pos
	if raw[0] == '*' {
		s := &r.scanner
		r.cmds = append(r.cmds, redcon.Command{Raw: raw, Args: s.args[s.argsFrom:len(s.args):len(s.args)]})
		return
	}
	cmd, err := parseInline(raw)
	if err != nil {
		r.refused = err
		return
	}
	if len(cmd.Args) > 0 { // redcon skips blank lines
		r.cmds = append(r.cmds, cmd)
	}
}

// fill reads the source once into the buffer.
func (r *commandReader) fill() error {
	r.makeRoom()
	n, err := r.src.Read(r.buf[r.end:])
	r.end += n
	if n > 0 {
		return nil // an error comes back with the next read
	}
	return err
}

// makeRoom leaves at least minRead bytes free after end, moving the command
// in progress to the front of the buffer, or to a larger one.
func (r *commandReader) makeRoom() {
	if r.start == r.end {
		r.start, r.pos, r.end = 0, 0, 0
		if len(r.buf) > maxKeptBuffer {
			// A big command went through: do not keep its buffer.
			r.buf = make([]byte, readBufSize)
		}
	}
	if len(r.buf)-r.end >= minRead {
		return
	}
	buf := r.buf
	if used := r.end - r.start; used+minRead > len(buf) {
		buf = make([]byte, r.grownSize(used+minRead))
		if len(r.buf) >= bigGarbage {
			collectSoon()
		}
	}
	r.moveTo(buf)
}

// moveTo moves the input not yet returned to the front of buf, which may be
// the current buffer; the arguments of the command in progress move with it.
func (r *commandReader) moveTo(buf []byte) {
	copy(buf, r.buf[r.start:r.end])
	// A slice buf[i:j] of the whole buffer has capacity cap(buf)-i, which
	// tells where it starts without a table of offsets.
	if s := &r.scanner; s.state != stCommand {
		for k := s.argsFrom; k < len(s.args); k++ {
			from := cap(r.buf) - cap(s.args[k]) - r.start
			s.args[k] = buf[from : from+len(s.args[k])]
		}
	}
	r.buf = buf
	r.pos -= r.start
	r.start, r.end = 0, r.end-r.start
}

// detach leaves a big buffer and argument table to the commands about to be
// returned, moving what follows them to ones of the usual size: a huge
// command's bytes can then be freed as soon as the session is done with them
// (see split) rather than when the next command arrives.
func (r *commandReader) detach() {
	if len(r.buf) > maxKeptBuffer && r.end-r.start <= readBufSize-minRead {
		r.leftBig = len(r.buf) >= bigGarbage
		r.moveTo(make([]byte, readBufSize))
	}
	if s := &r.scanner; cap(s.args) > maxKeptArgs {
		var inProgress [][]byte
		if s.state != stCommand {
			inProgress = s.args[s.argsFrom:]
		}
		if len(inProgress) <= maxKeptArgs {
			s.args = append(make([][]byte, 0, maxKeptArgs), inProgress...)
			s.argsFrom = 0
		}
	}
}

// grownSize is the size of a buffer that holds need bytes: twice the
// current one, or when the sizes the command announced say it ends sooner,
// that end and a margin for a guess that falls short (no doubling past a big
// command's end), but never less than a quarter more, so growth stays
// geometric when the guess is wrong.
func (r *commandReader) grownSize(need int) int {
	size := 2 * len(r.buf)
	if estimate := r.scanner.estimate(); estimate > 0 {
		estimate += estimate / 16
		if estimate < int64(size) {
			size = max(int(estimate), len(r.buf)+len(r.buf)/4)
		}
	}
	return max(size, need)
}

// parseInline converts an inline command line (ending with LF) to a RESP
// command the way redcon does: arguments are separated by spaces; one
// starting with a double or single quote runs to the matching quote, in
// which backslash escapes \n, \r and \t and takes any other byte as it is;
// a quote anywhere else, an unclosed one, or a closing one not followed by
// a space or the end of the line is an error.
func parseInline(line []byte) (redcon.Command, *guardError) {
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	var words []byte // the arguments, unquoted, one after the other
	var ends []int   // where each argument ends in words
	for i := 0; i < len(line); {
		switch c := line[i]; c {
		case ' ':
			i++
			continue
		case '"', '\'':
			closed := false
			for i++; i < len(line); i++ {
				b := line[i]
				if b == c {
					closed = true
					i++
					break
				}
				if b == '\\' {
					if i++; i == len(line) {
						break
					}
					switch b = line[i]; b {
					case 'n':
						b = '\n'
					case 'r':
						b = '\r'
					case 't':
						b = '\t'
					}
				}
				words = append(words, b)
			}
			if !closed || i < len(line) && line[i] != ' ' {
				return redcon.Command{}, errUnbalancedQuotes
			}
		default:
			for ; i < len(line) && line[i] != ' '; i++ {
				if line[i] == '"' || line[i] == '\'' {
					return redcon.Command{}, errUnbalancedQuotes
				}
				words = append(words, line[i])
			}
		}
		ends = append(ends, len(words))
	}
	if len(ends) == 0 {
		return redcon.Command{}, nil
	}
	raw := appendArray(nil, len(ends))
	starts := make([]int, len(ends)) // where each argument starts in raw
	from := 0
	for k, end := range ends {
		raw = appendBulk(raw, words[from:end])
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
