package proxy

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
)

// scriptedNode is a backend node on a free loopback port: each command it
// reads is answered by script; a nil reply answers nothing, hangUp closes
// the connection.
type scriptedNode struct {
	addr     string
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
	accepted atomic.Int64
	closed   atomic.Int64 // connections the proxy closed
}

func startScriptedNode(t *testing.T, script func(args []string) (reply string, hangUp bool)) *scriptedNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n := &scriptedNode{addr: ln.Addr().String(), ln: ln}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			n.accepted.Add(1)
			n.mu.Lock()
			n.conns = append(n.conns, conn)
			n.mu.Unlock()
			n.wg.Add(1)
			go n.serve(conn, script)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		n.mu.Lock()
		for _, c := range n.conns {
			_ = c.Close()
		}
		n.mu.Unlock()
		n.wg.Wait()
	})
	return n
}

func (n *scriptedNode) serve(conn net.Conn, script func([]string) (string, bool)) {
	defer n.wg.Done()
	rd := redcon.NewReader(conn)
	for {
		cmd, err := rd.ReadCommand()
		if err != nil {
			n.closed.Add(1)
			return
		}
		args := make([]string, len(cmd.Args))
		for i, a := range cmd.Args {
			args[i] = string(a)
		}
		reply, hangUp := script(args)
		if hangUp {
			_ = conn.Close()
			return
		}
		if reply != "" {
			_, _ = conn.Write([]byte(reply))
		}
	}
}

// dedicatedFake is a fakeCluster whose every master is one scripted node
// for dedicated connections.
type dedicatedFake struct {
	*fakeCluster
	node string
}

func (d *dedicatedFake) MasterOf(int) string { return d.node }

func (d *dedicatedFake) DialNode(ctx context.Context, _ string) (net.Conn, error) {
	var dialer net.Dialer
	return dialer.DialContext(ctx, "tcp", d.node)
}

// The proxy answers the errors Redis finds before queueing; a queued
// command goes to the server behind MULTI at once, and DISCARD after it.
func TestTransactionErrorsAnsweredByTheProxy(t *testing.T) {
	var log nodeLog
	node := txNode(t, &log, queuedOK, func(int) string { return "-ERR EXEC is not expected\r\n" })
	_, addr := startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: node.addr}, nil)
	c := dialResp(t, addr)
	steps := []struct{ cmd, want []string }{
		{[]string{"EXEC"}, []string{"-ERR EXEC without MULTI\r\n"}},
		{[]string{"DISCARD"}, []string{"-ERR DISCARD without MULTI\r\n"}},
		{[]string{"MULTI"}, []string{"+OK\r\n"}},
		{[]string{"EXEC"}, []string{"*0\r\n"}},
		{[]string{"MULTI"}, []string{"+OK\r\n"}},
		{[]string{"MULTI"}, []string{"-ERR MULTI calls can not be nested\r\n"}},
		{[]string{"WATCH", "k"}, []string{"-ERR WATCH inside MULTI is not allowed\r\n"}},
		{[]string{"SET", "{a}k", "v"}, []string{"+QUEUED\r\n"}},
		{[]string{"GET", "{b}k"}, []string{"-" + errCrossSlot + "\r\n"}},
		{[]string{"EXEC"}, []string{"-" + errExecAbort + "\r\n"}},
		{[]string{"MULTI"}, []string{"+OK\r\n"}},
		{[]string{"GET"}, []string{"-ERR wrong number of arguments for 'get' command\r\n"}},
		{[]string{"NOPE"}, []string{"-ERR unknown command 'NOPE', with args beginning with: \r\n"}},
		{[]string{"SUBSCRIBE", "ch"}, []string{"-ERR command 'SUBSCRIBE' is not supported by kvproxy\r\n"}},
		{[]string{"EXEC"}, []string{"-" + errExecAbort + "\r\n"}},
		{[]string{"MULTI"}, []string{"+OK\r\n"}},
		{[]string{"SET", "k", "v"}, []string{"+QUEUED\r\n"}},
		{[]string{"DISCARD"}, []string{"+OK\r\n"}},
		{[]string{"UNWATCH"}, []string{"+OK\r\n"}},
		{[]string{"UNSUBSCRIBE"}, []string{"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"}},
		{[]string{"PUNSUBSCRIBE", "a", "b"}, []string{"*3\r\n$12\r\npunsubscribe\r\n$1\r\na\r\n:0\r\n", "*3\r\n$12\r\npunsubscribe\r\n$1\r\nb\r\n:0\r\n"}},
		{[]string{"BLPOP", "{a}l", "{b}l", "0"}, []string{"-" + errCrossSlot + "\r\n"}},
		{[]string{"MULTI"}, []string{"+OK\r\n"}},
		{[]string{"RESET"}, []string{"+RESET\r\n"}},
		{[]string{"EXEC"}, []string{"-ERR EXEC without MULTI\r\n"}},
	}
	for _, st := range steps {
		c.send(encodeCommand(st.cmd...))
		for _, want := range st.want {
			assert.Equal(t, want, c.read(), "%v", st.cmd)
		}
	}
	assert.Equal(t, []string{"MULTI", "SET {a}k v", "MULTI", "SET k v", "DISCARD"}, log.all(),
		"EXEC of a transaction the proxy doomed is not sent")
	assert.Equal(t, int64(2), node.accepted.Load(), "a connection left in MULTI by a doomed transaction is not reused")
}

