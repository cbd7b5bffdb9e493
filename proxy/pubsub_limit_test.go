package proxy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loopbackPair returns both ends of a loopback TCP connection with kernel
// buffers of a known size (64 KiB, which Linux doubles; not under loopback's
// 64 KiB segments, where TCP crawls), so what one end does not read piles up
// in the writer rather than in the kernel. Both are closed when the test
// ends.
func loopbackPair(t *testing.T) (near, far *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = ln.Close() }()
	dialed := make(chan net.Conn, 1)
	go func() {
		c, _ := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		dialed <- c
	}()
	accepted, err := ln.Accept()
	require.NoError(t, err)
	d := <-dialed
	require.NotNil(t, d)
	near, far = accepted.(*net.TCPConn), d.(*net.TCPConn)
	for _, c := range []*net.TCPConn{near, far} {
		require.NoError(t, c.SetReadBuffer(64<<10))
		require.NoError(t, c.SetWriteBuffer(64<<10))
		t.Cleanup(func() { _ = c.Close() })
	}
	return near, far
}

// limitedSubscriber is a subscriber to channel "ch" over a backend
// connection the test writes to (node), writing to a client the test reads
// (client).
type limitedSubscriber struct {
	srv    *Server
	sub    *subscriber
	client net.Conn
	node   net.Conn
}

func startLimitedSubscriber(t *testing.T, edit func(*Config)) *limitedSubscriber {
	t.Helper()
	// A lost backend connection is dialled again to a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := ln.Addr().String()
	require.NoError(t, ln.Close())
	srv, _ := startProxy(t, &pubsubBackend{fakeCluster: newFakeCluster(1), masters: []string{refused}, owner: refused}, edit)
	clientNear, clientFar := loopbackPair(t)
	nodeNear, nodeFar := loopbackPair(t)
	sub := newSubscriber(context.Background(), srv, clientNear)
	// Closing the client's socket first ends a write nobody reads.
	t.Cleanup(func() {
		_ = clientNear.Close()
		sub.shutdown()
	})
	sub.mu.Lock()
	c := newSubConn(globalSubscriptions, newNodeConn(nodeNear.RemoteAddr().String(), nodeNear))
	c.channels["ch"] = struct{}{}
	sub.addConnLocked(c)
	sub.mu.Unlock()
	return &limitedSubscriber{srv: srv, sub: sub, client: clientFar, node: nodeFar}
}

// publish writes frames to the node's end from a goroutine (writing blocks
// while the proxy does not read) and returns a channel that gets the
// write's result; the test waits for it before it ends.
func (l *limitedSubscriber) publish(t *testing.T, frames []byte) <-chan error {
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := l.node.Write(frames)
		done <- err
	}()
	t.Cleanup(func() {
		_ = l.node.Close()
		wg.Wait()
	})
	return done
}

func (l *limitedSubscriber) state() (pending, peak int, paused, closed bool) {
	l.sub.mu.Lock()
	defer l.sub.mu.Unlock()
	return l.sub.pendingLocked(), l.sub.peak, !l.sub.pausedAt.IsZero(), l.sub.closed
}

// numbered is the i-th message of a test: size bytes, starting with i.
func numbered(i, size int) string { return fmt.Sprintf("%08d", i) + strings.Repeat("x", size-8) }

// messages returns the frames of the first n numbered messages on channel,
// and the size of one frame.
func messages(channel string, n, size int) (frames []byte, frameLen int) {
	for i := range n {
		frames = append(frames, messageFrame("message", channel, numbered(i, size))...)
	}
	return frames, len(frames) / n
}

// readSlowly reads want from conn in small pieces with a pause after each,
// checking every byte; it fails when a read brings nothing for 10 s.
func readSlowly(conn net.Conn, want []byte, piece int, pause time.Duration) error {
	buf := make([]byte, piece)
	for got := 0; got < len(want); {
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		n, err := conn.Read(buf[:min(piece, len(want)-got)])
		if !bytes.Equal(buf[:n], want[got:got+n]) {
			return fmt.Errorf("bytes %d to %d differ from what was published", got, got+n)
		}
		got += n
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", got, len(want), err)
		}
		time.Sleep(pause)
	}
	return nil
}

