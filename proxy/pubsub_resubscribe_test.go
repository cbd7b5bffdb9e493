package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// pubsubNode is a fake node that keeps Redis' Pub/Sub state per connection
// and answers (P|S)(UN)SUBSCRIBE and PING as Redis does, with hooks to lose
// connections, hold new ones, redirect shard commands, push sunsubscribe,
// leave a command unanswered and answer PING as Kvrocks does.
type pubsubNode struct {
	t    *testing.T
	addr string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns []*pubsubNodeConn
	// held, while not nil, keeps new connections unserved until closed.
	held chan struct{}
	// dropAt names a "command argument" (lower case) at which a connection
	// is closed without an answer, once.
	dropAt string
	// movedTo, when set, answers shard commands with MOVED to it.
	movedTo string
	// replicaOf, when set, is the master ROLE names.
	replicaOf string
	// silentAt names a "command argument" (lower case) the node receives
	// and never answers, once.
	silentAt string
	// kvrocksPing answers PING as Kvrocks does even on a subscribed
	// connection: +PONG, or the argument as a bulk string.
	kvrocksPing bool
}

type pubsubNodeConn struct {
	conn net.Conn
	// The fields below are guarded by pubsubNode.mu.
	channels, patterns, shards []string
	// commands is what the connection received, in order.
	commands [][]string
	closed   bool
}

func startPubSubNode(t *testing.T) *pubsubNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n := &pubsubNode{t: t, addr: ln.Addr().String(), ln: ln}
	n.wg.Add(1)
	go n.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		n.mu.Lock()
		for _, c := range n.conns {
			_ = c.conn.Close()
		}
		if n.held != nil {
			close(n.held)
			n.held = nil
		}
		n.mu.Unlock()
		n.wg.Wait()
	})
	return n
}

func (n *pubsubNode) accept() {
	defer n.wg.Done()
	for {
		conn, err := n.ln.Accept()
		if err != nil {
			return
		}
		c := &pubsubNodeConn{conn: conn}
		n.mu.Lock()
		n.conns = append(n.conns, c)
		held := n.held
		n.mu.Unlock()
		n.wg.Add(1)
		go n.serve(c, held)
	}
}

func (n *pubsubNode) serve(c *pubsubNodeConn, held chan struct{}) {
	defer n.wg.Done()
	defer func() {
		n.mu.Lock()
		c.closed = true
		n.mu.Unlock()
		_ = c.conn.Close()
	}()
	if held != nil {
		<-held
	}
	rd := redcon.NewReader(c.conn)
	for {
		cmd, err := rd.ReadCommand()
		if err != nil {
			return
		}
		args := make([]string, len(cmd.Args))
		for i, a := range cmd.Args {
			args[i] = string(a)
		}
		n.mu.Lock()
		reply, drop := n.execLocked(c, args)
		n.mu.Unlock()
		if len(reply) > 0 {
			if _, err := c.conn.Write(reply); err != nil {
				return
			}
		}
		if drop {
			return
		}
	}
}

