package proxy

import (
	"strconv"
	"strings"

	"kvproxy/internal/resp"
)

// PROXY, the proxy's own admin command: NODES and HELP here, FAILOVER in
// proxyfailover.go.

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
		s.local = resp.AppendBulkString(s.local, s.srv.backendNodes())
	case equalFold(args[1], "nodes"):
		s.local = resp.AppendError(s.local, wrongArgsError("proxy|nodes"))
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
		s.local = resp.AppendArray(s.local, len(help))
		for _, h := range help {
			s.local = resp.AppendSimple(s.local, h)
		}
	default:
		s.local = resp.AppendError(s.local, unknownSubcommandError(args))
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
