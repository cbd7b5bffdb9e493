package proxy

import (
	"bytes"
	"context"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/failover"
	"kvproxy/internal/resp"
)

// txState is a client's transaction. MULTI is answered by the proxy and the
// commands are queued here, checked as Redis checks them, until EXEC sends
// MULTI, the queue and EXEC to one master over a dedicated connection. WATCH
// pins that connection (to the watched keys' master) as soon as it is sent,
// so the watch starts when Redis would start it.
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

	rawMULTI = []byte("*1\r\n$5\r\nMULTI\r\n")
	rawEXEC  = []byte("*1\r\n$4\r\nEXEC\r\n")
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

// unpin closes the connection holding the WATCHes: closing drops them.
func (s *session) unpin() {
	if s.tx.pinned != nil {
		s.tx.pinned.close()
		s.tx.pinned = nil
	}
	s.tx.slot = -1
	s.tx.watchLost = false
	s.tx.pinnedView = ""
}

// endTransaction leaves MULTI; the watches end with it, as in Redis.
func (s *session) endTransaction() {
	s.tx.inMulti = false
	s.tx.count = 0
	s.tx.writes = false
	if cap(s.tx.queued) > maxKeptBuffer {
		s.tx.queued = nil
	}
	s.tx.queued = s.tx.queued[:0]
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
	s.tx.count++
	if cmd.Flags&FlagReadOnly == 0 {
		s.tx.writes = true
	}
	mark := len(s.local)
	s.local = resp.AppendSimple(s.local, "QUEUED")
	s.localReply(mark)
}

// txReject refuses a command inside MULTI and dooms the transaction.
func (s *session) txReject(msg string) {
	s.tx.dirty = true
	s.replyError(msg)
}

// exec runs the queued transaction on the master of its slot (the keyless
// master when it has no keys) and writes EXEC's reply.
func (s *session) exec() {
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
	if s.tx.count == 0 && s.tx.pinned == nil {
		s.endTransaction()
		mark := len(s.local)
		s.local = resp.AppendArray(s.local, 0)
		s.localReply(mark)
		return
	}
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	pinned := s.tx.pinned
	s.tx.pinned = nil // endTransaction must not close it
	s.execute(pinned)
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
			s.write(reply)
			s.releaseTx(conn, pinned, outcome)
			return
		case pinned != nil && outcome == txRefused:
			s.write(replyWatchAborted)
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

// attemptTransaction sends the transaction once, to addr or on pinned, and
// tells turn Sent once it is written or will not be. It returns what
// runTransaction found and the connection used; ok false when EXEC was
// answered already.
func (s *session) attemptTransaction(pinned *nodeConn, addr string, turn *failover.Ticket) (reply []byte, outcome txOutcome, conn *nodeConn, ok bool) {
	defer sent(turn)
	if now := s.srv.dedicated.MasterOf(s.tx.slot); pinned != nil && now != pinned.addr && now != s.tx.pinnedView {
		pinned.close()
		s.write(replyWatchAborted)
		return nil, txRan, nil, false
	}
	conn = pinned
	if conn == nil {
		if conn = s.dialFor(addr); conn == nil {
			return nil, txRan, nil, false
		}
	}
	reply, outcome, err := s.runTransaction(conn, turn)
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
	if _, err := conn.conn.Write(rawMULTI); err != nil {
		return nil, txRan, txError(errLostBefore)
	}
	reply, err := conn.readReply()
	if err != nil {
		return nil, txRan, txError(errLostBefore)
	}
	if resp.IsError(reply) {
		return reply, txMultiFailed, nil
	}
	queued := append(s.tx.queued, rawEXEC...)
	n, err := conn.conn.Write(queued)
	sent(turn)
	if err != nil {
		if n < len(queued) {
			return nil, txRan, txError(errLostBefore)
		}
		return nil, txRan, txError(errLostAfter)
	}
	// One reply per queued command (+QUEUED, or the error that dooms the
	// transaction), then EXEC's.
	refusal := s.tx.refusal[:0]
	otherError := false
	for range s.tx.count {
		if reply, err = conn.readReply(); err != nil {
			return nil, txRan, txError(errLostAfter)
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
