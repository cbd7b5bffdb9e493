package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"kvproxy/bench/loadgen"
)

func runLatency(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	cfg := loadgen.DefaultLatencyConfig()
	fs := flag.NewFlagSet("kvbench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: kvbench %s [flags]\n\n", name)
		fmt.Fprintln(stderr, `Starts one cluster-enabled redis-server owning every slot, kvproxy and twemproxy in
front of it (and any -peer), and offers each the same fixed-rate load in interleaved
rounds: -rate requests/s (half SET, half GET of random keys) on -conns connections for
-duration, requests pipelined on a connection while earlier ones are unanswered. The
load is open-loop: request k is due at k/rate seconds whatever the replies do, and its
latency counts from that due time, so a target that stalls is charged for every request
due meanwhile (no coordinated omission). Prints, per target, the medians over the rounds
of p50, p99, p999 and max latency, the achieved rate (answered requests/s: below -rate,
the target did not keep up, and its percentiles are queueing), error replies and
requests left unanswered. A line per run on stderr shows the progress, with a bar below
on a terminal; Ctrl-C stops the run with a report of the rounds completed. Needs redis-server, nutcracker, and go to
build kvproxy (run it from inside the kvproxy module) unless -kvproxy is given.

-peer NAME=PATH:ARGS measures another proxy too, as in 'kvbench proxy' (see its -h).`)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "interleaved rounds; medians are reported")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "offered load, requests/s")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long each run offers the load")
	fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "connections carrying the load")
	fs.IntVar(&cfg.Keyspace, "keyspace", cfg.Keyspace, "random key range")
	fs.IntVar(&cfg.DataSize, "datasize", cfg.DataSize, "SET value size in bytes")
	fs.StringVar(&cfg.KvproxyBinary, "kvproxy", "", "kvproxy binary to measure; empty builds kvproxy/cmd/kvproxy")
	kvproxyArgs := fs.String("kvproxy-args", "", "more kvproxy flags, space-separated (e.g. \"--backend-conns 8\")")
	peerFlag(fs, &cfg.Peers, "another proxy to measure, NAME=PATH:ARGS; repeatable")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	var files reportFiles
	files.register(fs, "p50, p99 and p999 latency")
	usageError := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "kvbench %s: %s\n", name, fmt.Sprintf(format, args...))
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	cfg.KvproxyArgs = strings.Fields(*kvproxyArgs)
	if err := cfg.Validate(); err != nil {
		return usageError("%v", err)
	}
	if *timeout <= 0 {
		return usageError("-timeout must be positive, got %v", *timeout)
	}
	if err := files.validate(); err != nil {
		return usageError("%v", err)
	}

	fmt.Fprintf(stderr, "kvbench: %d rounds of %.0f requests/s for %v on %d connections against redis-server directly, through kvproxy, twemproxy%s...\n",
		cfg.Rounds, cfg.Rate, cfg.Duration, cfg.Conns, peerNames(cfg.Peers))
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	progress := newRunProgress(stderr, cfg.Runs(),
		[]string{loadgen.LatencyP50, loadgen.LatencyP99, loadgen.LatencyP999, loadgen.LatencyAchieved}, formatLatencyMetric)
	cfg.Progress = progress.report
	report, runErr := loadgen.RunLatencyComparison(ctx, cfg)
	progress.done()
	failed := func(err error) int {
		fmt.Fprintf(stderr, "kvbench %s: %v\n", name, err)
		return exitError
	}
	if report == nil {
		return failed(runErr)
	}
	if !files.toStdout() {
		printLatencyReport(stdout, report)
	}
	doc := newJSONReport(name, report.Config, report.Comparison, runErr)
	doc.Metrics = comparisonRows(report.Comparison, loadgen.LatencyMetrics, nil)
	chart := []string{loadgen.LatencyP50, loadgen.LatencyP99, loadgen.LatencyP999}
	title := fmt.Sprintf("latency at %.0f requests/s offered (open loop), medians", cfg.Rate)
	if err := files.write(stdout, doc, chart, title, "ms"); err != nil {
		return failed(err)
	}
	if runErr != nil {
		return failed(fmt.Errorf("stopped early, the report above covers the rounds completed: %w", runErr))
	}
	return exitOK
}

func formatLatencyMetric(name string, v float64) string {
	switch name {
	case loadgen.LatencyAchieved, loadgen.LatencyErrors, loadgen.LatencyMissing:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// printLatencyReport writes one column per target, then each proxy's
// ratio to direct.
func printLatencyReport(w io.Writer, r *loadgen.LatencyReport) {
	cfg := r.Config
	cmp := r.Comparison
	fmt.Fprintf(w, "open-loop latency at %.0f requests/s offered (SET/GET, %d connections, %v per run, -r %d, -d %d), medians of %d interleaved rounds\n",
		cfg.Rate, cfg.Conns, cfg.Duration, cfg.Keyspace, cfg.DataSize, cfg.Rounds)
	if !r.Complete {
		printPartial(w, cmp)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := append([]string{"metric"}, cmp.Targets...)
	for _, t := range cmp.Targets[1:] {
		header = append(header, t+"/"+cmp.Baseline)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, name := range loadgen.LatencyMetrics {
		cells := []string{name}
		for _, t := range cmp.Targets {
			cell := "-"
			if v, ok := cmp.Medians[t][name]; ok {
				cell = formatLatencyMetric(name, v)
			}
			cells = append(cells, cell)
		}
		for _, t := range cmp.Targets[1:] {
			cell := "-"
			if v, ok := cmp.Ratios[t][name]; ok && !math.IsNaN(v) {
				cell = fmt.Sprintf("%.2fx", v)
			}
			cells = append(cells, cell)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}
