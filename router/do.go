package router

import (
	"context"
	"fmt"
	"slices"
	"time"

	"kvproxy/failover"
	"kvproxy/internal/resp"
)

// Do sends every request (pipelined, each backend connection in order) and
// returns once every request has its Reply. MOVED and ASK are followed,
// rejections that prove the command did not run are retried within bounds,
// and transport failures become RESP error replies. ctx bounds the wait.
//
// Requests are sent in rounds: all of them first, then, in index order,
// those that came back redirected or rejected, at most MaxRedirects hops and
// MaxRetries resends each; a redirect that bounces back waits for a reload,
// within HoldTimeout. When ctx ends first, the unanswered requests get
// an ERR reply and the router never touches any of them again, so the caller
// may reuse them at once. Do may be called concurrently.
func (r *Router) Do(ctx context.Context, reqs []*Request) {
	if r.closed.Load() {
		answerAll(reqs, replyShuttingDown)
		return
	}
	b := getBatch(r, reqs)
	b.ctx = ctx
	r.dispatch(ctx, b)
	r.finishRounds(ctx, b)
}

// Start is Do without the wait: it sends the first round and returns, and
// done runs once every request has its final reply. In the common case,
// where no reply needs a second round, done runs on the backend reader that
// delivered the last reply, so it must be quick and must never block; the
// rare later rounds run on a goroutine of their own. Every Raw must stay
// valid until done runs. ctx bounds the wait in the hold and the later rounds.
//
// With writes not nil, the first round's requests are queued on their
// connections but not written: writes.Flush, called once for many Start
// calls, sends each connection's share in one write.
func (r *Router) Start(ctx context.Context, reqs []*Request, done func(), writes *Writes) {
	if r.closed.Load() {
		answerAll(reqs, replyShuttingDown)
		done()
		return
	}
	b := getBatch(r, reqs)
	b.ctx, b.onDone, b.writes = ctx, done, writes
	r.dispatch(ctx, b)
	b.writes = nil
	b.doneN(1) // the hold dispatch kept on the round
}

// Writes collects the backend connections that Start calls queued requests
// on without writing them. It belongs to one goroutine.
type Writes struct {
	conns []*backendConn
	// queued counts the request bytes queued since the last Flush.
	queued int
}

// Queued is the size of the requests waiting for Flush.
func (w *Writes) Queued() int { return w.queued }

// Flush writes every collected connection once.
func (w *Writes) Flush() {
	for _, c := range w.conns {
		c.write(false)
	}
	clear(w.conns)
	w.conns = w.conns[:0]
	w.queued = 0
}

func (w *Writes) add(c *backendConn) {
	for _, known := range w.conns {
		if known == c {
			return
		}
	}
	w.conns = append(w.conns, c)
}

// finishRounds waits for the round in flight and sends further rounds until
// every call is settled, then releases b.
func (r *Router) finishRounds(ctx context.Context, b *batch) {
	backoff := r.cfg.Backoff()
	for {
		if !b.wait(ctx) {
			return // abandoned: late replies may still reach b
		}
		o := r.settleRound(b)
		if len(b.active) == 0 || !r.prepareRound(ctx, b, o, &backoff) {
			break
		}
		r.dispatch(ctx, b)
	}
	putBatch(b)
}

// roundDoneAsync runs where the last reply of a Start round arrived: it
// settles the round and either answers the caller at once or hands the
// further rounds to a goroutine.
func (r *Router) roundDoneAsync(b *batch) {
	o := r.settleRound(b)
	done := b.onDone
	if len(b.active) == 0 {
		putBatch(b)
		done()
		return
	}
	// Later rounds wait for their replies like Do does.
	b.onDone = nil
	go func() {
		ctx := b.ctx
		backoff := r.cfg.Backoff()
		if r.prepareRound(ctx, b, o, &backoff) {
			r.dispatch(ctx, b)
			r.finishRounds(ctx, b)
		} else {
			putBatch(b)
		}
		done()
	}()
}

