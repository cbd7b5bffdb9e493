// Package e2e holds kvproxy's end-to-end acceptance tests: real clients
// (redis-benchmark, redis-cli, go-redis, rueidis) talk to a proxy in front of
// a simulated Kvrocks cluster (kvsim) and in front of a real Redis Cluster.
// TestMain starts both clusters, with a proxy in front of each, once for the
// whole package; under -short it starts nothing and every test skips.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kvproxy/bench/cluster"
	"kvproxy/bench/kvsim"
	"kvproxy/internal/leaktest"
	"kvproxy/proxy"
	"kvproxy/router"
)

// Backend names, as subtests are named.
const (
	backendKvsim = "kvsim"
	backendRedis = "redis-cluster"
)

// backends are the targets every test runs against, in this order.
var backends = []string{backendKvsim, backendRedis}

// setupTimeout bounds starting one cluster and its proxy.
const setupTimeout = 90 * time.Second

// fixture is one cluster with a proxy in front of it.
type fixture struct {
	// proxyAddr is where clients connect.
	proxyAddr string
	// err says why the fixture could not start; tests using it fail.
	err error
	// missingBinary is set when redis-server is not installed: tests using
	// the fixture skip (or fail under CI=true).
	missingBinary bool

	closers []func()
}

func (f *fixture) close() {
	for i := len(f.closers) - 1; i >= 0; i-- {
		f.closers[i]()
	}
}

// fixtures are started by TestMain, by backend name.
var fixtures = map[string]*fixture{}

// logs collects what the clusters, routers and proxies log; it is printed
// when a test fails.
var logs lockedBuffer

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail returns the last n lines written.
func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(strings.TrimSuffix(b.buf.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestMain(m *testing.M) {
	flag.Parse()
	leakOptions := leaktest.Options()
	if testing.Short() {
		os.Exit(leakCheck(m.Run(), leakOptions))
	}
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for name, start := range map[string]func(context.Context, *slog.Logger) *fixture{
		backendKvsim: startKvsimFixture,
		backendRedis: startRedisFixture,
	} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
			defer cancel()
			f := start(ctx, logger.With("backend", name))
			mu.Lock()
			fixtures[name] = f
			mu.Unlock()
		})
	}
	wg.Wait()
	code := cluster.WithSpares(m, failoverClusters).Run()
	for _, f := range fixtures {
		f.close()
	}
	code = leakCheck(code, leakOptions)
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- last log lines of the clusters, routers and proxies:\n%s\n", logs.tail(200))
	}
	os.Exit(code)
}

// leakCheck turns a passing run's exit code into a failure when goroutines
// are still running once the fixtures are closed.
func leakCheck(code int, options []goleak.Option) int {
	if code != 0 {
		return code
	}
	if err := goleak.Find(options...); err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		return 1
	}
	return code
}

// proxyAddr returns the address of the proxy in front of backend. It skips
// the test under -short, and when the backend cannot run here.
func proxyAddr(t *testing.T, backend string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	f := fixtures[backend]
	switch {
	case f == nil:
		t.Fatalf("no fixture for backend %q", backend)
	case f.missingBinary && os.Getenv("CI") == "true":
		t.Fatalf("%v (CI=true: redis-server is required)", f.err)
	case f.missingBinary:
		t.Skipf("%v: install redis-server to run this test against a Redis Cluster", f.err)
	case f.err != nil:
		t.Fatalf("%s fixture did not start: %v", backend, f.err)
	}
	return f.proxyAddr
}

// startKvsimFixture starts a 3 x 1 kvsim cluster and a proxy in front of it,
// seeded with one master only (any node must do).
func startKvsimFixture(ctx context.Context, logger *slog.Logger) *fixture {
	f := &fixture{}
	cfg := kvsim.DefaultClusterConfig()
	cfg.Logger = logger
	sim, err := kvsim.StartCluster(cfg)
	if err != nil {
		f.err = err
		return f
	}
	f.closers = append(f.closers, sim.Close)
	f.err = startProxy(ctx, f, []string{sim.Masters()[0].Addr()}, logger)
	return f
}

// startRedisFixture starts a 3 x 1 Redis Cluster and a proxy in front of it,
// seeded with one replica only.
func startRedisFixture(ctx context.Context, logger *slog.Logger) *fixture {
	f := &fixture{}
	c, err := cluster.New(ctx, cluster.Options{Masters: 3, ReplicasPerMaster: 1, Logger: logger})
	if err != nil {
		f.err = err
		f.missingBinary = errors.Is(err, cluster.ErrNoRedisServer)
		return f
	}
	f.closers = append(f.closers, func() {
		if err := c.Close(); err != nil {
			logger.Error("closing the redis cluster", "err", err)
		}
	})
	f.err = startProxy(ctx, f, []string{c.Replicas()[0].Addr}, logger)
	return f
}

// startProxy puts a router and a proxy, as cmd/kvproxy builds them, in
// front of the cluster that seeds belong to.
func startProxy(ctx context.Context, f *fixture, seeds []string, logger *slog.Logger) error {
	rcfg := router.DefaultConfig()
	rcfg.Seeds = seeds
	rcfg.Logger = logger
	rt, err := router.New(ctx, rcfg)
	if err != nil {
		return err
	}
	f.closers = append(f.closers, func() { _ = rt.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	pcfg := proxy.DefaultConfig()
	pcfg.ListenAddr = ln.Addr().String()
	pcfg.AnnounceAddr = ln.Addr().String()
	pcfg.Logger = logger.With("component", "proxy")
	srv, err := proxy.New(pcfg, rt)
	if err != nil {
		ln.Close()
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	f.closers = append(f.closers, func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, proxy.ErrServerClosed) {
			logger.Error("proxy Serve ended", "err", err)
		}
	})
	f.proxyAddr = ln.Addr().String()
	return nil
}
