package proxy

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
)

// publishThrough publishes the first n numbered messages of size bytes on
// channel through c, in pipelines of 200, and counts the replies.
func publishThrough(t *testing.T, c *respConn, channel string, n, size int) map[string]int {
	t.Helper()
	replies := make(map[string]int)
	for start := 0; start < n; start += 200 {
		end := min(n, start+200)
		var raw strings.Builder
		for i := start; i < end; i++ {
			raw.WriteString(encodeCommand("PUBLISH", channel, numbered(i, size)))
		}
		c.send(raw.String())
		for range end - start {
			replies[c.read()]++
		}
	}
	return replies
}

// unbuffered returns c's socket once c holds nothing read ahead, with a
// 64 KiB receive buffer, for reading a stream of messages at its own pace.
func unbuffered(t *testing.T, c *respConn) net.Conn {
	t.Helper()
	require.Empty(t, c.buf)
	require.Zero(t, c.rd.Buffered())
	require.NoError(t, c.conn.(*net.TCPConn).SetReadBuffer(64<<10))
	return c.conn
}

// readInBackground runs readSlowly once start is closed and
// sends its result; the test's end stops it.
func readInBackground(t *testing.T, conn net.Conn, want []byte, piece int, pause time.Duration, start <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	stop, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-start:
		case <-stop:
			return
		}
		done <- readSlowly(conn, want, piece, pause)
	}()
	t.Cleanup(func() {
		close(stop)
		_ = conn.Close()
		<-finished
	})
	return done
}

// now is a start that has come.
var now = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func within(t *testing.T, done <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("not done within %v", d)
		return nil
	}
}

// pubsubOutputMemory returns the largest output buffer (omem) the node
// holds for a subscribed connection.
func pubsubOutputMemory(t *testing.T, node *cluster.Node) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := node.Client().ClientList(ctx).Result()
	require.NoError(t, err)
	largest := 0
	omem := regexp.MustCompile(` omem=(\d+)`)
	for _, line := range strings.Split(list, "\n") {
		if m := omem.FindStringSubmatch(line); m != nil && !strings.Contains(line, " sub=0 psub=0") {
			n, _ := strconv.Atoi(m[1])
			largest = max(largest, n)
		}
	}
	return largest
}

func infoInt(t *testing.T, c *respConn, field string) int {
	t.Helper()
	n, err := strconv.Atoi(infoField(t, c, field))
	require.NoError(t, err)
	return n
}

