package failover

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a Clock that moves only when the test advances it; due
// timers run on the advancing goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c   *fakeClock
	at  time.Time
	f   func()
	ran bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, p := range t.c.timers {
		if p == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return !t.ran
		}
	}
	return false
}

// dueWithin counts the timers due within d.
func (c *fakeClock) dueWithin(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.at.After(c.now.Add(d)) {
			n++
		}
	}
	return n
}

// advance moves the clock by d and runs the timers due by then, in order.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ran = true
			due = append(due, t)
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// newTestBuffer is a Buffer on a fake clock that follows no master.
func newTestBuffer(t *testing.T, maxBytes int64) (*Buffer, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	cfg := DefaultConfig()
	cfg.Clock = clock
	if maxBytes > 0 {
		cfg.MaxBytes = maxBytes
	}
	b, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b, clock
}

// isDone reports whether t was released or expired, without waiting.
func isDone(t *Ticket) bool {
	select {
	case <-t.Done():
		return true
	default:
		return false
	}
}

// waitDone waits for the drain goroutine to release t.
func waitDone(t *testing.T, ticket *Ticket) {
	t.Helper()
	select {
	case <-ticket.Done():
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the ticket was never released")
	}
}

// assertConserved checks held = released + expired + abandoned + held now,
// in total and for every master, and that the totals are the masters' sum.
func assertConserved(t *testing.T, b *Buffer) {
	t.Helper()
	rep := b.Report()
	check := func(who string, c Counts) {
		assert.Equal(t, c.Held, c.Released+c.Expired+c.Abandoned+c.HeldNow, "%s: held = released + expired + abandoned + held now: %+v", who, c)
	}
	check("total", rep.Totals)
	var sum Counts
	for _, m := range rep.Masters {
		check(m.Master, m.Holds)
		sum.Held += m.Holds.Held
		sum.Released += m.Holds.Released
		sum.Expired += m.Holds.Expired
		sum.Abandoned += m.Holds.Abandoned
		sum.Full += m.Holds.Full
	}
	assert.Equal(t, rep.Totals.Held, sum.Held)
	assert.Equal(t, rep.Totals.Released, sum.Released)
	assert.Equal(t, rep.Totals.Expired, sum.Expired)
	assert.Equal(t, rep.Totals.Abandoned, sum.Abandoned)
	assert.Equal(t, rep.Totals.Full, sum.Full)
}

// Every pair of states is either a listed transition, which moveLocked
// makes, or not, and then it panics.
func TestTransitionsOutsideTheTablePanic(t *testing.T) {
	states := []State{StateIdle, StateHolding, StateOutage, StateDraining}
	listed := 0
	for _, from := range states {
		for _, to := range states {
			b, _ := newTestBuffer(t, 0)
			b.mu.Lock()
			m := b.masterLocked("m:1")
			m.state = from
			if from != StateIdle {
				b.active.Add(1)
			}
			move := func() { b.moveLocked(m, to) }
			if transitions[[2]State{from, to}] {
				listed++
				assert.NotPanics(t, move, "%s -> %s is listed", from, to)
				assert.Equal(t, to, m.state)
			} else {
				assert.PanicsWithValue(t, fmt.Sprintf("failover: hold of m:1: no transition from %s to %s", from, to), move)
				assert.Equal(t, from, m.state, "a refused transition changes nothing")
			}
			b.mu.Unlock()
		}
	}
	assert.Equal(t, 9, listed)
}

// What the router and the follower observe walks a master through every
// listed transition, and the fast path is back once it is idle.
func TestEventsWalkEveryListedTransition(t *testing.T) {
	b, clock := newTestBuffer(t, 0)
	const m = "m:1"
	deadline := clock.Now().Add(time.Hour)
	step := func(ev Event, want State) {
		t.Helper()
		b.Observe(m, ev)
		assert.Equal(t, want, b.State(m), "after event %d", ev)
	}
	// A ticket that is never said Sent keeps the drain in Draining (the
	// fake clock never lets its grace pass).
	hold := func() *Ticket {
		t.Helper()
		ticket := b.Admit(m, true, deadline)
		require.NotNil(t, ticket)
		require.True(t, ticket.Join(10))
		return ticket
	}
	assert.Nil(t, b.Admit(m, true, deadline), "idle: sent at once")
	step(EventWritesPaused, StateHolding) // idle -> holding
	assert.Nil(t, b.Admit(m, false, deadline), "holding: reads go")
	first := hold()
	step(EventOutageBegan, StateOutage)     // holding -> outage
	step(EventOutageEnded, StateHolding)    // outage -> holding
	step(EventWritesResumed, StateDraining) // holding -> draining
	waitDone(t, first)
	step(EventWritesPaused, StateHolding) // draining -> holding
	second := hold()
	step(EventWritesResumed, StateDraining)
	step(EventOutageBegan, StateOutage) // draining -> outage
	read := b.Admit(m, false, deadline)
	require.NotNil(t, read, "outage: reads are held too")
	step(EventOutageEnded, StateDraining) // outage -> draining
	first.Sent()
	for _, ticket := range []*Ticket{second, read} {
		waitDone(t, ticket)
		ticket.Sent()
	}
	require.Eventually(t, func() bool { return b.State(m) == StateIdle }, 10*time.Second, time.Millisecond, "draining -> idle")
	assert.Zero(t, b.active.Load(), "the fast path is back")
	step(EventOutageBegan, StateOutage) // idle -> outage
	assert.Equal(t, uint64(3), b.Report().Of(m).Outages)
	assertConserved(t, b)
}

