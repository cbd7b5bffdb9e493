package proxy

import (
	"bytes"
	"context"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/failover"
	"kvproxy/internal/resp"
)

// txState is a client's transaction. MULTI is answered by the proxy; each
// command is checked as Redis checks it and queued here. Once the slot is
// known (the first keyed command, or the WATCHed keys' master) the queue is
// also sent, behind MULTI, on the transaction's dedicated connection when
// the client waits for a reply, so the server's queue-time replies (BUSY,
// OOM, its EXECABORT) reach the client as Redis gives them. The copy kept
// here lets EXEC send MULTI, the queue and EXEC again to the slot's master
// of the moment when that connection was refused (MOVED, TRYAGAIN) or lost,
// as a pipeline ending in EXEC is always sent. WATCH pins that connection
// (to the watched keys' master) as soon as it is sent, so the watch starts
// when Redis would start it.
type txState struct {
	inMulti bool
	// dirty: a command was refused while queued; EXEC answers EXECABORT.
	dirty bool
	// slot is the slot of the transaction's keys, -1 until one is known.
	slot int
	// pinned is the connection holding the WATCHes, if any.
	pinned *nodeConn
	queued []byte
	count  int
	// shapes holds each queued command's reply shape, for a RESP3
	// session's EXEC (execReply).
	shapes []resp.Shape
	// writes: a queued command may write, so EXEC waits in the failover
	// hold of its master.
	writes bool
	// refusal keeps the first queued command's refusal (see runTransaction).
	refusal []byte
	// watchLost: a WATCH could not be applied (see watch); EXEC aborts.
	watchLost bool
	// pinnedView is the slot's master as the router saw it at the first
	// WATCH: a router that has not learnt a redirect the WATCH followed
	// still names it, and only a change from it means the keys moved on.
	pinnedView string
	// live is the connection the queue is sent on when nothing is pinned.
	live *nodeConn
	// multiSent: MULTI and the queue up to sentBytes (sentCount commands)
	// are on the transaction's connection (pinned, else live).
	multiSent bool
	sentBytes int
	sentCount int
	// unsent commands at the queue's end have no reply yet: they are sent
	// when the client waits (flushQueued) or with EXEC.
	unsent int
	// unanswered: of the commands EXEC sends (a pipeline's, queued in the
	// batch of its EXEC), the last ones the client still waits for; they get
	// the server's queue-time replies (runTransaction).
	unanswered int
	// serverDirty: the server refused a queued command, so its EXEC will
	// answer EXECABORT.
	serverDirty bool
	// broken: the connection refused the queue without running it (MOVED,
	// TRYAGAIN ...) or was lost; EXEC does not trust it (see exec).
	broken   bool
	lostConn bool
}

const (
	errExecAbort  = "EXECABORT Transaction discarded because of previous errors."
	errCrossSlot  = "CROSSSLOT Keys in request don't hash to the same slot"
	errLostBefore = "ERR backend connection lost before EXEC was sent: the transaction was not run"
	errLostAfter  = "ERR backend connection lost after EXEC was sent: the transaction may have run"
)

var (
	cmdMULTI   = LookupCommand([]byte("multi"))
	cmdEXEC    = LookupCommand([]byte("exec"))
	cmdDISCARD = LookupCommand([]byte("discard"))
	cmdWATCH   = LookupCommand([]byte("watch"))
	cmdUNWATCH = LookupCommand([]byte("unwatch"))

	rawMULTI   = []byte("*1\r\n$5\r\nMULTI\r\n")
	rawDISCARD = []byte("*1\r\n$7\r\nDISCARD\r\n")
	rawEXEC    = []byte("*1\r\n$4\r\nEXEC\r\n")
)

// transactionCommand serves MULTI, EXEC, DISCARD, WATCH and UNWATCH outside
// MULTI.
func (s *session) transactionCommand(cmd *CommandInfo, c *redcon.Command) {
	switch cmd {
	case cmdMULTI:
		s.tx.inMulti = true
		s.tx.dirty = false
		s.tx.count = 0
		s.tx.writes = false
		s.tx.queued = s.tx.queued[:0]
		s.tx.shapes = s.tx.shapes[:0]
		if s.tx.pinned == nil {
			s.tx.slot = -1
		}
		s.ok(nil)
	case cmdEXEC:
		s.replyError("ERR EXEC without MULTI")
	case cmdDISCARD:
		s.replyError("ERR DISCARD without MULTI")
	case cmdUNWATCH:
		s.unpin()
		s.ok(nil)
	case cmdWATCH:
		s.watch(c)
	}
}