func TestDedicatedCommandsNeedADedicatedBackend(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(3), nil)
	c := dialResp(t, addr)
	for _, cmd := range [][]string{{"MULTI"}, {"BLPOP", "l", "0"}, {"SUBSCRIBE", "ch"}, {"PUBLISH", "ch", "m"}} {
		assert.Equal(t, "-ERR command '"+cmd[0]+"' is not supported by kvproxy\r\n", c.do(cmd...))
	}
	assert.Equal(t, "+PONG\r\n", c.do("PING"))
}

// EXEC tells whether the transaction may have run when the connection is
// lost.
func TestExecOnLostConnection(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hangUpOn string
		want     string
	}{
		{"before MULTI is answered", "MULTI", errLostBefore},
		{"after EXEC was sent", "EXEC", errLostAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := startScriptedNode(t, func(args []string) (string, bool) {
				switch {
				case strings.EqualFold(args[0], tc.hangUpOn):
					return "", true
				case strings.EqualFold(args[0], "MULTI"):
					return "+OK\r\n", false
				}
				return "+QUEUED\r\n", false
			})
			_, addr := startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: node.addr}, nil)
			c := dialResp(t, addr)
			c.send(encodeCommand("MULTI") + encodeCommand("SET", "k", "v") + encodeCommand("EXEC") + encodeCommand("PING"))
			assert.Equal(t, "+OK\r\n", c.read())
			assert.Equal(t, "+QUEUED\r\n", c.read())
			assert.Equal(t, "-"+tc.want+"\r\n", c.read())
			assert.Equal(t, "+PONG\r\n", c.read())
		})
	}
}

// A transaction's connection goes back to the pool and serves the next one.
// startTransactionNode runs a node that accepts any transaction, every EXEC
// answering one integer reply.
func startTransactionNode(t *testing.T) *scriptedNode {
	return startScriptedNode(t, func(args []string) (string, bool) {
		switch strings.ToUpper(args[0]) {
		case "MULTI":
			return "+OK\r\n", false
		case "EXEC":
			return "*1\r\n:1\r\n", false
		}
		return "+QUEUED\r\n", false
	})
}

func TestTransactionConnectionIsReused(t *testing.T) {
	node := startTransactionNode(t)
	_, addr := startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: node.addr}, nil)
	c := dialResp(t, addr)
	for range 3 {
		c.send(encodeCommand("MULTI") + encodeCommand("INCR", "k") + encodeCommand("EXEC"))
		assert.Equal(t, "+OK\r\n", c.read())
		assert.Equal(t, "+QUEUED\r\n", c.read())
		assert.Equal(t, "*1\r\n:1\r\n", c.read())
	}
	assert.Equal(t, int64(1), node.accepted.Load())
}

// The cap on blocking commands, and a client hanging up mid-wait, checked
// against a node that never answers.
func TestBlockingCapAndHangUp(t *testing.T) {
	node := startScriptedNode(t, func([]string) (string, bool) { return "", false })
	srv, addr := startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: node.addr},
		func(c *Config) { c.MaxBlockingConns = 1 })
	a := dialResp(t, addr)
	b := dialResp(t, addr)
	a.send(encodeCommand("SET", "k", "v") + encodeCommand("BLPOP", "list", "0"))
	assert.Equal(t, "+OK\r\n", a.read(), "replies before a blocking command are not held back")
	require.Eventually(t, func() bool { return len(srv.blockingSlots) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "-"+errTooManyBlocking+"\r\n", b.do("BRPOP", "other", "0"))

	require.NoError(t, a.conn.Close())
	require.Eventually(t, func() bool { return len(srv.blockingSlots) == 0 && node.closed.Load() == 1 },
		5*time.Second, 5*time.Millisecond, "the backend connection is closed with the client's")
}

