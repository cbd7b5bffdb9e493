package proxy

import (
	"iter"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const replyNoAdmin = "-" + errNoAdmin + "\r\n"

// With an admin password, the commands that wipe data, change a server's
// configuration or drop clients need the admin user; the others do not.
func TestAdminOnlyCommandsNeedTheAdminUser(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(2), func(c *Config) { c.AdminPassword = "ops" })
	c := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", c.do("SET", "k", "v"))
	for _, cmd := range [][]string{
		{"FLUSHALL"}, {"flushall", "ASYNC"}, {"FLUSHDB"}, {"flushdb", "sync"},
		{"SCRIPT", "FLUSH"}, {"script", "flush", "async"}, {"FUNCTION", "FLUSH"}, {"FUNCTION", "DELETE", "lib"},
		{"CONFIG", "SET", "maxmemory", "1"}, {"CONFIG", "REWRITE"}, {"config", "resetstat"},
		{"CLIENT", "KILL", "127.0.0.1:1"}, {"client", "kill", "ID", "1"}, {"CLIENT", "LIST"}, {"client", "list", "TYPE", "normal"},
	} {
		assert.Equal(t, replyNoAdmin, c.do(cmd...), "%q", cmd)
	}
	assert.Equal(t, "$1\r\nv\r\n", c.do("GET", "k"), "nothing was flushed")
	assert.Equal(t, "-ERR wrong number of arguments for 'function|delete' command\r\n", c.do("FUNCTION", "DELETE"),
		"a malformed command is told so first")
	for _, cmd := range [][]string{{"SCRIPT", "LOAD", "return 1"}, {"SCRIPT", "KILL"}, {"FUNCTION", "KILL"}} {
		assert.NotEqual(t, replyNoAdmin, c.do(cmd...), "other script commands are not gated: %q", cmd)
	}
	assert.True(t, strings.HasPrefix(c.do("CLIENT", "ID"), ":"), "other CLIENT subcommands are not gated")
	assert.True(t, strings.HasPrefix(c.do("CLIENT", "INFO"), "$"), "CLIENT INFO is the caller's own")
	assert.Equal(t, "-ERR fake: unknown command 'config'\r\n", c.do("CONFIG", "GET", "maxmemory"), "CONFIG GET is not gated")
	assert.True(t, strings.HasPrefix(c.do("COMMAND"), "*"), "COMMAND without a subcommand is not gated")

	admin := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", admin.do("AUTH", "admin", "ops"))
	assert.Equal(t, "+OK\r\n", admin.do("FLUSHALL"))
	assert.Equal(t, "$-1\r\n", c.do("GET", "k"), "the admin's FLUSHALL ran")
	assert.Equal(t, "-ERR fake: unknown command 'config'\r\n", admin.do("CONFIG", "SET", "maxmemory", "1"), "sent to the masters")
	assert.Equal(t, "-ERR No such client\r\n", admin.do("CLIENT", "KILL", "127.0.0.1:1"))
	assert.True(t, strings.HasPrefix(admin.do("CLIENT", "LIST"), "$"))
	require.Equal(t, "+OK\r\n", admin.do("AUTH", "default", ""), "back to the default user")
	assert.Equal(t, replyNoAdmin, admin.do("FLUSHDB"))

	// Without an admin password anyone may, as before.
	_, open := startProxy(t, newFakeCluster(2), nil)
	o := dialResp(t, open)
	require.Equal(t, "+OK\r\n", o.do("SET", "k", "v"))
	assert.Equal(t, "+OK\r\n", o.do("FLUSHDB"))
	assert.Equal(t, "$-1\r\n", o.do("GET", "k"))
}

// timedDo sends one command and returns its reply and how long it took.
func timedDo(c *respConn, args ...string) (string, time.Duration) {
	c.t.Helper()
	start := time.Now()
	reply := c.do(args...)
	return reply, time.Since(start)
}

// Failed AUTHs are counted; past the free ones each is answered later than
// the one before, and the fifth closes the connection. A good AUTH starts
// the count again.
func TestAuthFailuresAreSlowedAndEndTheConnection(t *testing.T) {
	srv, addr := startProxy(t, newFakeCluster(1), func(c *Config) { c.Password = "s3cret" })
	const wrongPass = "-" + errWrongPass + "\r\n"
	c := dialResp(t, addr)
	for i := 1; i <= freeAuthFailures; i++ {
		assert.Equal(t, wrongPass, c.do("AUTH", "guess"+strconv.Itoa(i)))
	}
	reply, took := timedDo(c, "AUTH", "guess3")
	assert.Equal(t, wrongPass, reply)
	assert.GreaterOrEqual(t, took, firstAuthFailureDelay, "the third failure is answered late")
	reply, took = timedDo(c, "HELLO", "2", "AUTH", "default", "guess4")
	assert.Equal(t, wrongPass, reply)
	assert.GreaterOrEqual(t, took, 2*firstAuthFailureDelay, "later than the one before")
	reply, took = timedDo(c, "AUTH", "default", "guess5")
	assert.Equal(t, wrongPass, reply)
	assert.GreaterOrEqual(t, took, 4*firstAuthFailureDelay)
	assert.True(t, c.closedByPeer(), "the fifth failure closes the connection")
	assert.Equal(t, int64(maxAuthFailures), srv.stats.authFailures.Load())

	// A good AUTH in between: four more failures leave it open.
	ok := dialResp(t, addr)
	assert.Equal(t, wrongPass, ok.do("AUTH", "nope"))
	assert.Equal(t, wrongPass, ok.do("AUTH", "nope"))
	require.Equal(t, "+OK\r\n", ok.do("AUTH", "s3cret"))
	for range maxAuthFailures - 1 {
		assert.Equal(t, wrongPass, ok.do("AUTH", "nope"))
	}
	assert.Equal(t, "+PONG\r\n", ok.do("PING"), "a failed AUTH does not sign the client out, as in Redis")
	assert.Equal(t, strconv.Itoa(2*maxAuthFailures+1), infoField(t, ok, "auth_failures"))
}

