package proxy

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// INFO: what the proxy tells about itself and its backends (the failover
// section is handover.go's).

// infoSections lists the INFO sections in the order they are printed.
var infoSections = []string{"server", "clients", "stats", "cluster", "proxy", "failover"}

func (s *session) info(args [][]byte) {
	want := map[string]bool{}
	for _, arg := range args[1:] {
		name := strings.ToLower(string(arg))
		switch name {
		case "all", "everything", "default":
			for _, section := range infoSections {
				want[section] = true
			}
		default:
			want[name] = true
		}
	}
	var b strings.Builder
	for _, section := range infoSections {
		if len(args) > 1 && !want[section] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		s.srv.writeInfoSection(&b, section)
	}
	mark := len(s.local)
	s.local = resp.AppendBulkString(s.local, b.String())
	s.localReply(mark)
}

func (srv *Server) writeInfoSection(b *strings.Builder, section string) {
	line := func(key string, value string) {
		b.WriteString(key)
		b.WriteByte(':')
		b.WriteString(value)
		b.WriteString("\r\n")
	}
	switch section {
	case "server":
		uptime := int64(time.Since(srv.started) / time.Second)
		b.WriteString("# Server\r\n")
		line("redis_version", redisVersion)
		line("redis_mode", "cluster")
		line("kvproxy", "1")
		line("os", runtime.GOOS)
		line("arch_bits", strconv.Itoa(strconv.IntSize))
		line("go_version", runtime.Version())
		line("process_id", strconv.Itoa(os.Getpid()))
		line("tcp_port", strconv.Itoa(srv.announcePort))
		line("uptime_in_seconds", itoa(uptime))
		line("uptime_in_days", itoa(uptime/86400))
		line("goroutines", strconv.Itoa(runtime.NumGoroutine()))
	case "clients":
		b.WriteString("# Clients\r\n")
		line("connected_clients", itoa(srv.stats.connectedClients.Load()))
		line("maxclients", strconv.Itoa(srv.cfg.MaxClients))
		line("blocked_clients", "0")
		line("pubsub_output_limit", itoa(srv.cfg.PubSubOutputLimit))
		line("pubsub_peak_output_bytes", itoa(srv.stats.pubsubPeakOutput.Load()))
	case "stats":
		b.WriteString("# Stats\r\n")
		line("total_connections_received", itoa(srv.stats.connectionsReceived.Load()))
		line("total_commands_processed", itoa(srv.stats.commandsProcessed.Load()))
		line("rejected_connections", itoa(srv.stats.rejectedConnections.Load()))
		line("rejected_requests", itoa(srv.stats.rejectedRequests.Load()))
		line("auth_failures", itoa(srv.stats.authFailures.Load()))
		line("output_limit_disconnections", itoa(srv.stats.outputLimitDisconnections.Load()))
		if rs, ok := srv.backend.(interface{ Stats() router.Stats }); ok {
			st := rs.Stats()
			line("backend_parked_requests", strconv.FormatUint(st.Parked, 10))
			line("oversized_replies", strconv.FormatUint(st.Oversized, 10))
			line("backend_probes", strconv.FormatUint(st.Probes, 10))
			line("backend_unresponsive", strconv.FormatUint(st.Unresponsive, 10))
			line("backend_busy_probes", strconv.FormatUint(st.Busy, 10))
			line("backend_declared_dead", strconv.FormatUint(st.Dead, 10))
			line("backend_connections_lost", strconv.FormatUint(st.ConnsLost, 10))
		}
		line("pubsub_output_limit_pauses", itoa(srv.stats.pubsubOutputLimitPauses.Load()))
		line("pubsub_output_limit_disconnections", itoa(srv.stats.pubsubOutputLimitDisconnections.Load()))
	case "cluster":
		b.WriteString("# Cluster\r\n")
		line("cluster_enabled", "1")
	case "proxy":
		topology := srv.topology()
		masters := 0
		for _, node := range topology.Nodes {
			if node.Role == "master" {
				masters++
			}
		}
		b.WriteString("# Proxy\r\n")
		line("announce_addr", srv.cfg.AnnounceAddr)
		line("backend_epoch", itoa(topology.Epoch))
		line("backend_masters", strconv.Itoa(masters))
		line("backend_nodes", strconv.Itoa(len(topology.Nodes)))
		for i, node := range topology.Nodes {
			master := node.MasterID
			if master == "" {
				master = "-"
			}
			line("backend"+strconv.Itoa(i), "id="+nodeIDOrDash(node.ID)+",addr="+node.Addr+",role="+node.Role+
				",master="+master+",slots="+formatRanges(node.Slots, ","))
		}
	case "failover":
		b.WriteString("# Failover\r\n")
		srv.writeFailoverInfo(line)
	}
}

func nodeIDOrDash(id string) string {
	if id == "" {
		return "-"
	}
	return id
}

// formatRanges prints slot ranges as CLUSTER NODES does ("0-5460 5461").
func formatRanges(ranges []router.SlotRange, sep string) string {
	parts := make([]string, 0, len(ranges))
	for _, r := range ranges {
		if r.Start == r.End {
			parts = append(parts, strconv.Itoa(r.Start))
		} else {
			parts = append(parts, strconv.Itoa(r.Start)+"-"+strconv.Itoa(r.End))
		}
	}
	return strings.Join(parts, sep)
}

// itoa is strconv.Itoa for int64.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }
