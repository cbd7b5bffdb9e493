package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
)

// The targets of RunKvsimVsRedis.
const (
	TargetRedis = "redis"
	TargetKvsim = "kvsim"
)

// KvsimVsRedisConfig configures RunKvsimVsRedis.
type KvsimVsRedisConfig struct {
	// Rounds is how many interleaved rounds to run; medians are reported.
	Rounds int
	// Clients is redis-benchmark's -c.
	Clients int
	// Requests is redis-benchmark's -n, per test and pipeline depth.
	Requests int
	// Keyspace is redis-benchmark's -r.
	Keyspace int
	// Pipelines are the pipeline depths (-P) to measure, each a separate run.
	Pipelines []int
	// Tests are redis-benchmark tests (-t) whose requests/s are compared.
	Tests []string
	// Target is the lowest acceptable kvsim/redis requests/s ratio.
	Target float64
}

// DefaultKvsimVsRedisConfig is the comparison the project tracks: SET and
// GET, 50 clients, 100000 random keys, pipelines 16 and 1, 3 rounds, kvsim
// at half of redis-server or better.
func DefaultKvsimVsRedisConfig() KvsimVsRedisConfig {
	return KvsimVsRedisConfig{
		Rounds:    3,
		Clients:   50,
		Requests:  100000,
		Keyspace:  100000,
		Pipelines: []int{16, 1},
		Tests:     []string{"SET", "GET"},
		Target:    0.5,
	}
}

// Validate reports the first setting that cannot make a comparison.
func (c KvsimVsRedisConfig) Validate() error {
	switch {
	case c.Rounds < 1:
		return fmt.Errorf("rounds is %d, want at least 1", c.Rounds)
	case c.Clients < 1:
		return fmt.Errorf("clients is %d, want at least 1", c.Clients)
	case c.Requests < 1:
		return fmt.Errorf("requests is %d, want at least 1", c.Requests)
	case c.Keyspace < 0:
		return fmt.Errorf("keyspace is %d, want 0 or more", c.Keyspace)
	case len(c.Pipelines) == 0:
		return errors.New("no pipeline depth given")
	case len(c.Tests) == 0:
		return errors.New("no test given")
	case !(c.Target > 0) || math.IsInf(c.Target, 0):
		return fmt.Errorf("target ratio is %v, want a positive number", c.Target)
	}
	for _, p := range c.Pipelines {
		if p < 1 {
			return fmt.Errorf("pipeline depth %d, want at least 1", p)
		}
	}
	for _, t := range c.Tests {
		if t == "" || strings.Contains(t, ",") {
			return fmt.Errorf("test %q, want one redis-benchmark test name", t)
		}
	}
	return nil
}

// ThroughputMetric names the requests/s metric of a test at a pipeline depth.
func ThroughputMetric(test string, pipeline int) string {
	return fmt.Sprintf("%s -P %d req/s", strings.ToUpper(test), pipeline)
}

// CPUMetric names the server's CPU microseconds per request at a pipeline
// depth (over all tests of that run).
func CPUMetric(pipeline int) string {
	return fmt.Sprintf("-P %d cpu us/req", pipeline)
}

// KvsimVsRedisReport is the outcome of RunKvsimVsRedis.
type KvsimVsRedisReport struct {
	Config     KvsimVsRedisConfig
	Comparison *Comparison
	// Throughput are the requests/s metric names in display order: per
	// pipeline depth, per test.
	Throughput []string
	// CPU are the CPU-per-request metric names, one per pipeline depth.
	CPU []string
	// Worst is the throughput metric with the lowest kvsim/redis ratio, and
	// WorstRatio that ratio.
	Worst      string
	WorstRatio float64
}

// Pass reports whether kvsim reached the target ratio on every throughput
// metric.
func (r *KvsimVsRedisReport) Pass() bool { return r.WorstRatio >= r.Config.Target }

// Verdict is a one-line summary against the target ratio.
func (r *KvsimVsRedisReport) Verdict() string {
	word := "PASS"
	if !r.Pass() {
		word = "FAIL"
	}
	return fmt.Sprintf("verdict: %s: kvsim reaches %.2fx redis-server at worst (%s), target %.2fx",
		word, r.WorstRatio, r.Worst, r.Config.Target)
}

