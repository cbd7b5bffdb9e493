package kvsim

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tidwall/redcon"

	"kvproxy/bench/kvsim/keyspace"
)

// Pub/Sub as Kvrocks does it (read from src/commands/cmd_pubsub.cc,
// Server::PublishMessage and redis::Connection's subscription lists):
//
//   - Every Pub/Sub command is keyless for the cluster checks of spec
//     section 2, so any node runs it, a replica included: no MOVED, no
//     READONLY (PUBLISH is flagged read-only), no TRYAGAIN during a failover.
//     A CLIENT PAUSE ALL blocks them all; a WRITE pause blocks PUBLISH and
//     MPUBLISH, which write the WAL (inferred: Redis pauses them too, and
//     the pause exists to keep a master's sequence still).
//   - PUBLISH reaches the subscribers of this node only (no gossip) and
//     returns how many it reached: one per channel subscriber plus one per
//     matching (pattern, subscriber) pair.
//   - A subscribed RESP2 connection may send any command: Kvrocks has no
//     subscribed-mode restriction, and PING answers +PONG as always.
//   - SSUBSCRIBE needs its channels in one slot but never checks that this
//     node owns it. Kvrocks has no SPUBLISH (apache/kvrocks#3306, pull
//     request #3396 open) and PUBLISH does not reach shard channels, so a
//     shard subscriber never receives a message.
//   - Nothing touches subscriptions when a topology is applied or a failover
//     succeeds: subscribers stay connected and subscribed.
//
// A master's PUBLISH also goes into the replication stream, as Kvrocks
// writes it to its WAL: it moves the sequence, and each replica delivers the
// message to its own subscribers when it applies the entry (after its
// ReplDelay). A replica's PUBLISH stays local.
//
// Unlike Kvrocks, a subscriber's queued output is bounded: past the limit
// the connection is closed, as Redis' client-output-buffer-limit pubsub does.

// defaultPubSubOutputLimit is Redis' hard output limit for Pub/Sub clients.
const defaultPubSubOutputLimit = 32 << 20

// pubsubArity is the Kvrocks arity of the Pub/Sub commands.
var pubsubArity = map[string]int{
	"publish": 3, "mpublish": -3, "pubsub": -2,
	"subscribe": -2, "unsubscribe": -1,
	"psubscribe": -2, "punsubscribe": -1,
	"ssubscribe": -2, "sunsubscribe": -1,
}

// subscriptionKind is what a subscription names: a channel, a pattern or a
// shard channel. Each has its own commands and its own table.
type subscriptionKind int

const (
	kindChannel subscriptionKind = iota
	kindPattern
	kindShard
)

// subscribeName and unsubscribeName are the confirmations' first elements.
var (
	subscribeName   = [...]string{kindChannel: "subscribe", kindPattern: "psubscribe", kindShard: "ssubscribe"}
	unsubscribeName = [...]string{kindChannel: "unsubscribe", kindPattern: "punsubscribe", kindShard: "sunsubscribe"}
)

// pubsubHub is the node's subscription tables: who listens to what, each
// list in subscription order.
type pubsubHub struct {
	mu     sync.Mutex
	tables [3]map[string][]*subscriber // by subscriptionKind
	// outputLimit bounds the bytes queued to one subscriber; zero means
	// defaultPubSubOutputLimit. Tests lower it.
	outputLimit atomic.Int64
}

func (h *pubsubHub) limit() int {
	if l := h.outputLimit.Load(); l > 0 {
		return int(l)
	}
	return defaultPubSubOutputLimit
}

// add and remove change the tables; caller holds h.mu.
func (h *pubsubHub) add(kind subscriptionKind, name string, s *subscriber) {
	if h.tables[kind] == nil {
		h.tables[kind] = map[string][]*subscriber{}
	}
	h.tables[kind][name] = append(h.tables[kind][name], s)
}

