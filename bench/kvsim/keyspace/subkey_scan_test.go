package keyspace

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

func bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// scanReplyCursor returns the cursor of a HSCAN/SSCAN/ZSCAN reply.
func scanReplyCursor(t *testing.T, reply string) string {
	t.Helper()
	require.True(t, strings.HasPrefix(reply, "*2\r\n$"), reply)
	lines := strings.SplitN(reply, "\r\n", 4)
	return lines[2]
}

// expectedCursor lays out Kvrocks' NumberCursor by hand: counter, 16 bits of
// seconds, 29 bits of the member's hash, the type in the top 3 bits.
func expectedCursor(counter uint16, seconds int64, member string, typ uint64) string {
	h := fnv.New32a()
	h.Write([]byte(member))
	c := uint64(counter) | uint64(uint16(seconds))<<16 | uint64(h.Sum32()&0x1FFFFFFF)<<32 | typ<<61
	return strconv.FormatUint(c, 10)
}

// TestSubkeyScanBytes: the replies byte for byte. Members come in bytewise
// order whatever the insertion order; a page holding exactly COUNT members
// carries a cursor, so a scan whose last page is full ends with an empty one.
func TestSubkeyScanBytes(t *testing.T) {
	k := New()
	k.clock = func() int64 { return 70_000_500 } // 70,000 s: 16 bits of it are 4464
	run := func(line string) string { return string(execLocal(k, splitArgs(line))) }
	require.Equal(t, ":3\r\n", run("HSET h c 3 a 1 b 2"))
	require.Equal(t, ":3\r\n", run("SADD s c a b"))
	require.Equal(t, ":3\r\n", run("ZADD z 3 c 1.5 a -2 b"))

	hashCursor := expectedCursor(0, 70_000, "b", cursorTypeHash)
	assert.Equal(t, "*2\r\n"+bulk(hashCursor)+"*4\r\n"+bulk("a")+bulk("1")+bulk("b")+bulk("2"), run("HSCAN h 0 COUNT 2"))
	assert.Equal(t, "*2\r\n"+bulk("0")+"*2\r\n"+bulk("c")+bulk("3"), run("HSCAN h "+hashCursor+" COUNT 2"))
	assert.Equal(t, "*2\r\n"+bulk("0")+"*6\r\n"+bulk("a")+bulk("1")+bulk("b")+bulk("2")+bulk("c")+bulk("3"),
		run("HSCAN h 0"), "the default COUNT is 20")

	setCursor := expectedCursor(1, 70_000, "c", cursorTypeSet)
	assert.Equal(t, "*2\r\n"+bulk(setCursor)+"*3\r\n"+bulk("a")+bulk("b")+bulk("c"), run("SSCAN s 0 COUNT 3"))
	assert.Equal(t, "*2\r\n"+bulk("0")+"*0\r\n", run("SSCAN s "+setCursor+" COUNT 3"), "a full last page: one more, empty")

	zsetCursor := expectedCursor(2, 70_000, "a", cursorTypeZSet)
	assert.Equal(t, "*2\r\n"+bulk(zsetCursor)+"*2\r\n"+bulk("a")+bulk("1.5"), run("ZSCAN z 0 COUNT 1"))
	assert.Equal(t, "*2\r\n"+bulk("0")+"*4\r\n"+bulk("b")+bulk("-2")+bulk("c")+bulk("3"),
		run("ZSCAN z "+zsetCursor+" COUNT 5"), "members in byte order, not by score")

	for _, cmd := range []string{"HSCAN", "SSCAN", "ZSCAN"} {
		assert.Equal(t, "*2\r\n"+bulk("0")+"*0\r\n", run(cmd+" missing 0"), cmd)
	}
}

// TestSubkeyScanFullIteration: COUNT-sized pages return every member
// exactly once, in byte order, for each type.
func TestSubkeyScanFullIteration(t *testing.T) {
	k := New()
	run := func(args ...string) string {
		b := make([][]byte, len(args))
		for i, a := range args {
			b[i] = []byte(a)
		}
		return string(execLocal(k, b))
	}
	const n = 1000
	var want []string
	for i := 0; i < n; i++ {
		m := fmt.Sprintf("m%d", (i*7919)%n) // not inserted in byte order
		want = append(want, m)
		run("HSET", "h", m, "v"+m)
		run("SADD", "s", m)
		run("ZADD", "z", strconv.Itoa(n-i), m)
	}
	sort.Strings(want)
	for _, tc := range []struct {
		cmd, key string
		perEntry int
	}{{"HSCAN", "h", 2}, {"SSCAN", "s", 1}, {"ZSCAN", "z", 2}} {
		var got []string
		cursor, calls := "0", 0
		for {
			reply := run(tc.cmd, tc.key, cursor, "COUNT", "7")
			calls++
			cursor = scanReplyCursor(t, reply)
			entries := parseFlatArray(t, reply[strings.Index(reply, "\r\n*")+2:])
			for i := 0; i < len(entries); i += tc.perEntry {
				got = append(got, entries[i])
			}
			if cursor == "0" || calls > n {
				break
			}
		}
		assert.Equal(t, want, got, tc.cmd)
		assert.Equal(t, n/7+1, calls, tc.cmd)
	}
}

