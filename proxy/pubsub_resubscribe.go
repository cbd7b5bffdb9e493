// Re-establishing subscriptions: a lost (or moved) subscription connection
// is dialled again on the current topology, its channels subscribed again
// with their confirmations hidden from the client, and the client's commands
// of the window sent behind them, in order.

package proxy

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

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

// displaceLocked follows shard channels node c dropped because their slot
// moved away, to the slot's master. While the topology still names c's
// node, that node is asked its ROLE: after a failover it is a replica
// (Redis would accept SSUBSCRIBE there) and names the new master; still a
// master, it answers SSUBSCRIBE with MOVED.
func (sub *subscriber) displaceLocked(c *subConn, channels []string) {
	var stale []string
	for _, ch := range channels {
		if _, ok := c.shards[ch]; !ok {
			continue
		}
		if addr := sub.masterOf(ch, c.key); addr != c.key {
			sub.moveShardsLocked(c, addr, []string{ch}, 0)
		} else {
			stale = append(stale, ch)
		}
	}
	switch {
	case len(stale) == 0:
	case c.written > 0:
		c.displaced = append(c.displaced, stale...)
	default:
		c.resubs = append(c.resubs, &resubscription{cmd: cmdROLE, channels: stale, owed: 1})
		if _, err := c.nc.conn.Write(resp.AppendBulkString(resp.AppendArray(nil, 1), cmdROLE.Name)); err != nil {
			c.nc.close() // the pump starts over
		}
	}
}

// awaitsSunsubscribe reports whether a sunsubscribe frame for channel
// answers the client's SUNSUBSCRIBE in flight rather than telling that the
// node dropped the channel.
func (c *subConn) awaitsSunsubscribe(channel []byte) bool {
	if len(c.resubs) > 0 || c.written == 0 || c.pending[0].cmd != cmdSUNSUBSCRIBE {
		return false
	}
	return slices.Contains(c.pending[0].args, string(channel))
}

// resubscribedLocked drops a reply to the proxy's own re-subscription,
// following MOVED; any other error starts the connection over.
func (sub *subscriber) resubscribedLocked(c *subConn, frame []byte) {
	r := c.resubs[0]
	if r.cmd == cmdROLE {
		c.resubs = c.resubs[1:]
		target := c.key
		if addr, ok := resp.RoleMaster(frame); ok {
			target = addr
		}
		sub.moveShardsLocked(c, target, c.holding(r.channels), r.redirects+1)
		if len(c.resubs) == 0 {
			sub.restoredLocked(c)
		}
		return
	}
	if !resp.IsError(frame) {
		if r.owed--; r.owed > 0 {
			return
		}
		c.resubs = c.resubs[1:]
		if len(c.resubs) == 0 {
			sub.restoredLocked(c)
		}
		return
	}
	c.resubs = c.resubs[1:]
	addr, moved := resp.MovedTarget(frame, c.nc.addr)
	if !moved || r.cmd != cmdSSUBSCRIBE {
		// Refused (loading, cluster down ...): start over after a pause.
		sub.loseLocked(c, fmt.Errorf("%s refused: %s", r.cmd.Name, oneLine(string(frame))))
		return
	}
	sub.moveShardsLocked(c, addr, c.holding(r.channels), r.redirects+1)
	if len(c.resubs) == 0 {
		sub.restoredLocked(c)
	}
}

// holding returns those of channels c holds.
func (c *subConn) holding(channels []string) []string {
	var held []string
	for _, ch := range channels {
		if _, ok := c.shards[ch]; ok {
			held = append(held, ch)
		}
	}
	return held
}

// restoredLocked notes that what c carried is subscribed again.
func (sub *subscriber) restoredLocked(c *subConn) {
	if !c.lostAt.IsZero() {
		sub.srv.logger.Info("pubsub: subscriptions restored", "client", sub.client.RemoteAddr().String(),
			"node", c.nc.addr, "after", time.Since(c.lostAt).Round(time.Millisecond))
	}
	c.lostAt, c.retryDelay = time.Time{}, 0
}

