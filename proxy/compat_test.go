package proxy

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
)

// Compatibility with what client libraries assume of Redis (issue 12).

// scanAll walks SCAN through the proxy from cursor 0, checking that every
// cursor it hands out is below 2^53 (node-redis 4 holds cursors as
// JavaScript numbers) and so survives a round trip through a float64.
func scanAll(t *testing.T, c *respConn, args ...string) []string {
	t.Helper()
	var keys []string
	cursor := "0"
	for round := 0; ; round++ {
		require.Less(t, round, 1000, "SCAN does not terminate")
		next, page := parseScanReply(t, c.do(append([]string{"SCAN", cursor}, args...)...))
		keys = append(keys, page...)
		n, err := strconv.ParseUint(next, 10, 64)
		require.NoError(t, err, next)
		require.Less(t, n, uint64(1)<<53, "cursor %s", next)
		require.Equal(t, n, uint64(float64(n)), "cursor %s as a double", next)
		if cursor = next; cursor == "0" {
			return keys
		}
	}
}

// TestScanThroughKvsimCursorsBelow2to53: kvsim's cursors use all 64 bits,
// as Kvrocks' do; the proxy's stay below 2^53, find every key, and a cursor
// the proxy did not issue is an error, not an empty end of the scan.
func TestScanThroughKvsimCursorsBelow2to53(t *testing.T) {
	kp := startKvsimProxy(t)
	c := dialResp(t, kp.addr)
	var keys []string
	for i := range 30 {
		k := "scan:" + strconv.Itoa(i)
		keys = append(keys, k)
		require.Equal(t, "+OK\r\n", c.do("SET", k, "v"))
	}
	assert.ElementsMatch(t, keys, scanAll(t, c, "COUNT", "4"))
	assert.ElementsMatch(t, keys, scanAll(t, c, "MATCH", "scan:*", "COUNT", "1"))
	// Cursors whose low bits named no master, or the first cursor after a
	// node-redis 4 client rounded 9223372036854777056 to a double.
	for _, forged := range []string{"5", "2047", "9223372036854777000", "9007199254740993"} {
		assert.Equal(t, "-ERR invalid cursor\r\n", c.do("SCAN", forged), forged)
	}
}

// TestScanThroughRedisCluster: Redis' own cursors travel inline, below 2^53;
// every key is found once; forged cursors are refused.
func TestScanThroughRedisCluster(t *testing.T) {
	cp := startClusterProxy(t)
	c := dialResp(t, cp.addr)
	var keys []string
	for i := range 500 {
		k := "scan:" + strconv.Itoa(i)
		keys = append(keys, k)
		require.Equal(t, "+OK\r\n", c.do("SET", k, "v"))
	}
	got := scanAll(t, c, "COUNT", "10")
	assert.ElementsMatch(t, keys, got)
	assert.Len(t, got, len(keys), "every key once")
	for _, forged := range []string{"5", "2047", "9223372036854777000"} {
		assert.Equal(t, "-ERR invalid cursor\r\n", c.do("SCAN", forged), forged)
	}
}

// TestKeyedScansPassThroughRedisCluster: HSCAN, SSCAN and ZSCAN go to the
// key's master unchanged, cursors included: every page through the proxy is
// the page the master gives for the same cursor.
func TestKeyedScansPassThroughRedisCluster(t *testing.T) {
	cp := startClusterProxy(t)
	c := dialResp(t, cp.addr)
	// Members past the listpack size limit: hash tables, walked in pages.
	const members = 300
	long := strings.Repeat("x", 80)
	fill := map[string][]string{"HSET": {"HSET", "{k}h"}, "SADD": {"SADD", "{k}s"}, "ZADD": {"ZADD", "{k}z"}}
	for i := range members {
		m := "m" + strconv.Itoa(i) + long
		fill["HSET"] = append(fill["HSET"], m, "v")
		fill["SADD"] = append(fill["SADD"], m)
		fill["ZADD"] = append(fill["ZADD"], strconv.Itoa(i), m)
	}
	for _, args := range fill {
		require.Equal(t, ":"+strconv.Itoa(members)+"\r\n", c.do(args...))
	}
	owner := dialResp(t, cp.cluster.MasterForKey("{k}").Addr)
	for _, scan := range [][2]string{{"HSCAN", "{k}h"}, {"SSCAN", "{k}s"}, {"ZSCAN", "{k}z"}} {
		cursor, pages := "0", 0
		for {
			require.Less(t, pages, 1000)
			reply := c.do(scan[0], scan[1], cursor, "COUNT", "10")
			require.Equal(t, owner.do(scan[0], scan[1], cursor, "COUNT", "10"), reply, "%s %s", scan[0], cursor)
			pages++
			if cursor, _ = parseScanReply(t, reply); cursor == "0" {
				break
			}
		}
		assert.Greater(t, pages, 1, "%s walked several pages", scan[0])
	}
}

