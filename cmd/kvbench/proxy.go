package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"kvproxy/bench/loadgen"
)

func runProxy(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	cfg := loadgen.DefaultProxyConfig()
	f := newComparisonFlags(name, stderr, `Starts one cluster-enabled redis-server owning every slot, kvproxy and twemproxy in
front of it, runs redis-benchmark against the server directly and through each proxy
in interleaved rounds, and prints the medians, the ratios, redis-benchmark's p50/p99
latency, the proxies' CPU per request and a verdict per goal. A line per run on stderr
shows the progress, with a bar below on a terminal; Ctrl-C stops the run with a report
of the rounds completed. Needs
redis-server, redis-benchmark, nutcracker, and go to build kvproxy (run it from inside
the kvproxy module) unless -kvproxy is given.

-peer NAME=PATH:ARGS (repeatable) measures another proxy too: PATH is started with ARGS
(space-separated) after replacing {port} (the loopback port it must listen on), {addr}
(127.0.0.1:{port}), {seeds} (the cluster nodes, host:port, comma-separated), {seed},
{host}, {seedport} (the first node, whole and in parts) and {dir} (a temporary
directory, its working directory). E.g.
  -peer other=/usr/local/bin/otherproxy:--port={port} --cluster={seeds}`,
		&cfg.Rounds, &cfg.Clients, &cfg.Keyspace, &cfg.Pipelines, &cfg.Tests)
	f.fs.StringVar(&cfg.KvproxyBinary, "kvproxy", "", "kvproxy binary to measure; empty builds kvproxy/cmd/kvproxy")
	kvproxyArgs := f.fs.String("kvproxy-args", "", "more kvproxy flags, space-separated (e.g. \"--backend-conns 8\")")
	requests := f.fs.String("requests", joinInts(cfg.Requests),
		"comma-separated redis-benchmark requests per test (-n), one per pipeline depth")
	vsTwemproxy := f.fs.String("vs-twemproxy", formatGoal(cfg.Goals[0]),
		"goal PIPELINE:RATIO: kvproxy at least RATIO times twemproxy's requests/s at that depth; \"none\" drops it")
	vsDirect := f.fs.String("vs-direct", formatGoal(cfg.Goals[1]),
		"goal PIPELINE:RATIO: kvproxy at least RATIO times direct requests/s at that depth; \"none\" drops it")
	samples := f.fs.Bool("samples", false, "also print every round's value of every metric, to judge the noise")
	peerFlag(f.fs, &cfg.Peers, "another proxy to measure, NAME=PATH:ARGS (see above); repeatable")
	var files reportFiles
	files.register(f.fs, "requests/s")
	if code, ok := f.parse(args); !ok {
		return code
	}
	if err := files.validate(); err != nil {
		f.usageError("%v", err)
		return exitUsage
	}
	var err error
	if cfg.Requests, err = parseInts(*requests); err != nil {
		f.usageError("-requests: %v", err)
		return exitUsage
	}
	cfg.KvproxyArgs = strings.Fields(*kvproxyArgs)
	cfg.Goals = nil
	for _, g := range []struct{ flag, peer, spec string }{
		{"vs-twemproxy", loadgen.TargetTwemproxy, *vsTwemproxy},
		{"vs-direct", loadgen.TargetDirect, *vsDirect},
	} {
		goal, ok, err := parseGoal(g.peer, g.spec)
		if err != nil {
			f.usageError("-%s: %v", g.flag, err)
			return exitUsage
		}
		if ok {
			cfg.Goals = append(cfg.Goals, goal)
		}
	}
	if !f.validate(cfg.Validate()) {
		return exitUsage
	}

	ctx, cancel := f.start(ctx, "redis-server directly, through kvproxy, twemproxy"+peerNames(cfg.Peers))
	defer cancel()
	progress := newRunProgress(stderr, cfg.Runs(), proxyThroughput(cfg),
		func(_ string, v float64) string { return fmt.Sprintf("%.0f", v) })
	cfg.Progress = progress.report
	loadBefore := loadAverage()
	report, runErr := loadgen.RunProxyComparison(ctx, cfg)
	progress.done()
	if report == nil {
		return f.failed(runErr)
	}
	table := stdout
	if files.toStdout() {
		table = io.Discard
	}
	printProxyReport(table, report)
	if *samples {
		printProxySamples(table, report)
	}
	// Other processes' load skews every number; say how busy the machine was.
	if loadAfter := loadAverage(); loadBefore != "" && loadAfter != "" {
		fmt.Fprintf(table, "load average (1 min) on %d CPUs: %s before the run, %s after\n",
			runtime.NumCPU(), loadBefore, loadAfter)
	}
	metrics := slices.Concat(report.Throughput, report.Latency, report.CPU)
	doc := newJSONReport(name, report.Config, report.Comparison, runErr)
	doc.Metrics = comparisonRows(report.Comparison, metrics, func(target, metric string) bool {
		return target == loadgen.TargetDirect && isProxyCPU(cfg, metric)
	})
	doc.Verdicts = report.Verdicts()
	if err := files.write(stdout, doc, report.Throughput, "redis-benchmark requests/s, medians", "requests/s"); err != nil {
		return f.failed(err)
	}
	if runErr != nil {
		return f.failed(fmt.Errorf("stopped early, the report above covers the rounds completed: %w", runErr))
	}
	return exitOK
}

