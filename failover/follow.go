package failover

import (
	"context"
	"errors"
	"net"
	"time"
)

// Following a failing-over master: while its cluster_failover_state is
// pause_write, wait_sync or switching the Buffer holds its writes, so they
// are sent once the master can take them (success: they go to the new
// master; failed: the old master takes them again) instead of bouncing off
// it.

// Outcome is how a followed handover ended.
type Outcome struct {
	// Handover is what was observed; its Final is PhaseSuccess when the
	// replica took over (the shard is then routed to it).
	Handover Handover
	// Err says why the follow stopped before a final phase, if it did: the
	// master could not be polled, it answered something unreadable, the
	// follow outlasted MaxFollow, or the Buffer was closed.
	Err error
}

// ErrNoDial is the Outcome.Err of a follow asked of a Buffer without
// Config.Dial.
var ErrNoDial = errors.New("failover: no Dial configured: masters are not followed")

// NextHandover returns a channel closed the next time a followed failover
// of the master at addr succeeds: the master serves its slots no more, so a
// blocking command waiting there would wait for nothing.
func (b *Buffer) NextHandover(addr string) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.masterLocked(addr)
	if m.handed == nil {
		m.handed = make(chan struct{})
	}
	return m.handed
}

// followTryAgain starts following addr, unless it is followed already: its
// TRYAGAIN may come from a failover. The follow ends at once if the master
// turns out not to be pausing writes for one.
func (b *Buffer) followTryAgain(addr string) {
	if b.cfg.Dial == nil {
		return
	}
	b.startFollow(addr, nil, func(m *master) Outcome { return b.followKvrocks(addr, "", m, false) }, false)
}

// FollowClusterxFailover starts following the master at addr, to which a
// CLUSTERX FAILOVER handing its slots to replica was just accepted, until
// the failover ends. It returns at once, with a channel that receives how
// the follow ended (that of a follow of addr already running, if one is).
func (b *Buffer) FollowClusterxFailover(addr, replica string) <-chan Outcome {
	b.notify(Notice{Kind: NoticeWarm, Master: addr, Replica: replica}, false)
	done := make(chan Outcome, 1)
	b.startFollow(addr, done, func(m *master) Outcome { return b.followKvrocks(addr, replica, m, true) }, false)
	return done
}

// FollowRedisFailover starts following a Redis Cluster manual failover
// (CLUSTER FAILOVER, just accepted by replica) of the master at addr, for
// the report and to route the shard to replica as soon as it took over.
// Redis pauses its master's writes itself, so nothing is held. It returns
// at once, with a channel as FollowClusterxFailover's.
func (b *Buffer) FollowRedisFailover(addr, replica string) <-chan Outcome {
	b.notify(Notice{Kind: NoticeWarm, Master: addr, Replica: replica}, false)
	done := make(chan Outcome, 1)
	b.startFollow(addr, done, func(m *master) Outcome { return b.followRedis(addr, replica, m) }, false)
	return done
}

// FollowAuthorityFailover holds the writes of the master at addr while
// failover runs: a failover of its shard to replica done by the cluster's
// topology authority (kvrocks-controller's CLIENT PAUSE way, released
// Kvrocks). The authority's pause of the master's writes is timed (500 ms);
// a write the master took after the pause ran out, before the swapped
// topology reached it, would be lost when it turned replica, so the proxy
// sends it none meanwhile. Once failover returns nil the shard is routed to
// replica before the held writes are released, as after a CLUSTERX
// FAILOVER's success; on an error they go to the master again. The channel
// receives how it ended; ErrFollowedAlready if addr was being followed.
func (b *Buffer) FollowAuthorityFailover(addr, replica string, failover func(context.Context) error) <-chan Outcome {
	b.notify(Notice{Kind: NoticeWarm, Master: addr, Replica: replica}, false)
	done := make(chan Outcome, 1)
	b.startFollow(addr, done, func(m *master) Outcome { return b.followAuthority(addr, replica, m, failover) }, true)
	return done
}

// ErrFollowedAlready is the Outcome.Err of FollowAuthorityFailover when the
// master's writes are held for another handover already.
var ErrFollowedAlready = errors.New("failover: the master is being followed through another handover")

// followAuthority holds addr's writes while failover runs (see
// FollowAuthorityFailover).
func (b *Buffer) followAuthority(addr, replica string, m *master, failover func(context.Context) error) Outcome {
	b.began(addr, m, PhaseStarted, true)
	start := time.Now()
	b.Observe(addr, EventWritesPaused)
	b.phaseSeen(addr, replica, m, PhasePauseWrite)
	err := failover(b.ctx)
	h := Handover{FirstPoll: start, LastPoll: time.Now(), Phases: []Phase{PhaseStarted, PhasePauseWrite}, HoldStart: start}
	h.Final = PhaseFailed
	if err == nil {
		h.Final = PhaseSuccess
	}
	h.Phases = append(h.Phases, h.Final)
	b.phaseSeen(addr, replica, m, h.Final)
	h.HoldEnd = time.Now()
	b.ended(addr, m, h, err)
	return Outcome{Handover: h, Err: err}
}

