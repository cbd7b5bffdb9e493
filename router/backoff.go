package router

import (
	"context"
	"time"
)

// Backoff paces the resends of one request the backends refused without
// running it: RetryBackoff before the first, then each wait doubles up to
// MaxRetryBackoff. The router paces its rounds with it, and the proxy the
// resends of its dedicated connections (transactions, blocking commands).
type Backoff struct {
	next, max time.Duration
}

// Backoff is the pacing the Config asks for.
func (c Config) Backoff() Backoff {
	return Backoff{next: c.RetryBackoff, max: c.MaxRetryBackoff}
}

// Backoff is the router's configured pacing of resends.
func (r *Router) Backoff() Backoff { return r.cfg.Backoff() }

// Wait sleeps before the next resend; false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	timer := time.NewTimer(b.next)
	defer timer.Stop()
	b.next = min(2*b.next, b.max)
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
