package keyspace

import (
	"sort"
	"strconv"
)

// list is a ring-buffer deque: O(1) at both ends, O(1) by index.
type list struct {
	buf  [][]byte // len is a power of two (or zero)
	head int
	n    int
}

func (l *list) len() int { return l.n }

func (l *list) at(i int) []byte { return l.buf[(l.head+i)&(len(l.buf)-1)] }

func (l *list) set(i int, v []byte) { l.buf[(l.head+i)&(len(l.buf)-1)] = v }

func (l *list) grow() {
	if l.n < len(l.buf) {
		return
	}
	size := 2 * len(l.buf)
	if size == 0 {
		size = 4
	}
	buf := make([][]byte, size)
	for i := 0; i < l.n; i++ {
		buf[i] = l.at(i)
	}
	l.buf, l.head = buf, 0
}

func (l *list) pushBack(v []byte) {
	l.grow()
	l.n++
	l.set(l.n-1, v)
}

func (l *list) pushFront(v []byte) {
	l.grow()
	l.head = (l.head - 1) & (len(l.buf) - 1)
	l.n++
	l.set(0, v)
}

func (l *list) popFront() []byte {
	v := l.at(0)
	l.set(0, nil)
	l.head = (l.head + 1) & (len(l.buf) - 1)
	l.n--
	return v
}

func (l *list) popBack() []byte {
	v := l.at(l.n - 1)
	l.set(l.n-1, nil)
	l.n--
	return v
}

// items copies the elements out, in order.
func (l *list) items() [][]byte {
	out := make([][]byte, l.n)
	for i := range out {
		out[i] = l.at(i)
	}
	return out
}

// reset replaces the contents.
func (l *list) reset(items [][]byte) {
	*l = list{}
	for _, v := range items {
		l.pushBack(v)
	}
}

// hash keeps fields in insertion order, as the listpack of a small Redis hash
// does, so HGETALL matches Redis byte for byte.
type hash struct {
	fields []string
	values [][]byte
	index  map[string]int
}

func newHash() *hash { return &hash{index: map[string]int{}} }

func (h *hash) len() int { return len(h.fields) }

func (h *hash) get(field []byte) ([]byte, bool) {
	i, ok := h.index[string(field)]
	if !ok {
		return nil, false
	}
	return h.values[i], true
}

// set stores a copy of val; it reports whether the field is new.
func (h *hash) set(field, val []byte) bool {
	if i, ok := h.index[string(field)]; ok {
		h.values[i] = append(h.values[i][:0], val...)
		return false
	}
	f := string(field)
	h.index[f] = len(h.fields)
	h.fields = append(h.fields, f)
	h.values = append(h.values, clone(val))
	return true
}

func (h *hash) del(field []byte) bool {
	i, ok := h.index[string(field)]
	if !ok {
		return false
	}
	delete(h.index, h.fields[i])
	copy(h.fields[i:], h.fields[i+1:])
	copy(h.values[i:], h.values[i+1:])
	h.fields = h.fields[:len(h.fields)-1]
	h.values[len(h.values)-1] = nil
	h.values = h.values[:len(h.values)-1]
	for j := i; j < len(h.fields); j++ {
		h.index[h.fields[j]] = j
	}
	return true
}

// zset is a sorted set: member scores plus a skiplist in (score, member) order.
type zset struct {
	scores map[string]float64
	sl     *skiplist
}

func newZSet() *zset { return &zset{scores: map[string]float64{}, sl: newSkiplist()} }

func (z *zset) len() int { return len(z.scores) }

// put sets a member's score. Negative zero is stored as zero: Redis' small
// sorted sets keep scores as text and reply "0" for it.
func (z *zset) put(member string, score float64) {
	if score == 0 {
		score = 0
	}
	if old, ok := z.scores[member]; ok {
		if old == score {
			return
		}
		z.sl.delete(old, member)
	}
	z.scores[member] = score
	z.sl.insert(score, member)
}

func (z *zset) del(member string) bool {
	score, ok := z.scores[member]
	if !ok {
		return false
	}
	z.sl.delete(score, member)
	delete(z.scores, member)
	return true
}

// sortedMembers lists a set's members in a stable order: Redis 7.0 returns
// integer sets sorted numerically and others in hash order, so numbers sort
// numerically first, then the rest bytewise.
func sortedMembers(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		a, aok := parseInt([]byte(out[i]))
		b, bok := parseInt([]byte(out[j]))
		switch {
		case aok && bok:
			return a < b
		case aok != bok:
			return aok
		}
		return out[i] < out[j]
	})
	return out
}

func itoa(n int64) []byte { return strconv.AppendInt(nil, n, 10) }
