package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config says how a Buffer holds requests and follows failing-over masters.
type Config struct {
	// MaxBytes caps the bytes of all requests held at once; a request that
	// would pass it is refused (Ticket.Join), not held.
	MaxBytes int64
	// DrainGrace bounds the drain's wait for a released ticket's owner to
	// queue its requests (Ticket.Sent) before the next ticket is released.
	DrainGrace time.Duration
	// AckTimeout bounds the wait, before a handed-over master's writes are
	// released, for the router to route its slots to the new master.
	AckTimeout time.Duration
	// Dial opens an authenticated connection to a node, over which the
	// master being followed is polled. Nil: no master is followed (TRYAGAIN
	// starts no hold, Follow ends at once with ErrNoDial).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Interval is the time between two polls of a master being followed.
	Interval time.Duration
	// MaxFollow bounds one handover: past it the master's writes are let go
	// whatever its state (they then meet the master's own answer).
	MaxFollow time.Duration
	// Clock runs the budgets and the drain's grace.
	Clock Clock
	// Logger receives the holds' transitions and the handovers followed.
	Logger *slog.Logger
}

// MaxMaxBytes bounds Config.MaxBytes (16 GiB).
const MaxMaxBytes = 16 << 30

// DefaultConfig holds at most 64 MiB, polls every 2 ms and follows a
// handover for at most 30 s. Set Dial to follow masters.
func DefaultConfig() Config {
	return Config{MaxBytes: 64 << 20, DrainGrace: 2 * time.Millisecond, AckTimeout: time.Second,
		Interval: 2 * time.Millisecond, MaxFollow: 30 * time.Second, Clock: realClock{},
		Logger: slog.New(slog.DiscardHandler)}
}

// State is where a master's hold stands.
type State uint8

const (
	// StateIdle: nothing held, requests go at once.
	StateIdle State = iota
	// StateHolding: the master's writes are held (its failover pauses
	// them: pause_write, wait_sync or switching); reads go.
	StateHolding
	// StateOutage: every request is held (the master is unreachable).
	StateOutage
	// StateDraining: the hold ended; held requests are released one
	// ticket at a time in the order they were held, and writes admitted
	// meanwhile queue behind them.
	StateDraining
)

var stateNames = [...]string{"idle", "holding", "outage", "draining"}

func (s State) String() string { return stateNames[s] }

// transitions lists the moves a master's hold may make; any other panics.
// A hold always ends through Draining, even with nothing queued.
var transitions = map[[2]State]bool{
	{StateIdle, StateHolding}:     true,
	{StateIdle, StateOutage}:      true,
	{StateHolding, StateOutage}:   true,
	{StateHolding, StateDraining}: true,
	{StateOutage, StateHolding}:   true,
	{StateOutage, StateDraining}:  true,
	{StateDraining, StateHolding}: true,
	{StateDraining, StateOutage}:  true,
	{StateDraining, StateIdle}:    true,
}

// Event is what the router (or the follower) observed of a master.
type Event uint8

const (
	// EventTryAgain: the master answered -TRYAGAIN; a failover may have
	// begun there, so it is followed (when Config.Dial is set).
	EventTryAgain Event = iota
	// EventWritesPaused / EventWritesResumed: the master refuses writes
	// for a failover, or takes them again.
	EventWritesPaused
	EventWritesResumed
	// EventOutageBegan / EventOutageEnded: the master is unreachable, or
	// answers again (or serves no slot any more).
	EventOutageBegan
	EventOutageEnded
)

// NoticeKind says what a Notice asks of the router.
type NoticeKind uint8

const (
	// NoticeWarm: open connections to Replica, about to be promoted.
	NoticeWarm NoticeKind = iota
	// NoticeHandedOver: Master's failover succeeded; route its slots to
	// Replica ("" when not known: the topology's only replica of Master),
	// then Ack, so the writes released next go straight there.
	NoticeHandedOver
)

// Notice is something the router is told through Notices.
type Notice struct {
	Kind            NoticeKind
	Master, Replica string
	ack             chan struct{}
}

