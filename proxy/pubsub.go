package proxy

import (
	"context"
	"net"
	"sync"

	"github.com/tidwall/redcon"

	"kvproxy/router"
)

// Pub/Sub. SUBSCRIBE and PSUBSCRIBE go over one dedicated connection per
// subscribed client to the first master, and PUBLISH (and PUBSUB) is routed
// to that same master: Redis Cluster broadcasts PUBLISH to every node, but a
// Kvrocks cluster does not forward it between shards (apache/kvrocks#2157),
// so only a fixed node works for both. SSUBSCRIBE goes to the channel's slot master, over one
// connection per master, and SPUBLISH is routed by slot like any keyed
// command.
//
// While subscribed, a per-client writer goroutine owns the client's socket:
// every reply and message goes through its queue, which holds at most
// MaxOutputBytes (past it the slow subscriber is disconnected, as Redis'
// client-output-buffer-limit pubsub does). The session waits for the
// replies in flight before it answers a command itself, so replies keep the
// order of the commands, and the subscription counts the backends report
// tell when the client has left subscriber mode.

var (
	cmdSUBSCRIBE    = LookupCommand([]byte("subscribe"))
	cmdPSUBSCRIBE   = LookupCommand([]byte("psubscribe"))
	cmdSSUBSCRIBE   = LookupCommand([]byte("ssubscribe"))
	cmdUNSUBSCRIBE  = LookupCommand([]byte("unsubscribe"))
	cmdPUNSUBSCRIBE = LookupCommand([]byte("punsubscribe"))
	cmdSUNSUBSCRIBE = LookupCommand([]byte("sunsubscribe"))
	cmdSPUBLISH     = LookupCommand([]byte("spublish"))
	cmdPING         = LookupCommand([]byte("ping"))
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
	maxOut int

	mu   sync.Mutex
	cond sync.Cond
	// out is what the writer has yet to send; writing is true while it
	// sends a batch taken from out.
	out     []byte
	spare   []byte
	writing bool
	closed  bool
	conns   map[string]*subConn
	wg      sync.WaitGroup
	// stopCancel detaches the subscriber from the server's cancellation.
	stopCancel func() bool
}

// subConn is one dedicated subscriber connection and what it is subscribed
// to, as its replies tell.
type subConn struct {
	key      string
	nc       *nodeConn
	channels map[string]struct{}
	patterns map[string]struct{}
	shards   map[string]struct{}
	// expect[i] is how many replies the i-th command in flight still owes.
	expect []int
}

func (c *subConn) subscriptions() int { return len(c.channels) + len(c.patterns) + len(c.shards) }

