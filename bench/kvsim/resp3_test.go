package kvsim

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// ntHelloReply is Kvrocks' HELLO reply in protocol proto.
func ntHelloReply(proto int) string {
	fields := ntBulk("server") + ntBulk("redis") + ntBulk("version") + ntBulk("4.0.0") + ntBulk("proto")
	if proto == 3 {
		return "%6\r\n" + fields + ":3\r\n" + ntBulk("mode") + ntBulk("standalone") + ntBulk("role") +
			ntBulk("master") + ntBulk("modules") + "_\r\n"
	}
	return "*12\r\n" + fields + ":2\r\n" + ntBulk("mode") + ntBulk("standalone") + ntBulk("role") +
		ntBulk("master") + ntBulk("modules") + "*-1\r\n"
}

func TestHello(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	for _, tc := range []struct {
		args  []string
		reply string
	}{
		{[]string{"HELLO", "4"}, "-NOPROTO unsupported protocol version\r\n"},
		{[]string{"HELLO", "1"}, "-NOPROTO unsupported protocol version\r\n"},
		{[]string{"HELLO", "x"}, "-ERR Protocol version is not an integer or out of range\r\n"},
		{[]string{"HELLO", "0x3"}, "-ERR Protocol version is not an integer or out of range\r\n"},
		{[]string{"HELLO", "99999999999"}, "-ERR Protocol version is not an integer or out of range\r\n"},
		{[]string{"HELLO", "3", "AUTH"}, "-ERR Syntax error in HELLO option AUTH\r\n"},
		{[]string{"HELLO", "3", "FOO", "bar"}, "-ERR Syntax error in HELLO option FOO\r\n"},
		{[]string{"HELLO", "2"}, ntHelloReply(2)},
		{[]string{"HELLO"}, ntHelloReply(2)},
		{[]string{"HELLO", " 3", "setname", "me"}, ntHelloReply(3)},
	} {
		assert.Equal(t, tc.reply, c.do(tc.args...), tc.args)
	}
	assert.Equal(t, ntBulk("me"), c.do("CLIENT", "GETNAME"), "SETNAME took effect")
}