// Ack says the notice was acted on. Call it once per notice.
func (n Notice) Ack() {
	if n.ack != nil {
		close(n.ack)
	}
}

// Counts are held requests counted by how they left the hold. Held =
// Released + Expired + Abandoned + HeldNow.
type Counts struct {
	// Held counts requests held; Released were sent once their hold ended,
	// Expired were answered TRYAGAIN past their budget, Abandoned were
	// given up by their caller; HeldNow wait now.
	Held, Released, Expired, Abandoned, HeldNow uint64
	// Full counts requests refused instead of held, past MaxBytes.
	Full uint64
	// Longest is the longest wait of a request that left a hold, and
	// Waits the waits of the requests that left one (a request that joined
	// a ticket already released, having waited nothing, is not in it);
	// Waits is kept in the Report's Totals only, not per master.
	Longest time.Duration
	Waits   Durations
}

// outcome is how a ticket left its master's queue.
type outcome uint8

const (
	waiting outcome = iota
	released
	expired
	abandoned
)

// Ticket is one caller's round to one held master: its requests share one
// budget and one fate, and leave the queue together, in the order tickets
// were handed out.
type Ticket struct {
	b        *Buffer
	m        *master
	since    time.Time
	requests uint64
	bytes    int64
	// outage: the master was unreachable while the ticket waited.
	outage bool
	// outcome is written under b.mu; done is closed when it leaves waiting.
	outcome outcome
	done    chan struct{}
	timer   Timer
	sent    chan struct{}
	sendOne sync.Once
}

// Join adds a request of size bytes to the ticket; false when it would
// pass MaxBytes: the request is then not held (counted Full) and must be
// refused.
func (t *Ticket) Join(size int) bool {
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.outcome == waiting {
		if b.heldBytes+int64(size) > b.cfg.MaxBytes {
			t.m.counts.Full++
			b.totals.Full++
			return false
		}
		b.heldBytes += int64(size)
		t.bytes += int64(size)
	}
	t.requests++
	t.m.counts.Held++
	b.totals.Held++
	// A ticket released (or expired) before its round was all admitted
	// carries the late request out at once.
	switch t.outcome {
	case released:
		t.m.counts.Released++
		b.totals.Released++
	case expired:
		t.m.counts.Expired++
		b.totals.Expired++
	}
	return true
}

// Done is closed when the ticket was released or expired.
func (t *Ticket) Done() <-chan struct{} { return t.done }

// Released reports that the hold let the ticket go: send its requests,
// then call Sent.
func (t *Ticket) Released() bool { return t.state() == released }

// Expired reports that the ticket's budget ran out first: its requests must
// be answered that they were not executed.
func (t *Ticket) Expired() bool { return t.state() == expired }

// Outage reports that the master was unreachable while the ticket waited.
func (t *Ticket) Outage() bool {
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	return t.outage
}

// state reads the outcome without the Buffer's lock: it is written once,
// before done is closed, so the router asking each call of a drained round
// does not contend with the drain.
func (t *Ticket) state() outcome {
	select {
	case <-t.done:
		return t.outcome
	default:
		return waiting
	}
}

// Sent says the released ticket's requests are queued on their backend
// connections (or will not be sent): the drain releases the next ticket.
func (t *Ticket) Sent() { t.sendOne.Do(func() { close(t.sent) }) }

// Abandon says the ticket's caller gave up: requests still waiting are
// counted abandoned and never sent.
func (t *Ticket) Abandon() {
	b := t.b
	b.mu.Lock()
	if t.outcome == waiting {
		t.m.queue = slices.DeleteFunc(t.m.queue, func(q *Ticket) bool { return q == t })
		b.leaveLocked(t, abandoned)
	}
	b.mu.Unlock()
	t.Sent()
}

// Buffer holds the requests of failing-over or unreachable masters, per
// master, and follows the failovers that hold them (vitess vtgate/buffer).
// The router asks it before sending (Admit) and tells it what it saw
// (Observe); it tells the router what to route (Notices).
type Buffer struct {
	cfg Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// active counts the masters not idle: Admit costs one atomic load
	// while none is.
	active atomic.Int32

	mu        sync.Mutex
	masters   map[string]*master
	heldBytes int64
	totals    Counts
	// pauses are Report.Pauses.
	pauses [2]Durations

	notices chan Notice
}

