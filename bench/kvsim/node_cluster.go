package kvsim

import (
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"
)

// Usage errors of CLUSTER and CLUSTERX, as observed on Kvrocks (spec sections
// 7 and 8): a server with the failover of kvrocks#3295 lists FAILOVER too.
const (
	clusterUsage          = "ERR CLUSTER command, CLUSTER INFO|NODES|SLOTS|KEYSLOT|RESET|REPLICAS"
	clusterxUsageReleased = "ERR CLUSTERX command, CLUSTERX VERSION|MYID|SETNODEID|SETNODES|SETSLOT|MIGRATE"
	clusterxUsage         = clusterxUsageReleased + "|FAILOVER"
)

// cluster answers CLUSTER KEYSLOT|INFO|NODES|SLOTS; INFO and NODES are
// verbatim strings on a RESP3 connection, as Kvrocks sends them.
func (n *Node) cluster(conn redcon.Conn, args [][]byte, resp3 bool) {
	if len(args) < 2 {
		conn.WriteError(wrongArityError(args[0]))
		return
	}
	sub := strings.ToLower(string(args[1]))
	if sub == "keyslot" {
		if len(args) != 3 {
			conn.WriteError(clusterUsage)
			return
		}
		conn.WriteInt(hashSlot(args[2]))
		return
	}
	if len(args) != 2 || (sub != "info" && sub != "nodes" && sub != "slots") {
		conn.WriteError(clusterUsage)
		return
	}
	v := n.view.Load()
	if v.version < 0 {
		conn.WriteError("CLUSTERDOWN The cluster is not initialized")
		return
	}
	switch sub {
	case "info":
		state := ""
		if v.me != nil && v.me.master && !n.cfg.Released {
			state = n.failover.stateName()
		}
		writeText(conn, v.clusterInfo(state), resp3)
	case "nodes":
		writeText(conn, v.clusterNodes(time.Now().UnixMilli()), resp3)
	case "slots":
		conn.WriteRaw(v.appendClusterSlots(nil))
	}
}

func (n *Node) clusterx(conn redcon.Conn, args [][]byte) {
	if len(args) < 2 {
		conn.WriteError(wrongArityError(args[0]))
		return
	}
	switch strings.ToLower(string(args[1])) {
	case "version":
		if len(args) == 2 {
			conn.WriteBulkString(strconv.FormatInt(n.view.Load().version, 10))
			return
		}
	case "myid":
		if len(args) == 2 {
			v := n.view.Load()
			if !v.idSet {
				conn.WriteBulkString("")
				return
			}
			conn.WriteBulkString(v.myID)
			return
		}
	case "setnodeid":
		if len(args) == 3 {
			n.setNodeID(conn, string(args[2]))
			return
		}
	case "setnodes":
		if len(args) >= 4 {
			n.setNodes(conn, args)
			return
		}
	case "failover":
		if !n.cfg.Released {
			n.clusterxFailover(conn, args)
			return
		}
	case "takeover":
		if !n.cfg.Released {
			n.clusterxTakeover(conn, args)
			return
		}
	}
	// SETSLOT and MIGRATE (slot migration) are not simulated: they get the
	// usage error, like any malformed subcommand.
	if n.cfg.Released {
		conn.WriteError(clusterxUsageReleased)
		return
	}
	conn.WriteError(clusterxUsage)
}

func (n *Node) setNodeID(conn redcon.Conn, id string) {
	if len(id) != 40 {
		conn.WriteError(errNodeID.Error())
		return
	}
	run := n.currentRun() // before viewMu: Start takes mu, then viewMu
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	v := n.view.Load().withID(id)
	n.view.Store(v)
	n.retargetReplication(run, v)
	conn.WriteString("OK")
}

// setNodes handles CLUSTERX SETNODES <nodes> <version> [FORCE].
func (n *Node) setNodes(conn redcon.Conn, args [][]byte) {
	force := false
	if len(args) > 4 {
		if len(args) != 5 || !strings.EqualFold(string(args[4]), "force") {
			conn.WriteError("ERR Invalid setnodes options")
			return
		}
		force = true
	}
	version, err := strconv.ParseInt(string(args[3]), 10, 64)
	if err != nil || version < 0 {
		conn.WriteError(errVersionSyntax.Error())
		return
	}
	run := n.currentRun() // before viewMu: Start takes mu, then viewMu
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	cur := n.view.Load()
	if !force {
		if version < cur.version {
			conn.WriteError(errClusterVer.Error())
			return
		}
		if version == cur.version {
			conn.WriteString("OK") // the body is not even parsed
			return
		}
	}
	pt, err := parseClusterNodes(string(args[2]), n.gen+1)
	if err != nil {
		conn.WriteError(err.Error())
		return
	}
	n.gen++
	v := cur.withTopology(pt, version, n.gen)
	n.deleteFormerSlots(cur, v)
	n.failover.reset()
	n.view.Store(v)
	n.retargetReplication(run, v)
	role := "master"
	if v.isReplica() {
		role = "slave"
	}
	n.log.Info("kvsim topology applied", "version", version, "role", role, "force", force)
	conn.WriteString("OK")
}
