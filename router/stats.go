package router

import (
	"slices"
	"strings"
	"sync/atomic"
)

// Stats counts what the router did since New. Every field only grows.
type Stats struct {
	// Moved and Ask count redirect replies.
	Moved, Ask uint64
	// Bounces counts redirects not followed because they sent a request
	// back to a node that had redirected it, or that handed its slots over;
	// the request was sent again after a reload (and a backoff for the
	// former), within its HoldTimeout.
	Bounces uint64
	// Rejected counts replies proving a command did not run (TRYAGAIN,
	// CLUSTERDOWN, LOADING, MASTERDOWN, READONLY), each resent or returned.
	Rejected uint64
	// Resent counts requests sent again after a rejection or a failed send.
	Resent uint64
	// Lost counts writes answered with "the command may have run" because
	// their connection died after they were sent.
	Lost uint64
	// ConnsLost counts backend connections that failed after connecting;
	// DialFailures counts failed dials (including AUTH).
	ConnsLost, DialFailures uint64
	// Reloads and ReloadFailures count topology reloads.
	Reloads, ReloadFailures uint64
	// Parked counts requests that waited in the proxy for room on their
	// backend connection (MaxPending, MaxPendingBytes).
	Parked uint64
	// Oversized counts replies discarded for a bulk longer than MaxBulkLen.
	Oversized uint64
	// Probes counts liveness probes sent; Unresponsive the probes a node
	// did not answer in time; Dead the times a node stayed unresponsive for
	// DeadTimeout and its connections were closed; Busy the probes a node
	// did not answer while a script the router sent it ran (not counted in
	// Unresponsive: the node is occupied, its requests wait for it).
	Probes, Unresponsive, Dead, Busy uint64
}

// counters are the live values behind Stats; none is touched on the path of
// a request that succeeds at once.
type counters struct {
	moved, ask, bounces, rejected, lost atomic.Uint64
	resent                              atomic.Uint64
	connsLost, dialFailures             atomic.Uint64
	reloads, reloadFailures             atomic.Uint64
	parked, oversized                   atomic.Uint64
	probes, unresponsive, dead, busy    atomic.Uint64
}

// Stats returns a snapshot of the router's counters.
func (r *Router) Stats() Stats {
	c := &r.counters
	return Stats{
		Moved: c.moved.Load(), Ask: c.ask.Load(), Bounces: c.bounces.Load(), Rejected: c.rejected.Load(),
		Resent: c.resent.Load(), Lost: c.lost.Load(),
		ConnsLost: c.connsLost.Load(), DialFailures: c.dialFailures.Load(),
		Reloads: c.reloads.Load(), ReloadFailures: c.reloadFailures.Load(),
		Parked: c.parked.Load(), Oversized: c.oversized.Load(),
		Probes: c.probes.Load(), Unresponsive: c.unresponsive.Load(), Dead: c.dead.Load(),
		Busy: c.busy.Load(),
	}
}

// NodeStats is one backend node's connections as the router sees them now.
type NodeStats struct {
	Addr string
	// Master: the node serves slots in the routing table.
	Master bool
	// Up, Connecting and Down count its connections by state.
	Up, Connecting, Down int
	// InFlight counts requests written or queued to be written and not yet
	// answered; Parked those waiting for room (MaxPending,
	// MaxPendingBytes); QueuedBytes the bytes of the former.
	InFlight, Parked, QueuedBytes int
	// InOutage: the router follows the node's outage (holding its requests).
	InOutage bool
}

// NodeStats returns every node's connection state, by address. It takes
// each connection's lock briefly: for scrapes and admin commands, not for
// the request path.
func (r *Router) NodeStats() []NodeStats {
	t := r.table.Load()
	masters := make(map[*node]bool, len(t.masters))
	for _, n := range t.owner {
		if n != nil {
			masters[n] = true
		}
	}
	r.mu.Lock()
	nodes := make([]*node, 0, len(r.nodes))
	for _, n := range r.nodes {
		nodes = append(nodes, n)
	}
	r.mu.Unlock()
	out := make([]NodeStats, 0, len(nodes))
	for _, n := range nodes {
		ns := NodeStats{Addr: n.addr, Master: masters[n], InOutage: n.inOutage.Load()}
		for _, c := range n.conns {
			c.mu.Lock()
			switch c.state {
			case stateUp:
				ns.Up++
			case stateConnecting:
				ns.Connecting++
			default:
				ns.Down++
			}
			ns.InFlight += c.fifo.n
			ns.Parked += c.parked.n
			ns.QueuedBytes += c.queuedBytes
			c.mu.Unlock()
		}
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b NodeStats) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}