// A held request's budget runs on the buffer's clock: it expires when the
// clock passes its deadline, not before, with no sleep in between.
func TestBudgetExpiresOnTheBuffersClock(t *testing.T) {
	b, clock := newTestBuffer(t, 0)
	b.Observe("m:1", EventWritesPaused)
	ticket := b.Admit("m:1", true, clock.Now().Add(time.Second))
	require.NotNil(t, ticket)
	require.True(t, ticket.Join(10))
	require.True(t, ticket.Join(20))
	clock.advance(999 * time.Millisecond)
	assert.False(t, isDone(ticket), "the budget is not spent yet")
	assert.Equal(t, uint64(2), b.Report().Totals.HeldNow)
	clock.advance(time.Millisecond)
	require.True(t, isDone(ticket), "expired on the clock's tick")
	assert.True(t, ticket.Expired())
	assert.False(t, ticket.Released())
	assert.False(t, ticket.Outage())
	st := b.Report().Totals
	assert.Equal(t, uint64(2), st.Expired, "both requests of the round expired with their ticket: %+v", st)
	assert.Equal(t, time.Second, st.Longest)
	assertConserved(t, b)

	// Expired in an outage, the ticket says so: the router answers that
	// the backend is unreachable.
	b.Observe("m:2", EventOutageBegan)
	unreachable := b.Admit("m:2", false, clock.Now().Add(time.Second))
	require.NotNil(t, unreachable)
	require.True(t, unreachable.Join(5))
	clock.advance(time.Second)
	assert.True(t, unreachable.Expired())
	assert.True(t, unreachable.Outage())
	assertConserved(t, b)
}

// The drain releases tickets one at a time in the order they were held,
// across callers: the next only once the previous one's owner queued its
// requests, or once the grace passed for an owner that never says so.
func TestDrainReleasesTicketsInTheOrderTheyWereHeld(t *testing.T) {
	b, clock := newTestBuffer(t, 0)
	const m = "m:1"
	b.Observe(m, EventWritesPaused)
	var tickets []*Ticket
	for range 5 {
		ticket := b.Admit(m, true, clock.Now().Add(time.Hour))
		require.NotNil(t, ticket)
		require.True(t, ticket.Join(10))
		tickets = append(tickets, ticket)
	}
	b.Observe(m, EventWritesResumed)
	for i, ticket := range tickets[:4] {
		waitDone(t, ticket)
		assert.True(t, ticket.Released(), "ticket %d", i)
		for j, later := range tickets[i+1:] {
			assert.False(t, isDone(later), "ticket %d released before ticket %d was sent", i+1+j, i)
		}
		if i == 2 {
			// This owner never says Sent: the grace lets the next go.
			require.Eventually(t, func() bool { return clock.dueWithin(b.cfg.DrainGrace) == 1 }, 10*time.Second, time.Millisecond,
				"the drain waits out its grace")
			clock.advance(b.cfg.DrainGrace)
			continue
		}
		ticket.Sent()
	}
	waitDone(t, tickets[4])
	// A write admitted while draining queues behind the held ones.
	behind := b.Admit(m, true, clock.Now().Add(time.Hour))
	require.NotNil(t, behind, "a write admitted while draining waits its turn")
	require.True(t, behind.Join(10))
	tickets[4].Sent()
	waitDone(t, behind)
	behind.Sent()
	require.Eventually(t, func() bool { return b.State(m) == StateIdle }, 10*time.Second, time.Millisecond)
	st := b.Report().Totals
	assert.Equal(t, uint64(6), st.Released)
	assertConserved(t, b)
}