// watch sends WATCH on the connection pinned to the keys' master. A first
// WATCH the server refuses without applying it (its slot moved, see
// refusedNotRun) is sent again to the slot's master of the moment. A later
// one cannot move: the earlier WATCHes stay where they are, so the
// transaction is bound to abort (watchLost) as when a watched key changes.
func (s *session) watch(c *redcon.Command) {
	slot, ok := s.commandSlot(cmdWATCH, c.Args)
	if !ok || (s.tx.pinned != nil && slot != s.tx.slot) {
		s.replyError(errCrossSlot)
		return
	}
	// Commands before WATCH in the pipeline must run before the watch starts.
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	defer s.endDirect(cmdWATCH, s.beginDirect())
	first := s.tx.pinned == nil
	view := s.srv.dedicated.MasterOf(slot)
	addr := view
	pacer := s.retryPacer()
	for {
		if s.tx.pinned == nil {
			conn := s.dialFor(addr)
			if conn == nil {
				return
			}
			s.tx.pinned, s.tx.slot, s.tx.pinnedView = conn, slot, view
		}
		reply, err := s.roundTrip(s.tx.pinned, c.Raw, nil)
		switch {
		case err != nil:
			s.unpin()
			s.write(resp.AppendError(s.scratch[:0], "ERR backend connection lost: WATCH not applied"))
			return
		case !refusedNotRun(reply):
			s.write(reply)
			return
		case !first:
			s.tx.watchLost = true
			s.write(replyOK)
			return
		}
		addr, _ = s.afterRefusal(slot, s.tx.pinned.addr, reply)
		if !pacer.next(s.srv.ctx) {
			s.write(finalRefusal(reply))
			s.unpin()
			return
		}
		s.unpin()
	}
}

// unpin closes the connection holding the WATCHes (closing drops them) and
// the one holding the queue.
func (s *session) unpin() {
	if s.tx.pinned != nil {
		s.tx.pinned.close()
		s.tx.pinned = nil
	}
	s.dropLive()
	s.tx.slot = -1
	s.tx.watchLost = false
	s.tx.pinnedView = ""
}

// endTransaction leaves MULTI; the watches end with it, as in Redis.
func (s *session) endTransaction() {
	s.tx.inMulti = false
	s.tx.count = 0
	s.tx.writes = false
	s.tx.unsent, s.tx.unanswered = 0, 0
	s.tx.broken, s.tx.lostConn, s.tx.serverDirty = false, false, false
	if cap(s.tx.queued) > maxKeptBuffer {
		s.tx.queued = nil
	}
	s.tx.queued = s.tx.queued[:0]
	s.tx.shapes = s.tx.shapes[:0]
	s.unpin()
}

