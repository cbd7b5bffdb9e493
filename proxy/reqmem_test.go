package proxy

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hugeKey is key i of the huge requests: spread over every slot.
func hugeKey(i int) []byte { return []byte("key:" + strconv.Itoa(i)) }

// hugeClient sends one request and reads its reply frame by frame without
// buffering it whole, so the test's own allocations stay small.
type hugeClient struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
}

func dialHuge(t *testing.T, addr string) *hugeClient {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &hugeClient{t: t, conn: conn, rd: bufio.NewReaderSize(conn, 64<<10)}
}

func (c *hugeClient) send(raw []byte) {
	require.NoError(c.t, c.conn.SetDeadline(time.Now().Add(2*time.Minute)))
	_, err := c.conn.Write(raw)
	require.NoError(c.t, err)
}

// line reads one reply line without its CRLF.
func (c *hugeClient) line() string {
	line, err := c.rd.ReadSlice('\n')
	require.NoError(c.t, err)
	return string(line[:len(line)-2])
}

// arrayOfBulks reads an array reply of n bulk strings, calls check with
// each element's index and value (valid only during the call) and returns
// the reply's size.
func (c *hugeClient) arrayOfBulks(n int, check func(i int, v []byte)) int {
	header := c.line()
	require.Equal(c.t, "*"+strconv.Itoa(n), header)
	size := len(header) + 2
	var value []byte
	for i := range n {
		line, err := c.rd.ReadSlice('\n')
		require.NoError(c.t, err)
		if len(line) < 4 || line[0] != '$' {
			c.t.Fatalf("element %d: %q", i, line) // not require: its arguments would allocate every time
		}
		length := 0
		for _, d := range line[1 : len(line)-2] {
			length = length*10 + int(d-'0')
		}
		size += len(line) + length + 2
		value = slices.Grow(value[:0], length+2)[:length+2]
		_, err = io.ReadFull(c.rd, value)
		require.NoError(c.t, err)
		check(i, value[:length])
	}
	return size
}

// allocatedBy reports the bytes the process allocated while fn ran.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxAllocatedPerByte bounds the bytes allocated in the whole process per
// byte of a huge request and its reply: the request's read buffer (grown
// toward the size its headers announce, about 1.5 times over), 24 bytes of
// Args per argument (more than a DEL or MGET key itself), the sub-commands
// of a split (in waves, so a few MiB), the router's copies into its
// connection buffers and the replies. It measured 1.6x (MGET) to 4.7x
// (DEL); before commandReader and the compact split, 16x (MGET) to 80x
// (MSET).
const maxAllocatedPerByte = 6

// TestMillionArgumentRequests sends MSET, MGET, DEL and SADD of a million
// arguments each through the proxy to a real Redis Cluster, checks their
// replies (a sample of MGET's values) and bounds what serving each one
// allocates.
func TestMillionArgumentRequests(t *testing.T) {
	cp := startClusterProxyWith(t, threeMasters, func(c *Config) {
		// MGET's reply (about 100 MB) passes the default client output
		// limit, which would disconnect the client, as Redis does.
		c.ClientOutputLimit = 256 << 20
	})
	cl := dialHuge(t, cp.addr)

	const pairs, valueLen = 500_000, 100
	tests := []struct {
		name    string
		request []byte
		// reply reads and checks the reply and returns its size.
		reply func() int
	}{
		// Key 0 first with a stale value: the last one must win, though
		// the command goes out in waves.
		{"MSET", encodeHuge("MSET", 2+2*pairs, func(i int) []byte {
			switch {
			case i == 0:
				return hugeKey(0)
			case i == 1:
				return []byte("stale")
			case i%2 == 0:
				return hugeKey(i/2 - 1)
			}
			return hugeValue(i/2-1, valueLen)
		}), func() int { return expectLine(t, cl, "+OK") }},
		// Every key twice: a million keys, each with its value.
		{"MGET", encodeHuge("MGET", 2*pairs, func(i int) []byte { return hugeKey(i % pairs) }), func() int {
			return cl.arrayOfBulks(2*pairs, func(i int, v []byte) {
				if i%9973 == 0 {
					require.Equal(t, string(hugeValue(i%pairs, valueLen)), string(v), "value %d", i)
				}
			})
		}},
		// Half of the keys exist.
		{"DEL", encodeHuge("DEL", 2*pairs, func(i int) []byte { return hugeKey(i) }), func() int {
			return expectLine(t, cl, ":"+strconv.Itoa(pairs))
		}},
		// One key: routed whole, not split.
		{"SADD", encodeHuge("SADD", 1_000_000, func(i int) []byte {
			if i == 0 {
				return []byte("set")
			}
			return hugeValue(i, 60)
		}), func() int { return expectLine(t, cl, ":999999") }},
	}
	for _, tt := range tests {
		replySize := 0
		alloc := allocatedBy(func() {
			cl.send(tt.request)
			replySize = tt.reply()
		})
		wire := len(tt.request) + replySize
		ratio := float64(alloc) / float64(wire)
		t.Logf("%s: %d MB request, %d MB reply, %d MB allocated (%.2fx)", tt.name, len(tt.request)>>20, replySize>>20, alloc>>20, ratio)
		assert.Less(t, ratio, float64(maxAllocatedPerByte), "%s allocated too much", tt.name)
	}
}

// expectLine checks the next reply line and returns its size.
func expectLine(t *testing.T, c *hugeClient, want string) int {
	require.Equal(t, want, c.line())
	return len(want) + 2
}

// TestOversizedRequestRefusedBeforeItIsRead checks --max-request-bytes: a
// request whose headers announce more than the limit is refused with an
// error as soon as that header arrives, and the connection closed, while
// the client is still sending.
func TestOversizedRequestRefusedBeforeItIsRead(t *testing.T) {
	const limit = 4 << 20
	_, addr := startProxy(t, newFakeCluster(3), func(c *Config) { c.MaxRequestBytes = limit })
	refusal := "-ERR Protocol error: request exceeds the proxy's size limit"

	// One argument announced larger than the limit: refused at its header,
	// without a byte of it sent.
	c := dialHuge(t, addr)
	c.send([]byte("*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$" + strconv.Itoa(limit) + "\r\n"))
	assert.Equal(t, "+PONG", c.line())
	assert.Equal(t, refusal, c.line())
	_, err := c.rd.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "the connection is closed")

	// Many arguments adding up to more: refused once the one that crosses
	// the limit is announced, long before the whole request was sent.
	huge := encodeHuge("MSET", 2*500_000, func(i int) []byte { return hugeValue(i, 60) })
	c = dialHuge(t, addr)
	sent := make(chan error, 1)
	go func() {
		_, err := c.conn.Write(huge)
		sent <- err
	}()
	alloc := allocatedBy(func() {
		require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(time.Minute)))
		assert.Equal(t, refusal, c.line())
	})
	select {
	case err := <-sent:
		assert.Error(t, err, "the whole request was taken")
	case <-time.After(time.Minute):
		t.Fatal("the client's write neither failed nor ended")
	}
	assert.Less(t, alloc, uint64(len(huge)/2), "the proxy buffered the request")
}
