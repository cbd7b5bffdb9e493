package cluster

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// Spare starts the clusters of one Options ahead of need, for a test
// package whose tests each want a fresh cluster of the same shape: Start
// hands the test a cluster launched while earlier tests ran and launches
// another. A master's cluster_state turns ok no sooner than 2 s after
// redis-server starts (CLUSTER_WRITABLE_DELAY), so New takes at least that
// long however fast the machine; a Spare spends the wait in the
// background. Every test still gets a cluster nobody used before.
//
// The ones left prepared when the tests end must be closed with Close,
// before goleak checks the package (their clients' goroutines end with
// them).
type Spare struct {
	opts  Options
	ahead int
	mu    sync.Mutex
	next  []chan spareCluster // the clusters being prepared, oldest first
}

type spareCluster struct {
	c   *Cluster
	err error
}

// NewSpare returns a Spare that keeps ahead clusters of opts prepared
// (at least one). It starts nothing until the first Start.
func NewSpare(opts Options, ahead int) *Spare { return &Spare{opts: opts, ahead: max(ahead, 1)} }

// Start is Start(t, opts) for the Spare's opts, with a cluster started
// earlier when there is one.
func (s *Spare) Start(t testing.TB) *Cluster {
	t.Helper()
	s.mu.Lock()
	if len(s.next) == 0 {
		s.next = append(s.next, s.launch())
	}
	ready := s.next[0]
	s.next = s.next[1:]
	for len(s.next) < s.ahead {
		s.next = append(s.next, s.launch())
	}
	s.mu.Unlock()
	r := <-ready
	if r.err == nil {
		// It was healthy when formed; make sure it still is.
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.withDefaults().StartTimeout)
		defer cancel()
		if r.err = r.c.WaitHealthy(ctx); r.err != nil {
			r.c.Close()
		}
	}
	return adopt(t, r.c, r.err)
}

// launch starts preparing a cluster in the background.
func (s *Spare) launch() chan spareCluster {
	ch := make(chan spareCluster, 1)
	go func() {
		c, err := New(context.Background(), s.opts)
		ch <- spareCluster{c, err}
	}()
	return ch
}

// Close closes the clusters being prepared, once they are ready.
func (s *Spare) Close() error {
	s.mu.Lock()
	pending := s.next
	s.next = nil
	s.mu.Unlock()
	var errs []error
	for _, ready := range pending {
		if r := <-ready; r.err == nil {
			errs = append(errs, r.c.Close())
		}
	}
	return errors.Join(errs...)
}