// Held = released + expired + abandoned + held now at every step, in total
// and per master; requests past MaxBytes are counted full, not held.
func TestCountsAreConserved(t *testing.T) {
	b, clock := newTestBuffer(t, 100)
	b.Observe("a:1", EventWritesPaused)
	b.Observe("b:1", EventOutageBegan)
	admit := func(master string, budget time.Duration, sizes ...int) *Ticket {
		t.Helper()
		ticket := b.Admit(master, true, clock.Now().Add(budget))
		require.NotNil(t, ticket)
		for _, size := range sizes {
			ticket.Join(size)
		}
		assertConserved(t, b)
		return ticket
	}
	expiring := admit("a:1", time.Second, 10, 10)
	abandoned := admit("a:1", time.Hour, 20)
	released := admit("b:1", time.Hour, 30, 20)
	full := admit("b:1", time.Hour, 11) // 10+10+20+30+20+11 > 100
	assert.Equal(t, uint64(1), b.Report().Totals.Full)
	abandoned.Abandon()
	assertConserved(t, b)
	clock.advance(time.Second)
	assert.True(t, expiring.Expired())
	assertConserved(t, b)
	b.Observe("b:1", EventOutageEnded)
	waitDone(t, released)
	released.Sent()
	waitDone(t, full) // empty, released in its turn
	full.Sent()
	require.Eventually(t, func() bool { return b.State("b:1") == StateIdle }, 10*time.Second, time.Millisecond)
	assertConserved(t, b)
	st := b.Report().Totals
	// The abandoned request left at once, the expired and released ones
	// after the second the clock moved.
	var waits Durations
	waits.Observe(0, 1)
	waits.Observe(time.Second, 4)
	assert.Equal(t, Counts{Held: 5, Released: 2, Expired: 2, Abandoned: 1, Full: 1, Longest: time.Second, Waits: waits}, st)
	// The bytes left with the tickets: the cap is whole again.
	whole := admit("a:1", time.Hour, 100)
	assert.Equal(t, uint64(1), b.Report().Totals.Full, "100 bytes fit once nothing is held")
	whole.Abandon()
	assertConserved(t, b)
}

// A request joining a ticket the drain released before its round was all
// admitted is counted held and released at once.
func TestJoiningAReleasedTicket(t *testing.T) {
	b, clock := newTestBuffer(t, 0)
	b.Observe("m:1", EventWritesPaused)
	// A ticket held across the pause keeps the drain waiting for its Sent
	// (the test clock never ends its grace), so the hold is still draining
	// when the next write arrives; with nothing held the drain could end
	// the hold before that write.
	first := b.Admit("m:1", true, clock.Now().Add(time.Hour))
	require.NotNil(t, first, "holding: a write queues")
	require.True(t, first.Join(1))
	b.Observe("m:1", EventWritesResumed)
	waitDone(t, first)
	ticket := b.Admit("m:1", true, clock.Now().Add(time.Hour))
	require.NotNil(t, ticket, "draining: a write queues")
	first.Sent()
	waitDone(t, ticket)
	require.True(t, ticket.Join(10))
	ticket.Sent()
	st := b.Report().Totals
	assert.Equal(t, uint64(2), st.Held)
	assert.Equal(t, uint64(2), st.Released)
	assertConserved(t, b)
}

// Close lets every hold go: held requests are released.
func TestCloseReleasesWhatIsHeld(t *testing.T) {
	b, clock := newTestBuffer(t, 0)
	b.Observe("m:1", EventWritesPaused)
	ticket := b.Admit("m:1", true, clock.Now().Add(time.Hour))
	require.True(t, ticket.Join(1))
	b.Close()
	assert.True(t, ticket.Released())
	assert.Equal(t, StateIdle, b.State("m:1"))
	assertConserved(t, b)
}

func TestNewRefusesAnUnusableConfig(t *testing.T) {
	upper := DefaultConfig()
	upper.MaxBytes = MaxMaxBytes
	b, err := New(upper)
	require.NoError(t, err, "the bound itself is valid")
	b.Close()
	for _, bad := range []func(*Config){
		func(c *Config) { c.MaxBytes = 0 },
		func(c *Config) { c.MaxBytes = MaxMaxBytes + 1 },
		func(c *Config) { c.DrainGrace = 0 },
		func(c *Config) { c.AckTimeout = 0 },
		func(c *Config) { c.Interval = 0 },
		func(c *Config) { c.MaxFollow = 0 },
		func(c *Config) { c.Clock = nil },
		func(c *Config) { c.Logger = nil },
	} {
		cfg := DefaultConfig()
		bad(&cfg)
		_, err := New(cfg)
		assert.Error(t, err)
	}
}

// A handover's notice waits for the router's Ack before the writes are
// released, at most AckTimeout on the buffer's clock.
func TestHandoverNoticeWaitsForTheRoutersAck(t *testing.T) {
	b, clock := newTestBuffer(t, 0)
	notified := func() chan struct{} {
		done := make(chan struct{})
		go func() {
			b.notify(Notice{Kind: NoticeHandedOver, Master: "m:1", Replica: "r:1"}, true)
			close(done)
		}()
		return done
	}
	done := notified()
	n := <-b.Notices()
	assert.Equal(t, NoticeHandedOver, n.Kind)
	assert.Equal(t, "r:1", n.Replica)
	select {
	case <-done:
		t.Fatal("the notice did not wait for the router")
	default:
	}
	n.Ack()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the Ack did not end the wait")
	}

	done = notified()
	<-b.Notices() // never acknowledged
	require.Eventually(t, func() bool { return clock.dueWithin(b.cfg.AckTimeout) == 1 }, 10*time.Second, time.Millisecond)
	clock.advance(b.cfg.AckTimeout)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the wait outlasted AckTimeout")
	}
}
