package hardening

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Isolation on a shared backend connection: one request's trouble is
// answered to its own client. Every test here runs with --backend-conns 1,
// so all clients of the shard share one connection.

// TestOversizedReplyFailsOnlyItsOwnRequest: a reply over --max-bulk-len is
// skipped in the stream; its client gets "-ERR reply too large", every
// other request on the same backend connection is answered normally, and
// INFO oversized_replies counts the skipped replies.
func TestOversizedReplyFailsOnlyItsOwnRequest(t *testing.T) {
	e := sharedEnv(t)
	const maxBulkLen, bigGets = 1 << 20, 5
	proxy := e.launchProxy(t, "--max-bulk-len", strconv.Itoa(maxBulkLen), "--backend-conns", "1")
	master := e.cluster.Masters()[0]
	big := e.shardKey(master, 0, "oversized:big")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := master.Client().Set(ctx, big, strings.Repeat("x", 2*maxBulkLen), 0).Err(); err != nil {
		t.Fatalf("SET of the 2 MB value on %s: %v", master, err)
	}

	others := startWorkers(t, proxy.Addr(), 20, setGetSteps(func(w int) string {
		return e.shardKey(master, 1+w, "oversized:small:"+strconv.Itoa(w))
	}))
	time.Sleep(300 * time.Millisecond)
	client := mustDial(t, proxy.Addr())
	for i := range bigGets {
		rep, err := client.do("GET", big)
		switch {
		case err != nil:
			t.Errorf("GET %d of the 2 MB value: no reply: %v", i+1, err)
		case !rep.isError() || !strings.HasPrefix(rep.text, "ERR reply too large"):
			t.Errorf("GET %d of the 2 MB value got %v, want -ERR reply too large...", i+1, rep)
		}
		time.Sleep(200 * time.Millisecond)
	}
	others.stop(t, "20 clients running SET/GET on the shard")

	switch n, ok := statValue(t, proxyInfo(t, proxy.Addr()), "oversized_replies"); {
	case !ok:
		t.Errorf("INFO stats has no oversized_replies field")
	case n != bigGets:
		t.Errorf("INFO oversized_replies:%d, want %d", n, bigGets)
	}
}

// busyScript keeps its node busy for ARGV[1] milliseconds: Redis runs one
// script at a time and answers nothing else meanwhile.
const busyScript = `local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000000 + tonumber(t[2])
repeat
  t = redis.call('TIME')
until tonumber(t[1]) * 1000000 + tonumber(t[2]) - start >= tonumber(ARGV[1]) * 1000
return 1`

// TestSlowCommandDelaysButDoesNotFailOthers: a slow command on a shared
// backend connection (a 1.5 s script, a SETRANGE allocating 400 MB) delays
// the requests queued behind it, as direct Redis would, but fails none of
// them. 1.5 s is under --hold-timeout, and under Redis' own
// busy-reply-threshold (5 s), so Redis never answers -BUSY here.
func TestSlowCommandDelaysButDoesNotFailOthers(t *testing.T) {
	e := sharedEnv(t)
	proxy := e.launchProxy(t, "--backend-conns", "1")
	master := e.cluster.Masters()[0]
	slowKey := e.shardKey(master, 0, "slow:key")
	for _, slow := range []struct {
		name string
		args []string
		want string
	}{
		{"EVAL busy for 1.5s", []string{"EVAL", busyScript, "1", slowKey, "1500"}, "1"},
		{"SETRANGE at 400 MB", []string{"SETRANGE", slowKey, "400000000", "x"}, "400000001"},
	} {
		t.Run(slow.name, func(t *testing.T) {
			writers := startWorkers(t, proxy.Addr(), 10, func(w, i int) []step {
				k := e.shardKey(master, 1+w, "slow:writer:"+strconv.Itoa(w))
				return []step{{[]string{"SET", k, strconv.Itoa(i)}, "OK"}}
			})
			time.Sleep(300 * time.Millisecond)
			client := mustDial(t, proxy.Addr())
			start := time.Now()
			rep, err := client.do(slow.args...)
			took := time.Since(start)
			time.Sleep(300 * time.Millisecond)
			writers.stop(t, "10 clients running SET on the shard")
			t.Logf("%s answered %v in %v", slow.args[0], rep, took.Round(time.Millisecond))
			if err != nil || rep.isError() || rep.text != slow.want {
				t.Errorf("%s got %v (%v), want :%s", slow.args[0], rep, err, slow.want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := master.Client().Del(ctx, slowKey).Err(); err != nil {
				t.Errorf("DEL %s on %s: %v", slowKey, master, err)
			}
		})
	}
}