func TestParsePubSubReply(t *testing.T) {
	for _, tc := range []struct {
		frame   string
		kind    string
		channel string
		nilCh   bool
		ok      bool
	}{
		{"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n", "subscribe", "news", false, true},
		{"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n", "unsubscribe", "", true, true},
		{"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n", "pmessage", "n*", false, true},
		{"*2\r\n$4\r\npong\r\n$0\r\n\r\n", "pong", "", false, true},
		{"+OK\r\n", "", "", false, false},
		{"*1\r\n$4\r\npong\r\n", "", "", false, false},
		{"*3\r\n$9\r\nsubscribe\r\n$9\r\nnews\r\n:1\r\n", "", "", false, false},
		{"*3\r\n$-1\r\n$4\r\nnews\r\n:1\r\n", "", "", false, false},
		{"*3\r\n:1\r\n", "", "", false, false},
	} {
		kind, channel, ok := parsePubSubReply([]byte(tc.frame))
		assert.Equal(t, tc.ok, ok, tc.frame)
		assert.Equal(t, tc.kind, kind, tc.frame)
		assert.Equal(t, tc.channel, string(channel), tc.frame)
		if ok {
			assert.Equal(t, tc.nilCh, channel == nil, tc.frame)
		}
	}
}

// FuzzParsePubSubReply reads arbitrary frames: what it accepts comes from
// an array in the frame, and a Pub/Sub frame built from the other inputs
// reads back as built.
func FuzzParsePubSubReply(f *testing.F) {
	f.Add([]byte("*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"), "message", []byte("news"), false, uint8(1))
	f.Add([]byte("*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"), "unsubscribe", []byte(nil), true, uint8(1))
	f.Add([]byte("*2\r\n$99999999999\r\n"), "pong", []byte(""), false, uint8(0))
	f.Add([]byte("*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"), "pmessage", []byte("a\r\nb"), false, uint8(2))
	f.Add([]byte("*2\r\n$-1\r\n$1\r\na\r\n"), "", []byte("x"), false, uint8(0))
	f.Add([]byte("*1\r\n$4\r\npong\r\n"), "smessage", []byte("{a}"), false, uint8(255))
	f.Fuzz(func(t *testing.T, frame []byte, kind string, channel []byte, nilChannel bool, extra uint8) {
		gotKind, gotChannel, ok := parsePubSubReply(frame)
		if ok {
			require.Equal(t, byte('*'), frame[0])
			assert.Contains(t, string(frame), "\r\n"+gotKind+"\r\n")
			assert.Contains(t, string(frame), string(gotChannel))
		}

		built := resp.AppendArray(nil, 2+int(extra))
		built = resp.AppendBulkString(built, kind)
		if nilChannel {
			built, channel = resp.AppendNullBulk(built), nil
		} else {
			built = resp.AppendBulk(built, channel)
		}
		for range extra {
			built = resp.AppendInt(built, 1)
		}
		gotKind, gotChannel, ok = parsePubSubReply(built)
		require.True(t, ok, "%q", built)
		assert.Equal(t, kind, gotKind)
		assert.Equal(t, nilChannel, gotChannel == nil)
		assert.Equal(t, string(channel), string(gotChannel))
	})
}

// A subscriber connection follows its subscriptions from the node's replies
// and knows when every command in flight is answered.
func TestSubConnAccounting(t *testing.T) {
	c := &subConn{channels: map[string]struct{}{}, patterns: map[string]struct{}{}, shards: map[string]struct{}{}}
	c.expect = []int{2, 1, 1, 1}
	c.account([]byte("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"))
	c.account([]byte("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n")) // not a reply
	assert.Equal(t, []int{1, 1, 1, 1}, c.expect)
	c.account([]byte("*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"))
	c.account([]byte("*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n"))
	assert.Equal(t, []int{1, 1}, c.expect)
	assert.Equal(t, 3, c.subscriptions())
	c.account([]byte("-ERR some failure\r\n")) // an error ends its command
	assert.Equal(t, []int{1}, c.expect)
	c.account([]byte("*2\r\n$4\r\npong\r\n$0\r\n\r\n"))
	assert.Empty(t, c.expect)
	c.account([]byte("*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n"))
	c.account([]byte("*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:1\r\n"))
	assert.Equal(t, map[string]struct{}{"b": {}}, c.channels)
	assert.Empty(t, c.patterns)
}

// Close ends blocking commands and subscriptions whose node never answers,
// once the shutdown budget is spent.
func TestCloseEndsDedicatedWaits(t *testing.T) {
	node := startScriptedNode(t, func([]string) (string, bool) { return "", false })
	srv, addr := startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: node.addr},
		func(c *Config) { c.ShutdownTimeout = 100 * time.Millisecond })
	blocked := dialResp(t, addr)
	blocked.send(encodeCommand("BLPOP", "list", "0"))
	subscriber := dialResp(t, addr)
	subscriber.send(encodeCommand("SUBSCRIBE", "ch") + encodeCommand("PING"))
	require.Eventually(t, func() bool { return node.accepted.Load() == 2 && len(srv.blockingSlots) == 1 },
		5*time.Second, 5*time.Millisecond)

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	assert.True(t, subscriber.closedByPeer())
	reply, err := blocked.tryRead()
	if err == nil {
		assert.True(t, strings.HasPrefix(reply, "-ERR "), reply)
	}
	assert.Eventually(t, func() bool { return node.closed.Load() == 2 }, 5*time.Second, 5*time.Millisecond,
		"both backend connections are closed")
}
