package proxy

// outputLimitReached runs once, on the backend reader that received the
// reply the client's output budget (ClientOutputLimit) could not take. The
// client is dropped as Redis drops one past client-output-buffer-limit:
// its held and parked requests go with its context, nothing more is written
// to it (session.write), the replies still arriving for it are discarded as
// they stream in, and its socket is shut down, so whoever serves it ends the
// session and its buffers are freed.
func (s *session) outputLimitReached() {
	s.srv.stats.outputLimitDisconnections.Add(1)
	s.closeCause.Store(closedOutputLimit)
	s.srv.outputLimitLog.Log("client", s.remoteAddr(), "limit_bytes", s.output.Limit())
	s.hangUp()
	if c, ok := s.conn.(interface{ shutdown() }); ok {
		c.shutdown()
	}
}
