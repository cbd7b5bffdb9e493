package kvsim

import (
	"slices"
	"strings"
	"sync"

	"github.com/tidwall/redcon"
	lua "github.com/yuin/gopher-lua"

	"kvproxy/bench/kvsim/keyspace"
	"kvproxy/internal/resp"
)

// Functions as Kvrocks has them (src/storage/scripting.cc): FUNCTION LOAD
// [REPLACE] of a library whose first line is "#!lua name=<lib>" and which
// calls redis.register_function, FCALL, FUNCTION DELETE, FLUSH and LIST;
// run exclusively like scripts, and no FUNCTION KILL. A library's code is
// kept and run again, in a fresh Lua state, for each FCALL.

// functionLibs holds the libraries a node knows and their functions.
type functionLibs struct {
	mu    sync.Mutex
	code  map[string]string   // library → its code
	funcs map[string]string   // function → its library
	names map[string][]string // library → its functions
}

// Kvrocks' wording of function errors.
const (
	errNoShebang       = "ERR Expect a Shebang statement in the first line, e.g. `#!lua name=mylib`"
	errNoLibName       = "ERR Expect library name in the Shebang statement, e.g. `#!lua name=mylib`"
	errBadLibName      = "ERR Expect a valid library name in the Shebang statement"
	errLibExists       = "ERR library already exists, please specify REPLACE to force load"
	errNoFunctions     = "ERR Please register some function in FUNCTION LOAD"
	errNoLibrary       = "ERR the library does not exist in lua environment"
	errNoFunction      = "ERR No such function name found in storage"
	errFunctionSubcmd  = "ERR no such subcommand"
	errRegisterArgs    = "ERR wrong arguments to redis.register_function"
	errFunctionRunning = "ERR Error while running new function lib: "
)

// execFunction answers FUNCTION and FCALL.
func (n *Node) execFunction(conn redcon.Conn, s *session, lname string, args [][]byte) {
	if s.tx.active {
		conn.WriteError("ERR kvsim does not run functions inside MULTI")
		return
	}
	if lname == "fcall" {
		n.fcall(conn, s, args)
		return
	}
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "load" && len(args) >= 3:
		replace := len(args) == 4 && strings.EqualFold(string(args[2]), "replace")
		if len(args) > 3 && !replace {
			conn.WriteError("ERR syntax error")
			return
		}
		lib, err := n.functions.load(string(args[len(args)-1]), replace)
		if err != "" {
			conn.WriteError(err)
			return
		}
		conn.WriteString(lib)
	case sub == "delete" && len(args) == 3:
		if !n.functions.remove(string(args[2])) {
			conn.WriteError(errNoLibrary)
			return
		}
		conn.WriteString("OK")
	case sub == "flush" && len(args) <= 3:
		n.functions.flush()
		conn.WriteString("OK")
	case sub == "list":
		conn.WriteRaw(n.functions.list(args[2:]))
	default:
		conn.WriteError(errFunctionSubcmd)
	}
}

