package keyspace

import (
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
)

// HSCAN, SSCAN and ZSCAN as Kvrocks (CommandSubkeyScanBase, SubKeyScanner)
// runs them: members in bytewise order, as its subkeys sit in RocksDB; a
// call resumes after the member its cursor names and stops at the first one
// outside the MATCH prefix; the reply carries a cursor only when it holds
// exactly COUNT members (default 20), so a scan ends with an empty page when
// the last page was full. Cursors are Kvrocks' numeric ones
// (redis-cursor-compatible, the default since 2.8): a number naming a member
// in a server-wide ring of the latest 16,384 cursors; a cursor that is not
// there, of another command, not a number or 0 starts from the beginning,
// never an error.

// Cursor types, Kvrocks' CursorType, in a cursor's top 3 bits.
const (
	cursorTypeHash uint64 = 2
	cursorTypeSet  uint64 = 3
	cursorTypeZSet uint64 = 4
)

// cursorDictSize is Kvrocks' CURSOR_DICT_SIZE: only the latest cursors resume.
const cursorDictSize = 16 * 1024

type cursorEntry struct {
	cursor uint64
	member string
}

// cursorDict is Kvrocks' cursor ring, indexed by a cursor's low bits (its
// counter), overwritten in place, so its memory is bounded.
type cursorDict struct {
	counter uint64
	entries [cursorDictSize]cursorEntry
}

// issue returns a new cursor naming member: a 16-bit counter, 16 bits of the
// time in seconds, 29 bits of the member's hash and the type, as Kvrocks'
// NumberCursor lays them out.
func (d *cursorDict) issue(typ uint64, member string, nowMillis int64) uint64 {
	counter := uint16(d.counter)
	d.counter++
	h := fnv.New32a()
	h.Write([]byte(member))
	stamp := uint16(nowMillis / 1000)
	c := uint64(counter) | uint64(stamp)<<16 | (uint64(h.Sum32())<<32)&0x1FFFFFFFFFFFFFFF | typ<<61
	d.entries[c%cursorDictSize] = cursorEntry{c, member}
	return c
}

// member returns the member a cursor names, "" (the start) for any cursor
// the ring does not hold for this type.
func (d *cursorDict) member(typ uint64, cursor []byte) string {
	if len(cursor) > 0 && cursor[0] == '_' { // Kvrocks' string-cursor prefix, stripped first
		cursor = cursor[1:]
	}
	n, err := strconv.ParseUint(string(cursor), 10, 64)
	if err != nil || n == 0 || n>>61 != typ {
		return ""
	}
	if e := d.entries[n%cursorDictSize]; e.cursor == n {
		return e.member
	}
	return ""
}

// subkeyScanArgs are a subkey scan's parsed options.
type subkeyScanArgs struct {
	prefix []byte
	limit  int
}

// parseSubkeyScanArgs parses MATCH and COUNT as Kvrocks' ParseAdditionalFlags
// does; it returns the error reply, "" when they parse.
func parseSubkeyScanArgs(args [][]byte) (subkeyScanArgs, string) {
	opts := subkeyScanArgs{limit: 20}
	for i := 0; i < len(args); i += 2 {
		isMatch, isCount := equalFold(args[i], "match"), equalFold(args[i], "count")
		switch {
		case !isMatch && !isCount:
			return opts, errSyntax
		case i+1 == len(args):
			return opts, "-ERR no more item to parse\r\n"
		case isMatch:
			p := args[i+1]
			if len(p) == 0 || p[len(p)-1] != '*' {
				return opts, "-ERR currently only key prefix matching is supported\r\n"
			}
			opts.prefix = p[:len(p)-1]
		default:
			n, msg := parseKvrocksInt(args[i+1])
			if msg != "" {
				return opts, "-ERR " + msg + "\r\n"
			}
			// Kvrocks keeps the count in an int: the parsed int64 is truncated.
			opts.limit = int(int32(n))
			if opts.limit <= 0 {
				return opts, "-ERR limit should be a positive integer\r\n"
			}
		}
	}
	return opts, ""
}

// scanPage returns up to limit of members in bytewise order, after the
// member the cursor names (or from the prefix), stopping at the first one
// without the prefix, as SubKeyScanner::Scan walks its iterator.
func scanPage(members []string, after string, opts subkeyScanArgs) []string {
	start := after
	if after == "" {
		start = string(opts.prefix)
	}
	var page []string
	for _, m := range members {
		if m >= start && (after == "" || m != after) {
			page = append(page, m)
		}
	}
	sort.Strings(page)
	for i, m := range page {
		if !strings.HasPrefix(m, string(opts.prefix)) {
			page = page[:i]
			break
		}
	}
	if len(page) > opts.limit {
		page = page[:opts.limit]
	}
	return page
}

// subkeyScan runs a subkey scan of want at args[1]; members lists the
// value's members, and appendEntry appends one entry of the reply (the
// member, with its value or score) and returns the entry's element count.
func subkeyScan(k *Keyspace, out []byte, args [][]byte, want kind, typ uint64,
	members func(*value) []string, appendEntry func(out []byte, v *value, member string) []byte, perEntry int) []byte {
	opts, errReply := parseSubkeyScanArgs(args[3:])
	if errReply != "" {
		return append(out, errReply...)
	}
	v, ok := k.lookupKind(args[1], want)
	if !ok {
		return append(out, errWrongType...)
	}
	if v == nil {
		return append(out, "*2\r\n$1\r\n0\r\n*0\r\n"...)
	}
	if k.cursors == nil {
		k.cursors = &cursorDict{}
	}
	page := scanPage(members(v), k.cursors.member(typ, args[2]), opts)
	next := []byte("0")
	if len(page) == opts.limit {
		next = strconv.AppendUint(nil, k.cursors.issue(typ, page[len(page)-1], k.timeNow()), 10)
	}
	out = appendArray(out, 2)
	out = appendBulk(out, next)
	out = appendArray(out, perEntry*len(page))
	for _, m := range page {
		out = appendEntry(out, v, m)
	}
	return out
}

func cmdHScan(k *Keyspace, out []byte, args [][]byte) []byte {
	return subkeyScan(k, out, args, kindHash, cursorTypeHash,
		func(v *value) []string { return v.hash.fields },
		func(out []byte, v *value, field string) []byte {
			val, _ := v.hash.get([]byte(field))
			return appendBulk(appendBulkString(out, field), val)
		}, 2)
}

func cmdSScan(k *Keyspace, out []byte, args [][]byte) []byte {
	return subkeyScan(k, out, args, kindSet, cursorTypeSet,
		func(v *value) []string {
			ms := make([]string, 0, len(v.set))
			for m := range v.set {
				ms = append(ms, m)
			}
			return ms
		},
		func(out []byte, v *value, member string) []byte { return appendBulkString(out, member) }, 1)
}

func cmdZScan(k *Keyspace, out []byte, args [][]byte) []byte {
	return subkeyScan(k, out, args, kindZSet, cursorTypeZSet,
		func(v *value) []string {
			ms := make([]string, 0, v.zset.len())
			for m := range v.zset.scores {
				ms = append(ms, m)
			}
			return ms
		},
		func(out []byte, v *value, member string) []byte {
			return appendBulkDouble(appendBulkString(out, member), v.zset.scores[member])
		}, 2)
}
