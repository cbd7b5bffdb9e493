package proxy

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// recordingConn is the redcon.Conn of a session driven directly by a test.
type recordingConn struct {
	redcon.Conn
	out    []byte
	closed bool
}

func (c *recordingConn) WriteRaw(b []byte)  { c.out = append(c.out, b...) }
func (c *recordingConn) Close() error       { c.closed = true; return nil }
func (c *recordingConn) RemoteAddr() string { return "127.0.0.1:1" }

// staticBackend answers without allocating: MGET gets one "v" per key,
// DEL and DBSIZE ":1", everything else "+OK". It counts the Do calls.
type staticBackend struct {
	calls    int
	requests int
}

func (b *staticBackend) Do(_ context.Context, reqs []*router.Request) {
	b.calls++
	b.requests += len(reqs)
	for _, q := range reqs {
		switch {
		case bytes.Contains(q.Raw[:min(len(q.Raw), 16)], []byte("MGET")):
			argc, _ := strconv.Atoi(string(q.Raw[1:bytes.IndexByte(q.Raw, '\r')]))
			q.Reply = resp.AppendArray(q.Reply[:0], argc-1)
			for range argc - 1 {
				q.Reply = append(q.Reply, "$1\r\nv\r\n"...)
			}
		case bytes.Contains(q.Raw[:min(len(q.Raw), 16)], []byte("DEL")), bytes.Contains(q.Raw[:min(len(q.Raw), 16)], []byte("DBSIZE")):
			q.Reply = append(q.Reply[:0], ":1\r\n"...)
		default:
			q.Reply = append(q.Reply[:0], "+OK\r\n"...)
		}
	}
}

func (b *staticBackend) Masters() []string         { return []string{"10.0.0.1:1", "10.0.0.2:1"} }
func (b *staticBackend) Topology() router.Topology { return router.Topology{} }

func newTestSession(t testing.TB, backend Backend) (*session, *recordingConn) {
	t.Helper()
	cfg := DefaultConfig()
	srv, err := New(cfg, backend)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	client, server := net.Pipe()
	t.Cleanup(func() {
		_ = client.Close()
		_ = server.Close()
	})
	conn := &recordingConn{}
	g := newGuardConn(server, true, &srv.stats, srv.badRequestLog)
	return newSession(srv, conn, g, nil, nil), conn
}

func parseCommands(t testing.TB, commands ...[]string) []redcon.Command {
	t.Helper()
	var out []redcon.Command
	for _, args := range commands {
		cmd, err := redcon.Parse([]byte(encodeCommand(args...)))
		require.NoError(t, err)
		out = append(out, cmd)
	}
	return out
}

func TestBatchIsOneBackendCall(t *testing.T) {
	backend := &staticBackend{}
	sess, conn := newTestSession(t, backend)
	cmds := parseCommands(t,
		[]string{"SET", "a", "1"},
		[]string{"PING"},
		[]string{"GET", "b"},
		[]string{"MGET", "a", "b", "c", "d"},
		[]string{"ECHO", "x"},
		[]string{"DEL", "a", "b", "c"},
		[]string{"DBSIZE"},
	)
	sess.serve(cmds)
	assert.Equal(t, 1, backend.calls, "one pipeline, one trip to the backends")
	// SET, GET, MGET split by slot (a, b, c, d are in 4 slots), DEL split
	// in 3, DBSIZE to both masters.
	assert.Equal(t, 1+1+4+3+2, backend.requests)
	assert.Equal(t, "+OK\r\n+PONG\r\n+OK\r\n*4\r\n$1\r\nv\r\n$1\r\nv\r\n$1\r\nv\r\n$1\r\nv\r\n$1\r\nx\r\n:3\r\n:2\r\n", string(conn.out))
}

func TestQuitStopsTheBatch(t *testing.T) {
	backend := &staticBackend{}
	sess, conn := newTestSession(t, backend)
	sess.serve(parseCommands(t, []string{"GET", "a"}, []string{"QUIT"}, []string{"SET", "a", "1"}))
	assert.Equal(t, "+OK\r\n+OK\r\n", string(conn.out))
	assert.Equal(t, 1, backend.requests, "nothing after QUIT is sent")
	assert.True(t, conn.closed)
}

