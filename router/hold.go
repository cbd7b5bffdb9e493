package router

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"kvproxy/internal/resp"
)

// holdOutcome is how a held call leaves its hold.
type holdOutcome uint8

const (
	holdReleased  holdOutcome = iota // sent once the hold ended
	holdExpired                      // answered TRYAGAIN past HoldTimeout
	holdAbandoned                    // its caller gave up
)

// nodeHolds counts the holds of one node, for NodeHolds.
type nodeHolds struct {
	held, released, expired, abandoned atomic.Uint64
	// longest is the longest time, in nanoseconds, a call waited in holds
	// before it left them.
	longest atomic.Int64
	// outages counts the outages of the node.
	outages atomic.Uint64
}

// NodeHolds is what the router held for one node (see Stats for the meaning
// of the counters).
type NodeHolds struct {
	Addr                               string
	Held, Released, Expired, Abandoned uint64
	// HeldNow is the number of requests waiting in the node's hold now.
	HeldNow uint64
	// Longest is the longest wait of a request that left the node's hold.
	Longest time.Duration
	// Outages counts the times the node's connections were lost or refused
	// and its requests held until it or a new master answered.
	Outages uint64
	// InOutage reports an outage now.
	InOutage bool
}

// HoldStats lists, by address, every node that held requests or had an
// outage.
func (r *Router) HoldStats() []NodeHolds {
	r.mu.Lock()
	nodes := make([]*node, 0, len(r.nodes))
	for _, n := range r.nodes {
		nodes = append(nodes, n)
	}
	r.mu.Unlock()
	var out []NodeHolds
	for _, n := range nodes {
		if s := n.holdStats(); s.Held > 0 || s.Outages > 0 {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b NodeHolds) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// HoldsOf is what the router held for the node at addr.
func (r *Router) HoldsOf(addr string) NodeHolds {
	r.mu.Lock()
	n := r.nodes[addr]
	r.mu.Unlock()
	if n == nil {
		return NodeHolds{Addr: addr}
	}
	return n.holdStats()
}

func (n *node) holdStats() NodeHolds {
	h := &n.holds
	s := NodeHolds{Addr: n.addr, Held: h.held.Load(), Released: h.released.Load(), Expired: h.expired.Load(),
		Abandoned: h.abandoned.Load(), Longest: time.Duration(h.longest.Load()), Outages: h.outages.Load(),
		InOutage: n.inOutage.Load()}
	// The counters are read one by one: clamp a snapshot taken while a call
	// moved between them.
	if left := s.Released + s.Expired + s.Abandoned; left < s.Held {
		s.HeldNow = s.Held - left
	}
	return s
}

// holdOf returns what a request to n must wait for now: the end of n's
// outage (every request waits), the gate's hold on n (writes wait), or nil.
func (r *Router) holdOf(n *node) (hold <-chan struct{}, outage bool) {
	if n.inOutage.Load() {
		n.outageMu.Lock()
		hold = n.outage
		n.outageMu.Unlock()
		if hold != nil {
			return hold, true
		}
	}
	if r.cfg.Gate != nil {
		return r.cfg.Gate.Hold(n.addr), false
	}
	return nil, false
}

// beginHold puts cl in hold on n, or answers it when the held requests'
// bytes would pass HoldMaxBytes.
func (r *Router) beginHold(cl *call, n *node, hold <-chan struct{}, outage bool) {
	if cl.holdEnds == nil {
		size := int64(len(cl.req.Raw))
		if r.heldBytes.Add(size) > r.cfg.HoldMaxBytes {
			r.heldBytes.Add(-size)
			r.counters.holdFull.Add(1)
			cl.finish(replyHoldFull)
			return
		}
		r.counters.held.Add(1)
		n.holds.held.Add(1)
		cl.heldOn = n
	}
	if cl.waitingSince.IsZero() {
		cl.waitingSince = time.Now()
	}
	cl.status, cl.holdEnds, cl.inOutage = callHeld, hold, outage
}

// endHold takes cl out of its hold, if it is in one, and counts how.
func (r *Router) endHold(cl *call, how holdOutcome) {
	if cl.holdEnds == nil {
		return
	}
	n := cl.heldOn
	cl.holdEnds, cl.heldOn = nil, nil
	r.heldBytes.Add(-int64(len(cl.req.Raw)))
	switch how {
	case holdReleased:
		r.counters.released.Add(1)
		n.holds.released.Add(1)
	case holdExpired:
		r.counters.expired.Add(1)
		n.holds.expired.Add(1)
	case holdAbandoned:
		r.counters.abandoned.Add(1)
		n.holds.abandoned.Add(1)
	}
	waited := int64(time.Since(cl.waitingSince))
	for {
		longest := n.holds.longest.Load()
		if waited <= longest || n.holds.longest.CompareAndSwap(longest, waited) {
			break
		}
	}
}

// startOutage holds every request to n until n answers a probe again or
// the topology gives n's slots to another node; each held request waits at
// most its HoldTimeout. It returns at once; an outage under way goes on.
// Before New installed the first slot table (its dials may fail while it
// loads, EMFILE included) there is nothing to hold and no slot to watch:
// no outage starts, and the failed connections redial when used.
func (r *Router) startOutage(n *node, cause string) {
	n.outageMu.Lock()
	defer n.outageMu.Unlock()
	if n.outage != nil || r.closed.Load() || r.table.Load() == nil {
		return
	}
	ends := make(chan struct{})
	n.outage = ends
	n.inOutage.Store(true)
	n.holds.outages.Add(1)
	r.wg.Add(1)
	go r.followOutage(n, ends, cause)
}

// followOutage probes n and refreshes the topology every ProbeInterval
// until the outage can end. Requests not handed to n's sockets yet join the
// held ones; those sent wait for n, until it stayed unresponsive for
// DeadTimeout: then its connections are closed and they are answered.
func (r *Router) followOutage(n *node, ends chan struct{}, cause string) {
	defer r.wg.Done()
	start := time.Now()
	r.log.Warn("backend unreachable: holding its requests", "addr", n.addr, "cause", cause)
	n.reclaimUnsent()
	ticker := time.NewTicker(r.cfg.ProbeInterval)
	defer ticker.Stop()
	declaredDead := false
	replies := n.replies()
	var reason string
	for {
		if !r.ownsSlots(n) {
			reason = "no longer serves slots"
			break
		}
		if r.probe(n) {
			reason = "answers again"
			n.redialNow()
			break
		}
		if n.replies() != replies {
			// Its probe waits behind a busy event loop, or a starved
			// proxy; the replies to what was sent before show it runs.
			reason = "replies again"
			n.redialNow()
			break
		}
		if !declaredDead && time.Since(start) >= r.cfg.DeadTimeout {
			declaredDead = true
			r.counters.dead.Add(1)
			r.log.Warn("backend declared dead: closing its connections, answering what was sent on them",
				"addr", n.addr, "unresponsive_for", time.Since(start))
			n.breakConns(errDeclaredDead)
		}
		r.triggerRefresh()
		select {
		case <-ticker.C:
		case <-r.ctx.Done():
		}
		if r.ctx.Err() != nil {
			reason = "router closed"
			break
		}
	}
	n.outageMu.Lock()
	n.outage = nil
	n.inOutage.Store(false)
	n.outageMu.Unlock()
	close(ends)
	r.log.Info("backend outage ended: held requests released", "addr", n.addr, "reason", reason,
		"duration", time.Since(start))
}

// errDeclaredDead closes the connections of a node unresponsive for
// DeadTimeout.
var errDeclaredDead = errors.New("the node did not answer its probes for DeadTimeout")

// ownsSlots reports whether the slot table routes any slot to n.
func (r *Router) ownsSlots(n *node) bool {
	return slices.Contains(r.table.Load().owner[:], n)
}

// reclaimUnsent takes back every request of n not handed to a socket yet.
func (n *node) reclaimUnsent() {
	for _, c := range n.conns {
		c.mu.Lock()
		c.reclaimUnsentLocked()
		c.mu.Unlock()
	}
}

// breakConns closes every connection of n (see breakLocked).
func (n *node) breakConns(cause error) {
	for _, c := range n.conns {
		c.mu.Lock()
		if c.nc != nil {
			c.breakLocked(c.nc, cause)
		}
		c.mu.Unlock()
	}
}

// watch probes, every ProbeInterval, each node that has had a request
// waiting ProbeInterval for its reply and no outage under way. A node that
// stopped answering (a stopped process, a network black hole) is found in
// about ProbeInterval + ProbeTimeout and its requests held, while a slow
// command on a live node only delays the requests behind it, as it would on
// the node itself: liveness is the probe's answer, on a connection of its
// own, or replies read while it waited; never a busy data connection's
// silence alone.
func (r *Router) watch() {
	defer r.wg.Done()
	ticker := time.NewTicker(r.cfg.ProbeInterval)
	defer ticker.Stop()
	var nodes []*node
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-ticker.C:
		}
		r.mu.Lock()
		nodes = nodes[:0]
		for _, n := range r.nodes {
			nodes = append(nodes, n)
		}
		r.mu.Unlock()
		now := time.Now()
		for _, n := range nodes {
			if n.inOutage.Load() || n.probing.Load() || !n.waited(now, r.cfg.ProbeInterval) {
				continue
			}
			n.probing.Store(true)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer n.probing.Store(false)
				replies := n.replies()
				if !r.probe(n) && r.ctx.Err() == nil && n.replies() == replies {
					r.counters.unresponsive.Add(1)
					r.startOutage(n, "does not answer its probe")
				}
			}()
		}
		clear(nodes)
	}
}

