// Package failbench measures what clients of kvproxy feel of a master
// failover: a Go load generator that times every request (and
// redis-benchmark in a loop beside it) runs through the proxy while a
// failover is triggered at a set time, and the report gives the client
// errors, the acknowledged writes lost, the write stall on the
// failing-over shard against the server's own write pause, the latency
// percentiles before, during and after, and the handover's phases; a PNG
// timeline shows throughput, p99 and the requests the proxy held.
package failbench

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Backend is the cluster Run starts behind the proxy.
type Backend string

const (
	// BackendKvsim is a simulated Kvrocks cluster in this process, with its
	// controller.
	BackendKvsim Backend = "kvsim"
	// BackendRedis is a real Redis Cluster of redis-server processes.
	BackendRedis Backend = "redis"
)

// Trigger is how the failover is started.
type Trigger string

const (
	// TriggerProxied sends CLUSTERX FAILOVER <replica-id> through the
	// proxy, which carries it out (CLUSTER FAILOVER on a Redis Cluster's
	// replica) and holds the shard's writes through it.
	TriggerProxied Trigger = "proxied"
	// TriggerDirect sends CLUSTERX FAILOVER to the master itself, behind
	// the proxy's back: the proxy learns from MOVED and its reloads.
	TriggerDirect Trigger = "direct"
	// TriggerController asks kvsim's controller HTTP API for the shard's
	// failover, as an operator does.
	TriggerController Trigger = "controller"
	// TriggerPause is the controller's CLIENT PAUSE failover of released
	// Kvrocks, in process.
	TriggerPause Trigger = "pause"
	// TriggerKill kills the master; the controller (kvsim) or the cluster
	// (Redis) promotes its replica. Acknowledged writes not yet replicated
	// may be lost: that is what it shows.
	TriggerKill Trigger = "kill"
	// TriggerRedis sends CLUSTER FAILOVER to a Redis Cluster replica
	// directly.
	TriggerRedis Trigger = "redis"
)

// triggers are the triggers each kind of cluster supports; an existing
// cluster (Config.Target) is driven only through its nodes and the proxy.
var triggers = map[string][]Trigger{
	string(BackendKvsim): {TriggerProxied, TriggerDirect, TriggerController, TriggerPause, TriggerKill},
	string(BackendRedis): {TriggerProxied, TriggerRedis, TriggerKill},
	"target":             {TriggerProxied, TriggerRedis},
}

// Config configures a run.
type Config struct {
	// Backend is the cluster to start; ignored with Target.
	Backend Backend
	// Target is an existing proxy's host:port; Cluster are seeds of the
	// cluster behind it, which the triggers and the shard map need.
	Target  string
	Cluster []string
	// Trigger starts each failover.
	Trigger Trigger
	// Shards is the number of masters started, each with one replica.
	Shards int
	// ReplDelay is kvsim's replication delay: it makes the write pause of
	// a failover real.
	ReplDelay time.Duration
	// At is when the first failover starts, after the load started.
	At time.Duration
	// Repeat is the number of failovers, rotating over the shards (and
	// back, as the replica of each becomes its master).
	Repeat int
	// Interval is the time between the starts of two failovers; a
	// failover that takes longer delays the next one.
	Interval time.Duration
	// Tail is how long the load runs after the last failover ended.
	Tail time.Duration
	// FailoverTimeout is CLUSTERX FAILOVER's timeout argument.
	FailoverTimeout time.Duration
	// Clients, Pipeline, Reads (the fraction of GETs, the rest are SETs),
	// ValueSize and Keys (per client) shape the Go load generator.
	Clients, Pipeline int
	Reads             float64
	ValueSize, Keys   int
	// ClientTimeout is the load's read and write timeout.
	ClientTimeout time.Duration
	// Seed makes the load's choices repeatable.
	Seed uint64
	// RedisBenchmark runs redis-benchmark -t set,get through the proxy in
	// a loop beside the Go load; BenchmarkClients and BenchmarkPipeline are
	// its -c and -P.
	RedisBenchmark                      bool
	BenchmarkClients, BenchmarkPipeline int
	// KvproxyBinary is the kvproxy run in front of a started cluster;
	// empty builds kvproxy/cmd/kvproxy. KvproxyArgs are more flags.
	KvproxyBinary string
	KvproxyArgs   []string
	// Progress receives a line per failover and per step; nil discards.
	Progress io.Writer
}

