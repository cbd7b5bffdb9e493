// Package proxy is the client side of kvproxy: it classifies and routes client
// commands to the cluster and answers the ones it owns.
package proxy

import "strings"

// CommandFlags describe how the proxy must treat a command.
type CommandFlags uint32

const (
	// FlagWrite marks commands that may modify data (Redis "write").
	FlagWrite CommandFlags = 1 << iota
	// FlagReadOnly marks commands that only read data (Redis "readonly"):
	// safe to resend after a connection loss. Commands with neither FlagWrite
	// nor FlagReadOnly (EVAL, FCALL, ...) may write.
	FlagReadOnly
	// FlagKeyless marks commands that never carry a key, so they cannot be
	// routed by slot.
	FlagKeyless
	// FlagMultiKey marks commands that may carry several keys, possibly in
	// different slots.
	FlagMultiKey
	// FlagBlocking marks commands that may hold the connection until an event
	// or a timeout: they need a dedicated backend connection.
	FlagBlocking
	// FlagAdmin marks administrative commands.
	FlagAdmin
	// FlagPubSub marks Pub/Sub commands.
	FlagPubSub
	// FlagTransaction marks MULTI, EXEC, DISCARD, WATCH and UNWATCH.
	FlagTransaction
	// FlagNoScript marks commands that scripts may not call (Redis "noscript").
	FlagNoScript
	// FlagLocal marks commands the proxy answers itself, without a backend
	// (connection state: PING, ECHO, QUIT, HELLO, AUTH, SELECT, RESET,
	// READONLY, READWRITE, COMMAND).
	FlagLocal
	// FlagFanout marks keyless commands that act on the whole keyspace, so
	// they must run on every master and the replies be merged.
	FlagFanout
)

// CommandInfo describes one command or subcommand in the Redis convention.
type CommandInfo struct {
	// Name is the lower-case name; a subcommand is named "container|sub"
	// ("client|list"), as in Redis' COMMAND INFO.
	Name string
	// Arity is the exact argument count including the name when positive, the
	// minimum count when negative.
	Arity int
	// Flags says how the proxy must treat the command.
	Flags CommandFlags
	// FirstKey, LastKey and KeyStep give the key positions of commands whose
	// keys sit at regular places: FirstKey 0 means none, a negative LastKey
	// counts from the end (-1 is the last argument). Commands whose keys
	// depend on their arguments (EVAL, XREAD, ...) use a key finder instead.
	FirstKey, LastKey, KeyStep int

	// findKeys appends the key indexes of commands with irregular key
	// positions; nil when FirstKey/LastKey/KeyStep tell it all.
	findKeys func(args [][]byte, dst []int) []int
	// subcommands of a container command (CLIENT, CONFIG, ...), by name.
	subcommands map[string]*CommandInfo
	// kvrocksOnly marks commands that Redis 7.0 does not have.
	kvrocksOnly bool
	// runsScript marks EVAL and its kin (scripts.go), servedConfig the
	// CONFIG subcommands the proxy serves (configcommand.go): fields, not
	// sets, so the per-command classification looks nothing up.
	runsScript, servedConfig bool
	// stats counts the command's calls (cmdstats.go).
	stats commandStats
}

// maxCommandNameLen bounds the names LookupCommand and Subcommand accept; no
// command or subcommand name is longer.
const maxCommandNameLen = 32

// LookupCommand returns the command named name (any case), or nil for a name
// the proxy does not know. It does not allocate.
func LookupCommand(name []byte) *CommandInfo {
	return lookup(commandTable, name)
}

func lookup(table map[string]*CommandInfo, name []byte) *CommandInfo {
	if len(name) > maxCommandNameLen {
		return nil
	}
	var lower [maxCommandNameLen]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	// The compiler does not allocate for a string conversion used as a map key.
	return table[string(lower[:len(name)])]
}

// IsContainer reports whether the command only groups subcommands (CLIENT,
// CONFIG, OBJECT, XINFO, ...): its second argument selects the subcommand.
func (c *CommandInfo) IsContainer() bool {
	return c.subcommands != nil
}

// Subcommand returns the subcommand of a container command named name (any
// case), or nil. It does not allocate.
func (c *CommandInfo) Subcommand(name []byte) *CommandInfo {
	if c.subcommands == nil {
		return nil
	}
	return lookup(c.subcommands, name)
}

// Has reports whether the command has every flag in f.
func (c *CommandInfo) Has(f CommandFlags) bool {
	return c.Flags&f == f
}

// ArityOK reports whether argc arguments, the name included, suit the arity.
func (c *CommandInfo) ArityOK(argc int) bool {
	if c.Arity >= 0 {
		return argc == c.Arity
	}
	return argc >= -c.Arity
}

// KeyIndexes appends to dst the indexes in args (args[0] is the command name)
// of the arguments that are keys, in the order Redis' COMMAND GETKEYS lists
// them. Called on a container it uses the subcommand named by args[1]. It does
// not allocate when dst has room. Malformed arguments (a bad numkeys, a missing
// STREAMS) yield no keys: the backend reports the error.
func (c *CommandInfo) KeyIndexes(args [][]byte, dst []int) []int {
	if c.subcommands != nil {
		if len(args) < 2 {
			return dst
		}
		sub := c.Subcommand(args[1])
		if sub == nil {
			return dst
		}
		return sub.KeyIndexes(args, dst)
	}
	if c.findKeys != nil {
		return c.findKeys(args, dst)
	}
	return appendKeyRange(args, dst, c.FirstKey, c.LastKey, c.KeyStep)
}

// appendKeyRange appends first, first+step, ... up to last, where a negative
// last counts from the end of args.
func appendKeyRange(args [][]byte, dst []int, first, last, step int) []int {
	if first <= 0 || step <= 0 {
		return dst
	}
	if last < 0 {
		last += len(args)
	}
	last = min(last, len(args)-1)
	for i := first; i <= last; i += step {
		dst = append(dst, i)
	}
	return dst
}

