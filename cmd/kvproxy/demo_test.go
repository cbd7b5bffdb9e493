package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

// freeLoopbackPort returns a port that was free a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// demoNode is a line of the node table the demo prints.
type demoNode struct{ id, addr, role, master string }

var demoNodeLine = regexp.MustCompile(`^([0-9a-f]{40})\s+(127\.0\.0\.1:\d+)\s+(master|slave)\s+(\S+)\s`)

// TestDemoBinary runs the built binary with --demo as a user would: it waits
// for the node table and the printed failover line, stores and reads keys
// with redis-cli, runs the failover line again and again (failing shard 0
// over, back and over again) while a client writes, checks after each
// handover the roles PROXY NODES, INFO and INFO failover show and that every
// acknowledged write reads back, then sends SIGTERM and expects a clean exit.
func TestDemoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	redisCLI := loadgen.RequireBinary(t, "redis-cli")
	bin := kvproxyBuild.Binary(t)
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
	failoverLine := regexp.MustCompile(`^\s*redis-cli -p ` + port + ` (PROXY FAILOVER 0)$`)
	var printed []string
	var failoverArgs []string
	deadline := time.After(30 * time.Second)
	for failoverArgs == nil {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "kvproxy stopped printing before the failover line; stdout:\n%s", strings.Join(printed, "\n"))
			printed = append(printed, line)
			if m := failoverLine.FindStringSubmatch(line); m != nil {
				failoverArgs = strings.Fields(m[1])
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
	assert.Contains(t, out, "Run it again to fail back")
	var nodes []demoNode
	for _, line := range printed {
		if m := demoNodeLine.FindStringSubmatch(line); m != nil {
			nodes = append(nodes, demoNode{m[1], m[2], m[3], m[4]})
		}
	}
	require.Len(t, nodes, 6, out)
	// The table lists shard 0's master first, then its replica.
	master, replica := nodes[0], nodes[1]
	require.Equal(t, "master", master.role, out)
	require.Equal(t, master.id, replica.master, out)
	assert.Contains(t, out, "shard 0 (master "+master.addr+", replica "+replica.addr+")")

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
		case <-time.After(20 * time.Second):
			_ = c.Process.Kill()
			<-done
			t.Fatalf("redis-cli %v did not finish within 20s", args)
		}
		return strings.TrimSpace(stdout.String())
	}
	assert.Equal(t, "OK", cli("SET", "demo:greeting", "hello"))
	assert.Equal(t, "hello", cli("GET", "demo:greeting"))
	// shard0Roles checks that the proxy shows master serving shard 0 and
	// replica as its replica.
	shard0Roles := func(master, replica demoNode) {
		t.Helper()
		nodes := cli("PROXY", "NODES")
		assert.Regexp(t, `(?m)^`+master.id+` `+regexp.QuoteMeta(master.addr)+`@\d+ master - 0 0 \d+ connected 0-5460$`, nodes)
		assert.Regexp(t, `(?m)^`+replica.id+` `+regexp.QuoteMeta(replica.addr)+`@\d+ slave `+master.id+` 0 0 \d+ connected$`, nodes)
		info := cli("INFO")
		assert.Contains(t, info, "id="+master.id+",addr="+master.addr+",role=master,master=-,slots=0-5460\r\n")
		assert.Contains(t, info, "id="+replica.id+",addr="+replica.addr+",role=replica,master="+master.id+",slots=\r\n")
		assert.Contains(t, cli("INFO", "failover"), "shard0:master="+master.addr+",replicas="+replica.addr+",slots=0-5460,")
	}
	shard0Roles(master, replica)

	writer := startDemoWriter(t, "127.0.0.1:"+port)
	acked := map[string]string{"demo:greeting": "hello"}
	for round := range 4 { // over, back, over, back
		reply := cli(failoverArgs...)
		require.True(t, strings.HasPrefix(reply, "shard 0 failed over in "), "round %d: %s", round, reply)
		assert.Contains(t, reply, replica.addr+" is its master now, "+master.addr+" its replica; recorded by the topology authority")
		master, replica = replica, master
		shard0Roles(master, replica)
		key, value := "demo:round"+strconv.Itoa(round), "v"+strconv.Itoa(round)
		assert.Equal(t, "OK", cli("SET", key, value))
		acked[key] = value
		for k, v := range acked {
			assert.Equal(t, v, cli("GET", k), "round %d: %s", round, k)
		}
	}
	assert.Contains(t, cli("INFO", "failover"), "\r\ncontroller_reported:4\r\ncontroller_report_failures:0\r\ncontroller_unreported:0\r\n")
	writer.check(t, "127.0.0.1:"+port)

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

// demoWriter writes through the proxy until checked, one write at a time,
// and remembers each the proxy acknowledged.
type demoWriter struct {
	stop   chan struct{}
	done   chan struct{}
	acked  int
	errors []error
}

func startDemoWriter(t *testing.T, addr string) *demoWriter {
	cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Protocol: 2})
	t.Cleanup(func() { _ = cl.Close() })
	w := &demoWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := cl.Set(ctx, "demo:w:"+strconv.Itoa(w.acked), w.acked, 0).Err()
			cancel()
			if err != nil {
				w.errors = append(w.errors, err)
				continue
			}
			w.acked++
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
		}
		<-w.done
	})
	return w
}

// check stops the writer and reads back every acknowledged write.
func (w *demoWriter) check(t *testing.T, addr string) {
	t.Helper()
	close(w.stop)
	<-w.done
	assert.Empty(t, w.errors, "client errors")
	require.Positive(t, w.acked)
	cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer cl.Close()
	lost := 0
	for i := range w.acked {
		if v, err := cl.Get(context.Background(), "demo:w:"+strconv.Itoa(i)).Int(); err != nil || v != i {
			lost++
		}
	}
	assert.Zero(t, lost, "acknowledged writes lost, of %d", w.acked)
	t.Logf("%d acknowledged writes through four failovers, all read back", w.acked)
}
