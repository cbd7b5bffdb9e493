package proxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"kvproxy/failover"
	"kvproxy/internal/resp"
	"kvproxy/router"
)

// TopologyAuthority is whoever owns a Kvrocks cluster's topology and pushes
// it to the nodes: kvrocks-controller. A failover the proxy starts with
// CLUSTERX FAILOVER moves a shard to its replica behind the authority's
// back; told of it, the authority records the handover (pushes the swapped
// topology, the new master first), so that its next push does not give
// the slots back to the old master.
type TopologyAuthority interface {
	// RecordHandover tells the authority that replica took over master's
	// slots in a failover that succeeded.
	RecordHandover(ctx context.Context, master, replica router.NodeInfo) error
	// Name names the authority in logs and INFO (its address, say).
	Name() string
}

// FailoverAuthority is a TopologyAuthority that also fails shards over
// itself: kvrocks-controller's CLIENT PAUSE way, the only one released
// Kvrocks has (its CLUSTERX has no FAILOVER).
type FailoverAuthority interface {
	TopologyAuthority
	// Failover fails the shard of replica over to it and returns once the
	// authority pushed the new topology.
	Failover(ctx context.Context, replica router.NodeInfo) error
}

// Telling the topology authority of a handover: each attempt is bounded by
// authorityTimeout; failed ones are retried after authorityRetry, doubling
// up to maxAuthorityRetry, authorityAttempts times in all.
const (
	authorityTimeout  = 10 * time.Second
	authorityRetry    = time.Second
	maxAuthorityRetry = 30 * time.Second
	authorityAttempts = 10
)

// warnNoAuthority is logged for every handover the proxy started without a
// topology authority to tell.
const warnNoAuthority = "failover through the proxy succeeded, but the cluster's topology authority (its controller) " +
	"was not told: no controller is configured. A topology push from the controller may give the slots back to the old master, " +
	"losing the writes acknowledged since; have the controller record the failover (e.g. its failover API with the new master preferred)"

// errShuttingDown ends a wait the proxy's shutdown cut short.
var errShuttingDown = errors.New("proxy is shutting down")

// handoverResult is how a failover the proxy started ended, and whether
// the topology authority was told of it.
type handoverResult struct {
	outcome failover.Outcome
	// reported: the authority recorded the handover. reportErr: the first
	// attempt to tell it failed (it is retried in the background). Neither:
	// nobody was told (no authority, the handover did not succeed, or the
	// cluster needs none).
	reported  bool
	reportErr error
	// needsAuthority: the cluster's topology is an authority's to change
	// (Kvrocks), not agreed by the nodes themselves (Redis Cluster).
	needsAuthority bool
}

// afterHandover waits for outcome and, when a handover that needs it
// succeeded, tells the topology authority, or logs and counts that there
// is none. The channel receives the result once; a failed report is
// retried after that.
func (srv *Server) afterHandover(master, replica router.NodeInfo, outcome <-chan failover.Outcome, needsAuthority bool) <-chan handoverResult {
	result := make(chan handoverResult, 1)
	srv.background.Go(func() {
		res := handoverResult{needsAuthority: needsAuthority}
		select {
		case res.outcome = <-outcome:
		case <-srv.ctx.Done():
			res.outcome.Err = errShuttingDown
			result <- res
			return
		}
		if res.outcome.Handover.Final != failover.PhaseSuccess || !needsAuthority {
			result <- res
			return
		}
		srv.stats.handoversUnreported.Add(1)
		if srv.cfg.Authority == nil {
			srv.logger.Warn(warnNoAuthority, "old_master", master.Addr, "new_master", replica.Addr, "new_master_id", replica.ID)
			result <- res
			return
		}
		srv.tellAuthority(master, replica, func(err error) {
			res.reported, res.reportErr = err == nil, err
			result <- res
		})
	})
	return result
}

// refresher is a Backend that reloads the topology on request
// (*router.Router).
type refresher interface {
	Refresh(ctx context.Context)
}

// refreshTopology reloads the backend's topology, if it can, within
// authorityTimeout: the topology authority just pushed a new one.
func (srv *Server) refreshTopology() {
	if r, ok := srv.backend.(refresher); ok {
		ctx, cancel := context.WithTimeout(srv.ctx, authorityTimeout)
		r.Refresh(ctx)
		cancel()
	}
}

