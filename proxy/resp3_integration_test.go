package proxy

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// resp3Groups add to fidelityGroups the replies whose RESP3 form depends on
// the command's arguments or nests nulls, and the blocking commands.
// Randomness is avoided with one-element sets.
var resp3Groups = [][]fidelityStep{
	{ // sorted sets
		step("ZADD", "$1", "1.5", "a", "2", "b", "3", "c"), step("ZADD", "$1", "INCR", "1", "a"),
		step("ZADD", "$1", "XX", "INCR", "1", "nope"),
		step("ZRANGE", "$1", "0", "-1"), step("ZRANGEBYSCORE", "$1", "-inf", "+inf", "WITHSCORES"),
		step("ZREVRANGE", "$1", "0", "1", "WITHSCORES"), step("ZREVRANGEBYSCORE", "$1", "+inf", "-inf", "WITHSCORES"),
		step("ZADD", "$2", "7", "a"), step("ZINTER", "2", "$1", "$2", "WITHSCORES"),
		step("ZDIFF", "2", "$1", "$2", "WITHSCORES"), step("ZRANDMEMBER", "$2", "1", "WITHSCORES"),
		step("ZRANDMEMBER", "$2"), step("ZSCORE", "$1", "nope"), step("ZINCRBY", "$1", "-1e3", "b"),
		step("ZPOPMIN", "$1", "2"), step("ZPOPMAX", "$1", "1"), step("ZPOPMIN", "$9"), step("ZPOPMIN", "$9", "2"),
		step("BZPOPMIN", "$2", "1"), step("ZADD", "$2", "inf", "x"), step("BZPOPMAX", "$2", "1"),
		step("ZMSCORE", "$9", "a"),
	},
	{ // hashes, sets, nulls
		step("HSET", "$1", "f", "v"), step("HRANDFIELD", "$1", "1", "WITHVALUES"), step("HRANDFIELD", "$1", "-1"),
		step("HGETALL", "$9"), step("SMEMBERS", "$9"), step("SADD", "$2", "1"), step("SUNION", "$2", "$9"),
		step("LPOP", "$9"), step("LPOP", "$9", "2"), step("GEOPOS", "$9", "a"), step("HMGET", "$9", "a"),
		step("RPUSH", "$3", "x"), step("BLPOP", "$3", "1"), step("BRPOPLPUSH", "$3", "$4", "1"),
		step("EVAL", "return nil", "1", "$1"), step("EVAL", "return {1, nil, 'x'}", "1", "$1"),
		step("INCRBYFLOAT", "$5", "2.5"), step("HINCRBYFLOAT", "$1", "n", "1.25"),
	},
	{ // streams
		step("XADD", "$1", "1-1", "f", "v"), step("XGROUP", "CREATE", "$1", "g", "0"),
		step("XREADGROUP", "GROUP", "g", "c", "STREAMS", "$1", ">"),
		step("XREAD", "STREAMS", "$1", "$9", "0", "0"), step("XREAD", "STREAMS", "$9", "0"),
		// FULL on a stream whose group has no consumer: their times would differ.
		step("XADD", "$5", "1-1", "f", "v"), step("XGROUP", "CREATE", "$5", "g", "0"),
		step("XINFO", "STREAM", "$5", "FULL"), step("XINFO", "STREAM", "$5", "FULL", "COUNT", "1"),
	},
	{ // geo: coordinates are doubles in RESP3, distances stay strings
		step("GEOADD", "$1", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"),
		step("GEOSEARCH", "$1", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC", "WITHCOORD", "WITHDIST", "WITHHASH"),
		step("GEOSEARCH", "$1", "FROMMEMBER", "Palermo", "BYBOX", "400", "400", "km", "ASC", "WITHCOORD"),
		step("GEORADIUS", "$1", "15", "37", "200", "km", "ASC", "WITHDIST"),
		step("GEORADIUS_RO", "$1", "15", "37", "200", "km", "ASC", "WITHCOORD"),
		step("GEORADIUSBYMEMBER", "$1", "Palermo", "200", "km", "ASC", "WITHCOORD", "COUNT", "1"),
		step("GEORADIUSBYMEMBER_RO", "$1", "Palermo", "200", "km", "ASC", "WITHCOORD", "WITHDIST"),
		step("GEOSEARCH", "$9", "FROMLONLAT", "15", "37", "BYRADIUS", "1", "km", "WITHCOORD"),
	},
	{ // a script's false is null in RESP3 (Redis 7.0, without redis.setresp(3))
		step("EVAL", "return false", "1", "$1"), step("EVAL", "return {1, false, 'x'}", "1", "$1"),
	},
	{ // EXEC's elements in their commands' shapes; a run-time error stays one
		step("HSET", "$1", "f", "v"), step("ZADD", "$2", "1.5", "m"), step("SADD", "$3", "1", "2"),
		step("MULTI"), step("HGETALL", "$1"), step("ZSCORE", "$2", "m"), step("SMEMBERS", "$3"),
		step("GET", "$9"), step("INCR", "$1"), step("HGETALL", "$9"),
		step("ZRANGE", "$2", "0", "-1", "WITHSCORES"), step("ZADD", "$2", "INCR", "1", "m"), step("EXEC"),
		step("MULTI"), step("NOSUCHCOMMAND"), step("HGETALL", "$1"), step("EXEC"),
		step("MULTI"), step("EXEC"),
		// A watched key the session changes itself aborts EXEC: null.
		step("WATCH", "$1"), step("HSET", "$1", "f", "w"), step("MULTI"), step("HGETALL", "$1"), step("EXEC"),
	},
}

// TestRESP3MatchesRedis runs the fidelity script and resp3Groups in RESP3
// (HELLO 3) through the proxy, whose backend connections speak RESP2, and
// straight to the owning Redis Cluster masters, and compares the raw
// replies: the proxy's conversion must give what Redis gives a RESP3 client.
func TestRESP3MatchesRedis(t *testing.T) {
	cp := startClusterProxy(t)
	groups := append(append([][]fidelityStep{}, fidelityGroups...), resp3Groups...)
	names := compareWithOwnersIn(t, 3, cp.addr, func(key string) string {
		owner := cp.cluster.MasterForKey(key)
		require.NotNil(t, owner, key)
		return owner.Addr
	}, groups)
	assert.GreaterOrEqual(t, len(names), 100, "distinct commands compared")
}

// TestRESP3ClusterShardsAsRedis: CLUSTER SHARDS is the proxy's own answer,
// so its RESP3 form is compared with Redis' by shape, not bytes: an array of
// maps whose nodes are maps.
func TestRESP3ClusterShardsAsRedis(t *testing.T) {
	cp := startClusterProxy(t)
	nodesOpen := regexp.MustCompile(`\$5\r\nnodes\r\n\*(\d+)\r\n(.)`)
	check := func(addr string) {
		t.Helper()
		c := dialResp(t, addr)
		require.Contains(t, c.do("HELLO", "3"), "proto\r\n:3")
		reply := c.do("CLUSTER", "SHARDS")
		assert.Regexp(t, `^\*[1-9]\d*\r\n%2\r\n`, reply, addr)
		opens := nodesOpen.FindAllStringSubmatch(reply, -1)
		assert.NotEmpty(t, opens, addr)
		for _, open := range opens {
			assert.Equal(t, "%", open[2], "%s: nodes are maps", addr)
		}
	}
	check(cp.cluster.Masters()[0].Addr)
	check(cp.addr)
}

// TestRESP3CommandAsRedis: COMMAND is the proxy's own table, so its RESP3
// form is compared with Redis' by shape: flags, ACL categories, tips and
// key specs are sets, an unknown command null, subcommands entries, docs
// maps.
func TestRESP3CommandAsRedis(t *testing.T) {
	cp := startClusterProxy(t)
	info := regexp.MustCompile(`(?s)^\*3\r\n` +
		`\*10\r\n\$3\r\nget\r\n:2\r\n~\d+\r\n(\+\w+\r\n)*:1\r\n:1\r\n:1\r\n~\d+\r\n(\+@\w+\r\n)*~0\r\n~.*` +
		`\*10\r\n\$6\r\nconfig\r\n:-2\r\n~\d+\r\n.*~0\r\n~0\r\n\*[1-9]\d*\r\n\*10\r\n\$\d+\r\nconfig\|\w+\r\n:-?\d+\r\n~.*` +
		`_\r\n$`)
	docs := regexp.MustCompile(`^%1\r\n\$3\r\nget\r\n%\d+\r\n\$7\r\nsummary\r\n`)
	for _, addr := range []string{cp.cluster.Masters()[0].Addr, cp.addr} {
		c := dialResp(t, addr)
		require.Contains(t, c.do("HELLO", "3"), "proto\r\n:3")
		assert.Regexp(t, info, c.do("COMMAND", "INFO", "get", "config", "nosuch"), addr)
		assert.Regexp(t, docs, c.do("COMMAND", "DOCS", "get"), addr)
		assert.Regexp(t, `^\*[1-9]\d*\r\n\*10\r\n\$\d+\r\n\w+\r\n:-?\d+\r\n~`, c.do("COMMAND"), addr)
	}
}

// TestRESP3SubscriberRefusesTransactions: a RESP3 subscriber runs ordinary
// commands, but transactions and blocking commands are refused with an
// error that says why and what to do (README's compatibility notes).
func TestRESP3SubscriberRefusesTransactions(t *testing.T) {
	cp := startClusterProxy(t)
	c := dialResp(t, cp.addr)
	require.Contains(t, c.do("HELLO", "3"), "proto\r\n:3")
	assert.Equal(t, ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", c.do("SUBSCRIBE", "ch"))
	assert.Equal(t, "+OK\r\n", c.do("SET", "k", "v"))
	for _, cmd := range [][]string{{"MULTI"}, {"EXEC"}, {"WATCH", "k"}, {"BLPOP", "list", "1"}} {
		assert.Equal(t, "-ERR Can't execute '"+strings.ToLower(cmd[0])+"' in subscriber mode through kvproxy: "+errNeedsOwnConnection+"\r\n",
			c.do(cmd...), "%q", cmd)
	}
	assert.Equal(t, "$1\r\nv\r\n", c.do("GET", "k"), "the refusals did not start a transaction")
}
