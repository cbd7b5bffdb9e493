package keyspace

import (
	"math"
	"strconv"
)

func cmdDel(k *Keyspace, out []byte, args [][]byte) []byte {
	deleted := 0
	effect := k.effectStart(bDEL)
	for _, key := range args[1:] {
		if k.lookup(key) != nil && k.remove(key) {
			deleted++
			effect = append(effect, key)
		}
	}
	if deleted > 0 {
		k.record(effect...)
	}
	return appendInt(out, int64(deleted))
}

// effectStart returns a fresh effect builder when journaling (nil otherwise,
// so appends to it cost nothing worth mentioning).
func (k *Keyspace) effectStart(name []byte) [][]byte {
	if !k.journaling() {
		return nil
	}
	return [][]byte{name}
}

func cmdExists(k *Keyspace, out []byte, args [][]byte) []byte {
	n := 0
	for _, key := range args[1:] {
		if k.lookup(key) != nil {
			n++
		}
	}
	return appendInt(out, int64(n))
}

const (
	expireNX = 1 << iota
	expireXX
	expireGT
	expireLT
)

// expireGeneric is EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT.
func expireGeneric(k *Keyspace, out []byte, args [][]byte, seconds, relative bool) []byte {
	flags := 0
	for _, opt := range args[3:] {
		switch {
		case equalFold(opt, "nx"):
			flags |= expireNX
		case equalFold(opt, "xx"):
			flags |= expireXX
		case equalFold(opt, "gt"):
			flags |= expireGT
		case equalFold(opt, "lt"):
			flags |= expireLT
		default:
			return appendError(out, "Unsupported option "+string(opt))
		}
	}
	if flags&expireNX != 0 && flags&(expireXX|expireGT|expireLT) != 0 {
		return appendError(out, "NX and XX, GT or LT options at the same time are not compatible")
	}
	if flags&expireGT != 0 && flags&expireLT != 0 {
		return appendError(out, "GT and LT options at the same time are not compatible")
	}
	when, ok := parseInt(args[2])
	if !ok {
		return append(out, errNotInt...)
	}
	name := string(lowerASCII(args[0]))
	if seconds {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			return append(out, invalidExpire(name)...)
		}
		when *= 1000
	}
	if relative {
		if when > math.MaxInt64-k.timeNow() {
			return append(out, invalidExpire(name)...)
		}
		when += k.timeNow()
	}
	v := k.lookup(args[1])
	if v == nil {
		return append(out, replyZero...)
	}
	cur := v.expireAt
	switch {
	case flags&expireNX != 0 && cur != 0,
		flags&expireXX != 0 && cur == 0,
		flags&expireGT != 0 && (cur == 0 || when <= cur),
		flags&expireLT != 0 && cur != 0 && when >= cur:
		return append(out, replyZero...)
	}
	if when <= k.timeNow() && !k.applying {
		k.remove(args[1])
		k.record(bDEL, args[1])
		return append(out, replyOne...)
	}
	k.setExpire(v, when)
	if k.journaling() {
		k.record(bPEXPIREAT, args[1], itoa(when))
	} else {
		k.record()
	}
	return append(out, replyOne...)
}

