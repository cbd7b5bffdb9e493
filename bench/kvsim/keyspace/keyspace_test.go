package keyspace

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

// step is one command of a table test and its exact expected reply.
type step struct {
	cmd, reply string
}

// newTestKeyspace returns a keyspace on a manual clock (unix ms).
func newTestKeyspace(now *int64) *Keyspace {
	k := New()
	k.clock = func() int64 { return *now }
	return k
}

func runSteps(t *testing.T, k *Keyspace, steps []step) {
	t.Helper()
	for _, s := range steps {
		got := execLocal(k, splitArgs(s.cmd))
		assert.Equal(t, s.reply, string(got), "command: %s", s.cmd)
	}
}

func TestStrings(t *testing.T) {
	now := int64(1_000_000)
	k := newTestKeyspace(&now)
	runSteps(t, k, []step{
		{"GET k", "$-1\r\n"},
		{"SET k v", "+OK\r\n"},
		{"GET k", "$1\r\nv\r\n"},
		{"SET k w NX", "$-1\r\n"},
		{"SET k w XX GET", "$1\r\nv\r\n"},
		{"SET k x EX 10", "+OK\r\n"},
		{"PTTL k", ":10000\r\n"},
		{"SET k y KEEPTTL", "+OK\r\n"},
		{"TTL k", ":10\r\n"},
		{"SET k y EX 0", "-ERR invalid expire time in 'set' command\r\n"},
		{"SETEX k -1 v", "-ERR invalid expire time in 'setex' command\r\n"},
		{"SET k y EX 1 PX 1", "-ERR syntax error\r\n"},
		{"INCR k", "-ERR value is not an integer or out of range\r\n"},
		{"SET n 9223372036854775806", "+OK\r\n"},
		{"INCR n", ":9223372036854775807\r\n"},
		{"INCR n", "-ERR increment or decrement would overflow\r\n"},
		{"INCRBYFLOAT f 0.1", "$3\r\n0.1\r\n"},
		{"INCRBYFLOAT f 0.2", "$3\r\n0.3\r\n"},
		{"INCRBYFLOAT f x", "-ERR value is not a valid float\r\n"},
		{"MSET a 1 b", "-ERR wrong number of arguments for 'mset' command\r\n"},
		{"MSET a 1 b 2", "+OK\r\n"},
		{"MGET a b c", "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n"},
		{"MSETNX a 1 c 3", ":0\r\n"},
		{"APPEND a 23", ":3\r\n"},
		{"GETRANGE a 1 -1", "$2\r\n23\r\n"},
		{"SETRANGE a 5 x", ":6\r\n"},
		{"GET a", "$6\r\n123\x00\x00x\r\n"},
		{"STRLEN a", ":6\r\n"},
		{"GETDEL a", "$6\r\n123\x00\x00x\r\n"},
		{"EXISTS a", ":0\r\n"},
		{"RPUSH l x", ":1\r\n"},
		{"GET l", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
	})
	now += 10_001
	runSteps(t, k, []step{{"GET k", "$-1\r\n"}, {"EXISTS k", ":0\r\n"}})
}

func TestKeys(t *testing.T) {
	now := int64(1_000_000)
	k := newTestKeyspace(&now)
	runSteps(t, k, []step{
		{"MSET a 1 b 2 c 3", "+OK\r\n"},
		{"DEL a x", ":1\r\n"},
		{"EXISTS a b b", ":2\r\n"},
		{"EXPIRE b 5", ":1\r\n"},
		{"EXPIRE b 10 NX", ":0\r\n"},
		{"EXPIRE b 10 NX GT", "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"},
		{"TTL b", ":5\r\n"},
		{"PERSIST b", ":1\r\n"},
		{"TTL b", ":-1\r\n"},
		{"TTL none", ":-2\r\n"},
		{"TYPE b", "+string\r\n"},
		{"RENAME b d", "+OK\r\n"},
		{"RENAME b d", "-ERR no such key\r\n"},
		{"KEYS [ce]", "*1\r\n$1\r\nc\r\n"},
		{"DBSIZE", ":2\r\n"},
		{"SCAN 0 COUNT 100 MATCH c", "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nc\r\n"},
		{"SCAN x", "-ERR invalid cursor\r\n"},
		{"PEXPIRE c 1", ":1\r\n"},
	})
	now += 2
	runSteps(t, k, []step{
		{"DBSIZE", ":1\r\n"},
		{"RANDOMKEY", "$1\r\nd\r\n"},
		{"FLUSHDB", "+OK\r\n"},
		{"RANDOMKEY", "$-1\r\n"},
	})
}

func TestLists(t *testing.T) {
	now := int64(1_000_000)
	runSteps(t, newTestKeyspace(&now), []step{
		{"RPUSH l a b c", ":3\r\n"},
		{"LPUSH l z", ":4\r\n"},
		{"LRANGE l 0 -1", "*4\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"},
		{"LPOP l 2", "*2\r\n$1\r\nz\r\n$1\r\na\r\n"},
		{"LPOP none 2", "*-1\r\n"},
		{"RPOP l", "$1\r\nc\r\n"},
		{"LINDEX l 0", "$1\r\nb\r\n"},
		{"LSET l 5 x", "-ERR index out of range\r\n"},
		{"LINSERT l BEFORE b a", ":2\r\n"},
		{"LREM l 0 a", ":1\r\n"},
		{"LTRIM l 1 0", "+OK\r\n"},
		{"EXISTS l", ":0\r\n"},
		{"LPUSHX l a", ":0\r\n"},
		{"LPOP l -1", "-ERR value is out of range, must be positive\r\n"},
	})
}

func TestHashes(t *testing.T) {
	now := int64(1_000_000)
	runSteps(t, newTestKeyspace(&now), []step{
		{"HSET h b 1 a 2", ":2\r\n"},
		{"HSET h b 3", ":0\r\n"},
		{"HSET h b", "-ERR wrong number of arguments for 'hset' command\r\n"},
		{"HGETALL h", "*4\r\n$1\r\nb\r\n$1\r\n3\r\n$1\r\na\r\n$1\r\n2\r\n"},
		{"HINCRBY h a 5", ":7\r\n"},
		{"HINCRBYFLOAT h a 0.5", "$3\r\n7.5\r\n"},
		{"HINCRBY h a 1", "-ERR hash value is not an integer\r\n"},
		{"HMGET h a x", "*2\r\n$3\r\n7.5\r\n$-1\r\n"},
		{"HDEL h a b", ":2\r\n"},
		{"EXISTS h", ":0\r\n"},
	})
}

func TestSets(t *testing.T) {
	now := int64(1_000_000)
	runSteps(t, newTestKeyspace(&now), []step{
		{"SADD s 3 1 2", ":3\r\n"},
		{"SMEMBERS s", "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"},
		{"SADD t 2 3 4", ":3\r\n"},
		{"SINTER s t", "*2\r\n$1\r\n2\r\n$1\r\n3\r\n"},
		{"SDIFFSTORE d s t", ":1\r\n"},
		{"SMEMBERS d", "*1\r\n$1\r\n1\r\n"},
		{"SPOP d", "$1\r\n1\r\n"},
		{"EXISTS d", ":0\r\n"},
		{"SMOVE s t 1", ":1\r\n"},
		{"SCARD t", ":4\r\n"},
		{"SMISMEMBER t 1 9", "*2\r\n:1\r\n:0\r\n"},
		{"SPOP t 0", "*0\r\n"},
	})
}

func TestSortedSets(t *testing.T) {
	now := int64(1_000_000)
	runSteps(t, newTestKeyspace(&now), []step{
		{"ZADD z 1 a 2 b 3 c", ":3\r\n"},
		{"ZADD z XX NX 1 a", "-ERR XX and NX options at the same time are not compatible\r\n"},
		{"ZINCRBY z 0.1 a", "$18\r\n1.1000000000000001\r\n"},
		{"ZADD z GT CH 0 a 5 b", ":1\r\n"},
		{"ZRANGE z 0 -1 WITHSCORES", "*6\r\n$1\r\na\r\n$18\r\n1.1000000000000001\r\n$1\r\nc\r\n$1\r\n3\r\n$1\r\nb\r\n$1\r\n5\r\n"},
		{"ZRANGEBYSCORE z (1.1 +inf LIMIT 1 1", "*1\r\n$1\r\nb\r\n"},
		{"ZREVRANK z a", ":2\r\n"},
		{"ZCOUNT z -inf (5", ":2\r\n"},
		{"ZPOPMAX z", "*2\r\n$1\r\nb\r\n$1\r\n5\r\n"},
		{"ZREMRANGEBYRANK z 0 0", ":1\r\n"},
		{"ZRANGE z x 1 BYSCORE", "-ERR min or max is not a float\r\n"},
		{"ZSCORE z c", "$1\r\n3\r\n"},
	})
}

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pattern, str string
		match        bool
	}{
		{"*", "x", true},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*c", "abd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"[abc]x", "bx", true},
		{"[^abc]x", "bx", false},
		{"[a-c]", "b", true},
		{"[c-a]", "b", true},
		{"a\\*", "a*", true},
		{"a\\*", "ab", false},
		{"[a", "a", true},
		{"[", "a", false},
		{"*a*b*c*", "xaxbxcx", true},
		{"h[\\]]", "h]", true},
	}
	for _, c := range cases {
		assert.Equal(t, c.match, globMatch([]byte(c.pattern), []byte(c.str)), "%q ~ %q", c.pattern, c.str)
	}
}

