package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"

	"kvproxy/bench/soak"
)

func runSoak(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	cfg := soak.DefaultConfig()
	fs := flag.NewFlagSet("kvbench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: kvbench %s [flags]\n\n", name)
		fmt.Fprintln(stderr, `Starts a simulated Kvrocks cluster (kvsim) with its controller and the controller's
HTTP API in this process and kvproxy in front of it, runs SET/GET, MSET/MGET, pipelines,
MULTI/EXEC transactions and Pub/Sub (and, with -redis-benchmark, redis-benchmark) through
the proxy while planned failovers rotate over every shard and back, then reads back every
acknowledged write and checks that the controller, every node and the proxy see the same
master for every slot range. Prints a line per sample and per step on stderr and the report
on stdout: requests, errors by kind, lost writes, failovers, the views, and the proxy's RSS,
goroutines and clients over time. Exits 1 on any error, lost write or disagreement. Builds
kvproxy with go (run it from inside the kvproxy module) unless -kvproxy is given.

The schedule: planned failovers move shard 0, 1, 2... in turn, each shard's visits taking
the -failovers kinds in turn. With -between, a step runs between two planned failovers,
taking the -between kinds in turn: a failover of another shard than the one just moved,
or a push. Failover kinds: clusterx (CLUSTERX FAILOVER through the proxy), controller (the
controller's HTTP API, replica preferred), pause (the controller's CLIENT PAUSE failover,
in process); push (the controller re-pushes its topology one version up) only between.

Issue 10's acceptance shape (3 shards x 1 replica):
  kvbench soak -failovers clusterx,controller -between pause,push -planned 20 \
    -interval 500ms -duration 5m -redis-benchmark`)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the load and the failovers run")
	fs.DurationVar(&cfg.FailoverInterval, "interval", cfg.FailoverInterval, "time between the starts of two failovers")
	kinds := fs.String("failovers", joinKinds(cfg.FailoverKinds),
		"planned failovers' kinds, in turn: clusterx, controller, pause")
	between := fs.String("between", joinKinds(cfg.Between),
		"steps between two planned failovers, in turn: clusterx, controller or pause of another shard, push; empty: none")
	fs.IntVar(&cfg.PlannedFailovers, "planned", cfg.PlannedFailovers, "end after that many planned failovers (-duration still bounds the run); 0: run for -duration")
	fs.DurationVar(&cfg.FailoverTimeout, "failover-timeout", cfg.FailoverTimeout, "CLUSTERX FAILOVER's timeout argument")
	fs.DurationVar(&cfg.SampleInterval, "sample", cfg.SampleInterval, "time between two samples of the proxy")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "load connections, spread over SET/GET, MSET/MGET, pipelines and transactions")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "keys each client writes and reads")
	fs.IntVar(&cfg.Pipeline, "pipeline", cfg.Pipeline, "depth of the pipelining clients' pipelines")
	fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "kvsim masters, each with one replica")
	fs.DurationVar(&cfg.ReplDelay, "repl-delay", cfg.ReplDelay, "kvsim replication delay: makes a failover's write pause real")
	fs.DurationVar(&cfg.ClientTimeout, "client-timeout", cfg.ClientTimeout, "clients' read and write timeout")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the clients' choices of keys and commands")
	fs.StringVar(&cfg.KvproxyBinary, "kvproxy", "", "kvproxy binary to run; empty builds kvproxy/cmd/kvproxy")
	kvproxyArgs := fs.String("kvproxy-args", "", "more kvproxy flags, space-separated (e.g. \"--backend-conns 8\")")
	fs.BoolVar(&cfg.ProxyReports, "proxy-reports", cfg.ProxyReports,
		"start kvproxy with --controller <the controller's API>: the proxy, not the soak, tells the controller of a CLUSTERX FAILOVER")
	fs.BoolVar(&cfg.RedisBenchmark, "redis-benchmark", cfg.RedisBenchmark,
		"also run redis-benchmark -t set,get through the proxy in a loop; its errors are the soak's errors")
	fs.IntVar(&cfg.BenchmarkClients, "benchmark-clients", cfg.BenchmarkClients, "redis-benchmark parallel connections (-c)")
	fs.IntVar(&cfg.BenchmarkPipeline, "benchmark-pipeline", cfg.BenchmarkPipeline, "redis-benchmark pipeline depth (-P)")
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
	var err error
	if cfg.FailoverKinds, err = soak.ParseFailoverKinds(*kinds); err != nil {
		fmt.Fprintf(stderr, "kvbench %s: -failovers: %v\n", name, err)
		return exitUsage
	}
	if strings.TrimSpace(*between) != "" {
		if cfg.Between, err = soak.ParseFailoverKinds(*between); err != nil {
			fmt.Fprintf(stderr, "kvbench %s: -between: %v\n", name, err)
			return exitUsage
		}
	}
	cfg.KvproxyArgs = strings.Fields(*kvproxyArgs)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "kvbench %s: %v\n", name, err)
		return exitUsage
	}
	cfg.Progress = stderr

	schedule := *kinds
	if len(cfg.Between) > 0 {
		schedule += ", between them " + joinKinds(cfg.Between)
	}
	fmt.Fprintf(stderr, "kvbench: soak for %v, a step every %v (%s)...\n", cfg.Duration, cfg.FailoverInterval, schedule)
	loadBefore := loadAverage()
	report, err := soak.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kvbench %s: %v\n", name, err)
		return exitError
	}
	report.Print(stdout)
	// Other processes' load stretches latencies and failovers; say how busy
	// the machine was.
	if loadAfter := loadAverage(); loadBefore != "" && loadAfter != "" {
		fmt.Fprintf(stdout, "load average (1 min) on %d CPUs: %s before the run, %s after\n",
			runtime.NumCPU(), loadBefore, loadAfter)
	}
	if report.Failed() {
		return exitError
	}
	return exitOK
}

func joinKinds(kinds []soak.FailoverKind) string {
	s := make([]string, len(kinds))
	for i, k := range kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ",")
}
