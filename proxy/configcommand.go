package proxy

import (
	"strconv"
	"strings"

	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// CONFIG: the masters' configuration through the proxy. A parameter has one
// value per master; GET and HELP read the first master's (the masters of a
// cluster are configured alike), and the changes (SET, REWRITE, RESETSTAT)
// go to every master, so the cluster stays configured alike.

var (
	cmdConfigGet       = LookupCommand([]byte("config")).Subcommand([]byte("get"))
	cmdConfigHelp      = LookupCommand([]byte("config")).Subcommand([]byte("help"))
	cmdConfigSet       = LookupCommand([]byte("config")).Subcommand([]byte("set"))
	cmdConfigRewrite   = LookupCommand([]byte("config")).Subcommand([]byte("rewrite"))
	cmdConfigResetstat = LookupCommand([]byte("config")).Subcommand([]byte("resetstat"))
)

// The CONFIG subcommands the proxy serves (servedConfig); their admin flag
// no longer refuses them (adminOnlyCommands guards the changes).
func init() {
	for _, cmd := range []*CommandInfo{cmdConfigGet, cmdConfigHelp, cmdConfigSet, cmdConfigRewrite, cmdConfigResetstat} {
		cmd.servedConfig = true
	}
}

// secretParameters are never shown by CONFIG GET: the masters' passwords
// are not the proxy clients' to read.
var secretParameters = map[string]bool{"requirepass": true, "masterauth": true, "masteruser": true}

func (s *session) config(cmd *CommandInfo, c *redcon.Command) {
	switch cmd {
	case cmdConfigGet:
		s.routeFirstMaster(c.Raw, true, mergeConfigGet)
	case cmdConfigHelp:
		s.routeFirstMaster(c.Raw, true, replyRouted)
	default:
		if cmd == cmdConfigResetstat {
			// As Redis, which resets its commandstats.
			resetCommandStats()
		}
		s.fanoutAll(c.Raw, false, mergeEveryMaster, 0)
	}
}

// writeConfigGet passes a CONFIG GET reply on without the secret
// parameters' pairs.
func (s *session) writeConfigGet(reply []byte) {
	s.spans = s.spans[:0]
	n, ok := s.elements(reply)
	if !ok || n%2 != 0 {
		s.writeUnexpected(reply)
		return
	}
	kept := 0
	for i := 0; i < n; i += 2 {
		if !secretPair(reply, s.spans[i]) {
			kept += 2
		}
	}
	s.scratch = resp.AppendArray(s.scratch[:0], kept)
	for i := 0; i < n; i += 2 {
		if !secretPair(reply, s.spans[i]) {
			s.scratch = append(s.scratch, reply[s.spans[i].from:s.spans[i+1].to]...)
		}
	}
	s.write(s.scratch)
}

// secretPair reports whether the element at sp, a parameter's name, names a
// secret one.
func secretPair(reply []byte, sp span) bool {
	_, body, ok := resp.ReplyLine(reply[sp.from:sp.to])
	if !ok || reply[sp.from] != '$' {
		return false
	}
	name := reply[sp.from+body : sp.to-2]
	return secretParameters[strings.ToLower(string(name))]
}

// writeEveryMaster answers a change made on every master: the first reply
// when all took it, the error when all refused it alike, and otherwise an
// error naming the masters that refused, since the others did apply it.
func (s *session) writeEveryMaster(parts []*router.Request) {
	failed := 0
	sameError := true
	for _, q := range parts {
		if resp.IsError(q.Reply) {
			failed++
			sameError = sameError && string(q.Reply) == string(parts[0].Reply)
		}
	}
	switch {
	case failed == 0:
		s.write(parts[0].Reply)
	case failed == len(parts) && sameError:
		s.write(parts[0].Reply)
	default:
		var b strings.Builder
		b.WriteString("ERR failed on " + strconv.Itoa(failed) + " of " + strconv.Itoa(len(parts)) + " masters (")
		sep := ""
		for _, q := range parts {
			if resp.IsError(q.Reply) {
				line, _, _ := resp.ReplyLine(q.Reply)
				b.WriteString(sep + q.Addr + ": " + string(line))
				sep = "; "
			}
		}
		b.WriteString(")")
		if failed < len(parts) {
			b.WriteString("; the other masters applied it")
		}
		s.scratch = resp.AppendError(s.scratch[:0], b.String())
		s.write(s.scratch)
	}
}
