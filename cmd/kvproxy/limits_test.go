package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
)

// proxyProcess is a kvproxy binary running for a test.
type proxyProcess struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	exited chan error
}

// startBinary runs bin with args under an open file limit of nofile (0:
// the test's own) and waits until it serves. It is killed when the test
// ends. As root the limit is made to stick by dropping CAP_SYS_RESOURCE
// (setpriv), else kvproxy would raise it as Redis does.
func startBinary(t *testing.T, bin string, nofile int, args ...string) *proxyProcess {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t))
	argv := append([]string{bin, "--listen", addr}, args...)
	if nofile > 0 {
		argv = append([]string{"sh", "-c", `ulimit -n ` + strconv.Itoa(nofile) + ` && exec "$0" "$@"`}, argv...)
		if os.Geteuid() == 0 {
			setpriv, err := exec.LookPath("setpriv")
			require.NoError(t, err, "setpriv (util-linux) keeps a root kvproxy from raising its open file limit")
			argv = append([]string{setpriv, "--inh-caps=-sys_resource", "--bounding-set=-sys_resource"}, argv...)
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = childProcAttr()
	cmd.Env = append(os.Environ(), "KVPROXY_SEEDS=", "KVPROXY_DEMO=")
	p := &proxyProcess{cmd: cmd, addr: addr, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if p.running() {
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("kvproxy stderr:\n%s", p.stderr.String())
		}
	})
	require.Eventually(t, func() bool { return !p.running() || strings.Contains(p.stderr.String(), `msg="kvproxy serving"`) },
		30*time.Second, 10*time.Millisecond)
	require.True(t, p.running(), "kvproxy exited before serving: %s", p.stderr.String())
	return p
}

// running reports whether the process has not exited; once it has, the
// exit stays readable through exited.
func (p *proxyProcess) running() bool {
	select {
	case err := <-p.exited:
		p.exited <- err
		return false
	default:
		return true
	}
}

// rawClient is a client connection read a line at a time: every reply the
// tests here need is one line.
type rawClient struct {
	conn net.Conn
	rd   *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &rawClient{conn: conn, rd: bufio.NewReader(conn)}
}

// do sends an inline command and returns the first line of the reply.
func (c *rawClient) do(t *testing.T, command string) string {
	t.Helper()
	require.NoError(t, c.conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := c.conn.Write([]byte(command + "\r\n"))
	require.NoError(t, err)
	return c.line(t)
}

func (c *rawClient) line(t *testing.T) string {
	t.Helper()
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	line, err := c.rd.ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSuffix(line, "\r\n")
}

// lineUnless waits for a reply line until stop reports true; accepted is
// false when stop came first.
func (c *rawClient) lineUnless(t *testing.T, stop func() bool) (line string, accepted bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		line, err := c.rd.ReadString('\n')
		if err == nil {
			return strings.TrimSuffix(line, "\r\n"), true
		}
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "reading a reply: %v", err)
		if stop() {
			return "", false
		}
	}
	t.Fatal("no reply within 10s")
	return "", false
}

// info returns one INFO field.
func (c *rawClient) info(t *testing.T, field string) string {
	t.Helper()
	header := c.do(t, "INFO")
	require.True(t, strings.HasPrefix(header, "$"), header)
	size, err := strconv.Atoi(header[1:])
	require.NoError(t, err)
	body := make([]byte, size+2)
	_, err = io.ReadFull(c.rd, body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + field + `:(.*)\r$`).FindSubmatch(body)
	require.NotNil(t, m, "INFO has no %s", field)
	return string(m[1])
}

func startSim(t *testing.T) []string {
	t.Helper()
	sim, err := kvsim.StartCluster(kvsim.DefaultClusterConfig())
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	var seeds []string
	for _, n := range sim.Masters() {
		seeds = append(seeds, n.Addr())
	}
	return seeds
}

