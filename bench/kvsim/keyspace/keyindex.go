package keyspace

import "sort"

// keyIndex orders every key by a 64-bit hash so SCAN can resume from a
// cursor (the hash position to continue from) while keys come and go, like
// Redis' reverse-binary dictionary cursor: a key present for the whole scan
// is returned at least once. Buckets hold sorted runs of positions and split
// in two as the keyspace grows, so an insert costs a short binary search.
type keyIndex struct {
	bits    uint // len(buckets) == 1 << bits; a bucket holds the positions with those top bits
	buckets [][]indexEntry
	n       int
}

type indexEntry struct {
	pos uint64
	key string
}

const (
	indexInitialBits = 8
	indexMaxBits     = 24
	indexLoad        = 8 // average entries per bucket before a split
)

func newKeyIndex() *keyIndex {
	return &keyIndex{bits: indexInitialBits, buckets: make([][]indexEntry, 1<<indexInitialBits)}
}

// keyPosition is a key's place in SCAN order: FNV-1a with a final mix so the
// top bits spread well. Never 0, which is the start and end cursor.
func keyPosition(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	if h == 0 {
		h = 1
	}
	return h
}

func (x *keyIndex) bucketOf(pos uint64) int { return int(pos >> (64 - x.bits)) }

// search returns where (pos, key) is or belongs in its bucket.
func search(b []indexEntry, pos uint64, key string) int {
	return sort.Search(len(b), func(i int) bool {
		return b[i].pos > pos || (b[i].pos == pos && b[i].key >= key)
	})
}

// insert adds a key the caller knows is absent.
func (x *keyIndex) insert(key string) {
	pos := keyPosition(key)
	bi := x.bucketOf(pos)
	b := x.buckets[bi]
	i := search(b, pos, key)
	b = append(b, indexEntry{})
	copy(b[i+1:], b[i:])
	b[i] = indexEntry{pos, key}
	x.buckets[bi] = b
	x.n++
	if x.n > indexLoad<<x.bits && x.bits < indexMaxBits {
		x.split()
	}
}

func (x *keyIndex) delete(key string) {
	pos := keyPosition(key)
	bi := x.bucketOf(pos)
	b := x.buckets[bi]
	i := search(b, pos, key)
	if i == len(b) || b[i].key != key {
		return
	}
	copy(b[i:], b[i+1:])
	b[len(b)-1] = indexEntry{}
	x.buckets[bi] = b[:len(b)-1]
	x.n--
}

// split doubles the buckets; each old bucket's sorted run divides in two
// sorted runs on the next bit.
func (x *keyIndex) split() {
	x.bits++
	buckets := make([][]indexEntry, 1<<x.bits)
	for i, b := range x.buckets {
		mid := sort.Search(len(b), func(j int) bool { return x.bucketOf(b[j].pos) > 2*i })
		buckets[2*i] = b[:mid:mid]
		buckets[2*i+1] = append([]indexEntry(nil), b[mid:]...)
	}
	x.buckets = buckets
}

// each calls fn on the keys in position order from cursor on (0: the
// start) until fn returns false.
func (x *keyIndex) each(cursor uint64, fn func(e indexEntry) bool) {
	for bi := x.bucketOf(cursor); bi < len(x.buckets); bi++ {
		b := x.buckets[bi]
		for i := sort.Search(len(b), func(i int) bool { return b[i].pos >= cursor }); i < len(b); i++ {
			if !fn(b[i]) {
				return
			}
		}
	}
}