// settleRound decides, for every call of the round just completed, whether
// it is answered or must be sent again, and applies what the replies taught
// (MOVED patches, refresh requests). b.active keeps the calls to resend.
//
// A read answered by a node after a write of its slot, earlier in the
// batch, that the node did not run (TRYAGAIN at a failover's pause, ASK,
// MOVED, held...) ran before that write, which is resent: its answer may
// lack the write the client pipelined before it, so it is resent too, after
// the write; unless a later write of its slot did run there, which the read
// would then wrongly see.
func (r *Router) settleRound(b *batch) roundOutcome {
	var o roundOutcome
	b.resend = b.resend[:0]
	unrunWrites := false
	for _, i := range b.active {
		cl := &b.calls[i]
		again := r.settle(cl, &o)
		b.resend = append(b.resend, again)
		unrunWrites = unrunWrites || again && !cl.req.ReadOnly
	}
	if unrunWrites {
		r.resendReadsAheadOfWrites(b)
	}
	next := b.active[:0]
	for k, i := range b.active {
		if b.resend[k] {
			next = append(next, i)
		}
	}
	b.active = next
	if len(b.patches) > 0 {
		r.patch(b.patches)
		clear(b.patches)
		b.patches = b.patches[:0]
	}
	if o.refresh {
		r.triggerRefresh()
	}
	return o
}

// nodeSlot is a node and a slot of it.
type nodeSlot struct {
	node *node
	slot int
}

// resendReadsAheadOfWrites marks for resending, in b.resend, the answered
// reads of the round that ran ahead of an earlier unrun write of their slot
// on the same node, with no later write of that slot run there (see
// settleRound). It runs only for rounds with unrun writes: failovers and
// migrations.
func (r *Router) resendReadsAheadOfWrites(b *batch) {
	firstUnrun := map[nodeSlot]int{}
	lastRun := map[nodeSlot]int{}
	for k, i := range b.active {
		cl := &b.calls[i]
		if cl.req.ReadOnly {
			continue
		}
		at := nodeSlot{cl.sentTo, cl.req.Slot}
		switch {
		case b.resend[k]:
			if _, seen := firstUnrun[at]; !seen {
				firstUnrun[at] = k
			}
		case cl.status == callReplied:
			lastRun[at] = k
		}
	}
	for k, i := range b.active {
		cl := &b.calls[i]
		if b.resend[k] || !cl.req.ReadOnly || cl.status != callReplied {
			continue
		}
		at := nodeSlot{cl.sentTo, cl.req.Slot}
		unrun, ok := firstUnrun[at]
		if run, ran := lastRun[at]; !ok || unrun > k || ran && run > k {
			continue
		}
		b.resend[k] = true
		r.counters.resent.Add(1)
		cl.target, cl.asking = nil, false
	}
}

// prepareRound waits what the settled round asks for before the calls in
// b.active are resent; it reports false, with every call answered, when ctx
// ends first.
func (r *Router) prepareRound(ctx context.Context, b *batch, o roundOutcome, backoff *Backoff) bool {
	if o.awaitRefresh {
		actx := ctx
		if !o.refreshBy.IsZero() {
			var cancel context.CancelFunc
			actx, cancel = context.WithDeadline(ctx, o.refreshBy)
			defer cancel()
		}
		r.awaitRefresh(actx)
	}
	waitTickets(ctx, o.tickets)
	if o.backoff {
		if !backoff.Wait(ctx) {
			b.finishActive(ctxReply(ctx))
			return false
		}
	}
	if ctx.Err() != nil {
		b.finishActive(ctxReply(ctx))
		return false
	}
	return true
}

// AdmitWrite asks the hold about a write to the master at addr that
// arrived at arrived, for the proxy's dedicated connections (transactions,
// blocking commands): nil sends it now. Otherwise it waits in the master's
// queue with the router's own held writes, within the HoldTimeout budget
// counted from arrived: the caller Joins the ticket, waits for it, and once
// it is released sends the write and then tells it Sent (or Abandons it).
func (r *Router) AdmitWrite(addr string, arrived time.Time) *failover.Ticket {
	return r.hold.Admit(addr, true, arrived.Add(r.holdBudget()))
}

// waitTickets waits until every ticket was released or expired, or ctx
// ended.
func waitTickets(ctx context.Context, tickets []*failover.Ticket) {
	for _, t := range tickets {
		select {
		case <-t.Done():
		case <-ctx.Done():
			return
		}
	}
}

func answerAll(reqs []*Request, reply []byte) {
	for _, q := range reqs {
		q.Reply = append(q.Reply[:0], reply...)
	}
}

// roundOutcome collects what a round's replies ask of the next round.
type roundOutcome struct {
	refresh, awaitRefresh, backoff bool
	// refreshBy, when not zero, bounds the wait for the reload: the first
	// end of the budget of a bouncing call.
	refreshBy time.Time
	// tickets are the hold's tickets the round's held calls wait for.
	tickets []*failover.Ticket
}

