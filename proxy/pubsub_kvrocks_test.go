package proxy

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/router"
)

// Pub/Sub against nodes that behave as Kvrocks does where it differs from
// Redis: PING answered +PONG on a subscribed connection, and shard channels
// that a node keeps serving after their slot moved away (no MOVED, no
// sunsubscribe).

// startKvrocksPingNode is a fake node answering PING as Kvrocks does.
func startKvrocksPingNode(t *testing.T) *pubsubNode {
	node := startPubSubNode(t)
	node.mu.Lock()
	node.kvrocksPing = true
	node.mu.Unlock()
	return node
}

// The client gets Redis' ["pong", payload] for the +PONG or bulk payload
// Kvrocks answers, and its next commands are answered: PING settles.
func TestSubscribedPingAnsweredAsKvrocksDoes(t *testing.T) {
	start := func(t *testing.T) (*pubsubNode, *respConn) {
		node := startKvrocksPingNode(t)
		_, addr := startProxy(t, newPubSubBackend(node), nil)
		requireNoSubscriberLeft(t)
		return node, dialResp(t, addr)
	}

	t.Run("SUBSCRIBE", func(t *testing.T) {
		node, c := start(t)
		require.Equal(t, subscribeFrame("subscribe", "a", 1), c.do("SUBSCRIBE", "a"))
		assert.Equal(t, pongFrame, c.do("PING"))
		assert.Equal(t, "*2\r\n$4\r\npong\r\n$1\r\nx\r\n", c.do("PING", "x"))
		assert.Equal(t, "*2\r\n$4\r\npong\r\n$4\r\nPONG\r\n", c.do("PING", "PONG"), "a payload PONG is not Kvrocks' +PONG")
		c.send(encodeCommand("PING") + encodeCommand("SUBSCRIBE", "b") + encodeCommand("PING", "y"))
		for _, want := range []string{pongFrame, subscribeFrame("subscribe", "b", 2), "*2\r\n$4\r\npong\r\n$1\r\ny\r\n"} {
			assert.Equal(t, want, c.read())
		}
		require.Equal(t, 1, node.publish("b", "m", false))
		assert.Equal(t, messageFrame("message", "b", "m"), c.read())
	})

	t.Run("RESP3", func(t *testing.T) {
		node, c := start(t)
		require.Contains(t, c.do("HELLO", "3"), "proto")
		require.Equal(t, ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n", c.do("SUBSCRIBE", "a"))
		assert.Equal(t, "+PONG\r\n", c.do("PING"))
		assert.Equal(t, "$1\r\nx\r\n", c.do("PING", "x"), "Kvrocks' bulk pong settles PING")
		assert.Equal(t, "+PONG\r\n", c.do("PING"), "and the next PING is answered")
		require.Equal(t, 1, node.publish("a", "m", false))
		assert.Equal(t, ">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n", c.read())
	})

	t.Run("SSUBSCRIBE only", func(t *testing.T) {
		_, c := start(t)
		require.Equal(t, subscribeFrame("ssubscribe", "{s}1", 1), c.do("SSUBSCRIBE", "{s}1"))
		assert.Equal(t, pongFrame, c.do("PING"))
		assert.Equal(t, subscribeFrame("ssubscribe", "{s}2", 2), c.do("SSUBSCRIBE", "{s}2"))
	})

	t.Run("while the connection is re-established", func(t *testing.T) {
		node, c := start(t)
		require.Equal(t, subscribeFrame("subscribe", "r", 1), c.do("SUBSCRIBE", "r"))
		before := node.live()
		release := node.hold()
		t.Cleanup(release)
		node.dropConnections()
		require.Eventually(t, func() bool { return node.accepted() == 2 }, 10*time.Second, time.Millisecond,
			"the proxy dials again")
		c.send(encodeCommand("PING", "z") + encodeCommand("SUBSCRIBE", "s"))
		release()
		assert.Equal(t, "*2\r\n$4\r\npong\r\n$1\r\nz\r\n", c.read(), "the re-subscription's confirmation is not taken for the pong")
		assert.Equal(t, subscribeFrame("subscribe", "s", 2), c.read())
		restored := waitSubscribed(t, node, before, []string{"r", "s"}, nil, nil)
		_, _, _, commands := node.state(restored)
		assert.Equal(t, [][]string{{"subscribe", "r"}, {"ping", "z"}, {"subscribe", "s"}}, commands)
	})
}

func TestSubscribedPong(t *testing.T) {
	for _, tc := range []struct {
		frame, pong string
		ok          bool
	}{
		{"+PONG\r\n", pongFrame, true},
		{"$1\r\nx\r\n", "*2\r\n$4\r\npong\r\n$1\r\nx\r\n", true},
		{"$0\r\n\r\n", pongFrame, true},
		{"$4\r\nPONG\r\n", "*2\r\n$4\r\npong\r\n$4\r\nPONG\r\n", true},
		{pongFrame, "", false},
		{"*2\r\n$4\r\npong\r\n$1\r\nx\r\n", "", false},
		{"$-1\r\n", "", false},
		{"$2\r\nx\r\n", "", false},
		{"$1\r\nx\r\n$1\r\ny\r\n", "", false},
		{"-ERR x\r\n", "", false},
		{":1\r\n", "", false},
		{"", "", false},
	} {
		pong, ok := subscribedPong([]byte(tc.frame))
		assert.Equal(t, tc.ok, ok, "%q", tc.frame)
		assert.Equal(t, tc.pong, string(pong), "%q", tc.frame)
	}
}

func FuzzSubscribedPong(f *testing.F) {
	f.Add([]byte("+PONG\r\n"))
	f.Add([]byte("$1\r\nx\r\n"))
	f.Add([]byte(pongFrame))
	f.Add([]byte("$99999999999999999999\r\n"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		pong, ok := subscribedPong(frame)
		if !ok {
			assert.Nil(t, pong)
			return
		}
		kind, payload, isPubSub := parsePubSubReply(pong)
		require.True(t, isPubSub, "%q", pong)
		assert.Equal(t, "pong", kind)
		if frame[0] == '+' {
			assert.Empty(t, payload)
		} else {
			assert.Contains(t, string(frame), string(payload))
		}
	})
}

// slotMovingBackend is a movingBackend whose test moves single slots to
// another master, telling of it through Changed.
type slotMovingBackend struct {
	*movingBackend
	slotMu sync.Mutex
	owners map[int]string
}

func newSlotMovingBackend(nodes ...*pubsubNode) *slotMovingBackend {
	return &slotMovingBackend{movingBackend: newMovingBackend(nodes...), owners: make(map[int]string)}
}

func (b *slotMovingBackend) MasterOf(slot int) string {
	b.slotMu.Lock()
	addr, ok := b.owners[slot]
	b.slotMu.Unlock()
	if ok {
		return addr
	}
	return b.movingBackend.MasterOf(slot)
}

// moveSlotOf gives the slot of channel to addr and fires Changed.
func (b *slotMovingBackend) moveSlotOf(channel, addr string) {
	b.slotMu.Lock()
	b.owners[int(router.Slot([]byte(channel)))] = addr
	b.slotMu.Unlock()
	b.notify()
}

// seenChange fires Changed twice: once the proxy waits on the next
// channel, it has compared after the first.
func seenChange(t *testing.T, backend *movingBackend) {
	t.Helper()
	for range 2 {
		calls := backend.changedCalls()
		backend.notify()
		require.Eventually(t, func() bool { return backend.changedCalls() == calls+1 }, 10*time.Second, time.Millisecond,
			"the proxy waits for change %d", calls+1)
	}
}

// waitWatching waits until the proxy watches for topology changes.
func waitWatching(t *testing.T, backend *movingBackend) {
	t.Helper()
	require.Eventually(t, func() bool { return backend.changedCalls() == 1 }, 10*time.Second, time.Millisecond,
		"the proxy watches the topology")
}

// A shard channel whose slot the topology gives to another master moves
// there, unseen by the client, although its node neither redirects nor
// drops it (Kvrocks); the old node keeps nothing of it, and channels of a
// slot that stayed are subscribed again on the same node. The connection
// for SUBSCRIBE stays, its first master unchanged.
func TestShardSubscriptionFollowsTheTopology(t *testing.T) {
	oldMaster, newMaster := startKvrocksPingNode(t), startKvrocksPingNode(t)
	backend := newSlotMovingBackend(oldMaster, newMaster)
	_, addr := startProxy(t, backend, nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	require.Equal(t, subscribeFrame("subscribe", "a", 1), c.do("SUBSCRIBE", "a"))
	require.Equal(t, subscribeFrame("ssubscribe", "{s}1", 1), c.do("SSUBSCRIBE", "{s}1"))
	require.Equal(t, subscribeFrame("ssubscribe", "{s}2", 2), c.do("SSUBSCRIBE", "{s}2"))
	require.Equal(t, subscribeFrame("ssubscribe", "{t}1", 3), c.do("SSUBSCRIBE", "{t}1"))
	live := oldMaster.live()
	require.Len(t, live, 2, "one connection for SUBSCRIBE, one for the shard channels")

	// A reload with nothing new moves nothing.
	waitWatching(t, backend.movingBackend)
	seenChange(t, backend.movingBackend)
	assert.Equal(t, live, oldMaster.live())
	assert.Zero(t, newMaster.accepted())

	backend.moveSlotOf("{s}", newMaster.addr)
	moved := waitSubscribed(t, newMaster, nil, nil, nil, []string{"{s}1", "{s}2"})
	_, _, _, commands := newMaster.state(moved)
	assert.Equal(t, [][]string{{"ssubscribe", "{s}1", "{s}2"}}, commands)
	kept := waitSubscribed(t, oldMaster, live, nil, nil, []string{"{t}1"})
	_, _, _, commands = oldMaster.state(kept)
	assert.Equal(t, [][]string{{"ssubscribe", "{t}1"}}, commands)
	var global, shard *pubsubNodeConn
	for _, conn := range live {
		if channels, _, _, _ := oldMaster.state(conn); len(channels) > 0 {
			global = conn
		} else {
			shard = conn
		}
	}
	require.NotNil(t, global)
	require.NotNil(t, shard)
	require.Eventually(t, func() bool {
		oldMaster.mu.Lock()
		defer oldMaster.mu.Unlock()
		return shard.closed
	}, 10*time.Second, time.Millisecond, "the old shard connection is closed")
	assert.Contains(t, oldMaster.live(), global, "the connection for SUBSCRIBE stays")
	assert.Zero(t, oldMaster.publish("{s}1", "lost", true), "nothing is left on the old master")

	require.Equal(t, 1, newMaster.publish("{s}1", "m", true))
	assert.Equal(t, messageFrame("smessage", "{s}1", "m"), c.read(), "the first frame after the move is the message")
	require.Equal(t, 1, oldMaster.publish("{t}1", "n", true))
	assert.Equal(t, messageFrame("smessage", "{t}1", "n"), c.read())
	require.Equal(t, 1, oldMaster.publish("a", "o", false))
	assert.Equal(t, messageFrame("message", "a", "o"), c.read())
	assert.Equal(t, pongFrame, c.do("PING"), "nothing else came")
	assert.Equal(t, subscribeFrame("ssubscribe", "{s}3", 3), c.do("SSUBSCRIBE", "{s}3"), "the new node's count covers what moved")
	assert.Equal(t, 1, newMaster.accepted(), "one connection to the new master")
}

// A slot that moves while its shard connection is being dialled again is
// not missed: the dial is given up, and the channels go to the new master.
func TestShardSlotMovedDuringTheDial(t *testing.T) {
	oldMaster, newMaster := startKvrocksPingNode(t), startKvrocksPingNode(t)
	backend := newSlotMovingBackend(oldMaster, newMaster)
	_, addr := startProxy(t, backend, nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	require.Equal(t, subscribeFrame("ssubscribe", "{s}1", 1), c.do("SSUBSCRIBE", "{s}1"))
	waitWatching(t, backend.movingBackend)

	entered, release := backend.stopDials(t, oldMaster.addr)
	oldMaster.dropConnections()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the proxy did not dial the old master again")
	}
	backend.moveSlotOf("{s}", newMaster.addr)
	seenChange(t, backend.movingBackend)
	release()

	moved := waitSubscribed(t, newMaster, nil, nil, nil, []string{"{s}1"})
	_, _, _, commands := newMaster.state(moved)
	assert.Equal(t, [][]string{{"ssubscribe", "{s}1"}}, commands)
	for _, conn := range oldMaster.live() {
		_, _, shards, _ := oldMaster.state(conn)
		assert.Empty(t, shards, "nothing is subscribed on the old master")
	}
	require.Equal(t, 1, newMaster.publish("{s}1", "m", true))
	assert.Equal(t, messageFrame("smessage", "{s}1", "m"), c.read(), "the first frame after the move is the message")
	assert.Equal(t, pongFrame, c.do("PING"))
}

// The client's shard command in flight on the old master when its slot
// moves is sent again to the new master, after the channels that moved,
// and answered once.
func TestShardCommandInFlightFollowsTheTopology(t *testing.T) {
	oldMaster, newMaster := startKvrocksPingNode(t), startKvrocksPingNode(t)
	backend := newSlotMovingBackend(oldMaster, newMaster)
	_, addr := startProxy(t, backend, nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	require.Equal(t, subscribeFrame("ssubscribe", "{s}1", 1), c.do("SSUBSCRIBE", "{s}1"))
	waitWatching(t, backend.movingBackend)
	old := oldMaster.live()
	require.Len(t, old, 1)

	oldMaster.mu.Lock()
	oldMaster.silentAt = "ssubscribe {s}2"
	oldMaster.mu.Unlock()
	c.send(encodeCommand("SSUBSCRIBE", "{s}2") + encodeCommand("PING", "x"))
	require.Eventually(t, func() bool {
		_, _, _, commands := oldMaster.state(old[0])
		return len(commands) == 2
	}, 10*time.Second, time.Millisecond, "the old master received the command")
	backend.moveSlotOf("{s}", newMaster.addr)

	assert.Equal(t, subscribeFrame("ssubscribe", "{s}2", 2), c.readWithin(10*time.Second))
	assert.Equal(t, "*2\r\n$4\r\npong\r\n$1\r\nx\r\n", c.read())
	moved := waitSubscribed(t, newMaster, nil, nil, nil, []string{"{s}1", "{s}2"})
	_, _, _, commands := newMaster.state(moved)
	assert.Equal(t, [][]string{{"ssubscribe", "{s}1"}, {"ssubscribe", "{s}2"}, {"ping", "x"}}, commands)
	assert.Empty(t, oldMaster.live(), "the old master's connection is closed")
	require.Equal(t, 1, newMaster.publish("{s}2", "m", true))
	assert.Equal(t, messageFrame("smessage", "{s}2", "m"), c.read())
}