// tellAuthority records the handover with the topology authority, retrying
// a failed attempt; first is called with the first attempt's error.
func (srv *Server) tellAuthority(master, replica router.NodeInfo, first func(error)) {
	name := srv.cfg.Authority.Name()
	wait := authorityRetry
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(srv.ctx, authorityTimeout)
		err := srv.cfg.Authority.RecordHandover(ctx, master, replica)
		cancel()
		if err == nil {
			// The authority pushed a newer topology: route by it before
			// anyone is told the handover is recorded, so a reload that
			// read the nodes before the push cannot outlast it.
			srv.refreshTopology()
			srv.stats.handoversUnreported.Add(-1)
			srv.stats.handoversReported.Add(1)
			srv.logger.Info("failover recorded by the topology authority", "authority", name,
				"old_master", master.Addr, "new_master", replica.Addr, "attempts", attempt)
		} else {
			srv.stats.authorityReportFailures.Add(1)
		}
		if attempt == 1 {
			first(err)
		}
		if err == nil {
			return
		}
		if srv.ctx.Err() != nil {
			return
		}
		if attempt == authorityAttempts {
			srv.logger.Error("gave up telling the topology authority of a failover: a topology push from it may give the slots back to the old master; record the failover with it yourself",
				"authority", name, "old_master", master.Addr, "new_master", replica.Addr, "attempts", attempt, "err", err)
			return
		}
		srv.logger.Warn("cannot tell the topology authority of a failover: the proxy routes to the new master and retries",
			"authority", name, "old_master", master.Addr, "new_master", replica.Addr, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-srv.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, maxAuthorityRetry)
	}
}

// isProxyFailover reports PROXY FAILOVER, which waits for a handover and
// so is never served on an event loop.
func isProxyFailover(args [][]byte) bool {
	return len(args) >= 2 && equalFold(args[0], "proxy") && equalFold(args[1], "failover")
}

// replicaAttachWait bounds how long PROXY FAILOVER waits for the replica to
// replicate from the master (after a topology push it reconnects, and a
// real Kvrocks may resync in full first): a failover to a replica not
// replicating fails in its first phase.
const replicaAttachWait = 5 * time.Second

var rawInfoReplication = []byte("*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")

// proxyFailover answers PROXY FAILOVER <shard-index|master-id> [timeout-ms]:
// it fails the shard over to its replica as CLUSTERX FAILOVER through the
// proxy does (the writes held through the handover), waits until the
// handover ended and the topology authority was told, and says how it went.
// Run again, it fails the shard back.
func (s *session) proxyFailover(args [][]byte) {
	if !s.isAdmin() {
		s.replyError(errNoAdmin)
		return
	}
	if len(args) != 3 && len(args) != 4 {
		s.replyError(wrongArgsError("proxy|failover"))
		return
	}
	if s.srv.dedicated == nil || s.srv.cfg.Handovers == nil {
		s.replyError("ERR PROXY FAILOVER needs a backend that follows failovers (the router)")
		return
	}
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	defer s.endDirect(nil, s.beginDirect())
	reply, err := s.failOverShard(args)
	if err != nil {
		s.write(resp.AppendError(s.scratch[:0], "ERR "+oneLine(err.Error())))
		return
	}
	s.write(resp.AppendSimple(s.scratch[:0], oneLine(reply)))
}

// failOverShard carries out PROXY FAILOVER and returns its status line.
func (s *session) failOverShard(args [][]byte) (string, error) {
	raw := s.srv.backend.Topology()
	shards := shardsOf(routedTopology(raw))
	i, ok := findShard(shards, args[2])
	if !ok {
		return "", errors.New("no shard " + string(appendSanitized(nil, args[2], 128)) + ": kvproxy routes " +
			strconv.Itoa(len(shards)) + " shards, numbered from 0 in slot order, or named by their master's id (see PROXY NODES)")
	}
	sh := shards[i]
	name := "shard " + strconv.Itoa(i) + " (master " + sh.master.Addr + ")"
	switch len(sh.replicas) {
	case 0:
		return "", errors.New(name + " has no replica to fail over to")
	case 1:
	default:
		return "", errors.New(name + " has " + strconv.Itoa(len(sh.replicas)) +
			" replicas: name the one to fail over to with CLUSTERX FAILOVER <replica-id> (see PROXY NODES)")
	}
	replica := sh.replicas[0]
	if !s.srv.claimShard(sh) {
		return "", errors.New("a failover of " + name + " is already under way (see INFO failover)")
	}
	defer s.srv.releaseShard(sh)
	if err := s.awaitReplication(sh.master, replica, listedAsReplica(raw, sh.master)); err != nil {
		return "", errors.New(name + ": " + err.Error())
	}
	cmd := [][]byte{[]byte("CLUSTERX"), []byte("FAILOVER"), []byte(replica.ID)}
	if len(args) == 4 {
		cmd = append(cmd, args[3])
	}
	reply, result, err := s.srv.startFailover(s.ctx, sh.master, replica, resp.AppendCommand(nil, cmd...))
	if err != nil {
		return "", errors.New(name + ": " + err.Error())
	}
	if !bytes.Equal(reply, replyOK) {
		line, _, _ := resp.ReplyLine(reply)
		return "", errors.New(name + " refused to fail over to " + replica.Addr + ": " + string(line))
	}
	var res handoverResult
	select {
	case res = <-result:
	case <-s.ctx.Done():
		return "", errShuttingDown
	case <-s.srv.stop:
		return "", errors.New("proxy is shutting down: the failover of " + name + " goes on without it")
	}
	h := res.outcome.Handover
	what := "the failover of shard " + strconv.Itoa(i) + " from " + sh.master.Addr + " to " + replica.Addr
	switch {
	case h.Final == failover.PhaseFailed:
		return "", errors.New(what + " failed (phases " + phaseList(h.Phases) + "): " + sh.master.Addr +
			" still serves the shard; its log says why")
	case h.Final != failover.PhaseSuccess:
		why := "no final phase"
		if res.outcome.Err != nil {
			why = res.outcome.Err.Error()
		}
		return "", errors.New("the end of " + what + " was not seen (" + why + "): see INFO failover and PROXY NODES")
	}
	done := "shard " + strconv.Itoa(i) + " failed over in " + strconv.FormatInt(durationMillis(h.FirstPoll, h.LastPoll), 10) +
		" ms: " + replica.Addr + " is its master now, " + sh.master.Addr + " its replica"
	switch {
	case !res.needsAuthority:
		return done, nil // a Redis Cluster: its nodes agree on the new roles themselves
	case res.reported:
		return done + "; recorded by the topology authority (" + s.srv.cfg.Authority.Name() + ")", nil
	case res.reportErr != nil:
		return done + "; WARNING: the topology authority (" + s.srv.cfg.Authority.Name() + ") could not be told (" +
			res.reportErr.Error() + "): the proxy retries, and until it succeeds a topology push may give the slots back to the old master", nil
	}
	return done + "; WARNING: no controller configured, so the cluster's topology authority was not told: a topology push " +
		"from it may give the slots back to the old master and lose the writes acknowledged since; have the controller " +
		"record the failover (e.g. its failover API), see the README", nil
}

