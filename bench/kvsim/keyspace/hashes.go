package keyspace

import "math"

// hashForWrite returns the hash at key, created when absent; nil on WRONGTYPE.
func (k *Keyspace) hashForWrite(key []byte) *value {
	v, ok := k.lookupKind(key, kindHash)
	if !ok {
		return nil
	}
	if v == nil {
		v = &value{kind: kindHash, hash: newHash()}
		k.add(key, v)
	}
	return v
}

func hsetGeneric(k *Keyspace, out []byte, args [][]byte, name string) []byte {
	if len(args)%2 == 1 {
		return appendArityError(out, name)
	}
	v := k.hashForWrite(args[1])
	if v == nil {
		return append(out, errWrongType...)
	}
	created := 0
	for i := 2; i < len(args); i += 2 {
		if v.hash.set(args[i], args[i+1]) {
			created++
		}
	}
	k.recordArgs(args)
	if name == "hmset" {
		return append(out, replyOK...)
	}
	return appendInt(out, int64(created))
}

func cmdHSet(k *Keyspace, out []byte, args [][]byte) []byte {
	return hsetGeneric(k, out, args, "hset")
}

func cmdHMSet(k *Keyspace, out []byte, args [][]byte) []byte {
	return hsetGeneric(k, out, args, "hmset")
}

func cmdHSetNX(k *Keyspace, out []byte, args [][]byte) []byte {
	v := k.hashForWrite(args[1])
	if v == nil {
		return append(out, errWrongType...)
	}
	if _, exists := v.hash.get(args[2]); exists {
		return append(out, replyZero...)
	}
	v.hash.set(args[2], args[3])
	k.recordArgs(args)
	return append(out, replyOne...)
}

func cmdHGet(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindHash, replyNullBulk)
	if v == nil {
		return out
	}
	val, exists := v.hash.get(args[2])
	if !exists {
		return append(out, replyNullBulk...)
	}
	return appendBulk(out, val)
}

func cmdHMGet(k *Keyspace, out []byte, args [][]byte) []byte {
	v, ok := k.lookupKind(args[1], kindHash)
	if !ok {
		return append(out, errWrongType...)
	}
	out = appendArray(out, len(args)-2)
	for _, f := range args[2:] {
		var val []byte
		exists := false
		if v != nil {
			val, exists = v.hash.get(f)
		}
		if exists {
			out = appendBulk(out, val)
		} else {
			out = append(out, replyNullBulk...)
		}
	}
	return out
}

// hashDump is HGETALL, HKEYS and HVALS.
func hashDump(k *Keyspace, out []byte, args [][]byte, fields, values bool) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindHash, replyEmptyArr)
	if v == nil {
		return out
	}
	n := v.hash.len()
	if fields && values {
		n *= 2
	}
	out = appendArray(out, n)
	for i, f := range v.hash.fields {
		if fields {
			out = appendBulkString(out, f)
		}
		if values {
			out = appendBulk(out, v.hash.values[i])
		}
	}
	return out
}

func cmdHGetAll(k *Keyspace, out []byte, args [][]byte) []byte {
	return hashDump(k, out, args, true, true)
}

func cmdHKeys(k *Keyspace, out []byte, args [][]byte) []byte {
	return hashDump(k, out, args, true, false)
}

func cmdHVals(k *Keyspace, out []byte, args [][]byte) []byte {
	return hashDump(k, out, args, false, true)
}

func cmdHDel(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindHash, replyZero)
	if v == nil {
		return out
	}
	deleted := 0
	effect := k.effectStart(args[0])
	effect = append(effect, args[1])
	for _, f := range args[2:] {
		if v.hash.del(f) {
			deleted++
			effect = append(effect, f)
		}
	}
	if deleted > 0 {
		k.removeIfEmpty(args[1], v)
		k.record(effect...)
	}
	return appendInt(out, int64(deleted))
}

func cmdHLen(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindHash, replyZero)
	if v == nil {
		return out
	}
	return appendInt(out, int64(v.hash.len()))
}

func cmdHExists(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindHash, replyZero)
	if v == nil {
		return out
	}
	if _, exists := v.hash.get(args[2]); exists {
		return append(out, replyOne...)
	}
	return append(out, replyZero...)
}

func cmdHStrlen(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindHash, replyZero)
	if v == nil {
		return out
	}
	val, _ := v.hash.get(args[2])
	return appendInt(out, int64(len(val)))
}

func cmdHIncrBy(k *Keyspace, out []byte, args [][]byte) []byte {
	incr, ok := parseInt(args[3])
	if !ok {
		return append(out, errNotInt...)
	}
	v := k.hashForWrite(args[1])
	if v == nil {
		return append(out, errWrongType...)
	}
	var cur int64
	if old, exists := v.hash.get(args[2]); exists {
		if cur, ok = parseInt(old); !ok {
			k.removeIfEmpty(args[1], v)
			return append(out, "-ERR hash value is not an integer\r\n"...)
		}
	}
	if (incr < 0 && cur < 0 && incr < math.MinInt64-cur) || (incr > 0 && cur > 0 && incr > math.MaxInt64-cur) {
		k.removeIfEmpty(args[1], v)
		return append(out, errOverflow...)
	}
	cur += incr
	v.hash.set(args[2], itoa(cur))
	k.recordArgs(args)
	return appendInt(out, cur)
}

func cmdHIncrByFloat(k *Keyspace, out []byte, args [][]byte) []byte {
	incr, incrInf, ok := parseLongDouble(args[3])
	if !ok {
		return append(out, errNotFloat...)
	}
	if incrInf {
		return append(out, "-ERR value is NaN or Infinity\r\n"...)
	}
	v := k.hashForWrite(args[1])
	if v == nil {
		return append(out, errWrongType...)
	}
	cur := new(longDouble).SetPrec(ldPrec)
	if old, exists := v.hash.get(args[2]); exists {
		var curInf bool
		if cur, curInf, ok = parseLongDouble(old); !ok {
			return append(out, "-ERR hash value is not a float\r\n"...)
		}
		if curInf {
			return append(out, errNaNOrInf...)
		}
	}
	sum, ok := addLongDouble(cur, incr)
	if !ok {
		return append(out, errNaNOrInf...)
	}
	text := formatLongDouble(sum)
	v.hash.set(args[2], text)
	k.record(bHSET, args[1], args[2], text)
	return appendBulk(out, text)
}
