package router

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SetHoldTimeout changes the budget of the writes held from then on.
func TestSetHoldTimeout(t *testing.T) {
	fc := newFakeCluster(t, 1)
	a := fc.nodes[0]
	hold := newTestHold(t, 0)
	cfg := testConfig(a.addr)
	cfg.Hold = hold
	cfg.HoldTimeout = time.Millisecond
	r := newTestRouter(t, cfg)
	hold.hold(a.addr)
	assert.False(t, waitWritable(r, a.addr), "held past a millisecond")

	require.NoError(t, r.SetHoldTimeout(5*time.Minute))
	go func() {
		time.Sleep(20 * time.Millisecond)
		hold.release(a.addr)
	}()
	assert.True(t, waitWritable(r, a.addr), "released within the new budget")

	assert.Error(t, r.SetHoldTimeout(0))
	assert.Error(t, r.SetHoldTimeout(MaxHoldTimeout+time.Second))
	assert.Equal(t, 5*time.Minute, r.holdBudget(), "a refused budget changes nothing")
}
