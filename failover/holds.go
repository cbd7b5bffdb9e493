package failover

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kvproxy/router"
)

// HoldsConfig says how Holds follows the masters that refuse writes.
type HoldsConfig struct {
	// Dial opens an authenticated connection to a node; Holds polls the
	// master's CLUSTER INFO over it. Required.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Interval is the time between two polls of a master being followed.
	Interval time.Duration
	// MaxFollow bounds one handover: past it the master's writes are let go
	// whatever its state (they then meet the master's own answer).
	MaxFollow time.Duration
	// Logger receives one line when a handover starts and one when it ends.
	Logger *slog.Logger
	// Warm, when set, is called with the replica of a planned handover as
	// it starts, so its connections are open when it takes over.
	Warm func(replica string)
	// HandOver, when set, is called when a handover succeeds, before the
	// held writes are released, so they go straight to the new master.
	// replica is "" when the handover was not started through Follow.
	HandOver func(master, replica string)
	// Held, when set, reports what the router held for a master, for the
	// log line that ends a handover.
	Held func(master string) router.NodeHolds
}

// DefaultHoldsConfig polls every 2 ms and follows a handover for at most
// 30 s. Dial must still be set.
func DefaultHoldsConfig() HoldsConfig {
	return HoldsConfig{Interval: 2 * time.Millisecond, MaxFollow: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)}
}

// Holds is the router's gate (router.Gate): when a master answers TRYAGAIN
// it follows that master's cluster_failover_state, and while the state is
// pause_write, wait_sync or switching it holds the master's writes, so the
// router sends them once the master can take them (success: they meet MOVED
// and go to the new master; failed: the old master takes them again) instead
// of bouncing them off it.
type Holds struct {
	cfg HoldsConfig

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// holding counts the masters held now, so Hold costs one atomic load
	// on the data path while nothing fails over.
	holding atomic.Int32

	mu     sync.Mutex
	shards map[string]*shardHold
}

// shardHold is what Holds knows of one master.
type shardHold struct {
	following bool
	// held is open while the master's writes are held.
	held chan struct{}
	// handed is closed when a followed failover of the master succeeds, and
	// then replaced (see HandedOver).
	handed chan struct{}
	// waiters are told how the follow running now ends (see Follow).
	waiters []chan<- Outcome
	// What INFO reports (see ShardReport).
	phase        Phase
	currentStart time.Time
	last         Handover
	handovers    int
	longestPause time.Duration
}

// ShardReport is what Holds knows of one master it followed, for INFO.
type ShardReport struct {
	Master string
	// Phase is the latest phase seen; Following and Holding say whether a
	// handover is being followed and its writes held now.
	Phase              Phase
	Following, Holding bool
	// CurrentStart is when the handover being followed was first seen.
	CurrentStart time.Time
	// Last is the last handover followed to its end; Handovers counts them
	// and LongestPause is the longest write pause observed among them.
	Last         Handover
	Handovers    int
	LongestPause time.Duration
}

// Report lists the masters Holds followed, by address.
func (h *Holds) Report() []ShardReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ShardReport, 0, len(h.shards))
	for addr, s := range h.shards {
		if s.phase == "" {
			continue // never seen failing over
		}
		out = append(out, ShardReport{Master: addr, Phase: s.phase, Following: s.following, Holding: s.held != nil,
			CurrentStart: s.currentStart, Last: s.last, Handovers: s.handovers, LongestPause: s.longestPause})
	}
	slices.SortFunc(out, func(a, b ShardReport) int { return strings.Compare(a.Master, b.Master) })
	return out
}

// Outcome is how a followed handover ended.
type Outcome struct {
	// Handover is what was observed; its Final is PhaseSuccess when the
	// replica took over (the shard is then routed to it).
	Handover Handover
	// Err says why the follow stopped before a final phase, if it did: the
	// master could not be polled, it answered something unreadable, the
	// follow outlasted MaxFollow, or Holds was closed.
	Err error
}

// ErrHoldsClosed is the Outcome.Err of a follow asked for after Close.
var ErrHoldsClosed = errors.New("failover: holds closed")

