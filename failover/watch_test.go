package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/internal/resp"
)

// noHang bounds every wait for Follow to return; tests fail rather than hang.
const noHang = 10 * time.Second

func bulk(body string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(body), body) }

func phaseReplies(states ...Phase) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = bulk(kvrocksInfo(string(s)))
	}
	return out
}

// scriptedMaster is the far end of a pipe that answers each request with the
// next scripted reply, then closes the pipe or leaves requests unanswered.
type scriptedMaster struct {
	mu       sync.Mutex
	requests [][]byte
}

func (m *scriptedMaster) received() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests
}

// startScripted returns the client end of a pipe served by a scriptedMaster.
// With closeAfter the master hangs up after the last reply; otherwise it
// reads on and never answers.
func startScripted(t *testing.T, closeAfter bool, replies ...string) (net.Conn, *scriptedMaster) {
	t.Helper()
	client, server := net.Pipe()
	m := &scriptedMaster{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		for _, reply := range replies {
			req := make([]byte, len(clusterInfoCommand))
			if _, err := io.ReadFull(server, req); err != nil {
				return
			}
			m.mu.Lock()
			m.requests = append(m.requests, req)
			m.mu.Unlock()
			if _, err := io.WriteString(server, reply); err != nil {
				return
			}
		}
		if !closeAfter {
			_, _ = io.Copy(io.Discard, server)
		}
	}()
	t.Cleanup(func() {
		client.Close()
		server.Close()
		<-done
	})
	return client, m
}

type observed struct {
	phase Phase
	at    time.Time
}

// followAsync runs w.Follow in a goroutine and returns a function that waits
// for it, at most noHang.
func followAsync(t *testing.T, ctx context.Context, w Watch, conn net.Conn) func() (Handover, error) {
	t.Helper()
	type result struct {
		h   Handover
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := w.Follow(ctx, conn)
		done <- result{h, err}
	}()
	t.Cleanup(func() {
		conn.Close() // unblocks Follow if the test failed before waiting
		<-done
	})
	return func() (Handover, error) {
		t.Helper()
		select {
		case r := <-done:
			done <- r // for the cleanup
			return r.h, r.err
		case <-time.After(noHang):
			require.FailNow(t, "Follow did not return", "within %v", noHang)
			return Handover{}, nil
		}
	}
}

func TestFollowRecordsTheHandover(t *testing.T) {
	conn, master := startScripted(t, false, phaseReplies(
		PhaseNone, PhaseStarted, PhaseStarted, PhaseCheckSlave, PhasePauseWrite,
		PhaseWaitSync, PhaseWaitSync, PhaseSwitching, PhaseSuccess)...)
	var calls []observed
	before := time.Now()
	h, err := Follow(context.Background(), conn, time.Millisecond, func(p Phase, at time.Time) {
		calls = append(calls, observed{p, at})
	})
	require.NoError(t, err)

	want := []Phase{PhaseNone, PhaseStarted, PhaseCheckSlave, PhasePauseWrite, PhaseWaitSync, PhaseSwitching, PhaseSuccess}
	assert.Equal(t, want, h.Phases)
	require.Len(t, calls, len(want), "one call per change")
	for i, c := range calls {
		assert.Equal(t, want[i], c.phase)
		if i > 0 {
			assert.False(t, c.at.Before(calls[i-1].at), "call %d goes back in time", i)
		}
	}
	assert.Equal(t, 9, h.Polls)
	assert.Equal(t, PhaseSuccess, h.Final)
	assert.False(t, h.FirstPoll.Before(before))
	assert.False(t, calls[0].at.Before(h.FirstPoll))
	assert.Equal(t, calls[3].at, h.HoldStart, "the hold starts when pause_write is seen")
	assert.Equal(t, calls[6].at, h.HoldEnd, "the hold ends when success is seen")
	assert.Equal(t, calls[6].at, h.LastPoll)
	assert.Equal(t, h.HoldEnd.Sub(h.HoldStart), h.ObservedPause())
	assert.Len(t, master.received(), 9)
	for _, req := range master.received() {
		assert.Equal(t, "*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n", string(req))
	}
}

