package proxy

import (
	"io"
	"runtime/debug"
	"sync"

	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
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
	scanner resp.RequestScanner
	// buf[start:end] is input not yet returned as commands, buf[start:pos]
	// the part scanned; the command in progress starts at start.
	buf             []byte
	start, pos, end int
	cmds            []redcon.Command
	// refused is a bad request found behind commands still to be returned.
	refused *resp.RequestError
	// huge is set while the reader's buffer, or the one it left to the
	// commands it returned, is that of a huge request (trackHuge).
	huge bool
}

// While a huge request is read and served, the GC runs at GOGC=50 rather
// than kvproxy's 400 (cmd/kvproxy), which lets the heap grow to five times
// what is live before a collection: fine for the small buffers of ordinary
// traffic, but a huge request leaves garbage of its own size (the buffers it
// outgrew, its own once served). Eight concurrent 80 MB MSETs took kvproxy
// to about 2.5 times their size at GOGC=400, 2.1 times with this.
const (
	// hugeRequestBytes is the read buffer size from which a request is huge.
	hugeRequestBytes     = 16 << 20
	hugeRequestGCPercent = 50
)

// hugeRequests counts the clients reading or being served a huge request;
// gcPercent is the GC setting to restore when none is left.
var hugeRequests struct {
	sync.Mutex
	n         int
	gcPercent int
}

// hugeRequestStarted lowers the GC target for the first huge request.
func hugeRequestStarted() {
	hugeRequests.Lock()
	defer hugeRequests.Unlock()
	if hugeRequests.n++; hugeRequests.n == 1 {
		hugeRequests.gcPercent = debug.SetGCPercent(hugeRequestGCPercent)
		if hugeRequests.gcPercent >= 0 && hugeRequests.gcPercent < hugeRequestGCPercent {
			debug.SetGCPercent(hugeRequests.gcPercent) // already lower, or off
		}
	}
}

// hugeRequestDone restores the GC target after the last huge request.
func hugeRequestDone() {
	hugeRequests.Lock()
	defer hugeRequests.Unlock()
	if hugeRequests.n--; hugeRequests.n == 0 {
		debug.SetGCPercent(hugeRequests.gcPercent)
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

func newCommandReader(src io.Reader, g *guardConn, limits resp.RequestLimits) *commandReader {
	return &commandReader{src: src, guard: g, scanner: resp.RequestScanner{Limits: limits}, buf: make([]byte, readBufSize)}
}

// trackHuge notes when the reader's buffer becomes, or stops being, that of
// a huge request. It is not called when the buffer is left to the commands
// returned (detach): they are huge until the session is done with them.
func (r *commandReader) trackHuge() {
	if huge := len(r.buf) >= hugeRequestBytes; huge != r.huge {
		r.huge = huge
		if huge {
			hugeRequestStarted()
		} else {
			hugeRequestDone()
		}
	}
}

// close ends the reader's part in a huge request, if any; the connection is
// gone.
func (r *commandReader) close() {
	if r.huge {
		r.huge = false
		hugeRequestDone()
	}
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
	r.trackHuge() // the session is done with the commands returned
	clear(r.cmds) // nor pin a big buffer they used while the client idles
	if cap(r.cmds) > maxKeptCommands {
		r.cmds = nil
	}
	r.cmds = r.cmds[:0]
	r.scanner.ReleaseArgs(maxKeptArgs)
}

// parse scans the input read and collects the commands it completes.
func (r *commandReader) parse() {
	unauthenticated := !r.guard.authenticated.Load()
	for r.pos < r.end && r.refused == nil {
		if unauthenticated && len(r.cmds) > 0 {
			return // the rest waits until this command (an AUTH?) has run
		}
		r.scanner.Unauthenticated = unauthenticated
		next, done, err := r.scanner.Scan(r.buf[:r.end], r.pos)
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
		r.cmds = append(r.cmds, redcon.Command{Raw: raw, Args: r.scanner.Args()})
		return
	}
	cmd, err := resp.ParseInline(raw)
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
			r.trackHuge()
		}
	}
	if len(r.buf)-r.end >= minRead {
		return
	}
	buf := r.buf
	if used := r.end - r.start; used+minRead > len(buf) {
		buf = make([]byte, r.grownSize(used+minRead))
	}
	r.moveTo(buf)
	r.trackHuge()
}

// moveTo moves the input not yet returned to the front of buf, which may be
// the current buffer; the arguments of the command in progress move with it.
func (r *commandReader) moveTo(buf []byte) {
	copy(buf, r.buf[r.start:r.end])
	r.scanner.MoveArgs(r.buf, buf, r.start)
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
		r.moveTo(make([]byte, readBufSize))
	}
	r.scanner.DetachArgs(maxKeptArgs)
}

// grownSize is the size of a buffer that holds need bytes: twice the
// current one; or, inside a command whose headers announce its arguments,
// up to four times, toward the end they suggest (with a margin for a guess
// that falls short) and not past it, but by at least a quarter, so growth
// stays geometric when the guess is wrong. A huge command's buffer is then
// allocated about 1.5 times over rather than 2 to 4.
func (r *commandReader) grownSize(need int) int {
	size := 2 * len(r.buf)
	if estimate := r.scanner.Estimate(); estimate > 0 {
		estimate += estimate / 16
		size = int(min(estimate, 4*int64(len(r.buf))))
		size = max(size, len(r.buf)+len(r.buf)/4)
	}
	return max(size, need)
}