// The dispatch path reuses the session's buffers: serving a pipeline of
// routed, split and local commands does not allocate in steady state.
func TestDispatchDoesNotAllocate(t *testing.T) {
	backend := &staticBackend{}
	sess, conn := newTestSession(t, backend)
	cmds := parseCommands(t,
		[]string{"SET", "a", "1"},
		[]string{"GET", "a"},
		[]string{"PING"},
		[]string{"MGET", "a", "b", "c"},
		[]string{"DEL", "a", "b"},
		[]string{"EXISTS", "{t}a", "{t}b"},
		[]string{"ECHO", "x"},
	)
	sess.serve(cmds) // warm the buffers
	allocs := testing.AllocsPerRun(200, func() {
		conn.out = conn.out[:0]
		sess.serve(cmds)
	})
	assert.Zero(t, allocs)
}

// BenchmarkDispatch serves a batch of 16 GETs as a client's goroutine does.
func BenchmarkDispatch(b *testing.B) { benchmarkDispatch(b, false) }

// BenchmarkDispatchOnLoop is BenchmarkDispatch as an event loop serves a
// batch: loopSafe decides first, then the session serves what it classified.
func BenchmarkDispatchOnLoop(b *testing.B) { benchmarkDispatch(b, true) }

func benchmarkDispatch(b *testing.B, onLoop bool) {
	backend := &staticBackend{}
	sess, conn := newTestSession(b, backend)
	var batch [][]string
	for i := range 16 {
		batch = append(batch, []string{"GET", "key:" + strconv.Itoa(i)})
	}
	cmds := parseCommands(b, batch...)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		conn.out = conn.out[:0]
		if onLoop && !sess.loopSafe(cmds) {
			b.Fatal("a batch of GETs is not loop-safe")
		}
		sess.serve(cmds)
	}
}

// loopSafe and the session's dispatch read one class per command: what an
// event loop refuses is what would wait for a dedicated connection, a
// handover or the connection's end, and the class it found is the one served.
func TestLoopSafeFollowsTheCommandsClass(t *testing.T) {
	for _, tc := range []struct {
		args []string
		safe bool
	}{
		{[]string{"GET", "k"}, true},
		{[]string{"MGET", "a", "b"}, true},
		{[]string{"PING"}, true},
		{[]string{"NOSUCH"}, true},
		{[]string{"GET"}, true}, // wrong arity: an error
		{[]string{"CONFIG", "GET", "maxmemory"}, true},
		{[]string{"CONFIG", "SET", "maxmemory", "0"}, true},
		{[]string{"CLIENT", "LIST"}, true},
		{[]string{"CLIENT", "KILL", "ID", "7"}, false}, // may end the caller
		{[]string{"CONFIG", "NOSUCH"}, true},
		{[]string{"XREAD", "STREAMS", "s", "0"}, true},
		{[]string{"SPUBLISH", "ch", "m"}, true},
		{[]string{"PROXY", "NODES"}, true},
		{[]string{"MULTI"}, false},
		{[]string{"WATCH", "k"}, false},
		{[]string{"BLPOP", "k", "0"}, false},
		{[]string{"XREAD", "BLOCK", "0", "STREAMS", "s", "0"}, false},
		{[]string{"SUBSCRIBE", "ch"}, false},
		{[]string{"QUIT"}, false},
		{[]string{"PROXY", "FAILOVER", "0"}, false},
		{[]string{"CLUSTERX", "FAILOVER", "id"}, false},
	} {
		sess, _ := newTestSession(t, &staticBackend{})
		cmds := parseCommands(t, []string{"GET", "before"}, tc.args)
		assert.Equal(t, tc.safe, sess.loopSafe(cmds), "%q", tc.args)
		require.Len(t, sess.classes, 2, "%q", tc.args)
		found := classOf(cmds[1].Args)
		assert.Equal(t, tc.safe, !found.blocksLoop(), "%q", tc.args)
		sess.serving = 1
		sess.classes[1].kind = kindRefused // a mark: served from what loopSafe found
		assert.Equal(t, kindRefused, sess.classFor(&cmds[1]).kind, "%q", tc.args)
		other := cmds[1]
		assert.Equal(t, found.kind, sess.classFor(&other).kind, "another command is classed anew: %q", tc.args)
	}
}

