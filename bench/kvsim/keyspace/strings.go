package keyspace

import (
	"math"
	"strconv"
)

// maxStringLen is Redis' proto-max-bulk-len, the limit of APPEND and SETRANGE.
// A variable so the fuzz test can keep memory small.
var maxStringLen int64 = 512 << 20

func cmdGet(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindString, replyNullBulk)
	if v == nil {
		return out
	}
	return appendBulk(out, v.str)
}

// setString stores val at key as a string; keepTTL keeps an existing deadline.
// It reuses the old buffer when it can: SET is the hot path.
func (k *Keyspace) setString(key, val []byte, keepTTL bool) *value {
	return k.setStringAt(key, k.data[string(key)], val, keepTTL)
}

// setStringAt is setString for a caller that already holds the key's entry
// (nil if absent), saving a second map lookup on the hot path.
func (k *Keyspace) setStringAt(key []byte, v *value, val []byte, keepTTL bool) *value {
	if v != nil && v.kind == kindString {
		v.str = append(v.str[:0], val...)
		if !keepTTL {
			k.setExpire(v, 0)
		}
		return v
	}
	nv := &value{kind: kindString, str: clone(val)}
	if v != nil {
		if keepTTL {
			nv.expireAt = v.expireAt
			if nv.expireAt != 0 {
				k.expires++
			}
		}
		k.remove(key)
	}
	k.add(key, nv)
	return nv
}

const (
	setNX = 1 << iota
	setXX
	setGet
	setKeepTTL
	setEX
	setPX
	setEXAT
	setPXAT
)

func cmdSet(k *Keyspace, out []byte, args [][]byte) []byte {
	flags := 0
	expireIdx := 0
	const anyExpire = setEX | setPX | setEXAT | setPXAT
	for j := 3; j < len(args); j++ {
		opt := args[j]
		hasNext := j+1 < len(args)
		switch {
		case equalFold(opt, "nx") && flags&setXX == 0:
			flags |= setNX
		case equalFold(opt, "xx") && flags&setNX == 0:
			flags |= setXX
		case equalFold(opt, "get"):
			flags |= setGet
		case equalFold(opt, "keepttl") && flags&anyExpire == 0:
			flags |= setKeepTTL
		case flags&(anyExpire|setKeepTTL) == 0 && hasNext && equalFold(opt, "ex"):
			flags |= setEX
		case flags&(anyExpire|setKeepTTL) == 0 && hasNext && equalFold(opt, "px"):
			flags |= setPX
		case flags&(anyExpire|setKeepTTL) == 0 && hasNext && equalFold(opt, "exat"):
			flags |= setEXAT
		case flags&(anyExpire|setKeepTTL) == 0 && hasNext && equalFold(opt, "pxat"):
			flags |= setPXAT
		default:
			return append(out, errSyntax...)
		}
		if flags&anyExpire != 0 && expireIdx == 0 {
			j++
			expireIdx = j
		}
	}
	var at int64
	if expireIdx != 0 {
		var errReply []byte
		at, errReply = k.expireTime(args[expireIdx], flags&(setEX|setEXAT) != 0, flags&(setEX|setPX) != 0, "set")
		if errReply != nil {
			return append(out, errReply...)
		}
	}
	return k.setGeneric(out, args[1], args[2], flags, at)
}

// expireTime is Redis' getExpireMillisecondsOrReply: the absolute deadline,
// or the error reply.
func (k *Keyspace) expireTime(arg []byte, seconds, relative bool, name string) (int64, []byte) {
	n, ok := parseInt(arg)
	if !ok {
		return 0, []byte(errNotInt)
	}
	if n <= 0 || (seconds && n > math.MaxInt64/1000) {
		return 0, invalidExpire(name)
	}
	if seconds {
		n *= 1000
	}
	if relative {
		n += k.timeNow()
	}
	if n <= 0 {
		return 0, invalidExpire(name)
	}
	return n, nil
}

func invalidExpire(name string) []byte {
	return appendError(nil, "invalid expire time in '"+name+"' command")
}