// peerFlag registers -peer, which adds a peer proxy to peers each time it
// is given.
func peerFlag(fs *flag.FlagSet, peers *[]loadgen.PeerProxy, usage string) {
	fs.Func("peer", usage, func(spec string) error {
		peer, err := loadgen.ParsePeerProxy(spec)
		*peers = append(*peers, peer)
		return err
	})
}

// newJSONReport fills what every comparison's JSON report has.
func newJSONReport(command string, config any, cmp *loadgen.Comparison, runErr error) jsonReport {
	doc := jsonReport{Command: command, Complete: runErr == nil, Date: time.Now().UTC(), CPUs: runtime.NumCPU(),
		Config: config, Baseline: cmp.Baseline, Targets: cmp.Targets, Rounds: map[string]int{}}
	if runErr != nil {
		doc.Error = runErr.Error()
	}
	for _, t := range cmp.Targets {
		doc.Rounds[t] = cmp.Rounds(t)
	}
	return doc
}

// peerNames lists the peers for the start message.
func peerNames(peers []loadgen.PeerProxy) string {
	var b strings.Builder
	for _, p := range peers {
		b.WriteString(", " + p.Name)
	}
	return b.String()
}

// proxyThroughput are the requests/s metric names of a run, as the report
// orders them.
func proxyThroughput(cfg loadgen.ProxyConfig) []string {
	var names []string
	for _, p := range cfg.Pipelines {
		for _, t := range cfg.Tests {
			names = append(names, loadgen.ThroughputMetric(t, p))
		}
	}
	return names
}

// loadAverage is the machine's 1-minute load average from /proc/loadavg,
// or "" where there is none.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

// parseGoal parses a PIPELINE:RATIO goal against peer; "none" (or empty)
// means no goal.
func parseGoal(peer, spec string) (loadgen.ProxyGoal, bool, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "none" {
		return loadgen.ProxyGoal{}, false, nil
	}
	pipelineText, ratioText, ok := strings.Cut(spec, ":")
	if !ok {
		return loadgen.ProxyGoal{}, false, fmt.Errorf("%q is not PIPELINE:RATIO", spec)
	}
	pipeline, err := strconv.Atoi(pipelineText)
	if err != nil {
		return loadgen.ProxyGoal{}, false, fmt.Errorf("%q: pipeline %q is not an integer", spec, pipelineText)
	}
	ratio, err := strconv.ParseFloat(ratioText, 64)
	if err != nil {
		return loadgen.ProxyGoal{}, false, fmt.Errorf("%q: ratio %q is not a number", spec, ratioText)
	}
	return loadgen.ProxyGoal{Peer: peer, Pipeline: pipeline, MinRatio: ratio}, true, nil
}

func formatGoal(g loadgen.ProxyGoal) string {
	return strconv.Itoa(g.Pipeline) + ":" + strconv.FormatFloat(g.MinRatio, 'g', -1, 64)
}

