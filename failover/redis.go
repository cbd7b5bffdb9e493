package failover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"kvproxy/internal/resp"
)

// maxNodesReply bounds the replica's CLUSTER NODES, read once per follow,
// when Watch.MaxReply is smaller: it grows with the cluster, about 160 bytes
// a node.
const maxNodesReply = 1 << 20

// DefaultPromotionTimeout is RedisWatch.PromotionTimeout when it is zero:
// twice the 5 s after which a Redis replica abandons a manual failover
// (CLUSTER_MF_TIMEOUT, checked by its 100 ms cluster cron), so an attempt
// counted failed has certainly been given up.
const DefaultPromotionTimeout = 10 * time.Second

var (
	// ErrNotReplica means the replica's CLUSTER NODES, read before the
	// first poll, shows it neither replicating the old master nor holding
	// the old master's slots: no failover between the two is under way.
	ErrNotReplica = errors.New("failover: the replica is not the old master's")
	// ErrDemoted means the promoted replica turned back into a replica
	// before the old master turned into one: another failover took over.
	ErrDemoted = errors.New("failover: the promoted replica became a replica again")
)

// RedisWatch follows a Redis Cluster manual failover, CLUSTER FAILOVER sent
// to a replica, by polling ROLE on the replica and on its old master, after
// checking with CLUSTER MYID and CLUSTER NODES that they are a pair.
//
// Redis shows no failover state, so its progress is mapped onto the
// Kvrocks phases for a uniform report:
//
//	started   the replica is still a replica
//	switching the replica is a master, the old master not yet a replica
//	success   the replica is a master and the old master a replica
//	failed    the replica is still a replica PromotionTimeout after the
//	          first poll: Redis has abandoned the attempt
//
// A poll is one ROLE on each node; Handover.Polls counts them.
//
// The old master pauses its writes itself (clients block, no TRYAGAIN)
// from the moment the replica's request reaches it until it turns replica,
// and Redis 7.0 shows that pause nowhere a poll can read (no INFO field;
// CLIENT LIST flags only the clients it already blocked): switching covers
// only its end. So the Handover's HoldStart and HoldEnd stay zero
// (ObservedPause 0), and a proxy must not hold writes on switching.
type RedisWatch struct {
	// Watch gives the poll interval (required), the timeout of one round
	// trip, the bound on a reply and the phase callback, as it does for
	// Watch.Follow. The replica's CLUSTER NODES, read once, may take up
	// to 1 MiB even when MaxReply is smaller.
	Watch Watch
	// PromotionTimeout is how long after the first poll the replica may
	// still be a replica before the failover counts as failed.
	PromotionTimeout time.Duration
}

// FollowRedis is RedisWatch{Watch: Watch{Interval: interval, OnPhase:
// onPhase}}.Follow(ctx, replica, oldMaster).
func FollowRedis(ctx context.Context, replica, oldMaster net.Conn, interval time.Duration, onPhase func(Phase, time.Time)) (Handover, error) {
	return RedisWatch{Watch: Watch{Interval: interval, OnPhase: onPhase}}.Follow(ctx, replica, oldMaster)
}

