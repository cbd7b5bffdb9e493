package proxy

import (
	"bytes"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"kvproxy/internal/resp"
)

// chunkConn is a net.Conn whose reads return at most chunk bytes of r.
type chunkConn struct {
	net.Conn
	r     io.Reader
	chunk int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.chunk)])
}

// FuzzNodeConnReadReply reads arbitrary backend bytes, arriving in pieces
// of arbitrary size, through a dedicated connection's reader: it returns
// exactly the frames the router's Scanner finds in the whole stream, in
// order, then the Scanner's protocol error, or EOF for a truncated frame.
func FuzzNodeConnReadReply(f *testing.F) {
	for _, seed := range []string{
		"+OK\r\n:1\r\n$3\r\nfoo\r\n",
		"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n",
		"*2\r\n+OK\r\n-MOVED 12 10.0.0.2:7000\r\n",
		">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n%1\r\n+a\r\n:1\r\n",
		"-UNBLOCKED force unblock from blocking operation, instance state changed (MASTER -> REPLICA)\r\n",
		"$5\r\nab", "$99999999999999\r\n", "*1\r\n?\r\n", "+OK\n", "",
	} {
		f.Add([]byte(seed), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		c := newNodeConn("n:1", &chunkConn{r: bytes.NewReader(data), chunk: int(chunk)%64 + 1})
		ref := resp.NewScanner(resp.DefaultMaxBulkLen)
		rest := data
		for {
			frame, err := c.readReply()
			ref.Reset()
			n, refErr := ref.Scan(rest)
			switch {
			case refErr != nil:
				require.ErrorIs(t, err, resp.ErrProtocol)
				require.Equal(t, refErr.Error(), err.Error())
				return
			case n == 0:
				require.ErrorIs(t, err, io.EOF, "truncated frame %q", rest)
				return
			}
			require.NoError(t, err)
			require.Equal(t, rest[:n], frame)
			rest = rest[n:]
			if len(rest) == 0 {
				require.True(t, c.idle(), "nothing left to read")
			}
		}
	})
}

// FuzzSubConnAccount follows arbitrary backend frames on a Pub/Sub
// connection with arbitrary replies owed: a confirmation or pong settles one
// reply of the first command in flight, an error all of them, anything
// else (a message) none; the subscription sets follow the confirmations.
func FuzzSubConnAccount(f *testing.F) {
	for _, seed := range []string{
		"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
		"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n",
		"*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:1\r\n",
		"*3\r\n$10\r\nssubscribe\r\n$3\r\n{a}\r\n:1\r\n*3\r\n$12\r\nsunsubscribe\r\n$3\r\n{a}\r\n:0\r\n",
		"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n-ERR some failure\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n",
		"-MOVED 1 h:1\r\n+PONG\r\n*1\r\n$9\r\nsubscribe\r\n",
	} {
		f.Add([]byte(seed), []byte{2, 1, 1})
	}
	kindOf := map[string]struct {
		set string
		add bool
	}{
		"subscribe": {"channels", true}, "unsubscribe": {"channels", false},
		"psubscribe": {"patterns", true}, "punsubscribe": {"patterns", false},
		"ssubscribe": {"shards", true}, "sunsubscribe": {"shards", false},
	}
	f.Fuzz(func(t *testing.T, data, owed []byte) {
		c := newSubConn("k", nil)
		for _, o := range owed {
			c.expect = append(c.expect, int(o%4)+1)
		}
		sets := map[string]map[string]struct{}{"channels": c.channels, "patterns": c.patterns, "shards": c.shards}
		scanner := resp.NewScanner(1 << 16)
		for len(data) > 0 {
			scanner.Reset()
			n, err := scanner.Scan(data)
			if err != nil || n == 0 {
				return
			}
			frame := data[:n]
			data = data[n:]
			before := slices.Clone(c.expect)
			c.account(frame)
			for _, e := range c.expect {
				require.Positive(t, e)
			}
			kind, channel, isPubSub := parsePubSubReply(frame)
			switch {
			case len(before) == 0:
				require.Empty(t, c.expect)
			case resp.IsError(frame):
				require.Equal(t, before[1:], c.expect, "an error ends its command")
			case !isPubSub || kind != "pong" && kindOf[kind].set == "":
				require.Equal(t, before, c.expect, "%q settles nothing", frame)
			case len(c.expect) == len(before):
				require.Equal(t, before[0]-1, c.expect[0], "%q settles one reply", frame)
				require.Equal(t, before[1:], c.expect[1:])
			default:
				require.Equal(t, 1, before[0], "%q ends a command that owed one reply", frame)
				require.Equal(t, before[1:], c.expect)
			}
			if k, ok := kindOf[kind]; ok && isPubSub && channel != nil {
				_, in := sets[k.set][string(channel)]
				require.Equal(t, k.add, in, "%q", frame)
			}
		}
	})
}

// FuzzScanCursor reads arbitrary client SCAN cursors: any cursor decodes
// without harm, one at or past 2^53 never, an inline one to the position
// that encodes back to it, a table one only if it was handed out; and any
// backend position (master index, backend cursor) survives the proxy cursor
// it is given, below 2^53.
func FuzzScanCursor(f *testing.F) {
	f.Add(uint16(0), "0", uint64(0))
	f.Add(uint16(3), "12345", inlineCursor(3, 12345))
	f.Add(uint16(1023), strconv.FormatUint(scanInlineLimit-1, 10), uint64(3))
	f.Add(uint16(1), strconv.FormatUint(scanInlineLimit, 10), uint64(1<<64-1))
	f.Add(uint16(2), "15139871474431966470", scanCursor(1, 1))
	f.Add(uint16(5), "_user:42", scanCursor(1, scanTableSize+1))
	f.Add(uint16(6), "007", uint64(7))
	f.Add(uint16(7), "", inlineCursor(7, 0)+1<<scanPayloadAt)
	f.Add(uint16(8), "9", uint64(9223372036854777056))
	f.Fuzz(func(t *testing.T, master uint16, backend string, client uint64) {
		var table scanCursors
		pos := scanPosition{master: int(master) % scanMaxMasters, cursor: backend}
		cursor := table.encode(pos)
		require.Less(t, cursor, uint64(scanCursorLimit))
		got, ok := table.decode(cursor)
		require.True(t, ok)
		require.Equal(t, pos, got)

		got, ok = table.decode(client)
		switch {
		case client >= scanCursorLimit:
			require.False(t, ok, "past 2^53")
		case client&1 == 0:
			if ok {
				require.Less(t, got.master, scanMaxMasters)
				require.Equal(t, client, table.encode(got), "an inline cursor is canonical")
			}
		default:
			require.Equal(t, client == cursor, ok, "only the cursor handed out is known")
		}
	})
}
