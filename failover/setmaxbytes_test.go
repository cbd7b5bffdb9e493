package failover

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SetMaxBytes changes the cap of a serving hold: held requests stay, the
// next ones are judged by the new cap.
func TestSetMaxBytes(t *testing.T) {
	b, clock := newTestBuffer(t, 100)
	b.Observe("a:1", EventWritesPaused)
	ticket := b.Admit("a:1", true, clock.Now().Add(time.Hour))
	require.NotNil(t, ticket)
	require.True(t, ticket.Join(60))

	require.NoError(t, b.SetMaxBytes(50))
	assert.False(t, ticket.Join(1), "past the lowered cap")
	assert.Equal(t, uint64(1), b.Report().Totals.Full)
	require.NoError(t, b.SetMaxBytes(200))
	assert.True(t, ticket.Join(100), "within the raised cap")

	assert.Error(t, b.SetMaxBytes(0))
	assert.Error(t, b.SetMaxBytes(MaxMaxBytes+1))
	assert.False(t, ticket.Join(41), "a refused cap changes nothing")
}
