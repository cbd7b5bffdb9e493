// Package soak runs kvproxy's soak: mixed load through a kvproxy process in
// front of a simulated Kvrocks cluster (kvsim, in this process) while
// planned failovers rotate over every shard and back, and reports errors,
// lost or duplicated acknowledged writes, and the proxy's memory, goroutines
// and clients over time. The promise it checks is zero errors and zero lost
// writes through planned failovers.
package soak

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// FailoverKind is a way to run a planned failover, or a topology push.
type FailoverKind string

const (
	// FailoverClusterx is CLUSTERX FAILOVER <replica-id> <timeout-ms> sent
	// through the proxy (kvrocks#3295); once the master reports success the
	// soak commits the swapped topology as a controller would, or, with
	// Config.ProxyReports, waits for the proxy to make the controller commit
	// it.
	FailoverClusterx FailoverKind = "clusterx"
	// FailoverPause is the controller's manual failover of released
	// Kvrocks: CLIENT PAUSE WRITE, wait for the replica, push the swapped
	// topology, unpause.
	FailoverPause FailoverKind = "pause"
	// FailoverController is the same failover asked as an operator does:
	// through the controller's HTTP API (POST .../shards/{shard}/failover)
	// with the replica as the preferred node.
	FailoverController FailoverKind = "controller"
	// FailoverPush is no failover: the controller pushes its topology
	// unchanged one version up, as kvrocks-controller does after other
	// changes of the cluster. A push must never move a shard back to a
	// node that handed it over. It runs only between failovers.
	FailoverPush FailoverKind = "push"
)

// failoverKinds are the kinds, in the order reports list them.
var failoverKinds = []FailoverKind{FailoverClusterx, FailoverController, FailoverPause, FailoverPush}

