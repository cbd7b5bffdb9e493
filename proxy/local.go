package proxy

import (
	"strconv"
	"time"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// Commands the proxy answers itself: connection state, introspection, and
// the cluster view that keeps cluster-aware clients on the proxy.

// redisVersion is the Redis version whose behaviour the proxy presents.
const redisVersion = "7.0.15"

// localCommands maps the commands answered in place to their handlers. They
// are all keyless, so only keyless commands look here.
var localCommands = map[*CommandInfo]func(*session, [][]byte){
	LookupCommand([]byte("ping")):      (*session).ping,
	LookupCommand([]byte("echo")):      (*session).echo,
	LookupCommand([]byte("quit")):      (*session).quitCommand,
	LookupCommand([]byte("auth")):      (*session).auth,
	LookupCommand([]byte("hello")):     (*session).hello,
	LookupCommand([]byte("select")):    (*session).selectDB,
	LookupCommand([]byte("reset")):     (*session).reset,
	LookupCommand([]byte("readonly")):  (*session).ok,
	LookupCommand([]byte("readwrite")): (*session).ok,
	LookupCommand([]byte("asking")):    (*session).ok,
	LookupCommand([]byte("command")):   (*session).command,
	LookupCommand([]byte("client")):    (*session).client,
	LookupCommand([]byte("cluster")):   (*session).cluster,
	LookupCommand([]byte("info")):      (*session).info,
	LookupCommand([]byte("role")):      (*session).role,
}

func (s *session) ok(_ [][]byte) {
	mark := len(s.local)
	s.local = resp.AppendSimple(s.local, "OK")
	s.localReply(mark)
}

func (s *session) ping(args [][]byte) {
	mark := len(s.local)
	switch len(args) {
	case 1:
		s.local = resp.AppendSimple(s.local, "PONG")
	case 2:
		s.local = resp.AppendBulk(s.local, args[1])
	default:
		s.local = resp.AppendError(s.local, wrongArgsError("ping"))
	}
	s.localReply(mark)
}

func (s *session) echo(args [][]byte) {
	mark := len(s.local)
	s.local = resp.AppendBulk(s.local, args[1])
	s.localReply(mark)
}

// role answers as a Redis master without replicas: to its clients the proxy
// is the one master of every slot (CLUSTER NODES says the same), and the
// replicas behind it are not theirs to reach.
func (s *session) role(_ [][]byte) {
	mark := len(s.local)
	s.local = append(s.local, "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"...)
	s.localReply(mark)
}

func (s *session) quitCommand(_ [][]byte) {
	s.ok(nil)
	s.quit = true
}

func (s *session) selectDB(args [][]byte) {
	db, ok := resp.ParseInt(args[1])
	switch {
	case !ok:
		s.replyError("ERR value is not an integer or out of range")
	case db != 0:
		s.replyError("ERR DB index is out of range")
	default:
		s.ok(nil)
	}
}

// reset returns the connection to its initial state, as Redis' RESET does.
func (s *session) reset(_ [][]byte) {
	s.name = nil
	s.resp3 = false
	s.trackingOptIn, s.cachingAsked = false, false
	s.startUnauthenticated()
	mark := len(s.local)
	s.local = resp.AppendSimple(s.local, "RESET")
	s.localReply(mark)
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]] as Redis
// 7 does: protocol 2 or 3 (resp3.go), the reply a map in RESP3 (built as
// RESP2's flat array and converted by its shape).
func (s *session) hello(args [][]byte) {
	resp3 := s.resp3
	if len(args) >= 2 {
		version, ok := resp.ParseInt(args[1])
		switch {
		case !ok:
			s.replyError("ERR Protocol version is not an integer or out of range")
			return
		case version != 2 && version != 3:
			s.replyError("NOPROTO unsupported protocol version")
			return
		}
		resp3 = version == 3
	}
	var user, password, name []byte
	for i := 2; i < len(args); i++ {
		more := len(args) - 1 - i
		switch {
		case equalFold(args[i], "auth") && more >= 2:
			user, password = args[i+1], args[i+2]
			i += 2
		case equalFold(args[i], "setname") && more >= 1:
			name = args[i+1]
			i++
		default:
			s.replyError("ERR Syntax error in HELLO option '" + string(appendSanitized(nil, args[i], 128)) + "'")
			return
		}
	}
	if user != nil {
		signedIn := s.checkCredentials(user, password)
		if signedIn == nil {
			s.authFailed(user)
			return
		}
		s.signIn(signedIn)
	}
	if !s.authed {
		s.replyError("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if name != nil {
		if !validClientName(name) {
			s.replyError(errBadClientName)
			return
		}
		s.name = append(s.name[:0], name...)
	}
	// The reply is in the protocol chosen (shapeEntries runs after).
	s.resp3 = resp3
	mark := len(s.local)
	s.local = resp.AppendArray(s.local, 14)
	s.local = resp.AppendBulkString(s.local, "server")
	s.local = resp.AppendBulkString(s.local, "redis")
	s.local = resp.AppendBulkString(s.local, "version")
	s.local = resp.AppendBulkString(s.local, redisVersion)
	s.local = resp.AppendBulkString(s.local, "proto")
	s.local = resp.AppendInt(s.local, int64(s.protocol()))
	s.local = resp.AppendBulkString(s.local, "id")
	s.local = resp.AppendInt(s.local, s.id)
	s.local = resp.AppendBulkString(s.local, "mode")
	s.local = resp.AppendBulkString(s.local, "cluster")
	s.local = resp.AppendBulkString(s.local, "role")
	s.local = resp.AppendBulkString(s.local, "master")
	s.local = resp.AppendBulkString(s.local, "modules")
	s.local = resp.AppendArray(s.local, 0)
	s.localReply(mark)
}

const errBadClientName = "ERR Client names cannot contain spaces, newlines or special characters."

// validClientName applies Redis' rule: printable ASCII without spaces.
func validClientName(name []byte) bool {
	for _, c := range name {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

// subcommand finds the subcommand a container command names, answering the
// error itself when there is none or its arity is wrong.
func (s *session) subcommand(info *CommandInfo, args [][]byte) *CommandInfo {
	sub := info.Subcommand(args[1])
	if sub == nil {
		s.replyError(unknownSubcommandError(args))
		return nil
	}
	if !sub.ArityOK(len(args)) {
		s.replyError(wrongArgsError(sub.Name))
		return nil
	}
	s.lastCommand = sub.Name
	return sub
}

// client answers the CLIENT subcommands: the client's own connection, and
// LIST and KILL over every client (clientlist.go).
func (s *session) client(args [][]byte) {
	if equalFold(args[1], "setinfo") {
		// Redis 7.2's CLIENT SETINFO, which client libraries send on
		// connect; the attributes are accepted and not kept.
		switch {
		case len(args) != 4:
			s.replyError(wrongArgsError("client|setinfo"))
		case !equalFold(args[2], "lib-name") && !equalFold(args[2], "lib-ver"):
			s.replyError("ERR Unrecognized option '" + string(appendSanitized(nil, args[2], 128)) + "'")
		default:
			s.ok(nil)
		}
		return
	}
	sub := s.subcommand(LookupCommand(args[0]), args)
	if sub == nil {
		return
	}
	mark := len(s.local)
	switch sub.Name {
	case "client|id":
		s.local = resp.AppendInt(s.local, s.id)
	case "client|getname":
		if len(s.name) == 0 {
			s.local = resp.AppendNullBulk(s.local)
		} else {
			s.local = resp.AppendBulk(s.local, s.name)
		}
	case "client|setname":
		if !validClientName(args[2]) {
			s.local = resp.AppendError(s.local, errBadClientName)
		} else {
			s.name = append(s.name[:0], args[2]...)
			s.local = resp.AppendSimple(s.local, "OK")
		}
	case "client|info":
		s.publishShown()
		s.local = resp.AppendBulkString(s.local, clientInfoLine(s, time.Now()))
	case "client|list":
		if list, err := s.clientList(args); err != "" {
			s.local = resp.AppendError(s.local, err)
		} else {
			s.local = resp.AppendBulkString(s.local, list)
		}
	case "client|kill":
		s.clientKill(args)
		return
	case "client|tracking":
		s.local = s.tracking(args)
	case "client|caching":
		s.local = s.caching(args)
	default:
		s.local = resp.AppendError(s.local, unsupportedError(args))
	}
	s.localReply(mark)
}

// cluster presents the proxy as a cluster of one master that owns every
// slot, so cluster-aware clients send everything to the proxy.
func (s *session) cluster(args [][]byte) {
	sub := s.subcommand(LookupCommand(args[0]), args)
	if sub == nil {
		return
	}
	if sub == cmdCountKeysInSlot || sub == cmdGetKeysInSlot {
		s.keysInSlot(sub, args)
		return
	}
	srv := s.srv
	mark := len(s.local)
	switch sub.Name {
	case "cluster|info":
		s.local = resp.AppendBulkString(s.local, "cluster_state:ok\r\n"+
			"cluster_slots_assigned:16384\r\n"+
			"cluster_slots_ok:16384\r\n"+
			"cluster_slots_pfail:0\r\n"+
			"cluster_slots_fail:0\r\n"+
			"cluster_known_nodes:1\r\n"+
			"cluster_size:1\r\n"+
			"cluster_current_epoch:1\r\n"+
			"cluster_my_epoch:1\r\n")
	case "cluster|slots":
		s.local = resp.AppendArray(s.local, 1)
		s.local = resp.AppendArray(s.local, 3)
		s.local = resp.AppendInt(s.local, 0)
		s.local = resp.AppendInt(s.local, 16383)
		s.local = resp.AppendArray(s.local, 3)
		s.local = resp.AppendBulkString(s.local, srv.announceHost)
		s.local = resp.AppendInt(s.local, int64(srv.announcePort))
		s.local = resp.AppendBulkString(s.local, srv.nodeID)
	case "cluster|nodes":
		s.local = resp.AppendBulkString(s.local, srv.nodeID+" "+srv.cfg.AnnounceAddr+"@"+strconv.Itoa(srv.announcePort+10000)+
			" myself,master - 0 0 1 connected 0-16383\n")
	case "cluster|shards":
		s.local = resp.AppendArray(s.local, 1)
		s.local = resp.AppendArray(s.local, 4)
		s.local = resp.AppendBulkString(s.local, "slots")
		s.local = resp.AppendArray(s.local, 2)
		s.local = resp.AppendInt(s.local, 0)
		s.local = resp.AppendInt(s.local, 16383)
		s.local = resp.AppendBulkString(s.local, "nodes")
		s.local = resp.AppendArray(s.local, 1)
		s.local = resp.AppendArray(s.local, 14)
		for _, field := range [][2]string{{"id", srv.nodeID}, {"port", ""}, {"ip", srv.announceHost},
			{"endpoint", srv.announceHost}, {"role", "master"}, {"replication-offset", ""}, {"health", "online"}} {
			s.local = resp.AppendBulkString(s.local, field[0])
			switch field[0] {
			case "port":
				s.local = resp.AppendInt(s.local, int64(srv.announcePort))
			case "replication-offset":
				s.local = resp.AppendInt(s.local, 0)
			default:
				s.local = resp.AppendBulkString(s.local, field[1])
			}
		}
	case "cluster|myid":
		s.local = resp.AppendBulkString(s.local, srv.nodeID)
	case "cluster|keyslot":
		s.local = resp.AppendInt(s.local, int64(router.Slot(args[2])))
	default:
		s.local = resp.AppendError(s.local, unsupportedError(args))
	}
	s.localReply(mark)
}

var (
	cmdCountKeysInSlot = LookupCommand([]byte("cluster")).Subcommand([]byte("countkeysinslot"))
	cmdGetKeysInSlot   = LookupCommand([]byte("cluster")).Subcommand([]byte("getkeysinslot"))
)

// keysInSlot sends CLUSTER COUNTKEYSINSLOT and GETKEYSINSLOT to the slot's
// master, after the checks Redis makes, with its errors: any node would
// answer for a slot it does not own with nothing.
func (s *session) keysInSlot(sub *CommandInfo, args [][]byte) {
	slot, ok := redisInt(args[2])
	count := int64(0)
	if ok && sub == cmdGetKeysInSlot {
		count, ok = redisInt(args[3])
	}
	switch {
	case !ok:
		s.replyError("ERR value is not an integer or out of range")
	case sub == cmdCountKeysInSlot && (slot < 0 || slot >= router.SlotCount):
		s.replyError("ERR Invalid slot")
	case slot < 0 || slot >= router.SlotCount || count < 0:
		s.replyError("ERR Invalid slot or number of keys")
	default:
		s.route(resp.AppendCommand(nil, args...), int(slot), true)
	}
}

// redisInt parses an integer as Redis' string2ll does: no sign but a
// leading minus, no leading zeros, within int64.
func redisInt(b []byte) (int64, bool) {
	n, ok := resp.ParseInt(b)
	return n, ok && string(strconv.AppendInt(nil, n, 10)) == string(b)
}