// scriptedBackend answers each request with reply(request).
type scriptedBackend struct {
	masters []string
	reply   func(q *router.Request) string
	seen    []string
}

func (b *scriptedBackend) Do(_ context.Context, reqs []*router.Request) {
	for _, q := range reqs {
		target := q.Addr
		if q.Slot >= 0 {
			target = "slot " + strconv.Itoa(q.Slot)
		}
		b.seen = append(b.seen, target+" "+string(q.Raw))
		q.Reply = append(q.Reply[:0], b.reply(q)...)
	}
}

func (b *scriptedBackend) Masters() []string         { return b.masters }
func (b *scriptedBackend) Topology() router.Topology { return router.Topology{} }

func serveOne(t *testing.T, backend Backend, args ...string) string {
	t.Helper()
	sess, conn := newTestSession(t, backend)
	sess.serve(parseCommands(t, args))
	return string(conn.out)
}

func TestMergeFailures(t *testing.T) {
	masters := []string{"m1:1", "m2:1"}
	failSecond := func(ok, bad string) func(q *router.Request) string {
		n := 0
		return func(*router.Request) string {
			if n++; n == 2 {
				return bad
			}
			return ok
		}
	}
	tests := []struct {
		name  string
		reply func(q *router.Request) string
		args  []string
		want  string
	}{
		{"MGET part fails", failSecond("*1\r\n$1\r\nv\r\n", "-ERR boom\r\n"), []string{"MGET", "a", "b"}, "-ERR boom\r\n"},
		{"MGET part too short", failSecond("*1\r\n$1\r\nv\r\n", "*0\r\n"), []string{"MGET", "a", "b"},
			"-ERR kvproxy: unexpected backend reply while merging: \"*0\\r\\n\"\r\n"},
		{"MGET part too long", failSecond("*1\r\n$1\r\nv\r\n", "*2\r\n$1\r\nv\r\n$1\r\nw\r\n"), []string{"MGET", "a", "b"},
			"-ERR kvproxy: unexpected backend reply while merging: \"*2\\r\\n$1\\r\\nv\\r\\n$1\\r\\nw\\r\\n\"\r\n"},
		{"MGET value cut short", failSecond("*1\r\n$1\r\nv\r\n", "*1\r\n$5\r\nv\r\n"), []string{"MGET", "a", "b"},
			"-ERR kvproxy: unexpected backend reply while merging: \"*1\\r\\n$5\\r\\nv\\r\\n\"\r\n"},
		{"DEL part not an integer", failSecond(":1\r\n", "+OK\r\n"), []string{"DEL", "a", "b"},
			"-ERR kvproxy: unexpected backend reply while merging: \"+OK\\r\\n\"\r\n"},
		{"MSET part fails", failSecond("+OK\r\n", "-TRYAGAIN later\r\n"), []string{"MSET", "a", "1", "b", "2"}, "-TRYAGAIN later\r\n"},
		{"FLUSHALL on one master fails", failSecond("+OK\r\n", "-READONLY no\r\n"), []string{"FLUSHALL"}, "-READONLY no\r\n"},
		{"KEYS malformed", failSecond("*0\r\n", "$1\r\nx\r\n"), []string{"KEYS", "*"},
			"-ERR kvproxy: unexpected backend reply while merging: \"$1\\r\\nx\\r\\n\"\r\n"},
		{"RANDOMKEY error only if no key", failSecond("$-1\r\n", "-ERR down\r\n"), []string{"RANDOMKEY"}, "-ERR down\r\n"},
		{"RANDOMKEY skips a failed master", failSecond("$1\r\nk\r\n", "-ERR down\r\n"), []string{"RANDOMKEY"}, "$1\r\nk\r\n"},
		{"SCRIPT EXISTS needs every master", failSecond("*2\r\n:1\r\n:1\r\n", "*2\r\n:0\r\n:1\r\n"),
			[]string{"SCRIPT", "EXISTS", "a", "b"}, "*2\r\n:0\r\n:1\r\n"},
		{"SCRIPT EXISTS length mismatch", failSecond("*2\r\n:1\r\n:1\r\n", "*1\r\n:1\r\n"),
			[]string{"SCRIPT", "EXISTS", "a", "b"}, "-ERR kvproxy: unexpected backend reply while merging: \"*1\\r\\n:1\\r\\n\"\r\n"},
		{"SCAN bad reply", failSecond(":1\r\n", ""), []string{"SCAN", "0"},
			"-ERR kvproxy: unexpected backend reply while merging: \":1\\r\\n\"\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend := &scriptedBackend{masters: masters, reply: tt.reply}
			assert.Equal(t, tt.want, serveOne(t, backend, tt.args...))
		})
	}
	noMasters := &scriptedBackend{reply: func(*router.Request) string { return "+OK\r\n" }}
	for _, args := range [][]string{{"DBSIZE"}, {"SCAN", "0"}, {"RANDOMKEY"}, {"TIME"}} {
		assert.Equal(t, "-CLUSTERDOWN The cluster is down\r\n", serveOne(t, noMasters, args...), "%q", args)
	}
}

