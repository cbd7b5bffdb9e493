package kvsim

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/redcon"
	lua "github.com/yuin/gopher-lua"

	"kvproxy/bench/kvsim/keyspace"
	"kvproxy/internal/resp"
)

// Scripting as Kvrocks does it (src/storage/scripting.cc, which follows
// Redis' eval.c): EVAL, EVALSHA and SCRIPT LOAD/EXISTS/FLUSH, Lua 5.1 with
// redis.call, redis.pcall, redis.error_reply and redis.status_reply, KEYS
// and ARGV, and Redis' conversions between Lua values and replies. A script
// runs exclusively: no other command of any connection runs meanwhile, not
// even PING (Node.exclusive), and there is no SCRIPT KILL. Scripts are
// kept per node (Kvrocks keeps them in its database).

// scriptCache holds the scripts a node knows, by their lower-case sha1.
type scriptCache struct {
	mu     sync.Mutex
	bodies map[string]string
}

func (c *scriptCache) load(body string) string {
	sum := sha1.Sum([]byte(body))
	sha := hex.EncodeToString(sum[:])
	c.mu.Lock()
	if c.bodies == nil {
		c.bodies = make(map[string]string)
	}
	c.bodies[sha] = body
	c.mu.Unlock()
	return sha
}

func (c *scriptCache) get(sha string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	body, ok := c.bodies[strings.ToLower(sha)]
	return body, ok
}

func (c *scriptCache) flush() {
	c.mu.Lock()
	c.bodies = nil
	c.mu.Unlock()
}

// runsExclusively names the commands that run with no other command
// beside them (Kvrocks' "exclusive" flag).
func runsExclusively(lname string) bool {
	return lname == "eval" || lname == "evalsha" || lname == "fcall" || lname == "function"
}

// Kvrocks' error texts.
const (
	errNoScript         = "NOSCRIPT No matching script. Please use EVAL"
	errTooManyKeys      = "ERR Number of keys can't be greater than number of args"
	errNegativeKeys     = "ERR Number of keys can't be negative"
	errScriptSubcommand = "ERR Unknown SCRIPT subcommand or wrong number of arguments"
	errNotInteger       = "ERR value is not an integer or out of range"
	errCallArgs         = "ERR Lua redis.call() command arguments must be strings or integers"
	errCallUnknown      = "ERR Unknown Redis command called from Lua script"
	errCallArity        = "ERR Wrong number of args calling Redis command From Lua script"
	errCallNoArgs       = "ERR Please specify at least one argument for redis.call()"
	errCallWhileLoading = "ERR kvsim runs no command while FUNCTION LOAD registers a library"
)

// execScripting answers SCRIPT, EVAL and EVALSHA.
func (n *Node) execScripting(conn redcon.Conn, s *session, lname string, args [][]byte) {
	if lname == "script" {
		n.scriptCommand(conn, args)
		return
	}
	if s.tx.active {
		conn.WriteError("ERR kvsim does not run scripts inside MULTI")
		return
	}
	body, sha := string(args[1]), strings.ToLower(string(args[1]))
	if lname == "evalsha" {
		var ok bool
		if body, ok = n.scripts.get(sha); !ok {
			conn.WriteError(errNoScript)
			return
		}
	} else {
		sha = n.scripts.load(body)
	}
	keys, argv, ok := n.admitScript(conn, s, lname, args)
	if !ok {
		return
	}
	defer n.writeGate.RUnlock()
	conn.WriteRaw(n.runScript(body, sha, keys, argv, s.resp3))
}

// admitScript checks the key count of EVAL, EVALSHA or FCALL args
// (name numkeys key... arg...) and its keys, as a write: it waits out a
// write pause, and a node that does not serve the keys refuses it. It
// answers the client and returns false, or returns the keys and the other
// arguments holding writeGate shared (the caller releases it).
func (n *Node) admitScript(conn redcon.Conn, s *session, lname string, args [][]byte) (keys, argv [][]byte, ok bool) {
	numKeys, err := strconv.ParseInt(string(args[2]), 10, 64)
	switch {
	case err != nil:
		conn.WriteError(errNotInteger)
		return nil, nil, false
	case numKeys < 0:
		conn.WriteError(errNegativeKeys)
		return nil, nil, false
	case numKeys > int64(len(args)-3):
		conn.WriteError(errTooManyKeys)
		return nil, nil, false
	}
	if !n.beginWrite() {
		return nil, nil, false
	}
	if numKeys > 0 {
		cmd := &keyspace.Command{Name: lname, Write: true, FirstKey: 3, LastKey: 2 + int(numKeys), Step: 1}
		if msg := n.clusterRefusal(s, cmd, args); msg != "" {
			n.writeGate.RUnlock()
			conn.WriteError(msg)
			return nil, nil, false
		}
	}
	return args[3 : 3+numKeys], args[3+numKeys:], true
}

