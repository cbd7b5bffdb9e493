package proxy

import (
	"bytes"

	"github.com/tidwall/redcon"

	"kvproxy/router"
)

// Handovers is told of every CLUSTERX FAILOVER a master accepted through the
// proxy, so the shard's writes are held through the handover
// (failover.Holds implements it).
type Handovers interface {
	Follow(master string)
}

var cmdCLUSTERX = LookupCommand([]byte("clusterx"))

// isClusterxFailover reports CLUSTERX FAILOVER, which the proxy carries out
// itself.
func isClusterxFailover(info *CommandInfo, args [][]byte) bool {
	return info == cmdCLUSTERX && len(args) >= 2 && equalFold(args[1], "failover")
}

// clusterxFailover sends CLUSTERX FAILOVER <replica-id> [timeout-ms] to the
// replica's master, answers with the master's reply unchanged and, when the
// master accepted, has the handover followed.
func (s *session) clusterxFailover(c *redcon.Command) {
	args := c.Args
	if len(args) != 3 && len(args) != 4 {
		s.replyError("ERR wrong number of arguments")
		return
	}
	master, ok := masterOfReplica(s.srv.backend.Topology(), args[2])
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
	reply, err := s.roundTrip(conn, c.Raw)
	if err != nil {
		conn.close()
		s.write(appendError(s.scratch[:0], "ERR connection to "+master+" lost after CLUSTERX FAILOVER was sent: the failover may have started"))
		return
	}
	s.srv.pool.put(conn)
	if bytes.Equal(reply, replyOK) && s.srv.cfg.Handovers != nil {
		s.srv.cfg.Handovers.Follow(master)
	}
	s.write(reply)
}

// masterOfReplica finds the master of the replica whose id is id.
func masterOfReplica(topo router.Topology, id []byte) (string, bool) {
	masterID := ""
	for _, n := range topo.Nodes {
		if n.Role != "master" && n.ID == string(id) {
			masterID = n.MasterID
		}
	}
	if masterID == "" {
		return "", false
	}
	for _, n := range topo.Nodes {
		if n.ID == masterID && n.Role == "master" {
			return n.Addr, true
		}
	}
	return "", false
}