func TestScanCursorCarriesTheMaster(t *testing.T) {
	pages := map[string]string{
		"m1:1 0": "*2\r\n$1\r\n7\r\n*1\r\n$1\r\na\r\n",
		"m1:1 7": "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nb\r\n",
		"m2:1 0": "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nc\r\n",
	}
	backend := &scriptedBackend{masters: []string{"m1:1", "m2:1"}, reply: func(q *router.Request) string {
		cmd, err := redcon.Parse(q.Raw)
		if err != nil || len(cmd.Args) < 2 {
			return "-ERR bad\r\n"
		}
		return pages[q.Addr+" "+string(cmd.Args[1])]
	}}
	// 7 on master 0 is carried inline; master 1 from its start has a
	// cursor of its own.
	first := serveOne(t, backend, "SCAN", "0", "MATCH", "*")
	next, page := parseScanReply(t, first)
	assert.Equal(t, []string{"a"}, page)
	assert.Equal(t, strconv.FormatUint(inlineCursor(0, 7), 10), next)
	second := serveOne(t, backend, "SCAN", next, "MATCH", "*")
	assert.Equal(t, "m1:1 *4\r\n$4\r\nSCAN\r\n$1\r\n7\r\n$5\r\nMATCH\r\n$1\r\n*\r\n", backend.seen[1])
	next, page = parseScanReply(t, second)
	assert.Equal(t, []string{"b"}, page)
	assert.Equal(t, strconv.FormatUint(inlineCursor(1, 0), 10), next)
	assert.Equal(t, "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nc\r\n", serveOne(t, backend, "SCAN", next, "MATCH", "*"))
	// A cursor the proxy issued for a master that is gone ends the walk.
	assert.Equal(t, "*2\r\n$1\r\n0\r\n*0\r\n", serveOne(t, backend, "SCAN", strconv.FormatUint(inlineCursor(5, 0), 10)))
	// One it did not issue is refused: low bits naming no master (5 was
	// "master 5 from its start" before cursors had a check), a garbled
	// cursor, one past 2^53 or rounded by a client that holds cursors as
	// doubles.
	for _, forged := range []string{"5", "1", strconv.FormatUint(inlineCursor(0, 7)+2, 10), "9007199254740992", "9223372036854777056", "9223372036854777000"} {
		assert.Equal(t, "-ERR invalid cursor\r\n", serveOne(t, backend, "SCAN", forged), forged)
	}
}

