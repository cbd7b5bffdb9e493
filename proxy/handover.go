package proxy

import (
	"bytes"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/failover"
	"kvproxy/router"
)

// Handovers is told of every CLUSTERX FAILOVER a master accepted through the
// proxy, so the shard's writes are held through the handover, and reports
// the handovers it followed for INFO (failover.Holds implements it).
type Handovers interface {
	// Follow is told of a CLUSTERX FAILOVER that master accepted, handing
	// its slots to replica (both addresses).
	Follow(master, replica string)
	// FollowRedis is told of a CLUSTER FAILOVER that replica, a Redis
	// Cluster replica of master, accepted.
	FollowRedis(master, replica string)
	Report() []failover.ShardReport
	// HandedOver returns a channel closed the next time a failover of
	// master succeeds.
	HandedOver(master string) <-chan struct{}
}

// holdStats is the part of the backend that counts held requests
// (*router.Router).
type holdStats interface {
	Stats() router.Stats
	HoldStats() []router.NodeHolds
}

// writeFailoverInfo writes INFO's failover section: the proxy-wide hold
// counters, then one line per master that failed over or held requests:
// its handovers as followed (phase, current and last handover, longest
// pause) and what the proxy held for it (held now, totals, longest hold,
// outages: its connections lost or refused).
func (srv *Server) writeFailoverInfo(line func(key, value string)) {
	shards := map[string]*shardInfo{}
	shardOf := func(addr string) *shardInfo {
		if shards[addr] == nil {
			shards[addr] = &shardInfo{}
		}
		return shards[addr]
	}
	if rs, ok := srv.backend.(holdStats); ok {
		st := rs.Stats()
		line("held_total", strconv.FormatUint(st.Held, 10))
		line("released_total", strconv.FormatUint(st.Released, 10))
		line("expired_total", strconv.FormatUint(st.Expired, 10))
		line("abandoned_total", strconv.FormatUint(st.Abandoned, 10))
		line("hold_full_total", strconv.FormatUint(st.HoldFull, 10))
		line("held_now", strconv.FormatUint(st.Held-st.Released-st.Expired-st.Abandoned, 10))
		for _, h := range rs.HoldStats() {
			shardOf(h.Addr).holds = h
		}
	}
	if srv.cfg.Handovers != nil {
		for _, r := range srv.cfg.Handovers.Report() {
			shardOf(r.Master).report = r
		}
	}
	addrs := slices.Sorted(maps.Keys(shards))
	for i, addr := range addrs {
		line("shard"+strconv.Itoa(i), "master="+addr+","+shards[addr].String())
	}
}

// shardInfo is what INFO reports of one master.
type shardInfo struct {
	report failover.ShardReport
	holds  router.NodeHolds
}

