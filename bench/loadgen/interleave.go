package loadgen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Metrics are the named measurements of one run against one target, e.g.
// "SET -P 16 req/s" → 512000.
type Metrics map[string]float64

// Comparison is the outcome of Interleave.
type Comparison struct {
	// Targets are the compared targets, in the order given to Interleave.
	Targets []string
	// Baseline is the target every other is divided by.
	Baseline string
	// Samples holds, per target and metric, one value per round in round
	// order.
	Samples map[string]map[string][]float64
	// Medians holds, per target, the median of each metric over the rounds.
	Medians map[string]Metrics
	// Ratios holds, per target, each metric's median divided by the
	// baseline's median of that metric. Metrics whose baseline median is 0
	// have no ratio.
	Ratios map[string]Metrics
}

// MetricNames are the metric names the runs returned, sorted.
func (c *Comparison) MetricNames() []string {
	return slices.Sorted(maps.Keys(c.Medians[c.Baseline]))
}

// Interleave measures every target once per round by calling fn, for the
// given number of rounds, and summarizes the rounds by their median. Rounds
// alternate the targets so that a slow phase of a noisy machine hits all of
// them alike; each round starts one target further along, so no target is
// always measured first (right after another target's load). Every run must
// return the same metric names. The first error, or ctx ending, stops the
// comparison; the Comparison of the runs completed so far (medians over
// fewer rounds, targets never measured absent) is returned with the error,
// so that an interrupted benchmark still reports what it measured.
func Interleave(ctx context.Context, rounds int, targets []string, baseline string,
	fn func(ctx context.Context, round int, target string) (Metrics, error)) (*Comparison, error) {
	if rounds < 1 {
		return nil, fmt.Errorf("loadgen: Interleave needs at least 1 round, got %d", rounds)
	}
	if len(targets) == 0 {
		return nil, errors.New("loadgen: Interleave needs at least one target")
	}
	seen := map[string]bool{}
	for _, t := range targets {
		if seen[t] {
			return nil, fmt.Errorf("loadgen: Interleave target %q is listed twice", t)
		}
		seen[t] = true
	}
	if !seen[baseline] {
		return nil, fmt.Errorf("loadgen: Interleave baseline %q is not one of the targets %q", baseline, targets)
	}

	c := &Comparison{
		Targets:  slices.Clone(targets),
		Baseline: baseline,
		Samples:  map[string]map[string][]float64{},
		Medians:  map[string]Metrics{},
		Ratios:   map[string]Metrics{},
	}
	var names []string // the metric names of the first run
	for round := range rounds {
		for i := range targets {
			target := targets[(round+i)%len(targets)]
			if err := ctx.Err(); err != nil {
				return c.summarize(), fmt.Errorf("loadgen: Interleave stopped before round %d on %s: %w", round+1, target, err)
			}
			m, err := fn(ctx, round, target)
			if err != nil {
				return c.summarize(), fmt.Errorf("round %d on %s: %w", round+1, target, err)
			}
			got := slices.Sorted(maps.Keys(m))
			if names == nil {
				names = got
			} else if !slices.Equal(got, names) {
				return c.summarize(), fmt.Errorf("loadgen: round %d on %s returned metrics %q, the first run returned %q",
					round+1, target, got, names)
			}
			if c.Samples[target] == nil {
				c.Samples[target] = map[string][]float64{}
			}
			for name, v := range m {
				c.Samples[target][name] = append(c.Samples[target][name], v)
			}
		}
	}
	return c.summarize(), nil
}

// summarize fills Medians and Ratios from Samples and returns c. A target
// without samples gets empty ones.
func (c *Comparison) summarize() *Comparison {
	for _, target := range c.Targets {
		c.Medians[target] = Metrics{}
		for name, values := range c.Samples[target] {
			c.Medians[target][name] = Median(values)
		}
	}
	for _, target := range c.Targets {
		c.Ratios[target] = Metrics{}
		for name, v := range c.Medians[target] {
			if base := c.Medians[c.Baseline][name]; base != 0 {
				c.Ratios[target][name] = v / base
			}
		}
	}
	return c
}

// Rounds is how many runs of target completed.
func (c *Comparison) Rounds(target string) int {
	for _, values := range c.Samples[target] {
		return len(values)
	}
	return 0
}

// Median is the middle value of values, or the mean of the two middle ones
// when there is an even number; 0 for none.
func Median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}
