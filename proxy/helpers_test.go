package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// fakeCluster is a scripted Backend: a few masters, each owning an even
// share of the slots and holding a map of strings. It understands the
// handful of commands the proxy's tests send and refuses keys of a foreign
// slot the way a cluster node does, so a wrong split shows.
type fakeCluster struct {
	mu      sync.Mutex
	masters []string
	data    map[string]map[string]string
	// calls records, per Do, the raw commands in request order.
	calls [][]string
	// hold, when not nil, is waited on at the start of each Do.
	hold chan struct{}
	// entered is signalled (without blocking) when a Do starts.
	entered chan struct{}
	// cancelled counts the Do calls whose ctx ended while held.
	cancelled atomic.Int32
}

func newFakeCluster(masters int) *fakeCluster {
	f := &fakeCluster{data: map[string]map[string]string{}, entered: make(chan struct{}, 16)}
	for i := range masters {
		addr := fmt.Sprintf("10.0.0.%d:7000", i+1)
		f.masters = append(f.masters, addr)
		f.data[addr] = map[string]string{}
	}
	return f
}

func (f *fakeCluster) ownerOf(slot int) string {
	return f.masters[slot*len(f.masters)/router.SlotCount]
}

func (f *fakeCluster) Masters() []string { return f.masters }

// Backoff paces dedicated resends as a router of the default Config does.
func (f *fakeCluster) Backoff() router.Backoff { return router.DefaultConfig().Backoff() }

func (f *fakeCluster) Topology() router.Topology {
	topo := router.Topology{Epoch: 7}
	for i, addr := range f.masters {
		start := (i*router.SlotCount + len(f.masters) - 1) / len(f.masters)
		end := ((i+1)*router.SlotCount+len(f.masters)-1)/len(f.masters) - 1
		id := strings.Repeat(strconv.Itoa(i+1), 40)
		topo.Nodes = append(topo.Nodes, router.NodeInfo{ID: id, Addr: addr, Role: "master", Slots: []router.SlotRange{{Start: start, End: end}}})
	}
	topo.Nodes = append(topo.Nodes, router.NodeInfo{ID: strings.Repeat("9", 40), Addr: "10.0.0.99:7000", Role: "replica", MasterID: topo.Nodes[0].ID})
	return topo
}