// A subscriber whose output reaches the limit is not dropped: the proxy
// stops reading its backend connection, holds no more than the limit and a
// message, and once the client reads, slowly, it gets every message.
func TestSubscriberAtItsLimitStopsReadingItsBackend(t *testing.T) {
	const limit = 16 << 10
	l := startLimitedSubscriber(t, func(c *Config) { c.PubSubOutputLimit = limit })
	// 2 MB: more than the limit and the kernel buffers of both connections.
	frames, frameLen := messages("ch", 4000, 500)
	published := l.publish(t, frames)

	require.Eventually(t, func() bool { _, _, paused, _ := l.state(); return paused },
		10*time.Second, time.Millisecond, "the subscriber reaches its limit")
	time.Sleep(100 * time.Millisecond) // time for a pump that kept reading to show it
	pending, peak, _, closed := l.state()
	assert.False(t, closed)
	assert.LessOrEqual(t, peak, limit+frameLen, "pending %d", pending)
	select {
	case err := <-published:
		t.Fatalf("the node wrote everything (%v) while the proxy held at most %d bytes: it was not held back", err, peak)
	default:
	}

	require.NoError(t, readSlowly(l.client, frames, 8<<10, 100*time.Microsecond))
	require.NoError(t, <-published)
	_, peak, paused, closed := l.state()
	assert.False(t, closed, "a subscriber that reads is never dropped")
	assert.False(t, paused)
	assert.LessOrEqual(t, peak, limit+frameLen)
	assert.Equal(t, int64(peak), l.srv.stats.pubsubPeakOutput.Load())
	assert.Positive(t, l.srv.stats.pubsubOutputLimitPauses.Load())
	assert.Zero(t, l.srv.stats.pubsubOutputLimitDisconnections.Load())
}

// A subscriber that reads nothing is kept while its output is under the
// limit, and disconnected once it has taken nothing for PubSubStallTimeout
// at the limit: counted and logged.
func TestSubscriberThatTakesNothingAtItsLimitIsDisconnected(t *testing.T) {
	const limit = 1 << 20
	const stall = 200 * time.Millisecond
	var logs bytes.Buffer
	var logsMu sync.Mutex
	l := startLimitedSubscriber(t, func(c *Config) {
		c.PubSubOutputLimit = limit
		c.PubSubStallTimeout = stall
		c.Logger = slog.New(slog.NewTextHandler(&lockedWriter{mu: &logsMu, w: &logs}, nil))
	})

	under, _ := messages("ch", 600, 1000) // more than the kernel buffers, less than the limit
	require.NoError(t, <-l.publish(t, under))
	require.Eventually(t, func() bool { pending, _, _, _ := l.state(); return pending > 0 },
		10*time.Second, time.Millisecond, "the writer is held up by the client")
	time.Sleep(5 * stall)
	_, _, paused, closed := l.state()
	assert.False(t, paused)
	assert.False(t, closed, "under its limit a subscriber that reads nothing is kept")

	over, _ := messages("ch", 2000, 1000)
	published := l.publish(t, over)
	require.Eventually(t, func() bool { _, _, _, closed := l.state(); return closed },
		10*time.Second, time.Millisecond, "disconnected at the limit")
	assert.Equal(t, int64(1), l.srv.stats.pubsubOutputLimitDisconnections.Load())
	assert.Equal(t, int64(1), l.srv.stats.pubsubOutputLimitPauses.Load())
	assert.Error(t, <-published, "the backend connection is closed with the subscriber")

	require.NoError(t, l.client.SetReadDeadline(time.Now().Add(10*time.Second)))
	var err error
	for err == nil {
		_, err = l.client.Read(make([]byte, 64<<10))
	}
	assert.False(t, isTimeout(err), "the client's connection is closed: %v", err)
	logsMu.Lock()
	defer logsMu.Unlock()
	assert.Contains(t, logs.String(), `level=WARN msg="pubsub: disconnecting a subscriber that reads nothing at its output limit"`)
	assert.Contains(t, logs.String(), "limit=1048576 stalled=200ms")
}

// The write deadline the subscriber's writer sets is gone once the client
// leaves subscriber mode: later replies are written as usual.
func TestWriteDeadlineEndsWithSubscriberMode(t *testing.T) {
	node := startPubSubNode(t)
	_, addr := startProxy(t, newPubSubBackend(node), func(c *Config) { c.PubSubStallTimeout = 10 * time.Millisecond })
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	require.Equal(t, subscribeFrame("subscribe", "a", 1), c.do("SUBSCRIBE", "a"))
	require.Equal(t, subscribeFrame("unsubscribe", "a", 0), c.do("UNSUBSCRIBE", "a"))
	time.Sleep(50 * time.Millisecond) // past the deadline of the last write
	assert.Equal(t, "+PONG\r\n", c.do("PING"))
	assert.Equal(t, "+OK\r\n", c.do("SET", "k", "v"))
}

func TestPubSubLimitsInInfo(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(1), func(c *Config) { c.PubSubOutputLimit = 12345 })
	c := dialResp(t, addr)
	assert.Equal(t, "12345", infoField(t, c, "pubsub_output_limit"))
	assert.Equal(t, "0", infoField(t, c, "pubsub_peak_output_bytes"))
	assert.Equal(t, "0", infoField(t, c, "pubsub_output_limit_pauses"))
	assert.Equal(t, "0", infoField(t, c, "pubsub_output_limit_disconnections"))
}