// queueCommand serves a command received inside MULTI.
func (s *session) queueCommand(c *redcon.Command) {
	args := c.Args
	info := LookupCommand(args[0])
	switch {
	case info == nil:
		s.lastCommand = ""
		s.txReject(unknownCommandError(args))
		return
	case !info.ArityOK(len(args)):
		s.txReject(wrongArgsError(info.Name))
		return
	case !s.authed && info != cmdAUTH && info != cmdHELLO && info != cmdQUIT && info != cmdRESET:
		s.txReject(errNoAuth)
		return
	}
	s.lastCommand = info.Name
	if info.Flags&FlagTransaction != 0 {
		// Counted as itself (cmdstats.go); the others are counted when
		// EXEC runs them, as EXEC.
		s.statCmd = info
	}
	switch info {
	case cmdMULTI, cmdWATCH, cmdDISCARD, cmdRESET, cmdQUIT:
		// Commands waiting to be sent are answered before this one.
		s.flushQueued()
	}
	switch info {
	case cmdMULTI:
		s.replyError("ERR MULTI calls can not be nested")
		return
	case cmdWATCH:
		s.replyError("ERR WATCH inside MULTI is not allowed")
		return
	case cmdEXEC:
		s.exec()
		return
	case cmdDISCARD:
		s.discardOnServer()
		s.endTransaction()
		s.ok(nil)
		return
	case cmdRESET:
		s.endTransaction()
		s.classifyCommand(c)
		return
	case cmdQUIT:
		s.classifyCommand(c)
		return
	}
	cmd := info
	if info.IsContainer() {
		if cmd = info.Subcommand(args[1]); cmd == nil {
			s.txReject(unknownSubcommandError(args))
			return
		}
		if !cmd.ArityOK(len(args)) {
			s.txReject(wrongArgsError(cmd.Name))
			return
		}
	}
	if !s.isAdmin() && adminOnlyCommands[cmd] {
		s.txReject(errNoAdmin)
		return
	}
	if s.readOnly && deniedToReadOnly(cmd) {
		s.txReject(noPermError(cmd))
		return
	}
	// Subscribing would leave the pooled connection in subscriber mode.
	if cmd.Flags&FlagAdmin != 0 || isSubscribe(cmd) {
		s.txReject(unsupportedError(args))
		return
	}
	slot, ok := s.commandSlot(cmd, args)
	if !ok || (slot >= 0 && s.tx.slot >= 0 && slot != s.tx.slot) {
		s.txReject(errCrossSlot)
		return
	}
	if slot >= 0 {
		s.tx.slot = slot
	}
	s.tx.queued = append(s.tx.queued, c.Raw...)
	s.tx.shapes = append(s.tx.shapes, replyShape(cmd, args))
	s.tx.count++
	if cmd.Flags&FlagReadOnly == 0 {
		s.tx.writes = true
	}
	if s.tx.slot < 0 {
		// Sent with the first keyed command, or with EXEC.
		s.queuedReplies(1)
		return
	}
	s.tx.unsent++
	if c == s.lastOfBatch {
		s.flushQueued()
	}
}

// answerQueued answers a command sent with EXEC with the server's
// queue-time reply, except a refusal proving nothing ran (MOVED, TRYAGAIN
// ...): EXEC sends the transaction again, so the command is queued here.
func (s *session) answerQueued(reply []byte) {
	s.tx.unanswered--
	switch {
	case refusedNotRun(reply):
		s.write(replyQueued)
	case resp.IsError(reply):
		s.write(finalRefusal(reply)) // ASK: no client may see a redirect
	default:
		s.write(reply)
	}
}

// answerUnanswered answers QUEUED the commands sent with EXEC whose
// server reply will not come (EXEC's reply follows).
func (s *session) answerUnanswered() {
	for ; s.tx.unanswered > 0; s.tx.unanswered-- {
		s.write(replyQueued)
	}
}

var replyQueued = []byte("+QUEUED\r\n")

// txReject refuses a command inside MULTI and dooms the transaction.
func (s *session) txReject(msg string) {
	s.flushQueued()
	s.tx.dirty = true
	s.replyError(msg)
}

// queuedReplies answers n queued commands with the proxy's QUEUED.
func (s *session) queuedReplies(n int) {
	for range n {
		mark := len(s.local)
		s.local = resp.AppendSimple(s.local, "QUEUED")
		s.localReply(mark)
	}
}

// flushQueued sends the unsent commands, behind MULTI the first time, on
// the transaction's connection and answers each with the server's reply. A
// refusal proving nothing ran (MOVED, TRYAGAIN ...) or a lost connection
// breaks that connection for the transaction: the client gets QUEUED, as
// the commands are queued here, and EXEC sends MULTI, the queue and EXEC
// again (see exec). Commands queued before the slot was known, answered
// QUEUED then, go first; their replies only doom the transaction.
func (s *session) flushQueued() {
	n := s.tx.unsent
	if n == 0 {
		return
	}
	s.tx.unsent = 0
	if s.tx.broken {
		s.queuedReplies(n)
		return
	}
	conn := s.tx.pinned
	if conn == nil {
		if conn = s.tx.live; conn == nil {
			c, err := s.srv.pool.get(s.srv.ctx, s.masterFor(s.tx.slot))
			if err != nil {
				s.breakTx(true)
				s.queuedReplies(n)
				return
			}
			s.tx.live, conn = c, c
		}
	}
	if !s.tx.multiSent {
		// MULTI alone first: the queue must never run outside MULTI.
		reply, err := s.roundTrip(conn, rawMULTI, nil)
		if err != nil || resp.IsError(reply) {
			s.breakTx(err != nil)
			s.queuedReplies(n)
			return
		}
		s.tx.multiSent = true
	}
	stop := context.AfterFunc(s.srv.ctx, conn.close)
	defer stop()
	pending := s.tx.count - s.tx.sentCount
	if _, err := conn.conn.Write(s.tx.queued[s.tx.sentBytes:]); err != nil {
		s.breakTx(true)
		s.queuedReplies(n)
		return
	}
	s.tx.sentBytes, s.tx.sentCount = len(s.tx.queued), s.tx.count
	for i := range pending {
		answered := i < pending-n
		reply, err := conn.readReply()
		switch {
		case err != nil:
			s.breakTx(true)
		case refusedNotRun(reply):
			s.afterRefusal(s.tx.slot, conn.addr, reply) // a TRYAGAIN starts the hold
			s.breakTx(false)
		case resp.IsError(reply):
			s.tx.serverDirty = true
			reply = finalRefusal(reply) // ASK: no client may see a redirect
		}
		if s.tx.broken {
			s.queuedReplies(min(n, pending-i))
			return
		}
		if !answered {
			mark := len(s.local)
			s.local = append(s.local, reply...)
			s.localReply(mark)
		}
	}
}