// RunKvsimVsRedis starts a plain redis-server and a single kvsim node owning
// every slot, then measures both with redis-benchmark in interleaved rounds.
// The CPU metrics are redis-server's and, for kvsim, this whole process's
// (kvsim runs inside it; redis-benchmark is a separate process).
func RunKvsimVsRedis(ctx context.Context, cfg KvsimVsRedisConfig) (*KvsimVsRedisReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if _, err := lookBinary("", "redis-benchmark"); err != nil {
		return nil, err
	}
	server, err := LaunchRedis(ctx, RedisOptions{})
	if err != nil {
		return nil, err
	}
	defer server.Close()
	node, err := StartKvsimMaster(ctx)
	if err != nil {
		return nil, err
	}
	defer node.Kill()

	addrs := map[string]string{TargetRedis: server.Addr(), TargetKvsim: node.Addr()}
	pids := map[string]int{TargetRedis: server.Pid(), TargetKvsim: os.Getpid()}
	measure := func(ctx context.Context, _ int, target string) (Metrics, error) {
		m := Metrics{}
		for _, pipeline := range cfg.Pipelines {
			cpuBefore, err := CPUTime(pids[target])
			if err != nil {
				return nil, err
			}
			res, err := RunRedisBenchmark(ctx, BenchmarkOptions{Addr: addrs[target], Clients: cfg.Clients,
				Requests: cfg.Requests, Pipeline: pipeline, Keyspace: cfg.Keyspace, Tests: cfg.Tests})
			if err != nil {
				return nil, err
			}
			cpuAfter, err := CPUTime(pids[target])
			if err != nil {
				return nil, err
			}
			for _, test := range cfg.Tests {
				tr, ok := res.Test(test)
				if !ok {
					return nil, fmt.Errorf("loadgen: redis-benchmark printed no %s result:\n%s", test, res.CSV)
				}
				m[ThroughputMetric(test, pipeline)] = tr.RequestsPerSec
			}
			requests := float64(cfg.Requests * len(cfg.Tests))
			m[CPUMetric(pipeline)] = float64((cpuAfter - cpuBefore).Microseconds()) / requests
		}
		return m, nil
	}
	cmp, err := Interleave(ctx, cfg.Rounds, []string{TargetRedis, TargetKvsim}, TargetRedis, measure)
	if err != nil {
		return nil, fmt.Errorf("loadgen: kvsim vs redis: %w", err)
	}

	report := &KvsimVsRedisReport{Config: cfg, Comparison: cmp, WorstRatio: math.Inf(1)}
	for _, pipeline := range cfg.Pipelines {
		for _, test := range cfg.Tests {
			name := ThroughputMetric(test, pipeline)
			report.Throughput = append(report.Throughput, name)
			ratio, ok := cmp.Ratios[TargetKvsim][name]
			if !ok {
				return nil, fmt.Errorf("loadgen: redis-server measured 0 %s", name)
			}
			if ratio < report.WorstRatio {
				report.Worst, report.WorstRatio = name, ratio
			}
		}
		report.CPU = append(report.CPU, CPUMetric(pipeline))
	}
	return report, nil
}

// StartKvsimMaster starts one kvsim node on a free loopback port and makes
// it the only master of a cluster owning every slot, as a Kvrocks controller
// would: CLUSTERX SETNODEID, then CLUSTERX SETNODES version 1. It returns
// once CLUSTER INFO reports cluster_state:ok. Stop the node with Kill.
func StartKvsimMaster(ctx context.Context) (*kvsim.Node, error) {
	node, err := kvsim.StartNode(kvsim.NodeConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	if err := pushSingleMasterTopology(ctx, node); err != nil {
		node.Kill()
		return nil, err
	}
	return node, nil
}

func pushSingleMasterTopology(ctx context.Context, node *kvsim.Node) error {
	host, port, err := net.SplitHostPort(node.Addr())
	if err != nil {
		return fmt.Errorf("loadgen: kvsim address %q: %w", node.Addr(), err)
	}
	client := redis.NewClient(&redis.Options{Addr: node.Addr(), Protocol: 2, MaxRetries: -1})
	defer client.Close()
	id := node.ID()
	if err := client.Do(ctx, "CLUSTERX", "SETNODEID", id).Err(); err != nil {
		return fmt.Errorf("loadgen: kvsim CLUSTERX SETNODEID: %w", err)
	}
	topology := fmt.Sprintf("%s %s %s master - 0-16383", id, host, port)
	// Version 1 is the first topology a node accepts (a fresh node is at -1).
	if err := client.Do(ctx, "CLUSTERX", "SETNODES", topology, "1").Err(); err != nil {
		return fmt.Errorf("loadgen: kvsim CLUSTERX SETNODES %q 1: %w", topology, err)
	}
	info, err := client.ClusterInfo(ctx).Result()
	if err != nil {
		return fmt.Errorf("loadgen: kvsim CLUSTER INFO after SETNODES: %w", err)
	}
	if !slices.Contains(strings.Split(info, "\r\n"), "cluster_state:ok") {
		return fmt.Errorf("loadgen: kvsim CLUSTER INFO after SETNODES lacks cluster_state:ok:\n%s", info)
	}
	return nil
}