// dispatch sends the round's calls: it picks each call's node, asks the
// hold (admit), queues the calls on their connections (one lock per
// connection), tells the hold the released tickets' calls are queued, and
// then writes every touched connection.
func (r *Router) dispatch(ctx context.Context, b *batch) {
	t := r.table.Load()
	b.remaining.Store(int32(len(b.active)) + 1)
	b.startAdmissions()
	for _, i := range b.active {
		cl := &b.calls[i]
		cl.status, cl.failure = callPending, nil
		if cl.ticket != nil { // expired while the batch waited
			r.answerExpired(cl)
			b.doneN(1)
			continue
		}
		n := cl.target
		switch {
		case n != nil:
		case cl.req.Slot >= 0 && cl.req.Slot < SlotCount:
			if n = t.owner[cl.req.Slot]; n == nil {
				r.triggerRefresh()
				cl.finish(replyNotServed)
				b.doneN(1)
				continue
			}
		case cl.req.Slot == -1 && cl.req.Addr != "":
			n = r.nodeOf(cl.req.Addr)
		default:
			cl.finish(replyNoRoute)
			b.doneN(1)
			continue
		}
		cl.sentTo = n
		if r.admit(b, cl, n) {
			b.doneN(1)
		}
	}
	// Queue each connection's calls under one lock, in index order. Once
	// queued, a call's status belongs to the reader: only cl.conn, which Do
	// owns, says which calls to queue.
	for _, i := range b.active {
		cl := &b.calls[i]
		cl.conn = nil
		if cl.status == callPending {
			cl.conn = cl.sentTo.connFor(cl.req)
			b.touch(cl.conn)
		}
	}
	for _, c := range b.touched {
		size := 0
		for _, i := range b.active {
			if cl := &b.calls[i]; cl.conn == c {
				size += len(cl.req.Raw)
			}
		}
		if b.writes != nil {
			b.writes.queued += size
		}
		c.mu.Lock()
		// One allocation for a huge batch, not append's many.
		c.wbuf = slices.Grow(c.wbuf, size)
		for _, i := range b.active {
			if cl := &b.calls[i]; cl.conn == c {
				c.enqueueLocked(cl)
			}
		}
		c.mu.Unlock()
	}
	for _, t := range b.released {
		t.Sent()
	}
	for _, c := range b.touched {
		if b.writes != nil {
			b.writes.add(c)
		} else {
			c.flush()
		}
	}
	clear(b.touched)
	b.touched = b.touched[:0]
}

// startAdmissions resets the round's admissions. A node whose ticket was
// released is cleared for the whole round: its released calls, and any
// other of the round to it, go before what the hold admits behind them.
// Calls whose ticket expired keep it: dispatch answers them.
func (b *batch) startAdmissions() {
	clear(b.admitted)
	clear(b.released)
	b.admitted, b.released = b.admitted[:0], b.released[:0]
	for _, i := range b.active {
		cl := &b.calls[i]
		if cl.ticket == nil || !cl.ticket.Released() {
			continue
		}
		if !slices.Contains(b.released, cl.ticket) {
			b.released = append(b.released, cl.ticket)
			b.admitted = append(b.admitted, admission{node: cl.heldOn, cleared: true})
		}
		cl.ticket, cl.heldOn = nil, nil
	}
}

// admit asks the hold whether cl may go to n, once per round for a node
// whose write it let go, and holds cl if the hold hands out a ticket for it
// or for an earlier call of the round to n. It reports true when cl is not
// to be sent: held, or answered because the hold is full.
func (r *Router) admit(b *batch, cl *call, n *node) bool {
	k := 0
	for k < len(b.admitted) && b.admitted[k].node != n {
		k++
	}
	if k == len(b.admitted) {
		b.admitted = append(b.admitted, admission{node: n})
	}
	a := &b.admitted[k]
	if a.cleared {
		return false
	}
	if a.ticket == nil {
		write := !cl.req.ReadOnly
		if a.ticket = r.hold.Admit(n.addr, write, b.started.Add(r.holdBudget())); a.ticket == nil {
			a.cleared = write
			return false
		}
	}
	if !a.ticket.Join(len(cl.req.Raw)) {
		cl.finish(replyHoldFull)
		return true
	}
	cl.status, cl.ticket, cl.heldOn = callHeld, a.ticket, n
	return true
}

// answerExpired answers cl, whose ticket expired: it was not executed.
func (r *Router) answerExpired(cl *call) {
	if cl.ticket.Outage() {
		cl.finish(replyUnreachable(cl.heldOn))
	} else {
		cl.finish(replyHoldExpired)
	}
	cl.ticket, cl.heldOn = nil, nil
}

