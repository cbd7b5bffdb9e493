// Subscriptions that follow the topology: SUBSCRIBE and PSUBSCRIBE live on
// the first master, where PUBLISH goes, and shard channels on their slot's
// master; when the router's table changes, connections on the wrong node
// move (see pubsub.go for the subscriber).

package proxy

import (
	"time"

	"kvproxy/router"
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

// followTopology moves, whenever the slot table changes and until the
// subscriber ends, the connection for SUBSCRIBE and PSUBSCRIBE to the first
// master and shard channels to their slot's master. It compares on every
// change: a reload with nothing new fires too.
func (sub *subscriber) followTopology(changes topologyChanges) {
	defer sub.wg.Done()
	for {
		// Taken before comparing, so a change in between is not missed.
		changed := changes.Changed()
		sub.mu.Lock()
		if sub.closed {
			sub.mu.Unlock()
			return
		}
		for _, c := range sub.conns {
			if c.key == globalSubscriptions {
				sub.moveToFirstMasterLocked(c)
			} else {
				sub.followSlotMastersLocked(c)
			}
		}
		sub.mu.Unlock()
		select {
		case <-changed:
		case <-sub.ctx.Done():
			return
		}
	}
}

// moveToFirstMasterLocked closes c's connection when its node is no longer
// the first master: the pump re-subscribes on the first master as for a
// lost connection, and sends again the client's commands not answered.
// A connection being re-established picks the first master by itself.
func (sub *subscriber) moveToFirstMasterLocked(c *subConn) {
	if c.nc == nil {
		return
	}
	first := sub.firstMaster()
	if first == "" || first == c.nc.addr {
		return
	}
	if c.lostAt.IsZero() {
		c.lostAt = time.Now()
		sub.srv.logger.Info("pubsub: first master changed, moving subscriptions", "client", sub.client.RemoteAddr().String(),
			"from", c.nc.addr, "to", first)
	}
	c.nc.close()
}

// followSlotMastersLocked closes shard connection c when the topology names
// another master for one of its channels or of its commands in flight:
// Kvrocks neither refuses SSUBSCRIBE on a node that lost the slot nor drops
// the channel (no MOVED, no sunsubscribe), so nothing else tells. The pump
// handles it as lost, and re-establishing it moves first what belongs
// elsewhere, the client's command in flight included; channels of slots
// the node kept are subscribed again on a new connection to it. Closing
// before subscribing elsewhere means no message arrives twice. The topology
// wins over a MOVED followed before it caught up: the node that sent it is
// asked again, and redirects again if it still disagrees.
func (sub *subscriber) followSlotMastersLocked(c *subConn) {
	if c.retarget || !sub.misplacedLocked(c) {
		return
	}
	c.retarget = true
	if c.nc == nil {
		return // re-established: the attempt under way starts over
	}
	if c.lostAt.IsZero() {
		c.lostAt = time.Now()
		sub.srv.logger.Info("pubsub: slot master changed, moving shard subscriptions", "client", sub.client.RemoteAddr().String(),
			"from", c.nc.addr)
	}
	c.nc.close()
}

// misplacedLocked reports whether the topology names another master than
// c's node for one of c's shard channels or shard commands in flight.
func (sub *subscriber) misplacedLocked(c *subConn) bool {
	for ch := range c.shards {
		if sub.masterOf(ch, c.key) != c.key {
			return true
		}
	}
	for _, p := range c.pending {
		if isShardCommand(p) && sub.masterOf(p.args[0], c.key) != c.key {
			return true
		}
	}
	return false
}

// firstMaster is where PUBLISH goes now, "" when the topology has no master.
func (sub *subscriber) firstMaster() string {
	if masters := sub.srv.backend.Masters(); len(masters) > 0 {
		return masters[0]
	}
	return ""
}
