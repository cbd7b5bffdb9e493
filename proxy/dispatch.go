package proxy

import (
	"github.com/tidwall/redcon"

	"kvproxy/router"
)

// Dispatch: what serving a command takes, found once per command (its
// class), and the session's choice of how to answer it.

// Commands that need special treatment, found once.
var (
	cmdMGET   = LookupCommand([]byte("mget"))
	cmdMSET   = LookupCommand([]byte("mset"))
	cmdDEL    = LookupCommand([]byte("del"))
	cmdEXISTS = LookupCommand([]byte("exists"))
	cmdUNLINK = LookupCommand([]byte("unlink"))
	cmdTOUCH  = LookupCommand([]byte("touch"))
	cmdAUTH   = LookupCommand([]byte("auth"))
	cmdHELLO  = LookupCommand([]byte("hello"))
	cmdQUIT   = LookupCommand([]byte("quit"))
	cmdRESET  = LookupCommand([]byte("reset"))
)

// commandClass is what a command's arguments alone say about serving it. It
// is found once per command: by loopSafe when an event loop decides whether
// it may serve the batch, else when the session serves the command.
type commandClass struct {
	// info is the table's entry, nil for a command the proxy does not know;
	// cmd is the subcommand a container names (nil if none), else info.
	info, cmd *CommandInfo
	// local answers a command the proxy serves in place (kindLocal).
	local func(*session, [][]byte)
	kind  commandKind
}

// commandKind is how a command is served, in the order the session checks
// for it; AUTH and the admin user are checked between kindBadArity and the
// others.
type commandKind uint8

const (
	kindUnknown       commandKind = iota // not in the table: an error
	kindProxy                            // PROXY, the proxy's own admin command
	kindProxyFailover                    // PROXY FAILOVER: waits for the handover
	kindBadArity                         // info's arity is wrong: an error
	kindLocal                            // answered in place by local
	kindBadSubcommand                    // a container's unknown subcommand: an error
	kindBadSubArity                      // the subcommand's arity is wrong: an error
	// kindClusterxFailover: CLUSTERX FAILOVER, carried out by the proxy when
	// it has dedicated connections, waiting for the handover.
	kindClusterxFailover
	kindDedicated // a transaction, blocking or Pub/Sub command: a dedicated connection
	// kindScriptKill: SCRIPT KILL or FUNCTION KILL, sent to every master on
	// dedicated connections (killScript).
	kindScriptKill
	kindRefused // an operator's command: not supported
	kindRouted  // sent to the masters: by slot, split or fanned out
)

// classOf classifies the command args.
func classOf(args [][]byte) commandClass {
	info := LookupCommand(args[0])
	if info == nil {
		switch {
		case isProxyFailover(args):
			return commandClass{kind: kindProxyFailover}
		case equalFold(args[0], "proxy"):
			return commandClass{kind: kindProxy}
		}
		return commandClass{kind: kindUnknown}
	}
	class := commandClass{info: info, cmd: info}
	if !info.ArityOK(len(args)) {
		class.kind = kindBadArity
		return class
	}
	if info.IsContainer() {
		// A bare COMMAND (arity -1) names no subcommand.
		class.cmd = nil
		if len(args) > 1 {
			class.cmd = info.Subcommand(args[1])
		}
	}
	if info.Flags&FlagKeyless != 0 {
		if class.local = localCommands[info]; class.local != nil {
			class.kind = kindLocal
			return class
		}
	}
	cmd := class.cmd
	switch {
	case cmd == nil:
		class.kind = kindBadSubcommand
	case cmd != info && !cmd.ArityOK(len(args)):
		class.kind = kindBadSubArity
	case isClusterxFailover(info, args):
		class.kind = kindClusterxFailover
	case cmd.servedConfig:
		class.kind = kindRouted
	case cmd == cmdScriptKill || cmd == cmdFunctionKill:
		class.kind = kindScriptKill
	case cmd.Flags&FlagAdmin != 0:
		class.kind = kindRefused
	case cmd.Flags&(FlagTransaction|FlagBlocking|FlagPubSub) != 0 && !nonBlockingRead(cmd, args) && !routedPubSub(cmd):
		class.kind = kindDedicated
	default:
		class.kind = kindRouted
	}
	return class
}