// Redis Cluster behind the proxy, with subscribers that read slowly, not
// at all, or so late that the backend drops the proxy's subscription.
func TestPubSubOutputLimitOnRealCluster(t *testing.T) {
	const limit = 256 << 10
	// The backend keeps everything for a subscriber, so none of its
	// messages is lost unless a subtest says otherwise.
	cp := startClusterProxyWith(t, cluster.Options{Masters: 1, ExtraConfig: []string{"client-output-buffer-limit pubsub 0 0 0"}},
		func(c *Config) { c.PubSubOutputLimit = limit })
	requireNoSubscriberLeft(t)
	master := cp.cluster.Masters()[0]
	// 11 MB: past the limit and what the kernel buffers of both hops hold.
	const n, size = 40000, 256

	t.Run("a slow subscriber gets every message, the proxy holding at most the limit", func(t *testing.T) {
		slow, fast, pub, other := dialResp(t, cp.addr), dialResp(t, cp.addr), dialResp(t, cp.addr), dialResp(t, cp.addr)
		require.Equal(t, subscribeFrame("subscribe", "slow", 1), slow.do("SUBSCRIBE", "slow"))
		require.Equal(t, subscribeFrame("subscribe", "slow", 1), fast.do("SUBSCRIBE", "slow"))
		want, frameLen := messages("slow", n, size)
		fastDone := readInBackground(t, unbuffered(t, fast), want, 64<<10, 0, now)
		start := make(chan struct{})
		slowDone := readInBackground(t, unbuffered(t, slow), want, 8<<10, time.Millisecond, start)

		// The slow subscriber reads nothing until everything is published.
		assert.Equal(t, map[string]int{":2\r\n": n}, publishThrough(t, pub, "slow", n, size),
			"every message reached both subscriptions")
		require.NoError(t, within(t, fastDone, time.Minute), "the other subscriber is not held back")
		assert.Equal(t, "+OK\r\n", other.do("SET", "k", "v"))
		assert.Equal(t, "$1\r\nv\r\n", other.do("GET", "k"))
		assert.Positive(t, infoInt(t, other, "pubsub_output_limit_pauses"), "the slow subscriber reached its limit")
		t.Logf("held for the slow subscriber: the proxy at most %d bytes, the master %d bytes (omem)",
			infoInt(t, other, "pubsub_peak_output_bytes"), pubsubOutputMemory(t, master))

		close(start)
		require.NoError(t, within(t, slowDone, 2*time.Minute), "the slow subscriber gets every message, in order")
		assert.Equal(t, pongFrame, slow.do("PING"), "still subscribed")
		assert.Zero(t, infoInt(t, other, "pubsub_output_limit_disconnections"))
		assert.LessOrEqual(t, infoInt(t, other, "pubsub_peak_output_bytes"), limit+frameLen)
	})

	t.Run("a subscriber that reads nothing is disconnected, the others are served", func(t *testing.T) {
		_, addr := startProxy(t, cp.router, func(c *Config) {
			c.PubSubOutputLimit = limit
			c.PubSubStallTimeout = 2 * time.Second
		})
		stuck, reader, pub := dialResp(t, addr), dialResp(t, addr), dialResp(t, addr)
		require.Equal(t, subscribeFrame("subscribe", "stuck", 1), stuck.do("SUBSCRIBE", "stuck"))
		require.Equal(t, subscribeFrame("subscribe", "stuck", 1), reader.do("SUBSCRIBE", "stuck"))
		stuckConn := unbuffered(t, stuck)
		want, _ := messages("stuck", n, size)
		readerDone := readInBackground(t, unbuffered(t, reader), want, 64<<10, 0, now)

		replies := publishThrough(t, pub, "stuck", n, size)
		assert.Equal(t, n, replies[":2\r\n"]+replies[":1\r\n"], "answered with 2 subscribers, then 1: %v", replies)
		require.NoError(t, within(t, readerDone, time.Minute))
		require.Eventually(t, func() bool { return infoField(t, pub, "pubsub_output_limit_disconnections") == "1" },
			30*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { return numSub(master, "stuck", false) == 1 },
			10*time.Second, 10*time.Millisecond, "the stuck subscriber's backend connection is closed")

		require.NoError(t, stuckConn.SetReadDeadline(time.Now().Add(10*time.Second)))
		var err error
		for err == nil {
			_, err = stuckConn.Read(make([]byte, 64<<10))
		}
		assert.False(t, isTimeout(err), "the stuck subscriber's connection is closed: %v", err)
		assert.Equal(t, ":1\r\n", pub.do("PUBLISH", "stuck", "after"))
	})

	t.Run("a subscription the backend drops for its own limit is restored", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, master.Client().ConfigSet(ctx, "client-output-buffer-limit", "pubsub 1mb 0 0").Err())
		t.Cleanup(func() {
			assert.NoError(t, master.Client().ConfigSet(context.Background(), "client-output-buffer-limit", "pubsub 0 0 0").Err())
		})
		sub, pub := dialResp(t, cp.addr), dialResp(t, cp.addr)
		require.Equal(t, subscribeFrame("subscribe", "dropped", 1), sub.do("SUBSCRIBE", "dropped"))
		unbuffered(t, sub)
		disconnectedBefore := infoInt(t, pub, "pubsub_output_limit_disconnections")

		// 20 MB published on the master while the subscriber reads nothing:
		// the master's buffer for the proxy's connection passes 1 MB.
		const burst, big = 2000, 10 << 10
		for start := 0; start < burst; start += 100 {
			pipe := master.Client().Pipeline()
			for i := start; i < start+100; i++ {
				pipe.Publish(ctx, "dropped", numbered(i, big))
			}
			_, err := pipe.Exec(ctx)
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool { return numSub(master, "dropped", false) == 0 },
			30*time.Second, 10*time.Millisecond, "the master dropped the proxy's subscription")

		// The client reads everything, checking that what arrives is the
		// start of the burst, in order, until the marker sent once the
		// proxy has subscribed again.
		marker := messageFrame("message", "dropped", "marker")
		type result struct {
			received int
			err      error
		}
		read := make(chan result, 1)
		go func() {
			received := 0
			for {
				frame, err := sub.tryRead()
				switch {
				case err != nil:
					read <- result{received, err}
					return
				case frame == marker:
					read <- result{received, nil}
					return
				case frame != messageFrame("message", "dropped", numbered(received, big)):
					read <- result{received, fmt.Errorf("message %d is %.60q", received, frame)}
					return
				}
				received++
			}
		}()
		require.Eventually(t, func() bool { return numSub(master, "dropped", false) == 1 },
			30*time.Second, 10*time.Millisecond, "the proxy subscribed again once the client read")
		assert.Equal(t, ":1\r\n", pub.do("PUBLISH", "dropped", "marker"))
		got := <-read // tryRead gives up after 5 s without a frame
		require.NoError(t, got.err)
		received := got.received
		t.Logf("%d of %d messages arrived, the rest were dropped by the master", received, burst)
		assert.Positive(t, received)
		assert.Less(t, received, burst, "the master dropped some")
		assert.Equal(t, pongFrame, sub.do("PING"), "still subscribed")
		assert.Equal(t, disconnectedBefore, infoInt(t, pub, "pubsub_output_limit_disconnections"), "the proxy dropped no one")
	})
}
