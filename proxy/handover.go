package proxy

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/failover"
	"kvproxy/internal/resp"
	"kvproxy/router"
)

// Handovers is told of every CLUSTERX FAILOVER a master accepted through the
// proxy, so the shard's writes are held through the handover, and reports
// the handovers it followed and the requests it held for INFO
// (failover.Buffer implements it).
type Handovers interface {
	// FollowClusterxFailover is told of a CLUSTERX FAILOVER that master
	// accepted, handing its slots to replica (both addresses). The channel
	// receives how the handover ended, once.
	FollowClusterxFailover(master, replica string) <-chan failover.Outcome
	// FollowRedisFailover is told of a CLUSTER FAILOVER that replica, a
	// Redis Cluster replica of master, accepted; its channel is
	// FollowClusterxFailover's.
	FollowRedisFailover(master, replica string) <-chan failover.Outcome
	// FollowAuthorityFailover holds master's writes while run, the
	// topology authority's failover of its shard to replica, runs; its
	// channel is FollowClusterxFailover's.
	FollowAuthorityFailover(master, replica string, run func(context.Context) error) <-chan failover.Outcome
	Report() failover.Report
	// NextHandover returns a channel closed the next time a failover of
	// master succeeds.
	NextHandover(master string) <-chan struct{}
}

// writeFailoverInfo writes INFO's failover section: the proxy-wide hold
// counters, what the topology authority was told, then one line per shard
// as PROXY FAILOVER numbers them (its master and replicas as routed now,
// its handovers as followed, whichever of its nodes was master then, and
// what the proxy held for it), and one line per other node that failed over
// or held requests (a node no longer in the topology).
func (srv *Server) writeFailoverInfo(line func(key, value string)) {
	reports := map[string]failover.MasterReport{}
	if srv.cfg.Handovers != nil {
		report := srv.cfg.Handovers.Report()
		st := report.Totals
		line("held_total", strconv.FormatUint(st.Held, 10))
		line("released_total", strconv.FormatUint(st.Released, 10))
		line("expired_total", strconv.FormatUint(st.Expired, 10))
		line("abandoned_total", strconv.FormatUint(st.Abandoned, 10))
		line("hold_full_total", strconv.FormatUint(st.Full, 10))
		line("held_now", strconv.FormatUint(st.HeldNow, 10))
		for _, r := range report.Masters {
			reports[r.Master] = r
		}
	}
	controller := "none"
	if srv.cfg.Authority != nil {
		controller = srv.cfg.Authority.Name()
	}
	line("controller", controller)
	line("controller_reported", itoa(srv.stats.handoversReported.Load()))
	line("controller_report_failures", itoa(srv.stats.authorityReportFailures.Load()))
	line("controller_unreported", itoa(srv.stats.handoversUnreported.Load()))
	listed := map[string]bool{}
	for i, sh := range shardsOf(srv.topology()) {
		var info shardInfo
		for _, addr := range sh.members() {
			listed[addr] = true
			info.add(reports[addr])
		}
		info.inOutage = reports[sh.master.Addr].InOutage
		replicas := make([]string, len(sh.replicas))
		for j, r := range sh.replicas {
			replicas[j] = r.Addr
		}
		line("shard"+strconv.Itoa(i), "master="+sh.master.Addr+",replicas="+orDash(strings.Join(replicas, "|"))+
			",slots="+formatRanges(sh.master.Slots, "|")+","+info.String())
	}
	others := map[string]*shardInfo{}
	for addr, r := range reports {
		if !listed[addr] {
			others[addr] = &shardInfo{}
			others[addr].add(r)
			others[addr].inOutage = r.InOutage
		}
	}
	for i, addr := range slices.Sorted(maps.Keys(others)) {
		line("other"+strconv.Itoa(i), "addr="+addr+","+others[addr].String())
	}
}

// shardInfo is what INFO reports of one shard (or node): the handover
// followed last, and the hold counters and outages summed over the shard's
// nodes.
type shardInfo struct {
	report   failover.MasterReport
	holds    failover.Counts
	outages  uint64
	inOutage bool
}

