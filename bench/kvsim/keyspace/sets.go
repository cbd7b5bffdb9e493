package keyspace

import (
	"math"
	"math/rand/v2"
)

// maxRandomCount bounds SRANDMEMBER's repeated picks. A variable so the
// fuzz test can keep memory small.
var maxRandomCount int64 = 1 << 24

func cmdSAdd(k *Keyspace, out []byte, args [][]byte) []byte {
	v, ok := k.lookupKind(args[1], kindSet)
	if !ok {
		return append(out, errWrongType...)
	}
	if v == nil {
		v = &value{kind: kindSet, set: map[string]struct{}{}}
		k.add(args[1], v)
	}
	added := 0
	for _, m := range args[2:] {
		if _, exists := v.set[string(m)]; !exists {
			v.set[string(m)] = struct{}{}
			added++
		}
	}
	if added > 0 {
		k.recordArgs(args)
	}
	return appendInt(out, int64(added))
}

func cmdSRem(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindSet, replyZero)
	if v == nil {
		return out
	}
	removed := 0
	for _, m := range args[2:] {
		if _, exists := v.set[string(m)]; exists {
			delete(v.set, string(m))
			removed++
		}
	}
	if removed > 0 {
		k.removeIfEmpty(args[1], v)
		k.recordArgs(args)
	}
	return appendInt(out, int64(removed))
}

func appendMembers(out []byte, members []string) []byte {
	out = appendArray(out, len(members))
	for _, m := range members {
		out = appendBulkString(out, m)
	}
	return out
}

func cmdSMembers(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindSet, replyEmptyArr)
	if v == nil {
		return out
	}
	return appendMembers(out, sortedMembers(v.set))
}

func cmdSIsMember(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindSet, replyZero)
	if v == nil {
		return out
	}
	if _, exists := v.set[string(args[2])]; exists {
		return append(out, replyOne...)
	}
	return append(out, replyZero...)
}

func cmdSMIsMember(k *Keyspace, out []byte, args [][]byte) []byte {
	v, ok := k.lookupKind(args[1], kindSet)
	if !ok {
		return append(out, errWrongType...)
	}
	out = appendArray(out, len(args)-2)
	for _, m := range args[2:] {
		exists := false
		if v != nil {
			_, exists = v.set[string(m)]
		}
		if exists {
			out = append(out, replyOne...)
		} else {
			out = append(out, replyZero...)
		}
	}
	return out
}

func cmdSCard(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindSet, replyZero)
	if v == nil {
		return out
	}
	return appendInt(out, int64(len(v.set)))
}

// randomMembers picks n distinct members (all of them if n is larger) in
// Go's randomized map order: cheap, and random enough for SPOP.
func randomMembers(set map[string]struct{}, n int) []string {
	out := make([]string, 0, min(n, len(set)))
	for m := range set {
		if len(out) == n {
			break
		}
		out = append(out, m)
	}
	return out
}

func cmdSPop(k *Keyspace, out []byte, args [][]byte) []byte {
	if len(args) > 3 {
		return append(out, errSyntax...)
	}
	hasCount := len(args) == 3
	count := int64(1)
	if hasCount {
		var ok bool
		if count, ok = parseCount(args[2]); !ok {
			return append(out, errNotPositive...)
		}
	}
	v, ok := k.lookupKind(args[1], kindSet)
	switch {
	case !ok:
		return append(out, errWrongType...)
	case v == nil && hasCount:
		return append(out, replyEmptyArr...)
	case v == nil:
		return append(out, replyNullBulk...)
	case count == 0:
		return append(out, replyEmptyArr...)
	}
	popped := randomMembers(v.set, int(min(count, math.MaxInt32)))
	if hasCount {
		out = appendArray(out, len(popped))
	}
	effect := k.effectStart(bSREM)
	effect = append(effect, args[1])
	for _, m := range popped {
		out = appendBulkString(out, m)
		delete(v.set, m)
		effect = append(effect, []byte(m))
	}
	k.removeIfEmpty(args[1], v)
	k.record(effect...)
	return out
}

