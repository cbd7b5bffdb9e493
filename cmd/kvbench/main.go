// Command kvbench runs kvproxy's throughput comparisons and its soak. Every
// comparison's result is a ratio between targets measured in the same run,
// in interleaved rounds: the machines are small and noisy, so absolute
// numbers say little.
//
// Usage:
//
//	kvbench <subcommand> [flags]
//
// Subcommands:
//
//	kvsim-vs-redis   redis-benchmark SET/GET against a kvsim node and a redis-server
//	failover         load through kvproxy across a triggered failover; errors, lost writes, stall, PNG timeline
//	proxy            redis-benchmark SET/GET against redis-server directly, through kvproxy and through twemproxy
//	latency          fixed-rate SET/GET latency percentiles, direct vs through kvproxy vs through twemproxy
//	soak             mixed load through kvproxy while planned failovers rotate over every shard
//
// Exit status: 0 when the run completed (whatever a comparison's verdict;
// for soak, when it found no error and no lost write), 1 when it failed,
// 2 on bad usage.
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
	// The first Ctrl-C stops the run with a partial report; a second one
	// kills kvbench at once (its children die with it).
	context.AfterFunc(ctx, stop)
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
	"failover": {
		summary: "load through kvproxy across a triggered failover: errors, lost writes, write stall vs the server's pause, latency timeline",
		run:     runFailover,
	},
	"proxy": {
		summary: "redis-benchmark SET/GET against redis-server directly, through kvproxy and through twemproxy",
		run:     runProxy,
	},
	"latency": {
		summary: "fixed-rate (open-loop) SET/GET latency, p50/p99/p999, direct vs through kvproxy vs through twemproxy",
		run:     runLatency,
	},
	"soak": {
		summary: "mixed load through kvproxy while planned failovers rotate over every shard; errors, lost writes, RSS",
		run:     runSoak,
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
	cfg := loadgen.DefaultKvsimVsRedisConfig()
	f := newComparisonFlags(name, stderr, `Starts a kvsim node owning every slot and a plain redis-server, runs redis-benchmark
against both in interleaved rounds, and prints the medians, the kvsim/redis ratios
and a verdict against the target ratio. Needs redis-server and redis-benchmark.`,
		&cfg.Rounds, &cfg.Clients, &cfg.Keyspace, &cfg.Pipelines, &cfg.Tests)
	f.fs.IntVar(&cfg.Requests, "requests", cfg.Requests, "redis-benchmark requests per test and pipeline depth (-n)")
	f.fs.Float64Var(&cfg.Target, "target", cfg.Target, "lowest acceptable kvsim/redis requests/s ratio")
	if code, ok := f.parse(args); !ok {
		return code
	}
	if !f.validate(cfg.Validate()) {
		return exitUsage
	}

	ctx, cancel := f.start(ctx, "redis-server and kvsim")
	defer cancel()
	report, err := loadgen.RunKvsimVsRedis(ctx, cfg)
	if err != nil {
		return f.failed(err)
	}
	printReport(stdout, report)
	return exitOK
}

// comparisonFlags are the flags and checks every comparison subcommand
// shares: redis-benchmark's common options and the run's timeout.
type comparisonFlags struct {
	fs        *flag.FlagSet
	name      string
	stderr    io.Writer
	rounds    *int
	pipelines *[]int
	tests     *[]string
	// The list flags' text, parsed into pipelines and tests by parse.
	pipelinesText, testsText *string
	timeout                  *time.Duration
}

// newComparisonFlags makes subcommand name's flag set, whose -h prints about,
// with the shared flags bound to the given config fields; their values are
// the defaults.
func newComparisonFlags(name string, stderr io.Writer, about string, rounds, clients, keyspace *int, pipelines *[]int, tests *[]string) *comparisonFlags {
	fs := flag.NewFlagSet("kvbench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: kvbench %s [flags]\n\n", name)
		fmt.Fprintln(stderr, about)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	fs.IntVar(rounds, "rounds", *rounds, "interleaved rounds; medians are reported")
	fs.IntVar(clients, "clients", *clients, "redis-benchmark parallel connections (-c)")
	fs.IntVar(keyspace, "keyspace", *keyspace, "redis-benchmark random key range (-r)")
	return &comparisonFlags{
		fs: fs, name: name, stderr: stderr, rounds: rounds, pipelines: pipelines, tests: tests,
		pipelinesText: fs.String("pipelines", joinInts(*pipelines), "comma-separated pipeline depths (-P), one run each"),
		testsText:     fs.String("tests", strings.ToLower(strings.Join(*tests, ",")), "comma-separated redis-benchmark tests (-t)"),
		timeout:       fs.Duration("timeout", 30*time.Minute, "give up after this long"),
	}
}

// parse parses args and the shared list flags. When the subcommand must stop
// (-h, a bad flag, an argument), ok is false and code is its exit status.
func (f *comparisonFlags) parse(args []string) (code int, ok bool) {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(f.stderr, "kvbench %s: unexpected argument %q\n", f.name, f.fs.Arg(0))
		f.fs.Usage()
		return exitUsage, false
	}
	pipelines, err := parseInts(*f.pipelinesText)
	if err != nil {
		f.usageError("-pipelines: %v", err)
		return exitUsage, false
	}
	*f.pipelines = pipelines
	*f.tests = splitList(*f.testsText)
	return exitOK, true
}

// validate reports configErr, the config's validation error, or else a
// timeout that is not positive; it returns whether there was neither.
func (f *comparisonFlags) validate(configErr error) bool {
	if configErr != nil {
		f.usageError("%v", configErr)
		return false
	}
	if *f.timeout <= 0 {
		f.usageError("-timeout must be positive, got %v", *f.timeout)
		return false
	}
	return true
}

// usageError prints one "kvbench NAME: ..." line about bad usage.
func (f *comparisonFlags) usageError(format string, args ...any) {
	fmt.Fprintf(f.stderr, "kvbench %s: %s\n", f.name, fmt.Sprintf(format, args...))
}

// start bounds ctx by -timeout and says on stderr what the run measures
// against.
func (f *comparisonFlags) start(ctx context.Context, against string) (context.Context, context.CancelFunc) {
	fmt.Fprintf(f.stderr, "kvbench: %d rounds of redis-benchmark -t %s -P %s against %s...\n",
		*f.rounds, strings.Join(*f.tests, ","), joinInts(*f.pipelines), against)
	return context.WithTimeout(ctx, *f.timeout)
}

// failed reports a run's error and returns the exit status for it.
func (f *comparisonFlags) failed(err error) int {
	fmt.Fprintf(f.stderr, "kvbench %s: %v\n", f.name, err)
	return exitError
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
