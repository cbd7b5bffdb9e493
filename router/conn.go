package router

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"kvproxy/internal/rawio"
	"kvproxy/internal/resp"
)

// Reconnection backoff of one backend connection: the first redial after a
// failure waits minReconnectBackoff, each further failure doubles the wait up
// to maxReconnectBackoff. Requests arriving meanwhile fail at once as never
// sent, so a dead node costs neither a dial per request nor a storm.
const (
	minReconnectBackoff = 50 * time.Millisecond
	maxReconnectBackoff = 2 * time.Second
	// stableConnAge is how long a connection must have lived for its loss
	// to reset the backoff and allow an immediate redial.
	stableConnAge = time.Second
)

// Buffer sizes: a connection reads into readBufSize and shrinks back to it
// after a reply larger than maxIdleReadBuf passed through; a write buffer
// larger than maxIdleWriteBuf is not kept for the next write.
const (
	readBufSize     = 16 << 10
	maxIdleReadBuf  = 1 << 20
	maxIdleWriteBuf = 1 << 20
)

// discardCheckBytes is the size a reply in progress must reach before the
// reader asks whether its client can take it (OutputBudget); below it every
// reply is read whole.
const discardCheckBytes = 1 << 20

// askingCmd precedes a command redirected by ASK, on the same connection.
var askingCmd = []byte("*1\r\n$6\r\nASKING\r\n")

// node is one backend server and its pool of pipelined connections.
type node struct {
	addr string
	// host is addr's host, the host of a MOVED/ASK whose target has none.
	host  string
	conns []*backendConn
	// inOutage is set while the router follows the node's outage
	// (startOutage); outageMu orders its start and end with the hold's.
	outageMu sync.Mutex
	inOutage atomic.Bool
	// probeMu serialises probes, which share probeConn, a connection of
	// their own; probing is set while the watchdog's probe runs.
	probeMu   sync.Mutex
	probeConn net.Conn
	probing   atomic.Bool
}

// connFor picks a request's connection: by its Affinity when set, else by
// its slot (keyless requests use the first).
func (n *node) connFor(q *Request) *backendConn {
	switch {
	case q.Affinity != 0:
		return n.conns[q.Affinity%uint32(len(n.conns))]
	case q.Slot < 0:
		return n.conns[0]
	}
	return n.conns[q.Slot%len(n.conns)]
}

type connState uint8

const (
	// stateConnecting: a goroutine is dialling; requests queue up.
	stateConnecting connState = iota
	// stateUp: requests are written as they come.
	stateUp
	// stateDown: the last dial or the connection failed; requests fail at
	// once until retryAt, then the next request starts a redial.
	stateDown
)

// backendConn is one multiplexed, pipelined connection to a node. Callers
// append commands to wbuf and the FIFO under mu and write the buffer
// themselves when no write is in progress ("flush combining": no writer
// goroutine, no hand-off). A write never waits for the backend: what the
// socket does not take at once is finished by a goroutine, so no event loop
// or reader stalls behind a slow node. One reader goroutine per network
// connection splits reply frames and completes the FIFO's head.
//
// Requests past MaxPending or MaxPendingBytes outstanding are parked, in
// order, and written as replies make room: never refused. Their clients are
// not read meanwhile (a client has one batch in flight at a time), so the
// backpressure reaches them as TCP's.
type backendConn struct {
	r    *Router
	node *node

	mu      sync.Mutex
	state   connState
	closed  bool
	nc      net.Conn
	raw     *rawio.Conn // nc's socket, nil if it has none
	wbuf    []byte
	spare   []byte // the buffer of the write in progress, reused next time
	writing bool
	fifo    callQueue
	// parked holds the requests waiting for room, not yet in wbuf;
	// queuedBytes counts the bytes of those in fifo.
	parked      callQueue
	queuedBytes int
	// sent counts the calls at the head of fifo whose bytes were handed to
	// Write: if the connection dies, they may have run.
	sent int
	// progress is when the head of fifo started waiting or the last reply
	// arrived: the watchdog probes the node ProbeInterval later.
	progress time.Time
	// replies counts the replies read: a node whose replies keep coming is
	// alive, whatever its probe says.
	replies uint64
	retryAt time.Time
	backoff time.Duration
	// connectedAt is when the current or last connection was established.
	connectedAt time.Time
}

func newBackendConn(r *Router, n *node) *backendConn {
	return &backendConn{r: r, node: n, state: stateDown}
}

