package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// Pub/Sub. SUBSCRIBE and PSUBSCRIBE go over one dedicated connection per
// subscribed client to the first master, and PUBLISH (and PUBSUB) is routed
// to that same master: Redis Cluster broadcasts PUBLISH to every node, but a
// Kvrocks cluster does not forward it between shards (apache/kvrocks#2157),
// so only a fixed node works for both. SSUBSCRIBE goes to the channel's slot
// master, over one connection per master, and SPUBLISH is routed by slot like
// any keyed command.
//
// While subscribed, a per-client writer goroutine owns the client's socket:
// every reply and message goes through its queue. The session waits for the
// replies in flight before it answers a command itself, so replies keep the
// order of the commands, and the subscription counts the backends report
// tell when the client has left subscriber mode.
//
// The queue is capped by PubSubOutputLimit, but a subscriber is not dropped
// for reaching it, as Redis' client-output-buffer-limit would: a client that
// reads, however slowly, gets every message its backends kept for it. At
// the limit the pumps stop reading the client's backend connections (its
// own: no other client shares them) until it has drained half of it, so
// messages wait in the kernel's socket buffers and then in the backend's
// output buffer for the proxy's connection. Past the backend's own limit
// (Redis' pubsub default: 32 MB, or 8 MB for 60 s) the backend closes that
// connection: it is re-established as a lost one, and what the backend
// dropped is lost. Only a subscriber that takes no byte for
// PubSubStallTimeout while at the limit is disconnected (writeBatchLocked).
//
// A lost subscriber connection (node restarted, killed, or closing it) is
// re-established without the client noticing: the global one on the first
// master of the current topology, a shard one on each slot's current master.
// Shard channels also follow MOVED, and the sunsubscribe a node sends when a
// channel's slot moves away (failover, migration); while the topology still
// names that node, its ROLE tells the new master. The proxy re-sends
// SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE for what the client has, drops their
// confirmations, then sends again the client's commands still unanswered.
// Messages published while a subscription is being moved are lost: Redis
// Pub/Sub keeps nothing for an absent subscriber (with Kvrocks, which replays
// a master's PUBLISH on its replicas, one may also arrive twice). Past
// resubscribeTimeout the client is disconnected, as it would be by a server
// going away (pubsub_resubscribe.go).
//
// The connection for SUBSCRIBE and PSUBSCRIBE also follows the first master
// while its node stays up (a failover of the first shard leaves the old
// master running as a replica): each time the router's slot table changes,
// a watcher compares the first master with the connection's node and, when
// they differ, closes the connection, which is then handled as lost. Closing
// before re-subscribing means no message is delivered twice on Redis Cluster,
// where PUBLISH reaches every node. The same watcher closes a shard
// connection whose node the topology no longer names for one of its
// channels' slots, and the channels go to their slot's master: Kvrocks sends
// neither MOVED nor sunsubscribe for them (pubsub_follow.go).
//
// Kvrocks answers PING on a subscribed connection as on any other (+PONG,
// or the argument as a bulk string); the client gets Redis' ["pong",
// payload] all the same.

var (
	cmdSUBSCRIBE    = LookupCommand([]byte("subscribe"))
	cmdPSUBSCRIBE   = LookupCommand([]byte("psubscribe"))
	cmdSSUBSCRIBE   = LookupCommand([]byte("ssubscribe"))
	cmdUNSUBSCRIBE  = LookupCommand([]byte("unsubscribe"))
	cmdPUNSUBSCRIBE = LookupCommand([]byte("punsubscribe"))
	cmdSUNSUBSCRIBE = LookupCommand([]byte("sunsubscribe"))
	cmdSPUBLISH     = LookupCommand([]byte("spublish"))
	cmdPING         = LookupCommand([]byte("ping"))
	cmdROLE         = LookupCommand([]byte("role"))
)

// topologyChanges is implemented by a Backend that tells when its slot
// table changes (*router.Router): the connection for SUBSCRIBE and
// PSUBSCRIBE then follows the first master, where PUBLISH goes, and shard
// channels their slot's master.
type topologyChanges interface {
	// Changed returns a channel closed the next time the slot table changes.
	Changed() <-chan struct{}
}

