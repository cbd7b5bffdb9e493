package kvsim

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScriptReplies(t *testing.T) {
	_, _, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	for _, tc := range []struct{ script, want string }{
		{"return 1", ":1\r\n"},
		{"return 3.7", ":3\r\n"},
		{"return 'a'", "$1\r\na\r\n"},
		{"return true", ":1\r\n"},
		{"return false", "$-1\r\n"},
		{"return nil", "$-1\r\n"},
		{"return {1, 'b', {2}}", "*3\r\n:1\r\n$1\r\nb\r\n*1\r\n:2\r\n"},
		{"return {1, nil, 3}", "*1\r\n:1\r\n"},
		{"return {ok = 'FINE'}", "$4\r\nFINE\r\n"}, // Kvrocks: a bulk string, not a status
		{"return redis.status_reply('FINE')", "$4\r\nFINE\r\n"},
		{"return redis.error_reply('MY failure')", "-MY failure\r\n"},
		{"return {1, redis.error_reply('E inner')}", "*2\r\n:1\r\n-E inner\r\n"},
		{"return #KEYS + #ARGV * 10", ":21\r\n"},
		{"local t = redis.call('TIME') return {#t, type(t[1]), tonumber(t[2]) < 1000000}", "*3\r\n:2\r\n$6\r\nstring\r\n:1\r\n"},
		{"return {KEYS[1], ARGV[1], ARGV[2]}", "*3\r\n" + ntBulk(k) + "$1\r\na\r\n$1\r\nb\r\n"},
		{"return redis.call('SET', KEYS[1], ARGV[1])", "$2\r\nOK\r\n"},
		{"return redis.call('GET', KEYS[1])", "$1\r\na\r\n"},
		{"return redis.call('INCRBY', KEYS[1] .. 'n', 5)", ":5\r\n"},
		{"return redis.call('GET', KEYS[1] .. 'nope') == false", ":1\r\n"},
		{"return redis.call('SET', KEYS[1], 'v')['ok']", "$2\r\nOK\r\n"},
		{"return redis.call('LPUSH', KEYS[1], 'x')", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{"local r = redis.pcall('LPUSH', KEYS[1], 'x') return type(r.err)", "$6\r\nstring\r\n"},
		{"return redis.call('NOSUCH')", "-" + errCallUnknown + "\r\n"},
		{"return redis.call('GET')", "-" + errCallArity + "\r\n"},
		{"return redis.call()", "-" + errCallNoArgs + "\r\n"},
		{"return redis.call('SET', KEYS[1] .. 'f', 0.1)", "$2\r\nOK\r\n"},
		{"return redis.call('GET', KEYS[1] .. 'f')", "$19\r\n0.10000000000000001\r\n"},
		{"return redis.call({})", "-" + errCallArgs + "\r\n"},
	} {
		assert.Equal(t, tc.want, c.do("EVAL", tc.script, "1", k, "a", "b"), tc.script)
	}
	assert.Equal(t, "$1\r\nv\r\n", c.do("GET", k), "the script's writes are the keyspace's")
	assert.True(t, strings.HasPrefix(c.do("EVAL", "return (", "0"), "-ERR Error compiling script"))
	assert.True(t, strings.HasPrefix(c.do("EVAL", "error('boom')", "0"), "-ERR running script (call to f_"))
}

func TestScriptArgumentsAndCache(t *testing.T) {
	_, _, c := ntClusterOfTwo(t)
	mine, theirs := ntKeyInSlots(t, 0, 8191), ntKeyInSlots(t, 8192, 16383)
	assert.Equal(t, "-"+errTooManyKeys+"\r\n", c.do("EVAL", "return 1", "2", mine))
	assert.Equal(t, "-"+errNegativeKeys+"\r\n", c.do("EVAL", "return 1", "-1"))
	assert.Equal(t, "-"+errNotInteger+"\r\n", c.do("EVAL", "return 1", "x"))
	assert.Equal(t, "-ERR wrong number of arguments for 'eval' command\r\n", c.do("EVAL", "return 1"))
	assert.True(t, strings.HasPrefix(c.do("EVAL", "return 1", "1", theirs), "-MOVED "), "keys of another node")
	assert.True(t, strings.HasPrefix(c.do("EVAL", "return 1", "2", mine, theirs), "-CROSSSLOT"))

	body := "return 'cached'"
	sum := sha1.Sum([]byte(body))
	sha := hex.EncodeToString(sum[:])
	assert.Equal(t, "-"+errNoScript+"\r\n", c.do("EVALSHA", sha, "0"))
	assert.Equal(t, ntBulk(sha), c.do("SCRIPT", "LOAD", body))
	assert.Equal(t, "$6\r\ncached\r\n", c.do("EVALSHA", strings.ToUpper(sha), "0"))
	assert.Equal(t, "*2\r\n:1\r\n:0\r\n", c.do("SCRIPT", "EXISTS", sha, strings.Repeat("0", 40)))
	assert.Equal(t, "+OK\r\n", c.do("SCRIPT", "FLUSH"))
	assert.Equal(t, "*1\r\n:0\r\n", c.do("SCRIPT", "EXISTS", sha))
	c.do("EVAL", body, "0")
	assert.Equal(t, "*1\r\n:1\r\n", c.do("SCRIPT", "EXISTS", sha), "EVAL caches its script")
	assert.Equal(t, "-"+errScriptSubcommand+"\r\n", c.do("SCRIPT", "KILL"), "Kvrocks has no SCRIPT KILL")
}

// A running script has the node to itself, as in Kvrocks: even a PING from
// another connection waits for it.
func TestScriptRunsExclusively(t *testing.T) {
	me, _, c := ntClusterOfTwo(t)
	other := ntDial(t, me.Addr())
	c.send("EVAL", `local function now() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 end
local stop = now() + 1000
while now() < stop do end
return 'done'`, "0")
	deadline := time.Now().Add(10 * time.Second)
	for me.exclusive.TryRLock() {
		me.exclusive.RUnlock()
		require.True(t, time.Now().Before(deadline), "the script never started")
		time.Sleep(time.Millisecond)
	}
	other.send("PING")
	require.NoError(t, other.conn.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err := other.rd.Peek(1)
	if err == nil {
		running := !me.exclusive.TryRLock()
		if !running {
			me.exclusive.RUnlock()
		}
		assert.False(t, running, "PING answered while the script ran")
	}
	require.NoError(t, other.conn.SetReadDeadline(time.Time{}))
	assert.Equal(t, "$4\r\ndone\r\n", c.read())
	assert.Equal(t, "+PONG\r\n", other.read())
}

func TestFunctions(t *testing.T) {
	_, _, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	lib := "#!lua name=mylib\n" +
		"redis.register_function('setget', function(keys, args) redis.call('SET', keys[1], args[1]) return redis.call('GET', keys[1]) end)\n" +
		"redis.register_function{function_name = 'fail', callback = function(keys, args) return redis.error_reply('MINE failed') end}\n"
	assert.Equal(t, "-"+errNoFunction+"\r\n", c.do("FCALL", "setget", "1", k, "v"))
	assert.Equal(t, "+mylib\r\n", c.do("FUNCTION", "LOAD", lib))
	assert.Equal(t, "-"+errLibExists+"\r\n", c.do("FUNCTION", "LOAD", lib))
	assert.Equal(t, "+mylib\r\n", c.do("FUNCTION", "LOAD", "REPLACE", lib))
	assert.Equal(t, "$1\r\nv\r\n", c.do("FCALL", "setget", "1", k, "v"))
	assert.Equal(t, "-MINE failed\r\n", c.do("FCALL", "fail", "0"))
	assert.Equal(t, "-"+errTooManyKeys+"\r\n", c.do("FCALL", "setget", "3", k))
	assert.True(t, strings.HasPrefix(c.do("FCALL", "setget", "1", ntKeyInSlots(t, 8192, 16383), "v"), "-MOVED "))
	assert.Equal(t, "*1\r\n*2\r\n$12\r\nlibrary_name\r\n$5\r\nmylib\r\n", c.do("FUNCTION", "LIST"))
	assert.Equal(t, "*1\r\n*4\r\n$12\r\nlibrary_name\r\n$5\r\nmylib\r\n$12\r\nlibrary_code\r\n"+ntBulk(lib),
		c.do("FUNCTION", "LIST", "WITHCODE"))
	assert.Equal(t, "*0\r\n", c.do("FUNCTION", "LIST", "LIBRARYNAME", "other"))
	for _, bad := range []struct{ code, want string }{
		{"return 1", "-ERR Expect a Shebang statement in the first line\r\n"},
		{"#!js name=x\nreturn 1", "-" + errNoShebang + "\r\n"},
		{"#!lua\nreturn 1", "-" + errNoLibName + "\r\n"},
		{"#!lua name=a-b\nreturn 1", "-" + errBadLibName + "\r\n"},
		{"#!lua name=empty\nlocal x = 1", "-" + errNoFunctions + "\r\n"},
	} {
		assert.Equal(t, bad.want, c.do("FUNCTION", "LOAD", bad.code), bad.code)
	}
	assert.Equal(t, "-"+errFunctionSubcmd+"\r\n", c.do("FUNCTION", "KILL"), "Kvrocks has no FUNCTION KILL")
	assert.Equal(t, "+OK\r\n", c.do("FUNCTION", "DELETE", "mylib"))
	assert.Equal(t, "-"+errNoLibrary+"\r\n", c.do("FUNCTION", "DELETE", "mylib"))
	assert.Equal(t, "-"+errNoFunction+"\r\n", c.do("FCALL", "setget", "1", k, "v"))
	assert.Equal(t, "+mylib\r\n", c.do("FUNCTION", "LOAD", lib))
	assert.Equal(t, "+OK\r\n", c.do("FUNCTION", "FLUSH"))
	assert.Equal(t, "*0\r\n", c.do("FUNCTION", "LIST"))
}
