// Dialling a backend node: the Dialer the router and the failover hold
// share, with AUTH on every new connection.

package router

import (
	"context"
	"fmt"
	"net"
	"time"

	"kvproxy/internal/resp"
)

// dial connects to addr and authenticates when a password is configured,
// within DialTimeout or ctx's deadline, whichever comes first.
func (r *Router) dial(ctx context.Context, addr string) (net.Conn, error) {
	return Dialer{Password: r.cfg.Password, Timeout: r.cfg.DialTimeout}.Dial(ctx, addr)
}

// Dialer opens the connections the router and the failover hold use to a
// backend node. Made from the Config before the Router, it lets the hold,
// which follows masters on connections of its own, be built first.
type Dialer struct {
	// Password, when not empty, is sent with AUTH on every connection.
	Password string
	// Timeout bounds the dial and the AUTH round trip.
	Timeout time.Duration
}

// Dial connects to addr and authenticates when a password is set, within
// Timeout or ctx's deadline, whichever comes first. The caller owns the
// connection.
func (d Dialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	deadline := time.Now().Add(d.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	nd := net.Dialer{Deadline: deadline}
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if d.Password == "" {
		return nc, nil
	}
	if err := authenticate(nc, d.Password, deadline); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return nc, nil
}

// authenticate sends AUTH and expects +OK.
func authenticate(nc net.Conn, password string, deadline time.Time) error {
	if err := nc.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := nc.Write(resp.AppendCommand(nil, []byte("AUTH"), []byte(password))); err != nil {
		return fmt.Errorf("AUTH: %w", err)
	}
	reply, err := resp.ReadReply(nc, maxAuthReply)
	if err != nil {
		return fmt.Errorf("AUTH: %w", err)
	}
	if string(reply) != "+OK\r\n" {
		return fmt.Errorf("AUTH refused: %q", reply)
	}
	return nc.SetDeadline(time.Time{})
}

// maxAuthReply bounds the reply to AUTH: +OK, or an error line.
const maxAuthReply = 512
