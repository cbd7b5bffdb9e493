package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHistogramBucketsCoverEveryValueInOrder(t *testing.T) {
	// Every value falls in a bucket whose top is at or above it and within
	// 1/128 of it, and buckets grow with the value.
	prev := 0
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 12345, 1 << 20, 1<<20 + 1, 1<<40 - 1} {
		b := histogramBucket(v)
		assert.GreaterOrEqual(t, b, prev, "value %d", v)
		assert.Less(t, b, histogramBuckets, "value %d", v)
		top := histogramUpper(b)
		assert.GreaterOrEqual(t, top, v, "value %d", v)
		assert.LessOrEqual(t, float64(top-v), float64(v)/128, "value %d", v)
		if b > 0 {
			assert.Less(t, histogramUpper(b-1), v, "value %d is past the previous bucket", v)
		}
		prev = b
	}
}

func TestHistogramQuantiles(t *testing.T) {
	h := NewHistogram()
	assert.Zero(t, h.Quantile(0.5))
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	other := NewHistogram()
	other.Record(time.Second)
	h.Merge(other)
	assert.EqualValues(t, 1001, h.Count())
	assert.Equal(t, time.Second, h.Max())
	assert.InEpsilon(t, float64(501*time.Microsecond), float64(h.Quantile(0.5)), 0.01)
	assert.InEpsilon(t, float64(991*time.Microsecond), float64(h.Quantile(0.99)), 0.01)
	assert.Equal(t, time.Second, h.Quantile(1))
	h.Record(-time.Second)
	assert.Zero(t, h.Quantile(0))
}

func TestCountOnConnSplitsTheSchedule(t *testing.T) {
	for _, total := range []int64{0, 1, 5, 10, 11} {
		var sum int64
		for i := range int64(4) {
			sum += countOnConn(total, i, 4)
		}
		assert.Equal(t, total, sum, "total %d", total)
	}
}

func TestOpenLoopOptionsValidate(t *testing.T) {
	good := OpenLoopOptions{Addr: "127.0.0.1:1", Rate: 100, Duration: time.Second, Conns: 1, Keyspace: 1,
		MaxOutstanding: 1, Drain: time.Second}
	require.NoError(t, good.Validate())
	for name, mutate := range map[string]func(*OpenLoopOptions){
		"bad addr":        func(o *OpenLoopOptions) { o.Addr = "nowhere" },
		"zero rate":       func(o *OpenLoopOptions) { o.Rate = 0 },
		"zero duration":   func(o *OpenLoopOptions) { o.Duration = 0 },
		"nothing due":     func(o *OpenLoopOptions) { o.Rate, o.Duration = 1, time.Millisecond },
		"zero conns":      func(o *OpenLoopOptions) { o.Conns = 0 },
		"zero keyspace":   func(o *OpenLoopOptions) { o.Keyspace = 0 },
		"negative size":   func(o *OpenLoopOptions) { o.DataSize = -1 },
		"zero in flight":  func(o *OpenLoopOptions) { o.MaxOutstanding = 0 },
		"zero drain time": func(o *OpenLoopOptions) { o.Drain = 0 },
	} {
		o := good
		mutate(&o)
		assert.Error(t, o.Validate(), name)
	}
}

func TestRunOpenLoopAgainstRedis(t *testing.T) {
	server := StartRedis(t, RedisOptions{})
	opts := OpenLoopOptions{Addr: server.Addr(), Rate: 2000, Duration: 300 * time.Millisecond, Conns: 3,
		Keyspace: 100, DataSize: 10, MaxOutstanding: 64, Drain: 5 * time.Second}
	res, err := RunOpenLoop(testContext(t), opts)
	require.NoError(t, err)
	assert.EqualValues(t, 600, res.Scheduled)
	assert.Equal(t, res.Scheduled, res.Sent)
	assert.Equal(t, res.Scheduled, res.Answered)
	assert.Zero(t, res.Errors)
	assert.Zero(t, res.Unanswered())
	assert.Equal(t, res.Answered, res.Latency.Count())
	assert.Positive(t, res.AchievedRate())
	assert.GreaterOrEqual(t, res.Elapsed, opts.Duration)
}

func TestRunOpenLoopCountsErrorReplies(t *testing.T) {
	// Without AUTH every request gets -NOAUTH.
	server := StartRedis(t, RedisOptions{Password: "secret"})
	opts := OpenLoopOptions{Addr: server.Addr(), Rate: 1000, Duration: 100 * time.Millisecond, Conns: 1,
		Keyspace: 1, MaxOutstanding: 8, Drain: 5 * time.Second}
	res, err := RunOpenLoop(testContext(t), opts)
	require.NoError(t, err)
	assert.Equal(t, res.Scheduled, res.Answered)
	assert.Equal(t, res.Answered, res.Errors)
}

func TestRunOpenLoopStopsWithItsContext(t *testing.T) {
	server := StartRedis(t, RedisOptions{})
	ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
	defer cancel()
	opts := OpenLoopOptions{Addr: server.Addr(), Rate: 1000, Duration: time.Minute, Conns: 2,
		Keyspace: 10, MaxOutstanding: 8, Drain: time.Second}
	res, err := RunOpenLoop(ctx, opts)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Positive(t, res.Answered)
	assert.Less(t, res.Answered, res.Scheduled)
}