func (h *pubsubHub) remove(kind subscriptionKind, name string, s *subscriber) {
	subs := h.tables[kind][name]
	i := slices.Index(subs, s)
	if i < 0 {
		return
	}
	if len(subs) == 1 {
		delete(h.tables[kind], name)
		return
	}
	// A new slice: publishers hold copies of the old one.
	h.tables[kind][name] = slices.Concat(subs[:i], subs[i+1:])
}

// delivery is one message frame for one subscriber.
type delivery struct {
	to    *subscriber
	frame []byte
}

// deliveries lists what PUBLISH channel message sends: the channel's
// subscribers in subscription order, then each matching pattern's, patterns
// in byte order, as Kvrocks walks its ordered maps.
func (h *pubsubHub) deliveries(channel, message []byte) []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []delivery
	if subs := h.tables[kindChannel][string(channel)]; len(subs) > 0 {
		frame := appendArrayHeader(nil, 3)
		frame = appendBulkString(frame, "message")
		frame = appendBulkBytes(frame, channel)
		frame = appendBulkBytes(frame, message)
		for _, s := range subs {
			out = append(out, delivery{s, frame})
		}
	}
	patterns := h.tables[kindPattern]
	names := make([]string, 0, len(patterns))
	for p := range patterns {
		if keyspace.GlobMatch([]byte(p), channel) {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	for _, p := range names {
		frame := appendArrayHeader(nil, 4)
		frame = appendBulkString(frame, "pmessage")
		frame = appendBulkString(frame, p)
		frame = appendBulkBytes(frame, channel)
		frame = appendBulkBytes(frame, message)
		for _, s := range patterns[p] {
			out = append(out, delivery{s, frame})
		}
	}
	return out
}

// publishEffect names the replication entry of a master's PUBLISH; no
// command has that name, so a replica's keyspace ignores the entry.
const publishEffect = "__kvsim_publish"

// publishCommand runs PUBLISH or MPUBLISH and answers the receivers of all
// its messages. It waits out a WRITE pause, and a master journals each
// message for its replicas before delivering it, as Kvrocks writes its WAL
// first.
func (n *Node) publishCommand(conn redcon.Conn, channel []byte, messages [][]byte) {
	if !n.beginWrite() {
		return
	}
	defer n.writeGate.RUnlock()
	master := !n.view.Load().isReplica()
	receivers := 0
	for _, msg := range messages {
		if master {
			n.ks.JournalPublish([]byte(publishEffect), channel, msg)
		}
		receivers += n.publish(channel, msg)
	}
	conn.WriteInt(receivers)
}

// replayPublish delivers the message of a master's PUBLISH a replica applied.
func (n *Node) replayPublish(effect [][]byte) {
	if len(effect) == 3 && string(effect[0]) == publishEffect {
		n.publish(effect[1], effect[2])
	}
}

// publish delivers message on channel to this node's subscribers and returns
// how many accepted it; the frames are queued outside the hub's lock, as
// Kvrocks replies outside its own.
func (n *Node) publish(channel, message []byte) int {
	receivers := 0
	for _, d := range n.pubsub.deliveries(channel, message) {
		if d.to.queue(d.frame) {
			receivers++
		}
	}
	return receivers
}

// execPubSub runs a Pub/Sub command.
func (n *Node) execPubSub(conn redcon.Conn, s *session, lname string, args [][]byte) {
	if arity := pubsubArity[lname]; arity > 0 && len(args) != arity || arity < 0 && len(args) < -arity {
		conn.WriteError(wrongArityError(args[0]))
		return
	}
	if n.loading.Load() {
		conn.WriteError("LOADING kvrocks is restoring the db from backup")
		return
	}
	switch lname {
	case "publish", "mpublish":
		n.publishCommand(conn, args[1], args[2:])
	case "pubsub":
		n.pubsubIntrospect(conn, args)
	case "subscribe", "psubscribe", "ssubscribe":
		kind := kindChannel
		if lname == "psubscribe" {
			kind = kindPattern
		} else if lname == "ssubscribe" {
			kind = kindShard
			slot := hashSlot(args[1])
			for _, ch := range args[2:] {
				if hashSlot(ch) != slot {
					conn.WriteError("ERR CROSSSLOT Keys in request don't hash to the same slot")
					return
				}
			}
		}
		if s.sub == nil {
			n.startSubscriber(conn, s, kind, args[1:])
			return
		}
		s.sub.subscribe(&n.pubsub, kind, args[1:], s.resp3)
	default:
		kind := kindChannel
		if lname == "punsubscribe" {
			kind = kindPattern
		} else if lname == "sunsubscribe" {
			kind = kindShard
		}
		if s.sub == nil {
			// Never subscribed: the confirmations alone, every count 0.
			conn.WriteRaw(appendIdleUnsubscribeReplies(nil, kind, args[1:], s.resp3))
			return
		}
		s.sub.unsubscribe(&n.pubsub, kind, args[1:], s.resp3)
	}
}

// appendSubscriptionReply appends one confirmation: [kind, name, count],
// the name nil when empty, as Kvrocks' SubscribeCommandReply writes it: a
// push (HeaderOfPush) to a RESP3 connection. The messages published stay
// arrays in both protocols (Server::PublishMessage writes MultiLen).
func appendSubscriptionReply(out []byte, kindName, name string, count int, resp3 bool) []byte {
	if resp3 {
		out = appendAggregateHeader(out, '>', 3)
	} else {
		out = appendArrayHeader(out, 3)
	}
	out = appendBulkString(out, kindName)
	switch {
	case name != "":
		out = appendBulkString(out, name)
	case resp3:
		out = append(out, "_\r\n"...)
	default:
		out = append(out, "$-1\r\n"...)
	}
	return appendInteger(out, int64(count))
}

// appendIdleUnsubscribeReplies appends the confirmations of an unsubscribe
// on a connection that never subscribed: one per name, or a nil name when
// there is none, every count 0.
func appendIdleUnsubscribeReplies(out []byte, kind subscriptionKind, names [][]byte, resp3 bool) []byte {
	if len(names) == 0 {
		return appendSubscriptionReply(out, unsubscribeName[kind], "", 0, resp3)
	}
	for _, name := range names {
		out = appendSubscriptionReply(out, unsubscribeName[kind], string(name), 0, resp3)
	}
	return out
}

// pubsubIntrospect answers PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB.
func (n *Node) pubsubIntrospect(conn redcon.Conn, args [][]byte) {
	h := &n.pubsub
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "numpat" && len(args) == 2:
		h.mu.Lock()
		count := len(h.tables[kindPattern])
		h.mu.Unlock()
		conn.WriteInt(count)
	case sub == "numsub" || sub == "shardnumsub":
		kind := kindChannel
		if sub == "shardnumsub" {
			kind = kindShard
		}
		h.mu.Lock()
		counts := make([]int, len(args)-2)
		for i, ch := range args[2:] {
			counts[i] = len(h.tables[kind][string(ch)])
		}
		h.mu.Unlock()
		conn.WriteArray(2 * len(counts))
		for i, ch := range args[2:] {
			conn.WriteBulk(ch)
			conn.WriteInt(counts[i])
		}
	case (sub == "channels" || sub == "shardchannels") && len(args) <= 3:
		kind := kindChannel
		if sub == "shardchannels" {
			kind = kindShard
		}
		h.mu.Lock()
		var names []string
		for name := range h.tables[kind] {
			if len(args) == 2 || len(args[2]) == 0 || keyspace.GlobMatch(args[2], []byte(name)) {
				names = append(names, name)
			}
		}
		h.mu.Unlock()
		// Kvrocks lists channels by name, shard channels by slot first.
		sort.Slice(names, func(i, j int) bool {
			if kind == kindShard {
				if si, sj := hashSlot([]byte(names[i])), hashSlot([]byte(names[j])); si != sj {
					return si < sj
				}
			}
			return names[i] < names[j]
		})
		conn.WriteArray(len(names))
		for _, name := range names {
			conn.WriteBulkString(name)
		}
	default:
		conn.WriteError("ERR Unknown subcommand or wrong number of arguments")
	}
}