// DefaultConfig is one CLUSTERX FAILOVER through kvproxy in front of
// kvsim, 5 s into the load, 5 s of load after it.
func DefaultConfig() Config {
	return Config{
		Backend:           BackendKvsim,
		Trigger:           TriggerProxied,
		Shards:            3,
		ReplDelay:         50 * time.Millisecond,
		At:                5 * time.Second,
		Repeat:            1,
		Interval:          10 * time.Second,
		Tail:              5 * time.Second,
		FailoverTimeout:   3 * time.Second,
		Clients:           8,
		Pipeline:          1,
		Reads:             0.5,
		ValueSize:         32,
		Keys:              1000,
		ClientTimeout:     5 * time.Second,
		Seed:              1,
		RedisBenchmark:    true,
		BenchmarkClients:  50,
		BenchmarkPipeline: 1,
	}
}

// maxRun bounds a run's length, and so the memory of its timeline.
const maxRun = time.Hour

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	kind := string(c.Backend)
	if c.Target != "" {
		kind = "target"
	}
	switch {
	case c.Target == "" && c.Backend != BackendKvsim && c.Backend != BackendRedis:
		return fmt.Errorf("unknown backend %q (want %s or %s)", c.Backend, BackendKvsim, BackendRedis)
	case c.Target != "" && len(c.Cluster) == 0:
		return fmt.Errorf("a target proxy needs the seeds of its cluster (-cluster) to find shards and trigger failovers")
	case c.Target == "" && len(c.Cluster) > 0:
		return fmt.Errorf("cluster seeds are for a target proxy (-target)")
	case !slices.Contains(triggers[kind], c.Trigger):
		return fmt.Errorf("trigger %q does not apply to %s (want one of %v)", c.Trigger, kind, triggers[kind])
	case c.Shards < 1 || c.Shards > 64:
		return fmt.Errorf("shards must be between 1 and 64, got %d", c.Shards)
	case c.ReplDelay < 0:
		return fmt.Errorf("replication delay must not be negative, got %v", c.ReplDelay)
	case c.At <= 0 || c.Tail <= 0:
		return fmt.Errorf("the time before the first failover and the tail must be positive, got %v and %v", c.At, c.Tail)
	case c.Repeat < 1:
		return fmt.Errorf("repeat must be at least 1, got %d", c.Repeat)
	case c.Repeat > 1 && c.Interval <= 0:
		return fmt.Errorf("interval must be positive, got %v", c.Interval)
	case c.At+time.Duration(c.Repeat-1)*c.Interval+c.Tail > maxRun:
		return fmt.Errorf("the run would last over %v", maxRun)
	case c.FailoverTimeout < time.Millisecond:
		return fmt.Errorf("failover timeout must be at least 1ms, got %v", c.FailoverTimeout)
	case c.Clients < 1 || c.Clients > 10000:
		return fmt.Errorf("clients must be between 1 and 10000, got %d", c.Clients)
	case c.Pipeline < 1 || c.Pipeline > 10000:
		return fmt.Errorf("pipeline must be between 1 and 10000, got %d", c.Pipeline)
	case c.Reads < 0 || c.Reads > 1:
		return fmt.Errorf("reads must be a fraction between 0 and 1, got %v", c.Reads)
	case c.ValueSize < 1 || c.ValueSize > 1<<20:
		return fmt.Errorf("value size must be between 1 and 1048576 bytes, got %d", c.ValueSize)
	case c.Keys < 1 || c.Keys > 1_000_000:
		return fmt.Errorf("keys must be between 1 and 1000000, got %d", c.Keys)
	case c.ClientTimeout <= 0:
		return fmt.Errorf("client timeout must be positive, got %v", c.ClientTimeout)
	case c.RedisBenchmark && (c.BenchmarkClients < 1 || c.BenchmarkClients > 10000):
		return fmt.Errorf("redis-benchmark clients must be between 1 and 10000, got %d", c.BenchmarkClients)
	case c.RedisBenchmark && (c.BenchmarkPipeline < 1 || c.BenchmarkPipeline > 10000):
		return fmt.Errorf("redis-benchmark pipeline must be between 1 and 10000, got %d", c.BenchmarkPipeline)
	}
	return nil
}
