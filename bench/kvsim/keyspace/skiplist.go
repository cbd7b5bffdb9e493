package keyspace

import "math/rand/v2"

// skiplist orders (score, member) pairs the way Redis' zset skiplist does:
// by score, then by member bytes, with spans so ranks cost O(log n). It backs
// sorted sets and the SCAN index of the keyspace.
type skiplist struct {
	head   *slNode
	tail   *slNode
	length int
	level  int
}

type slNode struct {
	member   string
	score    float64
	backward *slNode
	levels   []slLevel
}

type slLevel struct {
	forward *slNode
	span    int
}

const slMaxLevel = 32

func newSkiplist() *skiplist {
	return &skiplist{head: &slNode{levels: make([]slLevel, slMaxLevel)}, level: 1}
}

func slRandomLevel() int {
	level := 1
	for level < slMaxLevel && rand.Uint32()&3 == 0 {
		level++
	}
	return level
}

// before reports whether node n sorts before (score, member).
func (n *slNode) before(score float64, member string) bool {
	return n.score < score || (n.score == score && n.member < member)
}

// insert adds a pair the caller knows is absent.
func (s *skiplist) insert(score float64, member string) *slNode {
	var update [slMaxLevel]*slNode
	var rank [slMaxLevel]int
	x := s.head
	for i := s.level - 1; i >= 0; i-- {
		if i != s.level-1 {
			rank[i] = rank[i+1]
		}
		for x.levels[i].forward != nil && x.levels[i].forward.before(score, member) {
			rank[i] += x.levels[i].span
			x = x.levels[i].forward
		}
		update[i] = x
	}
	level := slRandomLevel()
	if level > s.level {
		for i := s.level; i < level; i++ {
			rank[i] = 0
			update[i] = s.head
			update[i].levels[i].span = s.length
		}
		s.level = level
	}
	x = &slNode{member: member, score: score, levels: make([]slLevel, level)}
	for i := 0; i < level; i++ {
		x.levels[i].forward = update[i].levels[i].forward
		update[i].levels[i].forward = x
		x.levels[i].span = update[i].levels[i].span - (rank[0] - rank[i])
		update[i].levels[i].span = rank[0] - rank[i] + 1
	}
	for i := level; i < s.level; i++ {
		update[i].levels[i].span++
	}
	if update[0] != s.head {
		x.backward = update[0]
	}
	if x.levels[0].forward != nil {
		x.levels[0].forward.backward = x
	} else {
		s.tail = x
	}
	s.length++
	return x
}

func (s *skiplist) unlink(x *slNode, update *[slMaxLevel]*slNode) {
	for i := 0; i < s.level; i++ {
		if update[i].levels[i].forward == x {
			update[i].levels[i].span += x.levels[i].span - 1
			update[i].levels[i].forward = x.levels[i].forward
		} else {
			update[i].levels[i].span--
		}
	}
	if x.levels[0].forward != nil {
		x.levels[0].forward.backward = x.backward
	} else {
		s.tail = x.backward
	}
	for s.level > 1 && s.head.levels[s.level-1].forward == nil {
		s.level--
	}
	s.length--
}

// delete removes the pair; it reports whether it was present.
func (s *skiplist) delete(score float64, member string) bool {
	var update [slMaxLevel]*slNode
	x := s.head
	for i := s.level - 1; i >= 0; i-- {
		for x.levels[i].forward != nil && x.levels[i].forward.before(score, member) {
			x = x.levels[i].forward
		}
		update[i] = x
	}
	x = x.levels[0].forward
	if x == nil || x.score != score || x.member != member {
		return false
	}
	s.unlink(x, &update)
	return true
}

// rank is the 1-based rank of a present pair.
func (s *skiplist) rank(score float64, member string) int {
	r := 0
	x := s.head
	for i := s.level - 1; i >= 0; i-- {
		for x.levels[i].forward != nil && (x.levels[i].forward.before(score, member) ||
			(x.levels[i].forward.score == score && x.levels[i].forward.member == member)) {
			r += x.levels[i].span
			x = x.levels[i].forward
		}
		if x != s.head && x.score == score && x.member == member {
			return r
		}
	}
	return 0
}

// byRank returns the node at a 1-based rank, nil when out of range.
func (s *skiplist) byRank(rank int) *slNode {
	if rank < 1 || rank > s.length {
		return nil
	}
	traversed := 0
	x := s.head
	for i := s.level - 1; i >= 0; i-- {
		for x.levels[i].forward != nil && traversed+x.levels[i].span <= rank {
			traversed += x.levels[i].span
			x = x.levels[i].forward
		}
		if traversed == rank {
			return x
		}
	}
	return nil
}

// firstWhere returns the first node for which pastLow holds (a monotone
// predicate: false, then true along the list), or nil.
func (s *skiplist) firstWhere(pastLow func(*slNode) bool) *slNode {
	x := s.head
	for i := s.level - 1; i >= 0; i-- {
		for x.levels[i].forward != nil && !pastLow(x.levels[i].forward) {
			x = x.levels[i].forward
		}
	}
	return x.levels[0].forward
}

// lastWhere returns the last node for which withinHigh holds (a monotone
// predicate: true, then false along the list), or nil.
func (s *skiplist) lastWhere(withinHigh func(*slNode) bool) *slNode {
	x := s.head
	for i := s.level - 1; i >= 0; i-- {
		for x.levels[i].forward != nil && withinHigh(x.levels[i].forward) {
			x = x.levels[i].forward
		}
	}
	if x == s.head {
		return nil
	}
	return x
}

func (s *skiplist) first() *slNode { return s.head.levels[0].forward }