func (n *Node) scriptCommand(conn redcon.Conn, args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "load" && len(args) == 3:
		conn.WriteBulkString(n.scripts.load(string(args[2])))
	case sub == "exists" && len(args) >= 3:
		conn.WriteArray(len(args) - 2)
		for _, sha := range args[2:] {
			_, ok := n.scripts.get(string(sha))
			conn.WriteInt(boolInt(ok))
		}
	case sub == "flush" && len(args) <= 3:
		n.scripts.flush()
		conn.WriteString("OK")
	default:
		conn.WriteError(errScriptSubcommand)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runScript runs body with the keyspace to itself and returns the reply, in
// RESP3 for a RESP3 connection (resp3).
func (n *Node) runScript(body, sha string, keys, argv [][]byte, resp3 bool) []byte {
	L := newScriptState()
	defer L.Close()
	L.SetGlobal("KEYS", stringTable(L, keys))
	L.SetGlobal("ARGV", stringTable(L, argv))
	var out []byte
	n.ks.Transaction(func(txn keyspace.Txn) {
		setRedisTable(L, txn, nil, resp3)
		fn, err := L.LoadString(body)
		if err != nil {
			out = resp.AppendError(nil, "ERR Error compiling script (new function): "+oneLine(err.Error()))
			return
		}
		L.Push(fn)
		out = callScript(L, 0, "ERR running script (call to f_"+sha+"): ", resp3)
	})
	return out
}

// newScriptState is a Lua state with the libraries Kvrocks opens.
func newScriptState() *lua.LState {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	return L
}

// setRedisTable installs the redis table: call and pcall run commands
// through txn, and see their replies in the connection's protocol (resp3),
// as Kvrocks runs them on the caller's connection; register, when not nil,
// is redis.register_function.
func setRedisTable(L *lua.LState, txn keyspace.Txn, register lua.LGFunction, resp3 bool) {
	redis := L.NewTable()
	L.SetFuncs(redis, map[string]lua.LGFunction{
		"call":  func(L *lua.LState) int { return redisCall(L, txn, true, resp3) },
		"pcall": func(L *lua.LState) int { return redisCall(L, txn, false, resp3) },
		"error_reply": func(L *lua.LState) int {
			L.Push(replyTable(L, "err", L.CheckString(1)))
			return 1
		},
		"status_reply": func(L *lua.LState) int {
			L.Push(replyTable(L, "ok", L.CheckString(1)))
			return 1
		},
	})
	if register != nil {
		redis.RawSetString("register_function", L.NewFunction(register))
	}
	L.SetGlobal("redis", redis)
}

// callScript calls the function pushed with its nargs arguments and returns
// its reply: an error raised by redis.call is the command's error, any
// other failure is worded after prefix.
func callScript(L *lua.LState, nargs int, prefix string, resp3 bool) []byte {
	if err := L.PCall(nargs, 1, nil); err != nil {
		if apiErr, ok := err.(*lua.ApiError); ok {
			if t, ok := apiErr.Object.(*lua.LTable); ok {
				if msg, ok := t.RawGetString("err").(lua.LString); ok {
					return resp.AppendError(nil, string(msg))
				}
			}
		}
		return resp.AppendError(nil, prefix+oneLine(err.Error()))
	}
	return appendLuaReply(nil, L.Get(-1), resp3)
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

func stringTable(L *lua.LState, items [][]byte) *lua.LTable {
	t := L.CreateTable(len(items), 0)
	for _, item := range items {
		t.Append(lua.LString(item))
	}
	return t
}

func replyTable(L *lua.LState, field, text string) *lua.LTable {
	t := L.NewTable()
	t.RawSetString(field, lua.LString(text))
	return t
}

// redisCall runs redis.call (raise: an error reply raises it) or
// redis.pcall (it returns the error as {err=...}).
func redisCall(L *lua.LState, txn keyspace.Txn, raise, resp3 bool) int {
	top := L.GetTop()
	fail := func(msg string) int {
		t := replyTable(L, "err", msg)
		if raise {
			L.Error(t, 1)
			return 0
		}
		L.Push(t)
		return 1
	}
	if top == 0 {
		return fail(errCallNoArgs)
	}
	if txn == (keyspace.Txn{}) {
		return fail(errCallWhileLoading)
	}
	args := make([][]byte, top)
	for i := range top {
		switch v := L.Get(i + 1).(type) {
		case lua.LString:
			args[i] = []byte(v)
		case lua.LNumber:
			args[i] = []byte(strconv.FormatFloat(float64(v), 'g', 17, 64)) // Kvrocks' {:.17g}
		default:
			return fail(errCallArgs)
		}
	}
	cmd := keyspace.Lookup(args[0])
	var reply []byte
	switch {
	case cmd == nil && strings.EqualFold(string(args[0]), "time") && len(args) == 1:
		reply = appendTime(nil)
	case cmd == nil:
		return fail(errCallUnknown)
	case !cmd.ArityOK(len(args)):
		return fail(errCallArity)
	default:
		reply = txn.Exec(nil, cmd, args)
		if resp3 {
			reply = appendRESP3(nil, reply, resp3Aggregates[cmd.Name])
		}
	}
	v, _ := luaValueOf(L, reply)
	if t, ok := v.(*lua.LTable); ok && raise {
		if _, isErr := t.RawGetString("err").(lua.LString); isErr {
			L.Error(t, 1)
			return 0
		}
	}
	L.Push(v)
	return 1
}

// luaValueOf converts a command's reply to a Lua value as Kvrocks'
// RedisProtocolToLuaType does: integer → number, bulk → string, null bulk
// or array → false, array or set → table, status → {ok=...}, error →
// {err=...}, and in RESP3 `_` → nil. A RESP3 map of n pairs becomes a
// table of its first n elements: Kvrocks reads n values for it, not 2n. It
// returns the bytes read.
func luaValueOf(L *lua.LState, reply []byte) (lua.LValue, int) {
	end := strings.Index(string(reply), "\r\n")
	if end < 1 {
		return lua.LFalse, len(reply)
	}
	line, next := string(reply[1:end]), end+2
	switch reply[0] {
	case '+':
		return replyTable(L, "ok", line), next
	case '-':
		return replyTable(L, "err", line), next
	case ':':
		n, _ := strconv.ParseInt(line, 10, 64)
		return lua.LNumber(n), next
	case '$':
		size, _ := strconv.Atoi(line)
		if size < 0 {
			return lua.LFalse, next
		}
		return lua.LString(reply[next : next+size]), next + size + 2
	case '_':
		return lua.LNil, next
	case '*', '~', '%':
		count, _ := strconv.Atoi(line)
		if count < 0 {
			return lua.LFalse, next
		}
		t := L.CreateTable(count, 0)
		for i := range count {
			v, size := luaValueOf(L, reply[next:])
			t.RawSetInt(i+1, v)
			next += size
		}
		return t, next
	}
	return lua.LFalse, len(reply)
}

// appendLuaReply converts a script's result to a reply as Kvrocks'
// ReplyToRedisReply does: string → bulk, number → integer (truncated), true
// → 1 and false → null bulk (RESP3: #t and #f), nil → null bulk (RESP3: _),
// {err=...} → error, {ok=...} → a bulk string (not Redis' status), any
// other table → an array (in both protocols) of its elements up to the
// first nil.
func appendLuaReply(out []byte, v lua.LValue, resp3 bool) []byte {
	switch v := v.(type) {
	case lua.LString:
		return resp.AppendBulkString(out, string(v))
	case lua.LNumber:
		return resp.AppendInt(out, int64(v))
	case lua.LBool:
		switch {
		case resp3 && bool(v):
			return append(out, "#t\r\n"...)
		case resp3:
			return append(out, "#f\r\n"...)
		case bool(v):
			return resp.AppendInt(out, 1)
		}
		return resp.AppendNullBulk(out)
	case *lua.LTable:
		if msg, ok := v.RawGetString("err").(lua.LString); ok {
			return resp.AppendError(out, string(msg))
		}
		if status, ok := v.RawGetString("ok").(lua.LString); ok {
			return resp.AppendBulkString(out, string(status))
		}
		n := 0
		for v.RawGetInt(n+1) != lua.LNil {
			n++
		}
		out = resp.AppendArray(out, n)
		for i := 1; i <= n; i++ {
			out = appendLuaReply(out, v.RawGetInt(i), resp3)
		}
		return out
	}
	if resp3 {
		return append(out, "_\r\n"...)
	}
	return resp.AppendNullBulk(out)
}

// appendTime is TIME's reply: the server's clock in seconds and
// microseconds, as two bulk strings.
func appendTime(out []byte) []byte {
	now := time.Now()
	out = resp.AppendArray(out, 2)
	out = resp.AppendBulkString(out, strconv.FormatInt(now.Unix(), 10))
	return resp.AppendBulkString(out, strconv.Itoa(now.Nanosecond()/1000))
}
