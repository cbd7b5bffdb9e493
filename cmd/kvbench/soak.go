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
		fmt.Fprintln(stderr, `Starts a simulated Kvrocks cluster (kvsim) in this process and kvproxy in front of it,
runs SET/GET, MSET/MGET, pipelines, MULTI/EXEC transactions and Pub/Sub through the proxy
while planned failovers rotate over every shard and back, then reads back every
acknowledged write. Prints a line per sample on stderr and the report on stdout: requests,
errors by kind, lost writes, failovers, and the proxy's RSS, goroutines and clients over
time. Exits 1 on any error or lost write. Builds kvproxy with go (run it from inside the
kvproxy module) unless -kvproxy is given.`)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the load and the failovers run")
	fs.DurationVar(&cfg.FailoverInterval, "interval", cfg.FailoverInterval, "time between the starts of two failovers")
	kinds := fs.String("failovers", joinKinds(cfg.FailoverKinds),
		"failover kinds used in turn: clusterx (CLUSTERX FAILOVER through the proxy), pause (the controller's CLIENT PAUSE failover)")
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
	cfg.KvproxyArgs = strings.Fields(*kvproxyArgs)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "kvbench %s: %v\n", name, err)
		return exitUsage
	}
	cfg.Progress = stderr

	fmt.Fprintf(stderr, "kvbench: soak for %v, a failover every %v (%s)...\n", cfg.Duration, cfg.FailoverInterval, *kinds)
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
