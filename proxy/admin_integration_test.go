package proxy

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// masterClient is a direct client of one of the cluster's masters.
func masterClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// CONFIG through the proxy: GET answers from the first master without the
// passwords, SET and RESETSTAT reach every master, and a master refusing is
// named while the others' change is reported.
func TestConfigThroughTheProxy(t *testing.T) {
	cp := startClusterProxy(t)
	ctx := context.Background()
	masters := cp.router.Masters()
	require.Len(t, masters, 3)
	for _, addr := range masters {
		require.NoError(t, masterClient(t, addr).ConfigSet(ctx, "masterauth", "backend-secret").Err())
	}
	c := dialResp(t, cp.addr)

	assert.Equal(t, "*2\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n", c.do("CONFIG", "GET", "maxmemory-policy"))
	all := c.do("CONFIG", "GET", "*")
	assert.Contains(t, all, "maxmemory-policy")
	for _, secret := range []string{"requirepass", "masterauth", "masteruser", "backend-secret"} {
		assert.NotContains(t, all, secret)
	}
	direct, err := masterClient(t, masters[0]).ConfigGet(ctx, "*").Result()
	require.NoError(t, err)
	assert.Equal(t, "backend-secret", direct["masterauth"], "the master has it: the proxy hid it")
	assert.Equal(t, "*0\r\n", c.do("CONFIG", "GET", "masterauth"))
	assert.True(t, strings.HasPrefix(c.do("CONFIG", "HELP"), "*"))

	assert.Equal(t, "+OK\r\n", c.do("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"))
	for _, addr := range masters {
		got, err := masterClient(t, addr).ConfigGet(ctx, "maxmemory-policy").Result()
		require.NoError(t, err)
		assert.Equal(t, "allkeys-lru", got["maxmemory-policy"], addr)
	}
	refusal := masterClient(t, masters[0]).ConfigSet(ctx, "maxmemory-policy", "nope").Err()
	require.Error(t, refusal)
	assert.Equal(t, "-"+refusal.Error()+"\r\n", c.do("CONFIG", "SET", "maxmemory-policy", "nope"),
		"every master refused alike: its error as it is")

	// One master refuses: the error names it, the others applied the change.
	refusing := masters[1]
	require.NoError(t, masterClient(t, refusing).Do(ctx, "ACL", "SETUSER", "default", "-config|set").Err())
	reply := c.do("CONFIG", "SET", "maxmemory-policy", "volatile-ttl")
	assert.True(t, strings.HasPrefix(reply, "-ERR failed on 1 of 3 masters ("+refusing+": NOPERM"), reply)
	assert.True(t, strings.HasSuffix(reply, "; the other masters applied it\r\n"), reply)
	for _, addr := range masters {
		want := "volatile-ttl"
		if addr == refusing {
			want = "allkeys-lru"
		}
		got, err := masterClient(t, addr).ConfigGet(ctx, "maxmemory-policy").Result()
		require.NoError(t, err)
		assert.Equal(t, want, got["maxmemory-policy"], addr)
	}
	require.NoError(t, masterClient(t, refusing).Do(ctx, "ACL", "SETUSER", "default", "+config|set").Err())

	// RESETSTAT reaches every master: their command counts start again.
	for range 20 {
		require.Equal(t, "+PONG\r\n", c.do("PING"))
	}
	for _, addr := range masters {
		require.NoError(t, masterClient(t, addr).Ping(ctx).Err())
	}
	assert.Equal(t, "+OK\r\n", c.do("CONFIG", "RESETSTAT"))
	for _, addr := range masters {
		stats, err := masterClient(t, addr).Info(ctx, "commandstats").Result()
		require.NoError(t, err)
		assert.NotContains(t, stats, "cmdstat_ping", addr)
	}
}

// redis-benchmark reads CONFIG at start; through the proxy it finds it.
func TestRedisBenchmarkFetchesConfig(t *testing.T) {
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		t.Skip("redis-benchmark not installed")
	}
	cp := startClusterProxy(t)
	host, port, _ := strings.Cut(cp.addr, ":")
	out, err := exec.Command(bin, "-h", host, "-p", port, "-n", "100", "-c", "2", "-t", "set", "-q").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.NotContains(t, string(out), "Could not fetch server CONFIG")
	assert.Contains(t, string(out), "SET")
}

// infoFields parses an INFO text's key:value lines.
func infoFields(text string) map[string]string {
	fields := map[string]string{}
	for _, line := range strings.Split(text, "\r\n") {
		if key, value, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			fields[key] = value
		}
	}
	return fields
}

