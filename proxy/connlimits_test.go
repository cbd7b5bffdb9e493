package proxy

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logRecorder collects a Server's log lines.
type logRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *logRecorder) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{mu: &r.mu, w: &r.buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the lines that contain substr.
func (r *logRecorder) lines(substr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for line := range strings.Lines(r.buf.String()) {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// infoField reads one field of INFO through c.
func infoField(t *testing.T, c *respConn, field string) string {
	t.Helper()
	m := regexp.MustCompile(`\r\n` + field + `:([^\r]*)\r\n`).FindStringSubmatch(c.do("INFO"))
	require.NotNil(t, m, "INFO has no %s", field)
	return m[1]
}

// Past MaxClients a client gets Redis' error and is closed; the connected
// ones are served on, and once one leaves a new client is taken again.
func TestMaxClientsTurnsAwayTheNextClient(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(1), func(c *Config) { c.MaxClients = 2 })
	first, second := dialResp(t, addr), dialResp(t, addr)
	assert.Equal(t, "+PONG\r\n", first.do("PING"))
	assert.Equal(t, "+PONG\r\n", second.do("PING"))

	third := dialResp(t, addr)
	assert.Equal(t, "-ERR max number of clients reached\r\n", third.read())
	assert.True(t, third.closedByPeer())

	assert.Equal(t, "+OK\r\n", first.do("SET", "k", "v"))
	assert.Equal(t, "$1\r\nv\r\n", second.do("GET", "k"))
	assert.Equal(t, "1", infoField(t, first, "rejected_connections"))
	assert.Equal(t, "2", infoField(t, first, "maxclients"))
	assert.Equal(t, "2", infoField(t, first, "connected_clients"))

	require.NoError(t, second.conn.Close())
	require.Eventually(t, func() bool { return infoField(t, first, "connected_clients") == "1" }, 5*time.Second, 5*time.Millisecond)
	fourth := dialResp(t, addr)
	assert.Equal(t, "+PONG\r\n", fourth.do("PING"))
}

// failingListener fails its next failures accepts with EMFILE, as a process
// out of descriptors sees, recording when the burst began and when the
// first accept after it was made.
type failingListener struct {
	net.Listener
	failures atomic.Int32
	mu       sync.Mutex
	failed   int
	firstAt  time.Time
	resumeAt time.Time
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		l.mu.Lock()
		if l.failed == 0 {
			l.firstAt = time.Now()
		}
		l.failed++
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	l.failures.Store(-1)
	l.mu.Lock()
	if l.failed > 0 && l.resumeAt.IsZero() {
		l.resumeAt = time.Now()
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// An accept that fails (EMFILE) does not end Serve: it pauses, with growing
// pauses, logs the burst once when it starts and once when it ends, and the
// clients already connected are served meanwhile.
func TestAcceptErrorsPauseAndServingGoesOn(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := &failingListener{Listener: inner}
	var logs logRecorder
	_, addr := startProxyOn(t, ln, newFakeCluster(1), func(c *Config) { c.Logger = logs.logger() })

	connected := dialResp(t, addr)
	assert.Equal(t, "+PONG\r\n", connected.do("PING"))
	// Serve waits in the next Accept already: the failures begin after
	// the one that takes the next client.
	const failures = 6
	ln.failures.Store(failures)
	trigger := dialResp(t, addr)
	assert.Equal(t, "+PONG\r\n", trigger.do("PING"))

	late := dialResp(t, addr) // waits in the backlog through the burst
	for range 5 {
		assert.Equal(t, "+PONG\r\n", connected.do("PING"), "connected clients are served during the burst")
	}
	assert.Equal(t, "+PONG\r\n", late.do("PING"), "accepting resumes after the burst")

	ln.mu.Lock()
	failed, paused := ln.failed, ln.resumeAt.Sub(ln.firstAt)
	ln.mu.Unlock()
	assert.Equal(t, failures, failed)
	// Pauses of 5, 10, 20, 40, 80 and 160 ms: a retry without them would
	// take microseconds.
	assert.GreaterOrEqual(t, paused, 315*time.Millisecond, "Serve pauses between failed accepts")

	warn := logs.lines("cannot accept client connections")
	require.Len(t, warn, 1, "one line when the burst starts")
	assert.Contains(t, warn[0], "too many open files")
	again := logs.lines("accepting client connections again")
	require.Len(t, again, 1, "one line when it ends")
	assert.Contains(t, again[0], "failed_accepts=6")
}

// Only a closed listener ends Serve.
func TestServeEndsWhenItsListenerIsClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := DefaultConfig()
	srv, err := New(cfg, newFakeCluster(1))
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	require.NoError(t, ln.Close())
	select {
	case err := <-served:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return once its listener was closed")
	}
}
