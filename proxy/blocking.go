package proxy

import (
	"bytes"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/failover"
	"kvproxy/internal/resp"
)

const errTooManyBlocking = "ERR too many blocking commands"

// blockingCommand runs a blocking command on a dedicated connection to its
// keys' master (WAIT: the master of the client's latest command). The
// client's later commands wait behind it, and a client that hangs up closes
// the connection, which ends the wait on the backend.
func (s *session) blockingCommand(cmd *CommandInfo, c *redcon.Command) {
	slot, ok := s.commandSlot(cmd, c.Args)
	if !ok {
		s.replyError(errCrossSlot)
		return
	}
	if slot < 0 {
		slot = s.lastSlot
	}
	select {
	case s.srv.blockingSlots <- struct{}{}:
	default:
		s.replyError(errTooManyBlocking)
		return
	}
	defer func() { <-s.srv.blockingSlots }()
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	defer s.endDirect(cmd, s.beginDirect())
	// What is answered so far must not wait for the blocking reply.
	_ = s.flush()
	s.unflushed = 0
	b := blockingRun{s: s, cmd: cmd, args: c.Args, slot: slot}
	stopWatch := s.watchHangup(b.hangUp)
	reply, conn := b.run(c.Raw)
	stopWatch()
	s.writeConverted(reply, s.resp3, replyShape(cmd, c.Args))
	if conn != nil {
		s.srv.pool.put(conn)
	}
}

// blockingRun is one blocking command on its way through refusals and
// failovers.
type blockingRun struct {
	s    *session
	cmd  *CommandInfo
	args [][]byte
	slot int
	// current is the connection the command waits on; hungUp is set when
	// the client hangs up, which closes it.
	mu      sync.Mutex
	current *nodeConn
	hungUp  bool
}

// hangUp ends the wait of a client that hung up, in the failover hold or
// on the backend.
func (b *blockingRun) hangUp() {
	b.s.hangUp()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hungUp = true
	if b.current != nil {
		b.current.close()
	}
}

// attach makes conn the one a hang-up closes; false if the client is gone.
func (b *blockingRun) attach(conn *nodeConn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.current = conn
	return !b.hungUp
}

// blockedReplySlack is how long past a blocking command's own timeout its
// reply is awaited before the connection is taken for lost.
const blockedReplySlack = 5 * time.Second

// Errors of a blocking command that may have taken effect, or not.
const (
	errBlockedLost       = "ERR backend connection lost while blocked"
	errBlockedHandedOver = "ERR the shard's master failed over while the blocking command waited"
	mayHaveRun           = ": the command may have run"
)

