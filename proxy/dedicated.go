package proxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"kvproxy/failover"
	"kvproxy/internal/resp"
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
	// Backoff paces the resends of a command refused without running, as
	// the backend paces its own.
	Backoff() router.Backoff
}

// WriteHold is implemented by a DedicatedBackend that holds a shard's
// writes while its master fails over (*router.Router): transactions and
// blocking writes wait in that hold before they are sent, in one queue with
// the router's own held writes.
type WriteHold interface {
	// AdmitWrite asks the hold about a write to the master at addr that
	// arrived at arrived: nil sends it now, else it waits for the ticket,
	// which expires HoldTimeout after arrived.
	AdmitWrite(addr string, arrived time.Time) *failover.Ticket
}

// tryAgainFollower is implemented by Handovers that start following a
// master when told it answered TRYAGAIN (failover.Buffer): a dedicated
// connection's TRYAGAIN then starts the hold the router's own TRYAGAIN
// would, even for a failover begun behind the proxy's back.
type tryAgainFollower interface {
	Observe(master string, ev failover.Event)
}

// What a dedicated write the hold did not let go gets: the router's wording
// for its own held writes, held past their budget or refused past the
// hold's byte cap.
const (
	errHeldNotRun = router.HeldNotRunError
	errHoldFull   = router.HoldFullError
)

// maxDedicatedResends bounds the resends of a dedicated command the server
// refused without running it (paced by the backend's Backoff).
const maxDedicatedResends = 5

// MaxIdleDedicatedPerNode caps the idle dedicated connections kept per
// master for the next transaction or blocking command.
const MaxIdleDedicatedPerNode = 4

// dedicatedDialTimeout bounds opening a dedicated connection.
const dedicatedDialTimeout = 5 * time.Second

// nodeConn is a dedicated connection to one backend node, read one reply
// frame at a time.
type nodeConn struct {
	addr    string
	conn    net.Conn
	scanner *resp.Scanner
	// buf[next:] holds bytes read past the last reply returned.
	buf  []byte
	next int
	// unsure: the server's state for this connection is unknown (still in
	// MULTI, say), so it is not reused.
	unsure bool
}