func TestLookupAndKeys(t *testing.T) {
	cmd := Lookup([]byte("MsEt"))
	require.NotNil(t, cmd)
	assert.Equal(t, "mset", cmd.Name)
	assert.True(t, cmd.Write)
	assert.False(t, cmd.ArityOK(2))
	assert.True(t, cmd.ArityOK(5))
	keys := cmd.Keys(splitArgs("MSET a 1 b 2"))
	assert.Equal(t, [][]byte{[]byte("a"), []byte("b")}, keys)
	assert.Equal(t, [][]byte{[]byte("a"), []byte("b")}, Lookup([]byte("del")).Keys(splitArgs("DEL a b")))
	assert.Equal(t, [][]byte{[]byte("a")}, Lookup([]byte("get")).Keys(splitArgs("GET a")))
	assert.Equal(t, [][]byte{[]byte("s"), []byte("d")}, Lookup([]byte("smove")).Keys(splitArgs("SMOVE s d m")))
	assert.Nil(t, Lookup([]byte("get")).Keys(splitArgs("GET")), "a short command has no keys")
	assert.Nil(t, Lookup([]byte("scan")).Keys(splitArgs("SCAN 0")))
	assert.Nil(t, Lookup([]byte("nosuchcommand")))
	assert.Nil(t, Lookup([]byte(strings.Repeat("x", 100))))
	assert.Equal(t, "-ERR wrong number of arguments for 'get' command\r\n", string(AppendArityError(nil, Lookup([]byte("GET")))))
	assert.Equal(t, "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
		string(AppendUnknownCommand(nil, splitArgs("foo a b"))))
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	k := New()
	set, get := Lookup([]byte("SET")), Lookup([]byte("GET"))
	setArgs, getArgs := splitArgs("SET key:1 value"), splitArgs("GET key:1")
	out := k.Exec(nil, set, setArgs)
	k.SetJournal(func(uint64, [][]byte) {})
	allocs := testing.AllocsPerRun(100, func() {
		out = k.Exec(out[:0], set, setArgs)
		out = k.Exec(out[:0], get, getArgs)
	})
	assert.Zero(t, allocs)
}