// run sends the command (raw) and returns the reply to write and the
// connection to give back (nil when it was closed). A write waits in its
// master's failover hold first, and tells the hold Sent once written. A
// refusal (refusedNotRun, or Redis unblocking it as its master turned
// replica) proves nothing happened: the command is resent to the slot's
// master of the moment (afterRefusal) with what is left of its timeout, at
// most maxDedicatedResends times. A command still blocked
// when its master hands its slots over would wait on a node that no longer
// serves its keys: its reply is awaited handoverGrace more, then the wait
// is cut and only a read-only command is resent, since a write may have
// been served just before (its reply still on the way).
func (b *blockingRun) run(raw []byte) (reply []byte, conn *nodeConn) {
	s := b.s
	write := b.cmd.Flags&FlagReadOnly == 0
	addr, routed := s.masterFor(b.slot), true
	start := time.Now()
	pacer := s.retryPacer()
	for {
		if addr == "" {
			return resp.AppendError(nil, errNoMasters), nil
		}
		var turn *failover.Ticket
		if write {
			// Each attempt has its own budget: a resend may follow a long
			// block on the server, which was no wait in the hold.
			var refusal string
			if turn, refusal = s.admitWrite(addr, time.Now(), len(raw), false); refusal != "" {
				return resp.AppendError(nil, refusal), nil
			}
		}
		if routed {
			// A hold may have ended with a handover the router followed.
			if addr = s.masterFor(b.slot); addr == "" {
				sent(turn)
				return resp.AppendError(nil, errNoMasters), nil
			}
		}
		conn, err := s.srv.pool.get(s.srv.ctx, addr)
		if err != nil {
			sent(turn)
			return resp.AppendError(nil, "ERR cannot connect to backend "+addr+": "+oneLine(err.Error())), nil
		}
		if !b.attach(conn) {
			sent(turn)
			conn.close()
			return nil, nil
		}
		if timeout, at, _ := blockingTimeout(b.cmd, b.args); at >= 0 && timeout > 0 {
			// A master gone silent (no reset, no FIN) must not hold the
			// client past its timeout: the server has answered by then.
			_ = conn.conn.SetReadDeadline(start.Add(timeout + blockedReplySlack))
		}
		reply, handedOver, err := s.roundTripUntil(conn, raw, turn, s.handedOver(addr))
		if !b.attach(nil) {
			conn.close()
			return nil, nil
		}
		refused := err == nil && (refusedNotRun(reply) || unblockedByRoleChange(reply))
		switch {
		case err == nil && !refused:
			if handedOver {
				conn.close() // answered, but its read deadline is set
				return reply, nil
			}
			return reply, conn
		case err != nil && !handedOver:
			conn.close()
			msg := errBlockedLost
			if b.cmd.Flags&FlagWrite != 0 {
				msg += mayHaveRun
			}
			return resp.AppendError(nil, msg), nil
		case err != nil && write:
			conn.close()
			return resp.AppendError(nil, errBlockedHandedOver+mayHaveRun), nil
		}
		// Refused, or a read cut short by a handover: nothing happened.
		// The connection is kept unless it was cut or Redis closes it after
		// UNBLOCKED.
		reusable := err == nil && !handedOver && refusedNotRun(reply)
		next, nextRouted := s.masterFor(b.slot), true
		if refused {
			next, nextRouted = s.afterRefusal(b.slot, addr, reply)
		}
		resend, ok := withRemainingTimeout(b.cmd, b.args, time.Since(start))
		if !ok || !pacer.next(s.srv.ctx) {
			if refused {
				reply = finalRefusal(reply)
			} else {
				reply = resp.AppendError(nil, errBlockedHandedOver+", retry")
			}
			if !reusable {
				conn.close()
				return reply, nil
			}
			return reply, conn
		}
		if reusable {
			s.srv.pool.put(conn)
		} else {
			conn.close()
		}
		raw, addr, routed = resend, next, nextRouted
	}
}

// unblockedByRoleChange reports Redis unblocking a blocked command because
// its master became a replica: the command did not take effect.
func unblockedByRoleChange(reply []byte) bool {
	return bytes.HasPrefix(reply, []byte("-UNBLOCKED force unblock from blocking operation, instance state changed"))
}

// withRemainingTimeout returns the command with its timeout cut by elapsed,
// so a resend does not make the client wait longer than it asked (at least
// 1 ms is left: a timeout of 0 waits forever). ok is false for a command
// whose timeout it cannot find or parse (WAIT is never resent).
func withRemainingTimeout(cmd *CommandInfo, args [][]byte, elapsed time.Duration) (raw []byte, ok bool) {
	timeout, at, millis := blockingTimeout(cmd, args)
	if at < 0 {
		return nil, false
	}
	var left []byte
	switch remaining := max(timeout-elapsed, time.Millisecond); {
	case timeout == 0:
		left = args[at]
	case millis:
		left = strconv.AppendInt(nil, remaining.Milliseconds(), 10)
	case bytes.ContainsAny(args[at], ".eE"):
		left = strconv.AppendFloat(nil, remaining.Seconds(), 'f', 3, 64)
	default:
		// A server may take whole seconds only: round up, by less than a
		// second.
		left = strconv.AppendInt(nil, int64((remaining+time.Second-1)/time.Second), 10)
	}
	raw = resp.AppendArray(nil, len(args))
	for i, arg := range args {
		if i == at {
			arg = left
		}
		raw = resp.AppendBulk(raw, arg)
	}
	return raw, true
}

