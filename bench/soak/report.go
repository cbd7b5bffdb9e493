package soak

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a soak saw.
type Report struct {
	Config      Config
	Elapsed     time.Duration // from the start of the load to its end
	Interrupted bool          // the context ended the soak early
	// Requests and Longest are by op: how many were answered (with an
	// error or not), and the longest wait for an answer.
	Requests map[Op]uint64
	Longest  map[Op]Latency
	// Errors are every error the clients saw, by kind, most frequent first.
	Errors []ErrorCount
	// Anomalies are the reads that did not show acknowledged writes.
	Anomalies []AnomalyCount
	// Verified is how many keys the final check read back.
	Verified  int
	Failovers []FailoverResult
	PubSub    PubSubReport
	// Samples are the proxy over time, the last one taken after the load.
	Samples []Sample
	// GoroutinesReported is false when the proxy's INFO has no goroutine
	// count, so Samples' Goroutines are -1.
	GoroutinesReported bool
	// ProxyCounters are the counters of the proxy's last INFO that say
	// whether it refused, held or dropped requests.
	ProxyCounters []ProxyCounter
	// Views compares the controller's, the nodes' and the proxy's
	// topology at the end; nil when not checked.
	Views *ViewCheck
	// Benchmark is what redis-benchmark met; nil when it did not run.
	Benchmark *BenchmarkReport
	// ProxyLog is the end of the proxy's log when the soak failed.
	ProxyLog string
}

// ProxyCounter is one INFO field.
type ProxyCounter struct{ Name, Value string }

// proxyCounterNames are the INFO fields a report keeps, in this order.
var proxyCounterNames = []string{
	"total_connections_received", "total_commands_processed", "rejected_requests",
	"held_total", "released_total", "expired_total", "abandoned_total", "hold_full_total",
}

func (s *soak) report(elapsed time.Duration, interrupted bool, verified int, ps PubSubReport, info map[string]string) *Report {
	r := &Report{Config: s.cfg, Elapsed: elapsed, Interrupted: interrupted, Verified: verified, PubSub: ps}
	r.Requests, r.Longest, r.Errors, r.Anomalies = s.tally.snapshot()
	s.mu.Lock()
	r.Failovers = append([]FailoverResult(nil), s.failovers...)
	r.Samples = append([]Sample(nil), s.samples...)
	r.GoroutinesReported = s.goroutinesReported
	s.mu.Unlock()
	for _, name := range proxyCounterNames {
		if v, ok := info[name]; ok {
			r.ProxyCounters = append(r.ProxyCounters, ProxyCounter{name, v})
		}
	}
	return r
}

// ErrorTotal is how many errors the clients saw.
func (r *Report) ErrorTotal() uint64 {
	var n uint64
	for _, e := range r.Errors {
		n += e.Count
	}
	return n
}

// AnomalyTotal is how many reads found anomaly a.
func (r *Report) AnomalyTotal(a Anomaly) uint64 {
	var n uint64
	for _, c := range r.Anomalies {
		if c.Anomaly == a {
			n += c.Count
		}
	}
	return n
}

// FailoversOK is how many failovers happened; pushes are not failovers.
func (r *Report) FailoversOK() int {
	ok, _ := r.steps(func(f FailoverResult) bool { return f.Kind != FailoverPush })
	return ok
}

// steps counts the steps that match, and those of them that happened.
func (r *Report) steps(match func(FailoverResult) bool) (ok, total int) {
	for _, f := range r.Failovers {
		if match(f) {
			total++
			if f.Err == nil {
				ok++
			}
		}
	}
	return ok, total
}

// Failed reports a broken promise: an error, a read that missed an
// acknowledged write, a write applied twice, views of the topology that
// disagree at the end, or a soak without a single failover. Failovers that
// did not happen (the cluster refused them) and Pub/Sub messages lost while
// a subscription moved are reported only.
func (r *Report) Failed() bool {
	return r.ErrorTotal() > 0 || len(r.Anomalies) > 0 || r.FailoversOK() == 0 ||
		r.Views != nil && len(r.Views.Disagreements) > 0
}

// Verdict is the report's one-line summary.
func (r *Report) Verdict() string {
	word := "PASS"
	if r.Failed() {
		word = "FAIL"
	}
	failoversOK, failovers := r.steps(func(f FailoverResult) bool { return f.Kind != FailoverPush })
	steps := fmt.Sprintf("%d of %d failovers done", failoversOK, failovers)
	if pushesOK, pushes := r.steps(func(f FailoverResult) bool { return f.Kind == FailoverPush }); pushes > 0 {
		steps += fmt.Sprintf(", %d of %d pushes", pushesOK, pushes)
	}
	views := ""
	if r.Views != nil {
		views = "; " + r.Views.verdict()
	}
	return fmt.Sprintf("%s: %d errors, %d lost acknowledged writes, %d stale reads, %d duplicated writes; %s; %d keys read back%s",
		word, r.ErrorTotal(), r.AnomalyTotal(LostWrite), r.AnomalyTotal(StaleRead), r.AnomalyTotal(DuplicatedWrite),
		steps, r.Verified, views)
}

