package kvsim

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/bench/kvsim/keyspace"
)

// atomicString is a string read and written from different goroutines.
type atomicString struct{ p atomic.Pointer[string] }

func (a *atomicString) Load() string {
	if p := a.p.Load(); p != nil {
		return *p
	}
	return ""
}

func (a *atomicString) Store(s string) { a.p.Store(&s) }

// controlArity is the Redis arity of the commands the node answers itself.
var controlArity = map[string]int{
	"auth": -2, "hello": -1, "ping": -1, "echo": 2, "quit": -1, "select": 2,
	"client": -2, "command": -1, "config": -2, "info": -1, "readonly": 1,
	"readwrite": 1, "asking": 1, "cluster": -2, "clusterx": -2,
	"multi": 1, "exec": 1, "discard": 1, "watch": -2, "unwatch": 1,
	"blpop": -3, "brpop": -3, "blmove": 6,
	"eval": -3, "evalsha": -3, "script": -2, "fcall": -3, "function": -2, "time": 1,
}

// execControl runs a command the keyspace does not implement: connection,
// server and cluster commands, or the unknown-command error.
func (n *Node) execControl(conn redcon.Conn, s *session, lname string, args [][]byte) {
	if arity, ok := controlArity[lname]; ok {
		if arity > 0 && len(args) != arity || arity < 0 && len(args) < -arity {
			conn.WriteError(wrongArityError(args[0]))
			return
		}
	}
	switch lname {
	case "auth":
		n.auth(conn, s, args)
	case "hello":
		n.hello(conn, s, args)
	case "ping":
		switch len(args) {
		case 1:
			conn.WriteString("PONG")
		case 2:
			conn.WriteBulk(args[1])
		default:
			conn.WriteError(wrongArityError(args[0]))
		}
	case "echo":
		conn.WriteBulk(args[1])
	case "quit":
		conn.WriteString("OK")
		_ = conn.Close()
	case "select":
		if _, err := strconv.Atoi(string(args[1])); err != nil {
			conn.WriteError("ERR value is not an integer or out of range")
		} else if string(args[1]) != "0" {
			conn.WriteError("ERR SELECT is not allowed in cluster mode")
		} else {
			conn.WriteString("OK")
		}
	case "client":
		n.client(conn, s, args)
	case "command":
		commandReply(conn, args)
	case "config":
		n.config(conn, args, s.resp3)
	case "info":
		writeText(conn, n.info(args[1:]), s.resp3)
	case "readonly":
		s.readonly = true
		conn.WriteString("OK")
	case "readwrite":
		s.readonly = false
		conn.WriteString("OK")
	case "asking":
		conn.WriteString("OK")
	case "cluster":
		n.cluster(conn, args, s.resp3)
	case "clusterx":
		n.clusterx(conn, args)
	case "multi", "exec", "discard", "watch", "unwatch":
		n.transactionCommand(conn, s, lname, args)
	case "blpop", "brpop", "blmove":
		n.execBlockingInExec(conn, s, lname, args) // only EXEC gets here: serve runs them outside MULTI
	case "publish", "mpublish", "pubsub", "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
		"ssubscribe", "sunsubscribe":
		n.execPubSub(conn, s, lname, args)
	case replPsyncCommand:
		n.servePsync(conn, args)
	case "eval", "evalsha", "script":
		n.execScripting(conn, s, lname, args)
	case "fcall", "function":
		n.execFunction(conn, s, lname, args)
	case "time":
		conn.WriteRaw(appendTime(nil))
	case "kvsim":
		if n.cfg.Admin != nil {
			conn.WriteRaw(n.cfg.Admin(args))
			return
		}
		conn.WriteRaw(keyspace.AppendUnknownCommand(nil, args))
	default:
		conn.WriteRaw(keyspace.AppendUnknownCommand(nil, args))
	}
}

