package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
		{"--controller-listen", "9379"},
		{"--controller-namespace", "a/b"},
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
	assert.Contains(t, stdout.String(), "-controller-listen")
	assert.Contains(t, stdout.String(), "-released")
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

// --controller-listen serves the controller's HTTP API on the address it
// prints; --released makes the nodes refuse CLUSTERX FAILOVER as released
// Kvrocks does, and the API's failover works there all the same.
func TestRunServesTheControllerAPIOfAReleasedCluster(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"--shards", "1", "--replicas", "1", "--released", "--log-level", "error",
			"--controller-listen", "127.0.0.1:0", "--controller-namespace", "ns1", "--controller-cluster", "c1"}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		stop()
		assert.Equal(t, 0, <-exited)
		if t.Failed() {
			t.Logf("kvsim stdout:\n%s\nkvsim stderr:\n%s", stdout.String(), stderr.String())
		}
	})
	line := regexp.MustCompile(`(?m)^controller API: (http://127\.0\.0\.1:\d+) \(namespace ns1, cluster c1\)$`)
	var url string
	require.Eventually(t, func() bool {
		if m := line.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
		}
		return url != ""
	}, 30*time.Second, 10*time.Millisecond, "kvsim prints the API's address")

	client := &http.Client{Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	get := func(path string) (int, string) {
		resp, err := client.Get(url + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := get("/api/v1/namespaces")
	assert.Equal(t, 200, code)
	assert.Equal(t, `{"data":{"namespaces":["ns1"]}}`, body)
	code, body = get("/api/v1/namespaces/ns1/clusters/c1")
	require.Equal(t, 200, code, body)
	var got struct {
		Data struct {
			Cluster struct {
				Version int64 `json:"version"`
				Shards  []struct {
					Nodes []struct{ ID, Addr, Role string } `json:"nodes"`
				} `json:"shards"`
			} `json:"cluster"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Len(t, got.Data.Cluster.Shards, 1)
	nodes := got.Data.Cluster.Shards[0].Nodes
	require.Len(t, nodes, 2)
	require.Equal(t, "master", nodes[0].Role)
	master := redis.NewClient(&redis.Options{Addr: nodes[0].Addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { master.Close() })
	assert.EqualError(t, master.Do(ctx, "CLUSTERX", "FAILOVER", nodes[1].ID).Err(),
		"ERR CLUSTERX command, CLUSTERX VERSION|MYID|SETNODEID|SETNODES|SETSLOT|MIGRATE")

	resp, err := client.Post(url+"/api/v1/namespaces/ns1/clusters/c1/shards/0/failover", "application/json",
		strings.NewReader(`{"preferred_node_id":"`+nodes[1].ID+`"}`))
	require.NoError(t, err)
	failover, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, `{"data":{"new_master_id":"`+nodes[1].ID+`"}}`, string(failover))
	code, body = get("/api/v1/namespaces/ns1/clusters/c1")
	require.Equal(t, 200, code)
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	assert.Equal(t, int64(2), got.Data.Cluster.Version)
	assert.Equal(t, "slave", got.Data.Cluster.Shards[0].Nodes[0].Role)
	assert.Equal(t, "master", got.Data.Cluster.Shards[0].Nodes[1].Role)
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
	// (300 ms behind) lags when the master pauses writes and the pause lasts
	// about that long.
	writerCtx, stopWriter := context.WithTimeout(context.Background(), time.Minute)
	var written atomic.Int32
	var writes []bracketedWrite
	var writeErr error
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		writes, writeErr = writeThroughFailover(writerCtx, redisCli, ports[0], &written)
	}()
	t.Cleanup(func() {
		stopWriter()
		<-writerDone
	})
	require.Eventually(t, func() bool {
		select {
		case <-writerDone:
			return true
		default:
			return written.Load() >= 5
		}
	}, 10*time.Second, 10*time.Millisecond, "redis-cli writes before the failover")
	select {
	case <-writerDone:
		require.FailNow(t, "the writer stopped before the failover", "%v", writeErr)
	default:
	}

	// check_slave samples the replica for half the timeout: a long sample
	// keeps the estimated catch-up rate steady when the machine stalls.
	const failoverTimeoutMs = "4000"
	assert.Equal(t, "OK", cli(ports[0], "CLUSTERX", "FAILOVER", replicaID, failoverTimeoutMs))
	assert.Equal(t, "ERR Failover is already in progress", cli(ports[0], "CLUSTERX", "FAILOVER", replicaID, failoverTimeoutMs))
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
	select {
	case <-writerDone:
	case <-time.After(20 * time.Second):
		require.FailNow(t, "the writer did not stop within 20 s of the failover's end")
	}
	require.NoError(t, writeErr)

	// Each write got the reply of a state it may have run in. The writer
	// stops only after a write that ran once the failover ended, and it began
	// before the failover started, so OK and MOVED are always checked.
	replies := map[string]int{}
	wrong := map[string]int{} // "reply (between before and after)" -> writes
	inPause := 0
	for _, w := range writes {
		replies[w.reply]++
		if !slices.Contains(w.allowedReplies(ports[1]), w.reply) {
			wrong[fmt.Sprintf("%s (between %s and %s)", w.reply, w.before, w.after)]++
		}
		if w.inPause() {
			inPause++
		}
	}
	assert.Empty(t, wrong, "all replies: %v", replies)
	assert.Positive(t, replies["OK"], "%v", replies)
	assert.Positive(t, replies["MOVED 5061 127.0.0.1:"+ports[1]], "%v", replies)
	// The pause lasts about the replication delay, so writes land inside it
	// and got TRYAGAIN (checked above) unless the machine stalled the writer
	// for that long.
	if inPause == 0 {
		t.Logf("no write was bracketed by the write pause, so TRYAGAIN went unchecked: %v", replies)
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

// failoverStates are the cluster_failover_state values of a master during a
// successful CLUSTERX FAILOVER, in order.
var failoverStates = []string{"none", "started", "check_slave", "pause_write", "wait_sync", "switching", "success"}

// writeReply is what SET bar gets from shard 0's master in a failover state.
func writeReply(state, replicaPort string) string {
	switch state {
	case "none", "started", "check_slave": // not blocked before pause_write
		return "OK"
	case "pause_write", "wait_sync", "switching":
		return "TRYAGAIN Failover in progress"
	case "success":
		return "MOVED 5061 127.0.0.1:" + replicaPort
	}
	return ""
}

// bracketedWrite is one SET sent between two CLUSTER INFO on the same
// connection. The server runs a connection's commands in order and the
// failover state only moves forward, so the SET ran in a state from before
// to after.
type bracketedWrite struct {
	before, reply, after string
}

// allowedReplies are the replies of the states the write may have run in,
// none if before and after are not known states in order.
func (w bracketedWrite) allowedReplies(replicaPort string) []string {
	from, to := slices.Index(failoverStates, w.before), slices.Index(failoverStates, w.after)
	if from < 0 || to < from {
		return nil
	}
	var allowed []string
	for _, state := range failoverStates[from : to+1] {
		if reply := writeReply(state, replicaPort); !slices.Contains(allowed, reply) {
			allowed = append(allowed, reply)
		}
	}
	return allowed
}

// inPause is true if the write certainly ran while writes were paused.
func (w bracketedWrite) inPause() bool {
	paused := func(state string) bool { return strings.HasPrefix(writeReply(state, ""), "TRYAGAIN") }
	return paused(w.before) && paused(w.after)
}

// writeThroughFailover sends CLUSTER INFO, SET bar v1, CLUSTER INFO through
// one redis-cli connected to the master at port, at most once per
// writeInterval and only once the previous batch was answered, until a batch
// starts after the failover ended or ctx ends. written counts the batches.
//
// A stalled machine can slow these writes but never burst them: a burst in
// the last replication delay of check_slave's sampling makes the lag look
// hopeless and fails the failover, as it would in Kvrocks.
func writeThroughFailover(ctx context.Context, redisCli, port string, written *atomic.Int32) ([]bracketedWrite, error) {
	const writeInterval = 10 * time.Millisecond
	const maxWrites = 5000 // 50 s at full speed
	cmd := exec.CommandContext(ctx, redisCli, "-p", port)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		stdin.Close() // redis-cli exits at the end of its input; ctx kills it otherwise
		_ = cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	ticker := time.NewTicker(writeInterval) // drops ticks while a batch is slow
	defer ticker.Stop()
	var writes []bracketedWrite
	for len(writes) < maxWrites {
		select {
		case <-ctx.Done():
			return writes, ctx.Err()
		case <-ticker.C:
		}
		if _, err := io.WriteString(stdin, "CLUSTER INFO\nSET bar v1\nCLUSTER INFO\n"); err != nil {
			return writes, fmt.Errorf("redis-cli stdin: %w (stderr %q)", err, stderr.String())
		}
		w, err := readBracketedWrite(lines)
		if err != nil {
			return writes, fmt.Errorf("redis-cli output: %w (stderr %q)", err, stderr.String())
		}
		writes = append(writes, w)
		written.Add(1)
		if w.before == "success" || w.before == "failed" {
			return writes, nil
		}
	}
	return writes, fmt.Errorf("the failover did not end within %d writes", maxWrites)
}

// readBracketedWrite reads redis-cli's output for one CLUSTER INFO, SET,
// CLUSTER INFO batch. Without a terminal redis-cli prints a bulk reply's
// lines as they are and a status or error on one line; blank lines separate
// some replies.
func readBracketedWrite(lines *bufio.Scanner) (bracketedWrite, error) {
	var w bracketedWrite
	var err error
	if w.before, err = readFailoverState(lines); err != nil {
		return w, err
	}
	if w.reply, err = nextLine(lines); err != nil {
		return w, err
	}
	if w.after, err = readFailoverState(lines); err != nil {
		return w, err
	}
	return w, nil
}

// readFailoverState reads a master's CLUSTER INFO, whose last field is
// cluster_failover_state.
func readFailoverState(lines *bufio.Scanner) (string, error) {
	for range 32 {
		line, err := nextLine(lines)
		if err != nil {
			return "", err
		}
		if state, ok := strings.CutPrefix(line, "cluster_failover_state:"); ok {
			return state, nil
		}
		if !strings.HasPrefix(line, "cluster_") {
			return "", fmt.Errorf("CLUSTER INFO: unexpected line %q", line)
		}
	}
	return "", errors.New("CLUSTER INFO without cluster_failover_state")
}

// nextLine is the next line that is not blank, without its CR.
func nextLine(lines *bufio.Scanner) (string, error) {
	for lines.Scan() {
		if line := strings.TrimSpace(lines.Text()); line != "" {
			return line, nil
		}
	}
	if err := lines.Err(); err != nil {
		return "", err
	}
	return "", io.ErrUnexpectedEOF
}
