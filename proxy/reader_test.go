package proxy

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
)

// recordingNetConn is the client side a guard writes its refusal to.
type recordingNetConn struct {
	net.Conn
	written bytes.Buffer
}

func (c *recordingNetConn) Write(p []byte) (int, error)      { return c.written.Write(p) }
func (c *recordingNetConn) SetWriteDeadline(time.Time) error { return nil }
func (c *recordingNetConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *recordingNetConn) Close() error                     { return nil }

// pacedSource hands out data chunk bytes at a time, answering every other
// read with errWouldBlock, as a loop-mode socket with nothing more yet.
type pacedSource struct {
	data    []byte
	chunk   int
	blocked bool
}

func (s *pacedSource) Read(p []byte) (int, error) {
	if s.blocked = !s.blocked; s.blocked {
		return 0, errWouldBlock
	}
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), s.chunk)], s.data)
	s.data = s.data[n:]
	return n, nil
}

// readerResult reads every command of data with a commandReader fed chunk
// bytes per read; the commands are copied out as their strings. refused is
// the request refused, and refusal what the client was told.
func readerResult(data []byte, chunk int, authenticated bool) (cmds [][]string, refused *resp.RequestError, refusal string, err error) {
	conn := &recordingNetConn{}
	g := newGuardConn(conn, authenticated, new(stats), newRateLimitedLog(slog.New(slog.DiscardHandler), slog.LevelInfo, "refused"))
	limits := resp.RequestLimits{MaxBulkLen: 1 << 30, MaxArgs: 1 << 20, MaxRequestBytes: 1 << 40}
	r := newCommandReader(&pacedSource{data: data, chunk: chunk}, g, limits)
	for {
		batch, err := r.ReadCommands()
		if errors.Is(err, errWouldBlock) {
			continue
		}
		for _, c := range batch {
			cmds = append(cmds, commandStrings(c))
		}
		if !authenticated && len(batch) > 1 {
			return cmds, nil, "", errors.New("more than one command before AUTH")
		}
		if err != nil {
			return cmds, r.refused, conn.written.String(), err
		}
	}
}

// commandStrings is a command's Raw and then its arguments.
func commandStrings(c redcon.Command) []string {
	out := []string{string(c.Raw)}
	for _, a := range c.Args {
		out = append(out, string(a))
	}
	return out
}

// redconResult reads every command of data with redcon's own reader.
func redconResult(data []byte) (cmds [][]string, err error) {
	rd := redcon.NewReader(bytes.NewReader(data))
	for {
		batch, err := rd.ReadCommands()
		for _, c := range batch {
			cmds = append(cmds, commandStrings(c))
		}
		if err != nil {
			return cmds, err
		}
	}
}

func TestCommandReader(t *testing.T) {
	input := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n" +
		"GET k\r\n" +
		"\r\n" + // a blank line is no command
		"SET \"a b\" \"c\\nd\"\n" +
		"*2\r\n$4\r\nMGET\r\n$0\r\n\r\n"
	want := [][]string{
		{"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n", "SET", "k", "hello"},
		{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "GET", "k"},
		{"*3\r\n$3\r\nSET\r\n$3\r\na b\r\n$3\r\nc\nd\r\n", "SET", "a b", "c\nd"},
		{"*2\r\n$4\r\nMGET\r\n$0\r\n\r\n", "MGET", ""},
	}
	for _, chunk := range []int{1, 2, 7, 1 << 20} {
		cmds, _, _, err := readerResult([]byte(input), chunk, true)
		require.ErrorIs(t, err, io.EOF)
		assert.Equal(t, want, cmds, "chunk %d", chunk)
	}
}

func TestCommandReaderRefusesAfterTheCommandsBefore(t *testing.T) {
	input := "*1\r\n$4\r\nPING\r\nSET a\"b\r\n*1\r\n$4\r\nPING\r\n"
	cmds, _, refusal, err := readerResult([]byte(input), 1<<20, true)
	require.ErrorIs(t, err, errRefused)
	assert.Equal(t, [][]string{{"*1\r\n$4\r\nPING\r\n", "PING"}}, cmds)
	assert.Equal(t, "-ERR Protocol error: unbalanced quotes in request\r\n", refusal)
}

func TestCommandReaderOneCommandAtATimeBeforeAuth(t *testing.T) {
	input := strings.Repeat("*1\r\n$4\r\nPING\r\n", 3)
	cmds, _, _, err := readerResult([]byte(input), 1<<20, false)
	require.ErrorIs(t, err, io.EOF)
	assert.Len(t, cmds, 3)
}

