// Command kvsim runs a simulated Kvrocks cluster (bench/kvsim) on loopback
// until SIGINT or SIGTERM:
//
//	kvsim --shards 3 --replicas 1 --port 30001 [--repl-delay 300ms] [--password X]
//	      [--released] [--controller-listen 127.0.0.1:9379]
//
// It prints the node table once every replica replicates, then the URL of
// the controller's HTTP API (kvrocks-controller's) if --controller-listen
// asks for it. Send KVSIM HELP to any node for the admin commands (failover,
// kill, restart...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run starts the cluster described by args, prints its table on stdout and
// serves until ctx ends. It returns the exit code: 0 after a clean shutdown,
// 2 for bad flags or a cluster that cannot start (port in use...), with one
// line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, level, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage())
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// go-redis reports refused dials of killed nodes on its own; the controller logs what matters.
	redis.SetLogger(goRedisLog{cfg.Logger.With("component", "go-redis")})
	cluster, err := kvsim.StartCluster(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	fmt.Fprint(stdout, cluster.Table())
	if url := cluster.ControllerAPIURL(); url != "" {
		namespace, name := cfg.ControllerAPI.Namespace, cfg.ControllerAPI.Cluster
		fmt.Fprintf(stdout, "controller API: %s (namespace %s, cluster %s)\n", url, namespace, name)
	}
	cfg.Logger.Info("kvsim ready: send KVSIM HELP to any node; Ctrl-C stops")
	<-ctx.Done()
	cfg.Logger.Info("shutting down")
	cluster.Close()
	return 0
}

func newFlagSet() (*flag.FlagSet, *kvsim.ClusterConfig, *string) {
	cfg := kvsim.DefaultClusterConfig()
	fs := flag.NewFlagSet("kvsim", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "number of masters")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replicas per master")
	fs.IntVar(&cfg.BasePort, "port", cfg.BasePort, "first of the consecutive ports (shard 0 master, its replicas, shard 1 master...); 0: free ports")
	fs.DurationVar(&cfg.ReplDelay, "repl-delay", cfg.ReplDelay, "delay before a replica applies each change")
	fs.StringVar(&cfg.Password, "password", cfg.Password, "requirepass of every node")
	fs.BoolVar(&cfg.Released, "released", cfg.Released, "answer as released Kvrocks: no CLUSTERX FAILOVER/TAKEOVER (kvrocks#3295), CLIENT PAUSE only")
	fs.StringVar(&cfg.ControllerAPI.Listen, "controller-listen", "", "serve kvrocks-controller's HTTP API on host:port (port 0: a free one)")
	fs.StringVar(&cfg.ControllerAPI.Namespace, "controller-namespace", kvsim.DefaultAPINamespace, "the namespace in the controller API's paths")
	fs.StringVar(&cfg.ControllerAPI.Cluster, "controller-cluster", kvsim.DefaultAPICluster, "the cluster name in the controller API's paths")
	fs.DurationVar(&cfg.Controller.ProbeInterval, "probe-interval", cfg.Controller.ProbeInterval, "controller probe period")
	fs.IntVar(&cfg.Controller.FailureCount, "probe-failures", cfg.Controller.FailureCount, "failed probes of a master before automatic failover")
	fs.DurationVar(&cfg.Controller.Failover.PauseTimeout, "pause-timeout", cfg.Controller.Failover.PauseTimeout, "KVSIM FAILOVER: CLIENT PAUSE WRITE duration on the old master")
	fs.DurationVar(&cfg.Controller.Failover.SyncTimeout, "sync-timeout", cfg.Controller.Failover.SyncTimeout, "KVSIM FAILOVER: how long the replica may take to catch up")
	fs.BoolVar(&cfg.Controller.AutoFailover, "auto-failover", cfg.Controller.AutoFailover, "promote a replica when its master stops answering probes")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	return fs, &cfg, level
}

func parseFlags(args []string) (kvsim.ClusterConfig, slog.Level, error) {
	fs, cfg, levelName := newFlagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return *cfg, 0, err
		}
		return *cfg, 0, fmt.Errorf("kvsim: %w", err)
	}
	if fs.NArg() > 0 {
		return *cfg, 0, fmt.Errorf("kvsim: unexpected argument %q (see --help)", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*levelName)); err != nil {
		return *cfg, 0, fmt.Errorf("kvsim: invalid --log-level %q", *levelName)
	}
	if err := cfg.Validate(); err != nil {
		return *cfg, 0, err // already prefixed "kvsim: "
	}
	return *cfg, level, nil
}

func usage() string {
	fs, _, _ := newFlagSet()
	var b strings.Builder
	fmt.Fprintln(&b, "usage: kvsim [--shards N] [--replicas R] [--port P] [--repl-delay D] [--password X] [--released] [--controller-listen HOST:PORT] [flags]")
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// goRedisLog sends go-redis' internal messages to slog at debug level.
type goRedisLog struct{ log *slog.Logger }

func (l goRedisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
