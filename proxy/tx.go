package proxy

import (
	"context"

	"github.com/tidwall/redcon"
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

// watch sends WATCH on the connection pinned to the keys' master.
func (s *session) watch(c *redcon.Command) {
	slot, ok := s.commandSlot(cmdWATCH, c.Args)
	if !ok || (s.tx.pinned != nil && slot != s.tx.slot) {
		s.replyError(errCrossSlot)
		return
	}
	// Commands before WATCH in the pipeline must run before the watch starts.
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	if s.tx.pinned == nil {
		conn := s.dialFor(s.srv.dedicated.MasterOf(slot))
		if conn == nil {
			return
		}
		s.tx.pinned, s.tx.slot = conn, slot
	}
	reply, err := s.roundTrip(s.tx.pinned, c.Raw)
	if err != nil {
		s.unpin()
		s.write(appendError(s.scratch[:0], "ERR backend connection lost: WATCH not applied"))
		return
	}
	s.write(reply)
}

// unpin closes the connection holding the WATCHes: closing drops them.
func (s *session) unpin() {
	if s.tx.pinned != nil {
		s.tx.pinned.close()
		s.tx.pinned = nil
	}
	s.tx.slot = -1
}

// endTransaction leaves MULTI; the watches end with it, as in Redis.
func (s *session) endTransaction() {
	s.tx.inMulti = false
	s.tx.count = 0
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
	mark := len(s.local)
	s.local = appendSimple(s.local, "QUEUED")
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
	if s.tx.count == 0 && s.tx.pinned == nil {
		s.endTransaction()
		mark := len(s.local)
		s.local = appendArray(s.local, 0)
		s.localReply(mark)
		return
	}
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	conn := s.tx.pinned
	s.tx.pinned = nil // endTransaction must not close it
	if conn == nil {
		addr := s.keylessMaster()
		if s.tx.slot >= 0 {
			addr = s.srv.dedicated.MasterOf(s.tx.slot)
		}
		if conn = s.dialFor(addr); conn == nil {
			s.endTransaction()
			return
		}
	}
	reply, err := s.runTransaction(conn)
	s.endTransaction()
	if err != nil {
		conn.close()
		s.write(appendError(s.scratch[:0], err.Error()))
		return
	}
	s.write(reply)
	s.srv.pool.put(conn)
}

// txError is the error EXEC gets when the connection fails; its message is
// a RESP error line.
type txError string

func (e txError) Error() string { return string(e) }

// runTransaction sends MULTI alone first, so the queued commands can never
// run outside a transaction, then the queue and EXEC in one write.
func (s *session) runTransaction(conn *nodeConn) ([]byte, error) {
	stop := context.AfterFunc(s.srv.ctx, conn.close)
	defer stop()
	if _, err := conn.conn.Write(rawMULTI); err != nil {
		return nil, txError(errLostBefore)
	}
	reply, err := conn.readReply()
	if err != nil {
		return nil, txError(errLostBefore)
	}
	if isErrorReply(reply) {
		return reply, nil
	}
	s.tx.queued = append(s.tx.queued, rawEXEC...)
	if n, err := conn.conn.Write(s.tx.queued); err != nil {
		if n < len(s.tx.queued) {
			return nil, txError(errLostBefore)
		}
		return nil, txError(errLostAfter)
	}
	// One reply per queued command (+QUEUED), then EXEC's.
	for range s.tx.count + 1 {
		if reply, err = conn.readReply(); err != nil {
			return nil, txError(errLostAfter)
		}
	}
	return reply, nil
}
