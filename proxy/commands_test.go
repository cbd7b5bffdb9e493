package proxy

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

func args(words ...string) [][]byte {
	out := make([][]byte, len(words))
	for i, w := range words {
		out[i] = []byte(w)
	}
	return out
}

func TestLookupCommandIgnoresCase(t *testing.T) {
	get := LookupCommand([]byte("get"))
	require.NotNil(t, get)
	assert.Equal(t, "get", get.Name)
	assert.Same(t, get, LookupCommand([]byte("GET")))
	assert.Same(t, get, LookupCommand([]byte("gEt")))
	assert.Same(t, LookupCommand([]byte("json.set")), LookupCommand([]byte("JSON.SET")))
	assert.Same(t, LookupCommand([]byte("clusterx")), LookupCommand([]byte("CLUSTERX")))
}

func TestLookupCommandUnknownNames(t *testing.T) {
	for _, name := range []string{"", "nosuchcommand", "ge", "gett", "get\x00", "client|list", strings.Repeat("a", 100), "GET "} {
		assert.Nil(t, LookupCommand([]byte(name)), "%q", name)
	}
}

func TestSubcommand(t *testing.T) {
	client := LookupCommand([]byte("CLIENT"))
	require.NotNil(t, client)
	require.True(t, client.IsContainer())
	list := client.Subcommand([]byte("LiSt"))
	require.NotNil(t, list)
	assert.Equal(t, "client|list", list.Name)
	assert.Nil(t, client.Subcommand([]byte("nosuch")))
	assert.Nil(t, client.Subcommand([]byte("client|list")))

	get := LookupCommand([]byte("get"))
	assert.False(t, get.IsContainer())
	assert.Nil(t, get.Subcommand([]byte("list")))
}

func TestLookupDoesNotAllocate(t *testing.T) {
	name, sub := []byte("XInfo"), []byte("STREAM")
	allocs := testing.AllocsPerRun(100, func() {
		if c := LookupCommand(name); c == nil || c.Subcommand(sub) == nil {
			panic("lookup failed")
		}
	})
	assert.Zero(t, allocs)
}