// parseLibrary checks the shebang line and returns the library's name.
func parseLibrary(code string) (lib, body, errMsg string) {
	first, body, ok := strings.Cut(code, "\n")
	if !ok {
		return "", "", "ERR Expect a Shebang statement in the first line"
	}
	words := strings.FieldsFunc(first, func(r rune) bool { return r == ' ' || r == '\r' || r == '\t' })
	if len(words) == 0 || words[0] != "#!lua" {
		return "", "", errNoShebang
	}
	for _, w := range words[1:] {
		if name, ok := strings.CutPrefix(w, "name="); ok {
			if name == "" || strings.ContainsFunc(name, func(r rune) bool {
				return !(r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
			}) {
				return "", "", errBadLibName
			}
			return name, body, ""
		}
	}
	return "", "", errNoLibName
}

// registered runs a library's body and returns the functions it registers
// and their callbacks in L.
func registered(L *lua.LState, txn keyspace.Txn, body string, resp3 bool) (map[string]*lua.LFunction, string) {
	funcs := map[string]*lua.LFunction{}
	setRedisTable(L, txn, func(L *lua.LState) int {
		var name lua.LValue
		var callback lua.LValue
		if t, ok := L.Get(1).(*lua.LTable); ok && L.GetTop() == 1 {
			name, callback = t.RawGetString("function_name"), t.RawGetString("callback")
		} else {
			name, callback = L.Get(1), L.Get(2)
		}
		fn, isFn := callback.(*lua.LFunction)
		nameStr, isStr := name.(lua.LString)
		if !isFn || !isStr || nameStr == "" {
			L.RaiseError("%s", errRegisterArgs)
			return 0
		}
		funcs[string(nameStr)] = fn
		return 0
	}, resp3)
	fn, err := L.LoadString(body)
	if err != nil {
		return nil, "ERR Error while compiling new function lib: " + oneLine(err.Error())
	}
	L.Push(fn)
	if err := L.PCall(0, 0, nil); err != nil {
		return nil, errFunctionRunning + oneLine(err.Error())
	}
	if len(funcs) == 0 {
		return nil, errNoFunctions
	}
	return funcs, ""
}

func (f *functionLibs) load(code string, replace bool) (string, string) {
	lib, body, errMsg := parseLibrary(code)
	if errMsg != "" {
		return "", errMsg
	}
	L := newScriptState()
	defer L.Close()
	// Registering runs the body; its redis.call has no data to reach.
	funcs, errMsg := registered(L, keyspace.Txn{}, body, false)
	if errMsg != "" {
		return "", errMsg
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, exists := f.code[lib]; exists {
		if !replace {
			return "", errLibExists
		}
		f.removeLocked(lib)
	}
	if f.code == nil {
		f.code, f.funcs, f.names = map[string]string{}, map[string]string{}, map[string][]string{}
	}
	f.code[lib] = code
	for name := range funcs {
		if other, taken := f.funcs[name]; taken {
			f.removeLocked(other)
		}
		f.funcs[name] = lib
		f.names[lib] = append(f.names[lib], name)
	}
	return lib, ""
}

func (f *functionLibs) remove(lib string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.code[lib]; !ok {
		return false
	}
	f.removeLocked(lib)
	return true
}

func (f *functionLibs) removeLocked(lib string) {
	for _, name := range f.names[lib] {
		delete(f.funcs, name)
	}
	delete(f.names, lib)
	delete(f.code, lib)
}

func (f *functionLibs) flush() {
	f.mu.Lock()
	f.code, f.funcs, f.names = nil, nil, nil
	f.mu.Unlock()
}

// list answers FUNCTION LIST [WITHCODE] [LIBRARYNAME prefix] as Kvrocks:
// one map per library, in name order, of library_name (and library_code).
func (f *functionLibs) list(opts [][]byte) []byte {
	withCode, prefix := false, ""
	for i := 0; i < len(opts); i++ {
		switch {
		case strings.EqualFold(string(opts[i]), "withcode"):
			withCode = true
		case strings.EqualFold(string(opts[i]), "libraryname") && i+1 < len(opts):
			i++
			prefix = string(opts[i])
		default:
			return resp.AppendError(nil, "ERR syntax error")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var libs []string
	for lib := range f.code {
		if strings.HasPrefix(lib, prefix) {
			libs = append(libs, lib)
		}
	}
	slices.Sort(libs)
	out := resp.AppendArray(nil, len(libs))
	for _, lib := range libs {
		if withCode {
			out = resp.AppendArray(out, 4)
		} else {
			out = resp.AppendArray(out, 2)
		}
		out = resp.AppendBulkString(out, "library_name")
		out = resp.AppendBulkString(out, lib)
		if withCode {
			out = resp.AppendBulkString(out, "library_code")
			out = resp.AppendBulkString(out, f.code[lib])
		}
	}
	return out
}

// fcall runs FCALL name numkeys key... arg...
func (n *Node) fcall(conn redcon.Conn, s *session, args [][]byte) {
	name := string(args[1])
	n.functions.mu.Lock()
	lib, ok := n.functions.funcs[name]
	code := n.functions.code[lib]
	n.functions.mu.Unlock()
	if !ok {
		conn.WriteError(errNoFunction)
		return
	}
	keys, argv, ok := n.admitScript(conn, s, "fcall", args)
	if !ok {
		return
	}
	defer n.writeGate.RUnlock()
	_, body, _ := parseLibrary(code)
	L := newScriptState()
	defer L.Close()
	var out []byte
	n.ks.Transaction(func(txn keyspace.Txn) {
		funcs, errMsg := registered(L, txn, body, s.resp3)
		if errMsg != "" {
			out = resp.AppendError(nil, errMsg)
			return
		}
		L.Push(funcs[name])
		L.Push(stringTable(L, keys))
		L.Push(stringTable(L, argv))
		out = callScript(L, 2, "ERR Error while running function `"+name+"`: ", s.resp3)
	})
	conn.WriteRaw(out)
}
