package proxy

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"kvproxy/internal/resp"
	"kvproxy/internal/version"
	"kvproxy/router"
)

// INFO: what the proxy tells about itself and its backends (the failover
// section is handover.go's).

// infoSections lists the INFO sections in the order they are printed.
var infoSections = []string{"server", "clients", "memory", "stats", "commandstats", "errorstats", "cluster", "proxy", "failover", "keyspace"}

// infoKeyspace is the keyspace section's bit in an INFO's section mask.
var infoKeyspace = 1 << slices.Index(infoSections, "keyspace")

// infoDefault is every section but keyspace (see info) and commandstats
// (as in Redis, printed when asked for or with INFO all).
var infoDefault = (1<<len(infoSections) - 1) &^ infoKeyspace &^ (1 << slices.Index(infoSections, "commandstats"))

// infoKeyspaceCommand asks a master for its keyspace section.
var infoKeyspaceCommand = resp.AppendCommand(nil, []byte("INFO"), []byte("keyspace"))

// info answers INFO from the proxy's own state; the keyspace section sums
// the masters', so an INFO that shows it asks every master first. INFO
// without a section (and INFO default) leaves keyspace out, unlike Redis:
// it is what health checks and monitoring poll, and must answer at once
// even while a master is stuck behind a huge reply or a script.
func (s *session) info(args [][]byte) {
	mask := 0
	if len(args) == 1 {
		mask = infoDefault
	}
	for _, arg := range args[1:] {
		switch name := strings.ToLower(string(arg)); name {
		case "default":
			mask |= infoDefault
		case "all", "everything":
			mask = 1<<len(infoSections) - 1
		default:
			if i := slices.Index(infoSections, name); i >= 0 {
				mask |= 1 << i
			}
		}
	}
	if mask&infoKeyspace != 0 && len(s.mastersList()) > 0 {
		s.fanoutAll(infoKeyspaceCommand, true, mergeInfo, mask)
		return
	}
	mark := len(s.local)
	s.local = resp.AppendBulkString(s.local, s.srv.infoText(mask, nil))
	s.localReply(mark)
}

// writeInfo answers an INFO whose keyspace section the masters' replies
// give.
func (s *session) writeInfo(e *entry, parts []*router.Request) {
	s.scratch = resp.AppendBulkString(s.scratch[:0], s.srv.infoText(e.aux, parts))
	s.write(s.scratch)
}

// infoText prints the sections of mask; keyspaces are the masters' replies
// to INFO keyspace.
func (srv *Server) infoText(mask int, keyspaces []*router.Request) string {
	var b strings.Builder
	for i, section := range infoSections {
		if mask&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		if section == "keyspace" {
			writeKeyspace(&b, keyspaces)
			continue
		}
		srv.writeInfoSection(&b, section)
	}
	return b.String()
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
		// redis_version is what clients read to pick features: the Redis
		// whose behaviour the proxy presents. kvproxy_version is the build.
		line("redis_version", redisVersion)
		line("redis_mode", "cluster")
		line("kvproxy", "1")
		line("kvproxy_version", version.Version())
		line("os", runtime.GOOS)
		line("arch_bits", strconv.Itoa(strconv.IntSize))
		line("go_version", runtime.Version())
		line("process_id", strconv.Itoa(os.Getpid()))
		line("tcp_port", strconv.Itoa(srv.announce.port))
		line("uptime_in_seconds", itoa(uptime))
		line("uptime_in_days", itoa(uptime/86400))
		line("goroutines", strconv.Itoa(runtime.NumGoroutine()))
	case "clients":
		b.WriteString("# Clients\r\n")
		line("connected_clients", itoa(srv.stats.connectedClients.Load()))
		line("maxclients", itoa(srv.maxClients.Load()))
		line("blocked_clients", "0")
		line("pubsub_output_limit", itoa(srv.pubsubOutputLimit.Load()))
		line("pubsub_peak_output_bytes", itoa(srv.stats.pubsubPeakOutput.Load()))
	case "memory":
		b.WriteString("# Memory\r\n")
		writeMemoryInfo(line)
	case "stats":
		b.WriteString("# Stats\r\n")
		line("total_connections_received", itoa(srv.stats.connectionsReceived.Load()))
		line("total_commands_processed", itoa(srv.stats.commandsProcessed.Load()))
		line("rejected_connections", itoa(srv.stats.rejectedConnections.Load()))
		// Refusals by reason: connections (rejected_connections, at
		// maxclients), requests the protocol guard refused (malformed or
		// too large, the connection closed), and commands answered with an
		// error instead of being served.
		line("rejected_requests", itoa(srv.stats.rejectedRequests.Load()))
		line("rejected_requests_too_large", itoa(srv.stats.rejectedRequestsTooLarge.Load()))
		line("rejected_requests_malformed", itoa(srv.stats.rejectedRequests.Load()-srv.stats.rejectedRequestsTooLarge.Load()))
		requests := srv.requests.totals()
		line("refused_noauth", itoa(requests.count(resultNOAUTH)))
		line("refused_noperm", itoa(requests.count(resultNOPERM)))
		holdFull := uint64(0)
		if srv.cfg.Handovers != nil {
			holdFull = srv.cfg.Handovers.Report().Totals.Full
		}
		line("refused_hold_full", strconv.FormatUint(holdFull, 10))
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
	case "commandstats":
		b.WriteString("# Commandstats\r\n")
		writeCommandStats(line)
	case "errorstats":
		b.WriteString("# Errorstats\r\n")
		writeErrorStats(srv.requests.totals(), line)
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
		if srv.cfg.TLSAnnounceAddr != "" {
			line("tls_announce_addr", srv.cfg.TLSAnnounceAddr)
		}
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

// writeMemoryInfo is the memory section: the proxy's own memory, the
// fields Redis prints that tools read. used_memory is the Go heap and
// stacks in use, used_memory_rss the process' resident set.
func writeMemoryInfo(line func(key, value string)) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	used := int64(ms.HeapAlloc + ms.StackInuse)
	rss := residentBytes()
	line("used_memory", itoa(used))
	line("used_memory_human", bytesToHuman(used))
	line("used_memory_rss", itoa(rss))
	line("used_memory_rss_human", bytesToHuman(rss))
	line("used_memory_sys", strconv.FormatUint(ms.Sys, 10))
	line("used_memory_sys_human", bytesToHuman(int64(ms.Sys)))
	line("maxmemory", "0")
	line("maxmemory_human", "0B")
	line("maxmemory_policy", "noeviction")
	ratio := 0.0
	if used > 0 {
		ratio = float64(rss) / float64(used)
	}
	line("mem_fragmentation_ratio", strconv.FormatFloat(ratio, 'f', 2, 64))
	line("mem_allocator", "go-"+strings.TrimPrefix(runtime.Version(), "go"))
	line("gc_cycles", strconv.FormatUint(uint64(ms.NumGC), 10))
}

// residentBytes is the process' resident set from /proc/self/statm, 0 where
// there is none.
func residentBytes() int64 {
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(statm))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// bytesToHuman prints n as Redis' INFO does ("1.50M").
func bytesToHuman(n int64) string {
	units := []string{"B", "K", "M", "G", "T", "P"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return itoa(n) + "B"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + units[i]
}
