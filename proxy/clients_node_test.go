package proxy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestNodeClientsThroughTheProxy runs bench/clients/node/matrix.js (connect,
// SET/GET, cross-slot MSET/MGET, a pipeline, MULTI/EXEC, Pub/Sub, BLPOP, a
// full SCAN, EVAL with one key) with node-redis in RESP3 (its default) and RESP2, and with ioredis, through the proxy over Redis Cluster and kvsim.
// It skips without node or the installed packages (.ci/run installs them),
// except under CI=true.
func TestNodeClientsThroughTheProxy(t *testing.T) {
	dir, err := filepath.Abs("../bench/clients/node")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "redis"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node and bench/clients/node's packages are required when CI=true: %v", err)
		}
		t.Skipf("node or its packages missing (npm ci --prefix bench/clients/node): %v", err)
	}
	run := func(t *testing.T, addr string, args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, append([]string{filepath.Join(dir, "matrix.js"), addr}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	scenarios := func(t *testing.T, addr string) {
		t.Run("node-redis RESP3", func(t *testing.T) { run(t, addr, "node-redis") })
		t.Run("node-redis RESP2", func(t *testing.T) { run(t, addr, "node-redis", "2") })
		t.Run("ioredis", func(t *testing.T) { run(t, addr, "ioredis") })
	}
	t.Run("Redis Cluster", func(t *testing.T) { scenarios(t, startClusterProxy(t).addr) })
	t.Run("kvsim", func(t *testing.T) { scenarios(t, startKvsimProxy(t).addr) })
}