// blocksLoop reports a command an event loop must not serve: it waits for a
// handover, needs a dedicated connection, or ends the connection.
func (c *commandClass) blocksLoop() bool {
	switch c.kind {
	case kindProxyFailover, kindClusterxFailover, kindDedicated, kindScriptKill:
		return true
	}
	// CLIENT KILL may end the caller's own connection, as QUIT does.
	return c.info == cmdQUIT || c.cmd == cmdClientKill
}

// classFor is the class of c, the command being served: the one loopSafe
// found, else found now.
func (s *session) classFor(c *redcon.Command) commandClass {
	if i := s.serving; i < len(s.classes) && &s.classed[i] == c {
		return s.classes[i]
	}
	return classOf(c.Args)
}

// classify decides how one command is answered and records it: answered in
// place, routed by slot, split across slots or fanned out to every master.
func (s *session) classify(c *redcon.Command) {
	first := len(s.entries)
	defer s.shapeEntries(first, c.Args)
	s.statCmd = nil
	defer s.markCounted(first, s.endedChunks)
	s.followCredentials()
	switch {
	case s.cachingAsked && !isCaching(c.Args) && s.refuseCached():
	case s.tx.inMulti:
		s.queueCommand(c)
	case s.sub != nil:
		s.subscriberCommand(c)
	default:
		s.classifyCommand(c)
	}
}

// markCounted marks the entry recorded from first on, the reply to the
// command classified, to be counted when written (cmdstats.go); ended is
// endedChunks when the command's classification began: a command served on
// a dedicated connection answers the chunk before it (runPending), its own
// entries then starting at 0, unless it writes its reply itself
// (endDirect).
func (s *session) markCounted(first, ended int) {
	if ended != s.endedChunks {
		first = 0
	}
	if first < len(s.entries) {
		s.entries[first].counted = true
		s.entries[first].cmd = s.statCmd
	}
}

// isCaching reports CLIENT CACHING, which does not consume the refusal
// it arms.
func isCaching(args [][]byte) bool {
	return len(args) > 1 && equalFold(args[0], "client") && equalFold(args[1], "caching")
}

// classifyCommand classifies a command outside MULTI and subscriber mode.
func (s *session) classifyCommand(c *redcon.Command) {
	args := c.Args
	class := s.classFor(c)
	switch class.kind {
	case kindUnknown:
		s.lastCommand = ""
		s.replyError(unknownCommandError(args))
		return
	case kindProxy, kindProxyFailover:
		s.lastCommand = ""
		if !s.authed {
			s.replyError(errNoAuth)
			return
		}
		s.proxyCommand(args)
		return
	}
	info, cmd := class.info, class.cmd
	s.lastCommand = info.Name
	s.statCmd = info
	if cmd != nil {
		s.statCmd = cmd
	}
	if class.kind == kindBadArity {
		s.replyError(wrongArgsError(info.Name))
		return
	}
	if !s.authed && info != cmdAUTH && info != cmdHELLO && info != cmdQUIT && info != cmdRESET {
		s.replyError(errNoAuth)
		return
	}
	if !s.isAdmin() && adminOnly(cmd, args) {
		s.replyError(errNoAdmin)
		return
	}
	if s.readOnly && deniedToReadOnly(cmd) {
		s.replyError(noPermError(cmd))
		return
	}
	switch class.kind {
	case kindLocal:
		class.local(s, args)
		return
	case kindBadSubcommand:
		s.replyError(unknownSubcommandError(args))
		return
	case kindBadSubArity:
		s.replyError(wrongArgsError(cmd.Name))
		return
	}
	s.lastCommand = cmd.Name
	switch class.kind {
	case kindClusterxFailover, kindDedicated, kindRefused, kindScriptKill:
		// Such a command may wait long: CLIENT LIST shows it meanwhile.
		s.publishShown()
		switch {
		case class.kind == kindRefused || s.srv.dedicated == nil:
			s.replyError(unsupportedError(args))
		case class.kind == kindClusterxFailover:
			s.clusterxFailover(c)
		case class.kind == kindScriptKill:
			s.killScript(c)
		case cmd.Flags&FlagTransaction != 0:
			s.transactionCommand(cmd, c)
		case cmd.Flags&FlagBlocking != 0:
			s.blockingCommand(cmd, c)
		default:
			s.pubSubCommand(cmd, c)
		}
		return
	}
	if cmd.runsScript {
		defer s.markLong(len(s.reqs))
	}
	if cmd.Flags&FlagKeyless != 0 {
		switch {
		case cmd.Flags&FlagFanout != 0:
			s.fanout(cmd, c)
		case fanoutSame[cmd]:
			s.fanoutAll(c.Raw, false, mergeSame, 0)
		case cmd == cmdScriptExists:
			s.fanoutAll(c.Raw, true, mergeScriptExists, 0)
		case cmd.servedConfig:
			s.config(cmd, c)
		default:
			s.routeKeyless(c.Raw, cmd.Flags&FlagReadOnly != 0)
		}
		return
	}
	if splittable(cmd) {
		s.multiKey(cmd, c)
		return
	}
	s.keyIdx = cmd.KeyIndexes(args, s.keyIdx[:0])
	switch len(s.keyIdx) {
	case 0:
		s.routeKeyless(c.Raw, cmd.Flags&FlagReadOnly != 0)
		return
	case 1:
		s.route(c.Raw, int(router.Slot(args[s.keyIdx[0]])), cmd.Flags&FlagReadOnly != 0)
		return
	}
	slot := router.Slot(args[s.keyIdx[0]])
	for _, k := range s.keyIdx[1:] {
		if router.Slot(args[k]) != slot {
			s.replyError("CROSSSLOT Keys in request don't hash to the same slot")
			return
		}
	}
	s.route(c.Raw, int(slot), cmd.Flags&FlagReadOnly != 0)
}

