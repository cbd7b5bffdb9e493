package proxy

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A client that pipelines without waiting gets its replies in order even
// when its next batch arrives while the previous one is still answered.
func TestAsyncBatchesOfOneClientStayInOrder(t *testing.T) {
	backend := newFakeCluster(3)
	backend.hold = make(chan struct{})
	_, addr := startProxy(t, backend, nil)
	c := dialResp(t, addr)

	const n = 40
	var first, second strings.Builder
	for i := range n {
		first.WriteString(encodeCommand("SET", "key:"+strconv.Itoa(i), strconv.Itoa(i)))
		second.WriteString(encodeCommand("GET", "key:"+strconv.Itoa(i)))
	}
	c.send(first.String())
	select {
	case <-backend.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first batch never reached the backend")
	}
	// The second batch arrives while the first is held in the backend.
	c.send(encodeCommand("PING") + second.String())
	time.Sleep(20 * time.Millisecond)
	close(backend.hold)

	for i := range n {
		require.Equal(t, "+OK\r\n", c.read(), "reply %d of the first batch", i)
	}
	require.Equal(t, "+PONG\r\n", c.read())
	for i := range n {
		v := strconv.Itoa(i)
		require.Equal(t, "$"+strconv.Itoa(len(v))+"\r\n"+v+"\r\n", c.read(), "reply %d of the second batch", i)
	}
}

// Replies too large for a backend reader to write, and replies a client
// does not read for a while, reach the client whole and in order.
func TestAsyncLargeAndLateReadRepliesArriveWhole(t *testing.T) {
	backend := newFakeCluster(2)
	_, addr := startProxy(t, backend, nil)
	c := dialResp(t, addr)
	small := strings.Repeat("s", 30<<10) // under the async reply cap
	big := strings.Repeat("b", 300<<10)  // over it
	require.Equal(t, "+OK\r\n", c.do("SET", "small", small))
	require.Equal(t, "+OK\r\n", c.do("SET", "big", big))

	// Many batches, sent as fast as possible and read only afterwards, fill
	// the socket buffers so some writes cannot complete at once.
	const batches = 120
	for i := range batches {
		key := "small"
		if i%10 == 0 {
			key = "big"
		}
		c.send(encodeCommand("GET", key) + encodeCommand("ECHO", strconv.Itoa(i)))
	}
	time.Sleep(100 * time.Millisecond)
	for i := range batches {
		want := small
		if i%10 == 0 {
			want = big
		}
		wantReply := "$" + strconv.Itoa(len(want)) + "\r\n" + want + "\r\n"
		got := c.read()
		require.Len(t, got, len(wantReply), "batch %d", i)
		require.True(t, got == wantReply, "batch %d: wrong bytes", i)
		i := strconv.Itoa(i)
		require.Equal(t, "$"+strconv.Itoa(len(i))+"\r\n"+i+"\r\n", c.read())
	}
}

// The synchronous path (a backend without Start) and the asynchronous one
// answer a mixed pipeline identically.
func TestAsyncAndSyncPathsAnswerAlike(t *testing.T) {
	pipeline := encodeCommand("SET", "a", "1") + encodeCommand("PING") + encodeCommand("MSET", "a", "2", "b", "3", "c", "4") +
		encodeCommand("MGET", "a", "b", "c", "d") + encodeCommand("ECHO", "x") + encodeCommand("DEL", "a", "b", "zz") +
		encodeCommand("GET", "c") + encodeCommand("NOSUCHCOMMAND")
	const replies = 8
	answer := func(backend Backend) []string {
		_, addr := startProxy(t, backend, nil)
		c := dialResp(t, addr)
		c.send(pipeline)
		var got []string
		for range replies {
			got = append(got, c.read())
		}
		return got
	}
	async := answer(newFakeCluster(3))
	sync := answer(syncBackend{newFakeCluster(3)})
	assert.Equal(t, sync, async)
	assert.Equal(t, "*4\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n$-1\r\n", async[3])
}

// A client that hangs up while its request is held (in a failover) has the
// request dropped unsent: its context ends, it is never executed.
func TestHeldRequestOfAClientThatHungUpIsDropped(t *testing.T) {
	backend := newFakeCluster(2)
	backend.hold = make(chan struct{})
	_, addr := startProxy(t, backend, nil)
	c := dialResp(t, addr)
	c.send(encodeCommand("SET", "k", "v"))
	select {
	case <-backend.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the backend")
	}
	require.NoError(t, c.conn.Close())
	require.Eventually(t, func() bool { return backend.cancelled.Load() == 1 }, 5*time.Second, time.Millisecond,
		"the hang-up ends the request's context")
	close(backend.hold)
	assert.Empty(t, backend.callLog(), "the held request was not executed")
}

// A batch small enough for the event loop whose parts, once split by slot,
// outgrow 64 KB is still answered asynchronously: held
// by its backend, it must not stop the loop serving the loop's other
// clients.
func TestSplitBatchLargerThanItsInputDoesNotBlockTheLoop(t *testing.T) {
	if !eventLoopsSupported {
		t.Skip("no event loops on this platform")
	}
	backend := newFakeCluster(3)
	backend.hold = make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(backend.hold)
		}
	}
	_, addr := startProxy(t, backend, func(cfg *Config) { cfg.EventLoops = 1 })
	t.Cleanup(release) // before the proxy closes: cleanups run last first
	bystander, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = bystander.Close() })
	ping := func() (string, error) {
		if err := bystander.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return "", err
		}
		if _, err := bystander.Write([]byte(encodeCommand("PING"))); err != nil {
			return "", err
		}
		reply := make([]byte, len("+PONG\r\n"))
		_, err := io.ReadFull(bystander, reply)
		return string(reply), err
	}
	got, err := ping()
	require.NoError(t, err, "served before the hold")
	require.Equal(t, "+PONG\r\n", got)

	// 5,000 keys of most distinct slots: 55 KB as sent, over twice that as
	// one DEL per slot.
	args := []string{"DEL"}
	for i := range 5000 {
		args = append(args, "k"+strconv.Itoa(10000+i))
	}
	request := encodeCommand(args...)
	require.Less(t, len(request), maxAsyncCommandBytes)
	splitter := dialResp(t, addr)
	splitter.send(request)
	select {
	case <-backend.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the DEL never reached the backend")
	}

	got, err = ping()
	require.NoError(t, err, "the loop stopped serving while the split DEL was held")
	require.Equal(t, "+PONG\r\n", got)
	release()
	require.Equal(t, ":0\r\n", splitter.read())
}