// A client whose failures are answered late waits on a goroutine of its
// own: the event loop it shares with others serves them meanwhile.
func TestDelayedAuthFailureDoesNotHoldTheEventLoop(t *testing.T) {
	if !eventLoopsSupported {
		t.Skip("no event loops on this platform")
	}
	srv, addr := startProxy(t, newFakeCluster(1), func(c *Config) {
		c.Password = "s3cret"
		c.EventLoops = 1 // every client on the same loop
	})
	bystander := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", bystander.do("AUTH", "s3cret"))

	attacker := dialResp(t, addr)
	start := time.Now()
	attacker.send(strings.Repeat(encodeCommand("AUTH", "guess"), maxAuthFailures))
	// From the third failure on the replies come 100, 200 and 400 ms late.
	require.Eventually(t, func() bool { return srv.stats.authFailures.Load() >= freeAuthFailures+1 }, 5*time.Second, time.Millisecond)
	pingStart := time.Now()
	assert.Equal(t, "+PONG\r\n", bystander.do("PING"))
	ping := time.Since(pingStart)
	assert.True(t, attackerOffLoop(srv), "the delayed client is served by a goroutine")
	for range maxAuthFailures {
		assert.Equal(t, "-"+errWrongPass+"\r\n", attacker.read())
	}
	attack := time.Since(start)
	assert.True(t, attacker.closedByPeer())
	t.Logf("bystander's PING took %v while the attacker's pipeline took %v", ping, attack)
	assert.Less(t, ping, attack/2, "the bystander waited for the attacker's delay")
}

// attackerOffLoop reports whether some client is being served on a
// goroutine rather than by its event loop.
func attackerOffLoop(srv *Server) bool {
	for _, inLoop := range clientModes(srv) {
		if !inLoop {
			return true
		}
	}
	return false
}

// clientModes yields each client of srv and whether its event loop reads
// it (else a goroutine does).
func clientModes(srv *Server) iter.Seq2[*client, bool] {
	return func(yield func(*client, bool) bool) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for sess := range srv.sessions {
			c, ok := sess.conn.(*client)
			if !ok {
				continue
			}
			c.mu.Lock()
			inLoop := c.inLoop
			c.mu.Unlock()
			if !yield(c, inLoop) {
				return
			}
		}
	}
}

// A storm of bad clients costs a log line a second, not one per client:
// failed AUTHs and refused requests alike.
func TestAuthFailureAndBadRequestLogsAreRateLimited(t *testing.T) {
	var logs logRecorder
	srv, addr := startProxy(t, newFakeCluster(1), func(c *Config) {
		c.Password = "s3cret"
		c.Logger = logs.logger()
	})
	const clients = 40
	start := time.Now()
	for range clients {
		c := dialResp(t, addr)
		assert.Equal(t, "-"+errWrongPass+"\r\n", c.do("AUTH", "guess"))
		bad := dialResp(t, addr)
		bad.send("*1\r\n$x\r\n")
		assert.Equal(t, "-ERR Protocol error: invalid bulk length\r\n", bad.read())
		assert.True(t, bad.closedByPeer())
	}
	elapsed := time.Since(start)
	assert.Equal(t, int64(clients), srv.stats.authFailures.Load())
	assert.Equal(t, int64(clients), srv.stats.rejectedRequests.Load())
	most := 1 + int(elapsed/rateLimitedLogInterval)
	for _, msg := range []string{"client authentication failed", "closing client connection: bad request"} {
		lines := logs.lines(msg)
		assert.NotEmpty(t, lines, msg)
		assert.LessOrEqual(t, len(lines), most, "%s: %d lines in %v", msg, len(lines), elapsed)
	}
	first := logs.lines("client authentication failed")[0]
	assert.Contains(t, first, "level=WARN")
	assert.Contains(t, first, "user=default")
	assert.NotContains(t, first, "guess", "the password tried is not logged")
}