// TestRoleIsTheProxysOwn: ROLE answers as a master without replicas, the
// proxy's own view, whatever the nodes behind it are.
func TestRoleIsTheProxysOwn(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(2), nil)
	c := dialResp(t, addr)
	assert.Equal(t, "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n", c.do("ROLE"))
	assert.Equal(t, "-ERR wrong number of arguments for 'role' command\r\n", c.do("ROLE", "x"))
}

// TestClusterKeysInSlotRoutedBySlot: CLUSTER COUNTKEYSINSLOT and
// GETKEYSINSLOT reach the slot's master, on every master; bad arguments get
// the errors a Redis node gives.
func TestClusterKeysInSlotRoutedBySlot(t *testing.T) {
	cp := startClusterProxy(t)
	c := dialResp(t, cp.addr)
	owners := map[string]bool{}
	for _, tag := range []string{"a", "b", "c", "d", "e", "f"} {
		key := "{" + tag + "}"
		slot := strconv.Itoa(cluster.Slot(key))
		owners[cp.cluster.MasterForKey(key).Addr] = true
		for i := range 3 {
			require.Equal(t, "+OK\r\n", c.do("SET", key+strconv.Itoa(i), "v"))
		}
		assert.Equal(t, ":3\r\n", c.do("CLUSTER", "COUNTKEYSINSLOT", slot), key)
		assert.ElementsMatch(t, []string{key + "0", key + "1", key + "2"}, parseBulkArray(t, c.do("CLUSTER", "GETKEYSINSLOT", slot, "10")), key)
		assert.Len(t, parseBulkArray(t, c.do("CLUSTER", "GETKEYSINSLOT", slot, "2")), 2, key)
	}
	require.Len(t, owners, 3, "the slots span every master")
	node := dialResp(t, cp.cluster.Masters()[0].Addr)
	for _, args := range [][]string{
		{"COUNTKEYSINSLOT", "abc"}, {"COUNTKEYSINSLOT", "-1"}, {"COUNTKEYSINSLOT", "16384"}, {"COUNTKEYSINSLOT", "007"},
		{"COUNTKEYSINSLOT", "+5"}, {"COUNTKEYSINSLOT", "99999999999999999999"}, {"COUNTKEYSINSLOT"},
		{"GETKEYSINSLOT", "abc", "-1"}, {"GETKEYSINSLOT", "16384", "abc"}, {"GETKEYSINSLOT", "16384", "1"},
		{"GETKEYSINSLOT", "5", "-1"}, {"GETKEYSINSLOT", "-1", "5"}, {"GETKEYSINSLOT", "5"},
	} {
		want := node.do(append([]string{"CLUSTER"}, args...)...)
		require.True(t, strings.HasPrefix(want, "-ERR"), "%q: %q", args, want)
		assert.Equal(t, want, c.do(append([]string{"CLUSTER"}, args...)...), "%q", args)
	}
}

// TestInlineCommandsParsedAsRedisDoes sends inline lines with quotes,
// escapes and odd blanks to the proxy and straight to a redis-server (the
// key's master), as RPUSH arguments: both answer alike and store the same
// list. internal/resp's TestParseInlineAsRedis holds the same lines.
func TestInlineCommandsParsedAsRedisDoes(t *testing.T) {
	cp := startClusterProxy(t)
	owner := cp.cluster.MasterForKey("{k}").Addr
	for _, rest := range []string{
		`"a\x41"`, `"\x41\x4a\x4A\xff\x00z"`, `"\x4g" "\xZZ" "\x"`, `"\n\r\t\b\a\\\"\q"`,
		`'a\'b' 'c\nd' 'e"f' '\x41'`, `a"b c"`, `a'b c' d`, `"" ''`, "\"a\"\tb", "\"a\"\vb",
		"x\ta\rb  c ", "a\vb\fc", `"a" `,
		`"a"b`, `'a'b`, `a"b`, `"abc`, `'abc`, `"a\`, `'a\'`, `'\\'`,
		// Not "a\x00b": redis-server 7.0 looks for the line's end with
		// strchr, which stops at the NUL, and waits for more.
	} {
		var replies, lists []string
		for _, addr := range []string{cp.addr, owner} {
			c := dialResp(t, addr)
			c.send("RPUSH {k}list " + rest + "\r\n")
			replies = append(replies, c.read())
			c = dialResp(t, addr)
			lists = append(lists, c.do("LRANGE", "{k}list", "0", "-1"))
			c.do("DEL", "{k}list")
		}
		assert.Equal(t, replies[1], replies[0], "%q", rest)
		assert.Equal(t, lists[1], lists[0], "%q", rest)
	}
}
