package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The targets of RunProxyComparison: one cluster-enabled redis-server owning
// every slot, reached directly, through kvproxy and through twemproxy.
const (
	TargetDirect    = "direct"
	TargetKvproxy   = "kvproxy"
	TargetTwemproxy = "twemproxy"
)

// proxyTargets are the compared targets in display order; direct is the
// baseline of Comparison.Ratios.
var proxyTargets = []string{TargetDirect, TargetKvproxy, TargetTwemproxy}

// ProxyGoal is an acceptance target: kvproxy's requests/s at least MinRatio
// times Peer's, for every test at one pipeline depth.
type ProxyGoal struct {
	// Peer is TargetDirect or TargetTwemproxy.
	Peer string
	// Pipeline is the depth the goal applies to; it must be measured.
	Pipeline int
	// MinRatio is the lowest acceptable kvproxy/Peer requests/s ratio.
	MinRatio float64
}

// ProxyConfig configures RunProxyComparison.
type ProxyConfig struct {
	// KvproxyBinary is the kvproxy executable; empty builds kvproxy from
	// this module (BuildKvproxy) into a temporary directory.
	KvproxyBinary string
	// KvproxyArgs are more kvproxy flags, e.g. --backend-conns 8.
	KvproxyArgs []string
	// Rounds is how many interleaved rounds to run; medians are reported.
	Rounds int
	// Clients is redis-benchmark's -c.
	Clients int
	// Keyspace is redis-benchmark's -r.
	Keyspace int
	// Pipelines are the pipeline depths (-P) to measure, each a separate
	// redis-benchmark run.
	Pipelines []int
	// Requests are redis-benchmark's -n per test, one per entry of
	// Pipelines: deep pipelines need many more requests to last as long.
	Requests []int
	// Tests are redis-benchmark tests (-t) whose requests/s are compared.
	Tests []string
	// Goals are the acceptance targets the verdict lines check.
	Goals []ProxyGoal
	// Peers are more proxies to measure, after twemproxy.
	Peers []PeerProxy
	// Progress, when set, is called after each measured run.
	Progress func(RunDone) `json:"-"`
}

// DefaultProxyConfig is the comparison kvproxy's acceptance is judged on:
// SET and GET, 50 clients, 100000 random keys, pipelines 16 and 1 with about
// 2-3 s per test against redis-server directly on a quiet 2-core machine, 3
// rounds; kvproxy at 1.3x twemproxy or better at pipeline 16 and at 0.6x
// direct or better at pipeline 1.
func DefaultProxyConfig() ProxyConfig {
	return ProxyConfig{
		Rounds:    3,
		Clients:   50,
		Keyspace:  100000,
		Pipelines: []int{16, 1},
		Requests:  []int{1000000, 200000},
		Tests:     []string{"SET", "GET"},
		Goals: []ProxyGoal{
			{Peer: TargetTwemproxy, Pipeline: 16, MinRatio: 1.3},
			{Peer: TargetDirect, Pipeline: 1, MinRatio: 0.6},
		},
	}
}