// parseCount parses a non-negative decimal count such as numkeys; ok is false
// for anything else.
func parseCount(b []byte) (n int, ok bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// equalFold compares an argument with a lower-case ASCII keyword.
func equalFold(arg []byte, keyword string) bool {
	if len(arg) != len(keyword) {
		return false
	}
	for i, c := range arg {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != keyword[i] {
			return false
		}
	}
	return true
}

// appendNumkeys appends the numkeys keys that follow the count at
// args[countAt]; nothing if the count is malformed or too large.
func appendNumkeys(args [][]byte, dst []int, countAt int) []int {
	if countAt >= len(args) {
		return dst
	}
	n, ok := parseCount(args[countAt])
	if !ok || countAt+n >= len(args) {
		return dst
	}
	for i := countAt + 1; i <= countAt+n; i++ {
		dst = append(dst, i)
	}
	return dst
}

// evalKeys finds the keys of EVAL, EVALSHA, FCALL and their _RO forms:
// script numkeys key... arg...
func evalKeys(args [][]byte, dst []int) []int { return appendNumkeys(args, dst, 2) }

// numkeysAt1Keys: ZUNION, ZINTER, ZDIFF, ZINTERCARD, SINTERCARD, LMPOP, ZMPOP
// (numkeys key... options).
func numkeysAt1Keys(args [][]byte, dst []int) []int { return appendNumkeys(args, dst, 1) }

// numkeysAt2Keys: BLMPOP and BZMPOP (timeout numkeys key... options).
func numkeysAt2Keys(args [][]byte, dst []int) []int { return appendNumkeys(args, dst, 2) }

// storeNumkeysKeys: ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE and Kvrocks'
// CMS.MERGE and TDIGEST.MERGE (destination numkeys key... options).
func storeNumkeysKeys(args [][]byte, dst []int) []int {
	if len(args) < 2 {
		return dst
	}
	return appendNumkeys(args, append(dst, 1), 2)
}

// xreadKeys: XREAD and XREADGROUP. The options are skipped by their known
// widths, because "streams" may also be a group, consumer or key name; the
// keys are the first half of what follows STREAMS.
func xreadKeys(args [][]byte, dst []int) []int {
	for i := 1; i < len(args); i++ {
		switch arg := args[i]; {
		case equalFold(arg, "block"), equalFold(arg, "count"):
			i++
		case equalFold(arg, "group"):
			i += 2
		case equalFold(arg, "noack"):
		case equalFold(arg, "streams"):
			rest := len(args) - i - 1
			if rest == 0 || rest%2 != 0 {
				return dst
			}
			for k := i + 1; k <= i+rest/2; k++ {
				dst = append(dst, k)
			}
			return dst
		default:
			return dst
		}
	}
	return dst
}

// migrateKeys: MIGRATE host port key|"" db timeout [COPY] [REPLACE]
// [AUTH pw] [AUTH2 user pw] [KEYS key...].
func migrateKeys(args [][]byte, dst []int) []int {
	for i := 6; i < len(args); i++ {
		switch arg := args[i]; {
		case equalFold(arg, "keys"):
			if len(args[3]) > 0 {
				return dst // KEYS needs an empty key argument
			}
			for k := i + 1; k < len(args); k++ {
				dst = append(dst, k)
			}
			return dst
		case equalFold(arg, "auth"):
			i++
		case equalFold(arg, "auth2"):
			i += 2
		}
	}
	if len(args) > 3 {
		dst = append(dst, 3)
	}
	return dst
}

// sortKeys: SORT key [BY pattern] [LIMIT offset count] [GET pattern ...]
// [ASC|DESC] [ALPHA] [STORE destination]; the last STORE wins, as in SORT.
func sortKeys(args [][]byte, dst []int) []int {
	if len(args) < 2 {
		return dst
	}
	dst = append(dst, 1)
	store := 0
	for i := 2; i < len(args); i++ {
		switch arg := args[i]; {
		case equalFold(arg, "limit"):
			i += 2
		case equalFold(arg, "get"), equalFold(arg, "by"):
			i++
		case equalFold(arg, "store") && i+1 < len(args):
			store = i + 1
		}
	}
	if store > 0 {
		dst = append(dst, store)
	}
	return dst
}

// sortROKeys: SORT_RO has no STORE; its BY and GET patterns are not keys.
func sortROKeys(args [][]byte, dst []int) []int {
	if len(args) < 2 {
		return dst
	}
	return append(dst, 1)
}

// georadiusKeys: GEORADIUS and GEORADIUSBYMEMBER, whose STORE or STOREDIST
// option (the last one wins) names a second key.
func georadiusKeys(args [][]byte, dst []int) []int {
	if len(args) < 2 {
		return dst
	}
	dst = append(dst, 1)
	store := 0
	for i := 5; i < len(args); i++ {
		if (equalFold(args[i], "store") || equalFold(args[i], "storedist")) && i+1 < len(args) {
			store = i + 1
			i++
		}
	}
	if store > 0 {
		dst = append(dst, store)
	}
	return dst
}

// jsonDebugKeys: Kvrocks' JSON.DEBUG MEMORY key [path]; JSON.DEBUG HELP has
// no key.
func jsonDebugKeys(args [][]byte, dst []int) []int {
	if len(args) >= 3 && equalFold(args[1], "memory") {
		dst = append(dst, 2)
	}
	return dst
}

// cmd builds a table entry.
func cmd(name string, arity int, flags CommandFlags, firstKey, lastKey, keyStep int) *CommandInfo {
	return &CommandInfo{Name: name, Arity: arity, Flags: flags, FirstKey: firstKey, LastKey: lastKey, KeyStep: keyStep}
}

// withKeys sets the key finder of a command whose key positions are irregular.
func (c *CommandInfo) withKeys(finder func(args [][]byte, dst []int) []int) *CommandInfo {
	c.findKeys = finder
	return c
}

// kvrocks marks a command that only Kvrocks has.
func (c *CommandInfo) kvrocks() *CommandInfo {
	c.kvrocksOnly = true
	return c
}

// container builds a command that groups subcommands named "name|sub"; it
// carries the flags all its subcommands share.
func container(name string, arity int, subs ...*CommandInfo) *CommandInfo {
	c := &CommandInfo{Name: name, Arity: arity, Flags: FlagKeyless, subcommands: make(map[string]*CommandInfo, len(subs))}
	for _, sub := range subs {
		c.Flags &= sub.Flags
		c.subcommands[strings.TrimPrefix(sub.Name, name+"|")] = sub
	}
	return c
}

// commandTable maps lower-case names to commands.
var commandTable = func() map[string]*CommandInfo {
	table := make(map[string]*CommandInfo, len(redisCommands)+len(kvrocksCommands))
	for _, c := range redisCommands {
		table[c.Name] = c
	}
	for _, c := range kvrocksCommands {
		table[c.Name] = c.kvrocks()
	}
	return table
}()

// redisCommands is every Redis 7.0 command, as reported by COMMAND on
// redis-server 7.0.15. Kvrocks accepts more arguments than Redis for DBSIZE
// (DBSIZE SCAN), LASTSAVE, HSETNX and XLEN, so those take Kvrocks' arity. WAIT
// is marked blocking: it holds the connection until replicas acknowledge.
var redisCommands = []*CommandInfo{
	container("acl", -2,
		cmd("acl|cat", -2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|deluser", -3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|dryrun", -4, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|genpass", -2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|getuser", 3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|help", 2, FlagKeyless, 0, 0, 0),
		cmd("acl|list", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|load", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|log", -2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|save", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|setuser", -3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|users", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("acl|whoami", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
	),
	cmd("append", 3, FlagWrite, 1, 1, 1),
	cmd("asking", 1, FlagKeyless, 0, 0, 0),
	cmd("auth", -2, FlagNoScript|FlagKeyless|FlagLocal, 0, 0, 0),
	cmd("bgrewriteaof", 1, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("bgsave", -1, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("bitcount", -2, FlagReadOnly, 1, 1, 1),
	cmd("bitfield", -2, FlagWrite, 1, 1, 1),
	cmd("bitfield_ro", -2, FlagReadOnly, 1, 1, 1),
	cmd("bitop", -4, FlagWrite|FlagMultiKey, 2, -1, 1),
	cmd("bitpos", -3, FlagReadOnly, 1, 1, 1),
	cmd("blmove", 6, FlagWrite|FlagNoScript|FlagBlocking|FlagMultiKey, 1, 2, 1),
	cmd("blmpop", -5, FlagWrite|FlagBlocking|FlagMultiKey, 0, 0, 0).withKeys(numkeysAt2Keys),
	cmd("blpop", -3, FlagWrite|FlagNoScript|FlagBlocking|FlagMultiKey, 1, -2, 1),
	cmd("brpop", -3, FlagWrite|FlagNoScript|FlagBlocking|FlagMultiKey, 1, -2, 1),
	cmd("brpoplpush", 4, FlagWrite|FlagNoScript|FlagBlocking|FlagMultiKey, 1, 2, 1),
	cmd("bzmpop", -5, FlagWrite|FlagBlocking|FlagMultiKey, 0, 0, 0).withKeys(numkeysAt2Keys),
	cmd("bzpopmax", -3, FlagWrite|FlagNoScript|FlagBlocking|FlagMultiKey, 1, -2, 1),
	cmd("bzpopmin", -3, FlagWrite|FlagNoScript|FlagBlocking|FlagMultiKey, 1, -2, 1),
	container("client", -2,
		cmd("client|caching", 3, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|getname", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|getredir", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|help", 2, FlagKeyless, 0, 0, 0),
		cmd("client|id", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|info", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|kill", -3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|list", -2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|no-evict", 3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|pause", -3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|reply", 3, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|setname", 3, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|tracking", -3, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|trackinginfo", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|unblock", -3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("client|unpause", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	),
	container("cluster", -2,
		cmd("cluster|addslots", -3, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|addslotsrange", -4, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|bumpepoch", 2, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|count-failure-reports", 3, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|countkeysinslot", 3, FlagKeyless, 0, 0, 0),
		cmd("cluster|delslots", -3, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|delslotsrange", -4, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|failover", -2, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|flushslots", 2, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|forget", 3, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|getkeysinslot", 4, FlagKeyless, 0, 0, 0),
		cmd("cluster|help", 2, FlagKeyless, 0, 0, 0),
		cmd("cluster|info", 2, FlagKeyless, 0, 0, 0),
		cmd("cluster|keyslot", 3, FlagKeyless, 0, 0, 0),
		cmd("cluster|links", 2, FlagKeyless, 0, 0, 0),
		cmd("cluster|meet", -4, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|myid", 2, FlagKeyless, 0, 0, 0),
		cmd("cluster|nodes", 2, FlagKeyless, 0, 0, 0),
		cmd("cluster|replicas", 3, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|replicate", 3, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|reset", -2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("cluster|saveconfig", 2, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|set-config-epoch", 3, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|setslot", -4, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|shards", 2, FlagKeyless, 0, 0, 0),
		cmd("cluster|slaves", 3, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("cluster|slots", 2, FlagKeyless, 0, 0, 0),
	),
	container("command", -1,
		cmd("command|count", 2, FlagKeyless|FlagLocal, 0, 0, 0),
		cmd("command|docs", -2, FlagKeyless|FlagLocal, 0, 0, 0),
		cmd("command|getkeys", -4, FlagKeyless|FlagLocal, 0, 0, 0),
		cmd("command|getkeysandflags", -4, FlagKeyless|FlagLocal, 0, 0, 0),
		cmd("command|help", 2, FlagKeyless|FlagLocal, 0, 0, 0),
		cmd("command|info", -2, FlagKeyless|FlagLocal, 0, 0, 0),
		cmd("command|list", -2, FlagKeyless|FlagLocal, 0, 0, 0),
	),
	container("config", -2,
		cmd("config|get", -3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("config|help", 2, FlagKeyless, 0, 0, 0),
		cmd("config|resetstat", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("config|rewrite", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("config|set", -4, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	),
	cmd("copy", -3, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("dbsize", -1, FlagReadOnly|FlagKeyless|FlagFanout, 0, 0, 0),
	cmd("debug", -2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("decr", 2, FlagWrite, 1, 1, 1),
	cmd("decrby", 3, FlagWrite, 1, 1, 1),
	cmd("del", -2, FlagWrite|FlagMultiKey, 1, -1, 1),
	cmd("discard", 1, FlagNoScript|FlagKeyless|FlagTransaction, 0, 0, 0),
	cmd("dump", 2, FlagReadOnly, 1, 1, 1),
	cmd("echo", 2, FlagKeyless|FlagLocal, 0, 0, 0),
	cmd("eval", -3, FlagNoScript|FlagMultiKey, 0, 0, 0).withKeys(evalKeys),
	cmd("eval_ro", -3, FlagReadOnly|FlagNoScript|FlagMultiKey, 0, 0, 0).withKeys(evalKeys),
	cmd("evalsha", -3, FlagNoScript|FlagMultiKey, 0, 0, 0).withKeys(evalKeys),
	cmd("evalsha_ro", -3, FlagReadOnly|FlagNoScript|FlagMultiKey, 0, 0, 0).withKeys(evalKeys),
	cmd("exec", 1, FlagNoScript|FlagKeyless|FlagTransaction, 0, 0, 0),
	cmd("exists", -2, FlagReadOnly|FlagMultiKey, 1, -1, 1),
	cmd("expire", -3, FlagWrite, 1, 1, 1),
	cmd("expireat", -3, FlagWrite, 1, 1, 1),
	cmd("expiretime", 2, FlagReadOnly, 1, 1, 1),
	cmd("failover", -1, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("fcall", -3, FlagNoScript|FlagMultiKey, 0, 0, 0).withKeys(evalKeys),
	cmd("fcall_ro", -3, FlagReadOnly|FlagNoScript|FlagMultiKey, 0, 0, 0).withKeys(evalKeys),
	cmd("flushall", -1, FlagWrite|FlagKeyless|FlagFanout, 0, 0, 0),
	cmd("flushdb", -1, FlagWrite|FlagKeyless|FlagFanout, 0, 0, 0),
	container("function", -2,
		cmd("function|delete", 3, FlagWrite|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("function|dump", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("function|flush", -2, FlagWrite|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("function|help", 2, FlagKeyless, 0, 0, 0),
		cmd("function|kill", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("function|list", -2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("function|load", -3, FlagWrite|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("function|restore", -3, FlagWrite|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("function|stats", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
	),
	cmd("geoadd", -5, FlagWrite, 1, 1, 1),
	cmd("geodist", -4, FlagReadOnly, 1, 1, 1),
	cmd("geohash", -2, FlagReadOnly, 1, 1, 1),
	cmd("geopos", -2, FlagReadOnly, 1, 1, 1),
	cmd("georadius", -6, FlagWrite|FlagMultiKey, 1, 1, 1).withKeys(georadiusKeys),
	cmd("georadius_ro", -6, FlagReadOnly, 1, 1, 1),
	cmd("georadiusbymember", -5, FlagWrite|FlagMultiKey, 1, 1, 1).withKeys(georadiusKeys),
	cmd("georadiusbymember_ro", -5, FlagReadOnly, 1, 1, 1),
	cmd("geosearch", -7, FlagReadOnly, 1, 1, 1),
	cmd("geosearchstore", -8, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("get", 2, FlagReadOnly, 1, 1, 1),
	cmd("getbit", 3, FlagReadOnly, 1, 1, 1),
	cmd("getdel", 2, FlagWrite, 1, 1, 1),
	cmd("getex", -2, FlagWrite, 1, 1, 1),
	cmd("getrange", 4, FlagReadOnly, 1, 1, 1),
	cmd("getset", 3, FlagWrite, 1, 1, 1),
	cmd("hdel", -3, FlagWrite, 1, 1, 1),
	cmd("hello", -1, FlagNoScript|FlagKeyless|FlagLocal, 0, 0, 0),
	cmd("hexists", 3, FlagReadOnly, 1, 1, 1),
	cmd("hget", 3, FlagReadOnly, 1, 1, 1),
	cmd("hgetall", 2, FlagReadOnly, 1, 1, 1),
	cmd("hincrby", 4, FlagWrite, 1, 1, 1),
	cmd("hincrbyfloat", 4, FlagWrite, 1, 1, 1),
	cmd("hkeys", 2, FlagReadOnly, 1, 1, 1),
	cmd("hlen", 2, FlagReadOnly, 1, 1, 1),
	cmd("hmget", -3, FlagReadOnly, 1, 1, 1),
	cmd("hmset", -4, FlagWrite, 1, 1, 1),
	cmd("hrandfield", -2, FlagReadOnly, 1, 1, 1),
	cmd("hscan", -3, FlagReadOnly, 1, 1, 1),
	cmd("hset", -4, FlagWrite, 1, 1, 1),
	cmd("hsetnx", -4, FlagWrite, 1, 1, 1),
	cmd("hstrlen", 3, FlagReadOnly, 1, 1, 1),
	cmd("hvals", 2, FlagReadOnly, 1, 1, 1),
	cmd("incr", 2, FlagWrite, 1, 1, 1),
	cmd("incrby", 3, FlagWrite, 1, 1, 1),
	cmd("incrbyfloat", 3, FlagWrite, 1, 1, 1),
	cmd("info", -1, FlagKeyless, 0, 0, 0),
	cmd("keys", 2, FlagReadOnly|FlagKeyless|FlagFanout, 0, 0, 0),
	cmd("lastsave", -1, FlagKeyless, 0, 0, 0),
	container("latency", -2,
		cmd("latency|doctor", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("latency|graph", 3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("latency|help", 2, FlagKeyless, 0, 0, 0),
		cmd("latency|histogram", -2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("latency|history", 3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("latency|latest", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("latency|reset", -2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	),
	cmd("lcs", -3, FlagReadOnly|FlagMultiKey, 1, 2, 1),
	cmd("lindex", 3, FlagReadOnly, 1, 1, 1),
	cmd("linsert", 5, FlagWrite, 1, 1, 1),
	cmd("llen", 2, FlagReadOnly, 1, 1, 1),
	cmd("lmove", 5, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("lmpop", -4, FlagWrite|FlagMultiKey, 0, 0, 0).withKeys(numkeysAt1Keys),
	cmd("lolwut", -1, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("lpop", -2, FlagWrite, 1, 1, 1),
	cmd("lpos", -3, FlagReadOnly, 1, 1, 1),
	cmd("lpush", -3, FlagWrite, 1, 1, 1),
	cmd("lpushx", -3, FlagWrite, 1, 1, 1),
	cmd("lrange", 4, FlagReadOnly, 1, 1, 1),
	cmd("lrem", 4, FlagWrite, 1, 1, 1),
	cmd("lset", 4, FlagWrite, 1, 1, 1),
	cmd("ltrim", 4, FlagWrite, 1, 1, 1),
	container("memory", -2,
		cmd("memory|doctor", 2, FlagKeyless, 0, 0, 0),
		cmd("memory|help", 2, FlagKeyless, 0, 0, 0),
		cmd("memory|malloc-stats", 2, FlagKeyless, 0, 0, 0),
		cmd("memory|purge", 2, FlagKeyless, 0, 0, 0),
		cmd("memory|stats", 2, FlagKeyless, 0, 0, 0),
		cmd("memory|usage", -3, FlagReadOnly, 2, 2, 1),
	),
	cmd("mget", -2, FlagReadOnly|FlagMultiKey, 1, -1, 1),
	cmd("migrate", -6, FlagWrite|FlagMultiKey, 3, 3, 1).withKeys(migrateKeys),
	container("module", -2,
		cmd("module|help", 2, FlagKeyless, 0, 0, 0),
		cmd("module|list", 2, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("module|load", -3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("module|loadex", -3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("module|unload", 3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	),
	cmd("monitor", 1, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("move", 3, FlagWrite, 1, 1, 1),
	cmd("mset", -3, FlagWrite|FlagMultiKey, 1, -1, 2),
	cmd("msetnx", -3, FlagWrite|FlagMultiKey, 1, -1, 2),
	cmd("multi", 1, FlagNoScript|FlagKeyless|FlagTransaction, 0, 0, 0),
	container("object", -2,
		cmd("object|encoding", 3, FlagReadOnly, 2, 2, 1),
		cmd("object|freq", 3, FlagReadOnly, 2, 2, 1),
		cmd("object|help", 2, FlagKeyless, 0, 0, 0),
		cmd("object|idletime", 3, FlagReadOnly, 2, 2, 1),
		cmd("object|refcount", 3, FlagReadOnly, 2, 2, 1),
	),
	cmd("persist", 2, FlagWrite, 1, 1, 1),
	cmd("pexpire", -3, FlagWrite, 1, 1, 1),
	cmd("pexpireat", -3, FlagWrite, 1, 1, 1),
	cmd("pexpiretime", 2, FlagReadOnly, 1, 1, 1),
	cmd("pfadd", -2, FlagWrite, 1, 1, 1),
	cmd("pfcount", -2, FlagReadOnly|FlagMultiKey, 1, -1, 1),
	cmd("pfdebug", 3, FlagWrite|FlagAdmin, 2, 2, 1),
	cmd("pfmerge", -2, FlagWrite|FlagMultiKey, 1, -1, 1),
	cmd("pfselftest", 1, FlagAdmin|FlagKeyless, 0, 0, 0),
	cmd("ping", -1, FlagKeyless|FlagLocal, 0, 0, 0),
	cmd("psetex", 4, FlagWrite, 1, 1, 1),
	cmd("psubscribe", -2, FlagPubSub|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("psync", -3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("pttl", 2, FlagReadOnly, 1, 1, 1),
	cmd("publish", 3, FlagPubSub|FlagKeyless, 0, 0, 0),
	container("pubsub", -2,
		cmd("pubsub|channels", -2, FlagPubSub|FlagKeyless, 0, 0, 0),
		cmd("pubsub|help", 2, FlagKeyless, 0, 0, 0),
		cmd("pubsub|numpat", 2, FlagPubSub|FlagKeyless, 0, 0, 0),
		cmd("pubsub|numsub", -2, FlagPubSub|FlagKeyless, 0, 0, 0),
		cmd("pubsub|shardchannels", -2, FlagPubSub|FlagKeyless, 0, 0, 0),
		cmd("pubsub|shardnumsub", -2, FlagPubSub|FlagKeyless, 0, 0, 0),
	),
	cmd("punsubscribe", -1, FlagPubSub|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("quit", -1, FlagNoScript|FlagKeyless|FlagLocal, 0, 0, 0),
	cmd("randomkey", 1, FlagReadOnly|FlagKeyless|FlagFanout, 0, 0, 0),
	cmd("readonly", 1, FlagKeyless|FlagLocal, 0, 0, 0),
	cmd("readwrite", 1, FlagKeyless|FlagLocal, 0, 0, 0),
	cmd("rename", 3, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("renamenx", 3, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("replconf", -1, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("replicaof", 3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("reset", 1, FlagNoScript|FlagKeyless|FlagLocal, 0, 0, 0),
	cmd("restore", -4, FlagWrite, 1, 1, 1),
	cmd("restore-asking", -4, FlagWrite, 1, 1, 1),
	cmd("role", 1, FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("rpop", -2, FlagWrite, 1, 1, 1),
	cmd("rpoplpush", 3, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("rpush", -3, FlagWrite, 1, 1, 1),
	cmd("rpushx", -3, FlagWrite, 1, 1, 1),
	cmd("sadd", -3, FlagWrite, 1, 1, 1),
	cmd("save", 1, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("scan", -2, FlagReadOnly|FlagKeyless|FlagFanout, 0, 0, 0),
	cmd("scard", 2, FlagReadOnly, 1, 1, 1),
	container("script", -2,
		cmd("script|debug", 3, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("script|exists", -3, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("script|flush", -2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("script|help", 2, FlagKeyless, 0, 0, 0),
		cmd("script|kill", 2, FlagNoScript|FlagKeyless, 0, 0, 0),
		cmd("script|load", 3, FlagNoScript|FlagKeyless, 0, 0, 0),
	),
	cmd("sdiff", -2, FlagReadOnly|FlagMultiKey, 1, -1, 1),
	cmd("sdiffstore", -3, FlagWrite|FlagMultiKey, 1, -1, 1),
	cmd("select", 2, FlagKeyless|FlagLocal, 0, 0, 0),
	cmd("set", -3, FlagWrite, 1, 1, 1),
	cmd("setbit", 4, FlagWrite, 1, 1, 1),
	cmd("setex", 4, FlagWrite, 1, 1, 1),
	cmd("setnx", 3, FlagWrite, 1, 1, 1),
	cmd("setrange", 4, FlagWrite, 1, 1, 1),
	cmd("shutdown", -1, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("sinter", -2, FlagReadOnly|FlagMultiKey, 1, -1, 1),
	cmd("sintercard", -3, FlagReadOnly|FlagMultiKey, 0, 0, 0).withKeys(numkeysAt1Keys),
	cmd("sinterstore", -3, FlagWrite|FlagMultiKey, 1, -1, 1),
	cmd("sismember", 3, FlagReadOnly, 1, 1, 1),
	cmd("slaveof", 3, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	container("slowlog", -2,
		cmd("slowlog|get", -2, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("slowlog|help", 2, FlagKeyless, 0, 0, 0),
		cmd("slowlog|len", 2, FlagAdmin|FlagKeyless, 0, 0, 0),
		cmd("slowlog|reset", 2, FlagAdmin|FlagKeyless, 0, 0, 0),
	),
	cmd("smembers", 2, FlagReadOnly, 1, 1, 1),
	cmd("smismember", -3, FlagReadOnly, 1, 1, 1),
	cmd("smove", 4, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("sort", -2, FlagWrite|FlagMultiKey, 1, 1, 1).withKeys(sortKeys),
	cmd("sort_ro", -2, FlagReadOnly, 1, 1, 1).withKeys(sortROKeys),
	cmd("spop", -2, FlagWrite, 1, 1, 1),
	cmd("spublish", 3, FlagPubSub, 1, 1, 1),
	cmd("srandmember", -2, FlagReadOnly, 1, 1, 1),
	cmd("srem", -3, FlagWrite, 1, 1, 1),
	cmd("sscan", -3, FlagReadOnly, 1, 1, 1),
	cmd("ssubscribe", -2, FlagPubSub|FlagNoScript|FlagMultiKey, 1, -1, 1),
	cmd("strlen", 2, FlagReadOnly, 1, 1, 1),
	cmd("subscribe", -2, FlagPubSub|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("substr", 4, FlagReadOnly, 1, 1, 1),
	cmd("sunion", -2, FlagReadOnly|FlagMultiKey, 1, -1, 1),
	cmd("sunionstore", -3, FlagWrite|FlagMultiKey, 1, -1, 1),
	cmd("sunsubscribe", -1, FlagPubSub|FlagNoScript|FlagMultiKey, 1, -1, 1),
	cmd("swapdb", 3, FlagWrite|FlagKeyless, 0, 0, 0),
	cmd("sync", 1, FlagAdmin|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("time", 1, FlagKeyless, 0, 0, 0),
	cmd("touch", -2, FlagReadOnly|FlagMultiKey, 1, -1, 1),
	cmd("ttl", 2, FlagReadOnly, 1, 1, 1),
	cmd("type", 2, FlagReadOnly, 1, 1, 1),
	cmd("unlink", -2, FlagWrite|FlagMultiKey, 1, -1, 1),
	cmd("unsubscribe", -1, FlagPubSub|FlagNoScript|FlagKeyless, 0, 0, 0),
	cmd("unwatch", 1, FlagNoScript|FlagKeyless|FlagTransaction, 0, 0, 0),
	cmd("wait", 3, FlagNoScript|FlagKeyless|FlagBlocking, 0, 0, 0),
	cmd("watch", -2, FlagNoScript|FlagMultiKey|FlagTransaction, 1, -1, 1),
	cmd("xack", -4, FlagWrite, 1, 1, 1),
	cmd("xadd", -5, FlagWrite, 1, 1, 1),
	cmd("xautoclaim", -6, FlagWrite, 1, 1, 1),
	cmd("xclaim", -6, FlagWrite, 1, 1, 1),
	cmd("xdel", -3, FlagWrite, 1, 1, 1),
	container("xgroup", -2,
		cmd("xgroup|create", -5, FlagWrite, 2, 2, 1),
		cmd("xgroup|createconsumer", 5, FlagWrite, 2, 2, 1),
		cmd("xgroup|delconsumer", 5, FlagWrite, 2, 2, 1),
		cmd("xgroup|destroy", 4, FlagWrite, 2, 2, 1),
		cmd("xgroup|help", 2, FlagKeyless, 0, 0, 0),
		cmd("xgroup|setid", -5, FlagWrite, 2, 2, 1),
	),
	container("xinfo", -2,
		cmd("xinfo|consumers", 4, FlagReadOnly, 2, 2, 1),
		cmd("xinfo|groups", 3, FlagReadOnly, 2, 2, 1),
		cmd("xinfo|help", 2, FlagKeyless, 0, 0, 0),
		cmd("xinfo|stream", -3, FlagReadOnly, 2, 2, 1),
	),
	cmd("xlen", -2, FlagReadOnly, 1, 1, 1),
	cmd("xpending", -3, FlagReadOnly, 1, 1, 1),
	cmd("xrange", -4, FlagReadOnly, 1, 1, 1),
	cmd("xread", -4, FlagReadOnly|FlagBlocking|FlagMultiKey, 0, 0, 0).withKeys(xreadKeys),
	cmd("xreadgroup", -7, FlagWrite|FlagBlocking|FlagMultiKey, 0, 0, 0).withKeys(xreadKeys),
	cmd("xrevrange", -4, FlagReadOnly, 1, 1, 1),
	cmd("xsetid", -3, FlagWrite, 1, 1, 1),
	cmd("xtrim", -4, FlagWrite, 1, 1, 1),
	cmd("zadd", -4, FlagWrite, 1, 1, 1),
	cmd("zcard", 2, FlagReadOnly, 1, 1, 1),
	cmd("zcount", 4, FlagReadOnly, 1, 1, 1),
	cmd("zdiff", -3, FlagReadOnly|FlagMultiKey, 0, 0, 0).withKeys(numkeysAt1Keys),
	cmd("zdiffstore", -4, FlagWrite|FlagMultiKey, 1, 1, 1).withKeys(storeNumkeysKeys),
	cmd("zincrby", 4, FlagWrite, 1, 1, 1),
	cmd("zinter", -3, FlagReadOnly|FlagMultiKey, 0, 0, 0).withKeys(numkeysAt1Keys),
	cmd("zintercard", -3, FlagReadOnly|FlagMultiKey, 0, 0, 0).withKeys(numkeysAt1Keys),
	cmd("zinterstore", -4, FlagWrite|FlagMultiKey, 1, 1, 1).withKeys(storeNumkeysKeys),
	cmd("zlexcount", 4, FlagReadOnly, 1, 1, 1),
	cmd("zmpop", -4, FlagWrite|FlagMultiKey, 0, 0, 0).withKeys(numkeysAt1Keys),
	cmd("zmscore", -3, FlagReadOnly, 1, 1, 1),
	cmd("zpopmax", -2, FlagWrite, 1, 1, 1),
	cmd("zpopmin", -2, FlagWrite, 1, 1, 1),
	cmd("zrandmember", -2, FlagReadOnly, 1, 1, 1),
	cmd("zrange", -4, FlagReadOnly, 1, 1, 1),
	cmd("zrangebylex", -4, FlagReadOnly, 1, 1, 1),
	cmd("zrangebyscore", -4, FlagReadOnly, 1, 1, 1),
	cmd("zrangestore", -5, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("zrank", 3, FlagReadOnly, 1, 1, 1),
	cmd("zrem", -3, FlagWrite, 1, 1, 1),
	cmd("zremrangebylex", 4, FlagWrite, 1, 1, 1),
	cmd("zremrangebyrank", 4, FlagWrite, 1, 1, 1),
	cmd("zremrangebyscore", 4, FlagWrite, 1, 1, 1),
	cmd("zrevrange", -4, FlagReadOnly, 1, 1, 1),
	cmd("zrevrangebylex", -4, FlagReadOnly, 1, 1, 1),
	cmd("zrevrangebyscore", -4, FlagReadOnly, 1, 1, 1),
	cmd("zrevrank", 3, FlagReadOnly, 1, 1, 1),
	cmd("zscan", -3, FlagReadOnly, 1, 1, 1),
	cmd("zscore", 3, FlagReadOnly, 1, 1, 1),
	cmd("zunion", -3, FlagReadOnly|FlagMultiKey, 0, 0, 0).withKeys(numkeysAt1Keys),
	cmd("zunionstore", -4, FlagWrite|FlagMultiKey, 1, 1, 1).withKeys(storeNumkeysKeys),
}

// kvrocksCommands are the Kvrocks commands Redis 7.0 does not have, with the
// arity and key positions Kvrocks registers them with (apache/kvrocks,
// src/commands/cmd_*.cc). Probabilistic, JSON and time-series commands route
// by their key; FT.* index names and TS.M* label filters are not keys.
var kvrocksCommands = []*CommandInfo{
	// Strings and hashes.
	cmd("cas", -4, FlagWrite, 1, 1, 1),
	cmd("cad", 3, FlagWrite, 1, 1, 1),
	cmd("hrangebylex", -4, FlagReadOnly, 1, 1, 1),

	// Sorted integers.
	cmd("siadd", -3, FlagWrite, 1, 1, 1),
	cmd("sirem", -3, FlagWrite, 1, 1, 1),
	cmd("sicard", 2, FlagReadOnly, 1, 1, 1),
	cmd("siexists", -3, FlagReadOnly, 1, 1, 1),
	cmd("sirange", -4, FlagReadOnly, 1, 1, 1),
	cmd("sirevrange", -4, FlagReadOnly, 1, 1, 1),
	cmd("sirangebyvalue", -4, FlagReadOnly, 1, 1, 1),
	cmd("sirevrangebyvalue", -4, FlagReadOnly, 1, 1, 1),

	// Bloom filters.
	cmd("bf.reserve", -4, FlagWrite, 1, 1, 1),
	cmd("bf.add", 3, FlagWrite, 1, 1, 1),
	cmd("bf.madd", -3, FlagWrite, 1, 1, 1),
	cmd("bf.insert", -4, FlagWrite, 1, 1, 1),
	cmd("bf.exists", 3, FlagReadOnly, 1, 1, 1),
	cmd("bf.mexists", -3, FlagReadOnly, 1, 1, 1),
	cmd("bf.info", -2, FlagReadOnly, 1, 1, 1),
	cmd("bf.card", 2, FlagReadOnly, 1, 1, 1),

	// Cuckoo filters.
	cmd("cf.reserve", -3, FlagWrite, 1, 1, 1),
	cmd("cf.add", 3, FlagWrite, 1, 1, 1),
	cmd("cf.insert", -4, FlagWrite, 1, 1, 1),

	// Count-min sketches.
	cmd("cms.incrby", -4, FlagWrite, 1, 1, 1),
	cmd("cms.info", 2, FlagReadOnly, 1, 1, 1),
	cmd("cms.initbydim", 4, FlagWrite, 1, 1, 1),
	cmd("cms.initbyprob", 4, FlagWrite, 1, 1, 1),
	cmd("cms.merge", -4, FlagWrite|FlagMultiKey, 0, 0, 0).withKeys(storeNumkeysKeys),
	cmd("cms.query", -3, FlagReadOnly, 1, 1, 1),

	// Top-K.
	cmd("topk.add", 3, FlagWrite, 1, 1, 1),
	cmd("topk.list", 2, FlagReadOnly, 1, 1, 1),
	cmd("topk.info", 2, FlagReadOnly, 1, 1, 1),
	cmd("topk.query", 3, FlagReadOnly, 1, 1, 1),
	cmd("topk.reserve", -3, FlagWrite, 1, 1, 1),

	// T-digests.
	cmd("tdigest.create", -2, FlagWrite, 1, 1, 1),
	cmd("tdigest.info", 2, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.add", -3, FlagWrite, 1, 1, 1),
	cmd("tdigest.min", 2, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.max", 2, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.reset", 2, FlagWrite, 1, 1, 1),
	cmd("tdigest.quantile", -3, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.cdf", -3, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.rank", -3, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.revrank", -3, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.byrank", -3, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.byrevrank", -3, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.trimmed_mean", 4, FlagReadOnly, 1, 1, 1),
	cmd("tdigest.merge", -4, FlagWrite|FlagMultiKey, 0, 0, 0).withKeys(storeNumkeysKeys),

	// JSON.
	cmd("json.set", -4, FlagWrite, 1, 1, 1),
	cmd("json.get", -2, FlagReadOnly, 1, 1, 1),
	cmd("json.info", 2, FlagReadOnly, 1, 1, 1),
	cmd("json.type", -2, FlagReadOnly, 1, 1, 1),
	cmd("json.arrappend", -4, FlagWrite, 1, 1, 1),
	cmd("json.arrinsert", -5, FlagWrite, 1, 1, 1),
	cmd("json.arrtrim", 5, FlagWrite, 1, 1, 1),
	cmd("json.arrindex", -4, FlagReadOnly, 1, 1, 1),
	cmd("json.arrlen", -2, FlagReadOnly, 1, 1, 1),
	cmd("json.arrpop", -2, FlagWrite, 1, 1, 1),
	cmd("json.clear", -2, FlagWrite, 1, 1, 1),
	cmd("json.toggle", -2, FlagWrite, 1, 1, 1),
	cmd("json.objkeys", -2, FlagReadOnly, 1, 1, 1),
	cmd("json.objlen", -2, FlagReadOnly, 1, 1, 1),
	cmd("json.strappend", -3, FlagWrite, 1, 1, 1),
	cmd("json.strlen", -2, FlagReadOnly, 1, 1, 1),
	cmd("json.del", -2, FlagWrite, 1, 1, 1),
	cmd("json.forget", -2, FlagWrite, 1, 1, 1),
	cmd("json.numincrby", 4, FlagWrite, 1, 1, 1),
	cmd("json.nummultby", 4, FlagWrite, 1, 1, 1),
	cmd("json.merge", 4, FlagWrite, 1, 1, 1),
	cmd("json.resp", -2, FlagReadOnly, 1, 1, 1),
	cmd("json.mget", -3, FlagReadOnly|FlagMultiKey, 1, -2, 1),
	cmd("json.mset", -4, FlagWrite|FlagMultiKey, 1, -1, 3),
	cmd("json.debug", -2, FlagReadOnly, 0, 0, 0).withKeys(jsonDebugKeys),

	// Time series.
	cmd("ts.create", -2, FlagWrite, 1, 1, 1),
	cmd("ts.alter", -2, FlagWrite, 1, 1, 1),
	cmd("ts.add", -4, FlagWrite, 1, 1, 1),
	cmd("ts.madd", -4, FlagWrite|FlagMultiKey, 1, -3, 3),
	cmd("ts.incrby", -3, FlagWrite, 1, 1, 1),
	cmd("ts.decrby", -3, FlagWrite, 1, 1, 1),
	cmd("ts.del", 4, FlagWrite, 1, 1, 1),
	cmd("ts.createrule", -5, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("ts.deleterule", 3, FlagWrite|FlagMultiKey, 1, 2, 1),
	cmd("ts.get", -2, FlagReadOnly, 1, 1, 1),
	cmd("ts.info", -2, FlagReadOnly, 1, 1, 1),
	cmd("ts.range", -4, FlagReadOnly, 1, 1, 1),
	cmd("ts.revrange", -4, FlagReadOnly, 1, 1, 1),
	cmd("ts.mget", -3, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("ts.mrange", -5, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("ts.mrevrange", -5, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("ts.queryindex", -2, FlagReadOnly|FlagKeyless, 0, 0, 0),

	// Search.
	cmd("ft.create", -2, FlagWrite|FlagKeyless|FlagNoScript, 0, 0, 0),
	cmd("ft.dropindex", 2, FlagWrite|FlagKeyless|FlagNoScript, 0, 0, 0),
	cmd("ft.search", -3, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("ft.searchsql", -2, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("ft.explain", -3, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("ft.explainsql", -2, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("ft.info", 2, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("ft._list", 1, FlagReadOnly|FlagKeyless, 0, 0, 0),
	cmd("ft.tagvals", 3, FlagReadOnly|FlagKeyless, 0, 0, 0),

	// Pub/Sub.
	cmd("mpublish", -3, FlagPubSub|FlagKeyless, 0, 0, 0),

	// Cluster, replication and server administration.
	cmd("clusterx", -2, FlagAdmin|FlagKeyless|FlagNoScript, 0, 0, 0),
	cmd("namespace", -3, FlagAdmin|FlagKeyless, 0, 0, 0),
	cmd("compact", 1, FlagAdmin|FlagKeyless|FlagNoScript, 0, 0, 0),
	cmd("flushbackup", 1, FlagAdmin|FlagKeyless|FlagNoScript, 0, 0, 0),
	cmd("perflog", -2, FlagAdmin|FlagKeyless, 0, 0, 0),
	cmd("stats", 1, FlagKeyless, 0, 0, 0),
	cmd("disk", 3, FlagReadOnly, 2, 2, 1),
	cmd("rdb", -3, FlagWrite|FlagAdmin|FlagKeyless, 0, 0, 0),
	cmd("sst", -3, FlagWrite|FlagAdmin|FlagKeyless, 0, 0, 0),
	cmd("applybatch", -2, FlagWrite|FlagAdmin|FlagKeyless, 0, 0, 0),
	cmd("pollupdates", -2, FlagReadOnly|FlagAdmin|FlagKeyless, 0, 0, 0),
	cmd("_fetch_meta", 1, FlagAdmin|FlagKeyless|FlagNoScript, 0, 0, 0),
	cmd("_fetch_file", 2, FlagAdmin|FlagKeyless|FlagNoScript, 0, 0, 0),
	cmd("_db_name", 1, FlagAdmin|FlagKeyless, 0, 0, 0),
}