// startFollow runs follow on a goroutine of its own unless addr is
// followed already; done, if not nil, receives how the follow ends: that of
// the follow already running, or ErrFollowedAlready when exclusive.
func (b *Buffer) startFollow(addr string, done chan<- Outcome, follow func(*master) Outcome, exclusive bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.ctx.Err() != nil:
		if done != nil {
			done <- Outcome{Err: ErrHoldsClosed}
		}
		return
	case b.cfg.Dial == nil:
		if done != nil {
			done <- Outcome{Err: ErrNoDial}
		}
		return
	}
	m := b.masterLocked(addr)
	if m.following && exclusive {
		done <- Outcome{Err: ErrFollowedAlready}
		return
	}
	if done != nil {
		m.waiters = append(m.waiters, done)
	}
	if m.following {
		return
	}
	m.following = true
	b.wg.Go(func() {
		var out Outcome
		defer func() {
			b.mu.Lock()
			m.following = false
			waiters := m.waiters
			m.waiters = nil
			m.writesPaused = false
			b.updateLocked(m)
			b.mu.Unlock()
			for _, w := range waiters {
				w <- out // buffered, one value each
			}
		}()
		out = follow(m)
	})
}

// followKvrocks polls addr until its failover ends, holding its writes
// meanwhile. An unplanned follow (after a TRYAGAIN) stops at once if the
// first phase seen does not hold writes.
func (b *Buffer) followKvrocks(addr, replica string, m *master, planned bool) Outcome {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.MaxFollow)
	defer cancel()
	conn, err := b.cfg.Dial(ctx, addr)
	if err != nil {
		b.cfg.Logger.Warn("cannot follow the master's failover state", "master", addr, "err", err)
		return Outcome{Err: err}
	}
	defer func() { _ = conn.Close() }()
	followed := false
	watch := Watch{Interval: b.cfg.Interval, OnPhase: func(p Phase, _ time.Time) {
		if !followed && !planned && !p.HoldsWrites() {
			// No failover is pausing this master's writes (a TRYAGAIN
			// of a slot migration, or one that already ended): the
			// router's retries and MOVED handling are enough.
			cancel()
			return
		}
		if !followed {
			followed = true
			b.began(addr, m, p, planned)
		}
		b.phaseSeen(addr, replica, m, p)
		if p.HoldsWrites() {
			b.Observe(addr, EventWritesPaused)
		} else {
			b.Observe(addr, EventWritesResumed)
		}
	}}
	handover, err := watch.Follow(ctx, conn)
	if followed {
		b.ended(addr, m, handover, err)
	}
	return Outcome{Handover: handover, Err: err}
}

// followRedis polls ROLE on replica and on addr until they swapped.
func (b *Buffer) followRedis(addr, replica string, m *master) Outcome {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.MaxFollow)
	defer cancel()
	conns := make([]net.Conn, 0, 2)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for _, node := range []string{replica, addr} {
		conn, err := b.cfg.Dial(ctx, node)
		if err != nil {
			b.cfg.Logger.Warn("cannot follow the Redis failover", "master", addr, "replica", replica, "err", err)
			return Outcome{Err: err}
		}
		conns = append(conns, conn)
	}
	b.began(addr, m, PhaseStarted, true)
	watch := RedisWatch{Watch: Watch{Interval: b.cfg.Interval, OnPhase: func(p Phase, _ time.Time) {
		if p == PhaseSwitching {
			// The replica is master already and takes writes: route
			// them there before the old master turns replica.
			b.notify(Notice{Kind: NoticeHandedOver, Master: addr, Replica: replica}, true)
		}
		b.phaseSeen(addr, replica, m, p)
	}}}
	handover, err := watch.Follow(ctx, conns[0], conns[1])
	b.ended(addr, m, handover, err)
	return Outcome{Handover: handover, Err: err}
}

// began records and logs the start of a handover of addr.
func (b *Buffer) began(addr string, m *master, first Phase, planned bool) {
	b.mu.Lock()
	m.currentStart = time.Now()
	b.mu.Unlock()
	b.cfg.Logger.Info("failover: following the master's handover", "master", addr, "phase", first, "planned", planned)
}

// phaseSeen records a phase of addr's handover; on success it has the
// router route the shard to replica, before the writes are released, and
// tells NextHandover's waiters.
func (b *Buffer) phaseSeen(addr, replica string, m *master, p Phase) {
	if p == PhaseSuccess {
		b.notify(Notice{Kind: NoticeHandedOver, Master: addr, Replica: replica}, true)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m.phase = p
	if p == PhaseSuccess && m.handed != nil {
		close(m.handed)
		m.handed = nil
	}
}

// ended records and logs the end of a handover of addr.
func (b *Buffer) ended(addr string, m *master, handover Handover, err error) {
	b.mu.Lock()
	m.currentStart = time.Time{}
	m.last = handover
	m.handovers++
	if handover.Final == PhaseSuccess {
		m.succeeded++
	}
	m.longestPause = max(m.longestPause, handover.ObservedPause())
	if handover.Final == PhaseSuccess {
		b.pauses[0].Observe(handover.ObservedPause(), 1)
	} else {
		b.pauses[1].Observe(handover.ObservedPause(), 1)
	}
	// Totals since the proxy started: the held requests of this handover
	// are the difference from the previous line.
	held := m.counts
	b.mu.Unlock()
	attrs := []any{"master", addr, "result", handover.Final, "phases", handover.Phases,
		"duration", handover.LastPoll.Sub(handover.FirstPoll), "observed_pause", handover.ObservedPause(), "polls", handover.Polls,
		"held_total", held.Held, "released_total", held.Released, "expired_total", held.Expired,
		"abandoned_total", held.Abandoned, "held_now", heldNow(held), "longest_hold", held.Longest}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	b.cfg.Logger.Info("failover: handover ended, writes released", attrs...)
}
