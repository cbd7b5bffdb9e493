package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Spare prepares the clusters of one Options ahead of need, for a test
// package whose tests each want a fresh cluster of the same shape. Forming
// a cluster takes about 2 s however fast the machine: a master's
// cluster_state turns ok only cluster-node-timeout after it was given its
// slots, and replicas are announced by gossip and pings that come once a
// second. Start instead finishes a cluster whose servers were launched,
// given their slots and introduced while earlier tests ran, and launches
// another. Every test still gets a cluster nobody used before.
//
// Nothing runs in the background in this process: the servers get on with
// it by themselves, and each Start takes the prepared clusters one step
// further (attaching the replicas once the nodes know each other). A Start
// leaves no goroutine behind but the ones a running cluster keeps (waiting
// for each server, copying its stderr), so tests that count goroutines or
// allocations see nothing of the spares.
//
// The ones left when the tests end must be closed with Close, before
// goleak checks the package (their goroutines end with them).
type Spare struct {
	opts  Options
	ahead int
	mu    sync.Mutex
	next  []*prepared // oldest first
}

// prepared is a cluster a Spare launched and introduced.
type prepared struct {
	c        *Cluster
	err      error // launching or preparing it failed; c is closed
	attached bool  // its replicas replicate their masters
}

// NewSpare returns a Spare that keeps ahead clusters of opts prepared (at
// least one). It starts nothing until the first Start.
func NewSpare(opts Options, ahead int) *Spare { return &Spare{opts: opts, ahead: max(ahead, 1)} }

// Start is Start(t, opts) for the Spare's opts, finishing a cluster
// prepared earlier when there is one.
func (s *Spare) Start(t testing.TB) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.withDefaults().StartTimeout)
	defer cancel()
	s.mu.Lock()
	if len(s.next) == 0 {
		s.next = append(s.next, s.prepare(ctx))
	}
	taken := s.next[0]
	s.next = s.next[1:]
	for _, p := range s.next {
		p.attachIfKnown(ctx)
	}
	for len(s.next) < s.ahead {
		s.next = append(s.next, s.prepare(ctx))
	}
	s.mu.Unlock()
	if taken.err == nil {
		taken.err = taken.finish(ctx)
	}
	return adopt(t, taken.c, taken.err)
}

// prepare launches the servers of a cluster and introduces them.
func (s *Spare) prepare(ctx context.Context) *prepared {
	c, err := launch(ctx, s.opts)
	if err == nil {
		if err = c.introduce(ctx); err != nil {
			c.Close()
		}
	}
	return &prepared{c: c, err: err}
}

// attachIfKnown attaches the replicas if every node knows every other one
// by now, without waiting.
func (p *prepared) attachIfKnown(ctx context.Context) {
	if p.err != nil || p.attached || p.c.allKnown(ctx) != nil {
		return
	}
	if p.err = p.c.attachReplicas(ctx); p.err != nil {
		p.c.Close()
		return
	}
	p.attached = true
}

// finish does what is left of New's forming.
func (p *prepared) finish(ctx context.Context) error {
	c := p.c
	if !p.attached {
		err := c.poll(ctx, "every node to know every other", c.allKnown)
		if err == nil {
			err = c.attachReplicas(ctx)
		}
		if err != nil {
			c.Close()
			return err
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		c.Close()
		return err
	}
	c.log.Info("redis cluster ready", "masters", c.opts.Masters, "replicas_per_master", c.opts.ReplicasPerMaster, "dir", c.baseDir)
	return nil
}

// Close stops the servers prepared for tests that never came.
func (s *Spare) Close() error {
	s.mu.Lock()
	pending := s.next
	s.next = nil
	s.mu.Unlock()
	var errs []error
	for _, p := range pending {
		if p.err == nil {
			errs = append(errs, p.c.Close())
		}
	}
	return errors.Join(errs...)
}

// Runner is what a TestMain runs: *testing.M, and what WithSpares returns
// (goleak.VerifyTestMain takes either).
type Runner interface{ Run() int }

// WithSpares returns a Runner that runs m's tests and then closes the
// spares, so that goleak, checking after Run, finds none of their
// goroutines. A failure to close them fails the run.
func WithSpares(m Runner, spares ...*Spare) Runner { return withSpares{m, spares} }

type withSpares struct {
	m      Runner
	spares []*Spare
}

func (w withSpares) Run() int {
	code := w.m.Run()
	for _, s := range w.spares {
		if err := s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing a spare cluster:", err)
			code = 1
		}
	}
	return code
}
