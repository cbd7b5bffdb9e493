package proxy

import (
	"crypto/sha1"
	"encoding/hex"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/router"
)

// spinScript loops for ARGV[1] milliseconds of server time, writing nothing,
// so SCRIPT KILL may stop it.
const spinScript = `local function now() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 end
local stop = now() + tonumber(ARGV[1])
while now() < stop do end
return 'done'`

// spinLibrary registers the same loop as the function spin.
const spinLibrary = "#!lua name=spinlib\n" + `local function now() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 end
redis.register_function{function_name = 'spin', flags = {'no-writes'}, callback = function(keys, args)
  local stop = now() + tonumber(args[1])
  while now() < stop do end
  return 'done'
end}`

// keyOn returns a key whose slot the master at addr serves.
func keyOn(t *testing.T, cp *clusterProxy, addr string) string {
	t.Helper()
	for i := range 10000 {
		key := "script-key-" + strconv.Itoa(i)
		if cp.cluster.MasterForKey(key).Addr == addr {
			return key
		}
	}
	t.Fatalf("no key found on %s", addr)
	return ""
}

// waitBusy waits until the master at addr answers a PING with BUSY: its
// script has run past busy-reply-threshold.
func waitBusy(t *testing.T, addr string) {
	t.Helper()
	direct := dialResp(t, addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply := direct.do("PING")
		if strings.HasPrefix(reply, "-BUSY") {
			return
		}
		require.True(t, time.Now().Before(deadline), "the script never made %s busy: %q", addr, reply)
		time.Sleep(20 * time.Millisecond)
	}
}

// notProxyError says a reply is the server's, not a failure the proxy made
// up: a value, or Redis' own BUSY.
func notProxyError(t *testing.T, reply string, allowed ...string) {
	t.Helper()
	if strings.HasPrefix(reply, "-BUSY") {
		return
	}
	assert.Contains(t, allowed, reply, "a request during a long script got %q", reply)
}