// Validate reports the first setting that cannot make a comparison.
func (c ProxyConfig) Validate() error {
	switch {
	case c.Rounds < 1:
		return fmt.Errorf("rounds is %d, want at least 1", c.Rounds)
	case c.Clients < 1:
		return fmt.Errorf("clients is %d, want at least 1", c.Clients)
	case c.Keyspace < 0:
		return fmt.Errorf("keyspace is %d, want 0 or more", c.Keyspace)
	case len(c.Pipelines) == 0:
		return errors.New("no pipeline depth given")
	case len(c.Requests) != len(c.Pipelines):
		return fmt.Errorf("%d request counts for %d pipeline depths, want one per depth", len(c.Requests), len(c.Pipelines))
	case len(c.Tests) == 0:
		return errors.New("no test given")
	}
	for i, p := range c.Pipelines {
		if p < 1 {
			return fmt.Errorf("pipeline depth %d, want at least 1", p)
		}
		if slices.Index(c.Pipelines, p) != i {
			return fmt.Errorf("pipeline depth %d is listed twice", p)
		}
	}
	for _, n := range c.Requests {
		if n < 1 {
			return fmt.Errorf("request count %d, want at least 1", n)
		}
	}
	for _, t := range c.Tests {
		if t == "" || strings.Contains(t, ",") {
			return fmt.Errorf("test %q, want one redis-benchmark test name", t)
		}
	}
	if err := validatePeers(c.Peers); err != nil {
		return err
	}
	for _, g := range c.Goals {
		switch {
		case g.Peer != TargetDirect && g.Peer != TargetTwemproxy:
			return fmt.Errorf("goal against %q, want %s or %s", g.Peer, TargetDirect, TargetTwemproxy)
		case !slices.Contains(c.Pipelines, g.Pipeline):
			return fmt.Errorf("goal at pipeline %d, which is not measured (pipelines %v)", g.Pipeline, c.Pipelines)
		case !(g.MinRatio > 0) || math.IsInf(g.MinRatio, 0):
			return fmt.Errorf("goal ratio vs %s is %v, want a positive number", g.Peer, g.MinRatio)
		}
	}
	return nil
}

// Runs is how many measured runs the comparison makes (the warm-up apart).
func (c ProxyConfig) Runs() int { return comparisonRuns(c.Rounds, c.Peers) }

// ProxyCPUMetric names the proxy process's CPU microseconds per request at
// a pipeline depth (over all tests of that run); 0 for the direct target,
// which has no proxy.
func ProxyCPUMetric(pipeline int) string {
	return fmt.Sprintf("-P %d proxy cpu us/req", pipeline)
}

// ProxyCPUWholeRunMetric names the proxy process's CPU microseconds per
// request over every pipeline depth of a run together: the figure a mixed
// workload of shallow and deep pipelines pays, which the per-depth ones
// bracket.
const ProxyCPUWholeRunMetric = "all -P proxy cpu us/req"

// ServerCPUMetric names redis-server's CPU microseconds per request at a
// pipeline depth, whichever way the requests reached it.
func ServerCPUMetric(pipeline int) string {
	return fmt.Sprintf("-P %d redis cpu us/req", pipeline)
}

// IdleMetric names the share of the machine's CPU time, in percent, left
// idle while a pipeline depth ran: near 0, the machine was the limit; well
// above it, the processes of the ring (load generator, proxy, server)
// waited on each other.
func IdleMetric(pipeline int) string {
	return fmt.Sprintf("-P %d idle cpu %%", pipeline)
}

// MachineCPUMetric names the CPU microseconds per request that the whole
// machine spent while a pipeline depth ran: load generator, proxy, server
// and the kernel's network work between them. Its direct/target ratio,
// times the ratio of the busy shares (100 - idle), is the throughput ratio:
// it tells CPU cost apart from time spent waiting.
func MachineCPUMetric(pipeline int) string {
	return fmt.Sprintf("-P %d machine cpu us/req", pipeline)
}

// LatencyMetric names redis-benchmark's own latency percentile (p50, p99)
// of a test at a pipeline depth, in milliseconds.
func LatencyMetric(test string, pipeline int, percentile string) string {
	return fmt.Sprintf("%s -P %d %s ms", strings.ToUpper(test), pipeline, percentile)
}

// GoalResult is how one ProxyGoal fared.
type GoalResult struct {
	Goal ProxyGoal
	// Worst is the goal's throughput metric with the lowest kvproxy/peer
	// ratio, and Ratio that ratio.
	Worst string
	Ratio float64
}

// Pass reports whether kvproxy reached the goal on every test.
func (g GoalResult) Pass() bool { return g.Ratio >= g.Goal.MinRatio }

