package failover_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/failover"
)

// authorityRun is a topology authority's failover under the test's control:
// it reports when it started and returns what the test sends it, after
// doing what the test gives it to do (the roles' swap, say).
type authorityRun struct {
	started chan struct{}
	finish  chan func() error
}

func newAuthorityRun() *authorityRun {
	return &authorityRun{started: make(chan struct{}), finish: make(chan func() error, 1)}
}

func (a *authorityRun) run(ctx context.Context) error {
	close(a.started)
	select {
	case end := <-a.finish:
		return end()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func awaitOutcome(t *testing.T, done <-chan failover.Outcome) failover.Outcome {
	t.Helper()
	select {
	case out := <-done:
		return out
	case <-time.After(raceWait):
		t.Fatal("no outcome")
		return failover.Outcome{}
	}
}

// While the authority fails A over (released Kvrocks: its controller's timed
// CLIENT PAUSE), the proxy sends A no write: one A took after the pause ran
// out, before it turned replica, would be lost. Once the authority is done
// the held writes go straight to B.
func TestAuthorityFailoverHoldsWritesUntilTheNewMasterServes(t *testing.T) {
	f := newFailoverRig(t)
	a := newAuthorityRun()
	done := f.holds.FollowAuthorityFailover(f.a.addr, f.b.addr, a.run)
	<-a.started
	f.waitReport(func(r failover.MasterReport) bool { return r.Holding }, "holding")
	w := f.write(1, "k1", "k2", "k3")
	f.waitHeld(3)
	assert.Empty(t, f.a.executedKeys(), "the master got writes while its shard was failed over")

	a.finish <- func() error { f.shard.update(f.succeed); return nil }
	f.requireAllOK(f.b, w)
	assert.Empty(t, f.a.executedKeys())
	assert.Zero(t, f.rt.Stats().Moved, "the held writes went straight to B: %+v", f.rt.Stats())
	out := awaitOutcome(t, done)
	require.NoError(t, out.Err)
	assert.Equal(t, failover.PhaseSuccess, out.Handover.Final)
	f.assertHoldsAccounted()
}

// An authority that could not fail the shard over leaves A its master: the
// held writes go to A, and the outcome says why.
func TestFailedAuthorityFailoverSendsHeldWritesToTheMaster(t *testing.T) {
	f := newFailoverRig(t)
	a := newAuthorityRun()
	done := f.holds.FollowAuthorityFailover(f.a.addr, f.b.addr, a.run)
	<-a.started
	f.waitReport(func(r failover.MasterReport) bool { return r.Holding }, "holding")
	w := f.write(1, "k1", "k2")
	f.waitHeld(2)

	refused := errors.New("replication sync timeout")
	a.finish <- func() error { return refused }
	f.requireAllOK(f.a, w)
	out := awaitOutcome(t, done)
	require.ErrorIs(t, out.Err, refused)
	assert.Equal(t, failover.PhaseFailed, out.Handover.Final)
	f.assertHoldsAccounted()
}

// A second authority failover of a master already followed is refused, not
// merged into the first: its run would never be made.
func TestAuthorityFailoverOfAFollowedMasterIsRefused(t *testing.T) {
	f := newFailoverRig(t)
	a := newAuthorityRun()
	first := f.holds.FollowAuthorityFailover(f.a.addr, f.b.addr, a.run)
	<-a.started
	f.waitReport(func(r failover.MasterReport) bool { return r.Following }, "following")
	second := awaitOutcome(t, f.holds.FollowAuthorityFailover(f.a.addr, f.b.addr, func(context.Context) error {
		t.Error("the second failover ran")
		return nil
	}))
	assert.ErrorIs(t, second.Err, failover.ErrFollowedAlready)
	a.finish <- func() error { f.shard.update(f.succeed); return nil }
	require.NoError(t, awaitOutcome(t, first).Err)
}