// verdict says whether the views agree, in a few words.
func (v *ViewCheck) verdict() string {
	if len(v.Disagreements) == 0 {
		return "controller, nodes and proxy agree"
	}
	return fmt.Sprintf("%d disagreements between controller, nodes and proxy", len(v.Disagreements))
}

// summary is the check's progress line.
func (v *ViewCheck) summary() string {
	if len(v.Disagreements) == 0 {
		return fmt.Sprintf("controller, nodes and proxy agree after %v: version %d, masters %s",
			v.Waited.Round(time.Millisecond), v.Version, v.Masters)
	}
	return fmt.Sprintf("still %d disagreements after %v: %s", len(v.Disagreements), v.Waited.Round(time.Millisecond),
		strings.Join(v.Disagreements, "; "))
}

// loadMix describes the clients: how many of each kind.
func loadMix(clients, pipeline int) string {
	var counts [loadKinds]int
	for i := range clients {
		counts[i%int(loadKinds)]++
	}
	names := [loadKinds]string{"SET/GET", "MSET/MGET", "pipelines of " + strconv.Itoa(pipeline) + " SET/GET/INCR", "MULTI/INCR/SET/EXEC"}
	var parts []string
	for k, n := range counts {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, names[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// Print writes the report: the verdict, requests, errors, anomalies,
// failovers, Pub/Sub, the proxy's counters and its figures over time.
func (r *Report) Print(w io.Writer) {
	cfg := r.Config
	interrupted := ""
	if r.Interrupted {
		interrupted = " (interrupted)"
	}
	fmt.Fprintf(w, "kvbench soak: %s%s through kvproxy, kvsim %d shards x 1 replica, replication delay %v, seed %d\n",
		r.Elapsed.Round(time.Millisecond), interrupted, cfg.Shards, cfg.ReplDelay, cfg.Seed)
	fmt.Fprintf(w, "load: %d clients (%s), %d keys each, a publisher and a subscriber\n",
		cfg.Clients, loadMix(cfg.Clients, cfg.Pipeline), cfg.Keys)
	fmt.Fprintln(w, r.Verdict())

	fmt.Fprintln(w, "\nrequests (answered, with or without error):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "op\tcount\tlongest\tat")
	for op := range opCount {
		if n, ok := r.Requests[op]; ok {
			l := r.Longest[op]
			fmt.Fprintf(tw, "%s\t%d\t%v\t%s\n", op, n, l.Longest.Round(time.Microsecond), formatElapsed(l.At))
		}
	}
	tw.Flush()

	if len(r.Errors) == 0 {
		fmt.Fprintln(w, "\nerrors: none")
	} else {
		fmt.Fprintln(w, "\nerrors (by kind; digits written N; the first one as seen):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "prefix\tcount\tkind\tfirst")
		for _, e := range r.Errors {
			fmt.Fprintf(tw, "%s\t%d\t%s\tat %s, %s: %s\n", e.Prefix, e.Count, e.Text, formatElapsed(e.First.At), e.First.Op, e.First.Text)
		}
		tw.Flush()
	}

	if len(r.Anomalies) == 0 {
		fmt.Fprintln(w, "\nacknowledged writes: every read showed them")
	} else {
		fmt.Fprintln(w, "\nacknowledged writes not shown by reads:")
		for _, a := range r.Anomalies {
			fmt.Fprintf(w, "  %s, found by %s: %d\n", a.Anomaly, a.Op, a.Count)
			for _, ex := range a.Examples {
				fmt.Fprintf(w, "    at %s key %s: want %s, got %s\n", formatElapsed(ex.At), ex.Key, ex.Want, ex.Got)
			}
		}
	}

	r.printFailovers(w)
	if v := r.Views; v != nil {
		fmt.Fprintf(w, "\nviews at the end (controller's API, every node's CLUSTER NODES and CLUSTERX VERSION, the proxy's PROXY NODES): %s\n", v.verdict())
		fmt.Fprintf(w, "  controller: version %d, masters %s; looked for %v\n", v.Version, v.Masters, v.Waited.Round(time.Millisecond))
		for _, d := range v.Disagreements {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	if b := r.Benchmark; b != nil {
		rps := make([]string, 0, len(b.RPS))
		for _, test := range slices.Sorted(maps.Keys(b.RPS)) {
			rps = append(rps, fmt.Sprintf("%s %.0f/s", test, b.RPS[test]))
		}
		last := ""
		if len(rps) > 0 {
			last = "; last completed run: " + strings.Join(rps, ", ")
		}
		fmt.Fprintf(w, "\nredis-benchmark through the proxy (%s, again and again): %d runs, %d completed (%d requests), %d ended by an error (in errors, as op redis-benchmark)%s\n",
			b.Command, b.Runs, b.Completed, b.Requests, b.Failed, last)
	}

	ps := r.PubSub
	fmt.Fprintf(w, "\npub/sub: %d published (%d with no subscriber), %d received, %d missing, %d duplicates, %d out of order\n",
		ps.Published, ps.NoReceivers, ps.Received, ps.Missing, ps.Duplicates, ps.OutOfOrder)
	fmt.Fprintln(w, "  (messages published while a subscription moves may be lost or, with Kvrocks, arrive twice: reported, not judged)")

	if len(r.ProxyCounters) > 0 {
		parts := make([]string, len(r.ProxyCounters))
		for i, c := range r.ProxyCounters {
			parts[i] = c.Name + ":" + c.Value
		}
		fmt.Fprintf(w, "\nproxy counters (INFO after the load): %s\n", strings.Join(parts, " "))
	}

	fmt.Fprintln(w, "\nproxy over time (rss/hwm: VmRSS/VmHWM, threads: OS threads, from /proc; goroutines and clients: INFO):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "time\trss\thwm\tthreads\tgoroutines\tclients\trequests\terrors\tfailovers\t")
	for _, s := range r.Samples {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d/%d\t\n", formatElapsed(s.At), formatKiB(s.RSSKiB), formatKiB(s.HWMKiB),
			orDash(s.Threads), orDash(s.Goroutines), orDash(s.Clients), s.Requests, s.Errors, s.FailoversOK, s.Failovers)
	}
	tw.Flush()
	if !r.GoroutinesReported {
		fmt.Fprintf(w, "note: the proxy's INFO has no goroutine count (looked for %s): goroutines show -\n", strings.Join(goroutineFields, ", "))
	}
	if r.ProxyLog != "" {
		fmt.Fprintf(w, "\nproxy log (end):\n%s\n", r.ProxyLog)
	}
}

func (r *Report) printFailovers(w io.Writer) {
	type kindSummary struct {
		done, ok int
		longest  time.Duration
	}
	byKind := map[FailoverKind]*kindSummary{}
	for _, f := range r.Failovers {
		k := byKind[f.Kind]
		if k == nil {
			k = &kindSummary{}
			byKind[f.Kind] = k
		}
		k.done++
		if f.Err == nil {
			k.ok++
			k.longest = max(k.longest, f.Took)
		}
	}
	if len(r.Failovers) == 0 {
		fmt.Fprintln(w, "\nfailovers: none")
		return
	}
	var parts []string
	for _, kind := range failoverKinds {
		if k := byKind[kind]; k != nil {
			parts = append(parts, fmt.Sprintf("%s %d (%d done, longest %v)", kind, k.done, k.ok, k.longest.Round(time.Millisecond)))
		}
	}
	fmt.Fprintf(w, "\nfailovers: %s\n", strings.Join(parts, "; "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tat\tstep\tshard\tkind\tfrom -> to\tversion\ttook\tresult")
	for _, f := range r.Failovers {
		shard, move := strconv.Itoa(f.Shard), f.From+" -> "+f.To
		if f.Kind == FailoverPush {
			shard, move = "-", "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%v\t%s\n", f.Seq, formatElapsed(f.At), f.stepName(), shard, f.Kind, move,
			f.Version, f.Took.Round(time.Millisecond), f.result())
	}
	tw.Flush()
}

// stepName says whether the step is a planned failover or one between two.
func (f FailoverResult) stepName() string {
	if f.Between {
		return "between"
	}
	return "planned"
}

func (f FailoverResult) result() string {
	// Joined errors span lines; a table row must not.
	oneLine := func(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
	result := "ok"
	if f.Err != nil {
		result = "not done: " + oneLine(f.Err)
	}
	if f.Refused != nil {
		result += fmt.Sprintf(" (attempt %d; refused before: %s)", f.Attempts, oneLine(f.Refused))
	}
	return result
}

// line is the progress line of a finished step.
func (f FailoverResult) line() string {
	if f.Kind == FailoverPush {
		return fmt.Sprintf("push %d at %s (%s): version %d, %v: %s", f.Seq, formatElapsed(f.At), f.stepName(), f.Version,
			f.Took.Round(time.Millisecond), f.result())
	}
	return fmt.Sprintf("failover %d at %s: %s of shard %d (%s), %s -> %s, version %d, %v: %s", f.Seq, formatElapsed(f.At), f.Kind,
		f.Shard, f.stepName(), f.From, f.To, f.Version, f.Took.Round(time.Millisecond), f.result())
}
