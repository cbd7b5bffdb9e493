//go:build unix

package rawio

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s := <-accepted
	require.NotNil(t, s)
	t.Cleanup(func() {
		_ = c.Close()
		_ = s.Close()
	})
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func rawOf(t *testing.T, c *net.TCPConn) *Conn {
	t.Helper()
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	return NewConn(raw)
}

func TestReadWriteThroughThePoller(t *testing.T) {
	a, b := tcpPair(t)
	ra, rb := rawOf(t, a), rawOf(t, b)

	// Nothing to read yet: TryRead says EAGAIN instead of waiting.
	_, err := rb.TryRead(make([]byte, 8))
	assert.Equal(t, syscall.EAGAIN, err)

	// Read waits for data written later.
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := rb.Read(buf)
		assert.NoError(t, err)
		got <- string(buf[:n])
	}()
	time.Sleep(10 * time.Millisecond)
	n, err := ra.Write([]byte("hello"))
	require.NoError(t, err)
	require.Equal(t, 5, n)
	select {
	case s := <-got:
		assert.Equal(t, "hello", s)
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom did not return")
	}

	// A write larger than the socket buffers completes once the peer reads.
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i)
	}
	// TryWrite takes what fits and returns.
	n, err = ra.TryWrite(big)
	require.NoError(t, err)
	require.Positive(t, n)
	require.Less(t, n, len(big), "8 MiB do not fit in loopback socket buffers")
	done := make(chan error, 1)
	go func() {
		_, err := ra.Write(big[n:])
		done <- err
	}()
	received := make([]byte, 0, len(big))
	buf := make([]byte, 1<<16)
	for len(received) < len(big) {
		n, err := rb.Read(buf)
		require.NoError(t, err)
		received = append(received, buf[:n]...)
	}
	require.NoError(t, <-done)
	assert.Equal(t, big, received)

	// End of stream.
	require.NoError(t, a.Close())
	_, err = rb.Read(buf)
	assert.ErrorIs(t, err, io.EOF)
}

func TestReadFromHonoursDeadlines(t *testing.T) {
	_, b := tcpPair(t)
	require.NoError(t, b.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err := rawOf(t, b).Read(make([]byte, 8))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
}

func TestCallsDoNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocations are counted without -short: the race tier's detector allocates")
	}
	a, b := tcpPair(t)
	ra, rb := rawOf(t, a), rawOf(t, b)
	msg, buf := []byte("ping"), make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = ra.Write(msg)
		_, _ = rb.Read(buf)
		_, _ = rb.TryRead(buf)
	})
	assert.Zero(t, allocs)
}