// breakTx gives up the transaction's connection: refused or lost, its
// state on the server is not to be trusted. An unpinned transaction starts
// over at EXEC; a pinned one keeps its (closed) connection so EXEC knows
// its WATCHes are gone.
func (s *session) breakTx(lost bool) {
	s.tx.broken, s.tx.lostConn = true, lost
	if s.tx.pinned != nil {
		s.tx.pinned.close()
		return
	}
	s.dropLive()
}

// dropLive closes the unpinned queue's connection; a resend starts over.
func (s *session) dropLive() {
	if s.tx.live != nil {
		s.tx.live.close()
		s.tx.live = nil
	}
	s.tx.multiSent, s.tx.sentBytes, s.tx.sentCount = false, 0, 0
}

// discardOnServer ends the server's MULTI on the unpinned queue's
// connection, which can then be reused. A pinned one is closed (its
// WATCHes end with the transaction).
func (s *session) discardOnServer() {
	live := s.tx.live
	if live == nil || !s.tx.multiSent {
		return
	}
	s.tx.live = nil
	if reply, err := s.roundTrip(live, rawDISCARD, nil); err == nil && !resp.IsError(reply) {
		s.srv.pool.put(live)
		return
	}
	live.close()
}

// takeLive returns the unpinned queue's connection for EXEC when it is to
// addr and still open; otherwise the transaction is sent anew.
func (s *session) takeLive(addr string) *nodeConn {
	live := s.tx.live
	s.tx.live = nil
	if live != nil && live.addr == addr && alive(live) {
		return live
	}
	if live != nil {
		live.close()
	}
	s.tx.multiSent, s.tx.sentBytes, s.tx.sentCount = false, 0, 0
	return nil
}

// exec runs the queued transaction on the master of its slot (the keyless
// master when it has no keys) and writes EXEC's reply.
func (s *session) exec() {
	// Commands not yet sent (a pipeline's) go with EXEC, in one write, and
	// get the server's queue-time replies; EXEC answered without sending
	// them answers them QUEUED first.
	unsent := s.tx.unsent
	s.tx.unsent = 0
	if s.tx.dirty || s.tx.watchLost || s.tx.serverDirty || s.tx.broken && s.tx.pinned != nil ||
		s.tx.count == 0 && s.tx.pinned == nil {
		s.queuedReplies(unsent)
	} else {
		s.tx.unanswered = unsent
	}
	if s.tx.dirty {
		s.endTransaction()
		s.replyError(errExecAbort)
		return
	}
	if s.tx.watchLost {
		s.endTransaction()
		mark := len(s.local)
		s.local = append(s.local, replyWatchAborted...)
		s.localReply(mark)
		return
	}
	switch {
	case s.tx.serverDirty:
		s.execAborted()
		return
	case s.tx.broken && s.tx.pinned != nil && s.tx.lostConn:
		s.endTransaction()
		s.replyError(errLostBefore)
		return
	case s.tx.broken && s.tx.pinned != nil:
		// The server discarded the queue, and the WATCHes with it.
		s.endTransaction()
		mark := len(s.local)
		s.local = append(s.local, replyWatchAborted...)
		s.localReply(mark)
		return
	}
	if s.tx.count == 0 && s.tx.pinned == nil {
		s.endTransaction()
		mark := len(s.local)
		s.local = resp.AppendArray(s.local, 0)
		s.localReply(mark)
		return
	}
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	defer s.endDirect(cmdEXEC, s.beginDirect())
	pinned := s.tx.pinned
	s.tx.pinned = nil // endTransaction must not close it
	s.execute(pinned)
	s.endTransaction()
}

