package proxy

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"kvproxy/router"
)

// INFO, PROXY and COMMAND: what the proxy tells about itself, its backends
// and the commands it knows.

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
	s.local = appendBulkString(s.local, b.String())
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

// proxyCommand answers PROXY, the proxy's own admin command.
func (s *session) proxyCommand(args [][]byte) {
	s.lastCommand = "proxy"
	if len(args) < 2 {
		s.replyError(wrongArgsError("proxy"))
		return
	}
	if equalFold(args[1], "failover") {
		s.proxyFailover(args)
		return
	}
	mark := len(s.local)
	switch {
	case equalFold(args[1], "nodes") && len(args) == 2:
		s.local = appendBulkString(s.local, s.srv.backendNodes())
	case equalFold(args[1], "nodes"):
		s.local = appendError(s.local, wrongArgsError("proxy|nodes"))
	case equalFold(args[1], "help"):
		help := []string{
			"PROXY <subcommand> [<arg> ...]. Subcommands are:",
			"NODES",
			"    Return the backend nodes as the proxy routes to them, in CLUSTER NODES format.",
			"FAILOVER <shard-index|master-id> [<timeout-ms>]",
			"    Fail the shard over to its replica (admin): CLUSTERX FAILOVER on its master, writes held",
			"    through the handover; replies once it ended. Run again, it fails the shard back.",
			"HELP",
			"    Print this help.",
		}
		s.local = appendArray(s.local, len(help))
		for _, h := range help {
			s.local = appendSimple(s.local, h)
		}
	default:
		s.local = appendError(s.local, unknownSubcommandError(args))
	}
	s.localReply(mark)
}

