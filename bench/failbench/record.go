package failbench

import (
	"sync"
	"sync/atomic"
	"time"
)

// Window is where a request falls relative to the failovers: before the
// first one starts, during one (it overlapped a failover), or after one
// ended (between two failovers counts as after the earlier one).
type Window int

const (
	WindowBefore Window = iota
	WindowDuring
	WindowAfter
	windowCount
)

var windowNames = [windowCount]string{"before", "during", "after"}

func (w Window) String() string { return windowNames[w] }

// Class is what a request is to the failover in progress (or the last or
// next one): a write or a read on the failing-over shard, or a request to
// another shard.
type Class int

const (
	ClassShardWrite Class = iota
	ClassShardRead
	ClassOtherShard
	classCount
)

var classNames = [classCount]string{"failing-shard writes", "failing-shard reads", "other-shard requests"}

func (c Class) String() string { return classNames[c] }

// bucketWidth is the timeline's resolution; plotSlot that of the plot's
// p99, which needs more requests per point than a 10 ms bucket holds.
const (
	bucketWidth = 10 * time.Millisecond
	plotSlot    = 100 * time.Millisecond
)

// Bucket is what the Go load generator saw in one 10 ms bucket: requests
// that started in it, answered or failed, and the longest latency.
type Bucket struct {
	OK     uint32  `json:"ok"`
	Errors uint32  `json:"errors"`
	MaxMs  float64 `json:"max_ms"`
}

// failoverState is what the recorder must know of the failovers to file a
// request: the current (or last, or next) failover and its shard.
type failoverState struct {
	seq    int // the failover's number; -1 before the first
	shard  int
	during bool
}

// recorder files every request's latency and outcome: in its 10 ms bucket
// of the timeline, in the 100 ms slot of the plot, and by window and class
// (and, during a failover, by that failover). Memory grows with the run's
// length only (Config caps it).
type recorder struct {
	start time.Time
	state atomic.Pointer[failoverState]

	mu        sync.Mutex
	buckets   []Bucket
	slots     []histogram
	windows   [windowCount][classCount]histogram
	failovers []*[classCount]histogram // during each failover
	errors    map[string]uint64
	errTotal  uint64
}

func newRecorder(start time.Time, firstShard int) *recorder {
	r := &recorder{start: start, errors: map[string]uint64{}}
	r.state.Store(&failoverState{seq: -1, shard: firstShard})
	return r
}

// begin and end mark failover seq of shard.
func (r *recorder) begin(seq, shard int) {
	r.mu.Lock()
	for len(r.failovers) <= seq {
		r.failovers = append(r.failovers, new([classCount]histogram))
	}
	r.mu.Unlock()
	r.state.Store(&failoverState{seq: seq, shard: shard, during: true})
}

func (r *recorder) end(seq, shard int) {
	r.state.Store(&failoverState{seq: seq, shard: shard})
}

// outcome is one request of a batch: its shard, whether it wrote, and its
// error (nil when answered, a nil reply included).
type outcome struct {
	shard int
	write bool
	err   error
}

// snapshot is read when a batch is sent and passed to record.
func (r *recorder) snapshot() *failoverState { return r.state.Load() }

// record files a batch sent at sent, whose every request took latency.
// A batch that overlapped a failover belongs to it, even when it was sent
// before it started: a held write ends only after the handover.
func (r *recorder) record(sent time.Time, latency time.Duration, before *failoverState, outcomes []outcome) {
	after := r.state.Load()
	st, window := after, WindowAfter
	switch {
	case before.during:
		st, window = before, WindowDuring
	case after.during || after.seq != before.seq:
		window = WindowDuring
	case after.seq < 0:
		window = WindowBefore
	}
	at := sent.Sub(r.start)
	b := max(int(at/bucketWidth), 0)
	slot := max(int(at/plotSlot), 0)

	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.buckets) <= b {
		r.buckets = append(r.buckets, Bucket{})
	}
	for len(r.slots) <= slot {
		r.slots = append(r.slots, histogram{})
	}
	bk := &r.buckets[b]
	bk.MaxMs = max(bk.MaxMs, ms(latency))
	ok := 0
	for _, o := range outcomes {
		if o.err != nil {
			bk.Errors++
			r.errTotal++
			r.errors[errorKind(o.err)]++
			continue
		}
		ok++
		c := ClassOtherShard
		if o.shard == st.shard {
			c = ClassShardRead
			if o.write {
				c = ClassShardWrite
			}
		}
		r.windows[window][c].add(latency, 1)
		if window == WindowDuring && st.seq >= 0 && st.seq < len(r.failovers) {
			r.failovers[st.seq][c].add(latency, 1)
		}
	}
	bk.OK += uint32(ok)
	r.slots[slot].add(latency, ok)
}
