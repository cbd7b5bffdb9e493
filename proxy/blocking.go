package proxy

import (
	"sync"
	"time"

	"github.com/tidwall/redcon"
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
	addr := s.keylessMaster()
	switch {
	case slot >= 0:
		addr = s.srv.dedicated.MasterOf(slot)
	case s.lastSlot >= 0:
		addr = s.srv.dedicated.MasterOf(s.lastSlot)
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
	// What is answered so far must not wait for the blocking reply.
	_ = s.flush()
	s.unflushed = 0
	conn := s.dialFor(addr)
	if conn == nil {
		return
	}
	stopWatch := s.watchHangup(conn.close)
	reply, err := s.roundTrip(conn, c.Raw)
	stopWatch()
	if err != nil {
		conn.close()
		msg := "ERR backend connection lost while blocked"
		if cmd.Flags&FlagWrite != 0 {
			msg += ": the command may have run"
		}
		s.write(appendError(s.scratch[:0], msg))
		return
	}
	s.write(reply)
	s.srv.pool.put(conn)
}

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
