package proxy

import (
	"context"
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

// globalSubscriptions keys the connection for SUBSCRIBE and PSUBSCRIBE in
// subscriber.conns; shard connections are keyed by address.
const globalSubscriptions = "global"

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
	// resp3: the client speaks RESP3, so Pub/Sub frames go to it as pushes
	// and it may run other commands (resp3.go).
	resp3 bool
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
	out   []byte
	spare []byte
	// pushes is scratch space for converting frames to RESP3.
	pushes  []byte
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

// newSubscriber starts the writer; cancelling ctx (a shutdown past its
// budget) ends the subscription even while nodes keep silent.
func newSubscriber(ctx context.Context, srv *Server, client net.Conn) *subscriber {
	sub := &subscriber{
		client:             client,
		srv:                srv,
		limit:              srv.pubsubOutputLimit.Load(),
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
		s.sub.resp3 = s.resp3
		s.subscriberCommand(c)
	case cmdUNSUBSCRIBE, cmdPUNSUBSCRIBE, cmdSUNSUBSCRIBE:
		mark := len(s.local)
		s.local = appendNotSubscribed(s.local, cmd, c.Args)
		if s.resp3 {
			s.scratch = resp.AppendPushes(s.scratch[:0], s.local[mark:])
			s.local = append(s.local[:mark], s.scratch...)
		}
		s.localReply(mark)
	default:
		// PUBLISH and PUBSUB go to the node SUBSCRIBE uses.
		s.routeFirstMaster(c.Raw, false, replyRouted)
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
		sub.reply(sub.appendPong(s.scratch[:0], payload))
	case info == cmdQUIT:
		sub.reply(resp.AppendSimple(s.scratch[:0], "OK"))
		s.quit = true
	case sub.resp3:
		s.subscribedCommand(c)
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
		sub.replyPushes(appendNotSubscribed(s.scratch[:0], cmd, c.Args))
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
		sub.replyPushes(appendNotSubscribed(nil, cmdSUNSUBSCRIBE, args))
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