func TestKeyIndexes(t *testing.T) {
	tests := []struct {
		args []string
		want []int
	}{
		{[]string{"GET", "k"}, []int{1}},
		{[]string{"GET"}, nil},
		{[]string{"SET", "k", "v", "EX", "10"}, []int{1}},
		{[]string{"MGET", "a", "b", "c"}, []int{1, 2, 3}},
		{[]string{"MSET", "a", "1", "b", "2"}, []int{1, 3}},
		{[]string{"BLPOP", "a", "b", "0"}, []int{1, 2}},
		{[]string{"BITOP", "AND", "dst", "a", "b"}, []int{2, 3, 4}},
		{[]string{"RENAME", "a", "b"}, []int{1, 2}},
		{[]string{"PING"}, nil},
		{[]string{"EVAL", "s", "2", "a", "b", "arg"}, []int{3, 4}},
		{[]string{"EVALSHA", "sha", "0", "arg"}, nil},
		{[]string{"EVAL", "s", "3", "a", "b"}, nil},
		{[]string{"EVAL", "s", "-1", "a"}, nil},
		{[]string{"EVAL", "s", "x", "a"}, nil},
		{[]string{"FCALL_RO", "f", "1", "a"}, []int{3}},
		{[]string{"ZUNIONSTORE", "dst", "2", "a", "b", "WEIGHTS", "1", "2"}, []int{1, 3, 4}},
		{[]string{"ZINTERSTORE", "dst", "bad", "a"}, []int{1}},
		{[]string{"ZUNION", "2", "a", "b", "WITHSCORES"}, []int{2, 3}},
		{[]string{"SINTERCARD", "1", "a", "LIMIT", "5"}, []int{2}},
		{[]string{"LMPOP", "2", "a", "b", "LEFT"}, []int{2, 3}},
		{[]string{"BLMPOP", "0.5", "2", "a", "b", "LEFT"}, []int{3, 4}},
		{[]string{"BZMPOP", "0", "1", "a", "MIN"}, []int{3}},
		{[]string{"XREAD", "COUNT", "1", "STREAMS", "a", "b", "0", "0"}, []int{4, 5}},
		{[]string{"xread", "block", "0", "streams", "a", "$"}, []int{4}},
		{[]string{"XREAD", "STREAMS", "streams", "0"}, []int{2}},
		{[]string{"XREAD", "STREAMS", "a", "b", "0"}, nil},
		{[]string{"XREAD", "COUNT", "1"}, nil},
		{[]string{"XREADGROUP", "GROUP", "streams", "c", "NOACK", "STREAMS", "a", ">"}, []int{6}},
		{[]string{"MIGRATE", "h", "1", "k", "0", "1000"}, []int{3}},
		{[]string{"MIGRATE", "h", "1", "", "0", "1000", "COPY", "AUTH", "keys", "KEYS", "a", "b"}, []int{10, 11}},
		{[]string{"MIGRATE", "h", "1", "", "0", "1000", "AUTH2", "keys", "keys", "KEYS", "a"}, []int{10}},
		{[]string{"MIGRATE", "h", "1", "k", "0", "1000", "KEYS", "a"}, nil},
		{[]string{"SORT", "k", "BY", "w_*", "LIMIT", "0", "1", "GET", "#", "STORE", "dst"}, []int{1, 10}},
		{[]string{"SORT", "k", "STORE", "d1", "STORE", "d2"}, []int{1, 5}},
		{[]string{"SORT", "k", "GET", "store", "ALPHA"}, []int{1}},
		{[]string{"SORT_RO", "k", "BY", "w_*"}, []int{1}},
		{[]string{"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "dst"}, []int{1, 7}},
		{[]string{"GEORADIUS", "k", "0", "0", "1", "km", "STOREDIST", "d1", "STORE", "d2"}, []int{1, 9}},
		{[]string{"GEORADIUSBYMEMBER", "k", "m", "1", "km", "STOREDIST", "dst"}, []int{1, 6}},
		{[]string{"GEORADIUS_RO", "k", "0", "0", "1", "km"}, []int{1}},
		{[]string{"OBJECT", "ENCODING", "k"}, []int{2}},
		{[]string{"MEMORY", "USAGE", "k", "SAMPLES", "5"}, []int{2}},
		{[]string{"XINFO", "STREAM", "k", "FULL"}, []int{2}},
		{[]string{"XGROUP", "CREATE", "k", "g", "$"}, []int{2}},
		{[]string{"CLIENT", "LIST"}, nil},
		{[]string{"OBJECT"}, nil},
		{[]string{"OBJECT", "NOSUCH", "k"}, nil},
		{[]string{"JSON.MSET", "a", "$", "1", "b", "$", "2"}, []int{1, 4}},
		{[]string{"JSON.MGET", "a", "b", "$"}, []int{1, 2}},
		{[]string{"JSON.DEBUG", "MEMORY", "k", "$"}, []int{2}},
		{[]string{"JSON.DEBUG", "HELP"}, nil},
		{[]string{"TS.MADD", "a", "1", "1", "b", "2", "2"}, []int{1, 4}},
		{[]string{"TS.MRANGE", "-", "+", "FILTER", "a=b"}, nil},
		{[]string{"CMS.MERGE", "dst", "2", "a", "b", "WEIGHTS", "1", "1"}, []int{1, 3, 4}},
		{[]string{"TDIGEST.MERGE", "dst", "1", "a"}, []int{1, 3}},
		{[]string{"CAS", "k", "old", "new"}, []int{1}},
		{[]string{"DISK", "USAGE", "k"}, []int{2}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c := LookupCommand([]byte(tt.args[0]))
			require.NotNil(t, c)
			got := c.KeyIndexes(args(tt.args...), nil)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestKeyIndexesAppendsToDst(t *testing.T) {
	mget := LookupCommand([]byte("mget"))
	got := mget.KeyIndexes(args("MGET", "a", "b"), []int{7})
	assert.Equal(t, []int{7, 1, 2}, got)
}

func TestKeyIndexesDoesNotAllocate(t *testing.T) {
	cases := [][][]byte{
		args("MSET", "a", "1", "b", "2"),
		args("EVAL", "s", "2", "a", "b"),
		args("XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", ">", ">"),
		args("SORT", "k", "STORE", "d"),
		args("OBJECT", "FREQ", "k"),
		args("MIGRATE", "h", "1", "", "0", "1000", "KEYS", "a", "b"),
	}
	infos := make([]*CommandInfo, len(cases))
	for i, c := range cases {
		infos[i] = LookupCommand(c[0])
		require.NotNil(t, infos[i])
	}
	dst := make([]int, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		for i, c := range cases {
			if len(infos[i].KeyIndexes(c, dst[:0])) == 0 {
				panic("no keys")
			}
		}
	})
	assert.Zero(t, allocs)
}

func TestCommandFlags(t *testing.T) {
	tests := []struct {
		name string
		has  CommandFlags
		not  CommandFlags
	}{
		{"get", FlagReadOnly, FlagWrite | FlagKeyless | FlagMultiKey},
		{"set", FlagWrite, FlagReadOnly | FlagKeyless},
		{"mget", FlagReadOnly | FlagMultiKey, FlagWrite},
		{"del", FlagWrite | FlagMultiKey, 0},
		{"eval", FlagMultiKey | FlagNoScript, FlagWrite | FlagReadOnly | FlagKeyless},
		{"blpop", FlagWrite | FlagBlocking, 0},
		{"xread", FlagReadOnly | FlagBlocking, 0},
		{"wait", FlagBlocking | FlagKeyless, 0},
		{"subscribe", FlagPubSub | FlagKeyless, 0},
		{"ssubscribe", FlagPubSub, FlagKeyless},
		{"multi", FlagTransaction | FlagKeyless, 0},
		{"watch", FlagTransaction, FlagKeyless},
		{"ping", FlagLocal | FlagKeyless, 0},
		{"hello", FlagLocal, 0},
		{"dbsize", FlagFanout | FlagKeyless | FlagReadOnly, 0},
		{"flushall", FlagFanout | FlagWrite, 0},
		{"keys", FlagFanout, 0},
		{"scan", FlagFanout, 0},
		{"randomkey", FlagFanout, 0},
		{"flushdb", FlagFanout, 0},
		{"clusterx", FlagAdmin | FlagKeyless, 0},
		{"monitor", FlagAdmin, 0},
		{"cas", FlagWrite, FlagKeyless},
		{"json.get", FlagReadOnly, FlagWrite},
		{"ft.search", FlagKeyless, 0},
	}
	for _, tt := range tests {
		c := LookupCommand([]byte(tt.name))
		if !assert.NotNil(t, c, tt.name) {
			continue
		}
		assert.True(t, c.Has(tt.has), "%s lacks %b (has %b)", tt.name, tt.has, c.Flags)
		assert.Zero(t, c.Flags&tt.not, "%s has %b", tt.name, c.Flags&tt.not)
	}
}

func TestArityOK(t *testing.T) {
	get := LookupCommand([]byte("get"))
	assert.False(t, get.ArityOK(1))
	assert.True(t, get.ArityOK(2))
	assert.False(t, get.ArityOK(3))
	set := LookupCommand([]byte("set"))
	assert.False(t, set.ArityOK(2))
	assert.True(t, set.ArityOK(3))
	assert.True(t, set.ArityOK(7))
}

// forEachCommand visits every command and subcommand in the table.
func forEachCommand(visit func(c *CommandInfo)) {
	for _, c := range commandTable {
		visit(c)
		for _, sub := range c.subcommands {
			visit(sub)
		}
	}
}

func TestCommandTableIsConsistent(t *testing.T) {
	assert.Greater(t, len(commandTable), 340)
	for name, c := range commandTable {
		assert.Equal(t, name, c.Name)
		for subName, sub := range c.subcommands {
			assert.Equal(t, c.Name+"|"+subName, sub.Name)
			assert.Nil(t, sub.subcommands, sub.Name)
		}
	}
	forEachCommand(func(c *CommandInfo) {
		assert.Equal(t, strings.ToLower(c.Name), c.Name)
		assert.LessOrEqual(t, len(c.Name), maxCommandNameLen)
		assert.NotZero(t, c.Arity, c.Name)
		assert.False(t, c.Has(FlagWrite|FlagReadOnly), "%s both reads only and writes", c.Name)
		hasKeys := c.FirstKey > 0 || c.findKeys != nil
		if c.IsContainer() {
			return
		}
		assert.Equal(t, !hasKeys, c.Has(FlagKeyless), "%s: keyless flag and key positions disagree", c.Name)
		if c.FirstKey > 0 {
			assert.Positive(t, c.KeyStep, c.Name)
		}
		if c.Has(FlagFanout) {
			assert.True(t, c.Has(FlagKeyless), c.Name)
		}
	})
}

// redisCommand is one entry of Redis' COMMAND reply.
type redisCommand struct {
	name                   string
	arity                  int
	flags                  map[string]bool
	firstKey, lastKey, key int
	subcommands            []redisCommand
}

func parseRedisCommand(t *testing.T, raw any) redisCommand {
	t.Helper()
	fields, ok := raw.([]any)
	require.True(t, ok, "COMMAND entry %v", raw)
	require.GreaterOrEqual(t, len(fields), 6)
	c := redisCommand{
		name:     fields[0].(string),
		arity:    int(fields[1].(int64)),
		flags:    map[string]bool{},
		firstKey: int(fields[3].(int64)),
		lastKey:  int(fields[4].(int64)),
		key:      int(fields[5].(int64)),
	}
	for _, f := range fields[2].([]any) {
		c.flags[f.(string)] = true
	}
	if len(fields) > 9 {
		subs, _ := fields[9].([]any)
		for _, sub := range subs {
			c.subcommands = append(c.subcommands, parseRedisCommand(t, sub))
		}
	}
	return c
}

// kvrocksArity lists the commands whose arity follows Kvrocks, which accepts
// more arguments than Redis 7.0 for them.
var kvrocksArity = map[string]int{"dbsize": -1, "lastsave": -1, "hsetnx": -4, "xlen": -2}

func checkAgainstRedis(t *testing.T, ours *CommandInfo, theirs redisCommand) {
	t.Helper()
	name := theirs.name
	if want, ok := kvrocksArity[name]; ok {
		assert.Equal(t, want, ours.Arity, "%s arity", name)
	} else {
		assert.Equal(t, theirs.arity, ours.Arity, "%s arity", name)
	}
	if len(theirs.subcommands) > 0 {
		require.True(t, ours.IsContainer(), "%s is a container in Redis", name)
		return
	}
	flags := []struct {
		redis string
		ours  CommandFlags
	}{
		{"write", FlagWrite}, {"readonly", FlagReadOnly}, {"blocking", FlagBlocking},
		{"pubsub", FlagPubSub}, {"admin", FlagAdmin}, {"noscript", FlagNoScript},
	}
	for _, f := range flags {
		want := theirs.flags[f.redis]
		if name == "wait" && f.ours == FlagBlocking {
			want = true // WAIT holds the connection until replicas acknowledge
		}
		assert.Equal(t, want, ours.Has(f.ours), "%s flag %s", name, f.redis)
	}
	movable := theirs.flags["movablekeys"]
	assert.Equal(t, movable, ours.findKeys != nil, "%s movable keys", name)
	if !movable {
		assert.Equal(t, []int{theirs.firstKey, theirs.lastKey, theirs.key},
			[]int{ours.FirstKey, ours.LastKey, ours.KeyStep}, "%s key positions", name)
	}
	assert.Equal(t, theirs.firstKey == 0 && !movable, ours.Has(FlagKeyless), "%s keyless", name)
}

// sampleInvocations returns argument lists to compare against COMMAND GETKEYS.
// Commands with regular key positions get synthetic arguments at and above
// their arity; commands with movable keys get hand-written invocations.
func sampleInvocations(c redisCommand) [][]string {
	if samples, ok := movableKeySamples[c.name]; ok {
		return samples
	}
	if c.firstKey == 0 {
		return nil
	}
	prefix := strings.Split(c.name, "|")
	counts := []int{c.arity}
	if c.arity < 0 {
		counts = []int{-c.arity, -c.arity + 1, -c.arity + 2, -c.arity + 3}
	}
	var samples [][]string
	for _, n := range counts {
		sample := append([]string(nil), prefix...)
		for i := len(prefix); i < n; i++ {
			sample = append(sample, fmt.Sprintf("a%d", i))
		}
		samples = append(samples, sample)
	}
	return samples
}

var movableKeySamples = func() map[string][][]string {
	samples := map[string][][]string{
		"zunionstore": {{"dst", "2", "k1", "k2"}, {"dst", "1", "k1", "WEIGHTS", "2"}},
		"zinterstore": {{"dst", "2", "k1", "k2", "AGGREGATE", "SUM"}},
		"zdiffstore":  {{"dst", "3", "k1", "k2", "k3"}},
		"blmpop":      {{"0", "2", "k1", "k2", "LEFT"}, {"1.5", "1", "k1", "RIGHT", "COUNT", "2"}},
		"bzmpop":      {{"0", "2", "k1", "k2", "MIN"}},
		"lmpop":       {{"2", "k1", "k2", "LEFT"}},
		"zmpop":       {{"1", "k1", "MAX", "COUNT", "3"}},
		"zunion":      {{"2", "k1", "k2", "WITHSCORES"}},
		"zinter":      {{"3", "k1", "k2", "k3"}},
		"zdiff":       {{"1", "k1"}},
		"zintercard":  {{"2", "k1", "k2", "LIMIT", "1"}},
		"sintercard":  {{"2", "k1", "k2"}},
		"xread": {
			{"COUNT", "1", "STREAMS", "k1", "k2", "0", "0"},
			{"BLOCK", "0", "STREAMS", "k1", "$"},
			{"STREAMS", "streams", "0"},
		},
		"xreadgroup": {
			{"GROUP", "g", "c", "COUNT", "1", "STREAMS", "k1", "k2", ">", ">"},
			{"GROUP", "streams", "c", "NOACK", "STREAMS", "k1", ">"},
		},
		"migrate": {
			{"127.0.0.1", "1", "k1", "0", "1000"},
			{"127.0.0.1", "1", "", "0", "1000", "COPY", "REPLACE", "KEYS", "k1", "k2"},
			{"127.0.0.1", "1", "", "0", "1000", "AUTH", "keys", "KEYS", "k1"},
			{"127.0.0.1", "1", "", "0", "1000", "AUTH2", "u", "keys", "KEYS", "k1", "k2"},
		},
		"sort": {
			{"k1"},
			{"k1", "BY", "w_*", "LIMIT", "0", "10", "GET", "o_*", "STORE", "dst"},
			{"k1", "STORE", "d1", "STORE", "d2"},
			{"k1", "ALPHA", "DESC"},
		},
		"sort_ro":           {{"k1"}, {"k1", "BY", "w_*", "GET", "#"}},
		"georadius":         {{"k1", "0", "0", "1", "km"}, {"k1", "0", "0", "1", "km", "STORE", "dst"}, {"k1", "0", "0", "1", "km", "WITHDIST", "STOREDIST", "dst"}},
		"georadiusbymember": {{"k1", "m", "1", "km"}, {"k1", "m", "1", "km", "STORE", "dst"}},
	}
	for _, name := range []string{"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"} {
		samples[name] = [][]string{{"body", "2", "k1", "k2", "arg"}, {"body", "1", "k1"}, {"body", "0", "arg"}}
	}
	for name, list := range samples {
		for i, s := range list {
			list[i] = append([]string{name}, s...)
		}
	}
	return samples
}()

// getKeysExceptions are commands or invocations where COMMAND GETKEYS and the
// proxy's routing differ on purpose.
var getKeysExceptions = map[string]string{
	"spublish":     "shard channels route by slot, but GETKEYS says they are not keys",
	"ssubscribe":   "shard channels route by slot, but GETKEYS says they are not keys",
	"sunsubscribe": "shard channels route by slot, but GETKEYS says they are not keys",
	"pfmerge a1":   "Redis 7.0 GETKEYS rejects PFMERGE without source keys, a valid call",
}

func TestCommandTableMatchesRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	server := loadgen.StartRedis(t, loadgen.RedisOptions{})
	// RESP2: the COMMAND parser below reads key specs as flat arrays.
	client := redis.NewClient(&redis.Options{Addr: server.Addr(), Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	raw, err := client.Do(ctx, "COMMAND").Slice()
	require.NoError(t, err)
	require.Greater(t, len(raw), 200)

	known := map[string]bool{}
	var keyed []redisCommand
	for _, entry := range raw {
		theirs := parseRedisCommand(t, entry)
		known[theirs.name] = true
		ours := LookupCommand([]byte(theirs.name))
		if !assert.NotNil(t, ours, "missing command %s", theirs.name) {
			continue
		}
		assert.False(t, ours.kvrocksOnly, theirs.name)
		checkAgainstRedis(t, ours, theirs)
		keyed = append(keyed, theirs)
		for _, sub := range theirs.subcommands {
			known[sub.name] = true
			_, subName, _ := strings.Cut(sub.name, "|")
			oursSub := ours.Subcommand([]byte(subName))
			if assert.NotNil(t, oursSub, "missing subcommand %s", sub.name) {
				checkAgainstRedis(t, oursSub, sub)
			}
			keyed = append(keyed, sub)
		}
	}
	forEachCommand(func(c *CommandInfo) {
		if !c.kvrocksOnly {
			assert.True(t, known[c.Name], "%s is not a Redis 7.0 command", c.Name)
		}
	})

	compared := 0
	for _, theirs := range keyed {
		if _, skip := getKeysExceptions[theirs.name]; skip {
			continue
		}
		for _, sample := range sampleInvocations(theirs) {
			if _, skip := getKeysExceptions[strings.Join(sample, " ")]; skip {
				continue
			}
			info := LookupCommand([]byte(sample[0]))
			require.NotNil(t, info, sample[0])
			sampleArgs := args(sample...)
			var ours []string
			for _, i := range info.KeyIndexes(sampleArgs, nil) {
				ours = append(ours, sample[i])
			}
			getKeys := []any{"COMMAND", "GETKEYS"}
			for _, s := range sample {
				getKeys = append(getKeys, s)
			}
			theirKeys, err := client.Do(ctx, getKeys...).StringSlice()
			if len(ours) == 0 {
				assert.True(t, err != nil || len(theirKeys) == 0, "%q: Redis finds keys %q", sample, theirKeys)
				continue
			}
			if assert.NoError(t, err, "%q", sample) {
				assert.Equal(t, theirKeys, ours, "%q", sample)
				compared++
			}
		}
	}
	assert.Greater(t, compared, 400, "too few invocations compared")
}

// FuzzKeyIndexes feeds client-controlled arguments (space-separated in the
// input) to every key finder: indexes must stay in range and increase.
func FuzzKeyIndexes(f *testing.F) {
	for _, seed := range []string{
		"EVAL s 2 a b", "FCALL f 1 k x", "ZUNIONSTORE d 2 a b", "BLMPOP 0 2 a b LEFT",
		"XREAD COUNT 1 STREAMS a b 0 0", "XREADGROUP GROUP g c STREAMS a >",
		"MIGRATE h 1  0 10 AUTH x KEYS a b", "SORT k BY x LIMIT 0 1 STORE d",
		"GEORADIUS k 0 0 1 km STORE d", "OBJECT ENCODING k", "MSET a 1 b 2",
		"JSON.MSET a $ 1 b $ 2", "TS.MADD a 1 1", "JSON.DEBUG MEMORY k", "BLPOP a b 0",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		argv := bytes.Split(data, []byte(" "))
		c := LookupCommand(argv[0])
		if c == nil {
			return
		}
		require.Equal(t, strings.ToLower(string(argv[0])), c.Name)
		prev := 0
		for _, i := range c.KeyIndexes(argv, nil) {
			require.Greater(t, i, prev, "%q", data)
			require.Less(t, i, len(argv), "%q", data)
			prev = i
		}
	})
}

func BenchmarkLookupCommandAndKeyIndexes(b *testing.B) {
	argv := args("MGET", "user:1", "user:2", "user:3")
	dst := make([]int, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		dst = LookupCommand(argv[0]).KeyIndexes(argv, dst[:0])
	}
}