// Follow first checks that the two nodes are a failing-over pair (the old
// master's CLUSTER MYID must be the replica's master or, once the replica is
// promoted, a node whose slots it took, in the replica's CLUSTER NODES),
// then polls ROLE on replica and on oldMaster every w.Watch.Interval until
// the phase is final (nil error), ctx ends (the error wraps
// context.Cause(ctx) and Final stays empty: the outcome is unknown), a
// connection fails (ErrConn), a node replies with an error (*resp.ReplyError)
// or something unreadable (resp.ErrProtocol), the nodes are not a pair
// (ErrNotReplica), or the promoted replica is demoted again (ErrDemoted).
// Errors name the command and the node. The Handover holds what was
// observed until then.
//
// Start it once the replica accepted CLUSTER FAILOVER. Both connections must
// be dialled and authenticated; the caller closes them. Follow sets their
// deadlines; after a nil error they have none and can be reused, after an
// error they may hold half a reply or an expired deadline and should be
// closed.
func (w RedisWatch) Follow(ctx context.Context, replica, oldMaster net.Conn) (Handover, error) {
	var h Handover
	switch {
	case replica == nil || oldMaster == nil:
		return h, errors.New("failover: nil connection")
	case w.Watch.Interval <= 0:
		return h, fmt.Errorf("failover: poll interval must be positive, not %v", w.Watch.Interval)
	case w.Watch.PollTimeout < 0:
		return h, fmt.Errorf("failover: poll timeout must not be negative, not %v", w.Watch.PollTimeout)
	case w.Watch.MaxReply < 0:
		return h, fmt.Errorf("failover: max reply must not be negative, not %d", w.Watch.MaxReply)
	case w.PromotionTimeout < 0:
		return h, fmt.Errorf("failover: promotion timeout must not be negative, not %v", w.PromotionTimeout)
	}
	promotionTimeout := cmp.Or(w.PromotionTimeout, DefaultPromotionTimeout)
	onReplica := newRolePoller("replica", replica, w.Watch)
	onOldMaster := newRolePoller("old master", oldMaster, w.Watch)
	// Cancellation must also interrupt a poll blocked on the network.
	stopInterrupt := context.AfterFunc(ctx, func() {
		_ = replica.SetDeadline(aLongTimeAgo)
		_ = oldMaster.SetDeadline(aLongTimeAgo)
	})
	defer stopInterrupt()

	if err := checkPair(ctx, onReplica, onOldMaster); err != nil {
		return h, err
	}
	ticker := time.NewTicker(w.Watch.Interval)
	defer ticker.Stop()
	for {
		if h.FirstPoll.IsZero() {
			h.FirstPoll = time.Now()
		}
		replicaRole, err := onReplica.poll(ctx)
		if err != nil {
			return h, err
		}
		oldMasterRole, err := onOldMaster.poll(ctx)
		if err != nil {
			return h, err
		}
		seen := time.Now()
		var last Phase
		if n := len(h.Phases); n > 0 {
			last = h.Phases[n-1]
		}
		phase, err := redisPhase(replicaRole, oldMasterRole, last, seen.Sub(h.FirstPoll) > promotionTimeout)
		if err != nil {
			return h, err
		}
		if h.record(phase, seen) && w.Watch.OnPhase != nil {
			w.Watch.OnPhase(phase, seen)
		}
		// record dates a hold from switching, which would understate the
		// pause Redis does not show (see RedisWatch).
		h.HoldStart, h.HoldEnd = time.Time{}, time.Time{}
		if phase.Final() {
			// Leave both connections ready for reuse, unless a
			// cancellation already claimed their deadlines.
			if stopInterrupt() {
				_ = replica.SetDeadline(time.Time{})
				_ = oldMaster.SetDeadline(time.Time{})
			}
			return h, nil
		}
		select {
		case <-ctx.Done():
			return h, stopped(ctx)
		case <-ticker.C:
		}
	}
}

// redisPhase maps the roles of one poll onto a phase; last is the phase of
// the poll before ("" at the first) and overdue says whether the promotion
// timeout has passed.
func redisPhase(replica, oldMaster nodeRole, last Phase, overdue bool) (Phase, error) {
	switch {
	case replica == roleMaster && oldMaster == roleSlave:
		return PhaseSuccess, nil
	case replica == roleMaster:
		// Also at the first poll: Redis can promote the replica within
		// milliseconds of CLUSTER FAILOVER, and checkPair showed it took
		// the old master's slots.
		return PhaseSwitching, nil
	case last == PhaseSwitching:
		return "", ErrDemoted
	case overdue:
		return PhaseFailed, nil
	}
	return PhaseStarted, nil
}

// nodeRole is the first element of a ROLE reply.
type nodeRole uint8

const (
	roleMaster nodeRole = iota + 1
	roleSlave
)

// roleCommand is ROLE as a RESP array.
var roleCommand = []byte("*1\r\n$4\r\nROLE\r\n")

// rolePoller sends ROLE, CLUSTER MYID or CLUSTER NODES to one node and
// reads the reply.
type rolePoller struct {
	poller
	node string // "replica" or "old master", for errors
}

func newRolePoller(node string, conn net.Conn, w Watch) *rolePoller {
	return &rolePoller{
		poller: poller{
			conn:     conn,
			r:        resp.NewReader(conn),
			timeout:  cmp.Or(w.PollTimeout, DefaultPollTimeout),
			maxReply: cmp.Or(w.MaxReply, DefaultMaxReply),
		},
		node: node,
	}
}