// moveShardsLocked moves shard channels from c to the connection to addr
// and subscribes them there.
func (sub *subscriber) moveShardsLocked(from *subConn, addr string, channels []string, redirects int) {
	if len(channels) == 0 {
		return
	}
	if redirects > maxPubSubRedirects {
		sub.srv.logger.Warn("pubsub: shard channel redirected too often, disconnecting the client",
			"client", sub.client.RemoteAddr().String(), "channel", channels[0], "last", addr)
		sub.failLocked()
		return
	}
	target := sub.connLocked(addr, from.lostAt)
	for _, ch := range channels {
		delete(from.shards, ch)
		target.shards[ch] = struct{}{}
	}
	switch {
	case target.nc == nil:
		// Its new connection subscribes them.
	case target.written > 0:
		target.deferred = append(target.deferred, channels...)
	default:
		sub.resubscribeShardsLocked(target, channels, redirects)
	}
}

// resubscribeShardsLocked sends SSUBSCRIBE on c, one per slot, for those of
// channels c still holds; no client command may be in flight on c.
func (sub *subscriber) resubscribeShardsLocked(c *subConn, channels []string, redirects int) {
	var b []byte
	for _, group := range bySlot(c.holding(channels)) {
		b = c.appendResubscription(b, cmdSSUBSCRIBE, group, redirects)
	}
	if len(b) > 0 {
		if _, err := c.nc.conn.Write(b); err != nil {
			c.nc.close() // the pump starts over
		}
	}
}

// appendResubscription records and encodes a re-subscription to channels.
func (c *subConn) appendResubscription(b []byte, cmd *CommandInfo, channels []string, redirects int) []byte {
	if len(channels) == 0 {
		return b
	}
	c.resubs = append(c.resubs, &resubscription{cmd: cmd, channels: channels, owed: len(channels), redirects: redirects})
	b = resp.AppendArray(b, 1+len(channels))
	b = resp.AppendBulkString(b, cmd.Name)
	for _, ch := range channels {
		b = resp.AppendBulkString(b, ch)
	}
	return b
}

// bySlot splits shard channels into sorted groups of one slot each.
func bySlot(channels []string) [][]string {
	slots := make(map[uint16][]string)
	for _, ch := range channels {
		slot := router.Slot([]byte(ch))
		slots[slot] = append(slots[slot], ch)
	}
	groups := make([][]string, 0, len(slots))
	for _, slot := range slices.Sorted(maps.Keys(slots)) {
		groups = append(groups, slices.Sorted(slices.Values(slots[slot])))
	}
	return groups
}

// masterOf returns the current master of channel's slot, or fallback when
// the topology has none.
func (sub *subscriber) masterOf(channel, fallback string) string {
	if addr := sub.srv.dedicated.MasterOf(int(router.Slot([]byte(channel)))); addr != "" {
		return addr
	}
	return fallback
}

// moveCommandLocked moves c's i-th client command to the connection to
// addr.
func (sub *subscriber) moveCommandLocked(c *subConn, i int, addr string) {
	p, owed := c.pending[i], c.expect[i]
	c.pending = slices.Delete(c.pending, i, i+1)
	c.expect = slices.Delete(c.expect, i, i+1)
	if i < c.written {
		c.written--
	}
	sub.sendLocked(sub.connLocked(addr, c.lostAt), p, owed)
}

// loseLocked drops c's broken connection: what was sent on it will be sent
// again on a new one, the first command only for its arguments not yet
// answered.
func (sub *subscriber) loseLocked(c *subConn, cause error) {
	addr := c.nc.addr
	c.nc.close()
	c.nc = nil
	if c.lostAt.IsZero() {
		c.lostAt = time.Now()
		sub.srv.logger.Info("pubsub: subscriber connection lost, re-subscribing", "client", sub.client.RemoteAddr().String(),
			"node", addr, "err", cause)
	}
	if c.written > 0 {
		if p := c.pending[0]; len(p.args) > c.expect[0] {
			c.pending[0] = &pendingCommand{cmd: p.cmd, args: p.args[len(p.args)-c.expect[0]:], redirects: p.redirects}
		}
	}
	c.written, c.resubs, c.deferred, c.displaced = 0, nil, nil, nil
}

