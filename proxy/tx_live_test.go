package proxy

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A command queued one at a time is sent at once; when the server refuses
// it without queueing (MOVED, TRYAGAIN in a failover) the client sees
// QUEUED, never the redirect, and EXEC sends MULTI, the queue and EXEC to
// the slot's master of the moment.
func TestQueuedCommandRefusedIsReplayedAtExec(t *testing.T) {
	const ran = "*2\r\n+OK\r\n:1\r\n"
	for _, refusal := range []string{"-MOVED 12539 %s\r\n", "-TRYAGAIN Failover in progress\r\n"} {
		moved := strings.HasPrefix(refusal, "-MOVED")
		t.Run(strings.Fields(refusal)[0], func(t *testing.T) {
			var oldLog, newLog nodeLog
			newNode := txNode(t, &newLog, queuedOK, func(int) string { return ran })
			oldNode := txNode(t, &oldLog, func(attempt int, _ []string) string {
				if attempt == 1 {
					return strings.Replace(refusal, "%s", newNode.addr, 1)
				}
				return "+QUEUED\r\n"
			}, func(int) string { return ran })
			st := startFailoverStack(t, oldNode.addr)
			require.Equal(t, "+OK\r\n", st.client.do("MULTI"))
			assert.Equal(t, "+QUEUED\r\n", st.client.do("SET", "k", "v"))
			assert.Equal(t, "+QUEUED\r\n", st.client.do("INCR", "{k}n"), "not sent on the refused connection")
			if moved {
				st.backend.setMaster(newNode.addr)
			}
			assert.Equal(t, ran, st.client.do("EXEC"))
			replay := []string{"MULTI", "SET k v", "INCR {k}n", "EXEC"}
			if moved {
				assert.Equal(t, []string{"MULTI", "SET k v"}, oldLog.all())
				assert.Equal(t, replay, newLog.all())
			} else {
				assert.Equal(t, append([]string{"MULTI", "SET k v"}, replay...), oldLog.all())
				assert.Equal(t, []string{oldNode.addr}, st.handovers.triedAgain(), "the failover follower is told of the TRYAGAIN")
			}
		})
	}
}

// A connection lost while commands are queued is replaced at EXEC, which
// sends the whole transaction on a new one.
func TestQueuedConnectionLostIsReplayedAtExec(t *testing.T) {
	var log nodeLog
	var hungUp atomic.Bool
	node := startScriptedNode(t, func(args []string) (string, bool) {
		log.add(args)
		switch strings.ToUpper(args[0]) {
		case "MULTI":
			return "+OK\r\n", false
		case "EXEC":
			return "*1\r\n+OK\r\n", false
		}
		if hungUp.CompareAndSwap(false, true) {
			return "", true
		}
		return "+QUEUED\r\n", false
	})
	st := startFailoverStack(t, node.addr)
	require.Equal(t, "+OK\r\n", st.client.do("MULTI"))
	assert.Equal(t, "+QUEUED\r\n", st.client.do("SET", "k", "v"))
	assert.Equal(t, "*1\r\n+OK\r\n", st.client.do("EXEC"))
	assert.Equal(t, []string{"MULTI", "SET k v", "MULTI", "SET k v", "EXEC"}, log.all())
	assert.Equal(t, int64(2), node.accepted.Load())
}

