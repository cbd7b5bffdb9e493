package failbench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is what a run found.
type Report struct {
	Backend string    `json:"backend"` // kvsim, redis, or the target proxy's address
	Trigger Trigger   `json:"trigger"`
	Started time.Time `json:"started"`
	// DurationMs is how long the load ran; Interrupted is set when the run
	// was cancelled before its end.
	DurationMs  float64 `json:"duration_ms"`
	Interrupted bool    `json:"interrupted"`
	Load        string  `json:"load"` // the Go load generator's shape
	// Requests were answered, Errors were not (by kind: a RESP error's
	// prefix, timeout or network), both of the Go load generator.
	Requests   uint64            `json:"requests"`
	Errors     uint64            `json:"errors"`
	ErrorKinds map[string]uint64 `json:"error_kinds"`
	// StaleReads missed an acknowledged write during the run; LostWrites
	// are acknowledged writes the read-back at the end did not find, of
	// KeysVerified keys read back.
	StaleReads   uint64 `json:"stale_reads"`
	LostWrites   int    `json:"lost_writes"`
	KeysVerified int    `json:"keys_verified"`
	VerifyError  string `json:"verify_error,omitempty"`
	// Latencies are the answered requests' latencies by window and class.
	Latencies []WindowLatencies `json:"latencies"`
	Failovers []FailoverReport  `json:"failovers"`
	Benchmark *BenchmarkReport  `json:"redis_benchmark,omitempty"`
	// Timeline has the Go load's 10 ms buckets from the start of the load;
	// Plot its 100 ms points, as the PNG draws them; Held the requests
	// the proxy began to hold, per 100 ms.
	Timeline []Bucket     `json:"timeline_10ms"`
	Plot     []PlotPoint  `json:"plot_100ms"`
	Held     []HeldSample `json:"held"`
}

// WindowLatencies are one class's latencies in one window.
type WindowLatencies struct {
	Window    string `json:"window"`
	Class     string `json:"class"`
	Latencies `json:"latencies"`
}

// PlotPoint is the Go load's throughput and p99 over 100 ms.
type PlotPoint struct {
	AtMs  float64 `json:"at_ms"`
	RPS   float64 `json:"rps"`
	P99Ms float64 `json:"p99_ms"`
}

// FailoverReport is one failover.
type FailoverReport struct {
	Seq     int     `json:"seq"`
	Shard   int     `json:"shard"`
	Trigger Trigger `json:"trigger"`
	From    node    `json:"from"`
	To      node    `json:"to"`
	// StartMs and EndMs are the trigger and the replica serving the slots
	// (and the trigger done), since the load started.
	StartMs float64 `json:"start_ms"`
	EndMs   float64 `json:"end_ms"`
	Err     string  `json:"error,omitempty"`
	Phases  []Phase `json:"phases"`
	// ServerPauseMs is the old master's write pause as polled (nil when it
	// reported none); ProxyPauseMs the proxy's own observation of it
	// (INFO failover last_pause_ms, when the proxy followed the handover),
	// and ProxyPhases the phases it followed.
	ServerPauseMs *float64 `json:"server_pause_ms"`
	ProxyPauseMs  *float64 `json:"proxy_pause_ms"`
	ProxyPhases   string   `json:"proxy_phases,omitempty"`
	// Held is how many requests the proxy held through it.
	Held int64 `json:"held"`
	// WriteStall is the failing-over shard's writes during it: the stall
	// is their max and p99; Reads the shard's reads, Other the other
	// shards' requests.
	WriteStall Latencies `json:"write_stall"`
	Reads      Latencies `json:"reads"`
	Other      Latencies `json:"other_shards"`
}

func (f FailoverReport) line() string {
	s := fmt.Sprintf("failover %d at %.1fs: %s of shard %d %s -> %s", f.Seq, f.StartMs/1000, f.Trigger, f.Shard, f.From.Addr, f.To.Addr)
	if f.Err != "" {
		return s + ": FAILED: " + f.Err
	}
	s += fmt.Sprintf(": done in %.0f ms", f.EndMs-f.StartMs)
	if f.ServerPauseMs != nil {
		s += fmt.Sprintf(", server pause %.0f ms", *f.ServerPauseMs)
	}
	return s
}

func (b *bench) report(start time.Time, elapsed time.Duration, interrupted bool) *Report {
	backend := string(b.cfg.Backend)
	if b.cfg.Target != "" {
		backend = "target " + b.cfg.Target
	}
	r := &Report{Backend: backend, Trigger: b.cfg.Trigger, Started: start, DurationMs: ms(elapsed), Interrupted: interrupted,
		Load: fmt.Sprintf("%d clients, pipeline %d, %.0f%% GET, %d-byte values, %d keys each",
			b.cfg.Clients, b.cfg.Pipeline, b.cfg.Reads*100, b.cfg.ValueSize, b.cfg.Keys)}
	rec := b.rec
	rec.mu.Lock()
	r.Errors = rec.errTotal
	r.ErrorKinds = maps.Clone(rec.errors)
	r.Timeline = slices.Clone(rec.buckets)
	for w := range windowCount {
		for c := range classCount {
			l := rec.windows[w][c].latencies()
			r.Requests += l.Requests
			r.Latencies = append(r.Latencies, WindowLatencies{Window: w.String(), Class: c.String(), Latencies: l})
		}
	}
	for i := range rec.slots {
		h := &rec.slots[i]
		r.Plot = append(r.Plot, PlotPoint{AtMs: ms(time.Duration(i) * plotSlot), RPS: float64(h.total) / plotSlot.Seconds(), P99Ms: ms(h.quantile(0.99))})
	}
	b.mu.Lock()
	r.Held = slices.Clone(b.held)
	r.Failovers = slices.Clone(b.fails)
	b.mu.Unlock()
	for i := range r.Failovers {
		if f := r.Failovers[i].Seq; f < len(rec.failovers) {
			h := rec.failovers[f]
			r.Failovers[i].WriteStall = h[ClassShardWrite].latencies()
			r.Failovers[i].Reads = h[ClassShardRead].latencies()
			r.Failovers[i].Other = h[ClassOtherShard].latencies()
		}
	}
	rec.mu.Unlock()
	return r
}

