// Command kvbench runs kvproxy's throughput comparisons. Every result is a
// ratio between targets measured in the same run, in interleaved rounds:
// the machines are small and noisy, so absolute numbers say little.
//
// Usage:
//
//	kvbench <subcommand> [flags]
//
// Subcommands:
//
//	kvsim-vs-redis   redis-benchmark SET/GET against a kvsim node and a redis-server
//	proxy            redis-benchmark SET/GET against redis-server directly, through kvproxy and through twemproxy
//
// Exit status: 0 when the run completed (whatever its verdict), 1 when it
// failed, 2 on bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"kvproxy/bench/loadgen"
)

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// subcommand is one "kvbench <name>" action.
type subcommand struct {
	summary string
	run     func(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int
}

var subcommands = map[string]subcommand{
	"kvsim-vs-redis": {
		summary: "redis-benchmark SET/GET against a kvsim node and a redis-server, as a ratio",
		run:     runKvsimVsRedis,
	},
	"proxy": {
		summary: "redis-benchmark SET/GET against redis-server directly, through kvproxy and through twemproxy",
		run:     runProxy,
	},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: kvbench <subcommand> [flags]")
	fmt.Fprintln(w, "\nsubcommands:")
	for _, name := range slices.Sorted(maps.Keys(subcommands)) {
		fmt.Fprintf(w, "  %-16s %s\n", name, subcommands[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'kvbench <subcommand> -h' for its flags.")
}

// run executes kvbench with args (without the program name) and returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	sub, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "kvbench: unknown subcommand %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return sub.run(ctx, args[0], args[1:], stdout, stderr)
}

func runKvsimVsRedis(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	def := loadgen.DefaultKvsimVsRedisConfig()
	fs := flag.NewFlagSet("kvbench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: kvbench %s [flags]\n\n", name)
		fmt.Fprintln(stderr, "Starts a kvsim node owning every slot and a plain redis-server, runs redis-benchmark")
		fmt.Fprintln(stderr, "against both in interleaved rounds, and prints the medians, the kvsim/redis ratios")
		fmt.Fprintln(stderr, "and a verdict against the target ratio. Needs redis-server and redis-benchmark.")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	cfg := def
	fs.IntVar(&cfg.Rounds, "rounds", def.Rounds, "interleaved rounds; medians are reported")
	fs.IntVar(&cfg.Clients, "clients", def.Clients, "redis-benchmark parallel connections (-c)")
	fs.IntVar(&cfg.Requests, "requests", def.Requests, "redis-benchmark requests per test and pipeline depth (-n)")
	fs.IntVar(&cfg.Keyspace, "keyspace", def.Keyspace, "redis-benchmark random key range (-r)")
	pipelines := fs.String("pipelines", joinInts(def.Pipelines), "comma-separated pipeline depths (-P), one run each")
	tests := fs.String("tests", strings.ToLower(strings.Join(def.Tests, ",")), "comma-separated redis-benchmark tests (-t)")
	fs.Float64Var(&cfg.Target, "target", def.Target, "lowest acceptable kvsim/redis requests/s ratio")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
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
	if cfg.Pipelines, err = parseInts(*pipelines); err != nil {
		fmt.Fprintf(stderr, "kvbench %s: -pipelines: %v\n", name, err)
		return exitUsage
	}
	cfg.Tests = splitList(*tests)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "kvbench %s: %v\n", name, err)
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "kvbench %s: -timeout must be positive, got %v\n", name, *timeout)
		return exitUsage
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	fmt.Fprintf(stderr, "kvbench: %d rounds of redis-benchmark -t %s -P %s against redis-server and kvsim...\n",
		cfg.Rounds, strings.Join(cfg.Tests, ","), joinInts(cfg.Pipelines))
	report, err := loadgen.RunKvsimVsRedis(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kvbench %s: %v\n", name, err)
		return exitError
	}
	printReport(stdout, report)
	return exitOK
}

// printReport writes the medians and ratios as a table, then the verdict.
func printReport(w io.Writer, r *loadgen.KvsimVsRedisReport) {
	cfg := r.Config
	cmp := r.Comparison
	fmt.Fprintf(w, "kvsim vs redis-server: redis-benchmark -c %d -n %d -r %d, medians of %d interleaved rounds\n",
		cfg.Clients, cfg.Requests, cfg.Keyspace, cfg.Rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "metric\t%s\t%s\t%s/%s\n", loadgen.TargetRedis, loadgen.TargetKvsim,
		loadgen.TargetKvsim, loadgen.TargetRedis)
	row := func(name, format string) {
		ratio := "-"
		if v, ok := cmp.Ratios[loadgen.TargetKvsim][name]; ok {
			ratio = fmt.Sprintf("%.2fx", v)
		}
		fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t%s\n", name,
			cmp.Medians[loadgen.TargetRedis][name], cmp.Medians[loadgen.TargetKvsim][name], ratio)
	}
	for _, name := range r.Throughput {
		row(name, "%.0f")
	}
	for _, name := range r.CPU {
		row(name, "%.2f")
	}
	tw.Flush()
	fmt.Fprintln(w, r.Verdict())
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for _, field := range splitList(s) {
		n, err := strconv.Atoi(field)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", field)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// splitList splits a comma-separated list, dropping blanks around items.
func splitList(s string) []string {
	var out []string
	for _, field := range strings.Split(s, ",") {
		if field = strings.TrimSpace(field); field != "" {
			out = append(out, field)
		}
	}
	return out
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