func TestRoutingDecisions(t *testing.T) {
	backend := &scriptedBackend{masters: []string{"m1:1", "m2:1"}, reply: func(*router.Request) string { return "+OK\r\n" }}
	slot := func(key string) string { return "slot " + strconv.Itoa(int(router.Slot([]byte(key)))) }
	tests := []struct {
		args []string
		want string // the target of the single request sent
	}{
		{[]string{"GET", "k"}, slot("k")},
		{[]string{"EVAL", "return 1", "2", "{t}a", "{t}b"}, slot("t")},
		{[]string{"XREAD", "COUNT", "1", "STREAMS", "s", "0"}, slot("s")},
		{[]string{"XREADGROUP", "GROUP", "block", "c", "STREAMS", "s", ">"}, slot("s")},
		{[]string{"OBJECT", "ENCODING", "k"}, slot("k")},
	}
	for _, tt := range tests {
		backend.seen = nil
		assert.Equal(t, "+OK\r\n", serveOne(t, backend, tt.args...), "%q", tt.args)
		if assert.Len(t, backend.seen, 1, "%q", tt.args) {
			assert.True(t, strings.HasPrefix(backend.seen[0], tt.want+" "), "%q went to %s", tt.args, backend.seen[0])
		}
	}
	// Keyless commands stick to one master per session.
	backend.seen = nil
	sess, _ := newTestSession(t, backend)
	sess.serve(parseCommands(t, []string{"EVAL", "return 1", "0"}, []string{"TIME"}, []string{"LOLWUT"}))
	require.Len(t, backend.seen, 3)
	target := strings.Fields(backend.seen[0])[0]
	for _, seen := range backend.seen {
		assert.Equal(t, target, strings.Fields(seen)[0])
	}

	for _, args := range [][]string{{"XREAD", "BLOCK", "0", "STREAMS", "s", "0"}, {"WAIT", "1", "0"}, {"PUBLISH", "c", "m"}} {
		backend.seen = nil
		assert.Contains(t, serveOne(t, backend, args...), "is not supported by kvproxy", "%q", args)
		assert.Empty(t, backend.seen)
	}
	assert.Equal(t, "-CROSSSLOT Keys in request don't hash to the same slot\r\n", serveOne(t, backend, "EVAL", "return 1", "2", "a", "b"))
}

// isOneFrame reports whether b is exactly one well-formed RESP reply.
func isOneFrame(b []byte) bool {
	n, err := resp.NewScanner(1 << 20).Scan(b)
	return err == nil && n == len(b)
}

// FuzzMerge feeds arbitrary (well-formed) backend replies to every merge:
// whatever the parts say, the client gets exactly one well-formed reply.
func FuzzMerge(f *testing.F) {
	for _, seed := range [][2]string{
		{":1\r\n", ":2\r\n"},
		{"*1\r\n$1\r\nv\r\n", "*1\r\n$-1\r\n"},
		{"*2\r\n$1\r\n0\r\n*0\r\n", "*2\r\n$2\r\n12\r\n*1\r\n$1\r\nk\r\n"},
		{"+OK\r\n", "-ERR x\r\n"},
		{"$-1\r\n", "$1\r\nk\r\n"},
		{"*-1\r\n", "*3\r\n:1\r\n+a\r\n*0\r\n"},
		{"*2\r\n$20\r\n99999999999999999999\r\n*0\r\n", "%1\r\n+a\r\n:1\r\n"},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	commands := [][]string{
		{"MGET", "a", "b"}, {"DEL", "a", "b"}, {"MSET", "a", "1", "b", "2"}, {"KEYS", "*"},
		{"SCAN", "0"}, {"RANDOMKEY"}, {"FLUSHALL"}, {"DBSIZE"}, {"SCRIPT", "LOAD", "x"}, {"SCRIPT", "EXISTS", "x"},
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		if !isOneFrame(first) || !isOneFrame(second) {
			return // the router hands over whole frames only
		}
		n := 0
		backend := &scriptedBackend{masters: []string{"m1:1", "m2:1"}, reply: func(*router.Request) string {
			if n++; n%2 == 1 {
				return string(first)
			}
			return string(second)
		}}
		sess, conn := newTestSession(t, backend)
		for _, args := range commands {
			conn.out = conn.out[:0]
			n = 0
			sess.serve(parseCommands(t, args))
			require.True(t, isOneFrame(conn.out), "%q with parts %q, %q gave %q", args, first, second, conn.out)
		}
	})
}