var _ topologyChanges = (*router.Router)(nil)

// globalSubscriptions keys the connection for SUBSCRIBE and PSUBSCRIBE in
// subscriber.conns; shard connections are keyed by address.
const globalSubscriptions = "global"

// resubscribeTimeout bounds how long a lost subscriber connection is tried
// again: long enough for the cluster to promote a replica of a dead master
// and for the router to see it, short enough not to leave a client deaf for
// long without telling it (it is disconnected then).
const resubscribeTimeout = 30 * time.Second

// The pause between two attempts to re-establish a subscriber connection
// doubles from resubscribeMinDelay to resubscribeMaxDelay.
const (
	resubscribeMinDelay = 50 * time.Millisecond
	resubscribeMaxDelay = time.Second
)

// maxPubSubRedirects bounds the MOVED redirects a shard subscription
// follows, as the router bounds them for other commands.
const maxPubSubRedirects = 5

func isSubscribe(cmd *CommandInfo) bool {
	switch cmd {
	case cmdSUBSCRIBE, cmdPSUBSCRIBE, cmdSSUBSCRIBE, cmdUNSUBSCRIBE, cmdPUNSUBSCRIBE, cmdSUNSUBSCRIBE:
		return true
	}
	return false
}

// routedPubSub reports Pub/Sub commands routed like any other command.
func routedPubSub(cmd *CommandInfo) bool { return cmd == cmdSPUBLISH }

// subscriber is the Pub/Sub state of a client in subscriber mode.
type subscriber struct {
	client net.Conn
	// limit is Config.PubSubOutputLimit, stallTimeout
	// Config.PubSubStallTimeout.
	limit        int64
	stallTimeout time.Duration
	// srv gives the topology, the pool and the logger for re-establishing
	// lost connections.
	srv *Server
	// ctx ends with the subscriber: it cuts dials and pauses short.
	ctx    context.Context
	cancel context.CancelFunc
	// resubscribeTimeout is resubscribeTimeout; tests shorten it.
	resubscribeTimeout time.Duration

	mu   sync.Mutex
	cond sync.Cond
	// out is what the writer has yet to send; writing is true while it
	// sends a batch taken from out, of which unsent bytes are left.
	out     []byte
	spare   []byte
	writing bool
	unsent  int
	// pausedAt is when the pending output reached the limit, zero while
	// the pumps read; drainedAt is when the client last took some.
	pausedAt, drainedAt time.Time
	// peak is the most output pending so far.
	peak   int
	closed bool
	conns  map[string]*subConn
	// watching is set once the goroutine that moves connections after a
	// topology change runs.
	watching bool
	wg       sync.WaitGroup
	// stopCancel detaches the subscriber from the server's cancellation.
	stopCancel func() bool
}

// subConn is one dedicated subscriber connection and what the client is
// subscribed to through it, as the replies it got tell.
type subConn struct {
	key string
	// nc is nil while the connection is re-established.
	nc       *nodeConn
	channels map[string]struct{}
	patterns map[string]struct{}
	shards   map[string]struct{}
	// expect[i] is how many replies the i-th client command in flight still
	// owes, pending[i] is that command: the first written of them are sent
	// on nc, the others wait for a new connection.
	expect  []int
	pending []*pendingCommand
	written int
	// resubs are the proxy's own re-subscriptions sent on nc; they always
	// precede the written client commands there, so the replies to come
	// are theirs first.
	resubs []*resubscription
	// deferred are shard channels moved here, and displaced ones the node
	// dropped, while client commands were in flight on nc: followed once
	// those are answered.
	deferred, displaced []string
	// lostAt is when the connection was lost, zero once what it carried is
	// subscribed again; retryDelay is the pause before the next attempt.
	lostAt     time.Time
	retryDelay time.Duration
	// retarget is set when the topology names another master for a shard
	// channel here: the next attempt to re-establish the connection moves
	// what belongs elsewhere first.
	retarget bool
}