func (k *Keyspace) setGeneric(out, key, val []byte, flags int, at int64) []byte {
	old := k.lookup(key)
	if flags&setGet != 0 {
		switch {
		case old == nil:
			out = append(out, replyNullBulk...)
		case old.kind != kindString:
			return append(out, errWrongType...)
		default:
			out = appendBulk(out, old.str)
		}
	}
	if (flags&setNX != 0 && old != nil) || (flags&setXX != 0 && old == nil) {
		if flags&setGet == 0 {
			out = append(out, replyNullBulk...)
		}
		return out
	}
	v := k.setStringAt(key, old, val, flags&setKeepTTL != 0)
	if at != 0 {
		k.setExpire(v, at)
	}
	if flags&setGet == 0 {
		out = append(out, replyOK...)
	}
	switch {
	case at != 0 && k.journaling():
		k.record(bSET, key, val, bPXAT, itoa(at))
	case flags&setKeepTTL != 0:
		k.record(bSET, key, val, bKEEPTTL)
	default:
		k.record(bSET, key, val)
	}
	return out
}

func cmdSetNX(k *Keyspace, out []byte, args [][]byte) []byte {
	if k.lookup(args[1]) != nil {
		return append(out, replyZero...)
	}
	k.setString(args[1], args[2], false)
	k.record(bSET, args[1], args[2])
	return append(out, replyOne...)
}

func cmdSetEX(k *Keyspace, out []byte, args [][]byte) []byte {
	at, errReply := k.expireTime(args[2], true, true, "setex")
	if errReply != nil {
		return append(out, errReply...)
	}
	return k.setGeneric(out, args[1], args[3], 0, at)
}

func cmdPSetEX(k *Keyspace, out []byte, args [][]byte) []byte {
	at, errReply := k.expireTime(args[2], false, true, "psetex")
	if errReply != nil {
		return append(out, errReply...)
	}
	return k.setGeneric(out, args[1], args[3], 0, at)
}

func cmdGetSet(k *Keyspace, out []byte, args [][]byte) []byte {
	return k.setGeneric(out, args[1], args[2], setGet, 0)
}

func cmdGetDel(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindString, replyNullBulk)
	if v == nil {
		return out
	}
	out = appendBulk(out, v.str)
	k.remove(args[1])
	k.record(bDEL, args[1])
	return out
}

func cmdMGet(k *Keyspace, out []byte, args [][]byte) []byte {
	out = appendArray(out, len(args)-1)
	for _, key := range args[1:] {
		v := k.lookup(key)
		if v == nil || v.kind != kindString {
			out = append(out, replyNullBulk...)
		} else {
			out = appendBulk(out, v.str)
		}
	}
	return out
}

func cmdMSet(k *Keyspace, out []byte, args [][]byte) []byte {
	if len(args)%2 == 0 {
		return appendArityError(out, "mset")
	}
	for i := 1; i < len(args); i += 2 {
		k.setString(args[i], args[i+1], false)
	}
	k.recordArgs(args)
	return append(out, replyOK...)
}

func cmdMSetNX(k *Keyspace, out []byte, args [][]byte) []byte {
	if len(args)%2 == 0 {
		return appendArityError(out, "msetnx")
	}
	for i := 1; i < len(args); i += 2 {
		if k.lookup(args[i]) != nil {
			return append(out, replyZero...)
		}
	}
	for i := 1; i < len(args); i += 2 {
		k.setString(args[i], args[i+1], false)
	}
	k.recordArgs(args)
	return append(out, replyOne...)
}

func cmdIncr(k *Keyspace, out []byte, args [][]byte) []byte {
	return k.incrBy(out, args, 1)
}

func cmdDecr(k *Keyspace, out []byte, args [][]byte) []byte {
	return k.incrBy(out, args, -1)
}

func cmdIncrBy(k *Keyspace, out []byte, args [][]byte) []byte {
	n, ok := parseInt(args[2])
	if !ok {
		return append(out, errNotInt...)
	}
	return k.incrBy(out, args, n)
}

func cmdDecrBy(k *Keyspace, out []byte, args [][]byte) []byte {
	n, ok := parseInt(args[2])
	if !ok {
		return append(out, errNotInt...)
	}
	if n == math.MinInt64 {
		return append(out, "-ERR decrement would overflow\r\n"...)
	}
	return k.incrBy(out, args, -n)
}