// deadlineRecorder is a connection that remembers its last deadline.
type deadlineRecorder struct {
	net.Conn
	mu   sync.Mutex
	last time.Time
	set  int
}

func (d *deadlineRecorder) SetDeadline(t time.Time) error {
	d.mu.Lock()
	d.last, d.set = t, d.set+1
	d.mu.Unlock()
	return d.Conn.SetDeadline(t)
}

func TestFollowLeavesNoDeadlineAfterTheFinalPhase(t *testing.T) {
	conn, _ := startScripted(t, false, phaseReplies(PhaseWaitSync, PhaseSuccess)...)
	rec := &deadlineRecorder{Conn: conn}
	_, err := Follow(context.Background(), rec, time.Millisecond, nil)
	require.NoError(t, err)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, 3, rec.set, "one deadline per poll, then none")
	assert.True(t, rec.last.IsZero(), "conn is left without a deadline")
}

func TestFollowFailureBeforeThePause(t *testing.T) {
	conn, _ := startScripted(t, false, phaseReplies(PhaseStarted, PhaseCheckSlave, PhaseFailed)...)
	h, err := Follow(context.Background(), conn, time.Millisecond, nil)
	require.NoError(t, err)
	assert.Equal(t, []Phase{PhaseStarted, PhaseCheckSlave, PhaseFailed}, h.Phases)
	assert.Equal(t, PhaseFailed, h.Final)
	assert.True(t, h.HoldStart.IsZero())
	assert.True(t, h.HoldEnd.IsZero())
	assert.Zero(t, h.ObservedPause())
}

func TestFollowFailureEndsTheHold(t *testing.T) {
	conn, _ := startScripted(t, false, phaseReplies(PhaseCheckSlave, PhasePauseWrite, PhaseWaitSync, PhaseFailed)...)
	var failedAt time.Time
	h, err := Follow(context.Background(), conn, time.Millisecond, func(p Phase, at time.Time) {
		if p == PhaseFailed {
			failedAt = at
		}
	})
	require.NoError(t, err)
	assert.Equal(t, PhaseFailed, h.Final)
	assert.False(t, h.HoldStart.IsZero())
	assert.Equal(t, failedAt, h.HoldEnd)
}

func TestFollowAcceptsRESP3VerbatimStrings(t *testing.T) {
	body := "txt:" + kvrocksInfo("success")
	conn, _ := startScripted(t, false, fmt.Sprintf("=%d\r\n%s\r\n", len(body), body))
	h, err := Follow(context.Background(), conn, time.Millisecond, nil)
	require.NoError(t, err)
	assert.Equal(t, PhaseSuccess, h.Final)
}

func TestFollowStopsOnABadReply(t *testing.T) {
	cases := []struct {
		name  string
		reply string
		err   error
	}{
		{"null bulk", "$-1\r\n", resp.ErrProtocol},
		{"integer", ":1\r\n", resp.ErrProtocol},
		{"status", "+OK\r\n", resp.ErrProtocol},
		{"header without CR", "$5\n", resp.ErrProtocol},
		{"length not a number", "$x\r\n", resp.ErrProtocol},
		{"too long", bulk(strings.Repeat("a", 65)), resp.ErrProtocol},
		{"body not followed by CRLF", "$1\r\nab\r\n", resp.ErrProtocol},
		{"verbatim without format", "=3\r\nabc\r\n", resp.ErrProtocol},
		{"replica", bulk("cluster_state:ok\r\n"), ErrNoFailoverState},
		{"unknown state", bulk("cluster_failover_state:paused\r\n"), ErrUnknownPhase},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, _ := startScripted(t, false, c.reply)
			calls := 0
			w := Watch{Interval: time.Millisecond, MaxReply: 64, OnPhase: func(Phase, time.Time) { calls++ }}
			h, err := w.Follow(context.Background(), conn)
			assert.ErrorIs(t, err, c.err)
			assert.NotErrorIs(t, err, ErrConn)
			assert.Zero(t, calls)
			assert.Zero(t, h.Polls)
			assert.False(t, h.FirstPoll.IsZero(), "the poll was sent")
		})
	}
}

