package proxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"kvproxy/internal/resp"
)

// The guard follows a client's request stream as it arrives
// (resp.RequestScanner, driven by commandReader), so an oversized or
// malformed request is refused with a Redis-style error before it is
// buffered whole.

// guardErrorWriteBudget bounds the write of a refusal to the client.
const guardErrorWriteBudget = time.Second

// guardConn is a client's connection as the proxy writes to it and closes
// it. Its commands are read by a commandReader, which refuses a bad request
// through it: the client is told why (after the replies to every earlier
// request, since they are written before the next read) and the connection
// is closed.
type guardConn struct {
	net.Conn
	// authenticated is set by the session once the client has passed AUTH
	// (or when no password is configured).
	authenticated atomic.Bool
	// told is set once the client got the error reply.
	told bool
	// stats counts the connections the guard closed, for INFO.
	stats *stats
	// refusedLog logs the refusals, a line a second at most.
	refusedLog *rateLimitedLog

	closeOnce sync.Once
	closeErr  error
}

// errRefused is what reading returns after the guard refused a request.
var errRefused = errors.New("proxy: request refused by the protocol guard")

func newGuardConn(c net.Conn, authenticated bool, st *stats, refusedLog *rateLimitedLog) *guardConn {
	g := &guardConn{Conn: c, stats: st, refusedLog: refusedLog}
	g.authenticated.Store(authenticated)
	return g
}

// Write skips empty writes: a client's goroutine flushes its reply buffer
// after every batch, and it is empty when nothing was answered yet.
func (g *guardConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return g.Conn.Write(p)
}

// refuse tells the client why its connection is being closed.
func (g *guardConn) refuse(refused *resp.RequestError) error {
	if g.told {
		return errRefused
	}
	g.told = true
	g.stats.rejectedRequests.Add(1)
	if refused.Limit {
		g.stats.rejectedRequestsTooLarge.Add(1)
	}
	g.refusedLog.Log("client", g.RemoteAddr().String(), "reason", refused.Msg)
	g.refusedLog.logger.Debug("client request refused", "client", g.RemoteAddr().String(), "reason", refused.Msg)
	_ = g.SetWriteDeadline(time.Now().Add(guardErrorWriteBudget))
	_, _ = g.Conn.Write([]byte("-ERR " + refused.Msg + "\r\n"))
	return errRefused
}

// Close closes the connection once; redcon and the server's shutdown may
// both try.
func (g *guardConn) Close() error {
	g.closeOnce.Do(func() { g.closeErr = g.Conn.Close() })
	return g.closeErr
}