// pendingCommand is a client's subscription command (or PING), kept until
// it is answered so it can be sent again on a new connection.
type pendingCommand struct {
	cmd *CommandInfo
	// args follow the name: channels, patterns, or PING's payload.
	args      []string
	redirects int
}

func (p *pendingCommand) encode(b []byte) []byte {
	b = resp.AppendArray(b, 1+len(p.args))
	b = resp.AppendBulkString(b, p.cmd.Name)
	for _, a := range p.args {
		b = resp.AppendBulkString(b, a)
	}
	return b
}

// resubscription is a SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE the proxy sent
// on its own to restore a client's subscriptions, or a ROLE asking where
// displaced shard channels went: the client never asked, so the replies are
// dropped.
type resubscription struct {
	cmd       *CommandInfo
	channels  []string
	owed      int
	redirects int
}

func newSubConn(key string, nc *nodeConn) *subConn {
	return &subConn{
		key:      key,
		nc:       nc,
		channels: make(map[string]struct{}),
		patterns: make(map[string]struct{}),
		shards:   make(map[string]struct{}),
	}
}

func (c *subConn) subscriptions() int { return len(c.channels) + len(c.patterns) + len(c.shards) }

// unused reports a connection with nothing subscribed and nothing owed.
func (c *subConn) unused() bool { return len(c.expect) == 0 && c.subscriptions() == 0 }

// newSubscriber starts the writer; cancelling ctx (a shutdown past its
// budget) ends the subscription even while nodes keep silent.
func newSubscriber(ctx context.Context, srv *Server, client net.Conn) *subscriber {
	sub := &subscriber{
		client:             client,
		srv:                srv,
		limit:              srv.cfg.PubSubOutputLimit,
		stallTimeout:       srv.cfg.PubSubStallTimeout,
		conns:              make(map[string]*subConn),
		resubscribeTimeout: resubscribeTimeout,
	}
	sub.ctx, sub.cancel = context.WithCancel(ctx)
	sub.cond.L = &sub.mu
	sub.stopCancel = context.AfterFunc(ctx, func() {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		sub.failLocked()
	})
	sub.wg.Add(1)
	go sub.writeLoop()
	return sub
}

// subscriberWriteChunk bounds one write to a subscriber, so the pending
// count follows what the client takes and the pumps resume once it is down
// to half the limit, not only after a whole batch.
const subscriberWriteChunk = 64 << 10

// errSubscriberStalled ends a subscriber that took nothing at its limit.
var errSubscriberStalled = errors.New("proxy: subscriber took no output for its stall timeout")

// writeLoop sends the queued output to the client.
func (sub *subscriber) writeLoop() {
	defer sub.wg.Done()
	// The session writes to the socket again once out of subscriber mode.
	defer func() { _ = sub.client.SetWriteDeadline(time.Time{}) }()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for {
		for len(sub.out) == 0 && !sub.closed {
			sub.cond.Wait()
		}
		if sub.closed {
			return
		}
		batch := sub.out
		sub.out, sub.spare = sub.spare[:0], nil
		sub.writing, sub.unsent = true, len(batch)
		err := sub.writeBatchLocked(batch)
		sub.writing, sub.unsent = false, 0
		if cap(batch) <= maxKeptBuffer {
			sub.spare = batch[:0]
		}
		if err != nil {
			sub.failLocked()
			return
		}
		sub.cond.Broadcast()
	}
}

