package loadgen

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInterleaveRotatesTargetsAcrossRounds(t *testing.T) {
	var calls []string
	_, err := Interleave(context.Background(), 4, []string{"a", "b", "c"}, "a",
		func(_ context.Context, round int, target string) (Metrics, error) {
			calls = append(calls, fmt.Sprintf("%d%s", round, target))
			return Metrics{"x": 1}, nil
		})
	require.NoError(t, err)
	assert.Equal(t, []string{"0a", "0b", "0c", "1b", "1c", "1a", "2c", "2a", "2b", "3a", "3b", "3c"}, calls)
}

func TestInterleaveMediansAndRatios(t *testing.T) {
	// Per target and round: ops, and cost that is 0 on the baseline.
	ops := map[string][]float64{"direct": {100, 300, 200}, "proxy": {90, 10, 50}}
	cost := map[string][]float64{"direct": {0, 0, 0}, "proxy": {4, 2, 3}}
	cmp, err := Interleave(context.Background(), 3, []string{"direct", "proxy"}, "direct",
		func(_ context.Context, round int, target string) (Metrics, error) {
			return Metrics{"ops": ops[target][round], "cost": cost[target][round]}, nil
		})
	require.NoError(t, err)
	assert.Equal(t, []string{"direct", "proxy"}, cmp.Targets)
	assert.Equal(t, "direct", cmp.Baseline)
	assert.Equal(t, []string{"cost", "ops"}, cmp.MetricNames())
	assert.Equal(t, ops["proxy"], cmp.Samples["proxy"]["ops"], "samples stay in round order")
	assert.Equal(t, Metrics{"ops": 200, "cost": 0}, cmp.Medians["direct"])
	assert.Equal(t, Metrics{"ops": 50, "cost": 3}, cmp.Medians["proxy"])
	assert.Equal(t, Metrics{"ops": 1}, cmp.Ratios["direct"], "no ratio over a zero baseline")
	assert.Equal(t, Metrics{"ops": 0.25}, cmp.Ratios["proxy"])
}

func TestMedian(t *testing.T) {
	assert.Equal(t, 0.0, Median(nil))
	assert.Equal(t, 7.0, Median([]float64{7}))
	assert.Equal(t, 2.0, Median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, Median([]float64{4, 1, 3, 2}))
	values := []float64{3, 1, 2}
	Median(values)
	assert.Equal(t, []float64{3, 1, 2}, values, "the input is not reordered")
}

func TestInterleaveRejectsBadArguments(t *testing.T) {
	called := false
	fn := func(context.Context, int, string) (Metrics, error) { called = true; return Metrics{}, nil }
	ctx := context.Background()
	_, err := Interleave(ctx, 0, []string{"a"}, "a", fn)
	assert.Error(t, err, "zero rounds")
	_, err = Interleave(ctx, 1, nil, "a", fn)
	assert.Error(t, err, "no targets")
	_, err = Interleave(ctx, 1, []string{"a", "a"}, "a", fn)
	assert.Error(t, err, "duplicate target")
	_, err = Interleave(ctx, 1, []string{"a", "b"}, "c", fn)
	assert.Error(t, err, "baseline not a target")
	assert.False(t, called)
}

func TestInterleaveStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	_, err := Interleave(context.Background(), 3, []string{"a", "b"}, "a",
		func(_ context.Context, _ int, target string) (Metrics, error) {
			calls++
			if target == "b" {
				return nil, boom
			}
			return Metrics{"x": 1}, nil
		})
	assert.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "round 1 on b")
	assert.Equal(t, 2, calls)
}

func TestInterleaveRequiresTheSameMetricsFromEveryRun(t *testing.T) {
	_, err := Interleave(context.Background(), 1, []string{"a", "b"}, "a",
		func(_ context.Context, _ int, target string) (Metrics, error) {
			if target == "b" {
				return Metrics{"x": 1, "y": 2}, nil
			}
			return Metrics{"x": 1}, nil
		})
	assert.ErrorContains(t, err, "returned metrics")
}

func TestInterleaveStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	partial, err := Interleave(ctx, 5, []string{"a", "b"}, "a",
		func(context.Context, int, string) (Metrics, error) {
			calls++
			cancel()
			return Metrics{"x": 1}, nil
		})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, calls)
	// The run that completed is still reported.
	require.NotNil(t, partial)
	assert.Equal(t, 1, partial.Rounds("a"))
	assert.Equal(t, 0, partial.Rounds("b"))
	assert.Equal(t, Metrics{"x": 1}, partial.Medians["a"])
	assert.Empty(t, partial.Medians["b"])
}
