package failbench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
	"kvproxy/bench/soak"
)

// failoverWait bounds one failover, from the trigger to the replica
// serving the slots, on top of the CLUSTERX FAILOVER timeout.
const failoverWait = 30 * time.Second

// verifyTimeout bounds reading back every acknowledged write, even after
// the run was cancelled.
const verifyTimeout = 30 * time.Second

// bench is one run against a started environment.
type bench struct {
	cfg      Config
	env      *env
	progress io.Writer
	admin    *redis.Client // the proxy: CLUSTERX FAILOVER, INFO
	rec      *recorder
	seeds    []string // every node known, to ask CLUSTER SLOTS

	mu    sync.Mutex
	held  []HeldSample
	fails []FailoverReport
}

// Run starts the cluster and kvproxy (or uses Config.Target), runs the load
// and the failovers and returns the report. An error means the run could
// not happen; cancelling ctx ends it early with a partial report
// (Report.Interrupted) and every process it started stopped.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	var progress io.Writer = io.Discard
	if cfg.Progress != nil {
		progress = soak.NewLockedWriter(cfg.Progress)
	}
	e, err := startEnv(ctx, cfg, progress)
	if err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	defer e.close()
	b := &bench{cfg: cfg, env: e, progress: progress, admin: soak.NewClient(e.proxyAddr, cfg.ClientTimeout, 2)}
	defer b.admin.Close()
	return b.run(ctx)
}

func (b *bench) run(ctx context.Context) (*Report, error) {
	shards, shardOf, err := clusterShards(ctx, b.env.seeds, b.cfg.ClientTimeout)
	if err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	if b.cfg.Trigger == TriggerKill && b.cfg.Repeat > len(shards) {
		return nil, fmt.Errorf("failover: a killed master stays down: -repeat %d needs as many shards, there are %d", b.cfg.Repeat, len(shards))
	}
	b.seeds = append([]string(nil), b.env.seeds...)
	for _, s := range shards {
		b.seeds = append(b.seeds, s.Master.Addr, s.Replica.Addr)
	}

	start := time.Now()
	b.rec = newRecorder(start, 0)
	workers := make([]*worker, b.cfg.Clients)
	for i := range workers {
		workers[i] = newWorker(i, b.env.proxyAddr, b.cfg, b.rec, shardOf)
		defer workers[i].cl.Close()
	}
	var stop atomic.Bool
	var load sync.WaitGroup
	for _, w := range workers {
		load.Go(func() { w.run(&stop) })
	}
	benchCtx, stopBench := context.WithCancel(context.Background())
	defer stopBench()
	var benchReport *BenchmarkReport
	if b.cfg.RedisBenchmark {
		load.Go(func() { benchReport = runBenchmark(benchCtx, b.env.proxyAddr, b.cfg, start) })
	}
	sampleCtx, stopSampling := context.WithCancel(context.Background())
	var sampling sync.WaitGroup
	sampling.Go(func() { b.sample(sampleCtx, start) })

	interrupted := b.failovers(ctx, start, shards)
	if !interrupted {
		select {
		case <-ctx.Done():
			interrupted = true
		case <-time.After(b.cfg.Tail):
		}
	}
	stop.Store(true)
	stopBench()
	load.Wait()
	stopSampling()
	sampling.Wait()
	elapsed := time.Since(start)
	fmt.Fprintf(b.progress, "failover: load stopped after %s; reading back every acknowledged write\n", elapsed.Round(time.Millisecond))

	report := b.report(start, elapsed, interrupted)
	report.Benchmark = benchReport
	verifyCtx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	verifier := soak.NewClient(b.env.proxyAddr, b.cfg.ClientTimeout, 1)
	defer verifier.Close()
	for _, w := range workers {
		read, lost, err := w.verify(verifyCtx, verifier)
		report.KeysVerified += read
		report.LostWrites += lost
		report.StaleReads += w.stale
		if err != nil {
			report.VerifyError = err.Error()
			break
		}
	}
	return report, nil
}

// failovers runs the failovers at their times, each to its end; it
// reports whether ctx ended the run first.
func (b *bench) failovers(ctx context.Context, start time.Time, shards []shard) (interrupted bool) {
	for i := range b.cfg.Repeat {
		at := start.Add(b.cfg.At + time.Duration(i)*b.cfg.Interval)
		select {
		case <-ctx.Done():
			return true
		case <-time.After(time.Until(at)):
		}
		index := i % len(shards)
		if i > 0 {
			// The shard's master may have moved: ask the cluster.
			if now, _, err := clusterShards(ctx, b.seeds, b.cfg.ClientTimeout); err == nil && len(now) == len(shards) {
				shards = now
			}
		}
		res := b.failover(ctx, i, index, shards[index], start)
		b.mu.Lock()
		b.fails = append(b.fails, res)
		b.mu.Unlock()
		fmt.Fprintln(b.progress, res.line())
		if ctx.Err() != nil {
			return true
		}
	}
	return false
}

