package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
	"kvproxy/bench/kvsim"
	"kvproxy/bench/kvsim/keyspace"
	"kvproxy/router"
)

var _ Backend = (*router.Router)(nil)

// clusterProxy is a real Redis Cluster behind a router behind a Server.
type clusterProxy struct {
	cluster *cluster.Cluster
	router  *router.Router
	addr    string
}

// startClusterProxy starts a 3 x 1 Redis Cluster and a proxy in front of it;
// edits, if any, change the router's Config first.
func startClusterProxy(t *testing.T, edits ...func(*router.Config)) *clusterProxy {
	t.Helper()
	return startClusterProxyWith(t, threeMasters, nil, edits...)
}

// startClusterProxyWith starts a Redis Cluster of opts and a proxy in front
// of it; editProxy, when not nil, changes the proxy's Config, edits the
// router's.
func startClusterProxyWith(t *testing.T, opts cluster.Options, editProxy func(*Config), edits ...func(*router.Config)) *clusterProxy {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	c := startCluster(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := router.DefaultConfig()
	cfg.Seeds = c.Addrs()
	for _, edit := range edits {
		edit(&cfg)
	}
	r, err := router.New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	_, addr := startProxy(t, r, editProxy)
	return &clusterProxy{cluster: c, router: r, addr: addr}
}

// A command template: "$1", "$2", ... stand for keys; "$tag" for the key
// group's hash tag. The same template runs through the proxy with one set of
// keys and directly on the owning master with a twin set.
type fidelityStep struct {
	args []string
}

func step(args ...string) fidelityStep { return fidelityStep{args: args} }

// fidelityGroups are command sequences per data type. Replies must not
// depend on time or on a server's hash seed: set members are integers
// (sorted intsets), stream ids are explicit, expiry is absolute.
var fidelityGroups = [][]fidelityStep{
	{ // strings
		step("SET", "$1", "hello"), step("GET", "$1"), step("APPEND", "$1", " world"), step("STRLEN", "$1"),
		step("GETRANGE", "$1", "0", "4"), step("SETRANGE", "$1", "1", "EY"), step("SUBSTR", "$1", "0", "3"),
		step("INCR", "$2"), step("INCRBY", "$2", "10"), step("DECR", "$2"), step("DECRBY", "$2", "3"),
		step("INCRBYFLOAT", "$3", "1.5"), step("GETSET", "$1", "new"), step("GETDEL", "$1"), step("GET", "$1"),
		step("SETNX", "$4", "a"), step("SETNX", "$4", "b"), step("SETEX", "$5", "1000", "v"),
		step("PSETEX", "$6", "1000000", "v"), step("GETEX", "$5", "PERSIST"), step("MSET", "$1", "x", "$4", "y"),
		step("MGET", "$1", "$4", "$7"), step("MSETNX", "$7", "1", "$8", "2"), step("LCS", "$1", "$4"),
		step("INCR", "$1"), step("SET", "$1", "v", "NX"), step("SET", "$1", "v2", "XX", "GET"), step("GET"),
	},
	{ // lists
		step("RPUSH", "$1", "a", "b", "c"), step("LPUSH", "$1", "z"), step("LRANGE", "$1", "0", "-1"),
		step("LLEN", "$1"), step("LINDEX", "$1", "1"), step("LSET", "$1", "0", "y"),
		step("LINSERT", "$1", "BEFORE", "b", "x"), step("LREM", "$1", "1", "x"), step("LPOS", "$1", "c"),
		step("LTRIM", "$1", "0", "10"), step("LPOP", "$1"), step("RPOP", "$1"), step("RPUSHX", "$1", "d"),
		step("LPUSHX", "$1", "e"), step("LMOVE", "$1", "$2", "LEFT", "RIGHT"), step("RPOPLPUSH", "$1", "$2"),
		step("LMPOP", "2", "$3", "$2", "LEFT"), step("LRANGE", "$2", "0", "-1"), step("GET", "$1"),
		step("SORT", "$2", "ALPHA"), step("SORT_RO", "$2", "ALPHA", "DESC"),
	},
	{ // hashes
		step("HSET", "$1", "f1", "v1", "f2", "v2"), step("HGET", "$1", "f1"), step("HMGET", "$1", "f1", "nope"),
		step("HGETALL", "$1"), step("HKEYS", "$1"), step("HVALS", "$1"), step("HLEN", "$1"),
		step("HEXISTS", "$1", "f2"), step("HDEL", "$1", "f2"), step("HINCRBY", "$1", "n", "3"),
		step("HINCRBYFLOAT", "$1", "fl", "0.5"), step("HSETNX", "$1", "f1", "x"), step("HSTRLEN", "$1", "f1"),
		step("HMSET", "$1", "a", "1"), step("HSCAN", "$1", "0"), step("HRANDFIELD", "$2"),
	},
	{ // sets
		step("SADD", "$1", "1", "2", "3"), step("SMEMBERS", "$1"), step("SISMEMBER", "$1", "2"),
		step("SMISMEMBER", "$1", "1", "9"), step("SCARD", "$1"), step("SREM", "$1", "3"),
		step("SADD", "$2", "2", "5"), step("SINTER", "$1", "$2"), step("SUNION", "$1", "$2"),
		step("SDIFF", "$1", "$2"), step("SINTERSTORE", "$3", "$1", "$2"), step("SUNIONSTORE", "$3", "$1", "$2"),
		step("SDIFFSTORE", "$3", "$1", "$2"), step("SMOVE", "$1", "$2", "1"), step("SINTERCARD", "2", "$1", "$2"),
		step("SSCAN", "$2", "0"), step("SADD", "$4", "7"), step("SPOP", "$4"), step("SADD", "$5", "9"), step("SRANDMEMBER", "$5", "-2"),
	},
	{ // sorted sets
		step("ZADD", "$1", "1", "a", "2", "b", "3", "c"), step("ZRANGE", "$1", "0", "-1", "WITHSCORES"),
		step("ZREVRANGE", "$1", "0", "-1"), step("ZRANGEBYSCORE", "$1", "1", "2"),
		step("ZREVRANGEBYSCORE", "$1", "3", "2"), step("ZRANGEBYLEX", "$1", "-", "+"),
		step("ZREVRANGEBYLEX", "$1", "+", "-"), step("ZLEXCOUNT", "$1", "-", "+"), step("ZCOUNT", "$1", "1", "2"),
		step("ZCARD", "$1"), step("ZSCORE", "$1", "b"), step("ZMSCORE", "$1", "a", "zz"),
		step("ZINCRBY", "$1", "2.5", "a"), step("ZRANK", "$1", "a"), step("ZREVRANK", "$1", "a"),
		step("ZADD", "$2", "1", "a", "5", "e"), step("ZUNIONSTORE", "$3", "2", "$1", "$2"),
		step("ZINTERSTORE", "$3", "2", "$1", "$2"), step("ZDIFFSTORE", "$3", "2", "$1", "$2"),
		step("ZUNION", "2", "$1", "$2", "WITHSCORES"), step("ZINTER", "2", "$1", "$2"), step("ZDIFF", "2", "$1", "$2"),
		step("ZRANGESTORE", "$3", "$1", "0", "1"), step("ZINTERCARD", "2", "$1", "$2"), step("ZSCAN", "$1", "0"),
		step("ZREM", "$1", "c"), step("ZREMRANGEBYSCORE", "$2", "5", "5"), step("ZADD", "$2", "0", "p", "0", "q"),
		step("ZREMRANGEBYLEX", "$2", "[p", "[p"), step("ZREMRANGEBYRANK", "$2", "0", "0"),
		step("ZPOPMIN", "$1"), step("ZPOPMAX", "$1"), step("ZMPOP", "1", "$3", "MIN"),
	},
	{ // keys and expiry
		step("SET", "$1", "v"), step("EXISTS", "$1", "$2"), step("TYPE", "$1"), step("EXPIRE", "$1", "1000"),
		step("PEXPIRE", "$1", "1000000"), step("EXPIREAT", "$1", "4000000000"), step("EXPIRETIME", "$1"),
		step("PEXPIREAT", "$1", "4000000000000"), step("PEXPIRETIME", "$1"), step("PERSIST", "$1"), step("TTL", "$1"),
		step("PTTL", "$1"), step("RENAME", "$1", "$2"), step("RENAMENX", "$2", "$3"), step("COPY", "$2", "$4"),
		step("DUMP", "$4"), step("OBJECT", "ENCODING", "$4"), step("TOUCH", "$2", "$4"), step("UNLINK", "$4"),
		step("DEL", "$2", "$3"), step("TYPE", "$2"), step("TTL", "$9"),
	},
	{ // streams
		step("XADD", "$1", "1-1", "f", "v"), step("XADD", "$1", "2-1", "f", "w"), step("XLEN", "$1"),
		step("XRANGE", "$1", "-", "+"), step("XREVRANGE", "$1", "+", "-", "COUNT", "1"),
		step("XREAD", "COUNT", "10", "STREAMS", "$1", "0"), step("XGROUP", "CREATE", "$1", "g", "0"),
		step("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "$1", ">"), step("XACK", "$1", "g", "1-1"),
		step("XPENDING", "$1", "g"), step("XCLAIM", "$1", "g", "c2", "0", "1-1"),
		step("XAUTOCLAIM", "$1", "g", "c3", "0", "0-0"), step("XDEL", "$1", "2-1"),
		step("XTRIM", "$1", "MAXLEN", "10"), step("XINFO", "STREAM", "$1"), step("XINFO", "GROUPS", "$1"),
		step("XSETID", "$1", "5-0"), step("XADD", "$1", "4-0", "f", "v"),
	},
	{ // HyperLogLog
		step("PFADD", "$1", "a", "b", "c"), step("PFCOUNT", "$1"), step("PFADD", "$2", "c", "d"),
		step("PFMERGE", "$3", "$1", "$2"), step("PFCOUNT", "$3"), step("PFCOUNT", "$1", "$2"),
	},
	{ // geo
		step("GEOADD", "$1", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"),
		step("GEODIST", "$1", "Palermo", "Catania", "km"), step("GEOPOS", "$1", "Palermo", "Nowhere"),
		step("GEOHASH", "$1", "Palermo"), step("GEOSEARCH", "$1", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC"),
		step("GEORADIUS", "$1", "15", "37", "200", "km", "WITHDIST", "ASC"),
		step("GEORADIUS_RO", "$1", "15", "37", "200", "km", "ASC"),
		step("GEORADIUSBYMEMBER", "$1", "Palermo", "300", "km", "ASC"),
		step("GEORADIUSBYMEMBER_RO", "$1", "Palermo", "300", "km", "ASC"),
		step("GEOSEARCHSTORE", "$2", "$1", "FROMMEMBER", "Palermo", "BYBOX", "400", "400", "km"),
	},
	{ // bitmaps
		step("SETBIT", "$1", "7", "1"), step("GETBIT", "$1", "7"), step("BITCOUNT", "$1"), step("BITPOS", "$1", "1"),
		step("SETBIT", "$2", "6", "1"), step("BITOP", "OR", "$3", "$1", "$2"), step("GET", "$3"),
		step("BITFIELD", "$1", "INCRBY", "u8", "0", "3", "GET", "u8", "0"), step("BITFIELD_RO", "$1", "GET", "u4", "0"),
	},
	{ // scripts, errors and what the proxy answers itself
		step("EVAL", "return redis.call('get', KEYS[1])", "1", "$1"),
		step("EVAL", "return {KEYS[1], ARGV[1]}", "1", "$1", "arg"),
		step("EVAL_RO", "return redis.call('exists', KEYS[1])", "1", "$1"),
		step("SCRIPT", "LOAD", "return 1"), step("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"),
		step("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "1", "$1"),
		step("SCRIPT", "EXISTS", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "ffffffffffffffffffffffffffffffffffffffff"),
		step("SET", "$1", "text"), step("INCR", "$1"), step("LPUSH", "$1", "x"), step("GET"), step("SET", "$1"),
		step("PING"), step("PING", "hello"), step("ECHO", "echo"), step("SELECT", "0"), step("READWRITE"),
	},
}

// keyFor names key n of group g: the tag decides the slot, and twin keys
// differ from proxy keys only in the tag's first letter, so replies that
// echo a key can be compared after swapping that letter back.
func keyFor(twin bool, g, n int) string {
	letter := "p"
	if twin {
		letter = "q"
	}
	return fmt.Sprintf("{%s%02d}key%d", letter, g, n)
}

func expand(tmpl []string, twin bool, g int) []string {
	out := make([]string, len(tmpl))
	for i, a := range tmpl {
		if n, err := strconv.Atoi(strings.TrimPrefix(a, "$")); err == nil && strings.HasPrefix(a, "$") {
			out[i] = keyFor(twin, g, n)
		} else {
			out[i] = a
		}
	}
	return out
}

// compareWithOwners sends each step of groups through the proxy at
// proxyAddr and its twin straight to the master at ownerOf(twin key), and
// compares the raw reply bytes. It returns the lower-case names of the
// commands compared.
func compareWithOwners(t *testing.T, proxyAddr string, ownerOf func(key string) string, groups [][]fidelityStep) map[string]bool {
	t.Helper()
	return compareWithOwnersIn(t, 2, proxyAddr, ownerOf, groups)
}

// compareWithOwnersIn is compareWithOwners with every connection in RESP
// version proto (HELLO).
func compareWithOwnersIn(t *testing.T, proto int, proxyAddr string, ownerOf func(key string) string, groups [][]fidelityStep) map[string]bool {
	t.Helper()
	dial := func(addr string) *respConn {
		c := dialResp(t, addr)
		if proto != 2 {
			hello := c.do("HELLO", strconv.Itoa(proto))
			require.Contains(t, hello, "proto\r\n:"+strconv.Itoa(proto), addr)
		}
		return c
	}
	proxyConn := dial(proxyAddr)
	direct := map[string]*respConn{}
	names := map[string]bool{}
	for g, group := range groups {
		twinTag := keyFor(true, g, 0)[:5]
		proxyTag := keyFor(false, g, 0)[:5]
		owner := ownerOf(keyFor(true, g, 0))
		if direct[owner] == nil {
			direct[owner] = dial(owner)
		}
		for _, st := range group {
			names[strings.ToLower(st.args[0])] = true
			viaProxy := proxyConn.do(expand(st.args, false, g)...)
			straight := direct[owner].do(expand(st.args, true, g)...)
			straight = strings.ReplaceAll(straight, twinTag, proxyTag)
			assert.Equal(t, straight, viaProxy, "%q", st.args)
		}
	}
	return names
}

// TestRepliesMatchTheOwningNode sends each command through the proxy and its
// twin straight to the Redis Cluster master that owns the twin key, and
// compares the raw replies.
func TestRepliesMatchTheOwningNode(t *testing.T) {
	cp := startClusterProxy(t)
	names := compareWithOwners(t, cp.addr, func(key string) string {
		owner := cp.cluster.MasterForKey(key)
		require.NotNil(t, owner, key)
		return owner.Addr
	}, fidelityGroups)
	assert.GreaterOrEqual(t, len(names), 100, "distinct commands compared")
}

// checkFanOut sends the commands the proxy fans out to every master or
// splits across slots, and compares each merged reply with what a
// cluster-aware client computes from the masters themselves: per-key
// commands sent to ownerOf(key), keyless ones to every master. It returns
// the lower-case names of the commands checked.
func checkFanOut(t *testing.T, proxyAddr string, masters []string, ownerOf func(key string) string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clients := map[string]*redis.Client{}
	for _, addr := range masters {
		clients[addr] = redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		t.Cleanup(func() { _ = clients[addr].Close() })
	}
	owner := func(key string) *redis.Client {
		t.Helper()
		client := clients[ownerOf(key)]
		require.NotNil(t, client, "the owner of %s is not a master", key)
		return client
	}
	c := dialResp(t, proxyAddr)
	checked := map[string]bool{}
	do := func(args ...string) string {
		t.Helper()
		checked[strings.ToLower(args[0])] = true
		return c.do(args...)
	}
	// onMasters returns every key the masters hold, their DBSIZE total and
	// the fewest keys one master holds.
	onMasters := func() (keys []string, total, fewest int64) {
		t.Helper()
		fewest = math.MaxInt64
		for _, m := range clients {
			nodeKeys, err := m.Keys(ctx, "*").Result()
			require.NoError(t, err)
			n, err := m.DBSize(ctx).Result()
			require.NoError(t, err)
			keys = append(keys, nodeKeys...)
			total += n
			fewest = min(fewest, n)
		}
		return keys, total, fewest
	}
	onNodes, _, _ := onMasters()
	require.Empty(t, onNodes, "the fan-out checks need an empty cluster")
	// existing counts, per key and duplicates included, the keys the
	// masters hold, as EXISTS, DEL and UNLINK do.
	existing := func(keys []string) int {
		t.Helper()
		n := 0
		for _, k := range keys {
			found, err := owner(k).Exists(ctx, k).Result()
			require.NoError(t, err)
			n += int(found)
		}
		return n
	}

	var keys []string
	mset := []string{"MSET"}
	for i := range 200 {
		k := "fan:" + strconv.Itoa(i)
		keys = append(keys, k)
		mset = append(mset, k, "v:"+k)
	}
	require.Equal(t, "+OK\r\n", do(mset...))
	for _, k := range keys {
		assert.Equal(t, "v:"+k, owner(k).Get(ctx, k).Val(), "MSET stored %s on its owner", k)
	}

	onNodes, total, fewest := onMasters()
	assert.ElementsMatch(t, keys, onNodes)
	assert.NotZero(t, fewest, "every master holds some keys")
	assert.Equal(t, ":"+strconv.FormatInt(total, 10)+"\r\n", do("DBSIZE"))
	assert.ElementsMatch(t, onNodes, parseBulkArray(t, do("KEYS", "fan:*")))
	var scanned []string
	cursor := "0"
	for round := 0; ; round++ {
		require.Less(t, round, 1000, "SCAN does not terminate")
		next, page := parseScanReply(t, do("SCAN", cursor, "COUNT", "7"))
		scanned = append(scanned, page...)
		if cursor = next; cursor == "0" {
			break
		}
	}
	assert.ElementsMatch(t, onNodes, scanned, "SCAN returns every key once")
	assert.Contains(t, onNodes, strings.Split(do("RANDOMKEY"), "\r\n")[1])

	// Every other key is missing, and one is asked twice.
	probe := []string{keys[0]}
	for i, k := range keys[:60] {
		probe = append(probe, k, "fan:missing:"+strconv.Itoa(i))
	}
	want := fmt.Sprintf("*%d\r\n", len(probe))
	for _, k := range probe {
		v, err := owner(k).Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			want += "$-1\r\n"
			continue
		}
		require.NoError(t, err)
		want += fmt.Sprintf("$%d\r\n%s\r\n", len(v), v)
	}
	assert.Equal(t, want, do(append([]string{"MGET"}, probe...)...))
	assert.Equal(t, fmt.Sprintf(":%d\r\n", existing(probe)), do(append([]string{"EXISTS"}, probe...)...))
	assert.Equal(t, fmt.Sprintf(":%d\r\n", existing(probe)), do(append([]string{"TOUCH"}, probe...)...))

	deleted := append(slices.Clone(keys[:100]), "fan:missing:0")
	wantDeleted := existing(deleted)
	assert.Equal(t, fmt.Sprintf(":%d\r\n", wantDeleted), do(append([]string{"DEL"}, deleted...)...))
	assert.Zero(t, existing(deleted), "DEL left keys on the masters")
	unlinked := keys[100:150]
	wantUnlinked := existing(unlinked)
	assert.Equal(t, fmt.Sprintf(":%d\r\n", wantUnlinked), do(append([]string{"UNLINK"}, unlinked...)...))
	assert.Zero(t, existing(unlinked), "UNLINK left keys on the masters")
	onNodes, total, _ = onMasters()
	assert.ElementsMatch(t, keys[150:], onNodes)
	assert.Equal(t, ":"+strconv.FormatInt(total, 10)+"\r\n", do("DBSIZE"))

	assert.Equal(t, "+OK\r\n", do("FLUSHDB"))
	onNodes, total, _ = onMasters()
	assert.Empty(t, onNodes, "FLUSHDB left keys on the masters")
	assert.Equal(t, ":0\r\n", do("DBSIZE"))
	assert.Zero(t, total)
	require.Equal(t, "+OK\r\n", do(mset...))
	assert.Equal(t, "+OK\r\n", do("FLUSHALL"))
	onNodes, _, _ = onMasters()
	assert.Empty(t, onNodes, "FLUSHALL left keys on the masters")
	assert.Equal(t, "$-1\r\n", do("RANDOMKEY"))
	return checked
}

// TestFanOutMatchesTheNodes checks the merged commands against what the
// Redis Cluster masters hold.
func TestFanOutMatchesTheNodes(t *testing.T) {
	cp := startClusterProxy(t)
	var masters []string
	for _, m := range cp.cluster.Masters() {
		masters = append(masters, m.Addr)
	}
	checkFanOut(t, cp.addr, masters, func(key string) string {
		owner := cp.cluster.MasterForKey(key)
		require.NotNil(t, owner, key)
		return owner.Addr
	})

	nodes := dialResp(t, cp.addr).do("PROXY", "NODES")
	for _, n := range cp.cluster.Nodes() {
		assert.Contains(t, nodes, n.ID+" "+n.Addr+"@")
	}
}

// TestGoRedisThroughTheProxy drives the proxy with go-redis v9 default
// options: it opens with HELLO 3 and speaks RESP3.
func TestGoRedisThroughTheProxy(t *testing.T) {
	cp := startClusterProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := goRedisClient(t, cp.addr)
	for i := range 50 {
		k := "gr:" + strconv.Itoa(i)
		require.NoError(t, client.Set(ctx, k, i, 0).Err())
		assert.Equal(t, strconv.Itoa(i), client.Get(ctx, k).Val())
		// The key really sits on its owning master.
		assert.Equal(t, strconv.Itoa(i), cp.cluster.MasterForKey(k).Client().Get(ctx, k).Val())
	}
	pipe := client.Pipeline()
	for i := range 100 {
		pipe.Incr(ctx, "gr:counter:"+strconv.Itoa(i%7))
	}
	cmds, err := pipe.Exec(ctx)
	require.NoError(t, err)
	assert.Len(t, cmds, 100)
	assert.Equal(t, "15", client.Get(ctx, "gr:counter:0").Val())
}

// TestRedisCLIThroughTheProxy runs redis-cli against the proxy.
func TestRedisCLIThroughTheProxy(t *testing.T) {
	cp := startClusterProxy(t)
	bin, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-cli is required when CI=true: %v", err)
		}
		t.Skip("redis-cli not installed")
	}
	host, port, _ := strings.Cut(cp.addr, ":")
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(bytes.TrimSpace(out))
	}
	assert.Equal(t, "PONG", run("PING"))
	assert.Equal(t, "OK", run("MSET", "cli:a", "1", "cli:b", "2", "cli:c", "3"))
	assert.Equal(t, "1\n2\n3", run("MGET", "cli:a", "cli:b", "cli:c"))
	assert.Equal(t, "3", run("DEL", "cli:a", "cli:b", "cli:c"))
	assert.Contains(t, run("INFO", "proxy"), "backend_masters:3")
	// Cluster mode: redis-cli follows CLUSTER SLOTS back to the proxy.
	assert.Equal(t, "OK", run("-c", "SET", "cli:d", "4"))
	assert.Equal(t, "4", run("-c", "GET", "cli:d"))
}

// kvsimProxy is a simulated Kvrocks cluster behind a router behind a Server.
type kvsimProxy struct {
	sim     *kvsim.Cluster
	router  *router.Router
	masters []string // addresses
	addr    string
}

// startKvsim starts a kvsim cluster of 3 shards with a replica each, for
// a test that runs without -short.
func startKvsim(t *testing.T) *kvsim.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	sim, err := kvsim.StartCluster(kvsim.DefaultClusterConfig())
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	return sim
}

