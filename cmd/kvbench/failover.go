package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"

	"kvproxy/bench/failbench"
)

func runFailover(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	cfg := failbench.DefaultConfig()
	fs := flag.NewFlagSet("kvbench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: kvbench %s [flags]\n\n", name)
		fmt.Fprintln(stderr, `Runs a Go load generator (every request timed, every acknowledged write read back at
the end) and redis-benchmark in a loop through kvproxy, triggers a master failover at
-at (and -repeat N rotates over the shards, one every -interval), and reports the client
errors, lost acknowledged writes, the write stall on the failing-over shard against the
server's own write pause, read and other-shard p50/p99/p999 before/during/after, and the
handover's phases with timestamps. -json and -png write the report and a timeline.

The cluster: kvsim (simulated Kvrocks, in this process) by default, -backend redis for a
real Redis Cluster (redis-server processes), or -target host:port for an existing proxy
with -cluster seeds of its cluster. kvproxy is built with go (run from inside the kvproxy
module) unless -kvproxy is given.

Triggers: proxied (CLUSTERX FAILOVER through the proxy; kvsim, redis, target),
direct (CLUSTERX FAILOVER to the master, the proxy not told; kvsim), controller (the
controller's HTTP API; kvsim), pause (the controller's CLIENT PAUSE failover; kvsim),
kill (the master killed, its replica promoted; kvsim, redis), redis (CLUSTER FAILOVER on
the replica directly, the proxy not told; redis, target). Ctrl-C stops the run with a partial report.

Example: kvbench failover -trigger proxied -repeat 3 -json failover.json -png failover.png`)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	backend := fs.String("backend", string(cfg.Backend), "cluster to start: kvsim or redis")
	fs.StringVar(&cfg.Target, "target", "", "an existing proxy's host:port instead of starting one")
	clusterSeeds := fs.String("cluster", "", "with -target: comma-separated host:port seeds of the proxy's cluster")
	trigger := fs.String("trigger", string(cfg.Trigger), "proxied, direct, controller, pause, kill or redis")
	fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "masters to start, each with one replica")
	fs.DurationVar(&cfg.ReplDelay, "repl-delay", cfg.ReplDelay, "kvsim replication delay: makes the write pause real")
	fs.DurationVar(&cfg.At, "at", cfg.At, "when the first failover starts, after the load started")
	fs.IntVar(&cfg.Repeat, "repeat", cfg.Repeat, "failovers, rotating over the shards")
	fs.DurationVar(&cfg.Interval, "interval", cfg.Interval, "time between the starts of two failovers")
	fs.DurationVar(&cfg.Tail, "tail", cfg.Tail, "load after the last failover")
	fs.DurationVar(&cfg.FailoverTimeout, "failover-timeout", cfg.FailoverTimeout, "CLUSTERX FAILOVER's timeout argument")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "Go load generator connections")
	fs.IntVar(&cfg.Pipeline, "pipeline", cfg.Pipeline, "Go load generator pipeline depth")
	fs.Float64Var(&cfg.Reads, "reads", cfg.Reads, "fraction of GETs in the Go load (the rest are SETs)")
	fs.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "SET value size in bytes")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "keys each Go client writes and reads")
	fs.DurationVar(&cfg.ClientTimeout, "client-timeout", cfg.ClientTimeout, "Go load's read and write timeout")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the Go load's choices")
	fs.BoolVar(&cfg.RedisBenchmark, "redis-benchmark", cfg.RedisBenchmark, "also run redis-benchmark -t set,get in a loop")
	fs.IntVar(&cfg.BenchmarkClients, "benchmark-clients", cfg.BenchmarkClients, "redis-benchmark parallel connections (-c)")
	fs.IntVar(&cfg.BenchmarkPipeline, "benchmark-pipeline", cfg.BenchmarkPipeline, "redis-benchmark pipeline depth (-P)")
	fs.StringVar(&cfg.KvproxyBinary, "kvproxy", "", "kvproxy binary to run; empty builds kvproxy/cmd/kvproxy")
	kvproxyArgs := fs.String("kvproxy-args", "", "more kvproxy flags, space-separated")
	jsonPath := fs.String("json", "", "write the report as JSON to this file (- for stdout, instead of the text)")
	pngPath := fs.String("png", "", "write the timeline (throughput, p99, held requests per 100 ms; failovers shaded) as PNG to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kvbench %s: unexpected argument %q\n", name, fs.Arg(0))
		fs.Usage()
		return exitUsage
	}
	cfg.Backend, cfg.Trigger = failbench.Backend(*backend), failbench.Trigger(*trigger)
	cfg.Cluster = splitList(*clusterSeeds)
	cfg.KvproxyArgs = strings.Fields(*kvproxyArgs)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "kvbench %s: %v\n", name, err)
		return exitUsage
	}
	cfg.Progress = stderr
	// go-redis logs every failed dial of the cluster's start and of a
	// failover; the report counts the errors the load met.
	redis.SetLogger(&logging.VoidLogger{})

	fmt.Fprintf(stderr, "kvbench: %d %s failover(s), the first at %v...\n", cfg.Repeat, cfg.Trigger, cfg.At)
	report, err := failbench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kvbench %s: %v\n", name, err)
		return exitError
	}
	if *pngPath != "" {
		if err := writeFile(*pngPath, stdout, report.WritePNG); err != nil {
			fmt.Fprintf(stderr, "kvbench %s: -png: %v\n", name, err)
			return exitError
		}
	}
	switch *jsonPath {
	case "-":
		if err := writeJSON(stdout, report); err != nil {
			fmt.Fprintf(stderr, "kvbench %s: -json: %v\n", name, err)
			return exitError
		}
	case "":
		report.Print(stdout)
	default:
		if err := writeFile(*jsonPath, stdout, func(w io.Writer) error { return writeJSON(w, report) }); err != nil {
			fmt.Fprintf(stderr, "kvbench %s: -json: %v\n", name, err)
			return exitError
		}
		report.Print(stdout)
	}
	if report.Failed() {
		return exitError
	}
	return exitOK
}