// enqueueLocked queues cl behind the connection's earlier requests (parked
// while the connection has too much outstanding), or fails it at once as
// never sent. The caller holds c.mu and calls flush afterwards.
func (c *backendConn) enqueueLocked(cl *call) {
	if c.state == stateDown {
		switch {
		case c.closed || c.r.closed.Load():
			cl.fail(callUnsent, replyShuttingDown)
			return
		case time.Now().Before(c.retryAt):
			cl.fail(callUnsent, nil)
			return
		}
		c.startConnectLocked()
	}
	cl.queued = len(cl.req.Raw)
	if c.parked.n > 0 || c.fullLocked(cl.queued) {
		c.parked.push(cl)
		c.r.counters.parked.Add(1)
		return
	}
	c.admitLocked(cl)
}

// fullLocked reports whether a request of size bytes must wait for replies
// to make room.
func (c *backendConn) fullLocked(size int) bool {
	return c.fifo.n > 0 && (c.fifo.n >= c.r.cfg.MaxPending || c.queuedBytes+size > c.r.cfg.MaxPendingBytes)
}

// admitLocked appends cl to the write buffer and the FIFO.
func (c *backendConn) admitLocked(cl *call) {
	if cl.asking {
		c.wbuf = append(c.wbuf, askingCmd...)
		c.fifo.push(nil)
	}
	c.wbuf = append(c.wbuf, cl.req.Raw...)
	c.queuedBytes += cl.queued
	c.fifo.push(cl)
}

// admitParkedLocked moves parked requests into the write buffer while there
// is room; it reports whether it queued any, which the caller then flushes.
// A parked request whose caller gave up is dropped unsent: its Raw may be
// reused already.
func (c *backendConn) admitParkedLocked() bool {
	admitted := false
	for c.parked.n > 0 && !c.fullLocked(c.parked.peek().queued) {
		cl := c.parked.pop()
		b := cl.b
		b.mu.Lock()
		gone := b.abandoned || (b.ctx != nil && b.ctx.Err() != nil)
		if !gone {
			c.admitLocked(cl)
			admitted = true
		}
		b.mu.Unlock()
		if gone {
			cl.fail(callUnsent, replyCancelled)
		}
	}
	return admitted
}

// startConnectLocked dials in the background; requests queue meanwhile.
func (c *backendConn) startConnectLocked() {
	c.state = stateConnecting
	c.r.wg.Add(1)
	go c.connectAndServe()
}

// preconnect starts dialling a new connection, so the first requests for a
// node (e.g. one learnt from MOVED) find it connected or connecting.
func (c *backendConn) preconnect() {
	c.mu.Lock()
	if c.state == stateDown && !c.closed && !c.r.closed.Load() && c.backoff == 0 {
		c.startConnectLocked()
	}
	c.mu.Unlock()
}

// flush writes the queued bytes unless another caller is already writing
// (that caller will pick them up before it stops).
func (c *backendConn) flush() { c.write(true) }

// reclaimUnsentLocked fails, as never sent, every request not handed to the
// socket yet (parked, or in wbuf behind the write in progress): the node
// stopped answering, and they wait in its outage instead, within their
// budget, where they can still go to a new master.
func (c *backendConn) reclaimUnsentLocked() {
	for c.fifo.n > c.sent {
		if cl := c.fifo.popTail(); cl != nil {
			c.queuedBytes -= cl.queued
			cl.fail(callReclaimed, nil)
		}
	}
	c.wbuf = c.wbuf[:0]
	for c.parked.n > 0 {
		c.parked.pop().fail(callReclaimed, nil)
	}
}

// write is flush; with yield it first lets the goroutines the same network
// poll woke queue their requests, so this write carries them too. Under
// redis-benchmark -P 16 -c 50 with a goroutine per client this took Redis
// from ~45 to ~275 commands per read and cut the proxy's write syscalls
// accordingly; with nothing else runnable it returns at once. An event loop,
// which gathers a whole round of clients itself (Writes), does not yield.
func (c *backendConn) write(yield bool) {
	c.mu.Lock()
	if c.writing {
		c.mu.Unlock()
		return
	}
	c.writing = true
	if yield {
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
	}
	c.drainLocked(false)
	c.mu.Unlock()
}

// drainLocked writes wbuf until it is empty, then clears writing. The lock
// is released around each write; the connection may be replaced meanwhile,
// and whatever is queued goes to the current one. Without mayBlock a write
// the socket does not take whole is handed, writing still set, to a
// goroutine that may wait for the backend (finishWrite).
func (c *backendConn) drainLocked(mayBlock bool) {
	for c.state == stateUp && len(c.wbuf) > 0 {
		nc, raw, buf := c.nc, c.raw, c.wbuf
		c.wbuf, c.spare = c.spare[:0], nil
		if c.sent == 0 {
			c.progress = time.Now()
		}
		c.sent = c.fifo.n
		c.mu.Unlock()
		n, err := writeSome(nc, raw, buf, mayBlock)
		c.mu.Lock()
		if err == nil && n < len(buf) {
			c.r.wg.Add(1)
			go c.finishWrite(nc, raw, buf, n)
			return
		}
		c.keepSpareLocked(buf)
		if err != nil {
			c.breakLocked(nc, fmt.Errorf("write: %w", err))
		}
	}
	c.writing = false
}