// execLocked runs one command on c; drop reports that the connection must
// be closed after the replies so far.
func (n *pubsubNode) execLocked(c *pubsubNodeConn, args []string) (reply []byte, drop bool) {
	c.commands = append(c.commands, args)
	name := strings.ToLower(args[0])
	if len(args) > 1 && n.silentAt == name+" "+args[1] {
		n.silentAt = ""
		return nil, false
	}
	if n.movedTo != "" && (name == "ssubscribe" || name == "sunsubscribe") && len(args) > 1 {
		return fmt.Appendf(nil, "-MOVED %d %s\r\n", router.Slot([]byte(args[1])), n.movedTo), false
	}
	var set *[]string
	switch name {
	case "subscribe", "unsubscribe":
		set = &c.channels
	case "psubscribe", "punsubscribe":
		set = &c.patterns
	case "ssubscribe", "sunsubscribe":
		set = &c.shards
	case "role":
		if n.replicaOf == "" {
			return []byte("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"), false
		}
		host, port, _ := net.SplitHostPort(n.replicaOf)
		reply = resp.AppendArray(reply, 5)
		reply = resp.AppendBulkString(reply, "slave")
		reply = resp.AppendBulkString(reply, host)
		reply = resp.AppendInt(reply, int64(mustAtoi(n.t, port)))
		reply = resp.AppendBulkString(reply, "connected")
		return resp.AppendInt(reply, 0), false
	case "ping":
		if n.kvrocksPing && len(args) > 1 {
			return resp.AppendBulkString(reply, args[1]), false
		}
		if n.kvrocksPing {
			return resp.AppendSimple(reply, "PONG"), false
		}
		reply = resp.AppendArray(reply, 2)
		reply = resp.AppendBulkString(reply, "pong")
		if len(args) > 1 {
			return resp.AppendBulkString(reply, args[1]), false
		}
		return resp.AppendBulkString(reply, ""), false
	default:
		return resp.AppendError(nil, "ERR fake: unknown command"), false
	}
	count := func() int64 {
		if set == &c.shards {
			return int64(len(c.shards))
		}
		return int64(len(c.channels) + len(c.patterns))
	}
	targets := args[1:]
	if len(targets) == 0 { // unsubscribe from everything
		targets = slices.Clone(*set)
		if len(targets) == 0 {
			reply = resp.AppendArray(reply, 3)
			reply = resp.AppendBulkString(reply, name)
			reply = resp.AppendNullBulk(reply)
			return resp.AppendInt(reply, count()), false
		}
	}
	for _, ch := range targets {
		if n.dropAt == name+" "+ch {
			n.dropAt = ""
			return reply, true
		}
		switch {
		case strings.Contains(name, "unsubscribe"):
			*set = slices.DeleteFunc(*set, func(s string) bool { return s == ch })
		case !slices.Contains(*set, ch):
			*set = append(*set, ch)
		}
		reply = resp.AppendArray(reply, 3)
		reply = resp.AppendBulkString(reply, name)
		reply = resp.AppendBulkString(reply, ch)
		reply = resp.AppendInt(reply, count())
	}
	return reply, false
}

// publish sends a message to the connections subscribed to channel, as
// PUBLISH (or SPUBLISH with shard) does; it returns how many got it.
func (n *pubsubNode) publish(channel, message string, shard bool) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	kind, receivers := "message", 0
	if shard {
		kind = "smessage"
	}
	for _, c := range n.conns {
		set := c.channels
		if shard {
			set = c.shards
		}
		if c.closed || !slices.Contains(set, channel) {
			continue
		}
		b := resp.AppendArray(nil, 3)
		b = resp.AppendBulkString(b, kind)
		b = resp.AppendBulkString(b, channel)
		b = resp.AppendBulkString(b, message)
		if _, err := c.conn.Write(b); err == nil {
			receivers++
		}
	}
	return receivers
}

// dropShard removes a shard channel from every connection with the push
// Redis sends when the channel's slot moves away.
func (n *pubsubNode) dropShard(channel string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		if c.closed || !slices.Contains(c.shards, channel) {
			continue
		}
		c.shards = slices.DeleteFunc(c.shards, func(s string) bool { return s == channel })
		b := resp.AppendArray(nil, 3)
		b = resp.AppendBulkString(b, "sunsubscribe")
		b = resp.AppendBulkString(b, channel)
		b = resp.AppendInt(b, int64(len(c.shards)))
		_, _ = c.conn.Write(b)
	}
}

// dropConnections closes every connection, as a restarting node does.
func (n *pubsubNode) dropConnections() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		_ = c.conn.Close()
	}
}

// hold keeps the connections accepted from now on unserved; the returned
// function serves them.
func (n *pubsubNode) hold() (release func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	held := make(chan struct{})
	n.held = held
	return func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.held == held {
			close(held)
			n.held = nil
		}
	}
}

// live returns the connections not closed, oldest first.
func (n *pubsubNode) live() []*pubsubNodeConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	var live []*pubsubNodeConn
	for _, c := range n.conns {
		if !c.closed {
			live = append(live, c)
		}
	}
	return live
}

// state returns a connection's subscriptions and received commands.
func (n *pubsubNode) state(c *pubsubNodeConn) (channels, patterns, shards []string, commands [][]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Sorted(slices.Values(c.channels)), slices.Sorted(slices.Values(c.patterns)),
		slices.Sorted(slices.Values(c.shards)), slices.Clone(c.commands)
}

func (n *pubsubNode) accepted() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns)
}

// pubsubBackend is a DedicatedBackend over pubsubNodes: masters lists them,
// and every slot belongs to owner until the test moves it.
type pubsubBackend struct {
	*fakeCluster
	mu      sync.Mutex
	masters []string
	owner   string
}