func TestSequenceAndJournal(t *testing.T) {
	now := int64(1_000_000)
	k := newTestKeyspace(&now)
	assert.Equal(t, uint64(1), k.Sequence())
	var seqs []uint64
	var effects []string
	k.SetJournal(func(seq uint64, effect [][]byte) {
		seqs = append(seqs, seq)
		var parts []string
		for _, e := range effect {
			parts = append(parts, string(e))
		}
		effects = append(effects, strings.Join(parts, " "))
	})
	runSteps(t, k, []step{
		{"SET a 1 EX 10", "+OK\r\n"},
		{"SET a 1 NX", "$-1\r\n"},
		{"GET a", "$1\r\n1\r\n"},
		{"SADD s x", ":1\r\n"},
		{"SPOP s", "$1\r\nx\r\n"},
		{"INCRBYFLOAT f 1.5", "$3\r\n1.5\r\n"},
		{"EXPIRE f 1", ":1\r\n"},
		{"DEL nothing", ":0\r\n"},
	})
	now += 10_001
	runSteps(t, k, []step{{"GET a", "$-1\r\n"}})
	assert.Equal(t, []uint64{2, 3, 4, 5, 6, 7}, seqs)
	assert.Equal(t, []string{
		"SET a 1 PXAT 1010000",
		"SADD s x",
		"SREM s x",
		"SET f 1.5 KEEPTTL",
		"PEXPIREAT f 1001000",
		"DEL a",
	}, effects)
	assert.Equal(t, uint64(7), k.Sequence())
}