func (k *Keyspace) incrBy(out []byte, args [][]byte, incr int64) []byte {
	v, ok := k.lookupKind(args[1], kindString)
	if !ok {
		return append(out, errWrongType...)
	}
	var cur int64
	if v != nil {
		if cur, ok = parseInt(v.str); !ok {
			return append(out, errNotInt...)
		}
	}
	if (incr < 0 && cur < 0 && incr < math.MinInt64-cur) || (incr > 0 && cur > 0 && incr > math.MaxInt64-cur) {
		return append(out, errOverflow...)
	}
	cur += incr
	var buf [20]byte
	k.setString(args[1], strconv.AppendInt(buf[:0], cur, 10), true)
	k.recordArgs(args)
	return appendInt(out, cur)
}

func cmdIncrByFloat(k *Keyspace, out []byte, args [][]byte) []byte {
	v, ok := k.lookupKind(args[1], kindString)
	if !ok {
		return append(out, errWrongType...)
	}
	cur := new(longDouble).SetPrec(ldPrec)
	curInf := false
	if v != nil {
		if cur, curInf, ok = parseLongDouble(v.str); !ok {
			return append(out, errNotFloat...)
		}
	}
	incr, incrInf, ok := parseLongDouble(args[2])
	if !ok {
		return append(out, errNotFloat...)
	}
	if curInf || incrInf {
		return append(out, errNaNOrInf...)
	}
	sum, ok := addLongDouble(cur, incr)
	if !ok {
		return append(out, errNaNOrInf...)
	}
	text := formatLongDouble(sum)
	k.setString(args[1], text, true)
	k.record(bSET, args[1], text, bKEEPTTL)
	return appendBulk(out, text)
}

func cmdAppend(k *Keyspace, out []byte, args [][]byte) []byte {
	v, ok := k.lookupKind(args[1], kindString)
	if !ok {
		return append(out, errWrongType...)
	}
	if v == nil {
		v = k.setString(args[1], args[2], false)
	} else {
		if int64(len(v.str))+int64(len(args[2])) > maxStringLen {
			return append(out, errStringLimit...)
		}
		v.str = append(v.str, args[2]...)
	}
	k.recordArgs(args)
	return appendInt(out, int64(len(v.str)))
}

func cmdStrlen(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindString, replyZero)
	if v == nil {
		return out
	}
	return appendInt(out, int64(len(v.str)))
}

func cmdGetRange(k *Keyspace, out []byte, args [][]byte) []byte {
	start, ok1 := parseInt(args[2])
	end, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		return append(out, errNotInt...)
	}
	v, out := k.lookupOrAnswer(out, args[1], kindString, replyEmptyBulk)
	if v == nil {
		return out
	}
	n := int64(len(v.str))
	if start < 0 && end < 0 && start > end {
		return append(out, replyEmptyBulk...)
	}
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	start = max(start, 0)
	end = max(end, 0)
	if end >= n {
		end = n - 1
	}
	if start > end || n == 0 {
		return append(out, replyEmptyBulk...)
	}
	return appendBulk(out, v.str[start:end+1])
}

func cmdSetRange(k *Keyspace, out []byte, args [][]byte) []byte {
	offset, ok := parseInt(args[2])
	if !ok {
		return append(out, errNotInt...)
	}
	if offset < 0 {
		return append(out, "-ERR offset is out of range\r\n"...)
	}
	val := args[3]
	v, ok := k.lookupKind(args[1], kindString)
	if !ok {
		return append(out, errWrongType...)
	}
	if len(val) == 0 {
		if v == nil {
			return append(out, replyZero...)
		}
		return appendInt(out, int64(len(v.str)))
	}
	if offset+int64(len(val)) > maxStringLen {
		return append(out, errStringLimit...)
	}
	if v == nil {
		v = k.setString(args[1], nil, false)
	}
	if need := int(offset) + len(val); need > len(v.str) {
		v.str = append(v.str, make([]byte, need-len(v.str))...)
	}
	copy(v.str[offset:], val)
	k.recordArgs(args)
	return appendInt(out, int64(len(v.str)))
}

// equalFold compares an argument with a lower-case option name.
func equalFold(arg []byte, lower string) bool {
	if len(arg) != len(lower) {
		return false
	}
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