// writeBatchLocked sends batch a chunk at a time, releasing sub.mu while it
// writes. Each write has a deadline: at the limit, PubSubStallTimeout after
// the later of the last progress and the pause, so a client that takes
// nothing for that long is disconnected (errSubscriberStalled); below the
// limit it only wakes the writer now and then, as such a client costs no
// more than the limit. Progress is dated when a write returns, never
// earlier than it happened.
func (sub *subscriber) writeBatchLocked(batch []byte) error {
	for sent := 0; sent < len(batch); {
		deadline := time.Now().Add(sub.stallTimeout)
		if !sub.pausedAt.IsZero() {
			deadline = sub.stalledSinceLocked().Add(sub.stallTimeout)
		}
		chunk := batch[sent:min(len(batch), sent+subscriberWriteChunk)]
		sub.mu.Unlock()
		err := sub.client.SetWriteDeadline(deadline)
		n := 0
		if err == nil {
			n, err = sub.client.Write(chunk)
		}
		sub.mu.Lock()
		if n > 0 {
			sent += n
			sub.drainedLocked(n)
		}
		switch {
		case err == nil:
		case sub.closed || !isTimeout(err):
			return err
		case !sub.pausedAt.IsZero() && time.Since(sub.stalledSinceLocked()) >= sub.stallTimeout:
			sub.srv.stats.pubsubOutputLimitDisconnections.Add(1)
			sub.srv.stalledSubLog.Log("client", sub.client.RemoteAddr().String(), "pending", sub.pendingLocked(),
				"limit", sub.limit, "stalled", sub.stallTimeout)
			return errSubscriberStalled
		}
	}
	return nil
}

// stalledSinceLocked is when a paused subscriber last made progress: the
// later of its pause and its last drained byte.
func (sub *subscriber) stalledSinceLocked() time.Time {
	if sub.drainedAt.After(sub.pausedAt) {
		return sub.drainedAt
	}
	return sub.pausedAt
}

// pendingLocked is the output not yet written to the client.
func (sub *subscriber) pendingLocked() int { return len(sub.out) + sub.unsent }

// drainedLocked notes n bytes written to the client, resuming the pumps
// once the pending output is down to half the limit.
func (sub *subscriber) drainedLocked(n int) {
	sub.unsent -= n
	sub.drainedAt = time.Now()
	if !sub.pausedAt.IsZero() && int64(sub.pendingLocked()) <= sub.limit/2 {
		sub.pausedAt = time.Time{}
		sub.cond.Broadcast()
	}
}

// enqueueLocked queues output for the client; at the limit the pumps stop
// reading until the client has drained half of it. sub.mu is held.
func (sub *subscriber) enqueueLocked(b []byte) {
	if sub.closed {
		return
	}
	sub.out = append(sub.out, b...)
	pending := sub.pendingLocked()
	if pending > sub.peak {
		sub.peak = pending
		sub.srv.stats.notePubSubOutput(int64(pending))
	}
	if int64(pending) >= sub.limit && sub.pausedAt.IsZero() {
		sub.pausedAt = time.Now()
		sub.srv.stats.pubsubOutputLimitPauses.Add(1)
	}
	sub.cond.Broadcast()
}

// failLocked ends the subscription and the client's connection: the client
// reads nothing or is gone, or a lost subscription could not be restored (a
// subscriber cannot be told otherwise that it may have missed messages).
func (sub *subscriber) failLocked() {
	if sub.closed {
		return
	}
	sub.closed = true
	sub.cancel()
	_ = sub.client.Close()
	sub.closeConnsLocked()
	sub.cond.Broadcast()
}

func (sub *subscriber) closeConnsLocked() {
	for _, c := range sub.conns {
		if c.nc != nil {
			c.nc.close()
		}
	}
}

// idleLocked reports that no reply is in flight and all output is written.
func (sub *subscriber) idleLocked() bool {
	if len(sub.out) > 0 || sub.writing {
		return false
	}
	for _, c := range sub.conns {
		if len(c.expect) > 0 {
			return false
		}
	}
	return true
}

// waitIdle waits until the replies in flight are written; it reports
// whether the client is still subscribed.
func (sub *subscriber) waitIdle() (subscribed bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for !sub.closed && !sub.idleLocked() {
		sub.cond.Wait()
	}
	return !sub.closed && len(sub.conns) > 0
}

// reply writes a reply the proxy made, after everything before it.
func (sub *subscriber) reply(b []byte) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.enqueueLocked(b)
	for !sub.closed && (len(sub.out) > 0 || sub.writing) {
		sub.cond.Wait()
	}
}

