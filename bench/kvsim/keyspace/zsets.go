package keyspace

import "math"

const (
	zaddNX = 1 << iota
	zaddXX
	zaddGT
	zaddLT
	zaddCH
	zaddIncr
)

func cmdZAdd(k *Keyspace, out []byte, args [][]byte) []byte {
	flags, idx := 0, 2
options:
	for ; idx < len(args); idx++ {
		switch {
		case equalFold(args[idx], "nx"):
			flags |= zaddNX
		case equalFold(args[idx], "xx"):
			flags |= zaddXX
		case equalFold(args[idx], "ch"):
			flags |= zaddCH
		case equalFold(args[idx], "incr"):
			flags |= zaddIncr
		case equalFold(args[idx], "gt"):
			flags |= zaddGT
		case equalFold(args[idx], "lt"):
			flags |= zaddLT
		default:
			break options
		}
	}
	return zaddGeneric(k, out, args, flags, idx)
}

func cmdZIncrBy(k *Keyspace, out []byte, args [][]byte) []byte {
	return zaddGeneric(k, out, args, zaddIncr, 2)
}

func zaddGeneric(k *Keyspace, out []byte, args [][]byte, flags, scoreIdx int) []byte {
	pairs := len(args) - scoreIdx
	if pairs%2 != 0 || pairs == 0 {
		return append(out, errSyntax...)
	}
	pairs /= 2
	nx, xx, gt, lt := flags&zaddNX != 0, flags&zaddXX != 0, flags&zaddGT != 0, flags&zaddLT != 0
	incr := flags&zaddIncr != 0
	if nx && xx {
		return appendError(out, "XX and NX options at the same time are not compatible")
	}
	if (gt && nx) || (lt && nx) || (gt && lt) {
		return appendError(out, "GT, LT, and/or NX options at the same time are not compatible")
	}
	if incr && pairs > 1 {
		return appendError(out, "INCR option supports a single increment-element pair")
	}
	var small [8]float64 // most ZADDs carry a pair or two: no allocation
	scores := small[:0]
	if pairs > len(small) {
		scores = make([]float64, 0, pairs)
	}
	scores = scores[:pairs]
	for j := range scores {
		f, ok := parseFloat(args[scoreIdx+2*j])
		if !ok {
			return append(out, errNotFloat...)
		}
		scores[j] = f
	}
	v, ok := k.lookupKind(args[1], kindZSet)
	if !ok {
		return append(out, errWrongType...)
	}
	added, updated, processed := 0, 0, 0
	var score float64
	if v == nil && !xx {
		v = &value{kind: kindZSet, zset: newZSet()}
		k.add(args[1], v)
	}
	if v != nil {
		for j, s := range scores {
			member := string(args[scoreIdx+2*j+1])
			score = s
			cur, exists := v.zset.scores[member]
			switch {
			case exists && nx:
				continue
			case exists:
				if incr {
					score += cur
					if math.IsNaN(score) {
						k.removeIfEmpty(args[1], v)
						if added+updated > 0 {
							k.recordArgs(args)
						}
						return append(out, errScoreNaN...)
					}
				}
				if (lt && score >= cur) || (gt && score <= cur) {
					continue
				}
				if score != cur {
					v.zset.put(member, score)
					updated++
				}
			case xx:
				continue
			default:
				v.zset.put(member, score)
				added++
			}
			processed++
		}
	}
	if added+updated > 0 {
		k.recordArgs(args)
	}
	if incr {
		if processed == 0 {
			return append(out, replyNullBulk...)
		}
		return appendBulkDouble(out, score)
	}
	if flags&zaddCH != 0 {
		return appendInt(out, int64(added+updated))
	}
	return appendInt(out, int64(added))
}

func cmdZRem(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindZSet, replyZero)
	if v == nil {
		return out
	}
	removed := 0
	for _, m := range args[2:] {
		if v.zset.del(string(m)) {
			removed++
		}
	}
	if removed > 0 {
		k.removeIfEmpty(args[1], v)
		k.recordArgs(args)
	}
	return appendInt(out, int64(removed))
}

func cmdZCard(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindZSet, replyZero)
	if v == nil {
		return out
	}
	return appendInt(out, int64(v.zset.len()))
}

func cmdZScore(k *Keyspace, out []byte, args [][]byte) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindZSet, replyNullBulk)
	if v == nil {
		return out
	}
	s, exists := v.zset.scores[string(args[2])]
	if !exists {
		return append(out, replyNullBulk...)
	}
	return appendBulkDouble(out, s)
}