// route sends the command unchanged to the master of slot.
func (s *session) route(raw []byte, slot int, readOnly bool) {
	q, i := s.newRequest()
	q.Raw = raw
	q.Slot = slot
	q.ReadOnly = readOnly
	s.lastSlot = slot
	s.entries = append(s.entries, entry{kind: replyRouted, from: i, to: i + 1})
}

// routeFirstMaster sends raw to the topology's first master, the one that
// speaks for the cluster where one node must (PUBLISH, CONFIG GET); kind
// writes its reply.
func (s *session) routeFirstMaster(raw []byte, readOnly bool, kind replyKind) {
	masters := s.mastersList()
	if len(masters) == 0 {
		s.replyError(errNoMasters)
		return
	}
	q, i := s.newRequest()
	q.Raw = raw
	q.Addr = masters[0]
	q.ReadOnly = readOnly
	s.entries = append(s.entries, entry{kind: kind, from: i, to: i + 1})
}

// routeKeyless sends a command without keys to one master, the same one for
// the whole session so its commands stay in order.
func (s *session) routeKeyless(raw []byte, readOnly bool) {
	masters := s.mastersList()
	if len(masters) == 0 {
		s.replyError(errNoMasters)
		return
	}
	q, i := s.newRequest()
	q.Raw = raw
	q.Addr = masters[int(s.id)%len(masters)]
	q.ReadOnly = readOnly
	s.lastSlot = -1
	s.entries = append(s.entries, entry{kind: replyRouted, from: i, to: i + 1})
}

var (
	cmdXREAD      = LookupCommand([]byte("xread"))
	cmdXREADGROUP = LookupCommand([]byte("xreadgroup"))
)

// nonBlockingRead reports an XREAD or XREADGROUP without BLOCK: it answers at
// once, so it is routed like any other command.
func nonBlockingRead(cmd *CommandInfo, args [][]byte) bool {
	if cmd != cmdXREAD && cmd != cmdXREADGROUP {
		return false
	}
	// Options are skipped by their widths, as a group or consumer may be
	// named "block".
	for i := 1; i < len(args); i++ {
		switch arg := args[i]; {
		case equalFold(arg, "block"):
			return false
		case equalFold(arg, "count"):
			i++
		case equalFold(arg, "group"):
			i += 2
		case equalFold(arg, "streams"):
			return true
		}
	}
	return true
}
