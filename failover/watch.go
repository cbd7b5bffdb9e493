package failover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"kvproxy/internal/resp"
)

const (
	// DefaultPollTimeout bounds one CLUSTER INFO round trip when
	// Watch.PollTimeout is zero.
	DefaultPollTimeout = time.Second
	// DefaultMaxReply bounds a CLUSTER INFO body when Watch.MaxReply is zero.
	// A real one is well under 1 KiB.
	DefaultMaxReply = 64 << 10
)

var (
	// ErrConn means the connection to the master failed: a write or read
	// error, EOF, or a poll past its PollTimeout.
	ErrConn = errors.New("failover: connection to the master failed")
	// ErrReset means the state went back to none after the failover had
	// begun: a newer topology reached the master and ended the failover.
	ErrReset = errors.New("failover: cluster_failover_state went back to none")
)

// Watch follows one master's cluster_failover_state by polling CLUSTER INFO.
// The zero value of every field but Interval means its default.
type Watch struct {
	// Interval is the time between the starts of two polls; it must be
	// positive. A poll that takes longer delays the next one.
	Interval time.Duration
	// PollTimeout bounds the write and the read of one poll.
	PollTimeout time.Duration
	// MaxReply bounds the size of a CLUSTER INFO body, in bytes.
	MaxReply int
	// OnPhase, if not nil, is called with every phase that differs from the
	// one before it (the first observed one included) and the time its
	// reply was read. It runs on Follow's goroutine, so it must be quick.
	OnPhase func(Phase, time.Time)
}

// Handover is what one Follow observed. Times are when replies were read, so
// each change happened at most one interval plus one round trip before it.
type Handover struct {
	// FirstPoll is when the first CLUSTER INFO was sent.
	FirstPoll time.Time
	// LastPoll is when the last phase was read.
	LastPoll time.Time
	// Polls counts the replies read as a phase.
	Polls int
	// Phases lists the phases seen, in order, without consecutive repeats.
	Phases []Phase
	// HoldStart is when the first write-holding phase was read; zero if
	// none was seen.
	HoldStart time.Time
	// HoldEnd is when the first phase that does not hold writes was read
	// after HoldStart; zero if none was.
	HoldEnd time.Time
	// Final is success or failed, or empty if Follow ended before either.
	Final Phase
}

// ObservedPause is the write pause as observed, HoldEnd - HoldStart; zero
// unless both are set.
func (h Handover) ObservedPause() time.Duration {
	if h.HoldStart.IsZero() || h.HoldEnd.IsZero() {
		return 0
	}
	return h.HoldEnd.Sub(h.HoldStart)
}

// record adds a phase read at t and reports whether it differs from the
// previous one.
func (h *Handover) record(p Phase, t time.Time) bool {
	h.Polls++
	h.LastPoll = t
	if n := len(h.Phases); n > 0 && h.Phases[n-1] == p {
		return false
	}
	h.Phases = append(h.Phases, p)
	switch {
	case p.HoldsWrites() && h.HoldStart.IsZero():
		h.HoldStart = t
	case !p.HoldsWrites() && !h.HoldStart.IsZero() && h.HoldEnd.IsZero():
		h.HoldEnd = t
	}
	if p.Final() {
		h.Final = p
	}
	return true
}

// Follow is Watch{Interval: interval, OnPhase: onPhase}.Follow(ctx, conn).
func Follow(ctx context.Context, conn net.Conn, interval time.Duration, onPhase func(Phase, time.Time)) (Handover, error) {
	return Watch{Interval: interval, OnPhase: onPhase}.Follow(ctx, conn)
}

// clusterInfoCommand is CLUSTER INFO as a RESP array.
var clusterInfoCommand = []byte("*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n")