func newPubSubBackend(nodes ...*pubsubNode) *pubsubBackend {
	b := &pubsubBackend{fakeCluster: newFakeCluster(1), owner: nodes[0].addr}
	for _, n := range nodes {
		b.masters = append(b.masters, n.addr)
	}
	return b
}

func (b *pubsubBackend) Masters() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.masters)
}

func (b *pubsubBackend) MasterOf(int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.owner
}

func (b *pubsubBackend) setOwner(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.owner = addr
}

func (b *pubsubBackend) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	var dialer net.Dialer
	return dialer.DialContext(ctx, "tcp", addr)
}

func subscribeFrame(kind, channel string, count int) string {
	return fmt.Sprintf("*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:%d\r\n", len(kind), kind, len(channel), channel, count)
}

func messageFrame(kind, channel, payload string) string {
	return fmt.Sprintf("*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(kind), kind, len(channel), channel, len(payload), payload)
}

const pongFrame = "*2\r\n$4\r\npong\r\n$0\r\n\r\n"

// waitSubscribed waits until a live connection of node other than the
// ones in before holds exactly channels, patterns and shards, and returns it.
func waitSubscribed(t *testing.T, node *pubsubNode, before []*pubsubNodeConn, channels, patterns, shards []string) *pubsubNodeConn {
	t.Helper()
	var found *pubsubNodeConn
	require.Eventually(t, func() bool {
		for _, c := range node.live() {
			if slices.Contains(before, c) {
				continue
			}
			ch, pat, sh, _ := node.state(c)
			if slices.Equal(ch, channels) && slices.Equal(pat, patterns) && slices.Equal(sh, shards) {
				found = c
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond, "re-subscribed to %v %v %v", channels, patterns, shards)
	return found
}

// A lost subscriber connection is opened again and re-subscribed in one
// write; the confirmations never reach the client, messages do.
func TestLostSubscriptionIsRestoredUnseen(t *testing.T) {
	node := startPubSubNode(t)
	_, addr := startProxy(t, newPubSubBackend(node), nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	c.send(encodeCommand("SUBSCRIBE", "b", "a") + encodeCommand("PSUBSCRIBE", "p*"))
	for _, want := range []string{subscribeFrame("subscribe", "b", 1), subscribeFrame("subscribe", "a", 2), subscribeFrame("psubscribe", "p*", 3)} {
		require.Equal(t, want, c.read())
	}
	first := node.live()
	require.Len(t, first, 1)

	node.dropConnections()
	restored := waitSubscribed(t, node, first, []string{"a", "b"}, []string{"p*"}, nil)
	_, _, _, commands := node.state(restored)
	assert.Equal(t, [][]string{{"subscribe", "a", "b"}, {"psubscribe", "p*"}}, commands)

	require.Equal(t, 1, node.publish("a", "after", false))
	assert.Equal(t, messageFrame("message", "a", "after"), c.read(), "the first frame after the loss is the message")
	assert.Equal(t, pongFrame, c.do("PING"))
	assert.Equal(t, subscribeFrame("subscribe", "c", 4), c.do("SUBSCRIBE", "c"), "the node's count covers what was restored")
}

// Commands sent while the connection is being re-established are answered
// after the re-subscription, in order; an unsubscribed channel stays so.
func TestCommandsWhileResubscribing(t *testing.T) {
	node := startPubSubNode(t)
	_, addr := startProxy(t, newPubSubBackend(node), nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	c.send(encodeCommand("SUBSCRIBE", "a", "b"))
	require.Equal(t, subscribeFrame("subscribe", "a", 1), c.read())
	require.Equal(t, subscribeFrame("subscribe", "b", 2), c.read())
	first := node.live()

	release := node.hold()
	node.dropConnections()
	require.Eventually(t, func() bool { return node.accepted() == 2 }, 10*time.Second, time.Millisecond, "the proxy dials again")
	c.send(encodeCommand("UNSUBSCRIBE", "a") + encodeCommand("SUBSCRIBE", "c") + encodeCommand("PING", "x"))
	release()
	for _, want := range []string{
		subscribeFrame("unsubscribe", "a", 1),
		subscribeFrame("subscribe", "c", 2),
		"*2\r\n$4\r\npong\r\n$1\r\nx\r\n",
	} {
		assert.Equal(t, want, c.read())
	}
	restored := waitSubscribed(t, node, first, []string{"b", "c"}, nil, nil)
	_, _, _, commands := node.state(restored)
	assert.Equal(t, [][]string{{"subscribe", "a", "b"}, {"unsubscribe", "a"}, {"subscribe", "c"}, {"ping", "x"}}, commands)
	assert.Zero(t, node.publish("a", "gone", false))
	require.Equal(t, 1, node.publish("b", "kept", false))
	assert.Equal(t, messageFrame("message", "b", "kept"), c.read())
}

// A command whose connection is lost before it is fully answered is sent
// again for the part not answered; the client gets each reply once.
func TestCommandInFlightOnLostConnection(t *testing.T) {
	node := startPubSubNode(t)
	_, addr := startProxy(t, newPubSubBackend(node), nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	require.Equal(t, subscribeFrame("subscribe", "a", 1), c.do("SUBSCRIBE", "a"))
	first := node.live()

	node.mu.Lock()
	node.dropAt = "subscribe y"
	node.mu.Unlock()
	c.send(encodeCommand("SUBSCRIBE", "x", "y", "z") + encodeCommand("UNSUBSCRIBE", "a"))
	for _, want := range []string{
		subscribeFrame("subscribe", "x", 2), // from the first connection
		subscribeFrame("subscribe", "y", 3),
		subscribeFrame("subscribe", "z", 4),
		subscribeFrame("unsubscribe", "a", 3),
	} {
		assert.Equal(t, want, c.read())
	}
	restored := waitSubscribed(t, node, first, []string{"x", "y", "z"}, nil, nil)
	_, _, _, commands := node.state(restored)
	assert.Equal(t, [][]string{{"subscribe", "a", "x"}, {"subscribe", "y", "z"}, {"unsubscribe", "a"}}, commands)
	assert.Equal(t, pongFrame, c.do("PING"))
}

// Shard channels follow the sunsubscribe a node pushes when their slot
// moves away, and MOVED, without the client seeing either.
func TestShardSubscriptionFollowsItsSlot(t *testing.T) {
	oldMaster, newMaster := startPubSubNode(t), startPubSubNode(t)
	backend := newPubSubBackend(oldMaster, newMaster)
	_, addr := startProxy(t, backend, nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	require.Equal(t, subscribeFrame("ssubscribe", "{s}1", 1), c.do("SSUBSCRIBE", "{s}1"))
	old := oldMaster.live()
	require.Len(t, old, 1)

	// A failover the proxy's topology has not seen yet: the old master, a
	// replica now, drops the channel and names its new master.
	oldMaster.mu.Lock()
	oldMaster.replicaOf = newMaster.addr
	oldMaster.mu.Unlock()
	oldMaster.dropShard("{s}1")
	moved := waitSubscribed(t, newMaster, nil, nil, nil, []string{"{s}1"})
	require.Eventually(t, func() bool { return len(oldMaster.live()) == 0 }, 10*time.Second, time.Millisecond,
		"the old master's connection is released once empty")
	_, _, _, commands := oldMaster.state(old[0])
	assert.Equal(t, [][]string{{"ssubscribe", "{s}1"}, {"role"}}, commands)
	require.Equal(t, 1, newMaster.publish("{s}1", "m", true))
	assert.Equal(t, messageFrame("smessage", "{s}1", "m"), c.read(), "no sunsubscribe reaches the client")

	// A node that does not serve the slot redirects the client's own
	// SSUBSCRIBE.
	oldMaster.mu.Lock()
	oldMaster.replicaOf, oldMaster.movedTo = "", newMaster.addr
	oldMaster.mu.Unlock()
	assert.Equal(t, subscribeFrame("ssubscribe", "{s}2", 2), c.do("SSUBSCRIBE", "{s}2"))
	_, _, _, commands = newMaster.state(moved)
	assert.Equal(t, [][]string{{"ssubscribe", "{s}1"}, {"ssubscribe", "{s}2"}}, commands)

	// A slot migrated away from the node the topology still names: the
	// node is a master, its MOVED is followed.
	backend.setOwner(newMaster.addr)
	require.Equal(t, subscribeFrame("ssubscribe", "{m}1", 3), c.do("SSUBSCRIBE", "{m}1"))
	newMaster.mu.Lock()
	newMaster.movedTo = oldMaster.addr
	newMaster.mu.Unlock()
	oldMaster.mu.Lock()
	oldMaster.movedTo = ""
	oldMaster.mu.Unlock()
	newMaster.dropShard("{m}1")
	migrated := waitSubscribed(t, oldMaster, old, nil, nil, []string{"{m}1"})
	_, _, _, commands = oldMaster.state(migrated)
	assert.Equal(t, [][]string{{"ssubscribe", "{m}1"}}, commands)
	_, _, _, commands = newMaster.state(moved)
	assert.Equal(t, [][]string{{"ssubscribe", "{m}1"}, {"role"}, {"ssubscribe", "{m}1"}}, commands[2:])

	// A lost shard connection is opened again on the slot's master.
	newMaster.mu.Lock()
	newMaster.movedTo = ""
	newMaster.mu.Unlock()
	newMaster.dropConnections()
	waitSubscribed(t, newMaster, []*pubsubNodeConn{moved}, nil, nil, []string{"{s}1", "{s}2"})
	assert.Equal(t, subscribeFrame("sunsubscribe", "{s}1", 1), c.do("SUNSUBSCRIBE", "{s}1"))
	unsubscribed := []string{c.do("SUNSUBSCRIBE"), c.read()}
	assert.ElementsMatch(t, []string{subscribeFrame("sunsubscribe", "{s}2", 0), subscribeFrame("sunsubscribe", "{m}1", 0)}, unsubscribed)
	assert.Equal(t, "+PONG\r\n", c.do("PING"), "out of subscriber mode")
}

// A subscription that cannot be restored in time ends the client's
// connection, with a warning, as a server going away would.
func TestUnrestorableSubscriptionDisconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := ln.Addr().String()
	require.NoError(t, ln.Close())
	var logs bytes.Buffer
	var logsMu sync.Mutex
	srv, _ := startProxy(t, &pubsubBackend{fakeCluster: newFakeCluster(1), masters: []string{refused}, owner: refused},
		func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&lockedWriter{mu: &logsMu, w: &logs}, nil)) })

	client, peer := net.Pipe()
	t.Cleanup(func() { _ = peer.Close() })
	sub := newSubscriber(context.Background(), srv, client)
	t.Cleanup(sub.shutdown)
	sub.resubscribeTimeout = 100 * time.Millisecond
	sub.mu.Lock()
	lost := newSubConn(globalSubscriptions, nil)
	lost.channels["a"] = struct{}{}
	lost.lostAt = time.Now()
	sub.addConnLocked(lost)
	sub.mu.Unlock()

	require.NoError(t, peer.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, err := peer.Read(make([]byte, 64))
	assert.Zero(t, n, "nothing is written to the client")
	assert.ErrorIs(t, err, io.EOF, "the client's connection is closed")
	logsMu.Lock()
	defer logsMu.Unlock()
	assert.Contains(t, logs.String(), "level=WARN msg=\"pubsub: lost subscriptions could not be restored, disconnecting the client\"")
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Shard channels of a master that died, and the command in flight on it,
// go to the slot's master once the topology names it.
func TestShardSubscriptionOfADeadMasterMovesOn(t *testing.T) {
	dead, successor := startPubSubNode(t), startPubSubNode(t)
	backend := newPubSubBackend(dead, successor)
	_, addr := startProxy(t, backend, nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	require.Equal(t, subscribeFrame("ssubscribe", "{d}1", 1), c.do("SSUBSCRIBE", "{d}1"))

	// The node dies as the next command reaches it, and cannot be dialled.
	require.NoError(t, dead.ln.Close())
	dead.mu.Lock()
	dead.dropAt = "ssubscribe {d}2"
	dead.mu.Unlock()
	c.send(encodeCommand("SSUBSCRIBE", "{d}2"))
	require.Eventually(t, func() bool { return len(dead.live()) == 0 }, 10*time.Second, time.Millisecond)
	backend.setOwner(successor.addr)

	assert.Equal(t, subscribeFrame("ssubscribe", "{d}2", 2), c.readWithin(10*time.Second))
	moved := waitSubscribed(t, successor, nil, nil, nil, []string{"{d}1", "{d}2"})
	_, _, _, commands := successor.state(moved)
	assert.Equal(t, [][]string{{"ssubscribe", "{d}1"}, {"ssubscribe", "{d}2"}}, commands)
	require.Equal(t, 1, successor.publish("{d}1", "m", true))
	assert.Equal(t, messageFrame("smessage", "{d}1", "m"), c.read())
	assert.Equal(t, pongFrame, c.do("PING"))
}
