package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/tidwall/redcon"

	"kvproxy/internal/rawio"
	"kvproxy/router"
)

// client is one client connection and how its input is read. A client starts
// on an event loop (loop mode): the loop reads it when it is readable and
// serves the batch without blocking, the replies being written by whoever
// completes them (async.go), so a client waiting for its replies costs no
// goroutine at all. A batch that may block (transactions, blocking commands,
// Pub/Sub, QUIT, very large pipelines) moves the client to a goroutine of its
// own (goroutine mode), served synchronously as redcon would, until its
// session is plain again. Without event loops, every client is in goroutine
// mode.
type client struct {
	srv   *Server
	nc    net.Conn
	src   *clientSource
	guard *guardConn
	rd    *commandReader
	wr    *redcon.Writer
	sess  *session
	loop  *eventLoop
	fd    int // the socket's descriptor, while on loop

	mu sync.Mutex
	// inLoop: the event loop reads the client; else a goroutine does.
	inLoop bool
	// readable: input may be waiting that no read has taken yet.
	readable bool
	// serving: a goroutine is in attemptServe; resume asks it to look
	// again before it leaves.
	serving, resume bool
	closed          bool
	endOnce         sync.Once
}

// clientSource is the socket as the guard reads it: in loop mode one
// non-blocking read per serve (the loop knows the socket is readable), in
// goroutine mode an ordinary blocking read.
type clientSource struct {
	net.Conn
	raw   syscall.RawConn
	rawio *rawio.Conn
	// sock is the TCP socket under a TLS connection (raw is nil then):
	// watched for hang-ups, never read, since the bytes are encrypted.
	sock    syscall.RawConn
	oneShot bool
	// used: the one read of this serve was made. more: the last read
	// filled the buffer, so more input may be waiting unannounced (the
	// loop is told of arrivals, not of what is left).
	used, more bool
}

// SyscallConn exposes the socket (hang-up watches of blocking commands).
func (s *clientSource) SyscallConn() (syscall.RawConn, error) {
	switch {
	case s.raw != nil:
		return s.raw, nil
	case s.sock != nil:
		return s.sock, nil
	}
	return nil, errors.New("proxy: connection has no socket")
}

// encrypted tells peerHungUp that the socket carries TLS records.
func (s *clientSource) encrypted() bool { return s.sock != nil }

// errWouldBlock ends a loop-mode read with no more input available now.
var errWouldBlock = errors.New("proxy: no input available")

func (s *clientSource) Read(p []byte) (int, error) {
	if !s.oneShot {
		return s.Conn.Read(p)
	}
	if s.used {
		return 0, errWouldBlock
	}
	s.used = true
	// Through the RawConn, so a read never races the connection's close
	// and never touches a descriptor number reused by another connection.
	n, err := s.rawio.TryRead(p)
	switch {
	case errors.Is(err, syscall.EAGAIN):
		s.more = false
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	}
	s.more = n == len(p)
	return n, nil
}

// newClient wraps an accepted connection; it returns nil if the server is
// closing.
func (s *Server) newClient(nc net.Conn) *client {
	src := &clientSource{Conn: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			src.raw, src.rawio = raw, rawio.NewConn(raw)
		}
	} else if tc, ok := nc.(*tls.Conn); ok {
		if sc, ok := tc.NetConn().(syscall.Conn); ok {
			src.sock, _ = sc.SyscallConn()
		}
	}
	g := newGuardConn(src, s.creds.Load().open, &s.stats, s.badRequestLog)
	limits := s.limits
	limits.MaxRequestBytes = s.maxRequestBytes.Load()
	c := &client{srv: s, nc: nc, src: src, guard: g, rd: newCommandReader(src, g, limits), wr: redcon.NewWriter(g)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	c.sess = newSession(s, c, g, c.wr, src.rawio)
	_, c.sess.encrypted = nc.(*tls.Conn)
	c.sess.onTurnFree = c.turnFreed
	c.sess.onKilled = c.shutdown
	s.sessions[c.sess] = struct{}{}
	s.sessionsDone.Add(1)
	s.stats.connectionsReceived.Add(1)
	s.stats.connectedClients.Add(1)
	return c
}

// start begins serving: on an event loop when one takes the client, else
// on a goroutine.
func (c *client) start(loop *eventLoop) {
	if loop != nil && c.src.raw != nil && c.sess.rawConn != nil {
		c.src.oneShot = true
		c.sess.asyncOK = true
		c.inLoop = true
		c.loop = loop
		if loop.add(c) == nil {
			return
		}
		c.src.oneShot, c.sess.asyncOK, c.inLoop, c.loop = false, false, false, nil
	}
	c.sess.takeTurn()
	go c.serveGoroutine(nil)
}

// The redcon.Conn subset a session uses.
func (c *client) WriteRaw(b []byte)  { c.wr.WriteRaw(b) }
func (c *client) RemoteAddr() string { return c.nc.RemoteAddr().String() }

// Close flushes what is buffered and closes the connection; the client ends
// once whoever serves it notices.
func (c *client) Close() error {
	_ = c.wr.Flush()
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.guard.Close()
}

