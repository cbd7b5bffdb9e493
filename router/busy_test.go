package router

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A node running a script the router sent it (Request.Long) answers no
// probe (Kvrocks runs scripts exclusively; Redis does not answer before its
// busy-reply-threshold): it is busy, not unreachable. The requests behind
// the script, and those arriving meanwhile, are sent and wait for it instead
// of being held past their budget.
func TestNodeBusyWithAScriptIsNotAnOutage(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := livenessConfig(a.addr)
	cfg.HoldTimeout = 100 * time.Millisecond
	cfg.DeadTimeout = 5 * time.Second
	r := newTestRouter(t, cfg)
	k, other := keyOwnedBy(fc, a, "a"), keyOwnedBy(fc, a, "b")
	warm := keyed(false, "SET", k, "1")
	doWithin(t, r, warm)
	require.Equal(t, "+OK\r\n", string(warm.Reply))

	a.stopProcess()
	script := keyed(false, "SET", k, "script")
	script.Long = true
	behind := keyed(true, "GET", k)
	done := make(chan struct{})
	go func() {
		defer close(done)
		doWithin(t, r, script, behind)
	}()
	require.Eventually(t, func() bool { return r.Stats().Busy >= 3 }, 10*time.Second, time.Millisecond,
		"the busy node's probes went unanswered")
	later := keyed(false, "SET", other, "later")
	laterDone := make(chan struct{})
	go func() {
		defer close(laterDone)
		doWithin(t, r, later)
	}()
	require.Eventually(t, func() bool { return r.Stats().Busy >= 6 }, 10*time.Second, time.Millisecond)
	a.resume()
	<-done
	<-laterDone
	assert.Equal(t, "+OK\r\n", string(script.Reply))
	assert.Equal(t, "$6\r\nscript\r\n", string(behind.Reply))
	assert.Equal(t, "+OK\r\n", string(later.Reply), "sent to the busy node, not held past its budget")
	assert.Zero(t, r.Stats().Unresponsive)
	assert.Zero(t, holdTotals(r).Held)
}

// A node that stays silent with a script in flight for DeadTimeout is judged
// by its probes again: stopped in the middle of a script, it is found.
func TestNodeBusyPastDeadTimeoutIsUnresponsive(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	cfg := livenessConfig(a.addr)
	cfg.DeadTimeout = 300 * time.Millisecond
	r := newTestRouter(t, cfg)
	k := keyOwnedBy(fc, a, "a")
	warm := keyed(false, "SET", k, "1")
	doWithin(t, r, warm)

	a.stopProcess()
	script := keyed(false, "SET", k, "script")
	script.Long = true
	done := make(chan struct{})
	go func() {
		defer close(done)
		doWithin(t, r, script)
	}()
	require.Eventually(t, func() bool { return r.Stats().Unresponsive > 0 }, 10*time.Second, time.Millisecond,
		"the excuse of a running script ends")
	assert.Positive(t, r.Stats().Busy, "it was excused first")
	a.resume()
	<-done
}
