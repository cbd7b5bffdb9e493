// Serving plain and TLS clients at once: Listener merges a plain TCP
// listener and a TLS one into the one listener Serve takes, and runs the TLS
// handshakes off the accept loop.

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// TLSHandshakeTimeout bounds a client's TLS handshake: a client that
// connects and sends nothing holds a handshake slot that long at most.
const TLSHandshakeTimeout = 10 * time.Second

// maxPendingHandshakes bounds the TLS handshakes in progress; past it the
// TLS listener stops accepting until one ends, so a flood of silent
// connections waits in the kernel's backlog, not in the proxy's memory.
const maxPendingHandshakes = 1024

// Listener accepts on a plain listener, a TLS listener, or both, for Serve.
// A TLS client is handed to Serve once its handshake succeeded (a client
// certificate verified, when the tls.Config asks for one): a *tls.Conn
// has no socket of its own to poll, so it is served in goroutine mode,
// while plain clients keep the event loops.
type Listener struct {
	plain, tlsLn net.Listener
	tlsConfig    *tls.Config
	logger       *slog.Logger

	// accepted carries a connection, or an accept error, to Accept. It is
	// unbuffered: after a failed accept, an inner listener waits for Serve
	// to pause and call Accept again instead of spinning.
	accepted chan acceptResult
	done     chan struct{}
	close    sync.Once
	wg       sync.WaitGroup
	// handshaking are the TLS connections in a handshake, closed by Close.
	mu          sync.Mutex
	handshaking map[net.Conn]struct{}
	slots       chan struct{}
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// NewListener serves plain (when not nil) and tlsLn (when not nil) with
// cfg; at least one is needed. Failed handshakes are logged at Debug.
func NewListener(plain, tlsLn net.Listener, cfg *tls.Config, logger *slog.Logger) (*Listener, error) {
	switch {
	case plain == nil && tlsLn == nil:
		return nil, errors.New("proxy: NewListener needs a plain or a TLS listener")
	case tlsLn != nil && cfg == nil:
		return nil, errors.New("proxy: a TLS listener needs a tls.Config")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{plain: plain, tlsLn: tlsLn, tlsConfig: cfg, logger: logger,
		accepted: make(chan acceptResult), done: make(chan struct{}),
		handshaking: make(map[net.Conn]struct{}), slots: make(chan struct{}, maxPendingHandshakes)}
	if plain != nil {
		l.wg.Add(1)
		go l.acceptLoop(plain, false)
	}
	if tlsLn != nil {
		l.wg.Add(1)
		go l.acceptLoop(tlsLn, true)
	}
	return l, nil
}

// Accept returns the next plain connection or handshaken TLS connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case r := <-l.accepted:
		return r.conn, r.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops both listeners and the handshakes in progress, and returns
// once every goroutine of the Listener ended.
func (l *Listener) Close() error {
	var err error
	l.close.Do(func() {
		close(l.done)
		for _, ln := range []net.Listener{l.plain, l.tlsLn} {
			if ln != nil {
				if e := ln.Close(); e != nil && !errors.Is(e, net.ErrClosed) {
					err = e
				}
			}
		}
		l.mu.Lock()
		for nc := range l.handshaking {
			_ = nc.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return err
}

// Addr is the plain listener's address, else the TLS one's.
func (l *Listener) Addr() net.Addr {
	if l.plain != nil {
		return l.plain.Addr()
	}
	return l.tlsLn.Addr()
}

// TLSAddr is the TLS listener's address, nil without one.
func (l *Listener) TLSAddr() net.Addr {
	if l.tlsLn == nil {
		return nil
	}
	return l.tlsLn.Addr()
}

func (l *Listener) acceptLoop(ln net.Listener, secure bool) {
	defer l.wg.Done()
	for {
		if secure {
			select {
			case l.slots <- struct{}{}:
			case <-l.done:
				return
			}
		}
		nc, err := ln.Accept()
		if err != nil {
			if secure {
				<-l.slots
			}
			if !l.deliver(acceptResult{err: err}) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !secure {
			if !l.deliver(acceptResult{conn: nc}) {
				_ = nc.Close()
				return
			}
			continue
		}
		l.mu.Lock()
		select {
		case <-l.done:
			// Close already closed the handshakes it knew of.
			l.mu.Unlock()
			_ = nc.Close()
			return
		default:
		}
		l.handshaking[nc] = struct{}{}
		l.mu.Unlock()
		l.wg.Add(1)
		go l.handshake(nc)
	}
}

// deliver hands r to Accept; false when the Listener closed first.
func (l *Listener) deliver(r acceptResult) bool {
	select {
	case l.accepted <- r:
		return true
	case <-l.done:
		return false
	}
}

// handshake runs the server side of nc's TLS handshake within
// TLSHandshakeTimeout and hands the client to Accept.
func (l *Listener) handshake(nc net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(nc, l.tlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), TLSHandshakeTimeout)
	_ = nc.SetDeadline(time.Now().Add(TLSHandshakeTimeout))
	err := tc.HandshakeContext(ctx)
	cancel()
	if err == nil {
		err = nc.SetDeadline(time.Time{})
	}
	l.mu.Lock()
	delete(l.handshaking, nc)
	l.mu.Unlock()
	<-l.slots
	if err != nil {
		l.logger.Debug("TLS handshake failed: client refused", "client", nc.RemoteAddr().String(), "err", err)
		_ = nc.Close()
		return
	}
	if !l.deliver(acceptResult{conn: tc}) {
		_ = tc.Close()
	}
}