// execAborted answers EXEC of a transaction the server refused a command
// of: with the server's EXECABORT when its connection is still there, never
// with a redirect, and never by sending the transaction again.
func (s *session) execAborted() {
	conn := s.tx.pinned
	if conn == nil {
		conn = s.tx.live
	}
	mark := len(s.local)
	if conn != nil && !s.tx.broken {
		if r, err := s.roundTrip(conn, rawEXEC, nil); err == nil && resp.IsError(r) && !refusedNotRun(r) {
			s.local = append(s.local, r...)
		}
	}
	if len(s.local) == mark {
		s.local = resp.AppendError(s.local, errExecAbort)
	}
	s.localReply(mark)
	s.endTransaction()
}

// replyWatchAborted is EXEC's reply when a watched key changed.
var replyWatchAborted = []byte("*-1\r\n")

// execute sends the transaction and writes EXEC's reply. A transaction
// that writes first waits in its master's failover hold, in turn with the
// other clients' held writes, within a budget counted from EXEC. One the
// server refused without running any of it (txRefused) is sent again, at
// most maxDedicatedResends times, to the slot's master of the moment. A
// WATCHed transaction cannot follow its keys to another master, and its
// WATCHes end with a refused EXEC: it then gets the reply of a watched key
// that changed, which its client must handle anyway. pinned is the
// connection holding the WATCHes, or nil.
func (s *session) execute(pinned *nodeConn) {
	addr, routed := s.masterFor(s.tx.slot), pinned == nil
	if pinned != nil {
		addr = pinned.addr
	}
	arrived := time.Now()
	pacer := s.retryPacer()
	for {
		var turn *failover.Ticket
		if s.tx.writes {
			var refusal string
			if turn, refusal = s.admitWrite(addr, arrived, len(s.tx.queued), true); refusal != "" {
				if pinned != nil {
					pinned.close()
				}
				s.answerUnanswered()
				s.write(resp.AppendError(s.scratch[:0], refusal))
				return
			}
		}
		if routed {
			// A hold may have ended with a handover the router followed.
			addr = s.masterFor(s.tx.slot)
		}
		reply, outcome, conn, ok := s.attemptTransaction(pinned, addr, turn)
		if !ok {
			return
		}
		switch {
		case outcome == txRan, outcome == txMultiFailed && !refusedNotRun(reply):
			s.execReply(reply)
			s.releaseTx(conn, pinned, outcome)
			return
		case pinned != nil && outcome == txRefused:
			s.execReply(replyWatchAborted)
			s.srv.pool.put(conn) // EXEC ended its WATCHes
			return
		}
		// Learn where to resend before conn, whose buffer holds the
		// refusal, goes back to the pool.
		next, nextRouted := s.afterRefusal(s.tx.slot, addr, reply)
		if !pacer.next(s.srv.ctx) {
			s.write(txGiveUp(reply, outcome))
			s.releaseTx(conn, pinned, outcome)
			return
		}
		if pinned == nil {
			s.srv.pool.put(conn)
			addr, routed = next, nextRouted
		}
	}
}

// execReply writes EXEC's reply; in RESP3 each element is converted by its
// queued command's shape, as Redis replies to each command in the
// client's protocol.
func (s *session) execReply(reply []byte) {
	if !s.resp3 {
		s.write(reply)
		return
	}
	s.converted = resp.AppendRESP3Elements(s.converted[:0], reply, s.tx.shapes)
	s.write(s.converted)
}

