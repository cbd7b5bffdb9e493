package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

// buildKvproxy compiles this command into a temporary directory. go test
// puts its own go first in PATH, so the toolchain under test builds it.
func buildKvproxy(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("go toolchain not in PATH: %v (CI=true: it is required)", err)
		}
		t.Skipf("go toolchain not in PATH (%v): cannot build the binary", err)
	}
	bin := filepath.Join(t.TempDir(), "kvproxy")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// freeLoopbackPort returns a port that was free a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// TestDemoBinary runs the built binary with --demo as a user would: it waits
// for the node table and the redis-cli failover line, stores and reads a key
// with redis-cli, then sends SIGTERM and expects a clean exit.
func TestDemoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	redisCLI := loadgen.RequireBinary(t, "redis-cli")
	bin := buildKvproxy(t)
	port := strconv.Itoa(freeLoopbackPort(t))

	cmd := exec.Command(bin, "--demo", "--listen", "127.0.0.1:"+port)
	cmd.SysProcAttr = childProcAttr()
	cmd.Env = append(os.Environ(), "KVPROXY_SEEDS=") // an inherited seed list must not clash with --demo
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() {
		// Wait closes the stdout pipe only after the reader below hit EOF.
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("kvproxy stderr:\n%s", stderr.String())
		}
	})

	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	failoverLine := regexp.MustCompile(`^\s*redis-cli -p ` + port + ` CLUSTERX FAILOVER ([0-9a-f]{40})$`)
	var printed []string
	var replicaID string
	deadline := time.After(30 * time.Second)
	for replicaID == "" {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "kvproxy stopped printing before the failover line; stdout:\n%s", strings.Join(printed, "\n"))
			printed = append(printed, line)
			if m := failoverLine.FindStringSubmatch(line); m != nil {
				replicaID = m[1]
			}
		case <-deadline:
			t.Fatalf("no failover line within 30s; stdout so far:\n%s", strings.Join(printed, "\n"))
		}
	}
	go func() {
		for range lines { // keep the reader from blocking on the rest
		}
	}()
	out := strings.Join(printed, "\n")
	assert.Contains(t, out, "topology version 1")
	assert.Equal(t, 3, strings.Count(out, " master "), out)
	assert.Equal(t, 3, strings.Count(out, " slave "), out)
	assert.Regexp(t, replicaID+`\s+127\.0\.0\.1:\d+\s+slave\s`, out, "the failover line names a replica of the table")
	assert.Contains(t, out, "admin command for")

	cli := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		c := exec.Command(redisCLI, append([]string{"-p", port}, args...)...)
		c.Stdout, c.Stderr = &stdout, &stderr
		done := make(chan error, 1)
		require.NoError(t, c.Start())
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			require.NoError(t, err, "redis-cli %v: %s", args, stderr.String())
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-done
			t.Fatalf("redis-cli %v did not finish within 10s", args)
		}
		return strings.TrimSpace(stdout.String())
	}
	assert.Equal(t, "OK", cli("SET", "demo:greeting", "hello"))
	assert.Equal(t, "hello", cli("GET", "demo:greeting"))
	// The printed failover command works through the proxy, and the
	// proxy keeps serving the shard through the handover.
	assert.Equal(t, "OK", cli("CLUSTERX", "FAILOVER", replicaID))
	assert.Equal(t, "OK", cli("SET", "demo:greeting", "again"))
	assert.Equal(t, "again", cli("GET", "demo:greeting"))

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		stopped = true
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			t.Fatalf("kvproxy exited with status %d after SIGTERM", exitErr.ExitCode())
		}
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("kvproxy still running 30s after SIGTERM")
	}
	assert.Contains(t, stderr.String(), "shutdown complete")
}
