package keyspace

import "bytes"

func pushGeneric(k *Keyspace, out []byte, args [][]byte, front, onlyExisting bool) []byte {
	v, ok := k.lookupKind(args[1], kindList)
	if !ok {
		return append(out, errWrongType...)
	}
	if v == nil {
		if onlyExisting {
			return append(out, replyZero...)
		}
		v = &value{kind: kindList, list: &list{}}
		k.add(args[1], v)
	}
	for _, e := range args[2:] {
		if front {
			v.list.pushFront(clone(e))
		} else {
			v.list.pushBack(clone(e))
		}
	}
	k.recordArgs(args)
	return appendInt(out, int64(v.list.len()))
}

func cmdLPush(k *Keyspace, out []byte, args [][]byte) []byte {
	return pushGeneric(k, out, args, true, false)
}

func cmdRPush(k *Keyspace, out []byte, args [][]byte) []byte {
	return pushGeneric(k, out, args, false, false)
}

func cmdLPushX(k *Keyspace, out []byte, args [][]byte) []byte {
	return pushGeneric(k, out, args, true, true)
}

func cmdRPushX(k *Keyspace, out []byte, args [][]byte) []byte {
	return pushGeneric(k, out, args, false, true)
}

// parseCount is Redis' getPositiveLongFromObjectOrReply, which words a
// non-integer and a negative count alike.
func parseCount(arg []byte) (int64, bool) {
	n, ok := parseInt(arg)
	return n, ok && n >= 0
}

func popGeneric(k *Keyspace, out []byte, args [][]byte, front bool) []byte {
	if len(args) > 3 {
		return appendArityError(out, string(lowerASCII(args[0])))
	}
	count, hasCount := int64(1), len(args) == 3
	if hasCount {
		var ok bool
		if count, ok = parseCount(args[2]); !ok {
			return append(out, errNotPositive...)
		}
	}
	v, ok := k.lookupKind(args[1], kindList)
	switch {
	case !ok:
		return append(out, errWrongType...)
	case v == nil && hasCount:
		return append(out, replyNullArray...)
	case v == nil:
		return append(out, replyNullBulk...)
	case hasCount && count == 0:
		return append(out, replyEmptyArr...)
	}
	n := min(count, int64(v.list.len()))
	if hasCount {
		out = appendArray(out, int(n))
	}
	for i := int64(0); i < n; i++ {
		var e []byte
		if front {
			e = v.list.popFront()
		} else {
			e = v.list.popBack()
		}
		out = appendBulk(out, e)
	}
	k.removeIfEmpty(args[1], v)
	if hasCount && k.journaling() {
		k.record(args[0], args[1], itoa(n))
	} else {
		k.record(args[0], args[1])
	}
	return out
}

func cmdLPop(k *Keyspace, out []byte, args [][]byte) []byte { return popGeneric(k, out, args, true) }

func cmdRPop(k *Keyspace, out []byte, args [][]byte) []byte { return popGeneric(k, out, args, false) }

func cmdLLen(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindList, replyZero)
	if v == nil {
		return out
	}
	return appendInt(out, int64(v.list.len()))
}

func cmdLIndex(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindList, replyNullBulk)
	if v == nil {
		return out
	}
	idx, ok := parseInt(args[2])
	if !ok {
		return append(out, errNotInt...)
	}
	n := int64(v.list.len())
	if idx < 0 {
		idx += n
	}
	if idx < 0 || idx >= n {
		return append(out, replyNullBulk...)
	}
	return appendBulk(out, v.list.at(int(idx)))
}

// clampRange turns Redis start/end indexes into [start, end] within n
// elements; empty is true when nothing is selected.
func clampRange(start, end, n int64) (int64, int64, bool) {
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	start = max(start, 0)
	if start > end || start >= n {
		return 0, 0, true
	}
	return start, min(end, n-1), false
}

func cmdLRange(k *Keyspace, out []byte, args [][]byte) []byte {
	start, ok1 := parseInt(args[2])
	end, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		return append(out, errNotInt...)
	}
	v, out := k.lookupOrAnswer(out, args[1], kindList, replyEmptyArr)
	if v == nil {
		return out
	}
	start, end, empty := clampRange(start, end, int64(v.list.len()))
	if empty {
		return append(out, replyEmptyArr...)
	}
	out = appendArray(out, int(end-start+1))
	for i := start; i <= end; i++ {
		out = appendBulk(out, v.list.at(int(i)))
	}
	return out
}

func cmdLSet(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindList, errNoSuchKey)
	if v == nil {
		return out
	}
	idx, ok := parseInt(args[2])
	if !ok {
		return append(out, errNotInt...)
	}
	n := int64(v.list.len())
	if idx < 0 {
		idx += n
	}
	if idx < 0 || idx >= n {
		return append(out, errIndexRange...)
	}
	v.list.set(int(idx), clone(args[3]))
	k.recordArgs(args)
	return append(out, replyOK...)
}

