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
		n.config(conn, args)
	case "info":
		conn.WriteBulkString(n.info(args[1:]))
	case "readonly":
		s.readonly = true
		conn.WriteString("OK")
	case "readwrite":
		s.readonly = false
		conn.WriteString("OK")
	case "asking":
		conn.WriteString("OK")
	case "cluster":
		n.cluster(conn, args)
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

// hello handles HELLO [protover [AUTH user pass] [SETNAME name]]. The node
// only speaks RESP2, so HELLO 3 gets NOPROTO and clients fall back to RESP2.
func (n *Node) hello(conn redcon.Conn, s *session, args [][]byte) {
	if len(args) >= 2 {
		proto, err := strconv.Atoi(string(args[1]))
		if err != nil {
			conn.WriteError("ERR Protocol version is not an integer or out of range")
			return
		}
		if proto != 2 {
			conn.WriteError("NOPROTO unsupported protocol version")
			return
		}
	}
	authed := s.authed
	var name []byte
	for i := 2; i < len(args); i++ {
		switch strings.ToLower(string(args[i])) {
		case "auth":
			if i+2 >= len(args) {
				conn.WriteError("ERR syntax error")
				return
			}
			if n.cfg.Password == "" || !n.checkPassword(args[i+1:i+3]) {
				conn.WriteError("ERR Invalid password")
				return
			}
			authed = true
			i += 2
		case "setname":
			if i+1 >= len(args) {
				conn.WriteError("ERR syntax error")
				return
			}
			name = args[i+1]
			i++
		default:
			conn.WriteError("ERR syntax error")
			return
		}
	}
	if !authed {
		conn.WriteError("NOAUTH Authentication required.")
		return
	}
	s.authed = true
	if name != nil {
		s.name.Store(string(name))
	}
	role := "master"
	if n.view.Load().isReplica() {
		role = "slave"
	}
	conn.WriteArray(14)
	conn.WriteBulkString("server")
	conn.WriteBulkString("redis")
	conn.WriteBulkString("version")
	conn.WriteBulkString("4.0.0")
	conn.WriteBulkString("proto")
	conn.WriteInt(2)
	conn.WriteBulkString("id")
	conn.WriteInt64(s.id)
	conn.WriteBulkString("mode")
	conn.WriteBulkString("cluster")
	conn.WriteBulkString("role")
	conn.WriteBulkString(role)
	conn.WriteBulkString("modules")
	conn.WriteArray(0)
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
			conn.WriteNull()
		}
	case sub == "id" && len(args) == 2:
		conn.WriteInt64(s.id)
	case sub == "setinfo" && len(args) == 4:
		conn.WriteString("OK")
	case sub == "list" && len(args) == 2:
		conn.WriteBulkString(n.clientList())
	case sub == "info" && len(args) == 2:
		conn.WriteBulkString(n.clientLine(s, time.Now()))
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

// config answers CONFIG GET for what redis-benchmark and clients ask.
func (n *Node) config(conn redcon.Conn, args [][]byte) {
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
	conn.WriteArray(len(pairs))
	for _, p := range pairs {
		conn.WriteBulkString(p)
	}
}