// add merges what was followed and held for one node of the shard: the
// report shown is that of a handover followed now, else of the latest one.
func (si *shardInfo) add(r failover.MasterReport) {
	if r.Phase != "" {
		cur := si.report
		if cur.Phase == "" || r.Following || (!cur.Following && r.Last.LastPoll.After(cur.Last.LastPoll)) {
			si.report = r
		}
		si.report.Handovers = cur.Handovers + r.Handovers
		si.report.LongestPause = max(cur.LongestPause, r.LongestPause)
	}
	h := r.Holds
	si.holds.HeldNow += h.HeldNow
	si.holds.Held += h.Held
	si.holds.Released += h.Released
	si.holds.Expired += h.Expired
	si.holds.Abandoned += h.Abandoned
	si.holds.Longest = max(si.holds.Longest, h.Longest)
	si.outages += r.Outages
}

func (si *shardInfo) String() string {
	r, h := si.report, si.holds
	phases := make([]string, len(r.Last.Phases))
	for j, p := range r.Last.Phases {
		phases[j] = string(p)
	}
	return "phase=" + orDash(string(r.Phase)) + ",following=" + boolDigit(r.Following) + ",holding=" + boolDigit(r.Holding) +
		",current_start_ms=" + unixMillis(r.CurrentStart) + ",handovers=" + strconv.Itoa(r.Handovers) +
		",last_from=" + orDash(r.Master) +
		",last_start_ms=" + unixMillis(r.Last.FirstPoll) + ",last_end_ms=" + unixMillis(r.Last.LastPoll) +
		",last_duration_ms=" + strconv.FormatInt(durationMillis(r.Last.FirstPoll, r.Last.LastPoll), 10) +
		",last_result=" + orDash(string(r.Last.Final)) + ",last_phases=" + orDash(strings.Join(phases, ">")) +
		",last_pause_ms=" + strconv.FormatInt(r.Last.ObservedPause().Milliseconds(), 10) +
		",longest_pause_ms=" + strconv.FormatInt(r.LongestPause.Milliseconds(), 10) +
		",held_now=" + strconv.FormatUint(h.HeldNow, 10) + ",held=" + strconv.FormatUint(h.Held, 10) +
		",released=" + strconv.FormatUint(h.Released, 10) + ",expired=" + strconv.FormatUint(h.Expired, 10) +
		",abandoned=" + strconv.FormatUint(h.Abandoned, 10) + ",longest_hold_ms=" + strconv.FormatInt(h.Longest.Milliseconds(), 10) +
		",outages=" + strconv.FormatUint(si.outages, 10) + ",in_outage=" + boolDigit(si.inOutage)
}

