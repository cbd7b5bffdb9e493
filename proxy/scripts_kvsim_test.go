package proxy

import (
	"crypto/sha1"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/router"
)

// Kvrocks runs a script exclusively: while it runs, its node answers
// nothing, a probe's PING included. Through the proxy the requests to that
// node wait for the script and are answered; none fails.
func TestScriptsThroughProxyOnKvsim(t *testing.T) {
	// A hold budget far below the script's run.
	kp := startKvsimProxy(t, func(c *router.Config) { c.HoldTimeout = 500 * time.Millisecond })
	r, addr := kp.router, kp.addr
	key := "{busy}k"
	owner := kp.ownerOf(key)

	c := dialResp(t, addr)
	body := "return redis.call('GET', KEYS[1])"
	sum := sha1.Sum([]byte(body))
	sha := hex.EncodeToString(sum[:])
	require.Equal(t, "$40\r\n"+sha+"\r\n", c.do("SCRIPT", "LOAD", body))
	assert.Equal(t, "*1\r\n:1\r\n", c.do("SCRIPT", "EXISTS", sha))
	assert.Equal(t, "-ERR Unknown SCRIPT subcommand or wrong number of arguments\r\n", c.do("SCRIPT", "KILL"),
		"Kvrocks' own answer: it has no SCRIPT KILL")
	assert.Equal(t, "+lib\r\n", c.do("FUNCTION", "LOAD", "#!lua name=lib\nredis.register_function('f', function(keys) return keys[1] end)"))
	assert.Equal(t, "$7\r\n{busy}k\r\n", c.do("FCALL", "f", "1", key))

	before := r.Stats()
	scripted := dialResp(t, addr)
	scripted.send(encodeCommand("EVAL", spinScript, "1", key, "2000"))
	// Past the first missed probe: requests would now be held as for an
	// unreachable node and fail at the 500 ms budget. Not an assertion.
	time.Sleep(700 * time.Millisecond)
	writer, reader := dialResp(t, addr), dialResp(t, addr)
	writer.send(encodeCommand("SET", key, "during"))
	reader.send(encodeCommand("EVALSHA", sha, "1", key))
	assert.Equal(t, "$4\r\ndone\r\n", scripted.read())
	assert.Equal(t, "+OK\r\n", writer.read())
	assert.Equal(t, "$6\r\nduring\r\n", reader.read())
	after := r.Stats()
	assert.Greater(t, after.Busy, before.Busy, "%s missed probes while it ran the script", owner)
	assert.Equal(t, before.Unresponsive, after.Unresponsive, "and was not taken for unreachable")
}
