package failover

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDurationsObserve(t *testing.T) {
	var h Durations
	h.Observe(0, 1)
	h.Observe(time.Millisecond, 2)
	h.Observe(time.Millisecond+1, 1)
	h.Observe(time.Minute, 3)
	assert.Equal(t, uint64(3), h.Buckets[0], "at or below 1 ms")
	assert.Equal(t, uint64(1), h.Buckets[1])
	assert.Equal(t, uint64(3), h.Buckets[len(DurationBounds)], "past every bound")
	assert.Equal(t, uint64(7), h.Count)
	assert.Equal(t, 2*time.Millisecond+time.Millisecond+1+3*time.Minute, h.Sum)
}