func (n *Node) auth(conn redcon.Conn, s *session, args [][]byte) {
	if len(args) > 3 {
		conn.WriteError("ERR syntax error")
		return
	}
	if n.cfg.Password == "" {
		conn.WriteError("ERR Client sent AUTH, but no password is set")
		return
	}
	if !n.checkPassword(args[1:]) {
		conn.WriteError("ERR Invalid password")
		return
	}
	s.authed = true
	conn.WriteString("OK")
}

// checkPassword accepts <password> or default <password>.
func (n *Node) checkPassword(cred [][]byte) bool {
	switch len(cred) {
	case 1:
		return string(cred[0]) == n.cfg.Password
	case 2:
		return string(cred[0]) == "default" && string(cred[1]) == n.cfg.Password
	}
	return false
}

// hello is Kvrocks' HELLO [protover [AUTH [default] password] [SETNAME name]]:
// AUTH and SETNAME take effect as they are read, a connection that is not
// authenticated still gets the reply (HELLO is exempt from NOAUTH, and does
// not authenticate without AUTH), and the reply is Kvrocks' fixed map in the
// protocol just chosen: HELLO without a version returns the connection to
// RESP2, as Kvrocks does (resp3-enabled, its default, is assumed).
func (n *Node) hello(conn redcon.Conn, s *session, args [][]byte) {
	proto := 2
	next := 1
	if len(args) >= 2 {
		v, err := strconv.ParseInt(strings.TrimLeft(string(args[1]), " \t\n\v\f\r"), 10, 32)
		if err != nil {
			conn.WriteError("ERR Protocol version is not an integer or out of range")
			return
		}
		if v < 2 || v > 3 {
			conn.WriteError("NOPROTO unsupported protocol version")
			return
		}
		proto = int(v)
		next = 2
	}
	for ; next < len(args); next++ {
		more := len(args) - next - 1
		switch opt := string(args[next]); {
		case strings.EqualFold(opt, "auth") && more != 0:
			if more == 2 || more == 4 {
				if string(args[next+1]) != "default" {
					conn.WriteError("ERR Invalid password")
					return
				}
				next++
			}
			switch {
			case n.cfg.Password == "":
				conn.WriteError("ERR Client sent AUTH, but no password is set")
				return
			case string(args[next+1]) != n.cfg.Password:
				conn.WriteError("ERR Invalid password")
				return
			}
			s.authed = true
			next++
		case strings.EqualFold(opt, "setname") && more != 0:
			s.name.Store(string(args[next+1]))
			next++
		default:
			conn.WriteError("ERR Syntax error in HELLO option " + opt)
			return
		}
	}
	s.resp3 = proto == 3
	out := appendMapHeader(nil, 6, s.resp3)
	out = appendBulkString(out, "server")
	out = appendBulkString(out, "redis")
	out = appendBulkString(out, "version")
	out = appendBulkString(out, "4.0.0")
	out = appendBulkString(out, "proto")
	out = appendInteger(out, int64(proto))
	out = appendBulkString(out, "mode")
	out = appendBulkString(out, "standalone")
	out = appendBulkString(out, "role")
	out = appendBulkString(out, "master")
	out = appendBulkString(out, "modules")
	if s.resp3 {
		out = append(out, "_\r\n"...)
	} else {
		out = append(out, "*-1\r\n"...)
	}
	conn.WriteRaw(out)
}