func cmdZMScore(k *Keyspace, out []byte, args [][]byte) []byte {
	v, ok := k.lookupKind(args[1], kindZSet)
	if !ok {
		return append(out, errWrongType...)
	}
	out = appendArray(out, len(args)-2)
	for _, m := range args[2:] {
		var s float64
		exists := false
		if v != nil {
			s, exists = v.zset.scores[string(m)]
		}
		if exists {
			out = appendBulkDouble(out, s)
		} else {
			out = append(out, replyNullBulk...)
		}
	}
	return out
}

func zrankGeneric(k *Keyspace, out []byte, args [][]byte, reverse bool) []byte {
	v, out := k.lookupOrAnswer(out, args[1], kindZSet, replyNullBulk)
	if v == nil {
		return out
	}
	s, exists := v.zset.scores[string(args[2])]
	if !exists {
		return append(out, replyNullBulk...)
	}
	r := v.zset.sl.rank(s, string(args[2])) - 1
	if reverse {
		r = v.zset.len() - 1 - r
	}
	return appendInt(out, int64(r))
}

func cmdZRank(k *Keyspace, out []byte, args [][]byte) []byte {
	return zrankGeneric(k, out, args, false)
}

func cmdZRevRank(k *Keyspace, out []byte, args [][]byte) []byte {
	return zrankGeneric(k, out, args, true)
}

// scoreRange is a parsed ZRANGEBYSCORE interval.
type scoreRange struct {
	min, max     float64
	minEx, maxEx bool
}

func parseScoreBound(b []byte) (float64, bool, bool) {
	if len(b) > 0 && b[0] == '(' {
		f, ok := parseRangeFloat(b[1:])
		return f, true, ok && !math.IsNaN(f)
	}
	f, ok := parseRangeFloat(b)
	return f, false, ok && !math.IsNaN(f)
}

func parseScoreRange(lo, hi []byte) (scoreRange, bool) {
	var r scoreRange
	var ok1, ok2 bool
	r.min, r.minEx, ok1 = parseScoreBound(lo)
	r.max, r.maxEx, ok2 = parseScoreBound(hi)
	return r, ok1 && ok2
}

func (r *scoreRange) aboveMin(s float64) bool {
	if r.minEx {
		return s > r.min
	}
	return s >= r.min
}

func (r *scoreRange) belowMax(s float64) bool {
	if r.maxEx {
		return s < r.max
	}
	return s <= r.max
}

func (r *scoreRange) empty() bool {
	return r.min > r.max || (r.min == r.max && (r.minEx || r.maxEx))
}

// lexBound is one end of a BYLEX interval: "-" (inf < 0), "+" (inf > 0) or a
// member, inclusive or exclusive.
type lexBound struct {
	inf int
	val string
	ex  bool
}

func parseLexBound(b []byte) (lexBound, bool) {
	if len(b) == 0 {
		return lexBound{}, false
	}
	switch b[0] {
	case '+':
		return lexBound{inf: 1, ex: true}, len(b) == 1
	case '-':
		return lexBound{inf: -1, ex: true}, len(b) == 1
	case '(':
		return lexBound{val: string(b[1:]), ex: true}, true
	case '[':
		return lexBound{val: string(b[1:])}, true
	}
	return lexBound{}, false
}

// cmpLex compares a member (inf 0) or bound with a bound, as Redis' sdscmplex.
func cmpLex(a, b lexBound) int {
	switch {
	case a.inf == b.inf && a.inf != 0:
		return 0
	case a.inf < 0 || b.inf > 0:
		return -1
	case a.inf > 0 || b.inf < 0:
		return 1
	case a.val < b.val:
		return -1
	case a.val > b.val:
		return 1
	}
	return 0
}

type lexRange struct{ min, max lexBound }

func (r *lexRange) aboveMin(m string) bool {
	c := cmpLex(lexBound{val: m}, r.min)
	return c > 0 || (c == 0 && !r.min.ex)
}

func (r *lexRange) belowMax(m string) bool {
	c := cmpLex(lexBound{val: m}, r.max)
	return c < 0 || (c == 0 && !r.max.ex)
}

func (r *lexRange) empty() bool {
	c := cmpLex(r.min, r.max)
	return c > 0 || (c == 0 && (r.min.ex || r.max.ex))
}

const (
	byRank = iota
	byScore
	byLex
)

// zrangeSpec is ZRANGE's parsed form; the legacy Z[REV]RANGE[BYSCORE]
// commands preset by and reverse.
type zrangeSpec struct {
	by            int
	reverse       bool
	withScores    bool
	offset, limit int64
	hasLimit      bool
}

func cmdZRange(k *Keyspace, out []byte, args [][]byte) []byte {
	return zrangeGeneric(k, out, args, byRank, false, true)
}

