package proxy

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	"kvproxy/router"
)

// DedicatedBackend is what transactions, blocking commands and Pub/Sub need
// beyond Backend: a connection of their own to one master. *router.Router
// implements it; with a Backend that does not, the proxy refuses those
// commands.
type DedicatedBackend interface {
	// MasterOf returns the address of the master serving slot, or "".
	MasterOf(slot int) string
	// DialNode opens an authenticated connection to addr; the caller owns it.
	DialNode(ctx context.Context, addr string) (net.Conn, error)
}

// maxIdlePerNode caps the idle dedicated connections kept per master for
// the next transaction or blocking command.
const maxIdlePerNode = 4

// dedicatedDialTimeout bounds opening a dedicated connection.
const dedicatedDialTimeout = 5 * time.Second

// nodeConn is a dedicated connection to one backend node, read one reply
// frame at a time.
type nodeConn struct {
	addr    string
	conn    net.Conn
	scanner *router.Scanner
	// buf[next:] holds bytes read past the last reply returned.
	buf  []byte
	next int
}

func newNodeConn(addr string, conn net.Conn) *nodeConn {
	return &nodeConn{addr: addr, conn: conn, scanner: router.NewScanner(router.DefaultMaxBulkLen)}
}

// readReply returns the next reply frame; it is valid until the next call.
func (c *nodeConn) readReply() ([]byte, error) {
	if c.next > 0 {
		c.buf = c.buf[:copy(c.buf, c.buf[c.next:])]
		c.next = 0
	}
	c.scanner.Reset()
	for {
		if len(c.buf) > 0 {
			n, err := c.scanner.Scan(c.buf)
			if err != nil {
				return nil, err
			}
			if n > 0 {
				c.next = n
				return c.buf[:n], nil
			}
		}
		if len(c.buf) == cap(c.buf) {
			c.buf = slices.Grow(c.buf, max(4096, len(c.buf)))
		}
		n, err := c.conn.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

// idle reports whether nothing is left unread, so the connection can be
// reused.
func (c *nodeConn) idle() bool { return c.next == len(c.buf) }

func (c *nodeConn) close() { _ = c.conn.Close() }

// nodePool keeps a few idle dedicated connections per master.
type nodePool struct {
	backend DedicatedBackend
	mu      sync.Mutex
	closed  bool
	idle    map[string][]*nodeConn
}

func newNodePool(backend DedicatedBackend) *nodePool {
	return &nodePool{backend: backend, idle: make(map[string][]*nodeConn)}
}

var errPoolClosed = errors.New("proxy is shutting down")

// get returns a live connection to addr, idle or newly dialled.
func (p *nodePool) get(ctx context.Context, addr string) (*nodeConn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		conns := p.idle[addr]
		if len(conns) == 0 {
			p.mu.Unlock()
			break
		}
		c := conns[len(conns)-1]
		p.idle[addr] = conns[:len(conns)-1]
		p.mu.Unlock()
		if alive(c) {
			return c, nil
		}
		c.close()
	}
	ctx, cancel := context.WithTimeout(ctx, dedicatedDialTimeout)
	defer cancel()
	conn, err := p.backend.DialNode(ctx, addr)
	if err != nil {
		return nil, err
	}
	return newNodeConn(addr, conn), nil
}

// alive reports whether an idle connection is still open: a node that closed
// it (restart, failover, timeout) has left an EOF to read.
func alive(c *nodeConn) bool {
	if c.conn.SetReadDeadline(time.Now()) != nil {
		return false
	}
	var one [1]byte
	_, err := c.conn.Read(one[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return false // EOF, or bytes nobody asked for
	}
	return c.conn.SetReadDeadline(time.Time{}) == nil
}

// put keeps c for reuse, or closes it when it has unread bytes or the pool is
// full.
func (p *nodePool) put(c *nodeConn) {
	if !c.idle() {
		c.close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle[c.addr]) >= maxIdlePerNode {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle[c.addr] = append(p.idle[c.addr], c)
	p.mu.Unlock()
}

// close closes the idle connections and refuses new ones.
func (p *nodePool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for addr, conns := range p.idle {
		for _, c := range conns {
			c.close()
		}
		delete(p.idle, addr)
	}
}

// keylessMaster is the master a keyless command of this session goes to (as
// routeKeyless picks it), or "".
func (s *session) keylessMaster() string {
	masters := s.mastersList()
	if len(masters) == 0 {
		return ""
	}
	return masters[int(s.id)%len(masters)]
}

// commandSlot returns the slot shared by the keys of a command, -1 when it
// has none, or ok false when they span slots.
func (s *session) commandSlot(cmd *CommandInfo, args [][]byte) (slot int, ok bool) {
	s.keyIdx = cmd.KeyIndexes(args, s.keyIdx[:0])
	slot = -1
	for _, k := range s.keyIdx {
		ks := int(router.Slot(args[k]))
		if slot >= 0 && ks != slot {
			return slot, false
		}
		slot = ks
	}
	return slot, true
}

// dialFor returns a dedicated connection to addr, or writes the error the
// client gets and returns nil.
func (s *session) dialFor(addr string) *nodeConn {
	if addr == "" {
		s.write(appendError(s.scratch[:0], errNoMasters))
		return nil
	}
	c, err := s.srv.pool.get(s.srv.ctx, addr)
	if err != nil {
		s.write(appendError(s.scratch[:0], "ERR cannot connect to backend "+addr+": "+oneLine(err.Error())))
		return nil
	}
	return c
}

// roundTrip sends raw on c and reads one reply; the connection is closed if
// the server shuts down meanwhile.
func (s *session) roundTrip(c *nodeConn, raw []byte) ([]byte, error) {
	stop := context.AfterFunc(s.srv.ctx, c.close)
	defer stop()
	if _, err := c.conn.Write(raw); err != nil {
		return nil, err
	}
	return c.readReply()
}

// oneLine blanks line breaks so a Go error fits in a RESP error line.
func oneLine(msg string) string {
	return string(appendSanitized(nil, []byte(msg), len(msg)))
}