// attemptTransaction sends the transaction once, to addr or on pinned, and
// tells turn Sent once it is written or will not be. It returns what
// runTransaction found and the connection used; ok false when EXEC was
// answered already.
func (s *session) attemptTransaction(pinned *nodeConn, addr string, turn *failover.Ticket) (reply []byte, outcome txOutcome, conn *nodeConn, ok bool) {
	defer sent(turn)
	if now := s.srv.dedicated.MasterOf(s.tx.slot); pinned != nil && now != pinned.addr && now != s.tx.pinnedView {
		pinned.close()
		s.answerUnanswered()
		s.execReply(replyWatchAborted)
		return nil, txRan, nil, false
	}
	conn = pinned
	if conn == nil {
		conn = s.takeLive(addr)
	}
	if conn == nil {
		var refusal string
		if conn, refusal = s.dial(addr); conn == nil {
			s.answerUnanswered()
			s.write(resp.AppendError(s.scratch[:0], refusal))
			return nil, txRan, nil, false
		}
	}
	reply, outcome, err := s.runTransaction(conn, turn)
	// The commands runTransaction did not get to answer were queued here.
	s.answerUnanswered()
	if err != nil {
		conn.close()
		s.write(resp.AppendError(s.scratch[:0], err.Error()))
		return nil, txRan, nil, false
	}
	return reply, outcome, conn, true
}

// txGiveUp is EXEC's reply once a refused transaction is resent no more: a
// refused queued command or EXEC says why the transaction was discarded, in
// Redis' words for an EXEC refused as a whole.
func txGiveUp(refusal []byte, outcome txOutcome) []byte {
	refusal = finalRefusal(refusal)
	if outcome != txRefused || bytes.HasPrefix(refusal, []byte("-EXECABORT ")) {
		return refusal
	}
	line, _, _ := resp.ReplyLine(refusal)
	return resp.AppendError(nil, string(execAbortBecauseOf[1:])+string(line))
}

// releaseTx gives conn back after a transaction, or closes it when it still
// holds the client's WATCHes: only EXEC ends them.
func (s *session) releaseTx(conn, pinned *nodeConn, outcome txOutcome) {
	if pinned != nil && outcome == txMultiFailed {
		conn.close()
		return
	}
	s.srv.pool.put(conn)
}

// txOutcome says what the server did with a transaction.
type txOutcome uint8

const (
	// txRan: EXEC's reply is the transaction's, or an error that does not
	// prove nothing ran.
	txRan txOutcome = iota
	// txMultiFailed: MULTI got an error reply, so nothing was queued; the
	// connection's WATCHes still stand.
	txMultiFailed
	// txRefused: the server discarded the transaction without running any
	// of it (a queued command or EXEC was refused, see refusedNotRun).
	txRefused
)

// txError is the error EXEC gets when the connection fails; its message is
// a RESP error line.
type txError string

func (e txError) Error() string { return string(e) }

// runTransaction sends MULTI alone first, so the queued commands can never
// run outside a transaction, then the queue and EXEC in one write. It
// returns EXEC's reply (MULTI's when MULTI failed) and what became of the
// transaction. A refusal's reply is the one telling why: MULTI's, EXEC's, or
// the first refused queued command's. turn, the transaction's ticket in its
// master's hold, is told Sent once EXEC is written.
func (s *session) runTransaction(conn *nodeConn, turn *failover.Ticket) ([]byte, txOutcome, error) {
	stop := context.AfterFunc(s.srv.ctx, conn.close)
	defer stop()
	// On the connection the queue went to, only the rest and EXEC are sent.
	multiSent, from, count, otherError := s.tx.multiSent, s.tx.sentBytes, s.tx.count-s.tx.sentCount, s.tx.serverDirty
	// A resend starts over.
	s.tx.multiSent, s.tx.sentBytes, s.tx.sentCount, s.tx.serverDirty = false, 0, 0, false
	var reply []byte
	var err error
	if !multiSent {
		if _, err := conn.conn.Write(rawMULTI); err != nil {
			return nil, txRan, txError(errLostBefore)
		}
		if reply, err = conn.readReply(); err != nil {
			return nil, txRan, txError(errLostBefore)
		}
		if resp.IsError(reply) {
			return reply, txMultiFailed, nil
		}
	}
	queued := append(s.tx.queued[from:], rawEXEC...)
	n, err := conn.conn.Write(queued)
	sent(turn)
	if err != nil {
		if n < len(queued) {
			return nil, txRan, txError(errLostBefore)
		}
		return nil, txRan, txError(errLostAfter)
	}
	// One reply per queued command (+QUEUED, or the error that dooms the
	// transaction), then EXEC's. The last s.tx.unanswered of them the
	// client waits for.
	refusal := s.tx.refusal[:0]
	firstUnanswered := count - s.tx.unanswered
	for i := range count {
		if reply, err = conn.readReply(); err != nil {
			return nil, txRan, txError(errLostAfter)
		}
		if i >= firstUnanswered {
			s.answerQueued(reply)
		}
		switch {
		case !resp.IsError(reply):
		case refusedNotRun(reply):
			if len(refusal) == 0 {
				refusal = append(refusal, reply...)
			}
		default:
			otherError = true
		}
	}
	s.tx.refusal = refusal
	if reply, err = conn.readReply(); err != nil {
		return nil, txRan, txError(errLostAfter)
	}
	switch {
	case refusedNotRun(reply):
		// Redis answers EXEC itself with MOVED, discarding the
		// transaction, when its keys are not served there. Kvrocks
		// refusing EXEC (LOADING) leaves the connection in MULTI.
		conn.unsure = true
		return reply, txRefused, nil
	case !bytes.HasPrefix(reply, []byte("-EXECABORT ")):
		if refusal, ok := everyElementRefused(reply); ok {
			// Kvrocks checks each queued command again at EXEC: one
			// caught by a failover's pause after it was queued gets
			// TRYAGAIN. When all did, nothing ran.
			return append(s.tx.refusal[:0], refusal...), txRefused, nil
		}
		return hideRedirects(reply), txRan, nil
	case bytes.HasPrefix(reply, execAbortBecauseOf):
		// Redis' abort for an EXEC refused as a whole (READONLY,
		// LOADING ...): "-EXECABORT Transaction discarded because of:
		// <the refusal>".
		if refusedNotRun(append([]byte{'-'}, reply[len(execAbortBecauseOf):]...)) {
			return reply, txRefused, nil
		}
	case len(refusal) > 0 && !otherError:
		return refusal, txRefused, nil
	}
	return reply, txRan, nil
}