func (b *batch) touch(c *backendConn) {
	for _, t := range b.touched {
		if t == c {
			return
		}
	}
	b.touched = append(b.touched, c)
}

// wait blocks until the round completes; on ctx expiry it abandons the batch
// and answers every unfinished call with an error. It reports false then.
func (b *batch) wait(ctx context.Context) bool {
	if b.remaining.Add(-1) == 0 {
		return true
	}
	select {
	case <-b.done:
		return true
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.abandoned = true
	reply := ctxReply(ctx)
	for _, i := range b.active {
		cl := &b.calls[i]
		cl.abandonTicket()
		switch {
		case cl.status == callFinal, cl.status == callReplied && !resp.IsRedirect(cl.req.Reply):
		case cl.failure != nil: // failed for good: queue full, shutting down
			cl.finish(cl.failure)
		case cl.status == callLost && !cl.req.ReadOnly:
			cl.finish(replyLost)
		default:
			cl.finish(reply)
		}
	}
	return false
}

// finishActive answers every call still to be resent with reply.
func (b *batch) finishActive(reply []byte) {
	for _, i := range b.active {
		b.calls[i].abandonTicket()
		b.calls[i].finish(reply)
	}
	b.active = b.active[:0]
}

// abandonTicket tells cl's ticket, if any, that its caller gave up.
func (cl *call) abandonTicket() {
	if cl.ticket != nil {
		cl.ticket.Abandon()
		cl.ticket, cl.heldOn = nil, nil
	}
}

func ctxReply(ctx context.Context) []byte {
	if ctx.Err() == context.DeadlineExceeded {
		return []byte("-ERR proxy timed out waiting for the backend\r\n")
	}
	return replyCancelled
}

// settle decides what a completed call needs next; it reports true if the
// call must be sent again.
func (r *Router) settle(cl *call, o *roundOutcome) bool {
	switch cl.status {
	case callFinal:
		return false
	case callHeld:
		if cl.ticket.Expired() {
			r.answerExpired(cl)
			return false
		}
		if !slices.Contains(o.tickets, cl.ticket) {
			o.tickets = append(o.tickets, cl.ticket)
		}
		cl.target, cl.asking = nil, false
		return true
	case callUnsent:
		if cl.failure != nil {
			cl.finish(cl.failure)
			return false
		}
		// The node refused or lost the connection: the call waits in the
		// node's outage for it or a new master to answer, within its
		// budget.
		if !r.withinBudget(cl) {
			cl.finish(replyUnreachable(cl.sentTo))
			return false
		}
		r.startOutage(cl.sentTo, "unreachable")
		o.backoff = true
		r.counters.resent.Add(1)
		cl.target, cl.asking = nil, false
		return true
	case callReclaimed:
		// Not a failure of its own: routed again, it joins the outage that
		// took it back, or goes to the node that answers again (or to the
		// slot's new owner). Starting an outage here would restart the one
		// that just ended, for as long as reclaimed calls come back.
		if !r.withinBudget(cl) {
			cl.finish(replyUnreachable(cl.sentTo))
			return false
		}
		cl.target, cl.asking = nil, false
		return true
	case callLost:
		if cl.failure != nil {
			cl.finish(cl.failure)
			return false
		}
		if !cl.req.ReadOnly {
			r.counters.lost.Add(1)
			cl.finish(replyLost)
			return false
		}
		return r.retry(cl, replyLost)
	}
	reply := cl.req.Reply
	if len(reply) == 0 || reply[0] != '-' {
		return false
	}
	switch RefusalOf(reply) {
	case RefusedMoved, RefusedAsk:
		kind, slot, addr := resp.ParseRedirect(reply, cl.sentTo.host)
		switch kind {
		case resp.RedirectMoved:
			r.counters.moved.Add(1)
			return r.redirect(cl, kind, slot, addr, o)
		case resp.RedirectAsk:
			r.counters.ask.Add(1)
			return r.redirect(cl, kind, slot, addr, o)
		}
	case RefusedTryAgain:
		// A failover (which the hold then holds) or a slot migration's
		// write-forbidden phase, which can last seconds: resent within the
		// call's budget, not a count of retries. Past it the client gets
		// the server's TRYAGAIN.
		r.hold.Observe(cl.sentTo.addr, failover.EventTryAgain)
		if !r.withinBudget(cl) {
			return false
		}
		o.backoff = true
		r.counters.rejected.Add(1)
		r.counters.resent.Add(1)
		cl.target, cl.asking = nil, false
		return true
	case RefusedNotServing:
		// The node serves the slot no more (a role swap) or cannot yet (a
		// resync, a restarted Redis rejoining its cluster for seconds): the
		// topology may say who does. Resent within the call's budget; past
		// it the client gets the server's error.
		if !r.withinBudget(cl) {
			return false
		}
		o.backoff, o.refresh = true, true
		r.counters.rejected.Add(1)
		r.counters.resent.Add(1)
		cl.target, cl.asking = nil, false
		return true
	}
	return false
}

// replyUnreachable answers a request that waited its whole budget for n.
func replyUnreachable(n *node) []byte {
	return fmt.Appendf(nil, "-TRYAGAIN backend %s is unreachable: the command was not executed, retry\r\n", n.addr)
}

// withinBudget reports whether some of cl's HoldTimeout budget, which counts
// from its batch's arrival, is left.
func (r *Router) withinBudget(cl *call) bool {
	return time.Since(cl.b.started) < r.holdBudget()
}

// retry counts a resend; once MaxRetries is spent the call keeps its reply,
// or gets final if not nil.
func (r *Router) retry(cl *call, final []byte) bool {
	cl.retries++
	if cl.retries > r.cfg.MaxRetries {
		if final != nil {
			cl.finish(final)
		}
		return false
	}
	r.counters.resent.Add(1)
	cl.target, cl.asking = nil, false
	return true
}

// redirect follows MOVED (patching the table for keyed requests) or ASK,
// unless it bounces.
func (r *Router) redirect(cl *call, kind resp.RedirectKind, slot int, addr string, o *roundOutcome) bool {
	if addr == cl.sentTo.addr {
		// A node redirecting to itself serves the slot no more and knows no
		// better owner (Kvrocks does this for slots dropped from its
		// topology): only a reload can help.
		o.awaitRefresh, o.backoff = true, true
		cl.target, cl.asking = nil, false
		return r.retry(cl, fmt.Appendf(nil, "-CLUSTERDOWN slot %d is not served: %s redirects it to itself\r\n", slot, addr))
	}
	if cycle, handedOver := cl.redirectedBefore(addr), r.table.Load().handedOver(addr); cycle || handedOver {
		// The nodes disagree on the slot's owner while they apply a new
		// topology one by one (the old master already redirects to the new
		// one, which still redirects back), or the redirect leads back to a
		// node that handed the slot over, which only a newer topology may
		// undo. Following it would go round in circles until the hop count
		// ran out: the request waits for a reload instead and is sent again
		// by the table, within its hold budget. A cycle also backs off: the
		// reload may not have anything new yet. A node that handed over
		// and was failed back to is confirmed by the reload itself, after
		// which the request goes at once (reloads are at most one per
		// RefreshCooldown).
		r.counters.bounces.Add(1)
		cl.target, cl.asking, cl.redirectedBy = nil, false, cl.redirectedBy[:0]
		deadline := cl.b.started.Add(r.holdBudget())
		if !time.Now().Before(deadline) {
			cl.finish(fmt.Appendf(nil, "-TRYAGAIN slot %d bounces between %s and %s while the cluster's nodes disagree on its owner: the command was not executed, retry\r\n",
				slot, cl.sentTo.addr, addr))
			return false
		}
		o.awaitRefresh = true
		o.backoff = o.backoff || cycle
		if o.refreshBy.IsZero() || deadline.Before(o.refreshBy) {
			o.refreshBy = deadline
		}
		return true
	}
	// Bounces aside, a chain of redirects visits a new node at each hop,
	// and the router dials every node it learns of: the hop count bounds
	// what a misconfigured cluster (an announced address that is not the
	// node's, a node that redirects to ever new ones) can make it dial.
	if len(cl.redirectedBy) >= r.cfg.MaxRedirects {
		o.refresh = true
		cl.finish(fmt.Appendf(nil, "-CLUSTERDOWN slot %d: more than %d redirects, last to %s\r\n", slot, r.cfg.MaxRedirects, addr))
		return false
	}
	cl.redirectedBy = append(cl.redirectedBy, cl.sentTo)
	cl.asking = kind == resp.RedirectAsk
	if kind == resp.RedirectMoved && cl.req.Slot == slot {
		cl.target = nil
		o.refresh = true
		cl.b.patches = append(cl.b.patches, slotPatch{slot, addr, cl.sentTo.addr})
		return true
	}
	cl.target = r.nodeOf(addr)
	return true
}

// redirectedBefore reports whether the node at addr redirected cl since
// the table last sent it.
func (cl *call) redirectedBefore(addr string) bool {
	for _, n := range cl.redirectedBy {
		if n.addr == addr {
			return true
		}
	}
	return false
}