// printProxyReport writes the medians and ratios as a table, then the
// verdicts. Cells without a value (direct has no proxy; a ratio to 0) show
// "-".
func printProxyReport(w io.Writer, r *loadgen.ProxyReport) {
	cfg := r.Config
	cmp := r.Comparison
	runs := make([]string, len(cfg.Pipelines))
	for i, p := range cfg.Pipelines {
		runs[i] = fmt.Sprintf("-n %d at -P %d", cfg.Requests[i], p)
	}
	fmt.Fprintf(w, "kvproxy vs redis-server direct vs %s: redis-benchmark -c %d -r %d (%s), medians of %d interleaved rounds\n",
		strings.Join(cmp.Targets[2:], " vs "), cfg.Clients, cfg.Keyspace, strings.Join(runs, ", "), cfg.Rounds)
	if !r.Complete {
		printPartial(w, cmp)
	}
	proxies := cmp.Targets[1:]
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := slices.Concat([]string{"metric"}, cmp.Targets)
	for _, t := range proxies {
		header = append(header, t+"/"+loadgen.TargetDirect)
	}
	header = append(header, loadgen.TargetKvproxy+"/"+loadgen.TargetTwemproxy)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	ratio := func(m loadgen.Metrics, name string) string {
		if v, ok := m[name]; ok {
			return fmt.Sprintf("%.2fx", v)
		}
		return "-"
	}
	row := func(name, format string) {
		cells := []string{name}
		for _, t := range cmp.Targets {
			cell := fmt.Sprintf(format, cmp.Medians[t][name])
			if _, ok := cmp.Medians[t][name]; !ok || (t == loadgen.TargetDirect && isProxyCPU(cfg, name)) {
				cell = "-"
			}
			cells = append(cells, cell)
		}
		for _, t := range proxies {
			cells = append(cells, ratio(cmp.Ratios[t], name))
		}
		cells = append(cells, ratio(r.VsTwemproxy, name))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	for _, name := range r.Throughput {
		row(name, "%.0f")
	}
	for _, name := range r.Latency {
		row(name, "%.3f")
	}
	for _, name := range r.CPU {
		row(name, "%.2f")
	}
	tw.Flush()
	for _, line := range r.Verdicts() {
		fmt.Fprintln(w, line)
	}
}

// printPartial says a report covers fewer rounds than asked, and how many
// each target completed.
func printPartial(w io.Writer, cmp *loadgen.Comparison) {
	done := make([]string, len(cmp.Targets))
	for i, t := range cmp.Targets {
		done[i] = fmt.Sprintf("%s %d", t, cmp.Rounds(t))
	}
	fmt.Fprintf(w, "STOPPED EARLY: medians over the rounds completed (%s)\n", strings.Join(done, ", "))
}

// printProxySamples writes every round's value of every metric, per target.
func printProxySamples(w io.Writer, r *loadgen.ProxyReport) {
	fmt.Fprintln(w, "samples, in round order:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, name := range slices.Concat(r.Throughput, r.Latency, r.CPU) {
		format := "%.2f"
		switch {
		case slices.Contains(r.Throughput, name):
			format = "%.0f"
		case slices.Contains(r.Latency, name):
			format = "%.3f"
		}
		for _, target := range r.Comparison.Targets {
			if target == loadgen.TargetDirect && isProxyCPU(r.Config, name) {
				continue
			}
			values := r.Comparison.Samples[target][name]
			cells := make([]string, len(values))
			for i, v := range values {
				cells[i] = fmt.Sprintf(format, v)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", name, target, strings.Join(cells, "\t"))
		}
	}
	tw.Flush()
}

// isProxyCPU reports whether name is a proxy CPU metric, which the direct
// target, having no proxy, does not measure.
func isProxyCPU(cfg loadgen.ProxyConfig, name string) bool {
	if name == loadgen.ProxyCPUWholeRunMetric {
		return true
	}
	for _, p := range cfg.Pipelines {
		if name == loadgen.ProxyCPUMetric(p) {
			return true
		}
	}
	return false
}