// Under an open file limit far below --max-clients, kvproxy lowers its
// client limit with one warning; the clients past it get Redis' error and
// are closed, the connected ones keep working, and the process serves on.
func TestLowOpenFileLimitLowersMaxClients(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	seeds := startSim(t)
	bin := kvproxyBuild.Binary(t)
	p := startBinary(t, bin, 256, "--seeds", strings.Join(seeds, ","), "--max-clients", "1000", "--max-blocking-conns", "50")

	warnings := regexp.MustCompile(`level=WARN msg="open file limit too low for --max-clients.*open_file_limit=256 .* max_clients=(\d+) max_blocking_conns=(\d+)`).
		FindAllStringSubmatch(p.stderr.String(), -1)
	require.Len(t, warnings, 1, "one warning line: %s", p.stderr.String())
	maxClients, _ := strconv.Atoi(warnings[0][1])
	require.Greater(t, maxClients, 50)
	require.Less(t, maxClients, 256)

	first := dialRaw(t, p.addr)
	assert.Equal(t, strconv.Itoa(maxClients), first.info(t, "maxclients"))
	clients := []*rawClient{first}
	for len(clients) < maxClients {
		c := dialRaw(t, p.addr)
		require.Equal(t, "+PONG", c.do(t, "PING"), "client %d", len(clients)+1)
		clients = append(clients, c)
	}
	const excess = 30
	for i := range excess {
		c := dialRaw(t, p.addr)
		require.Equal(t, "-ERR max number of clients reached", c.line(t), "excess client %d", i)
		_, err := c.rd.ReadByte()
		require.Error(t, err, "the excess client's connection is closed")
	}
	for i, c := range clients {
		key := fmt.Sprintf("k%d", i)
		require.Equal(t, "+OK", c.do(t, "SET "+key+" v"), "client %d", i)
		require.Equal(t, "$1", c.do(t, "GET "+key))
		require.Equal(t, "v", c.line(t))
	}
	assert.Equal(t, strconv.Itoa(excess), first.info(t, "rejected_connections"))
	assert.True(t, p.running(), "kvproxy still runs")
	assert.NotContains(t, p.stderr.String(), "serving stopped")
}