// waited reports whether a request to n has waited at least d for a reply.
func (n *node) waited(now time.Time, d time.Duration) bool {
	for _, c := range n.conns {
		if since, waiting := c.waitingSince(); waiting && now.Sub(since) >= d {
			return true
		}
	}
	return false
}

// replies counts the replies n's connections have read so far.
func (n *node) replies() uint64 {
	var sum uint64
	for _, c := range n.conns {
		c.mu.Lock()
		sum += c.replies
		c.mu.Unlock()
	}
	return sum
}

// pingCmd is the probe.
var pingCmd = []byte("*1\r\n$4\r\nPING\r\n")

// probe reports whether n answers a PING within ProbeTimeout, on the
// probes' own connection (dialled, and authenticated, when there is none).
// Any reply counts, an error too (LOADING, BUSY): the node runs.
func (r *Router) probe(n *node) bool {
	n.probeMu.Lock()
	defer n.probeMu.Unlock()
	if r.ctx.Err() != nil {
		return false
	}
	r.counters.probes.Add(1)
	deadline := time.Now().Add(r.cfg.ProbeTimeout)
	if n.probeConn == nil {
		ctx, cancel := context.WithDeadline(r.ctx, deadline)
		nc, err := r.dial(ctx, n.addr)
		cancel()
		if err != nil {
			return false
		}
		n.probeConn = nc
	}
	nc := n.probeConn
	err := nc.SetDeadline(deadline)
	if err == nil {
		_, err = nc.Write(pingCmd)
	}
	if err == nil {
		_, err = resp.ReadReply(nc, maxProbeReply)
	}
	if err != nil {
		_ = nc.Close()
		n.probeConn = nil
		return false
	}
	return true
}