// onReadable is the event loop's notice that input (or EOF) is waiting;
// backend writes go to writes, which the loop flushes after the round.
// hungUp says the peer closed the connection: like Redis, which frees a
// client at EOF, the proxy drops the client's requests still held in a
// failover instead of sending them for nobody.
func (c *client) onReadable(writes *router.Writes, hungUp bool) {
	if hungUp {
		c.sess.hangUp()
	}
	c.mu.Lock()
	c.readable = true
	c.mu.Unlock()
	c.attemptServe(writes)
}

// turnFreed runs each time the session's turn is given back in loop mode:
// input that arrived meanwhile is served now.
func (c *client) turnFreed() {
	c.attemptServe(nil)
}

// attemptServe serves waiting input if the client's turn is free. Only one
// goroutine at a time runs it for a client; others just ask it to look again,
// so concurrent notices neither race nor recurse.
func (c *client) attemptServe(writes *router.Writes) {
	c.mu.Lock()
	if c.serving {
		c.resume = true
		c.mu.Unlock()
		return
	}
	c.serving = true
	c.mu.Unlock()
	for {
		if c.sess.tryTakeTurn() {
			c.mu.Lock()
			ready, inLoop, closed := c.readable, c.inLoop, c.closed
			if inLoop {
				c.readable = false
			}
			c.mu.Unlock()
			switch {
			case !inLoop:
				// A goroutine serves the client: the turn is not ours.
				c.sess.releaseTurnQuietly()
			case closed || c.srv.isClosing():
				c.end(nil)
			default:
				// Without a notice, only what is buffered is served: a
				// refusal found behind the commands last returned, or
				// input held back until an AUTH had run.
				c.sess.writes = writes
				c.serveInput(ready)
				c.sess.writes = nil
			}
		}
		c.mu.Lock()
		if !c.resume {
			c.serving = false
			c.mu.Unlock()
			return
		}
		c.resume = false
		c.mu.Unlock()
	}
}

// serveInput serves the complete commands buffered, after reading the
// socket once if read is set; it runs with the turn held, which passes to
// the batch's completion.
func (c *client) serveInput(read bool) {
	defer c.recoverPanic()
	c.src.used = !read
	cmds, err := c.rd.ReadCommands()
	if c.src.more || c.rd.pending() {
		// More input may wait and the loop will not be told again.
		c.mu.Lock()
		c.readable, c.resume = true, true
		c.mu.Unlock()
	}
	if err != nil {
		if errors.Is(err, errWouldBlock) {
			c.sess.releaseTurnQuietly()
			return
		}
		c.end(err)
		return
	}
	if !c.sess.loopSafe(cmds) {
		c.toGoroutine(cmds)
		return
	}
	if !c.sess.serve(cmds) {
		// Served synchronously after all (a rare fallback): its replies
		// are in the buffer.
		if err := c.wr.Flush(); err != nil {
			c.end(err)
			return
		}
		c.sess.releaseTurn()
	}
}

// toGoroutine moves the client off its event loop for a batch that may block.
func (c *client) toGoroutine(cmds []redcon.Command) {
	c.mu.Lock()
	c.inLoop = false
	c.mu.Unlock()
	c.src.oneShot = false
	c.sess.asyncOK = false
	go c.serveGoroutine(cmds)
}

// serveGoroutine serves the client synchronously, holding its turn, until
// the connection ends or the session is plain again and the client can go
// back to its event loop.
func (c *client) serveGoroutine(first []redcon.Command) {
	defer c.recoverPanic()
	cmds := first
	for {
		if cmds != nil {
			c.sess.serve(cmds)
			if err := c.wr.Flush(); err != nil {
				c.end(err)
				return
			}
			if c.isClosed() {
				c.end(nil)
				return
			}
			if c.loop != nil && c.sess.plain() {
				c.backToLoop()
				return
			}
		}
		var err error
		if cmds, err = c.rd.ReadCommands(); err != nil {
			c.end(err)
			return
		}
	}
}

// backToLoop hands the client back to its event loop, which first reads
// whatever arrived while the goroutine served it.
func (c *client) backToLoop() {
	c.src.oneShot = true
	c.sess.asyncOK = true
	c.mu.Lock()
	c.inLoop, c.readable = true, true
	c.mu.Unlock()
	c.sess.releaseTurn()
}

func (c *client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// end closes the connection and releases the session; it runs with the turn
// held, at most once. A refused request was told to the client already.
func (c *client) end(err error) {
	c.endOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		if c.loop != nil {
			c.loop.remove(c)
		}
		c.rd.close()
		_ = c.guard.Close()
		c.srv.closed(c.sess, err)
	})
}

// recoverPanic keeps a bug from costing more than the client's connection.
func (c *client) recoverPanic() {
	if v := recover(); v != nil {
		c.srv.logger.Error("panic while serving a client; closing its connection",
			"client", c.RemoteAddr(), "panic", v, "stack", string(debug.Stack()))
		c.end(nil)
	}
}