func TestScanCursorsKeepWideBackendCursors(t *testing.T) {
	var table scanCursors
	for _, pos := range []scanPosition{
		{master: 0, cursor: "0"},
		{master: 3, cursor: "12345"},
		{master: scanMaxMasters - 1, cursor: strconv.FormatUint(scanInlineLimit-1, 10)},
	} {
		cursor := table.encode(pos)
		assert.Zero(t, cursor&1, "%+v fits inline", pos)
		assert.Less(t, cursor, uint64(scanCursorLimit))
		got, ok := table.decode(cursor)
		assert.True(t, ok)
		assert.Equal(t, pos, got)
	}
	assert.Zero(t, table.encode(scanPosition{master: 0, cursor: "0"}), "cursor 0 starts the scan")
	// Kvrocks: 64-bit numbers, or key names without redis-cursor-compatible;
	// also a number Redis would never print (leading zero).
	var first uint64
	for i, backend := range []string{"15139871474431966470", "_user:42", "007", strconv.FormatUint(scanInlineLimit, 10)} {
		pos := scanPosition{master: i, cursor: backend}
		cursor := table.encode(pos)
		assert.Equal(t, uint64(1), cursor&1, "%q goes to the table", backend)
		assert.Less(t, cursor, uint64(scanCursorLimit))
		got, ok := table.decode(cursor)
		assert.True(t, ok)
		assert.Equal(t, pos, got)
		if i == 0 {
			first = cursor
		}
	}
	for range scanTableSize {
		table.encode(scanPosition{cursor: "_filler"})
	}
	_, ok := table.decode(first)
	assert.False(t, ok, "an overwritten cursor is invalid")
	_, ok = table.decode(scanCursor(1, 999999))
	assert.False(t, ok, "an unknown cursor is invalid")
}

// TestScanCursorsRefuseMostGarbage decodes random cursors below 2^53: the
// check field lets about one in 1024 inline ones through, and (almost) no
// table one.
func TestScanCursorsRefuseMostGarbage(t *testing.T) {
	var table scanCursors
	for range 100 {
		table.encode(scanPosition{cursor: "_user:42"})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	const tries = 1 << 20
	for range tries {
		if _, ok := table.decode(rng.Uint64N(scanCursorLimit)); ok {
			accepted++
		}
	}
	assert.Less(t, accepted, tries/512, "accepted %d of %d random cursors", accepted, tries)
	assert.Positive(t, accepted, "the check is a hash, not a refusal of everything")
}

func TestScanThroughWideCursors(t *testing.T) {
	pages := map[string]string{
		"m1:1 0":                    "*2\r\n$8\r\n_user:42\r\n*1\r\n$1\r\na\r\n",
		"m1:1 _user:42":             "*2\r\n$20\r\n15139871474431966470\r\n*1\r\n$1\r\nb\r\n",
		"m1:1 15139871474431966470": "*2\r\n$1\r\n0\r\n*0\r\n",
		"m2:1 0":                    "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nc\r\n",
	}
	backend := &scriptedBackend{masters: []string{"m1:1", "m2:1"}, reply: func(q *router.Request) string {
		cmd, err := redcon.Parse(q.Raw)
		if err != nil || len(cmd.Args) < 2 {
			return "-ERR bad\r\n"
		}
		return pages[q.Addr+" "+string(cmd.Args[1])]
	}}
	sess, conn := newTestSession(t, backend)
	var keys []string
	cursor := "0"
	for round := 0; ; round++ {
		require.Less(t, round, 10)
		conn.out = conn.out[:0]
		sess.serve(parseCommands(t, []string{"SCAN", cursor}))
		next, page := parseScanReply(t, string(conn.out))
		keys = append(keys, page...)
		if cursor = next; cursor == "0" {
			break
		}
	}
	assert.Equal(t, []string{"a", "b", "c"}, keys)
	assert.Equal(t, "-ERR invalid cursor\r\n", serveOne(t, backend, "SCAN", strconv.FormatUint(scanCursor(1, 12345), 10)))
}