// phaseList prints phases as INFO failover does ("check_slave>success").
func phaseList(phases []failover.Phase) string {
	names := make([]string, len(phases))
	for i, p := range phases {
		names[i] = string(p)
	}
	return orDash(strings.Join(names, ">"))
}

// claimShard marks a PROXY FAILOVER of sh under way; false when one is, or
// a handover of one of its nodes is being followed.
func (srv *Server) claimShard(sh shard) bool {
	following := map[string]bool{}
	for _, r := range srv.cfg.Handovers.Report().Masters {
		following[r.Master] = r.Following
	}
	srv.failingMu.Lock()
	defer srv.failingMu.Unlock()
	for _, addr := range sh.members() {
		if srv.failing[addr] || following[addr] {
			return false
		}
	}
	srv.failing[sh.master.Addr] = true
	return true
}

func (srv *Server) releaseShard(sh shard) {
	srv.failingMu.Lock()
	defer srv.failingMu.Unlock()
	delete(srv.failing, sh.master.Addr)
}

// listedAsReplica reports whether the cluster last listed the node at addr
// as a replica (raw is the router's topology, roles as reported).
func listedAsReplica(raw router.Topology, master router.NodeInfo) bool {
	for _, n := range raw.Nodes {
		if n.Addr == master.Addr {
			return n.Role != "master"
		}
	}
	return false
}

// awaitReplication waits, up to replicaAttachWait, until the master's INFO
// replication lists replica among its replicas. unrecorded says the cluster
// still lists the master as a replica: it took the shard over in a handover
// no topology push has recorded.
func (s *session) awaitReplication(master, replica router.NodeInfo, unrecorded bool) error {
	deadline := time.Now().Add(replicaAttachWait)
	for {
		reply, err := s.srv.askNode(s.ctx, master.Addr, rawInfoReplication)
		if err != nil {
			return err
		}
		body, ok := resp.StringText(reply)
		if !ok {
			line, _, _ := resp.ReplyLine(reply)
			return errors.New(master.Addr + " answered INFO replication with " + string(appendSanitized(nil, line, 128)))
		}
		role, listed := replicationOf(body, replica.Addr)
		if role == "slave" {
			msg := master.Addr + " still calls itself a replica (INFO replication role:slave), so it cannot fail over"
			if unrecorded {
				msg += ": it took the shard over in a failover the cluster's topology authority has not recorded; have the controller record it (e.g. its failover API), see the README"
			}
			return errors.New(msg)
		}
		if listed {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(replica.Addr + " is not replicating from " + master.Addr + " (its INFO replication does not list it after " +
				replicaAttachWait.String() + "): a failover to it would fail")
		}
		select {
		case <-s.ctx.Done():
			return errShuttingDown
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// replicationOf reads INFO replication text: the node's role, and whether
// a slaveN line names the replica at addr.
func replicationOf(text, addr string) (role string, listed bool) {
	host, port, _ := net.SplitHostPort(addr)
	for key, value := range resp.InfoFields(text) {
		switch {
		case key == "role":
			role = value
		case len(key) > len("slave") && strings.HasPrefix(key, "slave") && strings.TrimLeft(key[len("slave"):], "0123456789") == "":
			var ip, p string
			for field := range strings.SplitSeq(value, ",") {
				k, v, _ := strings.Cut(field, "=")
				switch k {
				case "ip":
					ip = v
				case "port":
					p = v
				}
			}
			// A topology naming a host rather than an address is matched
			// by port.
			if p == port && (ip == host || net.ParseIP(host) == nil) {
				listed = true
			}
		}
	}
	return role, listed
}
