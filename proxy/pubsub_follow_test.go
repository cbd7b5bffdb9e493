package proxy

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
)

// movingBackend is a pubsubBackend whose masters the test changes, telling
// of each change through Changed as the router does; it can also stop the
// dials to one node.
type movingBackend struct {
	*pubsubBackend

	changeMu sync.Mutex
	changed  chan struct{}
	// calls counts Changed calls: the proxy takes one channel per
	// comparison.
	calls int
	// While gate is set, dials to gatedAddr send on entered, then wait for
	// gate to be closed.
	gatedAddr string
	gate      chan struct{}
	entered   chan struct{}
}

func newMovingBackend(nodes ...*pubsubNode) *movingBackend {
	return &movingBackend{pubsubBackend: newPubSubBackend(nodes...)}
}

func (b *movingBackend) Changed() <-chan struct{} {
	b.changeMu.Lock()
	defer b.changeMu.Unlock()
	b.calls++
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.changed
}

func (b *movingBackend) changedCalls() int {
	b.changeMu.Lock()
	defer b.changeMu.Unlock()
	return b.calls
}

// notify fires Changed, as a reload does even when nothing changed.
func (b *movingBackend) notify() {
	b.changeMu.Lock()
	defer b.changeMu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
}

// setMasters installs a new master list and fires Changed.
func (b *movingBackend) setMasters(addrs ...string) {
	b.pubsubBackend.mu.Lock()
	b.masters = addrs
	b.pubsubBackend.mu.Unlock()
	b.notify()
}

// stopDials makes the dials to addr wait; the returned function lets them
// through.
func (b *movingBackend) stopDials(t *testing.T, addr string) (entered <-chan struct{}, release func()) {
	b.changeMu.Lock()
	defer b.changeMu.Unlock()
	gate, in := make(chan struct{}), make(chan struct{}, 16)
	b.gatedAddr, b.gate, b.entered = addr, gate, in
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return in, release
}

func (b *movingBackend) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	b.changeMu.Lock()
	gate, entered := b.gate, b.entered
	if addr != b.gatedAddr {
		gate = nil
	}
	b.changeMu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return b.pubsubBackend.DialNode(ctx, addr)
}

// SUBSCRIBE and PSUBSCRIBE move to the new first master when the topology
// changes while the old one stays up, unseen by the client; a change
// notice with the same first master moves nothing.
func TestSubscriptionsFollowTheFirstMaster(t *testing.T) {
	oldFirst, newFirst := startPubSubNode(t), startPubSubNode(t)
	backend := newMovingBackend(oldFirst, newFirst)
	_, addr := startProxy(t, backend, nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	c.send(encodeCommand("SUBSCRIBE", "b", "a") + encodeCommand("PSUBSCRIBE", "p*"))
	for _, want := range []string{subscribeFrame("subscribe", "b", 1), subscribeFrame("subscribe", "a", 2), subscribeFrame("psubscribe", "p*", 3)} {
		require.Equal(t, want, c.read())
	}
	old := oldFirst.live()
	require.Len(t, old, 1)

	// Two reloads with nothing new: once the proxy waits on the third
	// channel, it has compared after the first.
	waitCalls := func(n int) {
		require.Eventually(t, func() bool { return backend.changedCalls() == n }, 10*time.Second, time.Millisecond,
			"the proxy waits for change %d", n)
	}
	waitCalls(1)
	backend.notify()
	waitCalls(2)
	backend.notify()
	waitCalls(3)
	assert.Equal(t, old, oldFirst.live(), "the first master is the same: nothing moved")
	assert.Zero(t, newFirst.accepted())

	backend.setMasters(newFirst.addr, oldFirst.addr)
	moved := waitSubscribed(t, newFirst, nil, []string{"a", "b"}, []string{"p*"}, nil)
	_, _, _, commands := newFirst.state(moved)
	assert.Equal(t, [][]string{{"subscribe", "a", "b"}, {"psubscribe", "p*"}}, commands)
	require.Eventually(t, func() bool { return len(oldFirst.live()) == 0 }, 10*time.Second, time.Millisecond,
		"the old first master's connection is closed")
	_, _, _, commands = oldFirst.state(old[0])
	assert.Equal(t, [][]string{{"subscribe", "b", "a"}, {"psubscribe", "p*"}}, commands, "nothing more was sent there")
	assert.Zero(t, oldFirst.publish("a", "lost", false))

	require.Equal(t, 1, newFirst.publish("a", "after", false))
	assert.Equal(t, messageFrame("message", "a", "after"), c.read(), "the first frame after the move is the message")
	assert.Equal(t, pongFrame, c.do("PING"), "nothing else came")
	assert.Equal(t, subscribeFrame("subscribe", "c", 4), c.do("SUBSCRIBE", "c"), "the new node's count covers what moved")
	assert.Equal(t, 1, newFirst.accepted(), "one connection to the new first master")
}

// Commands the client sends while its subscriptions move are answered by
// the new first master after the re-subscription, in order.
func TestCommandsDuringAMoveKeepTheirOrder(t *testing.T) {
	oldFirst, newFirst := startPubSubNode(t), startPubSubNode(t)
	backend := newMovingBackend(oldFirst, newFirst)
	_, addr := startProxy(t, backend, nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	c.send(encodeCommand("SUBSCRIBE", "a", "b"))
	require.Equal(t, subscribeFrame("subscribe", "a", 1), c.read())
	require.Equal(t, subscribeFrame("subscribe", "b", 2), c.read())
	old := oldFirst.live()
	require.Len(t, old, 1)

	release := newFirst.hold()
	t.Cleanup(release)
	backend.setMasters(newFirst.addr, oldFirst.addr)
	require.Eventually(t, func() bool { return newFirst.accepted() == 1 && len(oldFirst.live()) == 0 },
		10*time.Second, time.Millisecond, "the proxy dials the new first master and leaves the old one")
	c.send(encodeCommand("UNSUBSCRIBE", "a") + encodeCommand("SUBSCRIBE", "c") + encodeCommand("PING", "x"))
	release()
	for _, want := range []string{
		subscribeFrame("unsubscribe", "a", 1),
		subscribeFrame("subscribe", "c", 2),
		"*2\r\n$4\r\npong\r\n$1\r\nx\r\n",
	} {
		assert.Equal(t, want, c.read())
	}
	moved := waitSubscribed(t, newFirst, nil, []string{"b", "c"}, nil, nil)
	_, _, _, commands := newFirst.state(moved)
	assert.Equal(t, [][]string{{"subscribe", "a", "b"}, {"unsubscribe", "a"}, {"subscribe", "c"}, {"ping", "x"}}, commands)
	_, _, _, commands = oldFirst.state(old[0])
	assert.Equal(t, [][]string{{"subscribe", "a", "b"}}, commands)
	require.Equal(t, 1, newFirst.publish("b", "kept", false))
	assert.Equal(t, messageFrame("message", "b", "kept"), c.read())
}

// A first master that changes again while the proxy dials the previous new
// one is not missed: nothing is connected for the change to be seen on, so
// the dial itself checks.
func TestFirstMasterChangedDuringTheDial(t *testing.T) {
	first, second, third := startPubSubNode(t), startPubSubNode(t), startPubSubNode(t)
	backend := newMovingBackend(first, second, third)
	_, addr := startProxy(t, backend, nil)
	requireNoSubscriberLeft(t)
	c := dialResp(t, addr)
	require.Equal(t, subscribeFrame("subscribe", "a", 1), c.do("SUBSCRIBE", "a"))

	entered, release := backend.stopDials(t, second.addr)
	backend.setMasters(second.addr, first.addr, third.addr)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the proxy did not dial the new first master")
	}
	backend.setMasters(third.addr, first.addr, second.addr)
	release()

	moved := waitSubscribed(t, third, nil, []string{"a"}, nil, nil)
	_, _, _, commands := third.state(moved)
	assert.Equal(t, [][]string{{"subscribe", "a"}}, commands)
	for _, conn := range second.live() {
		_, _, _, commands := second.state(conn)
		assert.Empty(t, commands, "nothing was subscribed on the node the topology left during the dial")
	}
	require.Eventually(t, func() bool { return len(first.live()) == 0 }, 10*time.Second, time.Millisecond,
		"the old first master's connection is closed")
	require.Equal(t, 1, third.publish("a", "m", false))
	assert.Equal(t, messageFrame("message", "a", "m"), c.read())
	assert.Equal(t, pongFrame, c.do("PING"))
}

// pubSubClients returns the CLIENT LIST TYPE pubsub lines of node, nil when
// it cannot be asked.
func pubSubClients(node *cluster.Node) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	text, err := node.Client().Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		return nil
	}
	return strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == '\r' })
}

