package kvsim

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

var infoSections = []string{"server", "clients", "stats", "replication", "keyspace"}

// info renders INFO [section ...]: Kvrocks' layout, "# Name" headers, CRLF
// line ends, sections separated by an empty line.
func (n *Node) info(args [][]byte) string {
	want := map[string]bool{}
	for _, a := range args {
		want[strings.ToLower(string(a))] = true
	}
	everything := len(args) == 0 || want["all"] || want["everything"] || want["default"]
	var parts []string
	for _, sec := range infoSections {
		if everything || want[sec] {
			parts = append(parts, n.infoSection(sec))
		}
	}
	return strings.Join(parts, "\r\n")
}

type infoLines struct{ b strings.Builder }

func (l *infoLines) add(key, value string) { l.b.WriteString(key + ":" + value + "\r\n") }

func (n *Node) infoSection(sec string) string {
	var l infoLines
	switch sec {
	case "server":
		l.b.WriteString("# Server\r\n")
		_, port, _ := net.SplitHostPort(n.Addr())
		n.mu.Lock()
		uptime := int64(time.Since(n.startedAt).Seconds())
		n.mu.Unlock()
		l.add("version", "kvsim")
		l.add("redis_version", "4.0.0")
		l.add("os", runtime.GOOS)
		l.add("arch_bits", "64")
		l.add("process_id", strconv.Itoa(os.Getpid()))
		l.add("tcp_port", port)
		l.add("uptime_in_seconds", strconv.FormatInt(uptime, 10))
		l.add("uptime_in_days", strconv.FormatInt(uptime/86400, 10))
	case "clients":
		l.b.WriteString("# Clients\r\n")
		n.clientsMu.Lock()
		connected := len(n.clients)
		n.clientsMu.Unlock()
		l.add("maxclients", "10000")
		l.add("connected_clients", strconv.Itoa(connected))
		// One per key a client waits on, as Kvrocks' BlockOnKey counts.
		l.add("blocked_clients", strconv.FormatInt(n.blocked.count.Load(), 10))
	case "stats":
		l.b.WriteString("# Stats\r\n")
		l.add("total_connections_received", strconv.FormatInt(n.totalConns.Load(), 10))
		l.add("total_commands_processed", strconv.FormatInt(n.commandsProcessed(), 10))
		l.add("instantaneous_ops_per_sec", "0")
		l.add("sync_full", strconv.FormatInt(n.syncFull.Load(), 10))
		l.add("sync_partial_ok", strconv.FormatInt(n.syncPartial.Load(), 10))
	case "replication":
		l.b.WriteString("# Replication\r\n")
		n.infoReplication(&l)
	case "keyspace":
		l.b.WriteString("# Keyspace\r\n")
		l.add("db0", "keys="+strconv.Itoa(n.ks.DBSize())+",expires=0,avg_ttl=0,expired=0")
		l.add("sequence", strconv.FormatUint(n.ks.Sequence(), 10))
	}
	return l.b.String()
}

// infoReplication writes the fields of spec sections 5 and 7, in their order.
func (n *Node) infoReplication(l *infoLines) {
	seq := n.ks.Sequence()
	v := n.view.Load()
	if v.isReplica() {
		l.add("role", "slave")
		host, port, status, lastIO := "", "", "down", int64(-1)
		if v.myMaster != nil {
			host, port = v.myMaster.host, strconv.Itoa(v.myMaster.port)
		}
		if link := n.link.get(); link != nil {
			host, port = link.host, link.port
			if link.up.Load() {
				status = "up"
			}
			if t := link.lastIO.Load(); t != 0 {
				lastIO = int64(time.Since(time.Unix(0, t)).Seconds())
			}
		}
		syncing := "0"
		if n.loading.Load() {
			syncing = "1"
		}
		l.add("master_host", host)
		l.add("master_port", port)
		l.add("master_link_status", status)
		l.add("master_sync_unrecoverable_error", "no")
		l.add("master_sync_in_progress", syncing)
		l.add("master_last_io_seconds_ago", strconv.FormatInt(lastIO, 10))
		l.add("slave_repl_offset", strconv.FormatUint(seq, 10))
		l.add("slave_priority", "100")
	} else {
		l.add("role", "master")
	}
	streams := n.streams.snapshot()
	l.add("connected_slaves", strconv.Itoa(len(streams)))
	for i, r := range streams {
		acked := r.acked.Load()
		lag := uint64(0)
		if seq > acked {
			lag = seq - acked
		}
		l.add("slave"+strconv.Itoa(i), "ip="+r.ip+",port="+r.port+",offset="+
			strconv.FormatUint(acked, 10)+",lag="+strconv.FormatUint(lag, 10))
	}
	l.add("master_repl_offset", strconv.FormatUint(seq, 10))
}

func (n *Node) commandsProcessed() int64 {
	n.clientsMu.Lock()
	defer n.clientsMu.Unlock()
	total := n.closedCmds
	for s := range n.clients {
		total += s.commands.Load()
	}
	return total
}