// Verdict is a one-line summary against the goal.
func (g GoalResult) Verdict() string {
	word := "PASS"
	if !g.Pass() {
		word = "FAIL"
	}
	return fmt.Sprintf("verdict: %s: at -P %d kvproxy reaches %.2fx %s at worst (%s), target %.2fx",
		word, g.Goal.Pipeline, g.Ratio, g.Goal.Peer, g.Worst, g.Goal.MinRatio)
}

// ProxyReport is the outcome of RunProxyComparison.
type ProxyReport struct {
	Config ProxyConfig
	// Comparison holds the samples, medians, and ratios against direct, of
	// TargetDirect, TargetKvproxy, TargetTwemproxy and the peers.
	Comparison *Comparison
	// Complete is false when the run stopped early (Ctrl-C, an error): the
	// medians are then over the rounds that completed, and there are no
	// goals.
	Complete bool
	// Throughput are the requests/s metric names in display order: per
	// pipeline depth, per test.
	Throughput []string
	// Latency are redis-benchmark's latency percentile metric names in
	// display order: per pipeline depth, per test, p50 then p99.
	Latency []string
	// CPU are the CPU-per-request metric names in display order: per
	// pipeline depth, the proxy's then redis-server's.
	CPU []string
	// VsTwemproxy holds, per metric, kvproxy's median divided by
	// twemproxy's; metrics where twemproxy measured 0 have none.
	VsTwemproxy Metrics
	// Goals are the results of Config.Goals, in order.
	Goals []GoalResult
}

// Pass reports whether every goal was reached.
func (r *ProxyReport) Pass() bool {
	for _, g := range r.Goals {
		if !g.Pass() {
			return false
		}
	}
	return true
}

// Verdicts are the goals' verdict lines, in order.
func (r *ProxyReport) Verdicts() []string {
	lines := make([]string, len(r.Goals))
	for i, g := range r.Goals {
		lines[i] = g.Verdict()
	}
	return lines
}

// RunProxyComparison starts one cluster-enabled redis-server owning every
// slot, kvproxy, twemproxy and the peers in front of it, and measures the
// server directly and through each proxy with redis-benchmark, in
// interleaved rounds after one unmeasured warm-up pass over every target.
// kvproxy is built first unless cfg.KvproxyBinary is set. When the rounds
// stop early (ctx ends, a run fails) the report of the runs completed so far
// comes with the error; it is nil when nothing was measured.
func RunProxyComparison(ctx context.Context, cfg ProxyConfig) (*ProxyReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if _, err := lookBinary("", "redis-benchmark"); err != nil {
		return nil, err
	}
	arms, err := startArms(ctx, cfg.KvproxyBinary, cfg.KvproxyArgs, cfg.Peers)
	if err != nil {
		return nil, err
	}
	defer arms.close()

	bench := newProxyBench(cfg, arms.server)
	defer bench.close()
	for _, target := range arms.targets {
		bench.addTarget(target, arms.addrs[target], arms.proxyPids[target])
	}
	if err := bench.warmUp(ctx, arms.targets); err != nil {
		return nil, fmt.Errorf("loadgen: proxy comparison warm-up: %w", err)
	}
	cmp, runErr := Interleave(ctx, cfg.Rounds, arms.targets, TargetDirect,
		progressing(cfg.Rounds, cfg.Progress, func(ctx context.Context, _ int, target string) (Metrics, error) {
			return bench.measure(ctx, target)
		}))
	if runErr != nil {
		runErr = fmt.Errorf("loadgen: proxy comparison: %w", runErr)
		if cmp == nil || cmp.Rounds(TargetDirect) == 0 {
			return nil, runErr
		}
	}
	report, err := newProxyReport(cfg, cmp, runErr == nil)
	if err != nil {
		return nil, errors.Join(runErr, err)
	}
	return report, runErr
}