func (n *Node) client(conn redcon.Conn, s *session, args [][]byte) {
	const syntax = "ERR Syntax error, try CLIENT LIST|INFO|KILL ip:port|GETNAME|SETNAME"
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "setname" && len(args) == 3:
		for _, c := range args[2] {
			if c <= ' ' || c > '~' {
				conn.WriteError("ERR Client names cannot contain spaces, newlines or special characters.")
				return
			}
		}
		s.name.Store(string(args[2]))
		conn.WriteString("OK")
	case sub == "getname" && len(args) == 2:
		if name := s.name.Load(); name != "" {
			conn.WriteBulkString(name)
		} else {
			writeNil(conn, s.resp3)
		}
	case sub == "id" && len(args) == 2:
		conn.WriteInt64(s.id)
	case sub == "setinfo" && len(args) == 4:
		conn.WriteString("OK")
	case sub == "list" && len(args) == 2:
		writeText(conn, n.clientList(), s.resp3)
	case sub == "info" && len(args) == 2:
		writeText(conn, n.clientLine(s, time.Now()), s.resp3)
	case sub == "pause" && (len(args) == 3 || len(args) == 4):
		n.clientPause(conn, args)
	case sub == "unpause" && len(args) == 2:
		n.pause.reset()
		conn.WriteString("OK")
	default:
		conn.WriteError(syntax)
	}
}

// clientPause handles CLIENT PAUSE <ms> [WRITE|ALL]; it returns once the
// writes already executing have landed.
func (n *Node) clientPause(conn redcon.Conn, args [][]byte) {
	ms, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		conn.WriteError("ERR timeout is not an integer or out of range")
		return
	}
	if ms < 0 {
		conn.WriteError("ERR timeout is negative")
		return
	}
	all := true
	if len(args) == 4 {
		switch strings.ToLower(string(args[3])) {
		case "write":
			all = false
		case "all":
		default:
			conn.WriteError("ERR syntax error")
			return
		}
	}
	n.pause.pause(time.Duration(ms)*time.Millisecond, all)
	n.drainWrites()
	conn.WriteString("OK")
}

func (n *Node) clientLine(s *session, now time.Time) string {
	return "id=" + strconv.FormatInt(s.id, 10) + " addr=" + s.addr + " fd=0 name=" + s.name.Load() +
		" age=" + strconv.Itoa(int(now.Sub(s.created).Seconds())) + " idle=0 flags=N namespace=__namespace qbuf=0 obuf=0\n"
}

func (n *Node) clientList() string {
	n.clientsMu.Lock()
	sessions := make([]*session, 0, len(n.clients))
	for s := range n.clients {
		sessions = append(sessions, s)
	}
	n.clientsMu.Unlock()
	var b strings.Builder
	now := time.Now()
	for _, s := range sessions {
		b.WriteString(n.clientLine(s, now))
	}
	return b.String()
}

// commandReply answers COMMAND minimally, enough for redis-cli and
// redis-benchmark to start quietly: COUNT counts the node's own commands, the
// rest of the table stays empty.
func commandReply(conn redcon.Conn, args [][]byte) {
	if len(args) == 1 {
		conn.WriteArray(0)
		return
	}
	switch strings.ToLower(string(args[1])) {
	case "count":
		conn.WriteInt(len(controlArity))
	case "docs":
		conn.WriteArray(0)
	case "info":
		conn.WriteArray(len(args) - 2)
		for range args[2:] {
			conn.WriteNull()
		}
	default:
		conn.WriteError("ERR Command subcommand must be one of COUNT, DOCS, INFO")
	}
}

// config answers CONFIG GET for what redis-benchmark and clients ask, a
// map in RESP3 (Kvrocks' MapOfBulkStrings).
func (n *Node) config(conn redcon.Conn, args [][]byte, resp3 bool) {
	if !strings.EqualFold(string(args[1]), "get") || len(args) < 3 {
		conn.WriteError("ERR CONFIG subcommand must be one of GET, SET, REWRITE")
		return
	}
	known := map[string]string{"save": "", "appendonly": "no", "requirepass": n.cfg.Password}
	var pairs []string
	for _, a := range args[2:] {
		name := strings.ToLower(string(a))
		if v, ok := known[name]; ok {
			pairs = append(pairs, name, v)
		}
	}
	out := appendMapHeader(nil, len(pairs)/2, resp3)
	for _, p := range pairs {
		out = appendBulkString(out, p)
	}
	conn.WriteRaw(out)
}