// master is what the Buffer knows of one master.
type master struct {
	addr  string
	state State
	// writesPaused and unreachable are what was observed; the state
	// follows from them (see update).
	writesPaused, unreachable bool
	// queue holds the tickets waiting, in the order they were handed out.
	queue []*Ticket
	// draining is set while the drain goroutine runs.
	draining bool
	counts   Counts
	outages  uint64
	since    time.Time

	// What following the master's handovers found (see follow.go).
	following bool
	handed    chan struct{}
	waiters   []chan<- Outcome
	phase     Phase
	// currentStart is when the handover being followed was first seen.
	currentStart time.Time
	last         Handover
	handovers    int
	succeeded    int
	longestPause time.Duration
}

// ErrHoldsClosed is the Outcome.Err of a follow asked for after Close.
var ErrHoldsClosed = errors.New("failover: holds closed")

// New returns a Buffer configured by cfg; Close stops it.
func New(cfg Config) (*Buffer, error) {
	switch {
	case cfg.MaxBytes <= 0 || cfg.MaxBytes > MaxMaxBytes:
		return nil, errors.New("failover: MaxBytes must be 1 to " + strconv.FormatInt(MaxMaxBytes, 10))
	case cfg.DrainGrace <= 0 || cfg.AckTimeout <= 0 || cfg.Interval <= 0 || cfg.MaxFollow <= 0:
		return nil, errors.New("failover: DrainGrace, AckTimeout, Interval and MaxFollow must be positive")
	case cfg.Clock == nil || cfg.Logger == nil:
		return nil, errors.New("failover: Config needs a Clock and a Logger")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Buffer{cfg: cfg, ctx: ctx, cancel: cancel, masters: make(map[string]*master),
		notices: make(chan Notice, 64)}, nil
}

// SetMaxBytes changes Config.MaxBytes while serving: requests held past a
// lower cap stay held, and new ones are refused until the hold is under it.
func (b *Buffer) SetMaxBytes(n int64) error {
	if n <= 0 || n > MaxMaxBytes {
		return errors.New("failover: MaxBytes must be 1 to " + strconv.FormatInt(MaxMaxBytes, 10))
	}
	b.mu.Lock()
	b.cfg.MaxBytes = n
	b.mu.Unlock()
	return nil
}

// Close stops following masters and releases every held request.
func (b *Buffer) Close() {
	b.cancel()
	b.mu.Lock()
	for _, m := range b.masters {
		m.writesPaused, m.unreachable = false, false
		for _, t := range m.queue {
			b.leaveLocked(t, released)
		}
		m.queue = nil
		if m.state != StateIdle {
			if m.state != StateDraining {
				b.moveLocked(m, StateDraining)
			}
			b.moveLocked(m, StateIdle)
		}
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Notices is what the router must act on: replicas to warm and masters
// handed over. The router reads it on a goroutine of its own.
func (b *Buffer) Notices() <-chan Notice { return b.notices }

// Admit is asked before a request to master is sent, with the deadline of
// its budget. Nil: send it now. Otherwise the request waits for the ticket
// (Join it); the caller's later requests of the round to master join the
// same ticket, so they keep their order and share its fate.
func (b *Buffer) Admit(addr string, write bool, deadline time.Time) *Ticket {
	if b.active.Load() == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.masters[addr]
	if m == nil {
		return nil
	}
	switch m.state {
	case StateIdle:
		return nil
	case StateHolding, StateDraining:
		if !write {
			return nil
		}
	}
	now := b.cfg.Clock.Now()
	t := &Ticket{b: b, m: m, since: now, outage: m.state == StateOutage, done: make(chan struct{}), sent: make(chan struct{})}
	m.queue = append(m.queue, t)
	t.timer = b.cfg.Clock.AfterFunc(deadline.Sub(now), func() { b.expire(t) })
	return t
}

// expire answers t, past its budget, unless it left the queue already.
func (b *Buffer) expire(t *Ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.outcome != waiting {
		return
	}
	t.m.queue = slices.DeleteFunc(t.m.queue, func(q *Ticket) bool { return q == t })
	b.leaveLocked(t, expired)
}

// leaveLocked takes t out of the hold and counts how; b.mu is held and t
// is out of its master's queue.
func (b *Buffer) leaveLocked(t *Ticket, how outcome) {
	t.outcome = how
	t.timer.Stop()
	b.heldBytes -= t.bytes
	m := t.m
	switch how {
	case released:
		m.counts.Released += t.requests
		b.totals.Released += t.requests
	case expired:
		m.counts.Expired += t.requests
		b.totals.Expired += t.requests
	case abandoned:
		m.counts.Abandoned += t.requests
		b.totals.Abandoned += t.requests
	}
	if t.requests > 0 {
		waited := b.cfg.Clock.Now().Sub(t.since)
		m.counts.Longest = max(m.counts.Longest, waited)
		b.totals.Longest = max(b.totals.Longest, waited)
		b.totals.Waits.Observe(waited, t.requests)
	}
	close(t.done)
}

// Observe tells the Buffer what happened to master.
func (b *Buffer) Observe(addr string, ev Event) {
	if ev == EventTryAgain {
		b.followTryAgain(addr)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.masterLocked(addr)
	switch ev {
	case EventWritesPaused:
		m.writesPaused = true
	case EventWritesResumed:
		m.writesPaused = false
	case EventOutageBegan:
		if !m.unreachable {
			m.outages++
		}
		m.unreachable = true
		for _, t := range m.queue {
			t.outage = true
		}
	case EventOutageEnded:
		m.unreachable = false
	}
	b.updateLocked(m)
}

// masterLocked returns what the Buffer knows of addr, creating it; b.mu is
// held.
func (b *Buffer) masterLocked(addr string) *master {
	m := b.masters[addr]
	if m == nil {
		m = &master{addr: addr}
		b.masters[addr] = m
	}
	return m
}

// updateLocked moves m to the state what was observed of it calls for.
func (b *Buffer) updateLocked(m *master) {
	want := m.state
	switch {
	case m.unreachable:
		want = StateOutage
	case m.writesPaused:
		want = StateHolding
	case m.state != StateIdle:
		want = StateDraining
	}
	if want == m.state {
		return
	}
	b.moveLocked(m, want)
	if want == StateDraining && !m.draining && b.ctx.Err() == nil {
		m.draining = true
		b.wg.Go(func() { b.drain(m) })
	}
}

// moveLocked makes the transition of m to state to, which must be listed.
func (b *Buffer) moveLocked(m *master, to State) {
	from := m.state
	if !transitions[[2]State{from, to}] {
		panic(fmt.Sprintf("failover: hold of %s: no transition from %s to %s", m.addr, from, to))
	}
	m.state = to
	now := b.cfg.Clock.Now()
	switch {
	case from == StateIdle:
		b.active.Add(1)
		m.since = now
		b.cfg.Logger.Info("hold started", "master", m.addr, "state", to)
	case to == StateIdle:
		b.active.Add(-1)
		b.cfg.Logger.Info("hold ended", "master", m.addr, "duration", now.Sub(m.since), "held_total", m.counts.Held,
			"released_total", m.counts.Released, "expired_total", m.counts.Expired, "abandoned_total", m.counts.Abandoned,
			"longest_hold", m.counts.Longest)
	default:
		b.cfg.Logger.Info("hold changed", "master", m.addr, "from", from, "to", to)
	}
}

// drain releases m's tickets in the order they were handed out, each once
// its owner queued its requests (or DrainGrace passed), until the queue is
// empty (m is then idle) or a new hold begins.
func (b *Buffer) drain(m *master) {
	for {
		b.mu.Lock()
		if m.state != StateDraining {
			m.draining = false
			b.mu.Unlock()
			return
		}
		if len(m.queue) == 0 {
			m.draining = false
			b.moveLocked(m, StateIdle)
			b.mu.Unlock()
			return
		}
		t := m.queue[0]
		m.queue[0] = nil
		m.queue = m.queue[1:]
		b.leaveLocked(t, released)
		b.mu.Unlock()
		b.awaitSent(t)
	}
}

// awaitSent waits until t's owner queued its requests, at most DrainGrace.
func (b *Buffer) awaitSent(t *Ticket) {
	grace := make(chan struct{})
	timer := b.cfg.Clock.AfterFunc(b.cfg.DrainGrace, func() { close(grace) })
	defer timer.Stop()
	select {
	case <-t.sent:
	case <-grace:
	case <-b.ctx.Done():
	}
}

// notify hands n to the router; with wait, it returns once the router
// acknowledged it, at most AckTimeout later.
func (b *Buffer) notify(n Notice, wait bool) {
	if wait {
		n.ack = make(chan struct{})
	}
	select {
	case b.notices <- n:
	default:
		b.cfg.Logger.Warn("failover: the router reads no notices: one dropped", "master", n.Master, "replica", n.Replica)
		return
	}
	if !wait {
		return
	}
	timeout := make(chan struct{})
	timer := b.cfg.Clock.AfterFunc(b.cfg.AckTimeout, func() { close(timeout) })
	defer timer.Stop()
	select {
	case <-n.ack:
	case <-timeout:
		b.cfg.Logger.Warn("failover: the router did not route the handed-over slots in time", "master", n.Master, "replica", n.Replica)
	case <-b.ctx.Done():
	}
}

// State returns where the hold of master stands.
func (b *Buffer) State(addr string) State {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := b.masters[addr]; m != nil {
		return m.state
	}
	return StateIdle
}

// Report is what a Buffer knows, for INFO and tests.
type Report struct {
	// Totals counts every master's held requests.
	Totals Counts
	// Pauses are the write pauses observed in the handovers followed to
	// their end, by result: [0] succeeded, [1] failed.
	Pauses [2]Durations
	// Masters lists, by address, every master that was followed through a
	// handover, held requests or had an outage.
	Masters []MasterReport
}

// MasterReport is what a Buffer knows of one master.
type MasterReport struct {
	Master string
	State  State
	// Phase is the latest failover phase seen; Following and Holding say
	// whether a handover is being followed and its writes held now.
	Phase              Phase
	Following, Holding bool
	// CurrentStart is when the handover being followed was first seen.
	CurrentStart time.Time
	// Last is the last handover followed to its end; Handovers counts them,
	// Succeeded those that ended in PhaseSuccess, and LongestPause is the
	// longest write pause observed among them.
	Last         Handover
	Handovers    int
	Succeeded    int
	LongestPause time.Duration
	// Holds counts the master's held requests.
	Holds Counts
	// Outages counts the times the master was unreachable and its
	// requests held; InOutage reports one now.
	Outages  uint64
	InOutage bool
}

// Of is the report of master, zero but for its address if not listed.
func (r Report) Of(addr string) MasterReport {
	for _, m := range r.Masters {
		if m.Master == addr {
			return m
		}
	}
	return MasterReport{Master: addr}
}

// Report returns what the Buffer knows now.
func (b *Buffer) Report() Report {
	b.mu.Lock()
	defer b.mu.Unlock()
	rep := Report{Totals: b.totals, Pauses: b.pauses}
	rep.Totals.HeldNow = heldNow(b.totals)
	for addr, m := range b.masters {
		if m.phase == "" && m.counts.Held == 0 && m.outages == 0 {
			continue
		}
		holds := m.counts
		holds.HeldNow = heldNow(holds)
		rep.Masters = append(rep.Masters, MasterReport{Master: addr, State: m.state, Phase: m.phase, Following: m.following,
			Holding: m.writesPaused, CurrentStart: m.currentStart, Last: m.last, Handovers: m.handovers,
			Succeeded: m.succeeded, LongestPause: m.longestPause, Holds: holds, Outages: m.outages, InOutage: m.unreachable})
	}
	slices.SortFunc(rep.Masters, func(x, y MasterReport) int { return strings.Compare(x.Master, y.Master) })
	return rep
}

func heldNow(c Counts) uint64 { return c.Held - c.Released - c.Expired - c.Abandoned }
