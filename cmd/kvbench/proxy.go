package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"kvproxy/bench/loadgen"
)

func runProxy(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	cfg := loadgen.DefaultProxyConfig()
	f := newComparisonFlags(name, stderr, `Starts one cluster-enabled redis-server owning every slot, kvproxy and twemproxy in
front of it, runs redis-benchmark against the server directly and through each proxy
in interleaved rounds, and prints the medians, the ratios, the proxies' CPU per request
and a verdict per goal. Needs redis-server, redis-benchmark, nutcracker, and go to
build kvproxy (run it from inside the kvproxy module) unless -kvproxy is given.`,
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
	if code, ok := f.parse(args); !ok {
		return code
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

	ctx, cancel := f.start(ctx, "redis-server directly, through kvproxy and through twemproxy")
	defer cancel()
	loadBefore := loadAverage()
	report, err := loadgen.RunProxyComparison(ctx, cfg)
	if err != nil {
		return f.failed(err)
	}
	printProxyReport(stdout, report)
	if *samples {
		printProxySamples(stdout, report)
	}
	// Other processes' load skews every number; say how busy the machine was.
	if loadAfter := loadAverage(); loadBefore != "" && loadAfter != "" {
		fmt.Fprintf(stdout, "load average (1 min) on %d CPUs: %s before the run, %s after\n",
			runtime.NumCPU(), loadBefore, loadAfter)
	}
	return exitOK
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
	fmt.Fprintf(w, "kvproxy vs redis-server direct vs twemproxy: redis-benchmark -c %d -r %d (%s), medians of %d interleaved rounds\n",
		cfg.Clients, cfg.Keyspace, strings.Join(runs, ", "), cfg.Rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tdirect\tkvproxy\ttwemproxy\tkvproxy/direct\ttwemproxy/direct\tkvproxy/twemproxy")
	ratio := func(m loadgen.Metrics, name string) string {
		if v, ok := m[name]; ok {
			return fmt.Sprintf("%.2fx", v)
		}
		return "-"
	}
	row := func(name, format string) {
		direct := fmt.Sprintf(format, cmp.Medians[loadgen.TargetDirect][name])
		if isProxyCPU(cfg, name) {
			direct = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t"+format+"\t"+format+"\t%s\t%s\t%s\n", name, direct,
			cmp.Medians[loadgen.TargetKvproxy][name], cmp.Medians[loadgen.TargetTwemproxy][name],
			ratio(cmp.Ratios[loadgen.TargetKvproxy], name), ratio(cmp.Ratios[loadgen.TargetTwemproxy], name),
			ratio(r.VsTwemproxy, name))
	}
	for _, name := range r.Throughput {
		row(name, "%.0f")
	}
	for _, name := range r.CPU {
		row(name, "%.2f")
	}
	tw.Flush()
	for _, line := range r.Verdicts() {
		fmt.Fprintln(w, line)
	}
}

// printProxySamples writes every round's value of every metric, per target.
func printProxySamples(w io.Writer, r *loadgen.ProxyReport) {
	fmt.Fprintln(w, "samples, in round order:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, name := range append(slices.Clone(r.Throughput), r.CPU...) {
		format := "%.2f"
		if slices.Contains(r.Throughput, name) {
			format = "%.0f"
		}
		for _, target := range []string{loadgen.TargetDirect, loadgen.TargetKvproxy, loadgen.TargetTwemproxy} {
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
	for _, p := range cfg.Pipelines {
		if name == loadgen.ProxyCPUMetric(p) {
			return true
		}
	}
	return false
}