// shutdown closes the subscriber connections and waits for its goroutines.
func (sub *subscriber) shutdown() {
	sub.mu.Lock()
	if !sub.closed {
		sub.closed = true
		sub.cancel()
		sub.closeConnsLocked()
		sub.cond.Broadcast()
	}
	sub.mu.Unlock()
	sub.stopCancel()
	sub.wg.Wait()
}

// addConnLocked registers c and starts forwarding from it; a connection
// still to be dialled is dialled by its pump.
func (sub *subscriber) addConnLocked(c *subConn) {
	sub.conns[c.key] = c
	sub.wg.Add(1)
	go sub.pump(c)
	if changes, ok := sub.srv.backend.(topologyChanges); ok && !sub.watching {
		sub.watching = true
		sub.wg.Add(1)
		go sub.followTopology(changes)
	}
}

// connLocked returns the shard connection to addr, creating one that its
// pump dials when there is none; lostAt starts the new one's time budget.
func (sub *subscriber) connLocked(addr string, lostAt time.Time) *subConn {
	if c := sub.conns[addr]; c != nil {
		return c
	}
	c := newSubConn(addr, nil)
	c.lostAt = lostAt
	if c.lostAt.IsZero() {
		c.lostAt = time.Now()
	}
	sub.addConnLocked(c)
	return c
}

// releaseLocked closes c, which nothing uses any more.
func (sub *subscriber) releaseLocked(c *subConn) {
	if sub.conns[c.key] == c {
		delete(sub.conns, c.key)
	}
	if c.nc != nil {
		c.nc.close()
		c.nc = nil
	}
	sub.cond.Broadcast()
}

// pump forwards what one backend connection sends and re-establishes it
// when it is lost; it releases the connection once nothing is subscribed on
// it and no reply is owed. It reads nothing while the client's output is
// at the limit, so the backend keeps the rest.
func (sub *subscriber) pump(c *subConn) {
	defer sub.wg.Done()
	for {
		sub.mu.Lock()
		for !sub.pausedAt.IsZero() && !sub.closed {
			sub.cond.Wait()
		}
		if sub.closed {
			sub.mu.Unlock()
			return
		}
		nc := c.nc
		sub.mu.Unlock()
		if nc == nil {
			if !sub.reestablish(c) {
				return
			}
			continue
		}
		frame, err := nc.readReply()
		sub.mu.Lock()
		if sub.closed {
			sub.mu.Unlock()
			return
		}
		if err != nil {
			sub.loseLocked(c, err)
		} else {
			sub.handleFrameLocked(c, frame)
		}
		if c.unused() {
			sub.releaseLocked(c)
			sub.mu.Unlock()
			return
		}
		sub.cond.Broadcast()
		sub.mu.Unlock()
	}
}

// handleFrameLocked forwards, drops or follows one frame read from c.
func (sub *subscriber) handleFrameLocked(c *subConn, frame []byte) {
	kind, channel, isPubSub := parsePubSubReply(frame)
	switch {
	case isPubSub && (kind == "message" || kind == "pmessage" || kind == "smessage"):
		sub.enqueueLocked(frame)
	case isPubSub && kind == "sunsubscribe" && !c.awaitsSunsubscribe(channel):
		// The node dropped a shard channel because its slot moved away
		// (failover, migration): the client keeps it on the new master.
		if _, ok := c.shards[string(channel)]; ok && channel != nil {
			sub.displaceLocked(c, []string{string(channel)})
		}
	case len(c.resubs) > 0:
		sub.resubscribedLocked(c, frame)
	case c.written == 0:
		// Nothing the client asked for is in flight: not the client's.
	default:
		sub.clientReplyLocked(c, frame)
	}
	if c.written == 0 && c.nc != nil && len(c.deferred)+len(c.displaced) > 0 {
		deferred, displaced := c.deferred, c.displaced
		c.deferred, c.displaced = nil, nil
		sub.resubscribeShardsLocked(c, deferred, 0)
		sub.displaceLocked(c, displaced)
	}
}