func newNodeConn(addr string, conn net.Conn) *nodeConn {
	return &nodeConn{addr: addr, conn: conn, scanner: resp.NewScanner(resp.DefaultMaxBulkLen)}
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

// put keeps c for reuse, or closes it when it has unread bytes, is unsure
// or the pool is full.
func (p *nodePool) put(c *nodeConn) {
	if !c.idle() || c.unsure {
		c.close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle[c.addr]) >= MaxIdleDedicatedPerNode {
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
	c, refusal := s.dial(addr)
	if c == nil {
		s.write(resp.AppendError(s.scratch[:0], refusal))
	}
	return c
}

// dial returns a dedicated connection to addr, or nil and the error the
// client gets.
func (s *session) dial(addr string) (*nodeConn, string) {
	if addr == "" {
		return nil, errNoMasters
	}
	c, err := s.srv.pool.get(s.srv.ctx, addr)
	if err != nil {
		return nil, "ERR cannot connect to backend " + addr + ": " + oneLine(err.Error())
	}
	return c, ""
}

// roundTrip sends raw on c and reads one reply; the connection is closed if
// the server shuts down meanwhile. turn, the write's ticket in its
// master's hold (nil when it was not held), is told Sent once raw is written.
func (s *session) roundTrip(c *nodeConn, raw []byte, turn *failover.Ticket) ([]byte, error) {
	stop := context.AfterFunc(s.srv.ctx, c.close)
	defer stop()
	_, err := c.conn.Write(raw)
	sent(turn)
	if err != nil {
		return nil, err
	}
	return c.readReply()
}

// oneLine blanks line breaks so a Go error fits in a RESP error line.
func oneLine(msg string) string {
	return string(appendSanitized(nil, []byte(msg), len(msg)))
}

// refusedNotRun reports an error reply by which a server refused a command
// without running it (router.RefusalOf), so that the command can be sent
// again on a dedicated connection: ASK cannot, which a dedicated connection
// does not follow (it would take ASKING on the importing node's).
func refusedNotRun(reply []byte) bool {
	refusal := router.RefusalOf(reply)
	return refusal != router.NotRefused && refusal != router.RefusedAsk
}

// masterFor is the master a dedicated command of slot goes to: the slot's
// master, or the session's keyless master for slot -1.
func (s *session) masterFor(slot int) string {
	if slot >= 0 {
		return s.srv.dedicated.MasterOf(slot)
	}
	return s.keylessMaster()
}

// admitWrite asks the failover hold of the master at addr about a write of
// size bytes that arrived at arrived, and waits for its turn. It returns
// the ticket to tell Sent once the write is on its connection (nil when
// nothing was held), or the error the client gets when the write must not
// be sent: held past its budget, refused past the hold's byte cap, or the
// wait cut short by the client hanging up or the proxy shutting down (the
// ticket is then abandoned). With watchClient the client's socket is
// watched for a hang-up while the write waits; without, the caller does.
func (s *session) admitWrite(addr string, arrived time.Time, size int, watchClient bool) (turn *failover.Ticket, refusal string) {
	hold, ok := s.srv.dedicated.(WriteHold)
	if !ok {
		return nil, ""
	}
	if turn = hold.AdmitWrite(addr, arrived); turn == nil {
		return nil, ""
	}
	if !turn.Join(size) {
		turn.Abandon()
		return nil, errHoldFull
	}
	if watchClient {
		stop := s.watchHangup(s.hangUp)
		defer stop()
	}
	select {
	case <-turn.Done():
	case <-s.ctx.Done():
		turn.Abandon()
		return nil, errHeldNotRun
	}
	if turn.Expired() {
		return nil, errHeldNotRun
	}
	return turn, ""
}

// sent tells a released ticket, if any, that its write is on its way (or
// will not be sent): the hold releases the next one.
func sent(turn *failover.Ticket) {
	if turn != nil {
		turn.Sent()
	}
}

// afterRefusal learns from a refusal of the master at from what a resend
// needs: it tells the failover follower of a TRYAGAIN and returns the master
// of slot to resend to. The router learns the new owner from its own MOVEDs;
// until it has, the MOVED's target is used, and routed is false. A node
// still routed to that says it does not serve the slot makes the topology
// reload first (reloadedMaster).
func (s *session) afterRefusal(slot int, from string, refusal []byte) (addr string, routed bool) {
	if router.RefusalOf(refusal) == router.RefusedTryAgain {
		if f, ok := s.srv.cfg.Handovers.(tryAgainFollower); ok {
			f.Observe(from, failover.EventTryAgain)
		}
	}
	addr = s.masterFor(slot)
	if target, ok := resp.MovedTarget(refusal, from); ok && (addr == from || addr == "") {
		return target, false
	}
	if addr == from && notServing(refusal) {
		addr = s.reloadedMaster(slot)
	}
	return addr, true
}

// notServing reports a refusal saying the node does not serve the slot
// now (a master turned replica, a node whose cluster state is fail), as
// opposed to TRYAGAIN, which the master's own failover hold paces.
func notServing(reply []byte) bool {
	return unblockedByRoleChange(reply) || router.RefusalOf(reply) == router.RefusedNotServing
}

// topologyRefresher is a DedicatedBackend that reloads its topology on
// demand (*router.Router).
type topologyRefresher interface {
	Refresh(ctx context.Context)
}

// refusalRefreshWait bounds the topology reload after a refusal.
const refusalRefreshWait = time.Second

// reloadedMaster is the slot's master once the topology has been reloaded:
// a command refused by the node the proxy still routes the slot to would
// be refused there again, every resend of its few, until the routing
// caught up (a master turned replica answers CLUSTERDOWN while its cluster
// state is fail, half a second in a Redis failover under load).
func (s *session) reloadedMaster(slot int) string {
	if rf, ok := s.srv.dedicated.(topologyRefresher); ok {
		ctx, cancel := context.WithTimeout(s.srv.ctx, refusalRefreshWait)
		rf.Refresh(ctx)
		cancel()
	}
	return s.masterFor(slot)
}

// retryPacer spaces the resends of one dedicated command.
type retryPacer struct {
	resends int
	backoff router.Backoff
}

// retryPacer paces a dedicated command's resends as the backend is
// configured to pace its own.
func (s *session) retryPacer() retryPacer {
	return retryPacer{backoff: s.srv.dedicated.Backoff()}
}

// next waits before the next resend; false when every resend is spent or
// the proxy is shutting down.
func (p *retryPacer) next(ctx context.Context) bool {
	if p.resends >= maxDedicatedResends {
		return false
	}
	p.resends++
	return p.backoff.Wait(ctx)
}

// finalRefusal is what the client gets for a refusal that is not resent:
// the server's own error, except a redirect, which no client may see.
func finalRefusal(reply []byte) []byte {
	if bytes.HasPrefix(reply, []byte("-MOVED ")) || bytes.HasPrefix(reply, []byte("-ASK ")) {
		return resp.AppendError(nil, "TRYAGAIN the slot kept moving while the command was sent: it was not executed, retry")
	}
	return reply
}

// handedOver returns a channel closed when a failover of the master at addr
// next succeeds, nil when no Handovers follows failovers.
func (s *session) handedOver(addr string) <-chan struct{} {
	if s.srv.cfg.Handovers == nil {
		return nil
	}
	return s.srv.cfg.Handovers.NextHandover(addr)
}

// handoverGrace is how long a blocked command's reply is still awaited once
// its master handed its slots over: a server that unblocks its waiters
// itself (Redis answers UNBLOCKED or MOVED as its master turns replica)
// has its answer read, which tells whether the command ran.
const handoverGrace = 100 * time.Millisecond

// roundTripUntil is roundTrip that gives up handoverGrace after handed
// closes: the master handed its slots over, so a command blocked there would
// wait for nothing. handedOver reports that it closed; c must then be
// closed, not reused.
func (s *session) roundTripUntil(c *nodeConn, raw []byte, turn *failover.Ticket, handed <-chan struct{}) (reply []byte, handedOver bool, err error) {
	if handed == nil {
		reply, err = s.roundTrip(c, raw, turn)
		return reply, false, err
	}
	done := make(chan struct{})
	var over atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-handed:
			over.Store(true)
			if c.conn.SetReadDeadline(time.Now().Add(handoverGrace)) != nil {
				c.close()
			}
		case <-done:
		}
	})
	reply, err = s.roundTrip(c, raw, turn)
	close(done)
	wg.Wait()
	return reply, over.Load(), err
}
