// Dialling a backend node: the Dialer the router and the failover hold
// share, with AUTH on every new connection.

package router

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"kvproxy/internal/resp"
)

// dial connects to addr and authenticates when a password is configured,
// within DialTimeout or ctx's deadline, whichever comes first.
func (r *Router) dial(ctx context.Context, addr string) (net.Conn, error) {
	return Dialer{Password: r.cfg.Password, Timeout: r.cfg.DialTimeout, TLS: r.cfg.TLS}.Dial(ctx, addr)
}

// Dialer opens the connections the router and the failover hold use to a
// backend node. Made from the Config before the Router, it lets the hold,
// which follows masters on connections of its own, be built first.
type Dialer struct {
	// Password, when not empty, is sent with AUTH on every connection.
	Password string
	// Timeout bounds the dial, the TLS handshake and the AUTH round trip.
	Timeout time.Duration
	// TLS, when not nil, wraps every connection in TLS (Config.TLS).
	TLS *tls.Config
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
	if d.TLS != nil {
		if nc, err = clientTLS(ctx, nc, d.TLS, addr, deadline); err != nil {
			return nil, err
		}
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

// clientTLS runs the TLS handshake on nc as a client of addr. A handshake
// error (an unknown authority, a name mismatch) names the node, so a wrong
// --backend-tls-ca reads as such rather than as a dead node.
func clientTLS(ctx context.Context, nc net.Conn, cfg *tls.Config, addr string, deadline time.Time) (net.Conn, error) {
	cfg = tlsFor(cfg, addr)
	tc := tls.Client(nc, cfg)
	_ = nc.SetDeadline(deadline)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("%s: TLS handshake: %w", addr, err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		_ = tc.Close()
		return nil, err
	}
	return tc, nil
}

// tlsFor is cfg for dialling addr: without a ServerName, the certificate is
// checked against addr's host.
func tlsFor(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" || cfg.InsecureSkipVerify {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ServerName = host
	return cfg
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

// tlsOrNil is tlsFor for go-redis, which takes a nil Config as plain TCP.
func tlsOrNil(cfg *tls.Config, addr string) *tls.Config {
	if cfg == nil {
		return nil
	}
	return tlsFor(cfg, addr)
}
