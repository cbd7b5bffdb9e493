package soak

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
	"kvproxy/bench/loadgen"
	"kvproxy/controller"
)

// proxyStartTimeout bounds building and starting kvproxy.
const proxyStartTimeout = 2 * time.Minute

// loadTail is how long the load goes on after the last failover, so what
// it wrote around that failover is read back under load too.
const loadTail = time.Second

// Run starts a kvsim cluster in this process and kvproxy in front of it as a
// process of its own (built from kvproxy/cmd/kvproxy unless
// cfg.KvproxyBinary is set, so the working directory must be inside the
// kvproxy module), runs the soak and returns its report. An error means
// the soak could not run; what it found is in the report (Report.Failed).
// Cancelling ctx ends the soak early, with a report of what it saw.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	var progress io.Writer = io.Discard
	if cfg.Progress != nil {
		progress = NewLockedWriter(cfg.Progress)
	}
	simCfg := kvsim.DefaultClusterConfig()
	simCfg.Shards, simCfg.Replicas, simCfg.ReplDelay = cfg.Shards, 1, cfg.ReplDelay
	// Only the planned failovers may move a master.
	simCfg.Controller.AutoFailover = false
	simCfg.Controller.Failover = PauseFailoverOptions(cfg.ReplDelay)
	simCfg.ControllerAPI.Listen = "127.0.0.1:0"
	simCfg.Logger = slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if cfg.RedisBenchmark {
		if _, err := exec.LookPath("redis-benchmark"); err != nil {
			return nil, fmt.Errorf("soak: -redis-benchmark: %w", err)
		}
	}
	sim, err := kvsim.StartCluster(simCfg)
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	defer sim.Close()
	api, err := controller.New(sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "", controllerCallTimeout)
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	defer api.Close()

	startCtx, cancel := context.WithTimeout(ctx, proxyStartTimeout)
	defer cancel()
	binary := cfg.KvproxyBinary
	if binary == "" {
		dir, err := os.MkdirTemp("", "kvbench-soak-")
		if err != nil {
			return nil, fmt.Errorf("soak: %w", err)
		}
		defer os.RemoveAll(dir)
		if binary, err = loadgen.BuildKvproxy(startCtx, dir); err != nil {
			return nil, fmt.Errorf("soak: %w", err)
		}
	}
	var seeds []string
	for _, m := range sim.Masters() {
		seeds = append(seeds, m.Addr())
	}
	args := cfg.KvproxyArgs
	if cfg.ProxyReports {
		args = append(proxyReportArgs(sim.ControllerAPIURL()), args...)
	}
	proxy, err := loadgen.LaunchKvproxy(startCtx, loadgen.KvproxyOptions{Binary: binary, Seeds: seeds, ExtraArgs: args})
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	defer proxy.Close()
	fmt.Fprintf(progress, "soak: kvproxy (pid %d) on %s in front of kvsim, %d shards x 1 replica, controller API %s\n",
		proxy.Pid(), proxy.Addr(), cfg.Shards, sim.ControllerAPIURL())

	s := &soak{cfg: cfg, sim: sim, api: api, proxy: proxy, progress: progress}
	return s.run(ctx)
}

// controllerCallTimeout bounds one call of the controller's API; a
// failover takes the write pause and a few commands to every node.
const controllerCallTimeout = 15 * time.Second

// proxyReportArgs are the kvproxy flags that make it report the CLUSTERX
// FAILOVERs it starts to the controller whose API is at url.
func proxyReportArgs(url string) []string {
	return []string{"--controller", url,
		"--controller-namespace", kvsim.DefaultAPINamespace, "--controller-cluster", kvsim.DefaultAPICluster}
}

// LockedWriter serializes the writes of the cluster's logger, the sampler
// and the failovers to Config.Progress (and kvbench failover's).
type LockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLockedWriter returns a LockedWriter writing to w.
func NewLockedWriter(w io.Writer) *LockedWriter { return &LockedWriter{w: w} }