// startKvsimProxy starts a kvsim cluster and a proxy in front of it;
// edits, if any, change the router's Config first.
func startKvsimProxy(t *testing.T, edits ...func(*router.Config)) *kvsimProxy {
	t.Helper()
	sim := startKvsim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var masters []string
	for _, m := range sim.Masters() {
		masters = append(masters, m.Addr())
	}
	cfg := router.DefaultConfig()
	cfg.Seeds = masters
	for _, edit := range edits {
		edit(&cfg)
	}
	r, err := router.New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	_, addr := startProxy(t, r, nil)
	return &kvsimProxy{sim: sim, router: r, masters: masters, addr: addr}
}

// ownerOf returns the address of the master that owns key.
func (kp *kvsimProxy) ownerOf(key string) string {
	return kp.sim.MasterOfSlot(int(router.Slot([]byte(key)))).Addr()
}

// kvsimControl are the commands of the fidelity script that a kvsim node
// answers outside its keyspace.
var kvsimControl = map[string]bool{"ping": true, "echo": true, "select": true, "readwrite": true}

// kvsimGroups is fidelityGroups without the steps whose command kvsim does
// not implement; both sides run the same shortened script, so each group
// keeps its index and thus its keys.
func kvsimGroups() [][]fidelityStep {
	groups := make([][]fidelityStep, len(fidelityGroups))
	for g, group := range fidelityGroups {
		for _, st := range group {
			if keyspace.Lookup([]byte(st.args[0])) != nil || kvsimControl[strings.ToLower(st.args[0])] {
				groups[g] = append(groups[g], st)
			}
		}
	}
	return groups
}