// cmdSRandMember is Kvrocks' SRANDMEMBER, not Redis': without a count it
// takes a count of 1 and still answers an array (a set in RESP3), empty for
// a missing key; the count is a 32-bit integer; a count of 0 answers an
// empty array before the key's type is looked at; a third argument is
// "wrong number of arguments" (CommandSRandMember, Set::Take).
func cmdSRandMember(k *Keyspace, out []byte, args [][]byte) []byte {
	if len(args) > 3 {
		return append(out, "-ERR wrong number of arguments\r\n"...)
	}
	count := int64(1)
	if len(args) == 3 {
		var ok bool
		if count, ok = parseInt(args[2]); !ok || count < math.MinInt32 || count > math.MaxInt32 {
			return append(out, errNotInt...)
		}
	}
	if count == 0 {
		return append(out, replyEmptyArr...)
	}
	v, ok := k.lookupKind(args[1], kindSet)
	switch {
	case !ok:
		return append(out, errWrongType...)
	case v == nil:
		return append(out, replyEmptyArr...)
	}
	if count > 0 {
		return appendMembers(out, randomMembers(v.set, int(count)))
	}
	if -count > maxRandomCount {
		// Kvrocks would try and run out of memory; refuse instead.
		return append(out, "-ERR value is out of range\r\n"...)
	}
	all := sortedMembers(v.set)
	out = appendArray(out, int(-count))
	for i := int64(0); i < -count; i++ {
		out = appendBulkString(out, all[rand.IntN(len(all))])
	}
	return out
}

func cmdSMove(k *Keyspace, out []byte, args [][]byte) []byte {
	src := k.lookup(args[1])
	dst := k.lookup(args[2])
	if src == nil {
		return append(out, replyZero...)
	}
	if src.kind != kindSet || (dst != nil && dst.kind != kindSet) {
		return append(out, errWrongType...)
	}
	member := string(args[3])
	_, isMember := src.set[member]
	if src == dst || !isMember {
		if isMember {
			return append(out, replyOne...)
		}
		return append(out, replyZero...)
	}
	delete(src.set, member)
	k.removeIfEmpty(args[1], src)
	if dst == nil {
		dst = &value{kind: kindSet, set: map[string]struct{}{}}
		k.add(args[2], dst)
	}
	dst.set[member] = struct{}{}
	k.recordArgs(args)
	return append(out, replyOne...)
}

// setsOf looks up the set operands; a missing key is an empty set (nil).
// ok is false on WRONGTYPE.
func (k *Keyspace) setsOf(keys [][]byte) ([]map[string]struct{}, bool) {
	sets := make([]map[string]struct{}, len(keys))
	for i, key := range keys {
		v, ok := k.lookupKind(key, kindSet)
		if !ok {
			return nil, false
		}
		if v != nil {
			sets[i] = v.set
		}
	}
	return sets, true
}

func setInter(sets []map[string]struct{}) map[string]struct{} {
	out := map[string]struct{}{}
	for _, s := range sets {
		if len(s) == 0 {
			return out
		}
	}
	for m := range sets[0] {
		inAll := true
		for _, s := range sets[1:] {
			if _, ok := s[m]; !ok {
				inAll = false
				break
			}
		}
		if inAll {
			out[m] = struct{}{}
		}
	}
	return out
}

func setUnion(sets []map[string]struct{}) map[string]struct{} {
	out := map[string]struct{}{}
	for _, s := range sets {
		for m := range s {
			out[m] = struct{}{}
		}
	}
	return out
}

func setDiff(sets []map[string]struct{}) map[string]struct{} {
	out := map[string]struct{}{}
	for m := range sets[0] {
		out[m] = struct{}{}
	}
	for _, s := range sets[1:] {
		for m := range s {
			delete(out, m)
		}
	}
	return out
}

func setAlgebra(k *Keyspace, out []byte, args [][]byte, op func([]map[string]struct{}) map[string]struct{}, store bool) []byte {
	first := 1
	if store {
		first = 2
	}
	sets, ok := k.setsOf(args[first:])
	if !ok {
		return append(out, errWrongType...)
	}
	result := op(sets)
	if !store {
		return appendMembers(out, sortedMembers(result))
	}
	existed := k.lookup(args[1]) != nil
	if len(result) == 0 {
		if existed {
			k.remove(args[1])
			k.recordArgs(args)
		}
		return append(out, replyZero...)
	}
	k.replace(args[1], &value{kind: kindSet, set: result})
	k.recordArgs(args)
	return appendInt(out, int64(len(result)))
}

func cmdSInter(k *Keyspace, out []byte, args [][]byte) []byte {
	return setAlgebra(k, out, args, setInter, false)
}

func cmdSUnion(k *Keyspace, out []byte, args [][]byte) []byte {
	return setAlgebra(k, out, args, setUnion, false)
}

func cmdSDiff(k *Keyspace, out []byte, args [][]byte) []byte {
	return setAlgebra(k, out, args, setDiff, false)
}

func cmdSInterStore(k *Keyspace, out []byte, args [][]byte) []byte {
	return setAlgebra(k, out, args, setInter, true)
}

func cmdSUnionStore(k *Keyspace, out []byte, args [][]byte) []byte {
	return setAlgebra(k, out, args, setUnion, true)
}

func cmdSDiffStore(k *Keyspace, out []byte, args [][]byte) []byte {
	return setAlgebra(k, out, args, setDiff, true)
}