func cmdZRevRange(k *Keyspace, out []byte, args [][]byte) []byte {
	return zrangeGeneric(k, out, args, byRank, true, false)
}

func cmdZRangeByScore(k *Keyspace, out []byte, args [][]byte) []byte {
	return zrangeGeneric(k, out, args, byScore, false, false)
}

func cmdZRevRangeByScore(k *Keyspace, out []byte, args [][]byte) []byte {
	return zrangeGeneric(k, out, args, byScore, true, false)
}

func zrangeGeneric(k *Keyspace, out []byte, args [][]byte, by int, reverse, auto bool) []byte {
	spec := zrangeSpec{by: by, reverse: reverse, limit: -1}
	byChosen, dirChosen := !auto, !auto
	for j := 4; j < len(args); j++ {
		left := len(args) - j - 1
		switch {
		case equalFold(args[j], "withscores"):
			spec.withScores = true
		case equalFold(args[j], "limit") && left >= 2:
			off, ok1 := parseInt(args[j+1])
			lim, ok2 := parseInt(args[j+2])
			if !ok1 || !ok2 {
				return append(out, errNotInt...)
			}
			spec.offset, spec.limit, spec.hasLimit = off, lim, true
			j += 2
		case !dirChosen && equalFold(args[j], "rev"):
			spec.reverse, dirChosen = true, true
		case !byChosen && equalFold(args[j], "bylex"):
			spec.by, byChosen = byLex, true
		case !byChosen && equalFold(args[j], "byscore"):
			spec.by, byChosen = byScore, true
		default:
			return append(out, errSyntax...)
		}
	}
	if spec.hasLimit && spec.by == byRank {
		return appendError(out, "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
	}
	if spec.withScores && spec.by == byLex {
		return appendError(out, "syntax error, WITHSCORES not supported in combination with BYLEX")
	}
	lo, hi := args[2], args[3]
	if spec.reverse && spec.by != byRank {
		lo, hi = hi, lo
	}
	var start, end int64
	var sr scoreRange
	var lr lexRange
	switch spec.by {
	case byRank:
		var ok1, ok2 bool
		start, ok1 = parseInt(lo)
		end, ok2 = parseInt(hi)
		if !ok1 || !ok2 {
			return append(out, errNotInt...)
		}
	case byScore:
		var ok bool
		if sr, ok = parseScoreRange(lo, hi); !ok {
			return append(out, errMinMaxFloat...)
		}
	case byLex:
		var ok1, ok2 bool
		lr.min, ok1 = parseLexBound(lo)
		lr.max, ok2 = parseLexBound(hi)
		if !ok1 || !ok2 {
			return append(out, errMinMaxLex...)
		}
	}
	v, out := k.lookupOrAnswer(out, args[1], kindZSet, replyEmptyArr)
	if v == nil {
		return out
	}
	var nodes []*slNode
	switch spec.by {
	case byRank:
		nodes = v.zset.rankRange(start, end, spec.reverse)
	case byScore:
		nodes = v.zset.filterRange(spec, sr.empty(),
			func(n *slNode) bool { return sr.aboveMin(n.score) },
			func(n *slNode) bool { return sr.belowMax(n.score) })
	case byLex:
		nodes = v.zset.filterRange(spec, lr.empty(),
			func(n *slNode) bool { return lr.aboveMin(n.member) },
			func(n *slNode) bool { return lr.belowMax(n.member) })
	}
	return appendNodes(out, nodes, spec.withScores)
}

func appendNodes(out []byte, nodes []*slNode, withScores bool) []byte {
	if withScores {
		out = appendArray(out, 2*len(nodes))
	} else {
		out = appendArray(out, len(nodes))
	}
	for _, n := range nodes {
		out = appendBulkString(out, n.member)
		if withScores {
			out = appendBulkDouble(out, n.score)
		}
	}
	return out
}

// rankRange returns the nodes between two Redis rank indexes.
func (z *zset) rankRange(start, end int64, reverse bool) []*slNode {
	n := int64(z.len())
	start, end, empty := clampRange(start, end, n)
	if empty {
		return nil
	}
	nodes := make([]*slNode, 0, end-start+1)
	if reverse {
		for x := z.sl.byRank(int(n - start)); len(nodes) < cap(nodes); x = x.backward {
			nodes = append(nodes, x)
		}
	} else {
		for x := z.sl.byRank(int(start + 1)); len(nodes) < cap(nodes); x = x.levels[0].forward {
			nodes = append(nodes, x)
		}
	}
	return nodes
}

// filterRange returns the nodes within [aboveMin, belowMax] in the spec's
// direction, after its offset and up to its limit.
func (z *zset) filterRange(spec zrangeSpec, empty bool, aboveMin, belowMax func(*slNode) bool) []*slNode {
	if empty || (spec.offset > 0 && spec.offset >= int64(z.len())) || spec.offset < 0 {
		return nil
	}
	var x *slNode
	if spec.reverse {
		x = z.sl.lastWhere(belowMax)
	} else {
		x = z.sl.firstWhere(aboveMin)
	}
	next := func(n *slNode) *slNode {
		if spec.reverse {
			return n.backward
		}
		return n.levels[0].forward
	}
	for i := int64(0); x != nil && i < spec.offset; i++ {
		x = next(x)
	}
	var nodes []*slNode
	for limit := spec.limit; x != nil && limit != 0 && aboveMin(x) && belowMax(x); limit-- {
		nodes = append(nodes, x)
		x = next(x)
	}
	return nodes
}

func cmdZCount(k *Keyspace, out []byte, args [][]byte) []byte {
	sr, ok := parseScoreRange(args[2], args[3])
	if !ok {
		return append(out, errMinMaxFloat...)
	}
	v, ok := k.lookupKind(args[1], kindZSet)
	switch {
	case !ok:
		return append(out, errWrongType...)
	case v == nil || sr.empty():
		return append(out, replyZero...)
	}
	first := v.zset.sl.firstWhere(func(n *slNode) bool { return sr.aboveMin(n.score) })
	last := v.zset.sl.lastWhere(func(n *slNode) bool { return sr.belowMax(n.score) })
	if first == nil || last == nil || !sr.belowMax(first.score) || !sr.aboveMin(last.score) {
		return append(out, replyZero...)
	}
	count := v.zset.sl.rank(last.score, last.member) - v.zset.sl.rank(first.score, first.member) + 1
	return appendInt(out, int64(count))
}

func zpopGeneric(k *Keyspace, out []byte, args [][]byte, max bool) []byte {
	if len(args) > 3 {
		return append(out, errSyntax...)
	}
	count := int64(1)
	if len(args) == 3 {
		var ok bool
		if count, ok = parseCount(args[2]); !ok {
			return append(out, errNotPositive...)
		}
		if count == 0 {
			return append(out, replyEmptyArr...)
		}
	}
	v, out := k.lookupOrAnswer(out, args[1], kindZSet, replyEmptyArr)
	if v == nil {
		return out
	}
	n := min(count, int64(v.zset.len()))
	out = appendArray(out, int(2*n))
	effect := k.effectStart(bZREM)
	effect = append(effect, args[1])
	for i := int64(0); i < n; i++ {
		x := v.zset.sl.first()
		if max {
			x = v.zset.sl.tail
		}
		out = appendBulkString(out, x.member)
		out = appendBulkDouble(out, x.score)
		effect = append(effect, []byte(x.member))
		v.zset.del(x.member)
	}
	k.removeIfEmpty(args[1], v)
	k.record(effect...)
	return out
}

func cmdZPopMin(k *Keyspace, out []byte, args [][]byte) []byte {
	return zpopGeneric(k, out, args, false)
}

func cmdZPopMax(k *Keyspace, out []byte, args [][]byte) []byte {
	return zpopGeneric(k, out, args, true)
}

func cmdZRemRangeByRank(k *Keyspace, out []byte, args [][]byte) []byte {
	start, ok1 := parseInt(args[2])
	end, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		return append(out, errNotInt...)
	}
	v, out := k.lookupOrAnswer(out, args[1], kindZSet, replyZero)
	if v == nil {
		return out
	}
	return k.zremNodes(out, args, v, v.zset.rankRange(start, end, false))
}

func cmdZRemRangeByScore(k *Keyspace, out []byte, args [][]byte) []byte {
	sr, ok := parseScoreRange(args[2], args[3])
	if !ok {
		return append(out, errMinMaxFloat...)
	}
	v, out := k.lookupOrAnswer(out, args[1], kindZSet, replyZero)
	if v == nil {
		return out
	}
	nodes := v.zset.filterRange(zrangeSpec{limit: -1}, sr.empty(),
		func(n *slNode) bool { return sr.aboveMin(n.score) },
		func(n *slNode) bool { return sr.belowMax(n.score) })
	return k.zremNodes(out, args, v, nodes)
}

func (k *Keyspace) zremNodes(out []byte, args [][]byte, v *value, nodes []*slNode) []byte {
	members := make([]string, len(nodes))
	for i, n := range nodes {
		members[i] = n.member
	}
	for _, m := range members {
		v.zset.del(m)
	}
	if len(members) > 0 {
		k.removeIfEmpty(args[1], v)
		k.recordArgs(args)
	}
	return appendInt(out, int64(len(members)))
}