// blockingTimeout reads a blocking command's timeout (0: none) and returns
// it with its argument's index, -1 when the proxy cannot read it, and
// whether it counts milliseconds (else seconds).
func blockingTimeout(cmd *CommandInfo, args [][]byte) (timeout time.Duration, at int, millis bool) {
	at, millis = timeoutArg(cmd, args)
	if at < 0 {
		return 0, -1, false
	}
	if millis {
		n, ok := resp.ParseInt(args[at])
		if !ok || n < 0 || n > math.MaxInt64/int64(time.Millisecond) {
			return 0, -1, false
		}
		return time.Duration(n) * time.Millisecond, at, true
	}
	secs, err := strconv.ParseFloat(string(args[at]), 64)
	if err != nil || !(secs >= 0) || secs > math.MaxInt64/float64(time.Second) {
		return 0, -1, false
	}
	return time.Duration(secs * float64(time.Second)), at, false
}

// timeoutArg returns the index of a blocking command's timeout and whether
// it counts milliseconds (else seconds), or -1.
func timeoutArg(cmd *CommandInfo, args [][]byte) (at int, millis bool) {
	switch cmd {
	case cmdBLMPOP, cmdBZMPOP:
		return 1, false
	case cmdXREAD, cmdXREADGROUP:
		for i := 1; i+1 < len(args); i++ {
			switch arg := args[i]; {
			case equalFold(arg, "block"):
				return i + 1, true
			case equalFold(arg, "count"):
				i++
			case equalFold(arg, "group"):
				i += 2
			case equalFold(arg, "streams"):
				return -1, false
			}
		}
		return -1, false
	case cmdBLPOP, cmdBRPOP, cmdBZPOPMIN, cmdBZPOPMAX, cmdBLMOVE, cmdBRPOPLPUSH:
		return len(args) - 1, false
	}
	return -1, false
}

var (
	cmdBLMPOP     = LookupCommand([]byte("blmpop"))
	cmdBZMPOP     = LookupCommand([]byte("bzmpop"))
	cmdBLPOP      = LookupCommand([]byte("blpop"))
	cmdBRPOP      = LookupCommand([]byte("brpop"))
	cmdBZPOPMIN   = LookupCommand([]byte("bzpopmin"))
	cmdBZPOPMAX   = LookupCommand([]byte("bzpopmax"))
	cmdBLMOVE     = LookupCommand([]byte("blmove"))
	cmdBRPOPLPUSH = LookupCommand([]byte("brpoplpush"))
)

// watchHangup calls onHangup if the client closes its connection before the
// returned stop is called. Nobody reads the client while a blocking command
// waits, so the socket is watched without consuming what the client sends:
// if it sends more, watching stops (its hang-up then shows once the wait
// ends).
func (s *session) watchHangup(onHangup func()) (stop func()) {
	if s.writeDirect == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if peerHungUp(s.netConn.Conn) {
			select {
			case <-done:
			default:
				onHangup()
			}
		}
	}()
	return func() {
		close(done)
		// Wake the watcher from its wait for readability, then give the
		// socket back to redcon with the deadline Server.Close expects.
		_ = s.netConn.SetReadDeadline(time.Now())
		wg.Wait()
		s.srv.mu.Lock()
		if s.srv.closing {
			_ = s.netConn.SetReadDeadline(time.Now())
		} else {
			_ = s.netConn.SetReadDeadline(time.Time{})
		}
		s.srv.mu.Unlock()
	}
}

// releaseDedicated closes every dedicated connection of a session that ended.
func (s *session) releaseDedicated() {
	s.unpin()
	if s.sub != nil {
		s.sub.shutdown()
		s.sub = nil
	}
}