func TestFollowReturnsErrorRepliesAsReplyError(t *testing.T) {
	conn, _ := startScripted(t, false, "-NOAUTH Authentication required.\r\n")
	_, err := Follow(context.Background(), conn, time.Millisecond, func(Phase, time.Time) {
		assert.Fail(t, "an error reply is not a phase")
	})
	var replyErr *resp.ReplyError
	require.ErrorAs(t, err, &replyErr)
	assert.Equal(t, "NOAUTH Authentication required.", replyErr.Msg)
	assert.NotErrorIs(t, err, ErrConn)
}

func TestFollowDetectsAReset(t *testing.T) {
	conn, _ := startScripted(t, false, phaseReplies(PhaseCheckSlave, PhasePauseWrite, PhaseNone)...)
	h, err := Follow(context.Background(), conn, time.Millisecond, nil)
	require.ErrorIs(t, err, ErrReset)
	assert.Equal(t, []Phase{PhaseCheckSlave, PhasePauseWrite, PhaseNone}, h.Phases)
	assert.False(t, h.HoldEnd.IsZero(), "none ends the hold")
	assert.Empty(t, h.Final)
}

func TestFollowReportsAClosedConnection(t *testing.T) {
	conn, _ := startScripted(t, true, phaseReplies(PhaseCheckSlave, PhasePauseWrite)...)
	h, err := Follow(context.Background(), conn, time.Millisecond, nil)
	require.ErrorIs(t, err, ErrConn) // the pipe's own error: io.ErrClosedPipe on the next write
	assert.Equal(t, []Phase{PhaseCheckSlave, PhasePauseWrite}, h.Phases)
	assert.Equal(t, 2, h.Polls)
}

func TestFollowTimesOutAPoll(t *testing.T) {
	conn, _ := startScripted(t, false, phaseReplies(PhaseCheckSlave)...)
	wait := followAsync(t, context.Background(), Watch{Interval: time.Millisecond, PollTimeout: 20 * time.Millisecond}, conn)
	h, err := wait()
	require.ErrorIs(t, err, ErrConn)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Equal(t, 1, h.Polls)
}

func TestFollowCancelInterruptsABlockedPoll(t *testing.T) {
	conn, _ := startScripted(t, false, phaseReplies(PhaseWaitSync)...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan struct{})
	// A poll timeout far beyond noHang: only the cancel can end the wait.
	w := Watch{Interval: time.Millisecond, PollTimeout: time.Hour, OnPhase: func(Phase, time.Time) { close(seen) }}
	wait := followAsync(t, ctx, w, conn)
	select {
	case <-seen:
	case <-time.After(noHang):
		require.FailNow(t, "no phase observed")
	}
	cancel()
	h, err := wait()
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrConn)
	assert.Equal(t, []Phase{PhaseWaitSync}, h.Phases)
}

func TestFollowWithAnEndedContextSendsNothing(t *testing.T) {
	conn, master := startScripted(t, false, phaseReplies(PhaseSuccess)...)
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("proxy shutting down")
	cancel(stop)
	h, err := Follow(ctx, conn, time.Millisecond, nil)
	require.ErrorIs(t, err, stop, "the error carries the cause")
	assert.Zero(t, h.Polls)
	assert.Empty(t, master.received())
}

func TestFollowRejectsBadArguments(t *testing.T) {
	conn, _ := startScripted(t, false)
	ctx := context.Background()
	cases := map[string]func() (Handover, error){
		"nil conn":            func() (Handover, error) { return Follow(ctx, nil, time.Millisecond, nil) },
		"zero interval":       func() (Handover, error) { return Follow(ctx, conn, 0, nil) },
		"negative timeout":    func() (Handover, error) { return Watch{Interval: 1, PollTimeout: -1}.Follow(ctx, conn) },
		"negative reply size": func() (Handover, error) { return Watch{Interval: 1, MaxReply: -1}.Follow(ctx, conn) },
	}
	for name, follow := range cases {
		h, err := follow()
		assert.Error(t, err, name)
		assert.True(t, h.FirstPoll.IsZero(), "%s: nothing sent", name)
	}
}
