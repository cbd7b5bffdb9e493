package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"kvproxy/failover"
)

// Request is one client command on its way to a backend. The proxy fills the
// command fields; the router fills Reply. A Request is reused by its session
// from batch to batch, so Reply's capacity is kept.
type Request struct {
	// Raw is the command, RESP-encoded; it is sent verbatim.
	Raw []byte
	// Slot is the hash slot of the command's keys, or -1 for a command aimed
	// at one node (Addr).
	Slot int
	// Addr names the backend for a Slot -1 request (a fan-out to one master).
	Addr string
	// ReadOnly marks commands that are safe to resend after a connection was
	// lost with the request already sent.
	ReadOnly bool
	// Affinity, when not zero, picks the connection to the node: requests
	// with the same affinity share one. A client's pipeline then travels in
	// one write and comes back in one read, while different clients spread
	// over the node's connections. Zero spreads requests by slot.
	Affinity uint32
	// Output, when not nil, bounds the reply bytes kept for the request's
	// client (see OutputBudget).
	Output *OutputBudget
	// Long marks a request that may keep the node busy for long, as a
	// script does (EVAL, FCALL): while one is sent and unanswered, a node
	// that does not answer its probe is occupied by it, not unresponsive
	// (see Config.DeadTimeout).
	Long bool
	// Reply is the raw RESP reply once Do returns: the backend's own bytes, or
	// a RESP error made by the router (never a redirect, never a Go error).
	Reply []byte
}

// ErrClosed is returned by calls on a Router after Close.
var ErrClosed = errors.New("router: closed")

// Hold is the seam through which the failover hold (failover.Buffer) holds
// a master's requests while it cannot take them: its writes while it fails
// over, all of them while it is unreachable.
//
// Admit is asked before a request is sent to master, with the end of its
// HoldTimeout budget; nil sends it now. Otherwise the request, and every
// later request of the round to master (so a caller's requests to a node
// stay in order; reads before it are sent), joins the ticket, and waits
// until the ticket is released (then sent, and the ticket told Sent) or
// expired (then answered with a TRYAGAIN error saying it was not executed).
// Observe tells the hold what the router saw of master: a TRYAGAIN, an
// outage's start or end. Notices tells the router the replicas to dial
// ahead and the masters that handed their slots over.
type Hold interface {
	Admit(master string, write bool, deadline time.Time) *failover.Ticket
	Observe(master string, ev failover.Event)
	Notices() <-chan failover.Notice
}

// HeldNotRunError is the error (without its '-') of a write held past its
// budget while its shard's master failed over; the proxy's dedicated
// connections answer it too.
const HeldNotRunError = "TRYAGAIN the shard's master is failing over: the command was held and not executed, retry"

// HoldFullError is the error (without its '-') of a write refused, not
// held, because the hold holds as many bytes as it may; the proxy's
// dedicated connections answer it too.
const HoldFullError = "TRYAGAIN the shard's master is failing over and the proxy holds as much as it may: the command was not executed, retry"

// Replies the router makes itself.
var (
	replyShuttingDown = []byte("-ERR proxy is shutting down\r\n")
	replyLost         = []byte("-ERR backend connection lost after the command was sent: the command may have run\r\n")
	replyNotServed    = []byte("-CLUSTERDOWN Hash slot not served\r\n")
	replyNoRoute      = []byte("-ERR request has neither a valid slot nor a backend address\r\n")
	replyHoldExpired  = []byte("-" + HeldNotRunError + "\r\n")
	replyOversized    = []byte("-ERR reply too large: it holds a bulk string longer than the proxy's max-bulk-len, so it was discarded\r\n")
	replyOutputLimit  = []byte("-ERR the client's replies passed its output limit: discarded\r\n")
	replyCancelled    = []byte("-ERR request cancelled\r\n")
	replyHoldFull     = []byte("-" + HoldFullError + "\r\n")
)

// Router routes requests by slot to the shard masters of a Kvrocks cluster
// or a Redis Cluster.
type Router struct {
	cfg Config
	// holdTimeout is cfg.HoldTimeout, which SetHoldTimeout changes while
	// serving (read once per batch round, an atomic load).
	holdTimeout atomic.Int64
	log         *slog.Logger

	// ctx is cancelled by Close; it stops the refresh loop and dials.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	table atomic.Pointer[slotTable]
	// tableMu serialises table writers (reloads and MOVED patches); it
	// guards changed, closed and replaced each time the table is, and
	// keptAtEpoch, the epoch of the last view logged for giving slots back
	// to nodes that handed over.
	tableMu     sync.Mutex
	changed     chan struct{}
	keptAtEpoch int64

	mu    sync.Mutex
	nodes map[string]*node
	// refreshed is closed and replaced after every reload; reloading is
	// true while one runs.
	refreshed chan struct{}
	reloading bool

	refreshTrigger chan struct{}

	counters counters
	// hold is cfg.Hold, or ownHold, made by New when cfg.Hold is nil and
	// closed by Close.
	hold    Hold
	ownHold *failover.Buffer
}

