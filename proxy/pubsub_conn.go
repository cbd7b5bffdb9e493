// A subscriber's backend connections: what each carries, the pump that
// reads its frames and forwards, drops or follows them, and the replies
// the client's commands in flight still owe (see pubsub.go for the
// subscriber).

package proxy

import (
	"fmt"
	"time"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// maxPubSubRedirects bounds the MOVED redirects a shard subscription
// follows, as the router bounds them for other commands.
const maxPubSubRedirects = 5

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
		sub.pushLocked(frame)
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
	// accounted is the frame in the form account counts: a pong as Redis'
	// RESP2 array, whatever form the node gave it (Kvrocks' +PONG or bulk).
	accounted := frame
	if p.cmd == cmdPING && !resp.IsError(frame) {
		if pong, ok := subscribedPong(frame); ok {
			accounted, frame = pong, pong
		}
		if sub.resp3 {
			// A RESP3 client gets PING's usual reply.
			var payload []byte
			if len(p.args) > 0 {
				payload = []byte(p.args[0])
			}
			frame = sub.appendPong(nil, payload)
		}
	}
	before := len(c.expect)
	sub.pushLocked(frame)
	c.account(accounted)
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
