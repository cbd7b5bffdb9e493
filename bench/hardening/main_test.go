// Package hardening holds kvproxy's acceptance tests for hostile clients,
// overload and sick backends (issue 9): a kvproxy process (so its memory
// can be read from /proc) in front of a real Redis Cluster, driven by raw
// RESP connections that see every reply byte for byte. The tests share one
// master-only cluster whose cluster-node-timeout outlasts every stall they
// cause, so no node is ever flagged failing and each test sees the proxy's
// behaviour alone; each test puts the cluster back as it found it. Under
// -short every test skips.
package hardening

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kvproxy/bench/cluster"
	"kvproxy/bench/loadgen"
	"kvproxy/internal/leaktest"
)

// nodeTimeout is the shared cluster's cluster-node-timeout: longer than the
// 6 s SIGSTOP and the kill windows, so the cluster never marks a node
// failing (which would make the others answer CLUSTERDOWN) while a test
// looks at the proxy.
const nodeTimeout = 30 * time.Second

// setupTimeout bounds building kvproxy and starting the cluster.
const setupTimeout = 3 * time.Minute

// shared is the cluster and kvproxy binary every test uses, started by the
// first test that needs them and closed by TestMain.
var shared struct {
	once    sync.Once
	env     *env
	err     error
	tempDir string
}

// env is what a test runs against.
type env struct {
	cluster *cluster.Cluster
	// kvproxy is the binary built from this module.
	kvproxy string
}

func TestMain(m *testing.M) {
	leakOptions := leaktest.Options()
	code := m.Run()
	if shared.env != nil {
		if err := shared.env.cluster.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the shared cluster:", err)
			code = 1
		}
	}
	if shared.tempDir != "" {
		os.RemoveAll(shared.tempDir)
	}
	// Checked once the cluster is closed: its clients' goroutines end with it.
	if code == 0 {
		if err := goleak.Find(leakOptions...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// sharedEnv returns the shared cluster and kvproxy binary, starting them on
// first use. It skips under -short, and without redis-server (fails then
// under CI=true). Every test that uses it gets the cluster back healthy,
// running and empty when it ends (restoreCluster).
func sharedEnv(tb testing.TB) *env {
	tb.Helper()
	if testing.Short() {
		tb.Skip("end-to-end: runs without -short")
	}
	shared.once.Do(startShared)
	switch {
	case errors.Is(shared.err, cluster.ErrNoRedisServer) && os.Getenv("CI") == "true":
		tb.Fatalf("%v (CI=true: redis-server is required)", shared.err)
	case errors.Is(shared.err, cluster.ErrNoRedisServer):
		tb.Skipf("%v: install redis-server to run this test", shared.err)
	case shared.err != nil:
		tb.Fatalf("starting the shared cluster and kvproxy: %v", shared.err)
	}
	e := shared.env
	tb.Cleanup(func() { e.restoreCluster(tb) })
	return e
}

func startShared() {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "kvproxy-hardening-")
	if err != nil {
		shared.err = err
		return
	}
	shared.tempDir = dir
	bin, err := loadgen.BuildKvproxy(ctx, dir)
	if err != nil {
		shared.err = err
		return
	}
	c, err := cluster.New(ctx, cluster.Options{Masters: 3, NodeTimeout: nodeTimeout})
	if err != nil {
		shared.err = err
		return
	}
	shared.env = &env{cluster: c, kvproxy: bin}
}

// restoreCluster restarts the nodes a test killed, waits for a healthy
// cluster and empties it, so the next test starts from the same state.
// Stopped nodes are resumed by the test that stopped them (stopNode).
func (e *env) restoreCluster(tb testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(e.cluster.Nodes()))
	for i, n := range e.cluster.Nodes() {
		if !n.Running() {
			// Concurrently: each Restart waits for the whole cluster.
			wg.Go(func() { errs[i] = e.cluster.Restart(ctx, n) })
		}
	}
	wg.Wait()
	err := errors.Join(append(errs, e.cluster.WaitHealthy(ctx))...)
	for _, n := range e.cluster.Masters() {
		err = errors.Join(err, n.Client().FlushAll(ctx).Err())
	}
	if err != nil {
		tb.Errorf("restoring the shared cluster for the next test: %v", err)
	}
}

// launchProxy starts kvproxy in front of the shared cluster with args
// (besides --seeds, --listen and --log-level warn) and stops it when the
// test ends, quoting its log if the test failed.
func (e *env) launchProxy(tb testing.TB, args ...string) *loadgen.Kvproxy {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := loadgen.LaunchKvproxy(ctx, loadgen.KvproxyOptions{Binary: e.kvproxy, Seeds: e.cluster.Addrs(), ExtraArgs: args})
	if err != nil {
		tb.Fatalf("starting kvproxy %v: %v", args, err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("kvproxy log tail:\n%s", p.LogTail())
		}
		p.Close()
	})
	return p
}

// shardKey returns a key called name (behind a hash tag) in the i-th slot of
// master's first slot range, so a test's keys all land on one shard and
// spread over a few of its slots.
func (e *env) shardKey(master *cluster.Node, i int, name string) string {
	r := e.cluster.SlotRanges()[master.ID][0]
	return cluster.KeyInSlot(r.Start+i%(r.End-r.Start+1), name)
}

// stopNode SIGSTOPs n (its pid taken from INFO first, which a stopped node
// cannot answer) and returns a function that SIGCONTs it; the test's
// cleanup SIGCONTs it too, so no test leaves a node stopped.
func stopNode(tb testing.TB, n *cluster.Node) (resume func()) {
	tb.Helper()
	pid := nodePid(tb, n)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		tb.Fatalf("SIGSTOP %s (pid %d): %v", n, pid, err)
	}
	resume = func() {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			tb.Errorf("SIGCONT %s (pid %d): %v", n, pid, err)
		}
	}
	tb.Cleanup(resume)
	return resume
}
