package proxy

import (
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