// ParseFailoverKinds parses a comma-separated list of failover kinds.
func ParseFailoverKinds(s string) ([]FailoverKind, error) {
	var kinds []FailoverKind
	for field := range strings.SplitSeq(s, ",") {
		switch k := FailoverKind(strings.TrimSpace(field)); {
		case slices.Contains(failoverKinds, k):
			kinds = append(kinds, k)
		case k == "":
		default:
			return nil, fmt.Errorf("unknown failover kind %q (want %s, %s, %s or %s)", k,
				FailoverClusterx, FailoverController, FailoverPause, FailoverPush)
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("no failover kind in %q", s)
	}
	return kinds, nil
}

// Config configures a soak run.
type Config struct {
	// Duration is how long the load and the failovers run.
	Duration time.Duration
	// FailoverInterval is the time between the starts of two steps of the
	// schedule (a planned failover, or a step between two); a step that
	// takes longer delays the next one.
	FailoverInterval time.Duration
	// FailoverKinds are the planned failovers' kinds, used in turn (see
	// schedule); push is not one.
	FailoverKinds []FailoverKind
	// Between are the steps run between two planned failovers, in turn:
	// failovers of another shard than the one just moved, and pushes.
	// Empty runs planned failovers only.
	Between []FailoverKind
	// PlannedFailovers ends the soak after that many planned failovers
	// (Duration still bounds it); 0 runs them until Duration is over.
	PlannedFailovers int
	// FailoverTimeout is CLUSTERX FAILOVER's timeout: the longest write
	// pause the master allows (it also checks the replica for half of it).
	FailoverTimeout time.Duration
	// SampleInterval is the time between two samples of the proxy.
	SampleInterval time.Duration
	// Clients is the number of load connections, spread over SET/GET,
	// MSET/MGET, pipelines and transactions; a publisher and a subscriber
	// come on top.
	Clients int
	// Keys is the number of keys each client writes and reads.
	Keys int
	// Pipeline is the depth of the pipelining clients' pipelines.
	Pipeline int
	// Shards is the number of kvsim masters, each with one replica.
	Shards int
	// ReplDelay is how long kvsim replicas wait before applying a change:
	// it makes the write pause of a failover real.
	ReplDelay time.Duration
	// ClientTimeout is the clients' read and write timeout; a request not
	// answered within it counts as a network error.
	ClientTimeout time.Duration
	// Seed makes the clients' choices of keys and commands repeatable.
	Seed uint64
	// KvproxyBinary is the kvproxy to run; empty builds kvproxy/cmd/kvproxy.
	KvproxyBinary string
	// KvproxyArgs are more kvproxy flags.
	KvproxyArgs []string
	// ProxyReports starts kvproxy with --controller (the controller's HTTP
	// API), so the proxy tells the controller of a CLUSTERX FAILOVER it
	// started, and the soak does not: it waits for the controller to record
	// the handover. Off, the soak commits the handover itself, as an
	// operator would have to.
	ProxyReports bool
	// ReportWait bounds, with ProxyReports, the wait for the controller to
	// record a handover the proxy reports; past it the failover failed.
	ReportWait time.Duration
	// RedisBenchmark runs redis-benchmark through the proxy, again and
	// again, as long as the load runs; every error it meets is a client
	// error of the soak.
	RedisBenchmark bool
	// BenchmarkClients and BenchmarkPipeline are redis-benchmark's -c and -P.
	BenchmarkClients, BenchmarkPipeline int
	// Progress receives a line per sample and per failover and the
	// cluster's warnings, one write at a time, until Run returns; nil
	// discards them.
	Progress io.Writer
}

// DefaultConfig returns a one-minute soak: 3 shards, 8 clients, a
// failover every 5 s alternating CLUSTERX FAILOVER and CLIENT PAUSE.
func DefaultConfig() Config {
	return Config{
		Duration:         time.Minute,
		FailoverInterval: 5 * time.Second,
		FailoverKinds:    []FailoverKind{FailoverClusterx, FailoverPause},
		FailoverTimeout:  3 * time.Second,
		SampleInterval:   5 * time.Second,
		Clients:          8,
		Keys:             1000,
		Pipeline:         16,
		Shards:           3,
		ReplDelay:        50 * time.Millisecond,
		ClientTimeout:    5 * time.Second,
		ReportWait:       10 * time.Second,
		Seed:             1,
		// As redis-benchmark is run against Kvrocks, issue 10.
		BenchmarkClients:  50,
		BenchmarkPipeline: 16,
	}
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Duration <= 0:
		return fmt.Errorf("duration must be positive, got %v", c.Duration)
	case c.FailoverInterval <= 0:
		return fmt.Errorf("failover interval must be positive, got %v", c.FailoverInterval)
	case c.FailoverInterval >= c.Duration:
		return fmt.Errorf("failover interval (%v) must be shorter than the duration (%v), or no failover runs", c.FailoverInterval, c.Duration)
	case len(c.FailoverKinds) == 0:
		return fmt.Errorf("no failover kind")
	case c.FailoverTimeout < time.Millisecond:
		return fmt.Errorf("failover timeout must be at least 1ms, got %v", c.FailoverTimeout)
	case c.SampleInterval <= 0:
		return fmt.Errorf("sample interval must be positive, got %v", c.SampleInterval)
	case c.Clients < 1 || c.Clients > 10000:
		return fmt.Errorf("clients must be between 1 and 10000, got %d", c.Clients)
	case c.Keys < 1 || c.Keys > 1_000_000:
		return fmt.Errorf("keys must be between 1 and 1000000, got %d", c.Keys)
	case c.Pipeline < 1 || c.Pipeline > 10000:
		return fmt.Errorf("pipeline must be between 1 and 10000, got %d", c.Pipeline)
	case c.Shards < 1 || c.Shards > 64:
		return fmt.Errorf("shards must be between 1 and 64, got %d", c.Shards)
	case c.ReplDelay < 0:
		return fmt.Errorf("replication delay must not be negative, got %v", c.ReplDelay)
	case c.ClientTimeout <= 0:
		return fmt.Errorf("client timeout must be positive, got %v", c.ClientTimeout)
	case c.ProxyReports && c.ReportWait <= 0:
		return fmt.Errorf("report wait must be positive, got %v", c.ReportWait)
	case c.PlannedFailovers < 0:
		return fmt.Errorf("planned failovers must not be negative, got %d", c.PlannedFailovers)
	case c.RedisBenchmark && (c.BenchmarkClients < 1 || c.BenchmarkClients > 10000):
		return fmt.Errorf("redis-benchmark clients must be between 1 and 10000, got %d", c.BenchmarkClients)
	case c.RedisBenchmark && (c.BenchmarkPipeline < 1 || c.BenchmarkPipeline > 10000):
		return fmt.Errorf("redis-benchmark pipeline must be between 1 and 10000, got %d", c.BenchmarkPipeline)
	}
	for _, k := range c.FailoverKinds {
		switch {
		case !slices.Contains(failoverKinds, k):
			return fmt.Errorf("unknown failover kind %q", k)
		case k == FailoverPush:
			return fmt.Errorf("%s moves no shard: it runs between failovers, not as one", FailoverPush)
		}
	}
	for _, k := range c.Between {
		switch {
		case !slices.Contains(failoverKinds, k):
			return fmt.Errorf("unknown failover kind %q between failovers", k)
		case k != FailoverPush && c.Shards < 2:
			return fmt.Errorf("a %s failover between two planned ones needs another shard: 2 shards at least", k)
		}
	}
	return nil
}