// hugeValue is value i of the huge MSET, valueLen bytes ending with i.
func hugeValue(i, valueLen int) []byte {
	v := make([]byte, valueLen)
	for j := range v {
		v[j] = 'a' + byte(j%26)
	}
	tail := strconv.Itoa(i)
	copy(v[len(v)-len(tail):], tail)
	return v
}

// encodeHuge encodes name followed by nargs arguments made by arg, without
// building them as strings first.
func encodeHuge(name string, nargs int, arg func(i int) []byte) []byte {
	b := resp.AppendArray(nil, nargs+1)
	b = resp.AppendBulk(b, []byte(name))
	for i := range nargs {
		b = resp.AppendBulk(b, arg(i))
	}
	return b
}

// TestCommandReaderGrowsForAHugeCommand checks that a command of many
// arguments is parsed in one pass: its buffer grows by doubling up to the
// size the headers announce and no further, and a buffer it outgrew, or
// that it needed, is not kept.
func TestCommandReaderGrowsForAHugeCommand(t *testing.T) {
	const args = 200_000
	data := encodeHuge("MSET", args, func(i int) []byte { return hugeValue(i, 20) })
	g := newGuardConn(&recordingNetConn{}, true, new(stats), newRateLimitedLog(slog.New(slog.DiscardHandler), slog.LevelInfo, "refused"))
	limits := resp.RequestLimits{MaxBulkLen: 1 << 30, MaxArgs: 1 << 30, MaxRequestBytes: 1 << 40}
	r := newCommandReader(&pacedSource{data: append(data, "*1\r\n$4\r\nPI"...), chunk: 64 << 10}, g, limits)
	var cmds []redcon.Command
	for len(cmds) == 0 {
		var err error
		cmds, err = r.ReadCommands()
		if !errors.Is(err, errWouldBlock) {
			require.NoError(t, err)
		}
	}
	require.Len(t, cmds, 1)
	assert.Equal(t, data, cmds[0].Raw)
	require.Len(t, cmds[0].Args, args+1)
	assert.Equal(t, hugeValue(args-1, 20), cmds[0].Args[args])
	assert.LessOrEqual(t, cap(cmds[0].Raw)+len(cmds[0].Raw)/8, len(data)+len(data)/8+minRead,
		"the buffer overshot the command")
	assert.Equal(t, readBufSize, len(r.buf), "the huge buffer is left to the command")
	assert.Equal(t, "*1\r\n$4\r\nPI", string(r.buf[r.start:r.end]), "the next command's start stays")
}

// gcPercent is the GC target in force.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestHugeRequestLowersTheGCTarget checks that the GC target is lowered
// while a huge request is read and served, and restored once the session is
// done with it, or its connection closed.
func TestHugeRequestLowersTheGCTarget(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	huge := encodeHuge("SET", 2, func(i int) []byte {
		if i == 0 {
			return []byte("k")
		}
		return make([]byte, hugeRequestBytes)
	})
	for _, closed := range []bool{false, true} {
		g := newGuardConn(&recordingNetConn{}, true, new(stats), newRateLimitedLog(slog.New(slog.DiscardHandler), slog.LevelInfo, "refused"))
		limits := resp.RequestLimits{MaxBulkLen: 1 << 30, MaxArgs: 1 << 30, MaxRequestBytes: 1 << 40}
		r := newCommandReader(&pacedSource{data: huge, chunk: 1 << 20}, g, limits)
		var cmds []redcon.Command
		err := errWouldBlock
		for errors.Is(err, errWouldBlock) {
			cmds, err = r.ReadCommands()
		}
		require.NoError(t, err)
		require.Len(t, cmds[0].Raw, len(huge))
		assert.Equal(t, hugeRequestGCPercent, gcPercent(), "while the huge command is served")
		if closed {
			r.close()
		} else {
			// The next read finds the connection closed by the client,
			// once the session is done with the command.
			for err = errWouldBlock; errors.Is(err, errWouldBlock); {
				_, err = r.ReadCommands()
			}
			require.ErrorIs(t, err, io.EOF)
		}
		assert.Equal(t, 400, gcPercent(), "once done (closed: %v)", closed)
		r.close()
		assert.Equal(t, 400, gcPercent(), "closing again changes nothing")
	}
}