// NewHolds returns Holds following masters with cfg; Close stops it.
func NewHolds(cfg HoldsConfig) (*Holds, error) {
	if cfg.Dial == nil || cfg.Interval <= 0 || cfg.MaxFollow <= 0 || cfg.Logger == nil {
		return nil, errors.New("failover: HoldsConfig needs Dial, a positive Interval and MaxFollow, and a Logger")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Holds{cfg: cfg, ctx: ctx, cancel: cancel, shards: make(map[string]*shardHold)}, nil
}

// Close stops following and lets every hold go.
func (h *Holds) Close() {
	h.cancel()
	h.wg.Wait()
}

// Hold returns a channel closed when the hold on addr ends, or nil when
// addr's writes may be sent.
func (h *Holds) Hold(addr string) <-chan struct{} {
	if h.holding.Load() == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.shards[addr]; s != nil && s.held != nil {
		return s.held
	}
	return nil
}

// HandedOver returns a channel closed the next time a followed failover of
// the master at addr succeeds: the master serves its slots no more, so a
// blocking command waiting there would wait for nothing.
func (h *Holds) HandedOver(addr string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.shardLocked(addr)
	if s.handed == nil {
		s.handed = make(chan struct{})
	}
	return s.handed
}

// shardLocked returns what Holds knows of addr, creating it; h.mu is held.
func (h *Holds) shardLocked(addr string) *shardHold {
	s := h.shards[addr]
	if s == nil {
		s = &shardHold{}
		h.shards[addr] = s
	}
	return s
}

// TryAgain starts following addr, unless it is followed already: its
// TRYAGAIN may come from a failover. The follow ends at once if the master
// turns out not to be pausing writes for one.
func (h *Holds) TryAgain(addr string) {
	h.startFollow(addr, nil, func(s *shardHold) Outcome { return h.follow(addr, "", s, false) })
}

// Follow starts following the master at addr, to which a CLUSTERX FAILOVER
// handing its slots to replica was just accepted, until the failover ends.
// It returns at once, with a channel that receives how the follow ended
// (that of a follow of addr already running, if one is).
func (h *Holds) Follow(addr, replica string) <-chan Outcome {
	if h.cfg.Warm != nil {
		h.cfg.Warm(replica)
	}
	done := make(chan Outcome, 1)
	h.startFollow(addr, done, func(s *shardHold) Outcome { return h.follow(addr, replica, s, true) })
	return done
}

// FollowRedis starts following a Redis Cluster manual failover (CLUSTER
// FAILOVER, just accepted by replica) of the master at addr, for the report
// and to route the shard to replica as soon as it took over. Redis pauses
// its master's writes itself, so nothing is held. It returns at once, with
// a channel as Follow's.
func (h *Holds) FollowRedis(addr, replica string) <-chan Outcome {
	if h.cfg.Warm != nil {
		h.cfg.Warm(replica)
	}
	done := make(chan Outcome, 1)
	h.startFollow(addr, done, func(s *shardHold) Outcome { return h.followRedis(addr, replica, s) })
	return done
}

// startFollow runs follow on a goroutine of its own unless addr is
// followed already; done, if not nil, receives how the follow ends.
func (h *Holds) startFollow(addr string, done chan<- Outcome, follow func(*shardHold) Outcome) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx.Err() != nil {
		if done != nil {
			done <- Outcome{Err: ErrHoldsClosed}
		}
		return
	}
	s := h.shardLocked(addr)
	if done != nil {
		s.waiters = append(s.waiters, done)
	}
	if s.following {
		return
	}
	s.following = true
	h.wg.Go(func() {
		var out Outcome
		defer func() {
			h.mu.Lock()
			s.following = false
			waiters := s.waiters
			s.waiters = nil
			h.mu.Unlock()
			h.setHeld(s, false)
			for _, w := range waiters {
				w <- out // buffered, one value each
			}
		}()
		out = follow(s)
	})
}