// finishWrite writes the rest of buf, from offset done, waiting for the
// backend as long as it takes (or until the connection is closed), then
// drains what queued meanwhile.
func (c *backendConn) finishWrite(nc net.Conn, raw *rawio.Conn, buf []byte, done int) {
	defer c.r.wg.Done()
	_, err := writeSome(nc, raw, buf[done:], true)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keepSpareLocked(buf)
	if err != nil {
		c.breakLocked(nc, fmt.Errorf("write: %w", err))
		c.writing = false
		return
	}
	c.drainLocked(true)
}

// keepSpareLocked keeps a written buffer for the next write, unless a huge
// request made it too big to keep.
func (c *backendConn) keepSpareLocked(buf []byte) {
	if cap(buf) <= maxIdleWriteBuf {
		c.spare = buf[:0]
	}
}

// breakLocked closes nc, if it is still the current connection, and fails
// every queued request: those already written as "lost" (they may have run),
// the rest as never sent.
func (c *backendConn) breakLocked(nc net.Conn, cause error) {
	if c.nc != nc || nc == nil {
		return
	}
	_ = nc.Close()
	c.nc, c.raw = nil, nil
	if time.Since(c.connectedAt) < stableConnAge {
		// A server that accepts and then drops connections gets redialled
		// no faster than one that refuses them.
		c.dialFailedLocked()
	} else {
		c.state, c.retryAt, c.backoff = stateDown, time.Time{}, 0
	}
	if !c.closed {
		c.r.counters.connsLost.Add(1)
		c.r.log.Warn("backend connection lost", "addr", c.node.addr, "pending", c.fifo.n, "err", cause)
		c.r.triggerRefresh()
		c.r.startOutage(c.node, "connection lost")
	}
	c.failQueueLocked()
}

// dialFailedLocked backs off: the next dial waits twice as long as the last.
func (c *backendConn) dialFailedLocked() {
	c.state = stateDown
	c.backoff = min(max(2*c.backoff, minReconnectBackoff), maxReconnectBackoff)
	c.retryAt = time.Now().Add(c.backoff)
}

func (c *backendConn) failQueueLocked() {
	var reply []byte
	if c.closed {
		reply = replyShuttingDown
	}
	for i := 0; c.fifo.n > 0; i++ {
		cl := c.fifo.pop()
		if cl == nil {
			continue
		}
		if i < c.sent {
			cl.fail(callLost, reply)
		} else {
			cl.fail(callUnsent, reply)
		}
	}
	for c.parked.n > 0 {
		c.parked.pop().fail(callUnsent, reply)
	}
	c.sent, c.queuedBytes = 0, 0
	c.wbuf = c.wbuf[:0]
}

// close fails everything queued and stops the reader; used by Router.Close.
func (c *backendConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.nc != nil {
		c.breakLocked(c.nc, ErrClosed)
		return
	}
	c.failQueueLocked()
}

// connectAndServe dials, authenticates, writes what queued up meanwhile and
// then reads replies until the connection fails.
func (c *backendConn) connectAndServe() {
	defer c.r.wg.Done()
	nc, err := c.r.dial(c.r.ctx, c.node.addr)
	c.mu.Lock()
	if err == nil && c.closed {
		_ = nc.Close()
		err = ErrClosed
	}
	if err != nil {
		c.dialFailedLocked()
		if !c.closed {
			c.r.counters.dialFailures.Add(1)
			c.r.log.Warn("backend dial failed", "addr", c.node.addr, "retry_in", c.backoff, "err", err)
			c.r.triggerRefresh()
			c.r.startOutage(c.node, "dial failed")
		}
		c.failQueueLocked()
		c.mu.Unlock()
		return
	}
	raw := rawConnOf(nc)
	c.nc, c.raw, c.state, c.connectedAt = nc, raw, stateUp, time.Now()
	c.mu.Unlock()
	c.flush()
	c.readLoop(nc, raw)
}