// A failover of the first shard leaves the old master up as a replica: the
// subscription moves to the new master, where PUBLISH now goes. Redis
// Cluster would deliver PUBLISH anyway (it broadcasts), so what is checked
// is where the subscriber connection lives and PUBLISH's local count.
func TestSubscriptionsFollowFailoverOfTheFirstShardOnRealCluster(t *testing.T) {
	cp := startClusterProxy(t)
	requireNoSubscriberLeft(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)

	sub := dialResp(t, cp.addr)
	pub := dialResp(t, cp.addr)
	require.Equal(t, subscribeFrame("subscribe", "news", 1), sub.do("SUBSCRIBE", "news"))
	require.Equal(t, subscribeFrame("psubscribe", "n*", 2), sub.do("PSUBSCRIBE", "n*"))
	oldMaster := cp.cluster.NodeByAddr(cp.router.Masters()[0])
	require.NotNil(t, oldMaster)
	require.Len(t, pubSubClients(oldMaster), 1)
	replicas := cp.cluster.ReplicasOf(oldMaster.ID)
	require.NotEmpty(t, replicas)
	newMaster := replicas[0]

	require.NoError(t, cp.cluster.Failover(ctx, newMaster))
	// The router learns it at once from the MOVED a command for the first
	// slot gets, else from its periodic reload.
	const firstSlotKey = "fHh"
	require.Zero(t, cluster.Slot(firstSlotKey))
	assert.Equal(t, "$-1\r\n", pub.do("GET", firstSlotKey))
	require.Eventually(t, func() bool { return cp.router.Masters()[0] == newMaster.Addr },
		30*time.Second, 10*time.Millisecond, "the router sees %s as the first master", newMaster)

	require.Eventually(t, func() bool {
		clients := pubSubClients(newMaster)
		return len(clients) == 1 && strings.Contains(clients[0], " sub=1 psub=1 ") && len(pubSubClients(oldMaster)) == 0
	}, 30*time.Second, 10*time.Millisecond, "the subscription moved from %s to %s", oldMaster, newMaster)
	assert.Equal(t, ":2\r\n", pub.do("PUBLISH", "news", "after"), "both subscriptions live where PUBLISH goes")
	frames := []string{sub.read(), sub.read()}
	assert.Equal(t, []string{
		messageFrame("message", "news", "after"),
		"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nafter\r\n",
	}, frames, "no confirmation of the move reached the client")
	assert.Equal(t, pongFrame, sub.do("PING"), "nothing else came")
	assert.Equal(t, subscribeFrame("subscribe", "more", 3), sub.do("SUBSCRIBE", "more"))
	assert.True(t, slices.ContainsFunc(pubSubClients(newMaster), func(line string) bool { return strings.Contains(line, " sub=2 psub=1 ") }))
}