func TestReplicaKeepsExpiredKeysUntilMasterDeletes(t *testing.T) {
	now := int64(1_000_000)
	master, replica := newTestKeyspace(&now), newTestKeyspace(&now)
	replica.SetReplica(true)
	replicaJournal := 0
	replica.SetJournal(func(uint64, [][]byte) { replicaJournal++ })
	master.SetJournal(replica.Apply)
	runSteps(t, master, []step{{"SET k v PX 100", "+OK\r\n"}})
	now += 101
	runSteps(t, replica, []step{{"GET k", "$-1\r\n"}, {"EXISTS k", ":0\r\n"}})
	_, snap := replica.Snapshot()
	assert.Len(t, snap, 2, "the replica keeps the expired key (SET and PEXPIREAT)")
	assert.Equal(t, 0, replica.DBSize())
	runSteps(t, master, []step{{"GET k", "$-1\r\n"}})
	_, snap = replica.Snapshot()
	assert.Empty(t, snap, "the master's DEL reached the replica")
	assert.Equal(t, master.Sequence(), replica.Sequence())
	assert.Zero(t, replicaJournal, "applied effects and replica reads journal nothing")
}

// FuzzExec runs arbitrary commands ("\n" between commands, NUL between
// arguments) on a master whose journal feeds a replica: nothing may panic,
// every reply must be exactly one well-formed RESP frame, the bookkeeping
// stays consistent, and the replica, applying what the master journaled,
// ends up with the master's keyspace.
func FuzzExec(f *testing.F) {
	for _, sc := range differentialScripts {
		var script []string
		for _, line := range strings.Split(sc.script, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				f.Add(strings.ReplaceAll(line, " ", "\x00"))
				script = append(script, strings.ReplaceAll(line, " ", "\x00"))
			}
		}
		f.Add(strings.Join(script, "\n"))
	}
	oldString, oldCount := maxStringLen, maxRandomCount
	maxStringLen, maxRandomCount = 1<<16, 1<<10
	f.Cleanup(func() { maxStringLen, maxRandomCount = oldString, oldCount })
	f.Fuzz(func(t *testing.T, line string) {
		now := int64(1_000_000)
		master, replica := newTestKeyspace(&now), newTestKeyspace(&now)
		replica.SetReplica(true)
		master.SetJournal(journalTo(replica))
		for _, cmdLine := range strings.Split(line, "\n") {
			var args [][]byte
			for _, a := range strings.Split(cmdLine, "\x00") {
				args = append(args, []byte(a))
			}
			now++
			reply := execLocal(master, args)
			n, _ := redcon.ReadNextRESP(reply)
			require.Equal(t, len(reply), n, "reply to %q is not one frame: %q", args, reply)
			checkInvariants(t, master)
		}
		checkInvariants(t, replica)
		mseq, msnap := master.Snapshot()
		rseq, rsnap := replica.Snapshot()
		require.Equal(t, mseq, rseq)
		require.Equal(t, dump(msnap), dump(rsnap))
	})
}