// clientReplyLocked forwards a reply to the client's first command in
// flight on c, following a MOVED shard command to its new master.
func (sub *subscriber) clientReplyLocked(c *subConn, frame []byte) {
	p := c.pending[0]
	if isShardCommand(p) {
		if addr, ok := resp.MovedTarget(frame, c.nc.addr); ok {
			if p.redirects < maxPubSubRedirects {
				p.redirects++
				sub.moveCommandLocked(c, 0, addr)
				return
			}
			frame = fmt.Appendf(nil, "-CLUSTERDOWN slot %d: more than %d redirects, last to %s\r\n",
				router.Slot([]byte(p.args[0])), maxPubSubRedirects, addr)
		}
	}
	if p.cmd == cmdPING {
		if pong, ok := subscribedPong(frame); ok {
			frame = pong
		}
	}
	before := len(c.expect)
	sub.enqueueLocked(frame)
	c.account(frame)
	if len(c.expect) < before {
		c.pending = c.pending[1:]
		c.written--
	}
}

// isShardCommand reports a command routed by its channels' slot.
func isShardCommand(p *pendingCommand) bool {
	return (p.cmd == cmdSSUBSCRIBE || p.cmd == cmdSUNSUBSCRIBE) && len(p.args) > 0
}

// sendLocked queues a client command on c and writes it unless c waits
// for a new connection.
func (sub *subscriber) sendLocked(c *subConn, p *pendingCommand, owed int) {
	c.expect = append(c.expect, owed)
	c.pending = append(c.pending, p)
	if c.nc == nil {
		return
	}
	c.written++
	if _, err := c.nc.conn.Write(p.encode(nil)); err != nil {
		c.nc.close() // the pump sends it again on a new connection
	}
}

// account follows one frame from the backend: subscription confirmations
// update the sets and settle what the commands in flight owe.
func (c *subConn) account(frame []byte) {
	if resp.IsError(frame) {
		if len(c.expect) > 0 {
			c.expect = c.expect[1:] // an error ends its command
		}
		return
	}
	kind, channel, ok := parsePubSubReply(frame)
	if !ok {
		return
	}
	var set map[string]struct{}
	add := false
	switch kind {
	case "message", "pmessage", "smessage":
		return
	case "pong":
	case "subscribe":
		set, add = c.channels, true
	case "unsubscribe":
		set = c.channels
	case "psubscribe":
		set, add = c.patterns, true
	case "punsubscribe":
		set = c.patterns
	case "ssubscribe":
		set, add = c.shards, true
	case "sunsubscribe":
		set = c.shards
	default:
		return
	}
	if set != nil && channel != nil {
		if add {
			set[string(channel)] = struct{}{}
		} else {
			delete(set, string(channel))
		}
	}
	if len(c.expect) > 0 {
		if c.expect[0]--; c.expect[0] == 0 {
			c.expect = c.expect[1:]
		}
	}
}

// pubSubCommand serves a Pub/Sub command outside subscriber mode.
func (s *session) pubSubCommand(cmd *CommandInfo, c *redcon.Command) {
	switch cmd {
	case cmdSUBSCRIBE, cmdPSUBSCRIBE, cmdSSUBSCRIBE:
		if s.writeDirect == nil {
			s.replyError(unsupportedError(c.Args))
			return
		}
		// From here the writer goroutine owns the socket: what is answered
		// so far goes out first.
		s.runPending()
		_ = s.flush()
		s.unflushed = 0
		s.sub = newSubscriber(s.srv.ctx, s.srv, s.netConn)
		s.subscriberCommand(c)
	case cmdUNSUBSCRIBE, cmdPUNSUBSCRIBE, cmdSUNSUBSCRIBE:
		mark := len(s.local)
		s.local = appendNotSubscribed(s.local, cmd, c.Args)
		s.localReply(mark)
	default:
		// PUBLISH and PUBSUB go to the node SUBSCRIBE uses.
		masters := s.mastersList()
		if len(masters) == 0 {
			s.replyError(errNoMasters)
			return
		}
		q, i := s.newRequest()
		q.Raw = c.Raw
		q.Addr = masters[0]
		s.entries = append(s.entries, entry{kind: replyRouted, from: i, to: i + 1})
	}
}