var execAbortBecauseOf = []byte("-EXECABORT Transaction discarded because of: ")

// errRedirectedInExec replaces a MOVED or ASK element of EXEC's reply:
// Kvrocks checks each queued command again at EXEC, so a failover that
// switches between queueing and EXEC redirects the rest of the transaction.
// Those commands did not run; no client may see a redirect.
const errRedirectedInExec = "TRYAGAIN the slot moved while the transaction ran: this command was not executed, retry"

// everyElementRefused returns the first element of EXEC's array reply when
// every element is a refusal proving its command did not run (an empty
// array is not). Only a script that returns such an error as its own
// reply could make a command that ran look refused.
func everyElementRefused(reply []byte) ([]byte, bool) {
	if len(reply) == 0 || reply[0] != '*' {
		return nil, false
	}
	line, next, ok := resp.ReplyLine(reply)
	n, isCount := resp.ParseUint(line)
	if !ok || !isCount || n == 0 {
		return nil, false
	}
	scanner := resp.NewScanner(resp.DefaultMaxBulkLen)
	rest := reply[next:]
	var first []byte
	for range n {
		size, err := scanner.Scan(rest)
		if err != nil || size == 0 || !refusedNotRun(rest[:size]) {
			return nil, false
		}
		if first == nil {
			first = rest[:size]
		}
		rest = rest[size:]
	}
	return first, true
}

// hideRedirects rewrites the MOVED and ASK elements of EXEC's array reply;
// anything else, or a reply it cannot read, is returned as it is.
func hideRedirects(reply []byte) []byte {
	if len(reply) == 0 || reply[0] != '*' ||
		!bytes.Contains(reply, []byte("\r\n-MOVED ")) && !bytes.Contains(reply, []byte("\r\n-ASK ")) {
		return reply
	}
	line, next, ok := resp.ReplyLine(reply)
	n, isCount := resp.ParseUint(line)
	if !ok || !isCount {
		return reply
	}
	scanner := resp.NewScanner(resp.DefaultMaxBulkLen)
	out := append([]byte(nil), reply[:next]...)
	rest := reply[next:]
	for range n {
		size, err := scanner.Scan(rest)
		if err != nil || size == 0 {
			return reply
		}
		if element := rest[:size]; bytes.HasPrefix(element, []byte("-MOVED ")) || bytes.HasPrefix(element, []byte("-ASK ")) {
			out = resp.AppendError(out, errRedirectedInExec)
		} else {
			out = append(out, element...)
		}
		rest = rest[size:]
	}
	return out
}
