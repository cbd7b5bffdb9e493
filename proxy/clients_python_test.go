package proxy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// pythonWithRedis is a python3 that imports redis-py (Debian's python3-redis
// lives in the system interpreter, which a python3 earlier on PATH may not
// be), or "" when there is none.
func pythonWithRedis() string {
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		if path, err := exec.LookPath(name); err == nil && exec.Command(path, "-c", "import redis").Run() == nil {
			return path
		}
	}
	return ""
}

// TestPythonClientThroughTheProxy runs bench/clients/python/matrix.py
// (connect, SET/GET, cross-slot MSET/MGET, a pipeline, MULTI/EXEC, Pub/Sub,
// BLPOP, a full SCAN, EVAL with one key) with
// redis-py, in its default RESP2 (Debian's 4.3 has no RESP3), through the
// proxy over Redis Cluster and kvsim. It skips without python3-redis
// (.ci/run installs it), except under CI=true.
func TestPythonClientThroughTheProxy(t *testing.T) {
	python := pythonWithRedis()
	if python == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 with redis-py (python3-redis) is required when CI=true")
		}
		t.Skip("no python3 with redis-py (apt-get install python3-redis)")
	}
	script, err := filepath.Abs("../bench/clients/python/matrix.py")
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, addr string) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, script, addr)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	t.Run("Redis Cluster", func(t *testing.T) { run(t, startClusterProxy(t).addr) })
	t.Run("kvsim", func(t *testing.T) { run(t, startKvsimProxy(t).addr) })
}