// checkInvariants verifies the bookkeeping every command must preserve: no
// empty containers, the SCAN index and the TTL count in step with the data.
func checkInvariants(t *testing.T, k *Keyspace) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	require.Equal(t, len(k.data), k.index.n, "index size")
	indexed := 0
	k.index.each(0, func(e indexEntry) bool {
		require.Contains(t, k.data, e.key)
		indexed++
		return true
	})
	require.Equal(t, len(k.data), indexed, "indexed keys")
	expires := 0
	for key, v := range k.data {
		if v.kind != kindString {
			require.NotZero(t, v.length(), "empty %s at %q", typeNames[v.kind], key)
		}
		if v.kind == kindZSet {
			require.Equal(t, v.zset.len(), v.zset.sl.length, "skiplist size of %q", key)
		}
		if v.expireAt != 0 {
			expires++
		}
	}
	require.Equal(t, expires, k.expires, "keys with a TTL")
}

func BenchmarkExecGet(b *testing.B) {
	k := New()
	get := Lookup([]byte("GET"))
	k.Exec(nil, Lookup([]byte("SET")), splitArgs("SET key:000001 xxx"))
	args := splitArgs("GET key:000001")
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		out = k.Exec(out[:0], get, args)
	}
}

func BenchmarkExecSet(b *testing.B) {
	k := New()
	k.SetJournal(func(uint64, [][]byte) {})
	set := Lookup([]byte("SET"))
	args := splitArgs("SET key:000001 xxx")
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		out = k.Exec(out[:0], set, args)
	}
}

// TestScanVisitsEveryKey iterates with a small COUNT while keys come and go:
// every key present throughout must be returned, and the cursor must end.
func TestScanVisitsEveryKey(t *testing.T) {
	now := int64(1_000_000)
	k := newTestKeyspace(&now)
	const stable = 1900 // the churn below grows the keyspace past the index's first split
	for i := 0; i < stable; i++ {
		execLocal(k, splitArgs(fmt.Sprintf("SET stable:%d v", i)))
	}
	seen := map[string]bool{}
	cursor := "0"
	bitsAtStart := k.index.bits
	for round := 0; ; round++ {
		require.Less(t, round, 10*stable, "SCAN did not finish")
		execLocal(k, splitArgs(fmt.Sprintf("SET churn:%d v", round)))
		execLocal(k, splitArgs(fmt.Sprintf("DEL churn:%d", round/2)))
		reply := execLocal(k, splitArgs("SCAN "+cursor+" COUNT 5 MATCH stable:*"))
		next, keys := parseScanReply(t, reply)
		for _, key := range keys {
			seen[key] = true
		}
		if cursor = next; cursor == "0" {
			break
		}
	}
	assert.Len(t, seen, stable)
	assert.Greater(t, k.index.bits, bitsAtStart, "the index split while scanning")
	checkInvariants(t, k)
}

func parseScanReply(t *testing.T, reply []byte) (string, []string) {
	t.Helper()
	var parts []string
	for _, line := range strings.Split(strings.TrimSuffix(string(reply), "\r\n"), "\r\n") {
		if line != "" && line[0] != '*' && line[0] != '$' {
			parts = append(parts, line)
		}
	}
	require.NotEmpty(t, parts, "reply %q", reply)
	return parts[0], parts[1:]
}