// newProxyReport derives the display order, the kvproxy/twemproxy ratios and
// (when complete) the goals' results from the comparison.
func newProxyReport(cfg ProxyConfig, cmp *Comparison, complete bool) (*ProxyReport, error) {
	r := &ProxyReport{Config: cfg, Comparison: cmp, Complete: complete, VsTwemproxy: Metrics{}}
	for _, pipeline := range cfg.Pipelines {
		for _, test := range cfg.Tests {
			r.Throughput = append(r.Throughput, ThroughputMetric(test, pipeline))
			r.Latency = append(r.Latency, LatencyMetric(test, pipeline, "p50"), LatencyMetric(test, pipeline, "p99"))
		}
		r.CPU = append(r.CPU, ProxyCPUMetric(pipeline), ServerCPUMetric(pipeline), IdleMetric(pipeline), MachineCPUMetric(pipeline))
	}
	if len(cfg.Pipelines) > 1 {
		r.CPU = append(r.CPU, ProxyCPUWholeRunMetric)
	}
	for name, v := range cmp.Medians[TargetKvproxy] {
		if peer := cmp.Medians[TargetTwemproxy][name]; peer != 0 {
			r.VsTwemproxy[name] = v / peer
		}
	}
	if !complete {
		return r, nil
	}
	for _, goal := range cfg.Goals {
		result := GoalResult{Goal: goal, Ratio: math.Inf(1)}
		for _, test := range cfg.Tests {
			name := ThroughputMetric(test, goal.Pipeline)
			peer := cmp.Medians[goal.Peer][name]
			if peer == 0 {
				return nil, fmt.Errorf("loadgen: %s measured 0 %s", goal.Peer, name)
			}
			if ratio := cmp.Medians[TargetKvproxy][name] / peer; ratio < result.Ratio {
				result.Worst, result.Ratio = name, ratio
			}
		}
		r.Goals = append(r.Goals, result)
	}
	return r, nil
}

// proxyBench measures targets that all end at one redis-server.
type proxyBench struct {
	cfg ProxyConfig
	// serverPid is redis-server's process id, and serverClient a direct
	// connection to it for INFO.
	serverPid    int
	serverClient *redis.Client
	addrs        map[string]string
	// proxyPids holds the proxy process of each target that has one.
	proxyPids map[string]int
}

func newProxyBench(cfg ProxyConfig, server *RedisServer) *proxyBench {
	return &proxyBench{
		cfg:          cfg,
		serverPid:    server.Pid(),
		serverClient: redis.NewClient(&redis.Options{Addr: server.Addr(), MaxRetries: -1}),
		addrs:        map[string]string{},
		proxyPids:    map[string]int{},
	}
}

func (b *proxyBench) close() { b.serverClient.Close() }

// addTarget registers a target reached at addr; proxyPid is its proxy's
// process id, or 0 when addr is the server itself.
func (b *proxyBench) addTarget(name, addr string, proxyPid int) {
	b.addrs[name] = addr
	if proxyPid != 0 {
		b.proxyPids[name] = proxyPid
	}
}

// warmupDivisor makes the warm-up run a tenth of each measured run.
const warmupDivisor = 10

// warmUp runs a short redis-benchmark of every test at every pipeline depth
// against each target and discards it: a fresh proxy pays for connection
// setup and heap growth on its first requests, and the first GETs would
// otherwise find an empty keyspace.
func (b *proxyBench) warmUp(ctx context.Context, targets []string) error {
	for _, target := range targets {
		for i, pipeline := range b.cfg.Pipelines {
			requests := max(b.cfg.Requests[i]/warmupDivisor, 1)
			if _, err := RunRedisBenchmark(ctx, b.benchmarkOptions(target, pipeline, requests)); err != nil {
				return fmt.Errorf("%s: %w", target, err)
			}
		}
	}
	return nil
}

func (b *proxyBench) benchmarkOptions(target string, pipeline, requests int) BenchmarkOptions {
	return BenchmarkOptions{Addr: b.addrs[target], Clients: b.cfg.Clients, Requests: requests,
		Pipeline: pipeline, Keyspace: b.cfg.Keyspace, Tests: b.cfg.Tests}
}

