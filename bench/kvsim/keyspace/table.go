package keyspace

// table lists the implemented commands with Redis 7.0's arity, write flag
// and key positions (COMMAND INFO's first, last and step).
var table = indexCommands(commands)

func indexCommands(cmds []*Command) map[string]*Command {
	t := make(map[string]*Command, len(cmds))
	for _, c := range cmds {
		t[c.Name] = c
	}
	return t
}

func rd(name string, arity, first, last, step int, run func(*Keyspace, []byte, [][]byte) []byte) *Command {
	return &Command{Name: name, Arity: arity, FirstKey: first, LastKey: last, Step: step, run: run}
}

func wr(name string, arity, first, last, step int, run func(*Keyspace, []byte, [][]byte) []byte) *Command {
	c := rd(name, arity, first, last, step, run)
	c.Write = true
	return c
}

var commands = []*Command{
	// strings
	rd("get", 2, 1, 1, 1, cmdGet),
	wr("set", -3, 1, 1, 1, cmdSet),
	wr("setnx", 3, 1, 1, 1, cmdSetNX),
	wr("setex", 4, 1, 1, 1, cmdSetEX),
	wr("psetex", 4, 1, 1, 1, cmdPSetEX),
	wr("getset", 3, 1, 1, 1, cmdGetSet),
	wr("getdel", 2, 1, 1, 1, cmdGetDel),
	wr("getex", -2, 1, 1, 1, cmdGetEx),
	rd("mget", -2, 1, -1, 1, cmdMGet),
	wr("mset", -3, 1, -1, 2, cmdMSet),
	wr("msetnx", -3, 1, -1, 2, cmdMSetNX),
	wr("incr", 2, 1, 1, 1, cmdIncr),
	wr("decr", 2, 1, 1, 1, cmdDecr),
	wr("incrby", 3, 1, 1, 1, cmdIncrBy),
	wr("decrby", 3, 1, 1, 1, cmdDecrBy),
	wr("incrbyfloat", 3, 1, 1, 1, cmdIncrByFloat),
	wr("append", 3, 1, 1, 1, cmdAppend),
	rd("strlen", 2, 1, 1, 1, cmdStrlen),
	rd("getrange", 4, 1, 1, 1, cmdGetRange),
	wr("setrange", 4, 1, 1, 1, cmdSetRange),
	// keys
	wr("del", -2, 1, -1, 1, cmdDel),
	wr("unlink", -2, 1, -1, 1, cmdDel),
	rd("exists", -2, 1, -1, 1, cmdExists),
	rd("touch", -2, 1, -1, 1, cmdExists),
	wr("expire", -3, 1, 1, 1, cmdExpire),
	wr("pexpire", -3, 1, 1, 1, cmdPExpire),
	wr("expireat", -3, 1, 1, 1, cmdExpireAt),
	wr("pexpireat", -3, 1, 1, 1, cmdPExpireAt),
	wr("persist", 2, 1, 1, 1, cmdPersist),
	rd("ttl", 2, 1, 1, 1, cmdTTL),
	rd("pttl", 2, 1, 1, 1, cmdPTTL),
	rd("expiretime", 2, 1, 1, 1, cmdExpireTime),
	rd("pexpiretime", 2, 1, 1, 1, cmdPExpireTime),
	rd("type", 2, 1, 1, 1, cmdType),
	wr("rename", 3, 1, 2, 1, cmdRename),
	wr("renamenx", 3, 1, 2, 1, cmdRenameNX),
	wr("copy", -3, 1, 2, 1, cmdCopy),
	rd("scan", -2, 0, 0, 0, cmdScan),
	rd("keys", 2, 0, 0, 0, cmdKeys),
	rd("dbsize", 1, 0, 0, 0, cmdDBSize),
	rd("randomkey", 1, 0, 0, 0, cmdRandomKey),
	wr("flushdb", -1, 0, 0, 0, cmdFlush),
	wr("flushall", -1, 0, 0, 0, cmdFlush),
	// lists
	wr("lpush", -3, 1, 1, 1, cmdLPush),
	wr("rpush", -3, 1, 1, 1, cmdRPush),
	wr("lpushx", -3, 1, 1, 1, cmdLPushX),
	wr("rpushx", -3, 1, 1, 1, cmdRPushX),
	wr("lpop", -2, 1, 1, 1, cmdLPop),
	wr("rpop", -2, 1, 1, 1, cmdRPop),
	rd("llen", 2, 1, 1, 1, cmdLLen),
	rd("lrange", 4, 1, 1, 1, cmdLRange),
	rd("lindex", 3, 1, 1, 1, cmdLIndex),
	wr("lset", 4, 1, 1, 1, cmdLSet),
	wr("lrem", 4, 1, 1, 1, cmdLRem),
	wr("ltrim", 4, 1, 1, 1, cmdLTrim),
	wr("linsert", 5, 1, 1, 1, cmdLInsert),
	rd("lpos", -3, 1, 1, 1, cmdLPos),
	// hashes
	wr("hset", -4, 1, 1, 1, cmdHSet),
	wr("hsetnx", 4, 1, 1, 1, cmdHSetNX),
	rd("hget", 3, 1, 1, 1, cmdHGet),
	wr("hmset", -4, 1, 1, 1, cmdHMSet),
	rd("hmget", -3, 1, 1, 1, cmdHMGet),
	rd("hgetall", 2, 1, 1, 1, cmdHGetAll),
	wr("hdel", -3, 1, 1, 1, cmdHDel),
	rd("hlen", 2, 1, 1, 1, cmdHLen),
	rd("hexists", 3, 1, 1, 1, cmdHExists),
	wr("hincrby", 4, 1, 1, 1, cmdHIncrBy),
	wr("hincrbyfloat", 4, 1, 1, 1, cmdHIncrByFloat),
	rd("hkeys", 2, 1, 1, 1, cmdHKeys),
	rd("hvals", 2, 1, 1, 1, cmdHVals),
	rd("hstrlen", 3, 1, 1, 1, cmdHStrlen),
	rd("hscan", -3, 1, 1, 1, cmdHScan),
	// sets
	wr("sadd", -3, 1, 1, 1, cmdSAdd),
	wr("srem", -3, 1, 1, 1, cmdSRem),
	rd("smembers", 2, 1, 1, 1, cmdSMembers),
	rd("sismember", 3, 1, 1, 1, cmdSIsMember),
	rd("smismember", -3, 1, 1, 1, cmdSMIsMember),
	rd("scard", 2, 1, 1, 1, cmdSCard),
	wr("spop", -2, 1, 1, 1, cmdSPop),
	rd("srandmember", -2, 1, 1, 1, cmdSRandMember),
	wr("smove", 4, 1, 2, 1, cmdSMove),
	rd("sinter", -2, 1, -1, 1, cmdSInter),
	rd("sunion", -2, 1, -1, 1, cmdSUnion),
	rd("sdiff", -2, 1, -1, 1, cmdSDiff),
	wr("sinterstore", -3, 1, -1, 1, cmdSInterStore),
	wr("sunionstore", -3, 1, -1, 1, cmdSUnionStore),
	wr("sdiffstore", -3, 1, -1, 1, cmdSDiffStore),
	rd("sscan", -3, 1, 1, 1, cmdSScan),
	// sorted sets
	wr("zadd", -4, 1, 1, 1, cmdZAdd),
	wr("zrem", -3, 1, 1, 1, cmdZRem),
	rd("zcard", 2, 1, 1, 1, cmdZCard),
	rd("zscore", 3, 1, 1, 1, cmdZScore),
	rd("zmscore", -3, 1, 1, 1, cmdZMScore),
	wr("zincrby", 4, 1, 1, 1, cmdZIncrBy),
	rd("zrank", 3, 1, 1, 1, cmdZRank),
	rd("zrevrank", 3, 1, 1, 1, cmdZRevRank),
	rd("zrange", -4, 1, 1, 1, cmdZRange),
	rd("zrevrange", -4, 1, 1, 1, cmdZRevRange),
	rd("zrangebyscore", -4, 1, 1, 1, cmdZRangeByScore),
	rd("zrevrangebyscore", -4, 1, 1, 1, cmdZRevRangeByScore),
	rd("zcount", 4, 1, 1, 1, cmdZCount),
	wr("zpopmin", -2, 1, 1, 1, cmdZPopMin),
	wr("zpopmax", -2, 1, 1, 1, cmdZPopMax),
	wr("zremrangebyrank", 4, 1, 1, 1, cmdZRemRangeByRank),
	wr("zremrangebyscore", 4, 1, 1, 1, cmdZRemRangeByScore),
	rd("zscan", -3, 1, 1, 1, cmdZScan),
}