func (f *fakeCluster) Do(ctx context.Context, reqs []*router.Request) {
	select {
	case f.entered <- struct{}{}:
	default:
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			f.cancelled.Add(1)
			for _, q := range reqs {
				q.Reply = append(q.Reply[:0], "-ERR cancelled\r\n"...)
			}
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var call []string
	for _, q := range reqs {
		call = append(call, string(q.Raw))
		addr := q.Addr
		if q.Slot >= 0 {
			addr = f.ownerOf(q.Slot)
		}
		q.Reply = append(q.Reply[:0], f.exec(addr, q)...)
	}
	f.calls = append(f.calls, call)
}

// Start answers like Do but on a goroutine of its own, as the router does
// when a batch needs a second round, so the sessions' asynchronous path is
// what these tests exercise. syncBackend hides it.
func (f *fakeCluster) Start(ctx context.Context, reqs []*router.Request, done func(), _ *router.Writes) {
	go func() {
		f.Do(ctx, reqs)
		done()
	}()
}

// syncBackend offers only Do, so sessions answer every batch synchronously.
type syncBackend struct{ Backend }

func (f *fakeCluster) callLog() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// exec runs one command on the master at addr.
func (f *fakeCluster) exec(addr string, q *router.Request) []byte {
	cmd, err := redcon.Parse(q.Raw)
	if err != nil {
		return resp.AppendError(nil, "ERR fake: unparsable request")
	}
	args := cmd.Args
	db := f.data[addr]
	if db == nil {
		return resp.AppendError(nil, "ERR fake: no such node "+addr)
	}
	name := strings.ToLower(string(args[0]))
	keys := LookupCommand(args[0]).KeyIndexes(args, nil)
	for _, k := range keys {
		if owner := f.ownerOf(int(router.Slot(args[k]))); owner != addr {
			return resp.AppendError(nil, fmt.Sprintf("MOVED %d %s", router.Slot(args[k]), owner))
		}
		if router.Slot(args[k]) != router.Slot(args[keys[0]]) {
			return resp.AppendError(nil, "CROSSSLOT Keys in request don't hash to the same slot")
		}
	}
	switch name {
	case "get":
		if v, ok := db[string(args[1])]; ok {
			return resp.AppendBulkString(nil, v)
		}
		return resp.AppendNullBulk(nil)
	case "set":
		db[string(args[1])] = string(args[2])
		return resp.AppendSimple(nil, "OK")
	case "mset":
		for i := 1; i+1 < len(args); i += 2 {
			db[string(args[i])] = string(args[i+1])
		}
		return resp.AppendSimple(nil, "OK")
	case "mget":
		b := resp.AppendArray(nil, len(args)-1)
		for _, k := range args[1:] {
			if v, ok := db[string(k)]; ok {
				b = resp.AppendBulkString(b, v)
			} else {
				b = resp.AppendNullBulk(b)
			}
		}
		return b
	case "del", "unlink", "exists", "touch":
		n := 0
		for _, k := range args[1:] {
			if _, ok := db[string(k)]; ok {
				n++
				if name == "del" || name == "unlink" {
					delete(db, string(k))
				}
			}
		}
		return resp.AppendInt(nil, int64(n))
	case "dbsize":
		return resp.AppendInt(nil, int64(len(db)))
	case "keys":
		matched := f.sortedKeys(db, string(args[1]))
		b := resp.AppendArray(nil, len(matched))
		for _, k := range matched {
			b = resp.AppendBulkString(b, k)
		}
		return b
	case "scan":
		// The cursor is an index into the sorted keys; COUNT is honoured.
		all := f.sortedKeys(db, "*")
		cursor, _ := strconv.Atoi(string(args[1]))
		count := 10
		if len(args) == 4 && strings.EqualFold(string(args[2]), "count") {
			count, _ = strconv.Atoi(string(args[3]))
		}
		end := min(cursor+count, len(all))
		next := end
		if end == len(all) {
			next = 0
		}
		b := resp.AppendArray(nil, 2)
		b = resp.AppendBulkString(b, strconv.Itoa(next))
		b = resp.AppendArray(b, end-cursor)
		for _, k := range all[cursor:end] {
			b = resp.AppendBulkString(b, k)
		}
		return b
	case "flushdb", "flushall":
		clear(db)
		return resp.AppendSimple(nil, "OK")
	case "randomkey":
		all := f.sortedKeys(db, "*")
		if len(all) == 0 {
			return resp.AppendNullBulk(nil)
		}
		return resp.AppendBulkString(nil, all[0])
	case "script":
		return resp.AppendBulkString(nil, "sha-from-"+addr)
	case "time":
		return resp.AppendBulkString(nil, addr)
	case "sunion":
		return resp.AppendArray(nil, 0)
	}
	return resp.AppendError(nil, "ERR fake: unknown command '"+name+"'")
}

func (f *fakeCluster) sortedKeys(db map[string]string, pattern string) []string {
	var keys []string
	for k := range db {
		if ok, _ := path.Match(pattern, k); ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// startProxy runs a Server for backend on a free loopback port; it is closed
// when the test ends.
func startProxy(t testing.TB, backend Backend, edit func(*Config)) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return startProxyOn(t, ln, backend, edit)
}

// startProxyOn is startProxy serving on ln.
func startProxyOn(t testing.TB, ln net.Listener, backend Backend, edit func(*Config)) (*Server, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ListenAddr = ln.Addr().String()
	cfg.AnnounceAddr = ln.Addr().String()
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg, backend)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		select {
		case err := <-served:
			require.ErrorIs(t, err, ErrServerClosed)
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return srv, ln.Addr().String()
}

// respConn is a raw client: it sends bytes and reads whole reply frames.
type respConn struct {
	t       *testing.T
	conn    net.Conn
	rd      *bufio.Reader
	buf     []byte
	scanner *resp.Scanner
}

func dialResp(t *testing.T, addr string) *respConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &respConn{t: t, conn: conn, rd: bufio.NewReader(conn), scanner: resp.NewScanner(1 << 30)}
}

func (c *respConn) send(raw string) {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := c.conn.Write([]byte(raw))
	require.NoError(c.t, err)
}

// do sends one command and returns its raw reply.
func (c *respConn) do(args ...string) string {
	c.t.Helper()
	c.send(encodeCommand(args...))
	return c.read()
}

// read returns the next reply frame.
func (c *respConn) read() string {
	c.t.Helper()
	reply, err := c.tryRead()
	require.NoError(c.t, err)
	return reply
}

func (c *respConn) tryRead() (string, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	c.scanner.Reset()
	for {
		if len(c.buf) > 0 {
			n, err := c.scanner.Scan(c.buf)
			if err != nil {
				return "", err
			}
			if n > 0 {
				reply := string(c.buf[:n])
				c.buf = c.buf[n:]
				return reply, nil
			}
		}
		chunk := make([]byte, 64<<10)
		n, err := c.rd.Read(chunk)
		c.buf = append(c.buf, chunk[:n]...)
		if err != nil {
			if n > 0 {
				continue
			}
			return "", err
		}
	}
}

// closedByPeer reports whether the server closed the connection.
func (c *respConn) closedByPeer() bool {
	_, err := c.tryRead()
	return errors.Is(err, io.EOF) || (err != nil && !isTimeout(err))
}

func encodeCommand(args ...string) string {
	var b []byte
	b = resp.AppendArray(b, len(args))
	for _, a := range args {
		b = resp.AppendBulkString(b, a)
	}
	return string(b)
}