// backendNodes describes the backends in CLUSTER NODES line format, so an
// operator can find the id of a replica to fail over to.
func (srv *Server) backendNodes() string {
	topology := srv.topology()
	var b strings.Builder
	for _, node := range topology.Nodes {
		b.WriteString(nodeIDOrDash(node.ID))
		b.WriteByte(' ')
		b.WriteString(node.Addr)
		if _, port, err := splitPort(node.Addr); err == nil {
			b.WriteString("@" + strconv.Itoa(port+10000))
		}
		epoch := " 0 0 " + itoa(topology.Epoch) + " connected"
		if node.Role == "master" {
			b.WriteString(" master -" + epoch)
			if len(node.Slots) > 0 {
				b.WriteString(" " + formatRanges(node.Slots, " "))
			}
		} else {
			b.WriteString(" slave " + nodeIDOrDash(node.MasterID) + epoch)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func splitPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, strconv.ErrSyntax
	}
	port, err := strconv.Atoi(addr[i+1:])
	return addr[:i], port, err
}

// COMMAND replies are built once from the command table.
var commandReplies = sync.OnceValue(buildCommandReplies)

type commandReplySet struct {
	// all is the reply to a plain COMMAND.
	all []byte
	// names are the top-level command names, sorted.
	names []string
	// info and docs hold one command's COMMAND INFO and COMMAND DOCS
	// entries, by top-level name.
	info map[string][]byte
	docs map[string][]byte
}

func buildCommandReplies() *commandReplySet {
	set := &commandReplySet{info: map[string][]byte{}, docs: map[string][]byte{}}
	for name := range commandTable {
		set.names = append(set.names, name)
	}
	slices.Sort(set.names)
	set.all = appendArray(nil, len(set.names))
	for _, name := range set.names {
		c := commandTable[name]
		entry := appendCommandInfo(nil, c)
		set.info[name] = entry
		set.all = append(set.all, entry...)
		doc := appendArray(nil, 6)
		doc = appendBulkString(doc, "summary")
		doc = appendBulkString(doc, "")
		doc = appendBulkString(doc, "since")
		doc = appendBulkString(doc, "1.0.0")
		doc = appendBulkString(doc, "group")
		doc = appendBulkString(doc, commandGroup(c))
		set.docs[name] = doc
	}
	return set
}

// commandGroup is a rough COMMAND DOCS group, enough for client help.
func commandGroup(c *CommandInfo) string {
	switch {
	case c.Flags&FlagPubSub != 0:
		return "pubsub"
	case c.Flags&FlagTransaction != 0:
		return "transactions"
	case c.Flags&FlagAdmin != 0:
		return "server"
	case c.Flags&FlagLocal != 0:
		return "connection"
	}
	return "generic"
}

// appendCommandInfo appends c in Redis 7's COMMAND INFO layout: name, arity,
// flags, first key, last key, step, ACL categories, tips, key specs,
// subcommands.
func appendCommandInfo(b []byte, c *CommandInfo) []byte {
	b = appendArray(b, 10)
	b = appendBulkString(b, c.Name)
	b = appendInt(b, int64(c.Arity))
	flags := commandFlagNames(c)
	b = appendArray(b, len(flags))
	for _, f := range flags {
		b = appendSimple(b, f)
	}
	b = appendInt(b, int64(c.FirstKey))
	b = appendInt(b, int64(c.LastKey))
	b = appendInt(b, int64(c.KeyStep))
	b = appendArray(b, 0)
	b = appendArray(b, 0)
	b = appendArray(b, 0)
	subs := make([]string, 0, len(c.subcommands))
	for name := range c.subcommands {
		subs = append(subs, name)
	}
	slices.Sort(subs)
	b = appendArray(b, len(subs))
	for _, name := range subs {
		b = appendCommandInfo(b, c.subcommands[name])
	}
	return b
}

func commandFlagNames(c *CommandInfo) []string {
	var flags []string
	for _, f := range []struct {
		flag CommandFlags
		name string
	}{
		{FlagWrite, "write"},
		{FlagReadOnly, "readonly"},
		{FlagAdmin, "admin"},
		{FlagPubSub, "pubsub"},
		{FlagNoScript, "noscript"},
		{FlagBlocking, "blocking"},
	} {
		if c.Flags&f.flag != 0 {
			flags = append(flags, f.name)
		}
	}
	if c.findKeys != nil {
		flags = append(flags, "movablekeys")
	}
	return flags
}

// command answers COMMAND and its subcommands from the command table.
func (s *session) command(args [][]byte) {
	set := commandReplies()
	mark := len(s.local)
	if len(args) == 1 {
		s.local = append(s.local, set.all...)
		s.localReply(mark)
		return
	}
	sub := s.subcommand(LookupCommand(args[0]), args)
	if sub == nil {
		return
	}
	switch sub.Name {
	case "command|count":
		s.local = appendInt(s.local, int64(len(set.names)))
	case "command|info":
		if len(args) == 2 {
			s.local = append(s.local, set.all...)
			break
		}
		s.local = appendArray(s.local, len(args)-2)
		for _, name := range args[2:] {
			if c := LookupCommand(name); c != nil {
				s.local = append(s.local, set.info[c.Name]...)
			} else {
				s.local = append(s.local, "*-1\r\n"...)
			}
		}
	case "command|docs":
		names := set.names
		if len(args) > 2 {
			names = nil
			for _, name := range args[2:] {
				if c := LookupCommand(name); c != nil {
					names = append(names, c.Name)
				}
			}
		}
		s.local = appendArray(s.local, 2*len(names))
		for _, name := range names {
			s.local = appendBulkString(s.local, name)
			s.local = append(s.local, set.docs[name]...)
		}
	case "command|list":
		if len(args) > 2 {
			s.local = appendError(s.local, "ERR COMMAND LIST FILTERBY is not supported by kvproxy")
			break
		}
		s.local = appendArray(s.local, len(set.names))
		for _, name := range set.names {
			s.local = appendBulkString(s.local, name)
		}
	case "command|getkeys":
		s.local = appendGetKeys(s.local, args[2:])
	default:
		s.local = appendError(s.local, unsupportedError(args))
	}
	s.localReply(mark)
}

// appendGetKeys answers COMMAND GETKEYS for the command in args.
func appendGetKeys(b []byte, args [][]byte) []byte {
	c := LookupCommand(args[0])
	if c == nil {
		return appendError(b, "ERR Invalid command specified")
	}
	if !c.ArityOK(len(args)) {
		return appendError(b, "ERR Invalid number of arguments specified for command")
	}
	keys := c.KeyIndexes(args, nil)
	if len(keys) == 0 {
		return appendError(b, "ERR The command has no key arguments")
	}
	b = appendArray(b, len(keys))
	for _, k := range keys {
		b = appendBulk(b, args[k])
	}
	return b
}