// follow polls addr until its failover ends, holding its writes meanwhile.
// An unplanned follow (after a TRYAGAIN) stops at once if the first phase
// seen does not hold writes.
func (h *Holds) follow(addr, replica string, s *shardHold, planned bool) Outcome {
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.MaxFollow)
	defer cancel()
	conn, err := h.cfg.Dial(ctx, addr)
	if err != nil {
		h.cfg.Logger.Warn("cannot follow the master's failover state", "master", addr, "err", err)
		return Outcome{Err: err}
	}
	defer func() { _ = conn.Close() }()
	followed := false
	watch := Watch{Interval: h.cfg.Interval, OnPhase: func(p Phase, _ time.Time) {
		if !followed && !planned && !p.HoldsWrites() {
			// No failover is pausing this master's writes (a TRYAGAIN
			// of a slot migration, or one that already ended): the
			// router's retries and MOVED handling are enough.
			cancel()
			return
		}
		if !followed {
			followed = true
			h.began(addr, s, p, planned)
		}
		h.phaseSeen(addr, replica, s, p)
		h.setHeld(s, p.HoldsWrites())
	}}
	handover, err := watch.Follow(ctx, conn)
	if followed {
		h.ended(addr, s, handover, err)
	}
	return Outcome{Handover: handover, Err: err}
}

// followRedis polls ROLE on replica and on addr until they swapped.
func (h *Holds) followRedis(addr, replica string, s *shardHold) Outcome {
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.MaxFollow)
	defer cancel()
	conns := make([]net.Conn, 0, 2)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for _, node := range []string{replica, addr} {
		conn, err := h.cfg.Dial(ctx, node)
		if err != nil {
			h.cfg.Logger.Warn("cannot follow the Redis failover", "master", addr, "replica", replica, "err", err)
			return Outcome{Err: err}
		}
		conns = append(conns, conn)
	}
	h.began(addr, s, PhaseStarted, true)
	watch := RedisWatch{Watch: Watch{Interval: h.cfg.Interval, OnPhase: func(p Phase, _ time.Time) {
		if p == PhaseSwitching && h.cfg.HandOver != nil {
			// The replica is master already and takes writes: route
			// them there before the old master turns replica.
			h.cfg.HandOver(addr, replica)
		}
		h.phaseSeen(addr, replica, s, p)
	}}}
	handover, err := watch.Follow(ctx, conns[0], conns[1])
	h.ended(addr, s, handover, err)
	return Outcome{Handover: handover, Err: err}
}

// began records and logs the start of a handover of addr.
func (h *Holds) began(addr string, s *shardHold, first Phase, planned bool) {
	h.mu.Lock()
	s.currentStart = time.Now()
	h.mu.Unlock()
	h.cfg.Logger.Info("failover: following the master's handover", "master", addr, "phase", first, "planned", planned)
}

// phaseSeen records a phase of addr's handover; on success it routes the
// shard to replica and tells HandedOver's waiters.
func (h *Holds) phaseSeen(addr, replica string, s *shardHold, p Phase) {
	if p == PhaseSuccess && h.cfg.HandOver != nil {
		h.cfg.HandOver(addr, replica)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s.phase = p
	if p == PhaseSuccess && s.handed != nil {
		close(s.handed)
		s.handed = nil
	}
}

// ended records and logs the end of a handover of addr.
func (h *Holds) ended(addr string, s *shardHold, handover Handover, err error) {
	h.mu.Lock()
	s.currentStart = time.Time{}
	s.last = handover
	s.handovers++
	s.longestPause = max(s.longestPause, handover.ObservedPause())
	h.mu.Unlock()
	attrs := []any{"master", addr, "result", handover.Final, "phases", handover.Phases,
		"duration", handover.LastPoll.Sub(handover.FirstPoll), "observed_pause", handover.ObservedPause(), "polls", handover.Polls}
	if h.cfg.Held != nil {
		// Totals since the proxy started: the held requests of this
		// handover are the difference from the previous line.
		held := h.cfg.Held(addr)
		attrs = append(attrs, "held_total", held.Held, "released_total", held.Released, "expired_total", held.Expired,
			"abandoned_total", held.Abandoned, "held_now", held.HeldNow, "longest_hold", held.Longest)
	}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	h.cfg.Logger.Info("failover: handover ended, writes released", attrs...)
}

// setHeld starts or ends the hold on a master.
func (h *Holds) setHeld(s *shardHold, held bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case held && s.held == nil:
		s.held = make(chan struct{})
		h.holding.Add(1)
	case !held && s.held != nil:
		close(s.held)
		s.held = nil
		h.holding.Add(-1)
	}
}