func cmdLRem(k *Keyspace, out []byte, args [][]byte) []byte {
	count, ok := parseInt(args[2])
	if !ok {
		return append(out, errNotInt...)
	}
	v, out := k.lookupOrAnswer(out, args[1], kindList, replyZero)
	if v == nil {
		return out
	}
	items := v.list.items()
	removed := int64(0)
	keep := make([][]byte, 0, len(items))
	if count >= 0 {
		for _, e := range items {
			if (count == 0 || removed < count) && bytes.Equal(e, args[3]) {
				removed++
				continue
			}
			keep = append(keep, e)
		}
	} else {
		for i := len(items) - 1; i >= 0; i-- {
			if removed < -count && bytes.Equal(items[i], args[3]) {
				removed++
				continue
			}
			keep = append(keep, items[i])
		}
		for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
			keep[i], keep[j] = keep[j], keep[i]
		}
	}
	if removed > 0 {
		v.list.reset(keep)
		k.removeIfEmpty(args[1], v)
		k.recordArgs(args)
	}
	return appendInt(out, removed)
}

func cmdLTrim(k *Keyspace, out []byte, args [][]byte) []byte {
	start, ok1 := parseInt(args[2])
	end, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		return append(out, errNotInt...)
	}
	v, out := k.lookupOrAnswer(out, args[1], kindList, replyOK)
	if v == nil {
		return out
	}
	n := int64(v.list.len())
	start, end, empty := clampRange(start, end, n)
	if empty {
		k.remove(args[1])
		k.recordArgs(args)
		return append(out, replyOK...)
	}
	if start == 0 && end == n-1 {
		return append(out, replyOK...)
	}
	for i := int64(0); i < start; i++ {
		v.list.popFront()
	}
	for i := end + 1; i < n; i++ {
		v.list.popBack()
	}
	k.recordArgs(args)
	return append(out, replyOK...)
}

func cmdLInsert(k *Keyspace, out []byte, args [][]byte) []byte {
	var after bool
	switch {
	case equalFold(args[2], "after"):
		after = true
	case equalFold(args[2], "before"):
	default:
		return append(out, errSyntax...)
	}
	v, out := k.lookupOrAnswer(out, args[1], kindList, replyZero)
	if v == nil {
		return out
	}
	items := v.list.items()
	for i, e := range items {
		if !bytes.Equal(e, args[3]) {
			continue
		}
		if after {
			i++
		}
		items = append(items[:i], append([][]byte{clone(args[4])}, items[i:]...)...)
		v.list.reset(items)
		k.recordArgs(args)
		return appendInt(out, int64(len(items)))
	}
	return appendInt(out, -1)
}

func cmdLPos(k *Keyspace, out []byte, args [][]byte) []byte {
	rank, count, maxLen := int64(1), int64(-1), int64(0)
	for j := 3; j < len(args); j++ {
		more := j+1 < len(args)
		switch {
		case equalFold(args[j], "rank") && more:
			j++
			var ok bool
			if rank, ok = parseInt(args[j]); !ok {
				return append(out, errNotInt...)
			}
			if rank == 0 {
				return appendError(out, "RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")
			}
		case equalFold(args[j], "count") && more:
			j++
			var ok bool
			if count, ok = parseCount(args[j]); !ok {
				return appendError(out, "COUNT can't be negative")
			}
		case equalFold(args[j], "maxlen") && more:
			j++
			var ok bool
			if maxLen, ok = parseCount(args[j]); !ok {
				return appendError(out, "MAXLEN can't be negative")
			}
		default:
			return append(out, errSyntax...)
		}
	}
	v, ok := k.lookupKind(args[1], kindList)
	switch {
	case !ok:
		return append(out, errWrongType...)
	case v == nil && count != -1:
		return append(out, replyEmptyArr...)
	case v == nil:
		return append(out, replyNullBulk...)
	}
	fromTail := rank < 0
	if fromTail {
		rank = -rank // wraps for the minimum, as in C: then the first match counts
	}
	n := int64(v.list.len())
	var found []int64
	matches := int64(0)
	for i := int64(0); i < n && (maxLen == 0 || i < maxLen); i++ {
		idx := i
		if fromTail {
			idx = n - 1 - i
		}
		if !bytes.Equal(v.list.at(int(idx)), args[2]) {
			continue
		}
		if matches++; matches < rank {
			continue
		}
		found = append(found, idx)
		if count == -1 || (count > 0 && matches-rank+1 >= count) {
			break
		}
	}
	if count == -1 {
		if len(found) == 0 {
			return append(out, replyNullBulk...)
		}
		return appendInt(out, found[0])
	}
	out = appendArray(out, len(found))
	for _, idx := range found {
		out = appendInt(out, idx)
	}
	return out
}