// TestRESP3Replies: after HELLO 3 nulls, maps and sets come out as Kvrocks
// writes them; HELLO 2 (or HELLO alone) returns to RESP2.
func TestRESP3Replies(t *testing.T) {
	_, _, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	h, s := "{"+k+"}h", "{"+k+"}s"
	assert.Equal(t, ntHelloReply(3), c.do("HELLO", "3"))
	assert.Equal(t, "_\r\n", c.do("GET", k))
	assert.Equal(t, "*2\r\n_\r\n_\r\n", c.do("MGET", k, h))
	assert.Equal(t, ":2\r\n", c.do("HSET", h, "f", "1", "g", "2"))
	assert.Equal(t, "%2\r\n"+ntBulk("f")+ntBulk("1")+ntBulk("g")+ntBulk("2"), c.do("HGETALL", h))
	assert.Equal(t, "%0\r\n", c.do("HGETALL", k))
	assert.Equal(t, "*2\r\n"+ntBulk("1")+"_\r\n", c.do("HMGET", h, "f", "x"))
	assert.Equal(t, ":2\r\n", c.do("SADD", s, "a", "b"))
	assert.Equal(t, "~2\r\n"+ntBulk("a")+ntBulk("b"), c.do("SMEMBERS", s))
	assert.Equal(t, "~2\r\n"+ntBulk("a")+ntBulk("b"), c.do("SUNION", s, "{"+k+"}none"))
	assert.Equal(t, "~0\r\n", c.do("SRANDMEMBER", "{"+k+"}none"), "Kvrocks: a set even without a count")
	assert.Equal(t, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", c.do("SMEMBERS", h))
	assert.Equal(t, "+OK\r\n", c.do("SET", k, "v"))
	assert.Equal(t, ntBulk("v"), c.do("GETEX", k, "PERSIST"))
	assert.Equal(t, "_\r\n", c.do("GETEX", "{"+k+"}missing"))

	info := c.do("CLUSTER", "INFO")
	assert.Regexp(t, `^=[0-9]+\r\ntxt:cluster_state:ok\r\n`, info)
	header, body, _ := strings.Cut(info, "\r\n")
	assert.Equal(t, "="+strconv.Itoa(len(body)-2), header, "the length counts txt:")
	assert.Regexp(t, `^=[0-9]+\r\ntxt:[0-9a-z]{40} `, c.do("CLUSTER", "NODES"))

	assert.Equal(t, "+OK\r\n", c.do("MULTI"))
	assert.Equal(t, "+QUEUED\r\n", c.do("GET", "{"+k+"}missing"))
	assert.Equal(t, "+QUEUED\r\n", c.do("HGETALL", h))
	assert.Equal(t, "*2\r\n_\r\n%2\r\n"+ntBulk("f")+ntBulk("1")+ntBulk("g")+ntBulk("2"), c.do("EXEC"),
		"EXEC's data replies are RESP3 too")

	assert.Equal(t, ntHelloReply(2), c.do("HELLO"))
	assert.Regexp(t, `^\$[0-9]+\r\ncluster_state:ok\r\n`, c.do("CLUSTER", "INFO"))
	assert.Equal(t, "$-1\r\n", c.do("GET", "{"+k+"}missing"))
	assert.Equal(t, "*4\r\n"+ntBulk("f")+ntBulk("1")+ntBulk("g")+ntBulk("2"), c.do("HGETALL", h))
}

func TestAppendRESP3LeavesWhatItCannotWalk(t *testing.T) {
	for _, in := range []string{"", "*2\r\n$1\r\na\r\n", "$9223372036854775807\r\nx\r\n", "$5\r\nab\r\n", "*1\r\n$1\r\na\r\n:1\r\n", "?x\r\n"} {
		assert.Equal(t, in, string(appendRESP3(nil, []byte(in), '~')), "%q", in)
	}
	assert.Equal(t, "*2\r\n$1\r\na\r\n", string(appendRESP3(nil, []byte("*2\r\n$1\r\na\r\n"), 0)))
	odd := "*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n"
	assert.Equal(t, odd, string(appendRESP3(nil, []byte(odd), '%')), "an odd array is no map")
}

// FuzzAppendRESP3: any bytes are either rewritten or passed through, never
// lost, and a RESP3 reply is not rewritten again.
func FuzzAppendRESP3(f *testing.F) {
	for _, seed := range []string{"$-1\r\n", "*2\r\n$1\r\na\r\n*-1\r\n", "*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$-1\r\n",
		"-ERR x\r\n", ":1\r\n", "*1\r\n$3\r\nab\r\n", "*99999999999999999999\r\n",
		"$9223372036854775807\r\nx\r\n"} {
		f.Add([]byte(seed), byte('%'))
	}
	f.Fuzz(func(t *testing.T, reply []byte, top byte) {
		once := appendRESP3(nil, reply, top)
		if len(reply) > 0 {
			assert.NotEmpty(t, once)
		}
		if !bytes.Equal(once, reply) {
			assert.Equal(t, once, appendRESP3(nil, once, 0))
		}
	})
}

// TestRESP3ScriptReplies: a script's result reaches a RESP3 connection as
// Kvrocks' ReplyToRedisReply writes it (booleans as #t/#f, nil as _, tables
// as arrays, a status table as a bulk string), and redis.call sees the
// replies in RESP3, as Kvrocks runs it on the caller's connection.
func TestRESP3ScriptReplies(t *testing.T) {
	_, _, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	assert.Equal(t, ":2\r\n", c.do("HSET", "{"+k+"}h", "f", "1", "g", "2"))
	assert.Equal(t, "$-1\r\n", c.do("EVAL", "return false", "0"), "RESP2 first")
	assert.Equal(t, ntHelloReply(3), c.do("HELLO", "3"))
	for _, tc := range []struct{ script, want string }{
		{"return true", "#t\r\n"},
		{"return false", "#f\r\n"},
		{"return nil", "_\r\n"},
		{"return {1, true, false, 'x'}", "*4\r\n:1\r\n#t\r\n#f\r\n$1\r\nx\r\n"},
		{"return redis.status_reply('FINE')", "$4\r\nFINE\r\n"},
		{"return redis.error_reply('MY failure')", "-MY failure\r\n"},
		{"return redis.call('GET', KEYS[1]) == nil", "#t\r\n"}, // `_` is nil to Lua, not false
		{"return redis.call('GET', KEYS[1])", "_\r\n"},
		{"return redis.call('SADD', KEYS[1] .. 's', 'a')", ":1\r\n"},
		{"return redis.call('SMEMBERS', KEYS[1] .. 's')", "*1\r\n$1\r\na\r\n"},
		// A map of n pairs is read as n values by Kvrocks: the first half.
		{"return redis.call('HGETALL', '{' .. KEYS[1] .. '}h')", "*2\r\n$1\r\nf\r\n$1\r\n1\r\n"},
	} {
		assert.Equal(t, tc.want, c.do("EVAL", tc.script, "1", k), tc.script)
	}
	assert.Equal(t, "+mylib\r\n", c.do("FUNCTION", "LOAD",
		"#!lua name=mylib\nredis.register_function('no', function(keys, args) return false end)"))
	assert.Equal(t, "#f\r\n", c.do("FCALL", "no", "0"))
	assert.Equal(t, ntHelloReply(2), c.do("HELLO", "2"))
	assert.Equal(t, "$-1\r\n", c.do("FCALL", "no", "0"))
}

// TestRESP3ControlReplies: INFO and CLIENT LIST/INFO are verbatim strings,
// CONFIG GET a map, CLIENT GETNAME's and an aborted EXEC's nil `_`, as
// Kvrocks writes them to a RESP3 connection.
func TestRESP3ControlReplies(t *testing.T) {
	n, _, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	other := ntDial(t, n.Addr())
	assert.Equal(t, ntHelloReply(3), c.do("HELLO", "3"))
	assert.Regexp(t, `^=[0-9]+\r\ntxt:# Server\r\n`, c.do("INFO"))
	assert.Regexp(t, `^=[0-9]+\r\ntxt:id=[0-9]+ addr=`, c.do("CLIENT", "INFO"))
	list := c.do("CLIENT", "LIST")
	assert.Regexp(t, `^=[0-9]+\r\ntxt:id=[0-9]+ addr=`, list)
	header, body, _ := strings.Cut(list, "\r\n")
	assert.Equal(t, "="+strconv.Itoa(len(body)-2), header)
	assert.Equal(t, "_\r\n", c.do("CLIENT", "GETNAME"))
	assert.Equal(t, "%1\r\n"+ntBulk("appendonly")+ntBulk("no"), c.do("CONFIG", "GET", "appendonly"))
	assert.Equal(t, "%0\r\n", c.do("CONFIG", "GET", "nosuch"))

	assert.Equal(t, "+OK\r\n", c.do("WATCH", k))
	assert.Equal(t, "+OK\r\n", other.do("SET", k, "changed"))
	assert.Equal(t, "+OK\r\n", c.do("MULTI"))
	assert.Equal(t, "+QUEUED\r\n", c.do("GET", k))
	assert.Equal(t, "_\r\n", c.do("EXEC"), "an aborted EXEC is Kvrocks' NilString")

	assert.Equal(t, ntHelloReply(2), c.do("HELLO", "2"))
	assert.Regexp(t, `^\$[0-9]+\r\n# Server\r\n`, c.do("INFO"))
	assert.Equal(t, "*2\r\n"+ntBulk("appendonly")+ntBulk("no"), c.do("CONFIG", "GET", "appendonly"))
	assert.Equal(t, "$-1\r\n", c.do("CLIENT", "GETNAME"))
}

// TestRESP3PubSub: a RESP3 subscriber's (un)subscribe confirmations are
// pushes (Kvrocks' HeaderOfPush), a nil name `_`; the messages stay arrays,
// as Kvrocks' PublishMessage writes them for every protocol.
func TestRESP3PubSub(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	sub := ntDial(t, n.Addr())
	pub := ntDial(t, n.Addr())
	assert.Equal(t, ntHelloReply(3), sub.do("HELLO", "3"))
	assert.Equal(t, ">3\r\n"+ntBulk("unsubscribe")+"_\r\n:0\r\n", sub.do("UNSUBSCRIBE"), "never subscribed")
	assert.Equal(t, ">3\r\n"+ntBulk("subscribe")+ntBulk("news")+":1\r\n", sub.do("SUBSCRIBE", "news"))
	assert.Equal(t, ">3\r\n"+ntBulk("psubscribe")+ntBulk("n*")+":2\r\n", sub.do("PSUBSCRIBE", "n*"))
	assert.Equal(t, ":2\r\n", pub.do("PUBLISH", "news", "hi"))
	assert.Equal(t, []string{
		"*3\r\n" + ntBulk("message") + ntBulk("news") + ntBulk("hi"),
		"*4\r\n" + ntBulk("pmessage") + ntBulk("n*") + ntBulk("news") + ntBulk("hi"),
	}, psReadAll(sub, 2))
	assert.Equal(t, ">3\r\n"+ntBulk("unsubscribe")+ntBulk("news")+":1\r\n", sub.do("UNSUBSCRIBE"))
	assert.Equal(t, ">3\r\n"+ntBulk("punsubscribe")+ntBulk("n*")+":0\r\n", sub.do("PUNSUBSCRIBE", "n*"))
}