// When the limit leaves nothing for clients, kvproxy refuses to start with
// one line saying what to raise.
func TestOpenFileLimitWithoutRoomForClientsRefusesToStart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	seeds := startSim(t)
	bin := kvproxyBuild.Binary(t)
	addr := "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t))
	argv := []string{"sh", "-c", `ulimit -n 64 && exec "$0" "$@"`, bin, "--listen", addr, "--seeds", strings.Join(seeds, ","), "--backend-conns", "8"}
	if os.Geteuid() == 0 {
		argv = append([]string{"setpriv", "--inh-caps=-sys_resource", "--bounding-set=-sys_resource"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = childProcAttr()
	cmd.Env = append(os.Environ(), "KVPROXY_SEEDS=", "KVPROXY_DEMO=")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "stderr: %s", stderr.String())
	assert.Equal(t, exitStartup, exitErr.ExitCode())
	lines := regexp.MustCompile(`(?m)^kvproxy: .*$`).FindAllString(stderr.String(), -1)
	require.Len(t, lines, 1, stderr.String())
	assert.Regexp(t, `^kvproxy: the open file limit \(64\) leaves no descriptor for clients after the \d+ kvproxy reserves for 6 cluster nodes x \(--backend-conns 8 \+ 7\): raise it to \d+`, lines[0])
}

// Subscriptions take a cluster connection each beyond the clients' own:
// enough of them exhaust the descriptors for real. Their dials then fail
// with an error to that client, accepting pauses (logged once), the
// connected clients are served, and once descriptors are free again the
// client waiting in the backlog is accepted.
func TestDescriptorExhaustionPausesAcceptingAndServingGoesOn(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	seeds := startSim(t)
	bin := kvproxyBuild.Binary(t)
	p := startBinary(t, bin, 256, "--seeds", strings.Join(seeds, ","), "--max-clients", "1000", "--max-blocking-conns", "50")
	bystander := dialRaw(t, p.addr)
	require.Equal(t, "+PONG", bystander.do(t, "PING"))

	// Subscribe until the descriptors run out: a subscription finds none
	// for its cluster connection, or a client none to be accepted with.
	const pausedLine, resumedLine = `msg="cannot accept client connections`, `msg="accepting client connections again"`
	acceptPaused := func() bool {
		logs := p.stderr.String()
		return strings.Count(logs, pausedLine) > strings.Count(logs, resumedLine)
	}
	var subscribers []*rawClient
	var waiting *rawClient // sent its command, not accepted yet
	for i := 0; waiting == nil; i++ {
		require.Less(t, i, 200, "the subscriptions never ran out of descriptors")
		c := dialRaw(t, p.addr)
		require.NoError(t, c.conn.SetWriteDeadline(time.Now().Add(5*time.Second)))
		_, err := fmt.Fprintf(c.conn, "SUBSCRIBE ch%d\r\n", i)
		require.NoError(t, err)
		reply, accepted := c.lineUnless(t, acceptPaused)
		switch {
		case !accepted:
			waiting = c
			t.Logf("client %d waits to be accepted", i+1)
		case strings.HasPrefix(reply, "-"):
			t.Logf("subscription %d refused: %s", i+1, reply)
			subscribers = append(subscribers, c)
			waiting = dialRaw(t, p.addr)
			require.NoError(t, waiting.conn.SetWriteDeadline(time.Now().Add(5*time.Second)))
			_, err = waiting.conn.Write([]byte("SUBSCRIBE late\r\n"))
			require.NoError(t, err)
		default:
			require.Equal(t, "*3", reply)
			subscribers = append(subscribers, c)
		}
	}
	require.Eventually(t, acceptPaused, 10*time.Second, 10*time.Millisecond, "accepting pauses")
	assert.Equal(t, "+PONG", bystander.do(t, "PING"), "connected clients are served while accepting pauses")

	for _, c := range subscribers {
		_ = c.conn.Close()
	}
	assert.Equal(t, "*3", waiting.line(t), "accepted once descriptors were free")
	// A burst ends at the next accepted client. Linux's accept takes a free
	// descriptor before it looks for a pending connection, so the loop may
	// have begun another burst with nobody waiting: one more client ends it.
	assert.Equal(t, "+PONG", dialRaw(t, p.addr).do(t, "PING"))
	assert.Eventually(t, func() bool { return !acceptPaused() }, 5*time.Second, 10*time.Millisecond, "the end of the burst is logged")
	logs := p.stderr.String()
	assert.Regexp(t, resumedLine+` component=proxy failed_accepts=\d+`, logs)
	t.Logf("%d burst(s) of failed accepts, each logged when it began and when it ended", strings.Count(logs, resumedLine))
	assert.True(t, p.running(), "kvproxy still runs")
}

// Without --procs the binary runs on half the processors (at least one),
// with it on as many as it says; the serving line tells which.
func TestProcsSetsTheProcessors(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set: it is what the binary would run on")
	}
	seeds := strings.Join(startSim(t), ",")
	bin := kvproxyBuild.Binary(t)
	procs := regexp.MustCompile(`msg="kvproxy serving" .* procs=(\d+) `)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, defaultProcs(runtime.GOMAXPROCS(0))},
		{[]string{"--procs", "3"}, 3},
	} {
		p := startBinary(t, bin, 0, append([]string{"--seeds", seeds}, tc.args...)...)
		m := procs.FindStringSubmatch(p.stderr.String())
		require.NotNil(t, m, "serving line with procs: %s", p.stderr.String())
		assert.Equal(t, strconv.Itoa(tc.want), m[1], "with %q", tc.args)
	}
}