// appendNotSubscribed appends Redis' replies to an unsubscribe command from
// a client not subscribed through it: one per argument, or one with a nil
// channel, each with a count of 0.
func appendNotSubscribed(b []byte, cmd *CommandInfo, args [][]byte) []byte {
	if len(args) == 1 {
		b = resp.AppendArray(b, 3)
		b = resp.AppendBulkString(b, cmd.Name)
		b = resp.AppendNullBulk(b)
		return resp.AppendInt(b, 0)
	}
	for _, ch := range args[1:] {
		b = resp.AppendArray(b, 3)
		b = resp.AppendBulkString(b, cmd.Name)
		b = resp.AppendBulk(b, ch)
		b = resp.AppendInt(b, 0)
	}
	return b
}

// subscriberCommand serves a command in subscriber mode.
func (s *session) subscriberCommand(c *redcon.Command) {
	sub := s.sub
	args := c.Args
	info := LookupCommand(args[0])
	if info != nil && isSubscribe(info) && info.ArityOK(len(args)) {
		s.srv.stats.commandsProcessed.Add(1)
		s.lastCommand = info.Name
		// Replies from several connections must not overtake each other.
		sub.waitIdle()
		s.subscriptionCommand(info, c)
		return
	}
	if subscribed := sub.waitIdle(); !subscribed || info == cmdRESET {
		// Out of subscriber mode (RESET leaves it too): served as usual.
		sub.shutdown()
		s.sub = nil
		s.classifyCommand(c)
		return
	}
	s.srv.stats.commandsProcessed.Add(1)
	switch {
	case info == nil:
		sub.reply(resp.AppendError(s.scratch[:0], unknownCommandError(args)))
	case !info.ArityOK(len(args)) || (info == cmdPING && len(args) > 2):
		sub.reply(resp.AppendError(s.scratch[:0], wrongArgsError(info.Name)))
	case info == cmdPING:
		// Answered by a subscriber connection, so the pong follows the
		// messages the node sent before it.
		s.lastCommand = info.Name
		if sub.ping(args) {
			return
		}
		// The node dropped the last subscription itself: answer as Redis.
		var payload []byte
		if len(args) > 1 {
			payload = args[1]
		}
		sub.reply(appendPong(s.scratch[:0], payload))
	case info == cmdQUIT:
		sub.reply(resp.AppendSimple(s.scratch[:0], "OK"))
		s.quit = true
	default:
		s.lastCommand = info.Name
		sub.reply(resp.AppendError(s.scratch[:0], "ERR Can't execute '"+info.Name+
			"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"))
	}
}

// subscriptionCommand sends a (P|S)(UN)SUBSCRIBE to its connection; the
// sub is idle.
func (s *session) subscriptionCommand(cmd *CommandInfo, c *redcon.Command) {
	sub := s.sub
	key := globalSubscriptions
	if cmd == cmdSSUBSCRIBE || cmd == cmdSUNSUBSCRIBE {
		if len(c.Args) == 1 { // SUNSUBSCRIBE from every shard
			sub.unsubscribeShards(c.Args)
			return
		}
		slot := router.Slot(c.Args[1])
		for _, ch := range c.Args[2:] {
			if router.Slot(ch) != slot {
				sub.reply(resp.AppendError(s.scratch[:0], errCrossSlot))
				return
			}
		}
		if key = s.srv.dedicated.MasterOf(int(slot)); key == "" {
			sub.reply(resp.AppendError(s.scratch[:0], errNoMasters))
			return
		}
	}
	switch {
	case sub.sendTo(key, cmd, c.Args):
	case cmd == cmdUNSUBSCRIBE || cmd == cmdPUNSUBSCRIBE || cmd == cmdSUNSUBSCRIBE:
		sub.reply(appendNotSubscribed(s.scratch[:0], cmd, c.Args))
	default:
		s.openSubConn(key, cmd, c.Args)
	}
}

