package loadgen

import (
	"context"
	"fmt"
	"math"
	"time"
)

// The metrics of RunLatencyComparison, per target and round.
const (
	LatencyP50      = "p50 ms"
	LatencyP99      = "p99 ms"
	LatencyP999     = "p999 ms"
	LatencyMax      = "max ms"
	LatencyAchieved = "achieved req/s"
	LatencyErrors   = "error replies"
	LatencyMissing  = "unanswered"
)

// LatencyMetrics are RunLatencyComparison's metric names in display order.
var LatencyMetrics = []string{LatencyP50, LatencyP99, LatencyP999, LatencyMax, LatencyAchieved,
	LatencyErrors, LatencyMissing}

// LatencyConfig configures RunLatencyComparison.
type LatencyConfig struct {
	// KvproxyBinary, KvproxyArgs and Peers are as in ProxyConfig.
	KvproxyBinary string
	KvproxyArgs   []string
	Peers         []PeerProxy
	// Rounds is how many interleaved rounds to run; medians are reported.
	Rounds int
	// Rate, Duration, Conns, Keyspace and DataSize shape each run's
	// open-loop load (OpenLoopOptions).
	Rate     float64
	Duration time.Duration
	Conns    int
	Keyspace int
	DataSize int
	// Progress, when set, is called after each measured run.
	Progress func(RunDone) `json:"-"`
}

// DefaultLatencyConfig offers 10,000 requests/s (half SET, half GET of 3
// bytes over 100,000 keys) on 20 connections for 5 s per run, 3 rounds: a
// load every target sustains on a 2-core machine, so the percentiles compare
// the hops rather than saturation.
func DefaultLatencyConfig() LatencyConfig {
	return LatencyConfig{Rounds: 3, Rate: 10000, Duration: 5 * time.Second, Conns: 20, Keyspace: 100000, DataSize: 3}
}

// latencyMaxOutstanding bounds each connection's unanswered requests.
const latencyMaxOutstanding = 4096

// latencyDrain is how long a run waits for replies after its schedule.
const latencyDrain = 5 * time.Second

func (c LatencyConfig) openLoop(addr string, duration time.Duration) OpenLoopOptions {
	return OpenLoopOptions{Addr: addr, Rate: c.Rate, Duration: duration, Conns: c.Conns, Keyspace: c.Keyspace,
		DataSize: c.DataSize, MaxOutstanding: latencyMaxOutstanding, Drain: latencyDrain}
}

// Runs is how many measured runs the comparison makes (the warm-up apart).
func (c LatencyConfig) Runs() int { return comparisonRuns(c.Rounds, c.Peers) }

// Validate reports the first setting that cannot make a comparison.
func (c LatencyConfig) Validate() error {
	if c.Rounds < 1 {
		return fmt.Errorf("rounds is %d, want at least 1", c.Rounds)
	}
	if err := c.openLoop("127.0.0.1:1", c.Duration).Validate(); err != nil {
		return err
	}
	return validatePeers(c.Peers)
}

// LatencyReport is the outcome of RunLatencyComparison.
type LatencyReport struct {
	Config LatencyConfig
	// Comparison holds the samples, medians and ratios against direct of
	// every target.
	Comparison *Comparison
	// Complete is false when the run stopped early: the medians are then
	// over the rounds that completed.
	Complete bool
}

// latencyWarmupDivisor makes the warm-up run a tenth of a measured run.
const latencyWarmupDivisor = 10

// RunLatencyComparison starts the same targets as RunProxyComparison
// (redis-server directly, kvproxy, twemproxy, the peers) and offers each the
// same open-loop load in interleaved rounds, after one unmeasured warm-up
// run per target. When the rounds stop early the report of the runs
// completed so far comes with the error; it is nil when nothing was
// measured.
func RunLatencyComparison(ctx context.Context, cfg LatencyConfig) (*LatencyReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	arms, err := startArms(ctx, cfg.KvproxyBinary, cfg.KvproxyArgs, cfg.Peers)
	if err != nil {
		return nil, err
	}
	defer arms.close()

	warmup := max(cfg.Duration/latencyWarmupDivisor, time.Duration(math.Ceil(float64(time.Second)/cfg.Rate)))
	for _, target := range arms.targets {
		if _, err := RunOpenLoop(ctx, cfg.openLoop(arms.addrs[target], warmup)); err != nil {
			return nil, fmt.Errorf("loadgen: latency comparison warm-up of %s: %w", target, err)
		}
	}
	cmp, runErr := Interleave(ctx, cfg.Rounds, arms.targets, TargetDirect,
		progressing(cfg.Rounds, cfg.Progress, func(ctx context.Context, _ int, target string) (Metrics, error) {
			res, err := RunOpenLoop(ctx, cfg.openLoop(arms.addrs[target], cfg.Duration))
			if err != nil {
				return nil, err
			}
			return latencyMetrics(res), nil
		}))
	if runErr != nil {
		runErr = fmt.Errorf("loadgen: latency comparison: %w", runErr)
		if cmp == nil || cmp.Rounds(TargetDirect) == 0 {
			return nil, runErr
		}
	}
	return &LatencyReport{Config: cfg, Comparison: cmp, Complete: runErr == nil}, runErr
}

func latencyMetrics(res OpenLoopResult) Metrics {
	h := res.Latency
	return Metrics{
		LatencyP50:      durationMs(h.Quantile(0.5)),
		LatencyP99:      durationMs(h.Quantile(0.99)),
		LatencyP999:     durationMs(h.Quantile(0.999)),
		LatencyMax:      durationMs(h.Max()),
		LatencyAchieved: res.AchievedRate(),
		LatencyErrors:   float64(res.Errors),
		LatencyMissing:  float64(res.Unanswered()),
	}
}