// parseFlatArray reads a RESP array of bulk strings.
func parseFlatArray(t *testing.T, reply string) []string {
	t.Helper()
	lines := strings.Split(reply, "\r\n")
	n, err := strconv.Atoi(strings.TrimPrefix(lines[0], "*"))
	require.NoError(t, err, reply)
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, lines[2+2*i])
	}
	return out
}

// TestSubkeyScanMatch: MATCH is a prefix ending in '*', as Kvrocks
// supports it: the scan seeks to the prefix and stops past it.
func TestSubkeyScanMatch(t *testing.T) {
	k := New()
	run := func(line string) string { return string(execLocal(k, splitArgs(line))) }
	require.Equal(t, ":5\r\n", run("SADD s user:1 admin:1 user:2 user usr"))
	assert.Equal(t, "*2\r\n"+bulk("0")+"*2\r\n"+bulk("user:1")+bulk("user:2"), run("SSCAN s 0 MATCH user:*"))
	assert.Equal(t, "*2\r\n"+bulk("0")+"*3\r\n"+bulk("user")+bulk("user:1")+bulk("user:2"), run("SSCAN s 0 match user*"))
	assert.Equal(t, "*2\r\n"+bulk("0")+"*5\r\n"+bulk("admin:1")+bulk("user")+bulk("user:1")+bulk("user:2")+bulk("usr"),
		run("SSCAN s 0 MATCH *"))
	assert.Equal(t, "*2\r\n"+bulk("0")+"*0\r\n", run("SSCAN s 0 MATCH nobody*"))
	first := run("SSCAN s 0 MATCH user* COUNT 2")
	assert.Equal(t, "*2\r\n"+bulk("0")+"*1\r\n"+bulk("user:2"),
		run("SSCAN s "+scanReplyCursor(t, first)+" MATCH user* COUNT 2"), "MATCH and COUNT in one scan")
	for _, p := range []string{"user", "*user", "u?er*x", `""`} {
		assert.Equal(t, "-ERR currently only key prefix matching is supported\r\n", run("SSCAN s 0 MATCH "+p), p)
	}
}

// TestSubkeyScanCursors: a cursor the ring does not hold (unknown, of
// another command, not a number, evicted by 16,384 newer ones) starts the
// scan again, never an error; the "_" prefix is stripped.
func TestSubkeyScanCursors(t *testing.T) {
	k := New()
	run := func(line string) string { return string(execLocal(k, splitArgs(line))) }
	require.Equal(t, ":3\r\n", run("HSET h a 1 b 2 c 3"))
	require.Equal(t, ":3\r\n", run("SADD s a b c"))
	fromStart := "*2\r\n" + bulk("0") + "*6\r\n" + bulk("a") + bulk("1") + bulk("b") + bulk("2") + bulk("c") + bulk("3")
	afterA := "*2\r\n" + bulk("0") + "*4\r\n" + bulk("b") + bulk("2") + bulk("c") + bulk("3")

	hashCursor := scanReplyCursor(t, run("HSCAN h 0 COUNT 1"))
	assert.Equal(t, afterA, run("HSCAN h "+hashCursor))
	assert.Equal(t, afterA, run("HSCAN h _"+hashCursor), "the string-cursor prefix is stripped")
	setCursor := scanReplyCursor(t, run("SSCAN s 0 COUNT 1"))
	for _, c := range []string{"abc", "-1", "1", "12345678901234567890123", setCursor, "_0"} {
		assert.Equal(t, fromStart, run("HSCAN h "+c), c)
	}
	for i := 0; i < cursorDictSize; i++ {
		run("SSCAN s 0 COUNT 1")
	}
	assert.Equal(t, fromStart, run("HSCAN h "+hashCursor), "evicted by 16,384 newer cursors")
}