// newSubscriber starts the writer; cancelling ctx (a shutdown past its
// budget) ends the subscription even while nodes keep silent.
func newSubscriber(ctx context.Context, client net.Conn, maxOut int) *subscriber {
	sub := &subscriber{client: client, maxOut: maxOut, conns: make(map[string]*subConn)}
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

// writeLoop sends the queued output to the client.
func (sub *subscriber) writeLoop() {
	defer sub.wg.Done()
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
		sub.writing = true
		sub.mu.Unlock()
		_, err := sub.client.Write(batch)
		sub.mu.Lock()
		sub.writing = false
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

// enqueueLocked queues output for the client, disconnecting a client whose
// queue would pass the limit. sub.mu is held.
func (sub *subscriber) enqueueLocked(b []byte) {
	if sub.closed {
		return
	}
	if len(sub.out)+len(b) > sub.maxOut && len(sub.out) > 0 {
		sub.failLocked()
		return
	}
	sub.out = append(sub.out, b...)
	sub.cond.Broadcast()
}

// failLocked ends the subscription and the client's connection: the client
// is too slow, gone, or a backend connection was lost (a subscriber cannot
// be told otherwise that it may have missed messages).
func (sub *subscriber) failLocked() {
	if sub.closed {
		return
	}
	sub.closed = true
	_ = sub.client.Close()
	for _, c := range sub.conns {
		c.nc.close()
	}
	sub.cond.Broadcast()
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

// anyConn returns the connection for SUBSCRIBE, else a shard one, else nil.
func (sub *subscriber) anyConn() *subConn {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if c := sub.conns[globalSubscriptions]; c != nil {
		return c
	}
	for _, c := range sub.conns {
		return c
	}
	return nil
}

// shutdown closes the subscriber connections and waits for its goroutines.
func (sub *subscriber) shutdown() {
	sub.mu.Lock()
	if !sub.closed {
		sub.closed = true
		for _, c := range sub.conns {
			c.nc.close()
		}
		sub.cond.Broadcast()
	}
	sub.mu.Unlock()
	sub.stopCancel()
	sub.wg.Wait()
}

// pump forwards what one backend connection sends and follows its
// subscription count; it releases the connection once nothing is
// subscribed on it and no reply is owed.
func (sub *subscriber) pump(c *subConn) {
	defer sub.wg.Done()
	for {
		frame, err := c.nc.readReply()
		sub.mu.Lock()
		if err != nil {
			sub.failLocked()
			sub.mu.Unlock()
			return
		}
		sub.enqueueLocked(frame)
		c.account(frame)
		if len(c.expect) == 0 && c.subscriptions() == 0 {
			delete(sub.conns, c.key)
			c.nc.close()
			sub.cond.Broadcast()
			sub.mu.Unlock()
			return
		}
		sub.cond.Broadcast()
		sub.mu.Unlock()
	}
}

// account follows one frame from the backend: subscription confirmations
// update the sets and settle what the commands in flight owe.
func (c *subConn) account(frame []byte) {
	if isErrorReply(frame) {
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

// parsePubSubReply reads the kind and channel of a RESP2 Pub/Sub frame
// (an array of at least two elements starting with two bulk strings; a nil
// channel comes back nil).
func parsePubSubReply(frame []byte) (kind string, channel []byte, ok bool) {
	if len(frame) == 0 || frame[0] != '*' {
		return "", nil, false
	}
	line, next, ok := replyLine(frame)
	if !ok {
		return "", nil, false
	}
	if n, ok := parseInt64(line); !ok || n < 2 {
		return "", nil, false
	}
	first, next, ok := bulkAt(frame, next)
	if !ok || first == nil {
		return "", nil, false
	}
	channel, _, ok = bulkAt(frame, next)
	if !ok {
		return "", nil, false
	}
	return string(first), channel, true
}

// bulkAt reads the bulk string at frame[at:]; nil for a nil bulk.
func bulkAt(frame []byte, at int) (data []byte, next int, ok bool) {
	if at >= len(frame) || frame[at] != '$' {
		return nil, 0, false
	}
	line, n, ok := replyLine(frame[at:])
	if !ok {
		return nil, 0, false
	}
	size, ok := parseInt64(line)
	switch {
	case !ok || size < -1:
		return nil, 0, false
	case size == -1:
		return nil, at + n, true
	}
	start := at + n
	end := start + int(size)
	if size > int64(len(frame)) || end+2 > len(frame) || frame[end] != '\r' || frame[end+1] != '\n' {
		return nil, 0, false
	}
	return frame[start:end], end + 2, true
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
		s.sub = newSubscriber(s.srv.ctx, s.netConn, s.srv.cfg.MaxOutputBytes)
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
		b = appendArray(b, 3)
		b = appendBulkString(b, cmd.Name)
		b = appendNullBulk(b)
		return appendInt(b, 0)
	}
	for _, ch := range args[1:] {
		b = appendArray(b, 3)
		b = appendBulkString(b, cmd.Name)
		b = appendBulk(b, ch)
		b = appendInt(b, 0)
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
		sub.reply(appendError(s.scratch[:0], unknownCommandError(args)))
	case !info.ArityOK(len(args)) || (info == cmdPING && len(args) > 2):
		sub.reply(appendError(s.scratch[:0], wrongArgsError(info.Name)))
	case info == cmdPING:
		// Answered by a subscriber connection, so the pong follows the
		// messages the node sent before it.
		s.lastCommand = info.Name
		if conn := sub.anyConn(); conn != nil {
			sub.send(conn, cmdPING, c.Raw, 1)
			return
		}
		// The node dropped the last subscription itself: answer as Redis.
		var payload []byte
		if len(args) > 1 {
			payload = args[1]
		}
		b := appendArray(s.scratch[:0], 2)
		b = appendBulkString(b, "pong")
		sub.reply(appendBulk(b, payload))
	case info == cmdQUIT:
		sub.reply(appendSimple(s.scratch[:0], "OK"))
		s.quit = true
	default:
		s.lastCommand = info.Name
		sub.reply(appendError(s.scratch[:0], "ERR Can't execute '"+info.Name+
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
			s.unsubscribeShards(c)
			return
		}
		slot := router.Slot(c.Args[1])
		for _, ch := range c.Args[2:] {
			if router.Slot(ch) != slot {
				sub.reply(appendError(s.scratch[:0], errCrossSlot))
				return
			}
		}
		key = s.srv.dedicated.MasterOf(int(slot))
		if key == "" {
			sub.reply(appendError(s.scratch[:0], errNoMasters))
			return
		}
	}
	sub.mu.Lock()
	conn := sub.conns[key]
	sub.mu.Unlock()
	if conn == nil {
		if cmd == cmdUNSUBSCRIBE || cmd == cmdPUNSUBSCRIBE || cmd == cmdSUNSUBSCRIBE {
			sub.reply(appendNotSubscribed(s.scratch[:0], cmd, c.Args))
			return
		}
		if conn = s.openSubConn(key); conn == nil {
			return
		}
	}
	sub.send(conn, cmd, c.Raw, len(c.Args)-1)
}

// unsubscribeShards sends SUNSUBSCRIBE to every shard connection.
func (s *session) unsubscribeShards(c *redcon.Command) {
	sub := s.sub
	sub.mu.Lock()
	var conns []*subConn
	for key, conn := range sub.conns {
		if key != globalSubscriptions {
			conns = append(conns, conn)
		}
	}
	sub.mu.Unlock()
	if len(conns) == 0 {
		sub.reply(appendNotSubscribed(s.scratch[:0], cmdSUNSUBSCRIBE, c.Args))
		return
	}
	for _, conn := range conns {
		sub.send(conn, cmdSUNSUBSCRIBE, c.Raw, 0)
	}
}

// openSubConn dials the connection for key and starts forwarding from it.
func (s *session) openSubConn(key string) *subConn {
	sub := s.sub
	addr := key
	if key == globalSubscriptions {
		masters := s.mastersList()
		if len(masters) == 0 {
			sub.reply(appendError(s.scratch[:0], errNoMasters))
			return nil
		}
		addr = masters[0]
	}
	nc, err := s.srv.pool.get(s.srv.ctx, addr)
	if err != nil {
		sub.reply(appendError(s.scratch[:0], "ERR cannot connect to backend "+addr+": "+oneLine(err.Error())))
		return nil
	}
	conn := &subConn{
		key:      key,
		nc:       nc,
		channels: make(map[string]struct{}),
		patterns: make(map[string]struct{}),
		shards:   make(map[string]struct{}),
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed {
		nc.close()
		return nil
	}
	sub.conns[key] = conn
	sub.wg.Add(1)
	go sub.pump(conn)
	return conn
}

// send writes a subscription command on conn and records how many replies
// it owes: one per channel, or one per subscription (at least one) for an
// unsubscribe from everything.
func (sub *subscriber) send(conn *subConn, cmd *CommandInfo, raw []byte, channels int) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed {
		return
	}
	owed := channels
	if owed == 0 {
		switch cmd {
		case cmdUNSUBSCRIBE:
			owed = len(conn.channels)
		case cmdPUNSUBSCRIBE:
			owed = len(conn.patterns)
		case cmdSUNSUBSCRIBE:
			owed = len(conn.shards)
		}
		owed = max(owed, 1)
	}
	conn.expect = append(conn.expect, owed)
	if _, err := conn.nc.conn.Write(raw); err != nil {
		sub.failLocked()
	}
}
