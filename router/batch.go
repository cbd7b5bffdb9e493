package router

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"kvproxy/failover"
)

// callStatus is how a call's latest send ended.
type callStatus uint8

const (
	callPending callStatus = iota
	// callReplied: the backend's reply is in req.Reply.
	callReplied
	// callUnsent: failed before any byte was written; safe to resend.
	callUnsent
	// callLost: written, then the connection failed: it may have run.
	callLost
	// callFinal: req.Reply holds the final reply made by the router.
	callFinal
	// callHeld: not sent, waiting for its ticket (see Hold); resent once
	// released, answered once expired.
	callHeld
	// callReclaimed: taken back unsent by its node's outage; routed again,
	// it waits in that outage while it lasts.
	callReclaimed
)

// call is one Request's journey through Do: its latest status and what the
// redirect rounds taught about where to send it next.
type call struct {
	req *Request
	b   *batch
	// long is req.Long, kept for the connection's watchdog, which must not
	// read req (its caller may reuse it once it gave up).
	long bool
	// status is written by whoever completes the call and read by Do after
	// the batch's completion signal.
	status callStatus
	// failure is the reply to give if a failed send is not retried; nil
	// means "backend unavailable".
	failure []byte
	// sentTo is the node of the latest send.
	sentTo *node
	// conn is the connection the current round queues the call on; only Do
	// reads or writes it.
	conn *backendConn
	// queued is the size of the request in its connection's queue, counted
	// under the connection's lock (the request itself may be reused by
	// then, if its caller gave up).
	queued int
	// target overrides the slot table for the next send (ASK, a MOVED of a
	// keyless request); asking sends ASKING first.
	target *node
	asking bool
	// redirectedBy are the nodes whose redirects the call followed since it
	// was sent by the table; a redirect back to one of them is a bounce.
	redirectedBy []*node
	// retries counts resends against MaxRetries.
	retries int
	// ticket is the hold's ticket the call waits for, or was released by
	// (until the round that sends it); heldOn is the node it was held for.
	ticket *failover.Ticket
	heldOn *node
}

// completeLocked stores a backend reply; the reader calls it with b.mu held
// (see completeCalls). A reply discarded as it streamed in, or past the
// client's output budget, is replaced by an error: for an oversized reply its
// client reads it, past the budget the client is being disconnected anyway.
func (cl *call) completeLocked(frame []byte, f frameSpan) {
	if cl.b.abandoned {
		return
	}
	switch {
	case f.oversized:
		cl.b.r.counters.oversized.Add(1)
		cl.req.Reply = append(cl.req.Reply[:0], replyOversized...)
	case f.discarded || !cl.req.Output.take(len(frame)):
		cl.req.Reply = append(cl.req.Reply[:0], replyOutputLimit...)
	default:
		cl.req.Reply = append(cl.req.Reply[:0], frame...)
	}
	cl.status = callReplied
}

// fail records a failed send and counts the call done.
func (cl *call) fail(status callStatus, failure []byte) {
	b := cl.b
	b.mu.Lock()
	if !b.abandoned {
		cl.status, cl.failure = status, failure
	}
	b.mu.Unlock()
	// Failures are reported with a connection's lock held: a Start round
	// they complete is settled elsewhere.
	b.doneElsewhere(1)
}

// finish gives the call its final reply without sending it.
func (cl *call) finish(reply []byte) {
	cl.req.Reply = append(cl.req.Reply[:0], reply...)
	cl.status = callFinal
}

// batch is the state of one Do call. Batches are pooled; one abandoned on a
// cancelled context is left to the garbage collector, because late replies
// may still reach it.
type batch struct {
	r     *Router
	calls []call
	// active holds the indexes of the calls sent in the current round.
	active []int
	// remaining counts the calls of the round not completed yet, plus one
	// held by Do while dispatching.
	remaining atomic.Int32
	done      chan struct{}
	// onDone is set for a Start batch: the last completion of a round
	// settles it instead of waking a waiting Do. ctx is the caller's.
	onDone func()
	ctx    context.Context
	// started is when the batch arrived: every call's HoldTimeout budget
	// counts from there.
	started time.Time
	// writes defers the writes of a Start round's dispatch.
	writes *Writes

	// mu orders late replies against abandonment.
	mu        sync.Mutex
	abandoned bool

	// Per-round scratch space, reused.
	touched  []*backendConn
	admitted []admission
	// released are the tickets whose calls the round sends: each is told
	// Sent once they are queued.
	released []*failover.Ticket
	patches  []slotPatch
	// resend is settleRound's, by position in active: whether the call
	// goes again.
	resend []bool
}

// admission is what the hold said of a node in the current round: a ticket
// the round's later requests to it join, or cleared when they all go.
type admission struct {
	node    *node
	ticket  *failover.Ticket
	cleared bool
}

// slotPatch records a MOVED: slot now lives at addr, said node from.
type slotPatch struct {
	slot       int
	addr, from string
}

var batchPool = sync.Pool{New: func() any { return &batch{done: make(chan struct{}, 1)} }}

func getBatch(r *Router, reqs []*Request) *batch {
	b := batchPool.Get().(*batch)
	b.r = r
	b.started = time.Now()
	if cap(b.calls) < len(reqs) {
		b.calls = make([]call, len(reqs))
		b.active = make([]int, 0, len(reqs))
	}
	b.calls = b.calls[:len(reqs)]
	b.active = b.active[:0]
	for i, req := range reqs {
		b.calls[i] = call{req: req, b: b, long: req.Long}
		b.active = append(b.active, i)
	}
	return b
}

func putBatch(b *batch) {
	clear(b.calls)
	clear(b.touched)
	clear(b.admitted)
	clear(b.released)
	clear(b.patches)
	b.touched, b.admitted, b.released, b.patches = b.touched[:0], b.admitted[:0], b.released[:0], b.patches[:0]
	b.onDone, b.ctx, b.r = nil, nil, nil
	batchPool.Put(b)
}

// doneN counts n calls of the round complete; after the last it wakes Do,
// or settles a Start round on the calling goroutine.
func (b *batch) doneN(n int) {
	if b.remaining.Add(int32(-n)) == 0 {
		if b.onDone != nil {
			b.r.roundDoneAsync(b)
			return
		}
		b.done <- struct{}{}
	}
}

// doneElsewhere is doneN for callers holding locks: a Start round it
// completes is settled on a new goroutine.
func (b *batch) doneElsewhere(n int) {
	if b.remaining.Add(int32(-n)) == 0 {
		if b.onDone != nil {
			go b.r.roundDoneAsync(b)
			return
		}
		b.done <- struct{}{}
	}
}

// completeCalls hands replies to their calls, taking each batch's lock once
// per run of consecutive calls from the same batch, and waking each batch
// once.
func completeCalls(calls []*call, frames []frameSpan, buf []byte) {
	var cur *batch
	run := 0
	for i, cl := range calls {
		if cl == nil { // the reply to ASKING
			continue
		}
		if cl.b != cur {
			if cur != nil {
				cur.mu.Unlock()
				cur.doneN(run)
			}
			cur, run = cl.b, 0
			cur.mu.Lock()
		}
		f := frames[i]
		var frame []byte
		if !f.discarded {
			frame = buf[f.from:f.to]
		}
		cl.completeLocked(frame, f)
		run++
	}
	if cur != nil {
		cur.mu.Unlock()
		cur.doneN(run)
	}
}