// sendTo sends a client's command on the connection for key or, for
// SUNSUBSCRIBE, on the one holding its channels even if the topology has
// not caught up with a MOVED they followed; false when there is none.
func (sub *subscriber) sendTo(key string, cmd *CommandInfo, args [][]byte) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	conn := sub.conns[key]
	if cmd == cmdSUNSUBSCRIBE {
		for _, c := range sub.conns {
			if _, ok := c.shards[string(args[1])]; ok {
				conn = c
			}
		}
	}
	if conn == nil {
		return false
	}
	sub.sendCommandLocked(conn, cmd, args)
	return true
}

// ping sends PING on a connection, so the pong follows the messages before
// it: a connected one first, the one for SUBSCRIBE before shard ones; false
// when there is none.
func (sub *subscriber) ping(args [][]byte) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	var best *subConn
	for key, c := range sub.conns {
		if best == nil || (c.nc != nil && best.nc == nil) || ((c.nc != nil) == (best.nc != nil) && key == globalSubscriptions) {
			best = c
		}
	}
	if best == nil {
		return false
	}
	sub.sendCommandLocked(best, cmdPING, args)
	return true
}

// unsubscribeShards unsubscribes every shard channel: one SUNSUBSCRIBE per
// slot, on the connection holding it.
func (sub *subscriber) unsubscribeShards(args [][]byte) {
	sub.mu.Lock()
	sent := false
	for _, key := range slices.Sorted(maps.Keys(sub.conns)) {
		conn := sub.conns[key]
		for _, group := range bySlot(slices.Collect(maps.Keys(conn.shards))) {
			unsubscribe := [][]byte{args[0]}
			for _, ch := range group {
				unsubscribe = append(unsubscribe, []byte(ch))
			}
			sub.sendCommandLocked(conn, cmdSUNSUBSCRIBE, unsubscribe)
			sent = true
		}
	}
	sub.mu.Unlock()
	if !sent {
		sub.reply(appendNotSubscribed(nil, cmdSUNSUBSCRIBE, args))
	}
}

// openSubConn dials the connection for key and sends the client's command
// on it.
func (s *session) openSubConn(key string, cmd *CommandInfo, args [][]byte) {
	sub := s.sub
	addr := key
	if key == globalSubscriptions {
		masters := s.mastersList()
		if len(masters) == 0 {
			sub.reply(resp.AppendError(s.scratch[:0], errNoMasters))
			return
		}
		addr = masters[0]
	}
	nc, err := s.srv.pool.get(s.srv.ctx, addr)
	if err != nil {
		sub.reply(resp.AppendError(s.scratch[:0], "ERR cannot connect to backend "+addr+": "+oneLine(err.Error())))
		return
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed {
		nc.close()
		return
	}
	conn := sub.conns[key]
	if conn != nil {
		// A subscription that moved here opened it meanwhile.
		s.srv.pool.put(nc)
	} else {
		conn = newSubConn(key, nc)
		sub.addConnLocked(conn)
	}
	sub.sendCommandLocked(conn, cmd, args)
}

// sendCommandLocked writes a client's subscription command (or PING) on
// conn and records how many replies it owes: one per channel, or one per
// subscription (at least one) for an unsubscribe from everything.
func (sub *subscriber) sendCommandLocked(conn *subConn, cmd *CommandInfo, args [][]byte) {
	if sub.closed {
		return
	}
	p := &pendingCommand{cmd: cmd, args: make([]string, 0, len(args)-1)}
	for _, a := range args[1:] {
		p.args = append(p.args, string(a))
	}
	owed := len(p.args)
	switch {
	case cmd == cmdPING:
		owed = 1
	case owed == 0:
		switch cmd {
		case cmdUNSUBSCRIBE:
			owed = len(conn.channels)
		case cmdPUNSUBSCRIBE:
			owed = len(conn.patterns)
		}
		owed = max(owed, 1)
	}
	sub.sendLocked(conn, p, owed)
}