// TestRepliesMatchTheKvsimNodes runs the fan-out checks and the fidelity
// script (less what kvsim does not implement) over a simulated Kvrocks
// cluster, whose SCAN cursors use all 64 bits. Between them they must cover
// every command kvsim implements.
func TestRepliesMatchTheKvsimNodes(t *testing.T) {
	kp := startKvsimProxy(t)
	compared := map[string]bool{}
	// Fan-out first: it needs the cluster empty, and leaves it so.
	t.Run("fan-out", func(t *testing.T) {
		maps.Copy(compared, checkFanOut(t, kp.addr, kp.masters, kp.ownerOf))
	})
	t.Run("owning node", func(t *testing.T) {
		maps.Copy(compared, compareWithOwners(t, kp.addr, kp.ownerOf, kvsimGroups()))
	})
	var missed []string
	forEachCommand(func(c *CommandInfo) {
		if keyspace.Lookup([]byte(c.Name)) != nil && !compared[c.Name] {
			missed = append(missed, c.Name)
		}
	})
	assert.Empty(t, missed, "commands kvsim implements that were not compared")
	assert.GreaterOrEqual(t, len(compared), 100, "distinct commands compared")
	t.Logf("%d distinct commands compared", len(compared))

	nodes := dialResp(t, kp.addr).do("PROXY", "NODES")
	for _, m := range kp.sim.Masters() {
		assert.Contains(t, nodes, m.ID()+" "+m.Addr()+"@")
	}
}

// threeMasters is the Redis Cluster startClusterProxy starts.
var threeMasters = cluster.Options{Masters: 3, ReplicasPerMaster: 1}

// oneMaster is the Redis Cluster of the tests that want a single node.
var oneMaster = cluster.Options{Masters: 1}

// The spares launch the servers of the clusters of the shapes many tests
// want while the tests before them run (TestMain closes the ones left).
// Two 3x1 ahead, as a test often takes less than the 2 s a cluster's
// servers need before it can form.
var (
	threeMasterSpare = cluster.NewSpare(threeMasters, 2)
	oneMasterSpare   = cluster.NewSpare(oneMaster, 1)
)

// startCluster is cluster.Start, from a spare for the shapes that have one.
func startCluster(t *testing.T, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	switch {
	case reflect.DeepEqual(opts, threeMasters):
		return threeMasterSpare.Start(t)
	case reflect.DeepEqual(opts, oneMaster):
		return oneMasterSpare.Start(t)
	}
	return cluster.Start(t, opts)
}