// New loads the topology from the first seed that answers, connects to every
// master and starts the periodic refresh. It fails if no seed answers.
func New(ctx context.Context, cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := newRouter(cfg)
	var errs []error
	for _, seed := range cfg.Seeds {
		view, err := r.fetchView(ctx, seed)
		if err == nil {
			r.applyView(view)
			r.counters.reloads.Add(1)
			break
		}
		errs = append(errs, err)
	}
	if r.table.Load() == nil {
		r.cancel()
		if r.ownHold != nil {
			r.ownHold.Close()
		}
		return nil, fmt.Errorf("router: no seed returned the cluster topology: %w", joinOneLine(errs))
	}
	r.wg.Add(3)
	go r.refreshLoop()
	go r.watch()
	go r.actOnNotices()
	return r, nil
}

// newRouter is a Router with no slot table yet: New loads it.
func newRouter(cfg Config) *Router {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		cfg:            cfg,
		log:            cfg.Logger.With("component", "router"),
		ctx:            ctx,
		cancel:         cancel,
		nodes:          make(map[string]*node),
		refreshed:      make(chan struct{}),
		refreshTrigger: make(chan struct{}, 1),
		hold:           cfg.Hold,
	}
	if r.hold == nil {
		hcfg := failover.DefaultConfig()
		hcfg.Logger = r.log
		own, err := failover.New(hcfg)
		if err != nil {
			panic("router: failover.DefaultConfig is refused: " + err.Error())
		}
		r.hold, r.ownHold = own, own
	}
	r.holdTimeout.Store(int64(cfg.HoldTimeout))
	return r
}

// holdBudget is how long one request may wait in all (Config.HoldTimeout).
func (r *Router) holdBudget() time.Duration { return time.Duration(r.holdTimeout.Load()) }

// SetHoldTimeout changes Config.HoldTimeout while serving: a request
// already waiting is judged by the new budget, counted from its arrival, at
// its next round.
func (r *Router) SetHoldTimeout(d time.Duration) error {
	if d <= 0 || d > MaxHoldTimeout {
		return fmt.Errorf("router: HoldTimeout must be positive and at most %v", MaxHoldTimeout)
	}
	r.holdTimeout.Store(int64(d))
	return nil
}

// Close stops the refresh, fails every queued request and closes every
// backend connection. Do calls after Close answer with an ERR reply.
func (r *Router) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.cancel()
	r.mu.Lock()
	nodes := make([]*node, 0, len(r.nodes))
	for _, n := range r.nodes {
		nodes = append(nodes, n)
	}
	r.mu.Unlock()
	for _, n := range nodes {
		for _, c := range n.conns {
			c.close()
		}
	}
	r.wg.Wait()
	for _, n := range nodes {
		n.closeProbe()
	}
	if r.ownHold != nil {
		r.ownHold.Close()
	}
	return nil
}

// nodeOf returns the node for addr, creating it (and starting to dial its
// connections) on first use, so a node learnt from MOVED is dialled before
// the redirected requests reach it.
func (r *Router) nodeOf(addr string) *node {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.nodes[addr]; n != nil {
		return n
	}
	host, _, _ := net.SplitHostPort(addr)
	n := &node{addr: addr, host: host, conns: make([]*backendConn, r.cfg.ConnsPerNode)}
	for i := range n.conns {
		n.conns[i] = newBackendConn(r, n)
	}
	r.nodes[addr] = n
	if !r.closed.Load() {
		for _, c := range n.conns {
			c.preconnect()
		}
	}
	return n
}

// MasterOf returns the address of the master serving slot, or "" if none
// does or slot is out of range.
func (r *Router) MasterOf(slot int) string {
	if slot < 0 || slot >= SlotCount {
		return ""
	}
	if n := r.table.Load().owner[slot]; n != nil {
		return n.addr
	}
	return ""
}

// Masters returns the address of every node serving slots, in the order of
// their first slot (stable between topology changes). The slice is shared:
// do not modify it.
func (r *Router) Masters() []string {
	return r.table.Load().masters
}

// Topology returns a snapshot of the router's view of the cluster.
func (r *Router) Topology() Topology {
	t := r.table.Load()
	topo := Topology{Epoch: t.epoch}
	for _, addr := range t.masters {
		info := NodeInfo{Addr: addr, Role: "master", Slots: t.rangesOf(addr)}
		for _, n := range t.nodes {
			if n.addr == addr {
				info.ID, info.MasterID = n.id, n.masterID
				if !n.master {
					info.Role = "replica"
				}
				break
			}
		}
		topo.Nodes = append(topo.Nodes, info)
	}
	for _, n := range t.nodes {
		if slices.Contains(t.masters, n.addr) {
			continue
		}
		info := NodeInfo{ID: n.id, Addr: n.addr, Role: "master", MasterID: n.masterID}
		if !n.master {
			info.Role = "replica"
		}
		topo.Nodes = append(topo.Nodes, info)
	}
	return topo
}

// DialNode opens a dedicated connection to addr, authenticated when the
// Config has a password, for the proxy's transactions, blocking commands and
// Pub/Sub. The caller owns and closes it.
func (r *Router) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	return r.dial(ctx, addr)
}