// retargetLocked moves the shard channels and commands of c, which waits
// for a new connection, whose slot has another master now.
func (sub *subscriber) retargetLocked(c *subConn) {
	moves := make(map[string][]string)
	for ch := range c.shards {
		if addr := sub.masterOf(ch, c.key); addr != c.key {
			moves[addr] = append(moves[addr], ch)
		}
	}
	for _, addr := range slices.Sorted(maps.Keys(moves)) {
		sub.moveShardsLocked(c, addr, moves[addr], 0)
	}
	for i := 0; i < len(c.pending); {
		p := c.pending[i]
		if isShardCommand(p) {
			if addr := sub.masterOf(p.args[0], c.key); addr != c.key {
				sub.moveCommandLocked(c, i, addr)
				continue
			}
		}
		if p.cmd == cmdPING && c.subscriptions() == 0 {
			// Nothing subscribed is left here: answered as Redis does.
			var payload []byte
			if len(p.args) > 0 {
				payload = []byte(p.args[0])
			}
			sub.enqueueLocked(sub.appendPong(nil, payload))
			c.pending = slices.Delete(c.pending, i, i+1)
			c.expect = slices.Delete(c.expect, i, i+1)
			continue
		}
		i++
	}
}

// reestablish opens a new connection for c and sends on it what c carries,
// pausing between attempts; it reports false once c has ended: released,
// the subscriber closed, or out of time (the client is disconnected).
func (sub *subscriber) reestablish(c *subConn) bool {
	for {
		sub.mu.Lock()
		delay := c.retryDelay
		sub.mu.Unlock()
		if delay > 0 {
			timer := time.NewTimer(delay)
			select {
			case <-sub.ctx.Done():
				timer.Stop()
				return false
			case <-timer.C:
			}
		}
		sub.mu.Lock()
		if sub.closed {
			sub.mu.Unlock()
			return false
		}
		if c.key != globalSubscriptions && (delay > 0 || c.retarget) {
			// Its address failed once, or the topology changed: the
			// topology may know better now. Not before, as a MOVED may know
			// better than the topology.
			c.retarget = false
			sub.retargetLocked(c)
		}
		if c.unused() {
			sub.releaseLocked(c)
			sub.mu.Unlock()
			return false
		}
		if time.Since(c.lostAt) > sub.resubscribeTimeout {
			sub.srv.logger.Warn("pubsub: lost subscriptions could not be restored, disconnecting the client",
				"client", sub.client.RemoteAddr().String(), "node", c.key, "tried for", sub.resubscribeTimeout)
			sub.failLocked()
			sub.mu.Unlock()
			return false
		}
		addr := c.key
		if addr == globalSubscriptions {
			addr = sub.firstMaster()
		}
		c.retryDelay = min(max(2*c.retryDelay, resubscribeMinDelay), resubscribeMaxDelay)
		sub.mu.Unlock()
		if addr == "" {
			continue
		}
		nc, err := sub.srv.pool.get(sub.ctx, addr)
		if err != nil {
			sub.srv.logger.Debug("pubsub: re-dial failed", "node", addr, "err", err)
			continue
		}
		sub.mu.Lock()
		if c.key == globalSubscriptions && !sub.closed {
			if first := sub.firstMaster(); first != "" && first != addr {
				// The first master changed during the dial, unseen by the
				// watcher (nothing was connected): dial the new one.
				sub.mu.Unlock()
				sub.srv.pool.put(nc)
				continue
			}
		}
		if c.retarget && !sub.closed {
			// The topology moved some of c's channels during the dial.
			sub.mu.Unlock()
			sub.srv.pool.put(nc)
			continue
		}
		resumed := !sub.closed && sub.resumeLocked(c, nc)
		sub.mu.Unlock()
		if resumed {
			return true
		}
		nc.close()
	}
}

// resumeLocked sends on nc, in one write, the re-subscriptions for what c
// holds and then the client commands waiting; it reports whether the write
// went out.
func (sub *subscriber) resumeLocked(c *subConn, nc *nodeConn) bool {
	var b []byte
	c.resubs = nil
	if c.key == globalSubscriptions {
		b = c.appendResubscription(b, cmdSUBSCRIBE, slices.Sorted(maps.Keys(c.channels)), 0)
		b = c.appendResubscription(b, cmdPSUBSCRIBE, slices.Sorted(maps.Keys(c.patterns)), 0)
	} else {
		for _, group := range bySlot(slices.Collect(maps.Keys(c.shards))) {
			b = c.appendResubscription(b, cmdSSUBSCRIBE, group, 0)
		}
	}
	for _, p := range c.pending {
		b = p.encode(b)
	}
	if _, err := nc.conn.Write(b); err != nil {
		c.resubs = nil
		return false
	}
	c.nc, c.written, c.deferred, c.displaced = nc, len(c.pending), nil, nil
	if len(c.resubs) == 0 {
		sub.restoredLocked(c)
	}
	return true
}
