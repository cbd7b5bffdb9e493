package router

import (
	"context"
	"errors"
	"slices"
	"time"

	"kvproxy/failover"
	"kvproxy/internal/resp"
)

// startOutage holds every request to n until n answers a probe again or
// the topology gives n's slots to another node; each held request waits at
// most its HoldTimeout. It returns at once; an outage under way goes on.
// Before New installed the first slot table (its dials may fail while it
// loads, EMFILE included) there is nothing to hold and no slot to watch:
// no outage starts, and the failed connections redial when used.
func (r *Router) startOutage(n *node, cause string) {
	n.outageMu.Lock()
	defer n.outageMu.Unlock()
	if n.inOutage.Load() || r.closed.Load() || r.table.Load() == nil {
		return
	}
	n.inOutage.Store(true)
	r.hold.Observe(n.addr, failover.EventOutageBegan)
	r.wg.Add(1)
	go r.followOutage(n, cause)
}

// followOutage probes n and refreshes the topology every ProbeInterval
// until the outage can end. Requests not handed to n's sockets yet join the
// held ones; those sent wait for n, until it stayed unresponsive for
// DeadTimeout: then its connections are closed and they are answered.
func (r *Router) followOutage(n *node, cause string) {
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
	n.inOutage.Store(false)
	r.hold.Observe(n.addr, failover.EventOutageEnded)
	n.outageMu.Unlock()
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
				if r.probe(n) || r.ctx.Err() != nil || n.replies() != replies {
					return
				}
				if since, ok := n.occupiedSince(); ok && time.Since(since) < r.cfg.DeadTimeout {
					r.counters.busy.Add(1)
					return
				}
				r.counters.unresponsive.Add(1)
				r.startOutage(n, "does not answer its probe")
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

// occupiedSince reports whether a Long request (a script) was sent to n and
// not answered yet, and since when its connection has read no reply. Such
// a node is busy running it: a single-threaded Redis, before its
// busy-reply-threshold, and Kvrocks, which runs scripts exclusively, do not
// answer a PING meanwhile. Holding its requests as an outage would fail
// them (TRYAGAIN at the hold budget) although the node is alive and would
// answer them once the script ends; they wait for it instead, as on the
// node itself, for up to DeadTimeout.
func (n *node) occupiedSince() (time.Time, bool) {
	var since time.Time
	occupied := false
	for _, c := range n.conns {
		c.mu.Lock()
		for i := range c.sent {
			if cl := c.fifo.at(i); cl != nil && cl.long {
				if !occupied || c.progress.Before(since) {
					since = c.progress
				}
				occupied = true
				break
			}
		}
		c.mu.Unlock()
	}
	return since, occupied
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