// aLongTimeAgo is a deadline that makes blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// Follow polls CLUSTER INFO on conn every w.Interval until the phase is
// final (nil error), ctx ends (the error wraps context.Cause(ctx)), the
// connection fails (ErrConn), the master replies with an error
// (*resp.ReplyError) or something unreadable (resp.ErrProtocol,
// ErrNoFailoverState, ErrUnknownPhase), or the state goes back to none
// (ErrReset). The Handover holds what was observed until then.
//
// Start it after the master accepted CLUSTERX FAILOVER: a final phase left
// by an earlier failover would end it at once. conn must be dialled and
// authenticated; the caller closes it. Follow sets conn's deadlines; after a
// nil error conn has none and can be reused, after an error it may hold half
// a reply or an expired deadline and should be closed.
func (w Watch) Follow(ctx context.Context, conn net.Conn) (Handover, error) {
	var h Handover
	switch {
	case conn == nil:
		return h, errors.New("failover: nil connection")
	case w.Interval <= 0:
		return h, fmt.Errorf("failover: poll interval must be positive, not %v", w.Interval)
	case w.PollTimeout < 0:
		return h, fmt.Errorf("failover: poll timeout must not be negative, not %v", w.PollTimeout)
	case w.MaxReply < 0:
		return h, fmt.Errorf("failover: max reply must not be negative, not %d", w.MaxReply)
	}
	p := poller{
		conn:     conn,
		r:        resp.NewReader(conn),
		timeout:  cmp.Or(w.PollTimeout, DefaultPollTimeout),
		maxReply: cmp.Or(w.MaxReply, DefaultMaxReply),
	}
	// Cancellation must also interrupt a poll blocked on the network.
	stopInterrupt := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	defer stopInterrupt()

	ticker := time.NewTicker(w.Interval)
	defer ticker.Stop()
	for {
		if h.FirstPoll.IsZero() {
			h.FirstPoll = time.Now()
		}
		phase, err := p.poll(ctx)
		if err != nil {
			return h, err
		}
		seen := time.Now()
		regressed := phase == PhaseNone && len(h.Phases) > 0 && h.Phases[len(h.Phases)-1] != PhaseNone
		if h.record(phase, seen) && w.OnPhase != nil {
			w.OnPhase(phase, seen)
		}
		switch {
		case regressed:
			return h, ErrReset
		case phase.Final():
			// Leave conn ready for reuse, unless a cancellation already
			// claimed its deadline.
			if stopInterrupt() {
				_ = conn.SetDeadline(time.Time{})
			}
			return h, nil
		}
		select {
		case <-ctx.Done():
			return h, stopped(ctx)
		case <-ticker.C:
		}
	}
}

func stopped(ctx context.Context) error {
	return fmt.Errorf("failover: follow stopped: %w", context.Cause(ctx))
}

// poller sends CLUSTER INFO and reads the reply.
type poller struct {
	conn     net.Conn
	r        *resp.Reader
	timeout  time.Duration
	maxReply int
}

func (p *poller) poll(ctx context.Context) (Phase, error) {
	err := p.conn.SetDeadline(time.Now().Add(p.timeout))
	// This deadline replaces one set by a cancellation that came first.
	if ctx.Err() != nil {
		return "", stopped(ctx)
	}
	if err != nil {
		return "", p.connFailed(err)
	}
	if _, err := p.conn.Write(clusterInfoCommand); err != nil {
		return "", p.ioFailed(ctx, err)
	}
	info, err := p.r.ReadString(p.maxReply)
	if errors.As(err, new(*resp.ReplyError)) {
		return "", fmt.Errorf("failover: CLUSTER INFO %w", err)
	}
	if err != nil {
		return "", p.ioFailed(ctx, err)
	}
	return ParsePhase(info)
}

// ioFailed names why I/O failed: a cancellation interrupts it too.
func (p *poller) ioFailed(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, resp.ErrProtocol) || errors.As(err, new(*resp.ReplyError)):
		return err
	case ctx.Err() != nil:
		return stopped(ctx)
	}
	return p.connFailed(err)
}

func (p *poller) connFailed(err error) error {
	return fmt.Errorf("%w (%s): %w", ErrConn, p.conn.RemoteAddr(), err)
}