// readLoop splits the reply stream into frames and completes the FIFO's
// head with each, until a read fails or the stream is malformed. It has no
// deadline: a slow command delays the replies behind it, and a node that
// stops answering is found by the watchdog's probes instead.
func (c *backendConn) readLoop(nc net.Conn, raw *rawio.Conn) {
	scanner := resp.NewScanner(c.r.cfg.MaxBulkLen)
	scanner.SkipOversized()
	buf := make([]byte, 0, readBufSize)
	var frames []frameSpan
	var calls []*call
	start := 0 // offset of the first byte not yet consumed
	for {
		if len(buf) == cap(buf) {
			buf = compactOrGrow(buf, start)
			start = 0
		}
		n, err := readSome(nc, raw, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			c.fail(nc, fmt.Errorf("read: %w", err))
			return
		}
		frames = frames[:0]
		for start < len(buf) {
			size, err := scanner.Scan(buf[start:])
			if err != nil {
				c.fail(nc, err)
				return
			}
			if size > 0 {
				frame := frameSpan{from: start, to: start + size}
				frame.discarded, frame.oversized = scanner.Discarded()
				frames = append(frames, frame)
				start += size
				continue
			}
			if scanner.Discarding() || len(buf)-start < discardCheckBytes || c.keeps(len(frames), len(buf)-start) {
				break
			}
			scanner.Discard() // and scan on: blobs now pass as they come
		}
		if scanner.Discarding() {
			// Keep nothing of a discarded reply but its unscanned tail.
			if k := scanner.Scanned(); k > 0 {
				buf = append(buf[:start], buf[start+k:]...)
				scanner.Drop(k)
			}
		}
		if len(frames) > 0 {
			var ok, admitted bool
			if calls, ok, admitted = c.popReplied(calls[:0], len(frames)); !ok {
				c.fail(nc, fmt.Errorf("%w: reply without a request", resp.ErrProtocol))
				return
			}
			completeCalls(calls, frames, buf)
			clear(calls)
			if admitted {
				c.flush()
			}
		}
		if start == len(buf) {
			start = 0
			buf = buf[:0]
			if cap(buf) > maxIdleReadBuf {
				buf = make([]byte, 0, readBufSize)
			}
		}
	}
}

// keeps reports whether the reply in progress, of size bytes so far, for
// the i-th request outstanding, may be read whole: its client's budget can
// still take it. When it cannot, the budget is exceeded and the reply is
// discarded as it streams in.
func (c *backendConn) keeps(i, size int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i >= c.sent {
		return true // no request for it: the stream is broken, Scan will tell
	}
	cl := c.fifo.at(i)
	if cl == nil {
		return true
	}
	cl.b.mu.Lock()
	defer cl.b.mu.Unlock()
	// An abandoned call's request is its caller's again: nothing is kept.
	return !cl.b.abandoned && cl.req.Output.fits(size)
}

// frameSpan is a reply's place in the read buffer; a discarded reply's bytes
// are not there (Scanner.Discard), an oversized one held a bulk longer than
// MaxBulkLen.
type frameSpan struct {
	from, to             int
	discarded, oversized bool
}

// rawConnOf returns nc's socket for raw reads and writes (package rawio),
// nil when nc has none.
func rawConnOf(nc net.Conn) *rawio.Conn {
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return rawio.NewConn(raw)
		}
	}
	return nil
}

func readSome(nc net.Conn, raw *rawio.Conn, p []byte) (int, error) {
	if raw == nil {
		return nc.Read(p)
	}
	return raw.Read(p)
}

// writeSome writes p, all of it when mayBlock, else what the socket takes
// now. A connection without a raw socket (TLS) cannot write only what the
// socket takes: without mayBlock it writes nothing, and the caller's
// goroutine that may wait (finishWrite) writes it all, so an event loop
// never waits for a TLS backend.
func writeSome(nc net.Conn, raw *rawio.Conn, p []byte, mayBlock bool) (int, error) {
	switch {
	case raw == nil && !mayBlock:
		return 0, nil
	case raw == nil:
		return nc.Write(p)
	case mayBlock:
		return raw.Write(p)
	}
	return raw.TryWrite(p)
}

// compactOrGrow makes room at the end of a full buffer whose bytes before
// start are consumed.
func compactOrGrow(buf []byte, start int) []byte {
	if start > 0 {
		return buf[:copy(buf, buf[start:])]
	}
	grown := make([]byte, len(buf), 2*cap(buf))
	copy(grown, buf)
	return grown
}

// popReplied removes the n oldest requests from the FIFO and admits parked
// ones into the room they leave; ok is false if fewer were written, i.e.
// the server replied to nothing, admitted says the caller must flush.
func (c *backendConn) popReplied(calls []*call, n int) (_ []*call, ok, admitted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.sent {
		return calls, false, false
	}
	for range n {
		cl := c.fifo.pop()
		if cl != nil {
			c.queuedBytes -= cl.queued
		}
		calls = append(calls, cl)
	}
	c.sent -= n
	c.replies += uint64(n)
	c.progress = time.Now()
	return calls, true, c.parked.n > 0 && c.admitParkedLocked()
}

// waitingSince reports whether requests were sent and not answered, and
// since when the oldest waits or the last reply arrived.
func (c *backendConn) waitingSince() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.progress, c.sent > 0
}

func (c *backendConn) fail(nc net.Conn, cause error) {
	c.mu.Lock()
	c.breakLocked(nc, cause)
	c.mu.Unlock()
}