// TestSubkeyScanErrors: option errors, worded as Kvrocks' CommandParser
// words them, come before the key is read; then WRONGTYPE.
func TestSubkeyScanErrors(t *testing.T) {
	k := New()
	run := func(line string) string { return string(execLocal(k, splitArgs(line))) }
	require.Equal(t, "+OK\r\n", run("SET str v"))
	require.Equal(t, ":1\r\n", run("HSET h a 1"))
	require.Equal(t, ":1\r\n", run("SADD s a"))
	for _, cmd := range []string{"HSCAN", "SSCAN", "ZSCAN"} {
		for _, tc := range []struct{ args, want string }{
			{"str 0", errWrongType},
			{"str 0 COUNT 0", "-ERR limit should be a positive integer\r\n"},
			{"str 0 COUNT -3", "-ERR limit should be a positive integer\r\n"},
			{"str 0 COUNT 4294967296", "-ERR limit should be a positive integer\r\n"}, // kept in an int: 0
			{"str 0 COUNT abc", "-ERR not started as an integer\r\n"},
			{"str 0 COUNT 5x", "-ERR encounter non-integer characters\r\n"},
			{"str 0 COUNT", "-ERR no more item to parse\r\n"},
			{"str 0 MATCH", "-ERR no more item to parse\r\n"},
			{"str 0 NOVALUES", errSyntax},
			{"str 0 TYPE hash", errSyntax},
			{"str 0 COUNT 1 BOGUS 1", errSyntax},
		} {
			assert.Equal(t, tc.want, run(cmd+" "+tc.args), cmd+" "+tc.args)
		}
		assert.Equal(t, "-ERR wrong number of arguments for '"+strings.ToLower(cmd)+"' command\r\n", run(cmd+" h"))
	}
	assert.Equal(t, errWrongType, run("SSCAN h 0"))
	assert.Equal(t, errWrongType, run("ZSCAN s 0"))
	assert.Equal(t, errWrongType, run("HSCAN s 0"))
	assert.Equal(t, "*2\r\n"+bulk("0")+"*2\r\n"+bulk("a")+bulk("1"), run("HSCAN h 0 COUNT 0x10"), "base 0, as TakeInt")
}

// FuzzSubkeyScan runs HSCAN, SSCAN and ZSCAN with arbitrary cursors and
// options (NUL between arguments) over a fixed hash, set and sorted set:
// every reply is one RESP frame, and a page holds only members of the value,
// in byte order, within the MATCH prefix.
func FuzzSubkeyScan(f *testing.F) {
	for _, seed := range []string{
		"0", "0\x00COUNT\x003", "0\x00MATCH\x00m1*", "0\x00MATCH\x00m1*\x00COUNT\x002", "_0", "abc",
		"0\x00COUNT\x000x10", "0\x00COUNT\x00-1", "0\x00MATCH", "0\x00NOVALUES", "4611686018427387904",
		"0\x00count\x00 7\x00match\x00*", "0\x00COUNT\x009223372036854775808",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		k := New()
		for i := 0; i < 30; i++ {
			m := []byte("m" + strconv.Itoa(i))
			execLocal(k, [][]byte{[]byte("HSET"), []byte("h"), m, m})
			execLocal(k, [][]byte{[]byte("SADD"), []byte("s"), m})
			execLocal(k, [][]byte{[]byte("ZADD"), []byte("z"), []byte(strconv.Itoa(i)), m})
		}
		var rest [][]byte
		for _, a := range strings.Split(line, "\x00") {
			rest = append(rest, []byte(a))
		}
		var prefix string
		if i := len(rest) - 2; i >= 1 && equalFold(rest[i], "match") && strings.HasSuffix(string(rest[i+1]), "*") {
			prefix = strings.TrimSuffix(string(rest[i+1]), "*")
		}
		for _, tc := range []struct {
			cmd, key string
			perEntry int
		}{{"HSCAN", "h", 2}, {"SSCAN", "s", 1}, {"ZSCAN", "z", 2}} {
			args := append([][]byte{[]byte(tc.cmd), []byte(tc.key)}, rest...)
			reply := execLocal(k, args)
			n, _ := redcon.ReadNextRESP(reply)
			require.Equal(t, len(reply), n, "reply to %q is not one frame: %q", args, reply)
			if reply[0] == '-' {
				continue
			}
			cursor := scanReplyCursor(t, string(reply))
			_, err := strconv.ParseUint(cursor, 10, 64)
			require.NoError(t, err, "cursor %q", cursor)
			entries := parseFlatArray(t, string(reply)[strings.Index(string(reply), "\r\n*")+2:])
			var page []string
			for i := 0; i < len(entries); i += tc.perEntry {
				page = append(page, entries[i])
			}
			require.True(t, sort.StringsAreSorted(page), "%q", page)
			for _, m := range page {
				require.Regexp(t, `^m[0-9]+$`, m)
				if prefix != "" && len(rest) <= 3 {
					require.True(t, strings.HasPrefix(m, prefix), "%q outside MATCH %q", m, prefix)
				}
			}
		}
	})
}