func (p *rolePoller) poll(ctx context.Context) (nodeRole, error) {
	if err := p.send(ctx, roleCommand); err != nil {
		return 0, p.failed("ROLE", err)
	}
	master, err := p.r.ReadRole(p.maxReply)
	if err != nil {
		return 0, p.failed("ROLE", p.ioFailed(ctx, err))
	}
	if master {
		return roleMaster, nil
	}
	return roleSlave, nil
}

// send sets the deadline of a round trip and sends command.
func (p *rolePoller) send(ctx context.Context, command []byte) error {
	err := p.conn.SetDeadline(time.Now().Add(p.timeout))
	// This deadline replaces one set by a cancellation that came first.
	if ctx.Err() != nil {
		return stopped(ctx)
	}
	if err != nil {
		return p.connFailed(err)
	}
	if _, err := p.conn.Write(command); err != nil {
		return p.ioFailed(ctx, err)
	}
	return nil
}

// failed names the command and the node an error came from.
func (p *rolePoller) failed(command string, err error) error {
	return fmt.Errorf("failover: %s on the %s %s: %w", command, p.node, p.conn.RemoteAddr(), err)
}

// bulk sends command and reads a bulk string reply of at most maxReply
// bytes; the body is valid until the next read.
func (p *rolePoller) bulk(ctx context.Context, name string, command []byte, maxReply int) ([]byte, error) {
	if err := p.send(ctx, command); err != nil {
		return nil, p.failed(name, err)
	}
	body, err := p.r.ReadString(maxReply)
	if err != nil {
		return nil, p.failed(name, p.ioFailed(ctx, err))
	}
	return body, nil
}

var (
	clusterMyIDCommand  = []byte("*2\r\n$7\r\nCLUSTER\r\n$4\r\nMYID\r\n")
	clusterNodesCommand = []byte("*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n")
)

// checkPair fails with ErrNotReplica unless the replica's CLUSTER NODES
// shows it replicating the old master, or holding the old master's slots
// (promoted; the old master is a master without slots or its replica).
func checkPair(ctx context.Context, replica, oldMaster *rolePoller) error {
	id, err := oldMaster.bulk(ctx, "CLUSTER MYID", clusterMyIDCommand, oldMaster.maxReply)
	if err != nil {
		return err
	}
	oldMasterID := string(id)
	nodes, err := replica.bulk(ctx, "CLUSTER NODES", clusterNodesCommand, max(replica.maxReply, maxNodesReply))
	if err != nil {
		return err
	}
	if err := pairedIn(nodes, oldMasterID); err != nil {
		return replica.failed("CLUSTER NODES", err)
	}
	return nil
}

// pairedIn checks a replica's CLUSTER NODES (see checkPair). It reads only
// the myself line and the old master's: a malformed line fails, lines about
// other nodes do not change the verdict.
func pairedIn(nodes []byte, oldMasterID string) error {
	var myself, oldMaster *resp.NodeLine
	for line, err := range resp.ClusterNodes(string(nodes)) {
		if err != nil {
			return err
		}
		if line.HasFlag("myself") {
			myself = &line
		}
		if line.ID == oldMasterID {
			oldMaster = &line
		}
	}
	switch {
	case myself == nil:
		return fmt.Errorf("%w: CLUSTER NODES has no myself line", resp.ErrProtocol)
	case myself.HasFlag("slave"):
		if myself.MasterID != oldMasterID {
			return fmt.Errorf("%w: it replicates %q, not %q", ErrNotReplica, resp.Clip([]byte(myself.MasterID)), oldMasterID)
		}
		return nil
	case oldMaster == nil:
		return fmt.Errorf("%w: it is a master that does not know %q", ErrNotReplica, oldMasterID)
	case oldMaster.HasFlag("slave") && oldMaster.MasterID == myself.ID:
		return nil // the roles have swapped already
	case oldMaster.HasFlag("master") && len(oldMaster.Slots) == 0:
		return nil // promoted: it took the old master's slots
	}
	return fmt.Errorf("%w: it is a master and %q still has its slots", ErrNotReplica, oldMasterID)
}
