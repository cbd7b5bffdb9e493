package keyspace

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGetEx(t *testing.T) {
	now := int64(1_000_000)
	k := newTestKeyspace(&now)
	runSteps(t, k, []step{
		{"GETEX k", "$-1\r\n"},
		{"GETEX k EX 10", "$-1\r\n"},
		{"SET k v", "+OK\r\n"},
		{"GETEX k", "$1\r\nv\r\n"},
		{"TTL k", ":-1\r\n"},
		{"GETEX k EX 10", "$1\r\nv\r\n"},
		{"PTTL k", ":10000\r\n"},
		{"GETEX k px 2500", "$1\r\nv\r\n"},
		{"PTTL k", ":2500\r\n"},
		{"GETEX k EXAT 2000", "$1\r\nv\r\n"},
		{"PEXPIRETIME k", ":2000000\r\n"},
		{"GETEX k PXAT 1500000", "$1\r\nv\r\n"},
		{"PEXPIRETIME k", ":1500000\r\n"},
		{"GETEX k PERSIST", "$1\r\nv\r\n"},
		{"TTL k", ":-1\r\n"},
		// One option kind may repeat, the last wins; two kinds are a syntax error.
		{"GETEX k EX 1 EX 20", "$1\r\nv\r\n"},
		{"TTL k", ":20\r\n"},
		{"GETEX k PERSIST PERSIST", "$1\r\nv\r\n"},
		{"GETEX k EX 1 PX 1", "-ERR syntax error\r\n"},
		{"GETEX k PERSIST EX 1", "-ERR syntax error\r\n"},
		{"GETEX k KEEPTTL", "-ERR syntax error\r\n"},
		{"GETEX k EX", "-ERR no more item to parse\r\n"},
		{"GETEX k EX 0", "-ERR out of numeric range\r\n"},
		{"GETEX k PX -5", "-ERR out of numeric range\r\n"},
		{"GETEX k EX abc", "-ERR not started as an integer\r\n"},
		{"GETEX k EX 10s", "-ERR encounter non-integer characters\r\n"},
		{"GETEX k EX 99999999999999999999", "-ERR Numerical result out of range\r\n"},
		// strtoll base 0: hex and octal are numbers to Kvrocks.
		{"GETEX k EX 0x10", "$1\r\nv\r\n"},
		{"TTL k", ":16\r\n"},
		{"GETEX k EX 010", "$1\r\nv\r\n"},
		{"TTL k", ":8\r\n"},
		{"TTL k", ":8\r\n"},
		// A deadline in the past ends the key after this reply.
		{"GETEX k PXAT 5", "$1\r\nv\r\n"},
		{"EXISTS k", ":0\r\n"},
		{"LPUSH l a", ":1\r\n"},
		{"GETEX l EX 5", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{"GETEX", "-ERR wrong number of arguments for 'getex' command\r\n"},
	})
	// Expiry set by GETEX ends the key when its time comes.
	runSteps(t, k, []step{{"SET e v", "+OK\r\n"}, {"GETEX e PX 100", "$1\r\nv\r\n"}})
	now += 101
	runSteps(t, k, []step{{"GETEX e", "$-1\r\n"}, {"EXISTS e", ":0\r\n"}})
}

func TestCopy(t *testing.T) {
	now := int64(1_000_000)
	k := newTestKeyspace(&now)
	runSteps(t, k, []step{
		{"COPY a b", "-ERR no such key\r\n"},
		{"SET a 1", "+OK\r\n"},
		{"COPY a b", ":1\r\n"},
		{"GET b", "$1\r\n1\r\n"},
		{"COPY a b", ":0\r\n"},
		{"SET a 2", "+OK\r\n"},
		{"COPY a b REPLACE", ":1\r\n"},
		{"GET b", "$1\r\n2\r\n"},
		{"COPY a a", ":0\r\n"},
		{"COPY a a REPLACE", ":1\r\n"},
		{"COPY a c DB 0", ":1\r\n"},
		{"COPY a d DB 1", "-ERR syntax error\r\n"},
		{"COPY a d DB x", "-ERR not started as an integer\r\n"},
		{"COPY a d DB", "-ERR no more item to parse\r\n"},
		{"COPY a d NX", "-ERR syntax error\r\n"},
		{"COPY a", "-ERR wrong number of arguments for 'copy' command\r\n"},
		// Every type, deep: changing the copy leaves the source alone; the TTL goes along.
		{"RPUSH l x y", ":2\r\n"},
		{"PEXPIRE l 5000", ":1\r\n"},
		{"COPY l l2", ":1\r\n"},
		{"PTTL l2", ":5000\r\n"},
		{"RPUSH l2 z", ":3\r\n"},
		{"LRANGE l 0 -1", "*2\r\n$1\r\nx\r\n$1\r\ny\r\n"},
		{"HSET h f v g w", ":2\r\n"},
		{"COPY h h2", ":1\r\n"},
		{"HSET h2 f z", ":0\r\n"},
		{"HGETALL h", "*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$1\r\nw\r\n"},
		{"SADD s m", ":1\r\n"},
		{"COPY s s2", ":1\r\n"},
		{"SADD s2 n", ":1\r\n"},
		{"SCARD s", ":1\r\n"},
		{"ZADD z 1 m", ":1\r\n"},
		{"COPY z z2", ":1\r\n"},
		{"ZADD z2 2 n", ":1\r\n"},
		{"ZRANGE z 0 -1 WITHSCORES", "*2\r\n$1\r\nm\r\n$1\r\n1\r\n"},
		{"COPY z l2 REPLACE", ":1\r\n"},
		{"TYPE l2", "+zset\r\n"},
		{"TTL l2", ":-1\r\n"},
	})
	now += 5001
	runSteps(t, k, []step{{"COPY l l3", "-ERR no such key\r\n"}})
}

func TestParseKvrocksInt(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, " 42": 42, "+7": 7, "-7": -7, "0x1f": 31, "0X1F": 31, "017": 15,
		"9223372036854775807": 9223372036854775807, "-9223372036854775808": -9223372036854775808,
	} {
		got, msg := parseKvrocksInt([]byte(in))
		assert.Empty(t, msg, in)
		assert.Equal(t, want, got, in)
	}
	for in, msg := range map[string]string{
		"": "not started as an integer", "-": "not started as an integer", "x": "not started as an integer",
		"0x": "encounter non-integer characters", "08": "encounter non-integer characters",
		"1 ": "encounter non-integer characters", "1\x002": "encounter non-integer characters",
		"9223372036854775808": "Numerical result out of range",
	} {
		_, got := parseKvrocksInt([]byte(in))
		assert.Equal(t, msg, got, in)
	}
}

// FuzzParseKvrocksInt: any bytes get a number or one of Kvrocks' error
// texts, and plain decimals read as strconv reads them.
func FuzzParseKvrocksInt(f *testing.F) {
	for _, s := range []string{"0", "-12", " +7", "0x1F", "017", "08", "9223372036854775808", "1\x00", ""} {
		f.Add(s)
	}
	plainDecimal := regexp.MustCompile(`^[+-]?[1-9][0-9]*$`)
	f.Fuzz(func(t *testing.T, s string) {
		n, msg := parseKvrocksInt([]byte(s))
		switch msg {
		case "", "not started as an integer", "encounter non-integer characters", "Numerical result out of range":
		default:
			t.Fatalf("%q: unexpected error text %q", s, msg)
		}
		if !plainDecimal.MatchString(s) {
			return
		}
		want, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			assert.Equal(t, "Numerical result out of range", msg, s)
			return
		}
		assert.Empty(t, msg, s)
		assert.Equal(t, want, n, s)
	})
}