// durationMillis is to - from in milliseconds, 0 unless both are set.
func durationMillis(from, to time.Time) int64 {
	if from.IsZero() || to.IsZero() {
		return 0
	}
	return to.Sub(from).Milliseconds()
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// unixMillis is t in Unix milliseconds, 0 for the zero time.
func unixMillis(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var cmdCLUSTERX = LookupCommand([]byte("clusterx"))

const errNoAdmin = "NOPERM this command needs an admin user: AUTH admin <admin-password>, or a user of role admin"

// isClusterxFailover reports CLUSTERX FAILOVER, which the proxy carries out
// itself.
func isClusterxFailover(info *CommandInfo, args [][]byte) bool {
	return info == cmdCLUSTERX && len(args) >= 2 && equalFold(args[1], "failover")
}

// clusterxFailover sends CLUSTERX FAILOVER <replica-id> [timeout-ms] to the
// replica's master and answers with the master's reply unchanged; when the
// master accepted, the handover is followed (startFailover).
func (s *session) clusterxFailover(c *redcon.Command) {
	args := c.Args
	if !s.isAdmin() {
		s.replyError(errNoAdmin)
		return
	}
	if len(args) != 3 && len(args) != 4 {
		s.replyError("ERR wrong number of arguments")
		return
	}
	master, replica, ok := masterOfReplica(s.srv.topology(), args[2])
	if !ok {
		b := append([]byte("ERR "), appendSanitized(nil, args[2], 128)...)
		s.replyError(string(b) + " is not a replica in the topology kvproxy routes by (see PROXY NODES)")
		return
	}
	// Earlier commands of the pipeline run first.
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	defer s.endDirect(s.statCmd, s.beginDirect())
	// The reply stays the master's own +OK even when no topology authority
	// will be told of the handover (startFailover logs and counts that):
	// clients and scripts compare it with OK, and the command is the
	// server's, whose reply they know. PROXY FAILOVER says it in its reply.
	reply, _, err := s.srv.startFailover(s.ctx, master, replica, c.Raw)
	if err != nil {
		s.write(resp.AppendError(s.scratch[:0], "ERR "+oneLine(err.Error())))
		return
	}
	s.write(reply)
}

var rawClusterFailover = []byte("*2\r\n$7\r\nCLUSTER\r\n$8\r\nFAILOVER\r\n")

// adminTimeout bounds one admin round trip to a backend node.
const adminTimeout = 5 * time.Second

// lostError is an admin round trip whose connection failed once the
// command was sent: whether it ran is unknown.
type lostError struct {
	addr string
	err  error
}

func (e *lostError) Error() string { return "connection to " + e.addr + " lost: " + e.err.Error() }

func (e *lostError) Unwrap() error { return e.err }

// maybeStarted words a lost connection for a failover command.
func maybeStarted(err error) error {
	if lost, ok := errors.AsType[*lostError](err); ok {
		return errors.New("connection to " + lost.addr + " lost after the failover command was sent: the failover may have started")
	}
	return err
}

// startFailover sends raw, a CLUSTERX FAILOVER naming replica, to master and
// returns the reply of the node that was asked. A master that does not know
// the command is a Redis Cluster's: its manual failover is CLUSTER FAILOVER
// on the replica, which pauses the master's writes itself. An accepted
// failover is followed (Handovers), so the shard's writes are held through
// it and it is routed to replica once it took over; result, nil when no
// Handovers follows, then receives how it ended (afterHandover).
func (srv *Server) startFailover(ctx context.Context, master, replica router.NodeInfo, raw []byte) (reply []byte, result <-chan handoverResult, err error) {
	if reply, err = srv.askNode(ctx, master.Addr, raw); err != nil {
		return nil, nil, maybeStarted(err)
	}
	if bytes.HasPrefix(reply, releasedKvrocksUsage) {
		return srv.authorityFailover(ctx, master, replica)
	}
	redis := bytes.HasPrefix(reply, []byte("-ERR unknown command"))
	if redis {
		if reply, err = srv.askNode(ctx, replica.Addr, rawClusterFailover); err != nil {
			return nil, nil, maybeStarted(err)
		}
	}
	if !bytes.Equal(reply, replyOK) || srv.cfg.Handovers == nil {
		return reply, nil, nil
	}
	var outcome <-chan failover.Outcome
	if redis {
		outcome = srv.cfg.Handovers.FollowRedisFailover(master.Addr, replica.Addr)
	} else {
		outcome = srv.cfg.Handovers.FollowClusterxFailover(master.Addr, replica.Addr)
	}
	// A Redis Cluster's nodes agree on the new roles among themselves; a
	// Kvrocks cluster's topology is its controller's to change.
	return reply, srv.afterHandover(master, replica, outcome, !redis), nil
}

// releasedKvrocksUsage starts the reply of a Kvrocks without CLUSTERX
// FAILOVER (released versions, before kvrocks#3295) to it: the usage error.
var releasedKvrocksUsage = []byte("-ERR CLUSTERX command, CLUSTERX VERSION|")

// authorityFailover fails master's shard over to replica through the
// topology authority, for a Kvrocks without CLUSTERX FAILOVER. The proxy
// holds the shard's writes itself meanwhile (FollowAuthorityFailover): the
// authority pauses the master's writes for a set time only, and one the
// master took after that, before it turned replica, would be lost. The
// reply is +OK once the authority pushed the new topology, which the
// router then reloads.
func (srv *Server) authorityFailover(ctx context.Context, master, replica router.NodeInfo) ([]byte, <-chan handoverResult, error) {
	auth, ok := srv.cfg.Authority.(FailoverAuthority)
	if !ok {
		return nil, nil, errors.New("this Kvrocks has no CLUSTERX FAILOVER (a released version): its failovers are its controller's; " +
			"start kvproxy with --controller to have them asked of it, or ask the controller's failover API")
	}
	start := time.Now()
	run := func(ctx context.Context) error {
		actx, cancel := context.WithTimeout(ctx, authorityTimeout)
		defer cancel()
		if err := auth.Failover(actx, replica); err != nil {
			return err
		}
		srv.refreshTopology()
		return nil
	}
	var out failover.Outcome
	if srv.cfg.Handovers == nil {
		out.Err = run(ctx)
		out.Handover = failover.Handover{FirstPoll: start, LastPoll: time.Now(), Phases: []failover.Phase{failover.PhaseSuccess},
			Final: failover.PhaseSuccess}
	} else {
		select {
		case out = <-srv.cfg.Handovers.FollowAuthorityFailover(master.Addr, replica.Addr, run):
		case <-ctx.Done():
			return nil, nil, errShuttingDown
		}
	}
	if out.Err != nil {
		srv.logger.Warn("failover through the topology authority failed", "authority", auth.Name(),
			"master", master.Addr, "replica", replica.Addr, "err", out.Err)
		return nil, nil, errors.New("the topology authority (" + auth.Name() + ") did not fail over: " + out.Err.Error())
	}
	srv.logger.Info("failover done by the topology authority", "authority", auth.Name(),
		"old_master", master.Addr, "new_master", replica.Addr, "took", time.Since(start))
	result := make(chan handoverResult, 1)
	result <- handoverResult{outcome: out, needsAuthority: true, reported: true}
	return slices.Clone(replyOK), result, nil
}

// askNode sends raw, an admin command, to addr on a pooled dedicated
// connection and returns a copy of the reply. The round trip is bounded by
// adminTimeout; an error once the connection is open is a *lostError.
func (srv *Server) askNode(ctx context.Context, addr string, raw []byte) ([]byte, error) {
	conn, err := srv.pool.get(ctx, addr)
	if err != nil {
		return nil, errors.New("cannot connect to backend " + addr + ": " + err.Error())
	}
	stop := context.AfterFunc(ctx, conn.close)
	defer stop()
	_ = conn.conn.SetDeadline(time.Now().Add(adminTimeout))
	reply, err := writeAndRead(conn, raw)
	if err != nil || conn.conn.SetDeadline(time.Time{}) != nil {
		conn.close()
		if err == nil {
			err = net.ErrClosed
		}
		return nil, &lostError{addr: addr, err: err}
	}
	// The reply lies in conn's buffer, which the next user of the pooled
	// connection reads into.
	reply = slices.Clone(reply)
	srv.pool.put(conn)
	return reply, nil
}

func writeAndRead(c *nodeConn, raw []byte) ([]byte, error) {
	if _, err := c.conn.Write(raw); err != nil {
		return nil, err
	}
	return c.readReply()
}

// masterOfReplica finds the replica whose id is id, and its master.
func masterOfReplica(topo router.Topology, id []byte) (master, replica router.NodeInfo, ok bool) {
	for _, n := range topo.Nodes {
		if n.Role != "master" && n.ID == string(id) {
			replica = n
		}
	}
	if replica.MasterID == "" {
		return master, replica, false
	}
	for _, n := range topo.Nodes {
		if n.ID == replica.MasterID && n.Role == "master" {
			return n, replica, true
		}
	}
	return master, replica, false
}