// cpuSample is the CPU time of redis-server and of the target's proxy (zero
// without one) at one moment, with the server's command count.
type cpuSample struct {
	server, proxy float64 // microseconds
	commands      int64
}

func (b *proxyBench) sample(ctx context.Context, target string) (cpuSample, error) {
	var s cpuSample
	server, err := CPUTime(b.serverPid)
	if err != nil {
		return s, err
	}
	s.server = float64(server.Microseconds())
	if pid, ok := b.proxyPids[target]; ok {
		proxy, err := CPUTime(pid)
		if err != nil {
			return s, err
		}
		s.proxy = float64(proxy.Microseconds())
	}
	info, err := b.serverClient.Info(ctx, "stats").Result()
	if err != nil {
		return s, fmt.Errorf("loadgen: INFO stats of redis-server: %w", err)
	}
	if s.commands, err = infoInt(info, "total_commands_processed"); err != nil {
		return s, fmt.Errorf("loadgen: INFO stats of redis-server: %w", err)
	}
	return s, nil
}

// measure runs every pipeline depth against target once. It fails when
// redis-server processed fewer commands than the run sent, which would mean
// the target answered requests without forwarding them.
func (b *proxyBench) measure(ctx context.Context, target string) (Metrics, error) {
	tick, err := clockTick()
	if err != nil {
		return nil, err
	}
	tickMicroseconds := float64(tick.Microseconds())
	m := Metrics{}
	var proxyCPU float64
	var allRequests int64
	for i, pipeline := range b.cfg.Pipelines {
		before, err := b.sample(ctx, target)
		if err != nil {
			return nil, err
		}
		idleBefore, totalBefore, err := MachineCPU()
		if err != nil {
			return nil, err
		}
		res, err := RunRedisBenchmark(ctx, b.benchmarkOptions(target, pipeline, b.cfg.Requests[i]))
		if err != nil {
			return nil, err
		}
		idleAfter, totalAfter, err := MachineCPU()
		if err != nil {
			return nil, err
		}
		busyTicks := (totalAfter - totalBefore) - (idleAfter - idleBefore)
		if totalAfter > totalBefore {
			m[IdleMetric(pipeline)] = 100 * float64(idleAfter-idleBefore) / float64(totalAfter-totalBefore)
		} else {
			m[IdleMetric(pipeline)] = 0 // within one clock tick
		}
		after, err := b.sample(ctx, target)
		if err != nil {
			return nil, err
		}
		for _, test := range b.cfg.Tests {
			tr, ok := res.Test(test)
			if !ok {
				return nil, fmt.Errorf("loadgen: redis-benchmark printed no %s result:\n%s", test, res.CSV)
			}
			m[ThroughputMetric(test, pipeline)] = tr.RequestsPerSec
			m[LatencyMetric(test, pipeline, "p50")] = durationMs(tr.P50Latency)
			m[LatencyMetric(test, pipeline, "p99")] = durationMs(tr.P99Latency)
		}
		requests := int64(b.cfg.Requests[i] * len(b.cfg.Tests))
		if served := after.commands - before.commands; served < requests {
			return nil, fmt.Errorf("loadgen: redis-server processed %d commands while %s was sent %d requests at -P %d",
				served, target, requests, pipeline)
		}
		m[ProxyCPUMetric(pipeline)] = (after.proxy - before.proxy) / float64(requests)
		m[ServerCPUMetric(pipeline)] = (after.server - before.server) / float64(requests)
		m[MachineCPUMetric(pipeline)] = float64(busyTicks) * tickMicroseconds / float64(requests)
		proxyCPU += after.proxy - before.proxy
		allRequests += requests
	}
	if len(b.cfg.Pipelines) > 1 {
		m[ProxyCPUWholeRunMetric] = proxyCPU / float64(allRequests)
	}
	return m, nil
}

// infoInt returns the integer field name of an INFO reply.
func infoInt(info, name string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		value, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), name+":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("INFO field %s: %w", name, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("INFO has no field %s", name)
}

func durationMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