// failover runs failover seq of shard sh (number index).
func (b *bench) failover(ctx context.Context, seq, index int, sh shard, start time.Time) FailoverReport {
	heldBefore := b.proxyHeld()
	ph := &phases{start: start, at: map[string]time.Time{}}
	began := time.Now()
	res := FailoverReport{Seq: seq, Shard: index, Trigger: b.cfg.Trigger, From: sh.Master, To: sh.Replica,
		StartMs: ms(began.Sub(start))}
	b.rec.begin(seq, index)
	ctx, cancel := context.WithTimeout(ctx, b.cfg.FailoverTimeout+failoverWait)
	defer cancel()
	pollCtx, stopPoll := context.WithCancel(ctx)
	over := make(chan struct{})
	var polling sync.WaitGroup
	polling.Go(func() { b.poll(pollCtx, sh, ph, over) })
	err := b.trigger(ctx, sh, ph)
	if err == nil {
		ph.add(eventDone)
		select {
		case <-over:
		case <-ctx.Done():
			err = fmt.Errorf("the replica %s did not serve the slots, or the proxy did not route them to it: %w", sh.Replica.Addr, ctx.Err())
		}
	}
	stopPoll()
	polling.Wait()
	end := time.Now()
	b.rec.end(seq, index)
	if err != nil {
		res.Err = err.Error()
	}
	res.EndMs = ms(end.Sub(start))
	res.Phases = ph.list
	if pause, ok := serverPause(ph); ok {
		v := ms(pause)
		res.ServerPauseMs = &v
	}
	if fields := b.proxyShardLine(sh); fields != nil {
		// A Redis Cluster's master pauses itself unseen: the proxy reports 0.
		if v, err := strconv.ParseFloat(fields["last_pause_ms"], 64); err == nil && v > 0 && fields["last_from"] == sh.Master.Addr {
			res.ProxyPauseMs = &v
		}
		res.ProxyPhases = fields["last_phases"]
	}
	if heldAfter := b.proxyHeld(); heldAfter >= heldBefore && heldBefore >= 0 {
		res.Held = heldAfter - heldBefore
	}
	return res
}

// proxyHeld is the proxy's held_total, or -1 when INFO failed.
func (b *bench) proxyHeld() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ClientTimeout)
	defer cancel()
	info, err := b.admin.Info(ctx, "failover").Result()
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(kvsim.ParseInfoFields(info)["held_total"], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// proxyShardLine is the proxy's INFO failover line of the shard whose
// master is now sh's replica, as fields; nil when there is none.
func (b *bench) proxyShardLine(sh shard) map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ClientTimeout)
	defer cancel()
	info, err := b.admin.Info(ctx, "failover").Result()
	if err != nil {
		return nil
	}
	return shardLine(info, sh.Replica.Addr)
}

// shardLine is the fields of the INFO failover shard line whose master is
// at addr; nil when there is none.
func shardLine(info, master string) map[string]string {
	for key, value := range kvsim.ParseInfoFields(info) {
		if strings.HasPrefix(key, "shard") {
			if fields := parseShardLine(value); fields["master"] == master {
				return fields
			}
		}
	}
	return nil
}

// HeldSample is how many requests the proxy began to hold in the sample
// period ending at AtMs: a hold often lasts less than a period, so a count
// of those held at the sampling moment would miss it.
type HeldSample struct {
	AtMs float64 `json:"at_ms"`
	Held int64   `json:"held"`
}

// sampleEvery is the pace of the proxy's hold count samples; progressEvery
// that of the progress lines.
const (
	sampleEvery   = 100 * time.Millisecond
	progressEvery = time.Second
)

// sample reads the proxy's held_total every 100 ms, recording what it grew
// by, and writes a progress line every second, until ctx ends.
func (b *bench) sample(ctx context.Context, start time.Time) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	lastProgress := start
	lastTotal := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, sampleEvery*5)
		info, err := b.admin.Info(callCtx, "failover").Result()
		cancel()
		if err == nil {
			if total, err := strconv.ParseInt(kvsim.ParseInfoFields(info)["held_total"], 10, 64); err == nil {
				if lastTotal >= 0 {
					b.mu.Lock()
					b.held = append(b.held, HeldSample{AtMs: ms(time.Since(start)), Held: total - lastTotal})
					b.mu.Unlock()
				}
				lastTotal = total
			}
		}
		if time.Since(lastProgress) >= progressEvery {
			lastProgress = time.Now()
			fmt.Fprintln(b.progress, b.rec.progressLine(lastProgress))
		}
	}
}