// closeProbe closes n's probe connection; the router is closing.
func (n *node) closeProbe() {
	n.probeMu.Lock()
	defer n.probeMu.Unlock()
	if n.probeConn != nil {
		_ = n.probeConn.Close()
		n.probeConn = nil
	}
}

// maxProbeReply bounds the reply a probe reads (PONG, or an error line).
const maxProbeReply = 4096

// redialNow lets the next request to n dial at once, whatever backoff its
// connections' failures earned: n just answered a probe.
func (n *node) redialNow() {
	for _, c := range n.conns {
		c.mu.Lock()
		if c.state == stateDown {
			c.retryAt, c.backoff = time.Time{}, 0
		}
		c.mu.Unlock()
	}
}

// Warm opens the connections to addr ahead of use, e.g. to the replica a
// failover is about to promote.
func (r *Router) Warm(addr string) {
	r.nodeOf(addr)
}

// HandOver routes every slot of master to replica at once: a failover of
// master has just succeeded. No topology at the current epoch or an older
// one, and no MOVED, routes them back to master: only a topology that makes
// master a master again at a higher config epoch does (see handover). A
// handover recorded for replica ends: it took over. With replica "",
// master's only replica in the topology is taken; with none or several,
// nothing changes (MOVED will tell).
func (r *Router) HandOver(master, replica string) {
	r.tableMu.Lock()
	defer r.tableMu.Unlock()
	cur := r.table.Load()
	if replica == "" {
		if replica = cur.onlyReplicaOf(master); replica == "" {
			return
		}
	}
	base := *cur
	base.handovers = withHandover(withoutHandover(cur.handovers, replica), master, cur.epoch)
	var patches []slotPatch
	for s, n := range cur.owner {
		if n != nil && n.addr == master {
			patches = append(patches, slotPatch{s, replica, master})
		}
	}
	nt := &base
	if len(patches) > 0 {
		nt = base.withPatches(patches, r.nodeOf)
	}
	if nt.sameAs(cur) {
		return
	}
	r.storeTableLocked(nt)
	r.log.Info("failover succeeded: slots routed to the new master", "from", master, "to", replica, "slots", len(patches),
		"epoch", cur.epoch)
}