func TestScriptsOnRealCluster(t *testing.T) {
	// A hold budget far below the scripts' 2 s: a node taken for
	// unreachable while it runs one would fail the requests behind it.
	cp := startClusterProxyWith(t, threeMasters, func(c *Config) { c.AdminPassword = "ops" },
		func(rc *router.Config) { rc.HoldTimeout = 500 * time.Millisecond })
	requireNoGoroutineLeak(t, runtime.NumGoroutine())
	masters := cp.cluster.Masters()
	require.Len(t, masters, 3)

	t.Run("SCRIPT LOAD, EXISTS and FLUSH act on every master", func(t *testing.T) {
		c := dialResp(t, cp.addr)
		script := "return {KEYS[1], ARGV[1]}"
		sum := sha1.Sum([]byte(script))
		sha := hex.EncodeToString(sum[:])
		require.Equal(t, "$40\r\n"+sha+"\r\n", c.do("SCRIPT", "LOAD", script), "the sha once")
		for _, m := range masters {
			key := keyOn(t, cp, m.Addr)
			assert.Equal(t, "*2\r\n$"+strconv.Itoa(len(key))+"\r\n"+key+"\r\n$1\r\nx\r\n",
				c.do("EVALSHA", sha, "1", key, "x"), "EVALSHA on %s's keys", m.Addr)
		}

		// A script only one master has does not exist for the proxy:
		// EVALSHA may reach any master.
		only := "return 'one master'"
		onlySum := sha1.Sum([]byte(only))
		onlySha := hex.EncodeToString(onlySum[:])
		direct := dialResp(t, masters[0].Addr)
		require.Equal(t, "$40\r\n"+onlySha+"\r\n", direct.do("SCRIPT", "LOAD", only))
		assert.Equal(t, "*3\r\n:1\r\n:0\r\n:0\r\n", c.do("SCRIPT", "EXISTS", sha, onlySha, strings.Repeat("0", 40)))

		assert.Equal(t, replyNoAdmin, c.do("SCRIPT", "FLUSH"))
		assert.Equal(t, "*1\r\n:1\r\n", direct.do("SCRIPT", "EXISTS", sha), "a refused FLUSH ran nowhere")
		admin := dialResp(t, cp.addr)
		require.Equal(t, "+OK\r\n", admin.do("AUTH", "admin", "ops"))
		assert.Equal(t, "+OK\r\n", admin.do("SCRIPT", "FLUSH"))
		for _, m := range masters {
			assert.Equal(t, "*2\r\n:0\r\n:0\r\n", dialResp(t, m.Addr).do("SCRIPT", "EXISTS", sha, onlySha), "flushed on %s", m.Addr)
		}
		assert.True(t, strings.HasPrefix(c.do("EVALSHA", sha, "0"), "-NOSCRIPT"))
	})

	t.Run("a long script delays the requests behind it and fails none", func(t *testing.T) {
		// busy-reply-threshold is Redis' default (5 s): the node answers
		// nothing, probes included, while the script runs.
		before := cp.router.Stats()
		m := masters[1].Addr
		scripted := dialResp(t, cp.addr)
		scripted.send(encodeCommand("EVAL", spinScript, "1", keyOn(t, cp, m), "2000"))
		// Past the script's first missed probe (100 ms + 250 ms), the
		// requests below would be held as by an unreachable node, and fail
		// at the 500 ms budget, well before the script ends. Not an
		// assertion: a slower machine only sends them later.
		time.Sleep(700 * time.Millisecond)
		writer, reader := dialResp(t, cp.addr), dialResp(t, cp.addr)
		key := keyOn(t, cp, m)
		writer.send(encodeCommand("SET", key, "during"))
		reader.send(encodeCommand("GET", key))
		assert.Equal(t, "$4\r\ndone\r\n", scripted.read())
		assert.Equal(t, "+OK\r\n", writer.read())
		notProxyError(t, reader.read(), "$-1\r\n", "$6\r\nduring\r\n")
		after := cp.router.Stats()
		assert.Greater(t, after.Busy, before.Busy, "the node missed probes while it ran the script")
		assert.Equal(t, before.Unresponsive, after.Unresponsive, "and was not taken for unreachable")
	})

	for _, m := range masters {
		direct := dialResp(t, m.Addr)
		require.Equal(t, "+OK\r\n", direct.do("CONFIG", "SET", "busy-reply-threshold", "100"))
	}
	notBusy := dialResp(t, masters[0].Addr).do("SCRIPT", "KILL")
	require.True(t, strings.HasPrefix(notBusy, "-NOTBUSY"), notBusy)

	t.Run("SCRIPT KILL through the proxy reaches the master running the script", func(t *testing.T) {
		c := dialResp(t, cp.addr)
		assert.Equal(t, notBusy, c.do("SCRIPT", "KILL"), "Redis' NOTBUSY when none runs")
		for _, m := range masters {
			scripted := dialResp(t, cp.addr)
			key := keyOn(t, cp, m.Addr)
			scripted.send(encodeCommand("EVAL", spinScript, "1", key, "20000"))
			waitBusy(t, m.Addr)
			other := dialResp(t, cp.addr)
			other.send(encodeCommand("GET", key))
			assert.Equal(t, "+OK\r\n", c.do("SCRIPT", "KILL"), "on %s", m.Addr)
			killed := scripted.read()
			assert.True(t, strings.HasPrefix(killed, "-ERR Script killed by user"), killed)
			notProxyError(t, other.read(), "$-1\r\n")
		}
		assert.Equal(t, notBusy, c.do("SCRIPT", "KILL"))
	})

	t.Run("FUNCTION KILL through the proxy stops FCALL", func(t *testing.T) {
		c := dialResp(t, cp.addr)
		require.Equal(t, "$7\r\nspinlib\r\n", c.do("FUNCTION", "LOAD", spinLibrary), "loaded on every master")
		assert.Equal(t, notBusy, c.do("FUNCTION", "KILL"))
		m := masters[2].Addr
		called := dialResp(t, cp.addr)
		called.send(encodeCommand("FCALL", "spin", "1", keyOn(t, cp, m), "20000"))
		waitBusy(t, m)
		assert.Equal(t, "+OK\r\n", c.do("FUNCTION", "KILL"))
		killed := called.read()
		// Redis 7.0 words it "killed by user with SCRIPT KILL" for functions too.
		assert.True(t, strings.HasPrefix(killed, "-ERR Script killed by user"), killed)
		for _, other := range masters[:2] {
			assert.Equal(t, "$4\r\ndone\r\n", c.do("FCALL", "spin", "1", keyOn(t, cp, other.Addr), "0"))
		}
		assert.Equal(t, replyNoAdmin, c.do("FUNCTION", "FLUSH"))
		admin := dialResp(t, cp.addr)
		require.Equal(t, "+OK\r\n", admin.do("AUTH", "admin", "ops"))
		assert.Equal(t, "+OK\r\n", admin.do("FUNCTION", "FLUSH"))
		assert.Equal(t, "*0\r\n", dialResp(t, m).do("FUNCTION", "LIST"))
	})
}