// dbCounts reads keys and expires from an INFO keyspace dbN value.
func dbCounts(t *testing.T, value string) (keys, expires int) {
	t.Helper()
	for _, pair := range strings.Split(value, ",") {
		k, v, _ := strings.Cut(pair, "=")
		n, err := strconv.Atoi(v)
		require.NoError(t, err, value)
		switch k {
		case "keys":
			keys = n
		case "expires":
			expires = n
		}
	}
	return keys, expires
}

// INFO keyspace is the masters' summed; INFO memory is the proxy's own.
func TestInfoKeyspaceAndMemory(t *testing.T) {
	cp := startClusterProxy(t)
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: cp.addr})
	t.Cleanup(func() { _ = client.Close() })
	for i := range 40 {
		ttl := time.Duration(0)
		if i%4 == 0 {
			ttl = time.Hour
		}
		require.NoError(t, client.Set(ctx, fmt.Sprintf("key:%d", i), "v", ttl).Err())
	}
	wantKeys, wantExpires, answered := 0, 0, 0
	for _, addr := range cp.router.Masters() {
		text, err := masterClient(t, addr).Info(ctx, "keyspace").Result()
		require.NoError(t, err)
		if value, ok := infoFields(text)["db0"]; ok {
			keys, expires := dbCounts(t, value)
			wantKeys += keys
			wantExpires += expires
			answered++
		}
	}
	require.Greater(t, answered, 1, "the keys are spread over masters")
	require.Equal(t, 40, wantKeys)

	text, err := client.Info(ctx, "keyspace").Result()
	require.NoError(t, err)
	fields := infoFields(text)
	keys, expires := dbCounts(t, fields["db0"])
	assert.Equal(t, wantKeys, keys)
	assert.Equal(t, wantExpires, expires)
	assert.Equal(t, 10, expires)
	assert.Contains(t, fields["db0"], "avg_ttl=")

	text, err = client.Info(ctx, "memory").Result()
	require.NoError(t, err)
	fields = infoFields(text)
	assert.True(t, strings.HasPrefix(fields["mem_allocator"], "go-"), text)
	used, err := strconv.ParseInt(fields["used_memory"], 10, 64)
	require.NoError(t, err)
	assert.Positive(t, used)
	assert.Equal(t, "noeviction", fields["maxmemory_policy"])
	assert.NotContains(t, text, "# Keyspace", "only the section asked for")

	text, err = client.Info(ctx).Result()
	require.NoError(t, err)
	for _, section := range []string{"# Server", "# Clients", "# Memory", "# Stats"} {
		assert.Contains(t, text, section)
	}
	assert.NotContains(t, text, "# Keyspace", "INFO without a section asks no master")
	text, err = client.Info(ctx, "all").Result()
	require.NoError(t, err)
	for _, section := range []string{"# Server", "# Memory", "# Keyspace", "db0:keys="} {
		assert.Contains(t, text, section)
	}
}

// clientLines splits a CLIENT LIST bulk reply into lines by client name.
func clientLines(t *testing.T, reply string) map[string]string {
	t.Helper()
	require.True(t, strings.HasPrefix(reply, "$"), reply)
	_, body, _ := strings.Cut(reply, "\r\n")
	lines := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(body, "\r\n"), "\n") {
		if line == "" {
			continue
		}
		for _, field := range strings.Fields(line) {
			if name, ok := strings.CutPrefix(field, "name="); ok {
				lines[name] = line
			}
		}
	}
	return lines
}

// lineField is one field of a CLIENT LIST line.
func lineField(line, key string) string {
	for _, field := range strings.Fields(line) {
		if value, ok := strings.CutPrefix(field, key+"="); ok {
			return value
		}
	}
	return ""
}

