package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/bench/loadgen"
)

func TestRunRejectsBadFlagsInOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"--shards", "x"},
		{"--bogus"},
		{"--shards", "0"},
		{"--replicas", "-1"},
		{"--port", "65535", "--shards", "2"},
		{"--repl-delay", "soon"},
		{"--log-level", "loud"},
		{"--probe-failures", "0"},
		{"--pause-timeout", "100ms", "--sync-timeout", "200ms"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		assert.Equal(t, 2, code, "%v", args)
		assert.Empty(t, stdout.String(), "%v", args)
		assert.Regexp(t, `^kvsim: [^\n]+\n$`, stderr.String(), "%v", args)
	}
}

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 0, run(context.Background(), []string{"--help"}, &stdout, &stderr))
	assert.Contains(t, stdout.String(), "usage: kvsim")
	assert.Contains(t, stdout.String(), "-repl-delay")
	assert.Empty(t, stderr.String())
}

func TestRunReportsAPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { taken.Close() })
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)

	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--shards", "1", "--replicas", "0", "--port", port}, &stdout, &stderr)
	assert.Equal(t, 2, code)
	assert.Empty(t, stdout.String())
	assert.Regexp(t, `^kvsim: listen 127\.0\.0\.1:`+port+`: [^\n]*address already in use\n$`, stderr.String())
}

// lockedBuffer is the kvsim process's stdout, read while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestKvsimWithRedisCli builds cmd/kvsim, runs a 2 x 1 cluster with a 300 ms
// replication delay and drives it with the real redis-cli through a graceful
// in-server failover, then stops it with SIGTERM.
func TestKvsimWithRedisCli(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	redisCli := loadgen.RequireBinary(t, "redis-cli")
	goTool := loadgen.RequireBinary(t, "go") // go test puts its own go first on PATH
	bin := filepath.Join(t.TempDir(), "kvsim")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	base, err := kvsim.FreeConsecutivePorts(4)
	require.NoError(t, err)
	ports := make([]string, 4)
	for i := range ports {
		ports[i] = strconv.Itoa(base + i)
	}
	var stdout, stderr lockedBuffer
	proc := exec.Command(bin, "--shards", "2", "--replicas", "1", "--port", ports[0], "--repl-delay", "300ms")
	proc.Stdout, proc.Stderr = &stdout, &stderr
	require.NoError(t, proc.Start())
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	t.Cleanup(func() {
		_ = proc.Process.Kill() // no-op once it exited
		<-exited
		if t.Failed() {
			t.Logf("kvsim stdout:\n%s\nkvsim stderr:\n%s", stdout.String(), stderr.String())
		}
	})
	require.Eventually(t, func() bool { return strings.Contains(stdout.String(), "127.0.0.1:"+ports[3]) },
		30*time.Second, 20*time.Millisecond, "kvsim prints its table once ready")

	// redis-cli prints replies and errors alike on stdout and exits 0.
	try := func(port string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, redisCli, append([]string{"-p", port}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	cli := func(port string, args ...string) string {
		t.Helper()
		out, err := try(port, args...)
		require.NoError(t, err, "redis-cli -p %s %v: %s", port, args, out)
		return out
	}

	// CLUSTER NODES: 40-character ids, and the 2nd node replicates the 1st.
	ids := map[string]string{} // port -> id
	nodes := cli(ports[0], "CLUSTER", "NODES")
	line := regexp.MustCompile(`(?m)^([0-9a-f]{40}) 127\.0\.0\.1:(\d+)@\d+ (\S+) (\S+) `)
	for _, m := range line.FindAllStringSubmatch(nodes, -1) {
		ids[m[2]] = m[1]
	}
	require.Len(t, ids, 4, nodes)
	assert.Regexp(t, regexp.MustCompile(`(?m)^`+ids[ports[1]]+` 127\.0\.0\.1:`+ports[1]+`@\d+ slave `+ids[ports[0]]+` `), nodes)

	// Redirections and refusals. "foo" hashes to slot 12182 (shard 1), "bar" to 5061 (shard 0).
	assert.Equal(t, "MOVED 12182 127.0.0.1:"+ports[2], cli(ports[0], "SET", "foo", "x"), "wrong master")
	assert.Equal(t, "MOVED 5061 127.0.0.1:"+ports[0], cli(ports[1], "SET", "bar", "x"), "write on a replica")
	assert.Equal(t, "READONLY You can't write against a read only slave.", cli(ports[1], "FLUSHDB"))

	// Graceful failover of shard 0 inside the server.
	replicaID := ids[ports[1]]
	assert.Equal(t, "OK", cli(ports[0], "SET", "bar", "v1"))
	assert.Equal(t, "ERR timeout is negative", cli(ports[0], "CLUSTERX", "FAILOVER", replicaID, "-1"))

	// Keep writing from before the failover starts, so that the replica
	// (300 ms behind) lags when the master pauses writes.
	stopWriting := make(chan struct{})
	writes := make(chan string, 4096)
	go func() {
		defer close(writes)
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; i < 4000 && time.Now().Before(deadline); i++ {
			select {
			case <-stopWriting:
				return
			default:
			}
			out, _ := try(ports[0], "SET", "bar", "v1")
			writes <- out
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			close(stopWriting)
			stopped = true
		}
	}
	t.Cleanup(stop)
	require.Eventually(t, func() bool { return len(writes) >= 5 }, 10*time.Second, 10*time.Millisecond)

	assert.Equal(t, "OK", cli(ports[0], "CLUSTERX", "FAILOVER", replicaID, "2000"))
	assert.Equal(t, "ERR Failover is already in progress", cli(ports[0], "CLUSTERX", "FAILOVER", replicaID, "2000"))
	state := ""
	require.Eventually(t, func() bool {
		info, _ := try(ports[0], "CLUSTER", "INFO")
		m := regexp.MustCompile(`cluster_failover_state:(\w+)`).FindStringSubmatch(info)
		if m != nil {
			state = m[1]
		}
		return state == "success" || state == "failed"
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, "success", state)
	stop()
	seen := map[string]int{}
	for w := range writes {
		seen[w]++
	}
	assert.Positive(t, seen["TRYAGAIN Failover in progress"], "writes during the pause: %v", seen)
	for w := range seen {
		assert.Contains(t, []string{"OK", "TRYAGAIN Failover in progress", "MOVED 5061 127.0.0.1:" + ports[1]}, w)
	}

	assert.Equal(t, "MOVED 5061 127.0.0.1:"+ports[1], cli(ports[0], "GET", "bar"), "the old master redirects")
	assert.Equal(t, "v1", cli(ports[1], "GET", "bar"), "the replica serves the value")

	require.NoError(t, proc.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			t.Fatalf("kvsim exited with %d after SIGTERM", exitErr.ExitCode())
		}
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("kvsim did not exit within 20 s of SIGTERM")
	}
}