// FuzzCommandReader checks the reader against redcon's: the same commands
// (Raw and Args) for every input redcon accepts, whatever the read sizes
// and with reads interrupted by errWouldBlock; a refusal with redcon's own
// message where redcon fails, after at least the commands redcon returned.
func FuzzCommandReader(f *testing.F) {
	for _, seed := range []string{
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"PING\r\nGET a\n\r\n   \r\n",
		"SET a \"b c\" 'd\\'e' \"\\x\\n\\r\\t\"\r\n",
		"SET \"a\"b\r\n",
		"SET a\"b\r\n",
		"SET \"a\r\n",
		"\"\"\r\n",
		"*0\r\n",
		"*1\r\n$-1\r\n",
		"*2\r\n$1\r\na\r\n$1\r\nbX\r\n",
		"*+2\r\n$-0\r\n\r\n$01\r\nx\r\n",
		"*1\r\n$4\r\nPING\r",
		"\r\n\r\n*1\r\n$1\r\nx\r\n",
		"*3\r\n$4\r\nMGET\r\n$300\r\n" + strings.Repeat("k", 300) + "\r\n$0\r\n\r\nGET x\r\n",
	} {
		f.Add([]byte(seed), uint8(1))
		f.Add([]byte(seed), uint8(5))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		if inlineDiffersFromRedcon(data) {
			return // internal/resp's FuzzParseInline covers these
		}
		got, refused, refusal, err := readerResult(data, int(chunk)+1, true)
		if refused != nil && refused.Limit {
			return // a cap redcon does not have
		}
		want, redconErr := redconResult(data)
		if errors.Is(redconErr, io.EOF) {
			require.ErrorIs(t, err, io.EOF, "the reader refuses what redcon accepts: %q (%s)", data, refusal)
			require.Equal(t, want, got)
			return
		}
		require.ErrorIs(t, err, errRefused, "the reader accepts what redcon refuses (%v): %q", redconErr, data)
		msg := strings.NewReplacer("\r", " ", "\n", " ").Replace(redconErr.Error())
		require.Equal(t, "-ERR "+msg+"\r\n", refusal)
		// redcon drops the commands it parsed in the read that failed.
		require.GreaterOrEqual(t, len(got), len(want))
		if len(want) > 0 {
			require.Equal(t, want, got[:len(want)])
		}
	})
}

// inlineDiffersFromRedcon reports data that may hold an inline line which
// redcon splits otherwise than Redis: with quotes, backslashes, NUL, or
// blanks other than a space and a final CR.
func inlineDiffersFromRedcon(data []byte) bool {
	return bytes.ContainsAny(data, "\"'\\\x00\t\v\f") || bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\r"))
}

// repeatingSource hands out data whole on every read, as a client that
// keeps sending the same pipeline.
type repeatingSource struct{ data []byte }

func (s *repeatingSource) Read(p []byte) (int, error) { return copy(p, s.data), nil }

// BenchmarkCommandReader reads a pipeline of 16 GETs per read, and a
// 10,000-argument MSET that arrives 16 KiB at a time: the request scanner's
// hot path.
func BenchmarkCommandReader(b *testing.B) {
	newReader := func(src io.Reader) *commandReader {
		g := newGuardConn(&recordingNetConn{}, true, new(stats), newRateLimitedLog(slog.New(slog.DiscardHandler), slog.LevelInfo, "refused"))
		return newCommandReader(src, g, resp.RequestLimits{MaxBulkLen: 1 << 30, MaxArgs: 1 << 20, MaxRequestBytes: 1 << 40})
	}
	b.Run("pipeline", func(b *testing.B) {
		var pipeline []byte
		for i := range 16 {
			pipeline = resp.AppendCommand(pipeline, []byte("GET"), []byte("key:"+strconv.Itoa(i)))
		}
		r := newReader(&repeatingSource{data: pipeline})
		b.SetBytes(int64(len(pipeline)))
		b.ReportAllocs()
		for b.Loop() {
			if cmds, err := r.ReadCommands(); err != nil || len(cmds) != 16 {
				b.Fatal(len(cmds), err)
			}
		}
	})
	b.Run("mset", func(b *testing.B) {
		mset := encodeHuge("MSET", 10_000, func(i int) []byte { return hugeValue(i, 32) })
		b.SetBytes(int64(len(mset)))
		b.ReportAllocs()
		for b.Loop() {
			r := newReader(&pacedSource{data: mset, chunk: 16 << 10})
			for {
				cmds, err := r.ReadCommands()
				if errors.Is(err, errWouldBlock) {
					continue
				}
				if err != nil || len(cmds) != 1 {
					b.Fatal(len(cmds), err)
				}
				break
			}
		}
	})
}
