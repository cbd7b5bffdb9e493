package keyspace

import "math"

// cmdGetEx is Kvrocks' GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]. Kvrocks
// parses the options with its CommandParser: one kind of option may repeat
// (the last wins), two kinds are a syntax error, and the number's errors are
// its integer parser's texts.
func cmdGetEx(k *Keyspace, out []byte, args [][]byte) []byte {
	var flag string // the option kind taken, as EatEqICaseFlag tracks it
	at := int64(-1) // -1: leave the TTL; 0: PERSIST; else the deadline
	for i := 2; i < len(args); i++ {
		opt := args[i]
		kind := ""
		for _, name := range [...]string{"ex", "exat", "px", "pxat", "persist"} {
			if equalFold(opt, name) {
				kind = name
			}
		}
		if kind == "" || flag != "" && flag != kind {
			return append(out, errSyntax...)
		}
		flag = kind
		if kind == "persist" {
			at = 0
			continue
		}
		if i+1 == len(args) {
			return appendError(out, "no more item to parse")
		}
		i++
		n, msg := parseKvrocksInt(args[i])
		if msg == "" && n < 1 {
			msg = "out of numeric range"
		}
		if msg != "" {
			return appendError(out, msg)
		}
		// Kvrocks multiplies and adds without overflow checks; a deadline
		// beyond int64 is outside what it defines, so kvsim refuses it.
		if (kind == "ex" || kind == "exat") && n > math.MaxInt64/1000 {
			return appendError(out, "out of numeric range")
		}
		if kind == "ex" || kind == "exat" {
			n *= 1000
		}
		if kind == "ex" || kind == "px" {
			if n > math.MaxInt64-k.timeNow() {
				return appendError(out, "out of numeric range")
			}
			n += k.timeNow()
		}
		at = n
	}
	v, out := k.lookupOrAnswer(out, args[1], kindString, replyNullBulk)
	if v == nil {
		return out
	}
	out = appendBulk(out, v.str)
	switch {
	case at < 0:
	case at == 0:
		k.setExpire(v, 0)
		if k.journaling() {
			k.record(bPERSIST, args[1])
		} else {
			k.record() // Kvrocks rewrites the key even without a TTL
		}
	case at < k.timeNow() && !k.applying:
		// An EXAT/PXAT in the past: Kvrocks stores it and the key reads as
		// gone; kvsim deletes it as its other expiring writes do.
		k.remove(args[1])
		k.record(bDEL, args[1])
	default:
		k.setExpire(v, at)
		if k.journaling() {
			k.record(bPEXPIREAT, args[1], itoa(at))
		} else {
			k.record()
		}
	}
	return out
}

// cmdCopy is Kvrocks' COPY source destination [DB 0] [REPLACE]: one database
// only, a missing source is an error, the copy keeps the source's TTL.
func cmdCopy(k *Keyspace, out []byte, args [][]byte) []byte {
	replace := false
	for i := 3; i < len(args); i++ {
		switch {
		case equalFold(args[i], "db"):
			if i+1 == len(args) {
				return appendError(out, "no more item to parse")
			}
			i++
			n, msg := parseKvrocksInt(args[i])
			if msg != "" {
				return appendError(out, msg)
			}
			if n != 0 {
				return append(out, errSyntax...)
			}
		case equalFold(args[i], "replace"):
			replace = true
		default:
			return append(out, errSyntax...)
		}
	}
	src := k.lookup(args[1])
	if src == nil {
		return append(out, errNoSuchKey...)
	}
	if !replace && k.lookup(args[2]) != nil {
		return append(out, replyZero...)
	}
	if string(args[1]) == string(args[2]) {
		return append(out, replyOne...) // Kvrocks writes nothing
	}
	dup := src.clone()
	at := dup.expireAt
	dup.expireAt = 0
	k.replace(args[2], dup)
	k.setExpire(dup, at)
	if k.journaling() {
		k.record(bCOPY, args[1], args[2], bREPLACE)
	} else {
		k.record()
	}
	return append(out, replyOne...)
}

// clone returns a deep copy of v.
func (v *value) clone() *value {
	c := &value{kind: v.kind, expireAt: v.expireAt}
	switch v.kind {
	case kindString:
		c.str = clone(v.str)
	case kindList:
		c.list = &list{}
		for i := 0; i < v.list.len(); i++ {
			c.list.pushBack(clone(v.list.at(i)))
		}
	case kindHash:
		c.hash = newHash()
		for i, f := range v.hash.fields {
			c.hash.set([]byte(f), v.hash.values[i])
		}
	case kindSet:
		c.set = make(map[string]struct{}, len(v.set))
		for m := range v.set {
			c.set[m] = struct{}{}
		}
	case kindZSet:
		c.zset = newZSet()
		for n := v.zset.sl.first(); n != nil; n = n.levels[0].forward {
			c.zset.put(n.member, n.score)
		}
	}
	return c
}

// parseKvrocksInt parses as Kvrocks' ParseInt<int64_t> does (strtoll, base
// 0: leading blanks, a sign, 0x hex and 0 octal prefixes) and returns its
// error text, "" when the whole argument is a number.
func parseKvrocksInt(b []byte) (int64, string) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] >= '\t' && b[i] <= '\r') {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	base := uint64(10)
	if i < len(b) && b[i] == '0' {
		base = 8
		if i+2 < len(b) && (b[i+1] == 'x' || b[i+1] == 'X') && digitValue(b[i+2]) < 16 {
			base = 16
			i += 2
		}
	}
	start := i
	var n uint64
	overflow := false
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	for ; i < len(b); i++ {
		d := uint64(digitValue(b[i]))
		if d >= base {
			break
		}
		if n > (limit-d)/base {
			overflow = true
		} else {
			n = n*base + d
		}
	}
	switch {
	case i == start:
		return 0, "not started as an integer"
	case overflow:
		return 0, "Numerical result out of range"
	case i != len(b):
		return 0, "encounter non-integer characters"
	case neg:
		return -int64(n-1) - 1, ""
	}
	return int64(n), ""
}

// digitValue is c's value as a digit of any base up to 36 (36 if none).
func digitValue(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'Z':
		return int(c-'A') + 10
	}
	return 36
}