func (l *LockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// soak is one run against a started cluster and proxy.
type soak struct {
	cfg      Config
	sim      *kvsim.Cluster
	api      *controller.Client // the controller's HTTP API
	proxy    *loadgen.Kvproxy
	progress io.Writer
	tally    *Tally
	ctl      *redis.Client // the proxy: CLUSTERX FAILOVER, PROXY NODES, INFO

	mu                 sync.Mutex
	failovers          []FailoverResult
	samples            []Sample
	goroutinesReported bool
}

func (s *soak) run(ctx context.Context) (*Report, error) {
	addr, timeout := s.proxy.Addr(), s.cfg.ClientTimeout
	s.tally = NewTally(time.Now())
	s.ctl = NewClient(addr, timeout, 2)
	defer s.ctl.Close()

	subClient := NewClient(addr, timeout, 1)
	defer subClient.Close()
	sub, err := subscribe(subClient, s.tally, timeout)
	if err != nil {
		return nil, fmt.Errorf("soak: SUBSCRIBE through the proxy: %w", err)
	}
	defer sub.ps.Close()
	pub := &publisher{cl: NewClient(addr, timeout, 1), tally: s.tally}
	defer pub.cl.Close()
	workers := make([]*worker, s.cfg.Clients)
	for i := range workers {
		workers[i] = newWorker(i, addr, s.cfg, s.tally)
		defer workers[i].cl.Close()
	}

	start := s.tally.start
	var loadStop, subStop atomic.Bool
	var load, subscribed sync.WaitGroup
	for _, w := range workers {
		load.Go(func() { w.run(&loadStop) })
	}
	load.Go(func() { pub.run(&loadStop) })
	subscribed.Go(func() { sub.run(&subStop) })
	var bench *benchmarker
	benchCtx, stopBench := context.WithCancel(context.Background())
	defer stopBench()
	if s.cfg.RedisBenchmark {
		bench = newBenchmarker(addr, s.cfg, s.tally)
		load.Go(func() { bench.run(benchCtx) })
	}
	samplerStop, samplerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(samplerDone)
		s.sampleLoop(start, samplerStop)
	}()

	interrupted := s.rotate(ctx, start)
	if !interrupted {
		select {
		case <-ctx.Done():
			interrupted = true
		case <-time.After(loadTail):
		}
	}
	loadStop.Store(true)
	stopBench()
	load.Wait()
	sub.awaitQuiet(2 * time.Second)
	subStop.Store(true)
	subscribed.Wait()
	close(samplerStop)
	<-samplerDone
	elapsed := time.Since(start)
	fmt.Fprintf(s.progress, "soak: load stopped after %s; reading back every key written\n", elapsed.Round(time.Millisecond))

	verifier := NewClient(addr, timeout, 1)
	defer verifier.Close()
	verified := 0
	for _, w := range workers {
		verified += w.verify(verifier)
	}
	last, fields := s.sample(start)
	s.mu.Lock()
	s.samples = append(s.samples, last)
	s.mu.Unlock()
	views := checkViews(context.Background(), s.api, s.sim, s.ctl, timeout)
	fmt.Fprintf(s.progress, "soak: views of the topology: %s\n", views.summary())

	report := s.report(elapsed, interrupted, verified, pubSubReport(pub, sub), fields)
	report.Views = &views
	if bench != nil {
		report.Benchmark = &bench.report
	}
	if report.Failed() {
		report.ProxyLog = s.proxy.LogTail()
	}
	return report, nil
}

// rotate runs the schedule's steps, one every FailoverInterval, each to
// its end, until Duration is over or PlannedFailovers are done. It reports
// whether ctx ended the soak early.
func (s *soak) rotate(ctx context.Context, start time.Time) (interrupted bool) {
	runner := &failoverRunner{sim: s.sim, admin: s.ctl, api: s.api, cfg: s.cfg}
	deadline := start.Add(s.cfg.Duration)
	planned := 0
	for i := 0; ; i++ {
		if s.cfg.PlannedFailovers > 0 && planned == s.cfg.PlannedFailovers {
			return false
		}
		st := scheduleStep(i, s.cfg.Shards, s.cfg.FailoverKinds, s.cfg.Between)
		next := start.Add(time.Duration(i+1) * s.cfg.FailoverInterval)
		if !next.Before(deadline) {
			next = deadline
		}
		select {
		case <-ctx.Done():
			return true
		case <-time.After(time.Until(next)):
		}
		if next == deadline {
			return false
		}
		at := time.Since(start)
		res := runner.run(ctx, i, st)
		res.At = at
		if !st.Between {
			planned++
		}
		s.mu.Lock()
		s.failovers = append(s.failovers, res)
		s.mu.Unlock()
		fmt.Fprintln(s.progress, res.line())
	}
}

// sampleLoop takes a sample every SampleInterval until stop closes.
func (s *soak) sampleLoop(start time.Time, stop <-chan struct{}) {
	tick := time.NewTicker(s.cfg.SampleInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		sample, _ := s.sample(start)
		s.mu.Lock()
		s.samples = append(s.samples, sample)
		s.mu.Unlock()
		fmt.Fprintln(s.progress, sample.progressLine())
	}
}

// sample measures the proxy and the load now; it also returns the INFO
// fields it read (nil when INFO failed).
func (s *soak) sample(start time.Time) (Sample, map[string]string) {
	sample := Sample{At: time.Since(start), Requests: s.tally.Commands(), Errors: s.tally.ErrorTotal()}
	sampleProcess(&sample, s.proxy.Pid())
	fields, err := proxyInfo(s.ctl)
	if err != nil {
		fmt.Fprintf(s.progress, "soak: INFO through the proxy: %v\n", err)
	}
	reported := sampleInfo(&sample, fields)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.goroutinesReported = s.goroutinesReported || reported
	sample.Failovers = len(s.failovers)
	for _, f := range s.failovers {
		if f.Err == nil {
			sample.FailoversOK++
		}
	}
	return sample, fields
}