func lowerASCII(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func cmdExpire(k *Keyspace, out []byte, args [][]byte) []byte {
	return expireGeneric(k, out, args, true, true)
}

func cmdPExpire(k *Keyspace, out []byte, args [][]byte) []byte {
	return expireGeneric(k, out, args, false, true)
}

func cmdExpireAt(k *Keyspace, out []byte, args [][]byte) []byte {
	return expireGeneric(k, out, args, true, false)
}

func cmdPExpireAt(k *Keyspace, out []byte, args [][]byte) []byte {
	return expireGeneric(k, out, args, false, false)
}

func cmdPersist(k *Keyspace, out []byte, args [][]byte) []byte {
	v := k.lookup(args[1])
	if v == nil || v.expireAt == 0 {
		return append(out, replyZero...)
	}
	k.setExpire(v, 0)
	k.recordArgs(args)
	return append(out, replyOne...)
}

// ttlGeneric is TTL, PTTL, EXPIRETIME and PEXPIRETIME.
func ttlGeneric(k *Keyspace, out []byte, args [][]byte, millis, absolute bool) []byte {
	v := k.lookup(args[1])
	switch {
	case v == nil:
		return appendInt(out, -2)
	case v.expireAt == 0:
		return appendInt(out, -1)
	}
	t := v.expireAt
	if !absolute {
		t = max(t-k.timeNow(), 0)
	}
	if !millis {
		t = (t + 500) / 1000
	}
	return appendInt(out, t)
}

func cmdTTL(k *Keyspace, out []byte, args [][]byte) []byte {
	return ttlGeneric(k, out, args, false, false)
}

func cmdPTTL(k *Keyspace, out []byte, args [][]byte) []byte {
	return ttlGeneric(k, out, args, true, false)
}

func cmdExpireTime(k *Keyspace, out []byte, args [][]byte) []byte {
	return ttlGeneric(k, out, args, false, true)
}

func cmdPExpireTime(k *Keyspace, out []byte, args [][]byte) []byte {
	return ttlGeneric(k, out, args, true, true)
}

func cmdType(k *Keyspace, out []byte, args [][]byte) []byte {
	v := k.lookup(args[1])
	if v == nil {
		return append(out, "+none\r\n"...)
	}
	out = append(out, '+')
	out = append(out, typeNames[v.kind]...)
	return append(out, "\r\n"...)
}

func renameGeneric(k *Keyspace, out []byte, args [][]byte, nx bool) []byte {
	src := k.lookup(args[1])
	if src == nil {
		return append(out, errNoSuchKey...)
	}
	if string(args[1]) == string(args[2]) {
		if nx {
			return append(out, replyZero...)
		}
		return append(out, replyOK...)
	}
	if k.lookup(args[2]) != nil {
		if nx {
			return append(out, replyZero...)
		}
		k.remove(args[2])
	}
	expireAt := src.expireAt
	k.remove(args[1])
	src.expireAt = 0
	k.add(args[2], src)
	k.setExpire(src, expireAt)
	k.recordArgs(args)
	if nx {
		return append(out, replyOne...)
	}
	return append(out, replyOK...)
}

func cmdRename(k *Keyspace, out []byte, args [][]byte) []byte {
	return renameGeneric(k, out, args, false)
}

func cmdRenameNX(k *Keyspace, out []byte, args [][]byte) []byte {
	return renameGeneric(k, out, args, true)
}

// parseCursor accepts what strtoul accepts in full, as Redis' SCAN does.
func parseCursor(b []byte) (uint64, bool) {
	if len(b) == 0 || isCSpace(b[0]) {
		return 0, len(b) == 0
	}
	s := string(b)
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// scanOptions are the MATCH, COUNT and TYPE options shared by the SCAN family.
type scanOptions struct {
	pattern []byte // nil: everything
	count   int64
	typ     []byte // nil: every type
}

func parseScanOptions(args [][]byte) (scanOptions, string) {
	opts := scanOptions{count: 10}
	for i := 0; i < len(args); {
		left := len(args) - i
		switch {
		case equalFold(args[i], "count") && left >= 2:
			n, ok := parseInt(args[i+1])
			if !ok {
				return opts, errNotInt
			}
			if n < 1 {
				return opts, errSyntax
			}
			opts.count = n
		case equalFold(args[i], "match") && left >= 2:
			opts.pattern = args[i+1]
			if len(opts.pattern) == 1 && opts.pattern[0] == '*' {
				opts.pattern = nil
			}
		case equalFold(args[i], "type") && left >= 2:
			opts.typ = args[i+1]
		default:
			return opts, errSyntax
		}
		i += 2
	}
	return opts, ""
}

func (o *scanOptions) accept(key string, v *value) bool {
	if o.typ != nil && !equalFold(o.typ, typeNames[v.kind]) {
		return false
	}
	return o.pattern == nil || globMatch(o.pattern, []byte(key))
}

func cmdScan(k *Keyspace, out []byte, args [][]byte) []byte {
	cursor, ok := parseCursor(args[1])
	if !ok {
		return append(out, "-ERR invalid cursor\r\n"...)
	}
	opts, errReply := parseScanOptions(args[2:])
	if errReply != "" {
		return append(out, errReply...)
	}
	var keys []string
	next := uint64(0)
	visited := int64(0)
	k.index.each(cursor, func(e indexEntry) bool {
		if visited == opts.count {
			next = e.pos
			return false
		}
		visited++
		if v := k.data[e.key]; !v.expiredAt(k.timeNow()) && opts.accept(e.key, v) {
			keys = append(keys, e.key)
		}
		return true
	})
	out = appendArray(out, 2)
	out = appendBulk(out, strconv.AppendUint(nil, next, 10))
	out = appendArray(out, len(keys))
	for _, key := range keys {
		out = appendBulkString(out, key)
	}
	return out
}

func cmdKeys(k *Keyspace, out []byte, args [][]byte) []byte {
	all := len(args[1]) == 1 && args[1][0] == '*'
	var keys []string
	k.index.each(0, func(e indexEntry) bool {
		if !k.data[e.key].expiredAt(k.timeNow()) && (all || globMatch(args[1], []byte(e.key))) {
			keys = append(keys, e.key)
		}
		return true
	})
	out = appendArray(out, len(keys))
	for _, key := range keys {
		out = appendBulkString(out, key)
	}
	return out
}

func cmdDBSize(k *Keyspace, out []byte, args [][]byte) []byte {
	return appendInt(out, int64(k.liveCount(k.timeNow())))
}

func cmdRandomKey(k *Keyspace, out []byte, args [][]byte) []byte {
	// Go starts each map iteration at a random place; expired keys are
	// skipped, a bounded number of times so a mostly expired keyspace still
	// answers quickly.
	tries := 0
	for key, v := range k.data {
		if !v.expiredAt(k.timeNow()) {
			return appendBulkString(out, key)
		}
		if tries++; tries == 100 {
			break
		}
	}
	var live string
	found := false
	k.index.each(0, func(e indexEntry) bool {
		live, found = e.key, !k.data[e.key].expiredAt(k.timeNow())
		return !found
	})
	if found {
		return appendBulkString(out, live)
	}
	return append(out, replyNullBulk...)
}

func cmdFlush(k *Keyspace, out []byte, args [][]byte) []byte {
	if len(args) > 2 || (len(args) == 2 && !equalFold(args[1], "sync") && !equalFold(args[1], "async")) {
		return append(out, errSyntax...)
	}
	if len(k.data) > 0 {
		k.data = map[string]*value{}
		k.index = newKeyIndex()
		k.expires = 0
		k.record(bFLUSHALL)
	}
	return append(out, replyOK...)
}