// progressLine says what the load did in the last second.
func (r *recorder) progressLine(now time.Time) string {
	at := now.Sub(r.start)
	r.mu.Lock()
	defer r.mu.Unlock()
	var ok, errs uint64
	var longest float64
	from := max(len(r.buckets)-int(progressEvery/bucketWidth), 0)
	for _, b := range r.buckets[from:] {
		ok += uint64(b.OK)
		errs += uint64(b.Errors)
		longest = max(longest, b.MaxMs)
	}
	state := "before"
	if st := r.state.Load(); st.during {
		state = fmt.Sprintf("failover %d", st.seq)
	} else if st.seq >= 0 {
		state = "after"
	}
	return fmt.Sprintf("failover: %5.1fs %-10s %7d req/s  %d errors  longest %.1f ms", at.Seconds(), state, ok, errs, longest)
}

// Failed reports a run that met a client error, lost an acknowledged
// write, read a stale value, could not read back or saw a failover fail.
func (r *Report) Failed() bool {
	if r.Errors > 0 || r.LostWrites > 0 || r.StaleReads > 0 || r.VerifyError != "" {
		return true
	}
	if r.Benchmark != nil && r.Benchmark.ErrorCount > 0 {
		return true
	}
	for _, f := range r.Failovers {
		if f.Err != "" {
			return true
		}
	}
	return false
}

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	status := "completed"
	if r.Interrupted {
		status = "INTERRUPTED (partial report)"
	}
	fmt.Fprintf(w, "kvbench failover: %s, trigger %s, %.1f s, %s\n", r.Backend, r.Trigger, r.DurationMs/1000, status)
	fmt.Fprintf(w, "load: %s\n", r.Load)
	verdict := "PASS"
	if r.Failed() {
		verdict = "FAIL"
	}
	benchErrors := 0
	if r.Benchmark != nil {
		benchErrors = r.Benchmark.ErrorCount
	}
	fmt.Fprintf(w, "%s: %d client errors (Go load), %d redis-benchmark errors, %d lost acknowledged writes of %d keys read back, %d stale reads\n",
		verdict, r.Errors, benchErrors, r.LostWrites, r.KeysVerified, r.StaleReads)
	if len(r.ErrorKinds) > 0 {
		var kinds []string
		for _, k := range slices.Sorted(maps.Keys(r.ErrorKinds)) {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, r.ErrorKinds[k]))
		}
		fmt.Fprintf(w, "errors by kind: %s\n", strings.Join(kinds, ", "))
	}
	if r.VerifyError != "" {
		fmt.Fprintf(w, "read-back stopped: %s\n", r.VerifyError)
	}
	for _, f := range r.Failovers {
		fmt.Fprintln(w, f.line())
		if f.Err == "" {
			pause := "no server pause reported"
			if f.ServerPauseMs != nil {
				pause = fmt.Sprintf("server pause %.0f ms", *f.ServerPauseMs)
			}
			if f.ProxyPauseMs != nil {
				pause += fmt.Sprintf(" (proxy saw %.0f ms)", *f.ProxyPauseMs)
			}
			fmt.Fprintf(w, "  write stall on shard %d: max %.1f ms, p99 %.1f ms over %d writes; %s; %d requests held\n",
				f.Shard, f.WriteStall.Max, f.WriteStall.P99, f.WriteStall.Requests, pause, f.Held)
		}
		var steps []string
		for _, p := range f.Phases {
			steps = append(steps, fmt.Sprintf("+%.0f %s", p.AtMs-f.StartMs, p.Event))
		}
		fmt.Fprintf(w, "  phases (ms from the trigger): %s\n", strings.Join(steps, ", "))
	}
	fmt.Fprintln(w, "latency (ms)                      window   requests      p50      p99     p999      max")
	for _, l := range r.Latencies {
		fmt.Fprintf(w, "  %-30s  %-6s  %9d  %7.2f  %7.2f  %7.2f  %7.1f\n", l.Class, l.Window, l.Requests, l.P50, l.P99, l.P999, l.Max)
	}
	if b := r.Benchmark; b != nil {
		fmt.Fprintf(w, "redis-benchmark (%s): %d runs completed, %d failed\n", b.Command, b.Completed, b.Failed)
		for _, run := range b.Runs {
			var tests []string
			for _, name := range slices.Sorted(maps.Keys(run.Tests)) {
				t := run.Tests[name]
				tests = append(tests, fmt.Sprintf("%s %.0f req/s p99 %.2f max %.1f ms", name, t.RPS, t.P99Ms, t.MaxMs))
			}
			fmt.Fprintf(w, "  %.1f-%.1fs: %s\n", run.StartMs/1000, run.EndMs/1000, strings.Join(tests, "; "))
		}
		for _, e := range b.Errors {
			fmt.Fprintf(w, "  error %s\n", e)
		}
	}
}

// parseShardLine reads the fields of an INFO failover shard line
// ("master=a,replicas=b|c,...,held_now=0"); a field without '=' is skipped.
func parseShardLine(line string) map[string]string {
	fields := map[string]string{}
	for field := range strings.SplitSeq(line, ",") {
		if k, v, ok := strings.Cut(field, "="); ok {
			fields[k] = v
		}
	}
	return fields
}