func (si *shardInfo) String() string {
	r, h := si.report, si.holds
	phases := make([]string, len(r.Last.Phases))
	for j, p := range r.Last.Phases {
		phases[j] = string(p)
	}
	return "phase=" + orDash(string(r.Phase)) + ",following=" + boolDigit(r.Following) + ",holding=" + boolDigit(r.Holding) +
		",current_start_ms=" + unixMillis(r.CurrentStart) + ",handovers=" + strconv.Itoa(r.Handovers) +
		",last_start_ms=" + unixMillis(r.Last.FirstPoll) + ",last_end_ms=" + unixMillis(r.Last.LastPoll) +
		",last_duration_ms=" + strconv.FormatInt(durationMillis(r.Last.FirstPoll, r.Last.LastPoll), 10) +
		",last_result=" + orDash(string(r.Last.Final)) + ",last_phases=" + orDash(strings.Join(phases, ">")) +
		",last_pause_ms=" + strconv.FormatInt(r.Last.ObservedPause().Milliseconds(), 10) +
		",longest_pause_ms=" + strconv.FormatInt(r.LongestPause.Milliseconds(), 10) +
		",held_now=" + strconv.FormatUint(h.HeldNow, 10) + ",held=" + strconv.FormatUint(h.Held, 10) +
		",released=" + strconv.FormatUint(h.Released, 10) + ",expired=" + strconv.FormatUint(h.Expired, 10) +
		",abandoned=" + strconv.FormatUint(h.Abandoned, 10) + ",longest_hold_ms=" + strconv.FormatInt(h.Longest.Milliseconds(), 10) +
		",outages=" + strconv.FormatUint(h.Outages, 10) + ",in_outage=" + boolDigit(h.InOutage)
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

const errNoAdmin = "NOPERM this command needs the admin user: AUTH admin <admin-password>"

// isClusterxFailover reports CLUSTERX FAILOVER, which the proxy carries out
// itself.
func isClusterxFailover(info *CommandInfo, args [][]byte) bool {
	return info == cmdCLUSTERX && len(args) >= 2 && equalFold(args[1], "failover")
}

// clusterxFailover sends CLUSTERX FAILOVER <replica-id> [timeout-ms] to the
// replica's master, answers with the master's reply unchanged and, when the
// master accepted, has the handover followed. A Redis Cluster master does
// not know the command: it is carried out as CLUSTER FAILOVER on the replica.
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
	master, replica, ok := masterOfReplica(s.srv.backend.Topology(), args[2])
	if !ok {
		b := append([]byte("ERR "), appendSanitized(nil, args[2], 128)...)
		s.replyError(string(b) + " is not a replica in the topology kvproxy routes by (see PROXY NODES)")
		return
	}
	// Earlier commands of the pipeline run first.
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	conn := s.dialFor(master)
	if conn == nil {
		return
	}
	reply, ok := s.adminRoundTrip(conn, master, c.Raw)
	if !ok {
		return
	}
	if bytes.HasPrefix(reply, []byte("-ERR unknown command")) {
		// A Redis Cluster: its manual failover is CLUSTER FAILOVER on the
		// replica, which pauses the master's writes itself: it is followed
		// for the report and to route the shard to the replica at once.
		if conn = s.dialFor(replica); conn == nil {
			return
		}
		if reply, ok = s.adminRoundTrip(conn, replica, rawClusterFailover); !ok {
			return
		}
		if bytes.Equal(reply, replyOK) && s.srv.cfg.Handovers != nil {
			s.srv.cfg.Handovers.FollowRedis(master, replica)
		}
	} else if bytes.Equal(reply, replyOK) && s.srv.cfg.Handovers != nil {
		s.srv.cfg.Handovers.Follow(master, replica)
	}
	s.write(reply)
}

var rawClusterFailover = []byte("*2\r\n$7\r\nCLUSTER\r\n$8\r\nFAILOVER\r\n")

// adminRoundTrip sends an admin command on conn, a dedicated connection to
// addr, and returns the reply; when the connection fails it answers the
// client itself and reports false.
func (s *session) adminRoundTrip(conn *nodeConn, addr string, raw []byte) ([]byte, bool) {
	reply, err := s.roundTrip(conn, raw)
	if err != nil {
		conn.close()
		s.write(appendError(s.scratch[:0], "ERR connection to "+addr+" lost after the failover command was sent: the failover may have started"))
		return nil, false
	}
	// The reply lies in conn's buffer, which the next user of the pooled
	// connection reads into.
	reply = slices.Clone(reply)
	s.srv.pool.put(conn)
	return reply, true
}

// masterOfReplica finds the replica whose id is id, and its master.
func masterOfReplica(topo router.Topology, id []byte) (master, replica string, ok bool) {
	masterID := ""
	for _, n := range topo.Nodes {
		if n.Role != "master" && n.ID == string(id) {
			masterID, replica = n.MasterID, n.Addr
		}
	}
	if masterID == "" {
		return "", "", false
	}
	for _, n := range topo.Nodes {
		if n.ID == masterID && n.Role == "master" {
			return n.Addr, replica, true
		}
	}
	return "", "", false
}
