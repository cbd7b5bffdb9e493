package proxy

import (
	"context"
	"runtime/debug"
	"slices"

	"kvproxy/router"
)

// AsyncBackend is a Backend that answers a batch without a goroutine waiting
// for it: done runs once every request has its Reply, usually on the
// backend reader that received the last one. *router.Router implements it.
// With writes not nil, the requests are written when writes is flushed.
type AsyncBackend interface {
	Start(ctx context.Context, reqs []*router.Request, done func(), writes *router.Writes)
}

// Limits of the event loops' asynchronous path.
const (
	// maxAsyncCommandBytes bounds the commands of a batch an event loop
	// serves (loopSafe); larger batches move the client to a goroutine.
	maxAsyncCommandBytes = 64 << 10
	// maxAsyncReplyBytes bounds the replies written from a backend reader;
	// larger ones are written by a goroutine of their own.
	maxAsyncReplyBytes = 64 << 10
)

// A client's turn: the session holds a token in s.idle while no batch of its
// is being served, so a client's batches are answered one after the other.
// Whoever serves a batch takes it; whoever writes the last reply gives it
// back, and onTurnFree then serves input that arrived meanwhile.
func (s *session) takeTurn() { <-s.idle }

func (s *session) tryTakeTurn() bool {
	select {
	case <-s.idle:
		return true
	default:
		return false
	}
}

func (s *session) releaseTurnQuietly() { s.idle <- struct{}{} }

func (s *session) releaseTurn() {
	s.releaseTurnQuietly()
	if s.onTurnFree != nil {
		s.onTurnFree()
	}
}

// startAsync sends the chunk's requests and returns without waiting, when
// the chunk allows it: the replies are written by finishAsync. It reports
// false when the chunk must be served synchronously. Only loop-safe batches
// get here (asyncOK), and none of their commands writes a reply before the
// chunk's replies are written, so nothing is pending in redcon's buffer.
func (s *session) startAsync() bool {
	if !s.asyncOK || s.starter == nil || s.rawConn == nil || !s.plain() {
		return false
	}
	if len(s.reqs) == 0 {
		// Only the proxy's own replies: write them the same way.
		s.srv.stats.commandsProcessed.Add(int64(len(s.entries)))
		s.completeAsync()
		return true
	}
	// The commands point into redcon's read buffer, which the next read
	// may overwrite while the requests are still being answered (or
	// resent after a redirect): they are copied, at most the batch that
	// loopSafe let through. The commands the session wrote itself (the
	// parts of one split by slot) are in buffers of its own already.
	size := 0
	for i, q := range s.reqs {
		if !s.ownsRaw(i) {
			size += len(q.Raw)
		}
	}
	s.arena = slices.Grow(s.arena[:0], size)
	for i, q := range s.reqs {
		if s.ownsRaw(i) {
			continue
		}
		from := len(s.arena)
		s.arena = append(s.arena, q.Raw...)
		q.Raw = s.arena[from:len(s.arena):len(s.arena)]
	}
	s.srv.stats.commandsProcessed.Add(int64(len(s.entries)))
	s.starter.Start(s.ctx, s.reqs, s.asyncDone, s.writes)
	return true
}

// ownsRaw reports whether request i's command is in the session's own
// buffer for it rather than in the client's read buffer.
func (s *session) ownsRaw(i int) bool {
	raw, owned := s.reqs[i].Raw, s.owned[i]
	return len(raw) > 0 && len(owned) > 0 && &raw[0] == &owned[0]
}

// completeAsync runs when every request of an asynchronous chunk has its
// reply. Small replies are written at once, on the calling goroutine; large
// ones by a goroutine that may block on the client's socket.
func (s *session) completeAsync() {
	size := len(s.local)
	for _, q := range s.reqs {
		size += len(q.Reply)
	}
	if size > maxAsyncReplyBytes {
		go s.finishAsync(true)
		return
	}
	s.finishAsync(false)
}

// finishAsync writes the chunk's replies in order, resets the chunk and
// gives the client's turn back. With mayBlock false it never waits on the
// client: what the socket does not take at once is finished by a goroutine.
func (s *session) finishAsync(mayBlock bool) {
	defer func() {
		// A bug must cost one client its connection, not every client of
		// the backend reader this may run on.
		if v := recover(); v != nil {
			s.srv.logger.Error("panic while answering a client; closing its connection",
				"client", s.remoteAddr(), "panic", v, "stack", string(debug.Stack()))
			s.async = false
			_ = s.netConn.Close()
			s.endChunk()
			s.releaseTurn()
		}
	}()
	s.async, s.asyncMayBlock = true, mayBlock
	s.out = s.out[:0]
	s.timing.end()
	for i := range s.entries {
		s.writeReply(&s.entries[i])
	}
	s.flushTally()
	s.async = false
	if !mayBlock {
		if n := s.tryWrite(s.out); n < len(s.out) {
			rest := s.out[n:]
			go func() {
				_, _ = s.netConn.Conn.Write(rest)
				s.endChunk()
				s.releaseTurn()
			}()
			return
		}
	} else if len(s.out) > 0 {
		_, _ = s.netConn.Conn.Write(s.out)
	}
	s.endChunk()
	s.releaseTurn()
}

// writeAsync is session.write while an asynchronous chunk is answered: the
// replies gather in s.out, which a goroutine allowed to block flushes once
// it reaches MaxOutputBytes.
func (s *session) writeAsync(b []byte) {
	s.out = append(s.out, b...)
	if s.asyncMayBlock && len(s.out) >= s.srv.cfg.MaxOutputBytes {
		_, _ = s.netConn.Conn.Write(s.out)
		s.out = s.out[:0]
	}
}

// tryWrite makes one non-blocking write of b and returns how much the
// socket took. A failed connection counts as all taken: its replies have
// nowhere to go, and the client's read loop ends the session.
func (s *session) tryWrite(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	n, err := s.rawConn.TryWrite(b)
	if err != nil {
		return len(b)
	}
	return n
}