// CLIENT LIST shows every client with its name and state; CLIENT KILL, in
// both forms, closes the clients it selects and only them.
func TestClientListAndKillOverEveryClient(t *testing.T) {
	cp := startClusterProxy(t)
	named := map[string]*respConn{}
	for _, name := range []string{"plain", "inmulti", "subscribed", "victim", "other", "blocked"} {
		c := dialResp(t, cp.addr)
		require.Equal(t, "+OK\r\n", c.do("CLIENT", "SETNAME", name))
		named[name] = c
	}
	require.Equal(t, "+OK\r\n", named["inmulti"].do("MULTI"))
	require.Equal(t, "+QUEUED\r\n", named["inmulti"].do("SET", "k", "v"))
	require.Equal(t, "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", named["subscribed"].do("SUBSCRIBE", "ch"))
	named["blocked"].send(encodeCommand("BLPOP", "nothing-comes", "0"))
	admin := dialResp(t, cp.addr)
	require.Equal(t, "+OK\r\n", admin.do("CLIENT", "SETNAME", "admin"))

	var lines map[string]string
	require.Eventually(t, func() bool {
		lines = clientLines(t, admin.do("CLIENT", "LIST"))
		return lineField(lines["blocked"], "cmd") == "blpop"
	}, 10*time.Second, 10*time.Millisecond, "the blocked client's BLPOP is published")
	require.Len(t, lines, 7, "every client")
	assert.Equal(t, "N", lineField(lines["plain"], "flags"))
	assert.Equal(t, "client|setname", lineField(lines["plain"], "cmd"))
	assert.Equal(t, "x", lineField(lines["inmulti"], "flags"))
	assert.Equal(t, "1", lineField(lines["inmulti"], "multi"))
	assert.Equal(t, "P", lineField(lines["subscribed"], "flags"))
	assert.Equal(t, "1", lineField(lines["subscribed"], "sub"))
	assert.Equal(t, "client|list", lineField(lines["admin"], "cmd"))
	assert.Equal(t, admin.conn.LocalAddr().String(), lineField(lines["admin"], "addr"))

	pubsub := clientLines(t, admin.do("CLIENT", "LIST", "TYPE", "pubsub"))
	assert.Equal(t, []string{"subscribed"}, slices.Collect(maps.Keys(pubsub)))
	victimID := lineField(lines["victim"], "id")
	otherID := lineField(lines["other"], "id")
	byID := clientLines(t, admin.do("CLIENT", "LIST", "ID", victimID, otherID))
	assert.ElementsMatch(t, []string{"victim", "other"}, slices.Collect(maps.Keys(byID)))
	assert.Equal(t, "-ERR Unknown client type 'nope'\r\n", admin.do("CLIENT", "LIST", "TYPE", "nope"))
	info := admin.do("CLIENT", "INFO")
	assert.Equal(t, "admin", lineField(info, "name"))

	// The old form: one address, +OK.
	assert.Equal(t, "+OK\r\n", admin.do("CLIENT", "KILL", lineField(lines["victim"], "addr")))
	assert.True(t, named["victim"].closedByPeer())
	assert.Equal(t, "-ERR No such client\r\n", admin.do("CLIENT", "KILL", lineField(lines["victim"], "addr")))
	// The filter form: the count.
	assert.Equal(t, ":1\r\n", admin.do("CLIENT", "KILL", "ID", otherID))
	assert.True(t, named["other"].closedByPeer())
	assert.Equal(t, ":1\r\n", admin.do("CLIENT", "KILL", "TYPE", "pubsub"))
	assert.True(t, named["subscribed"].closedByPeer())
	assert.Equal(t, ":0\r\n", admin.do("CLIENT", "KILL", "USER", "nobody"))
	// A client waiting in BLPOP is ended too: its wait for the backend is
	// cut short.
	assert.Equal(t, ":1\r\n", admin.do("CLIENT", "KILL", "ID", lineField(lines["blocked"], "id")))
	assert.True(t, named["blocked"].closedByPeer())
	assert.Equal(t, "-ERR syntax error\r\n", admin.do("CLIENT", "KILL", "ID", "1", "MAXAGE"))
	assert.Equal(t, "-ERR No such client\r\n", admin.do("CLIENT", "KILL", "ID"), "one argument is an address, as in Redis")

	// The others are untouched.
	assert.Equal(t, "+PONG\r\n", named["plain"].do("PING"))
	assert.Equal(t, "+QUEUED\r\n", named["inmulti"].do("GET", "k"))
	lines = clientLines(t, admin.do("CLIENT", "LIST"))
	assert.ElementsMatch(t, []string{"plain", "inmulti", "admin"}, slices.Collect(maps.Keys(lines)))
	// The killed clients' sessions end, not only their sockets: the server
	// counts only those left (a session left behind would also hold up
	// the server's shutdown until its timeout).
	assert.Eventually(t, func() bool {
		return strings.Contains(named["plain"].do("INFO", "clients"), "connected_clients:3\r\n")
	}, 10*time.Second, 10*time.Millisecond, "connected_clients counts plain, inmulti and admin: %q", named["plain"].do("INFO", "clients"))

	// SKIPME yes spares the caller; SKIPME no ends it after the reply.
	adminID := lineField(lines["admin"], "id")
	assert.Equal(t, ":0\r\n", admin.do("CLIENT", "KILL", "ID", adminID))
	assert.Equal(t, ":1\r\n", admin.do("CLIENT", "KILL", "ID", adminID, "SKIPME", "no"))
	assert.True(t, admin.closedByPeer())
}