// The server's reply to a queued command is the client's, and a queued
// error makes EXEC the server's, even when the slot moved meanwhile: a
// transaction the client saw refused is never sent again.
func TestQueuedCommandGetsTheServersReply(t *testing.T) {
	var log, newLog nodeLog
	newNode := txNode(t, &newLog, queuedOK, func(int) string { return "*3\r\n+PONG\r\n+OK\r\n$1\r\nv\r\n" })
	node := txNode(t, &log, func(_ int, args []string) string {
		if args[0] == "SET" {
			return "-OOM command not allowed when used memory > 'maxmemory'.\r\n"
		}
		return "+QUEUED\r\n"
	}, func(int) string { return "-" + errExecAbort + "\r\n" })
	st := startFailoverStack(t, node.addr)
	require.Equal(t, "+OK\r\n", st.client.do("MULTI"))
	assert.Equal(t, "+QUEUED\r\n", st.client.do("PING"), "keyless: kept until the slot is known")
	assert.Equal(t, "-OOM command not allowed when used memory > 'maxmemory'.\r\n", st.client.do("SET", "k", "v"))
	assert.Equal(t, "+QUEUED\r\n", st.client.do("GET", "k"))
	st.backend.setMaster(newNode.addr)
	assert.Equal(t, "-"+errExecAbort+"\r\n", st.client.do("EXEC"))
	assert.Equal(t, []string{"MULTI", "PING", "SET k v", "GET k", "EXEC"}, log.all())
	assert.Empty(t, newLog.all())
}

// A WATCHed transaction whose queued command the server refused cannot be
// sent again (its WATCHes are gone): EXEC answers as if a watched key
// changed.
func TestWatchedQueueRefusedAborts(t *testing.T) {
	var log nodeLog
	node := txNode(t, &log, func(int, []string) string { return "-TRYAGAIN Failover in progress\r\n" },
		func(int) string { return "*1\r\n+OK\r\n" })
	st := startFailoverStack(t, node.addr)
	require.Equal(t, "+OK\r\n", st.client.do("WATCH", "k"))
	require.Equal(t, "+OK\r\n", st.client.do("MULTI"))
	assert.Equal(t, "+QUEUED\r\n", st.client.do("SET", "k", "v"))
	assert.Equal(t, "*-1\r\n", st.client.do("EXEC"))
	assert.Equal(t, []string{"WATCH k", "MULTI", "SET k v"}, log.all())
}

// Kvrocks checks queued commands again at EXEC: when a failover's pause
// caught every one of them (each element TRYAGAIN), nothing ran, and the
// transaction is sent again.
func TestExecWithEveryElementRefusedIsResent(t *testing.T) {
	var log nodeLog
	const ran = "*2\r\n+OK\r\n:1\r\n"
	node := txNode(t, &log, queuedOK, func(attempt int) string {
		if attempt == 1 {
			return "*2\r\n-TRYAGAIN Failover in progress\r\n-TRYAGAIN Failover in progress\r\n"
		}
		return ran
	})
	st := startFailoverStack(t, node.addr)
	require.Equal(t, "+OK\r\n", st.client.do("MULTI"))
	require.Equal(t, "+QUEUED\r\n", st.client.do("SET", "k", "v"))
	require.Equal(t, "+QUEUED\r\n", st.client.do("INCR", "{k}n"))
	assert.Equal(t, ran, st.client.do("EXEC"))
	assert.Equal(t, []string{"MULTI", "SET k v", "INCR {k}n", "EXEC", "MULTI", "SET k v", "INCR {k}n", "EXEC"}, log.all())
	assert.Equal(t, []string{node.addr}, st.handovers.triedAgain())
}

// everyElementRefused reads a backend's EXEC reply: any bytes must leave it
// sound, and it only says "refused" of an array of refusals.
func FuzzEveryElementRefused(f *testing.F) {
	for _, seed := range []string{
		"*2\r\n-TRYAGAIN x\r\n-MOVED 1 a:1\r\n", "*2\r\n+OK\r\n-TRYAGAIN x\r\n", "*0\r\n", "*-1\r\n",
		"*1\r\n-ASK 1 a:1\r\n", "*3\r\n-LOADING x\r\n", "-EXECABORT x\r\n", "*1\r\n$3\r\nabc\r\n", "*99999999999999999999\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		first, ok := everyElementRefused(reply)
		if ok && (reply[0] != '*' || !refusedNotRun(first) || !bytes.Contains(reply, first)) {
			t.Fatalf("%q: refused, first element %q", reply, first)
		}
	})
}
