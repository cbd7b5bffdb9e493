package router

import "sync/atomic"

// OutputBudget bounds the reply bytes the router keeps for one client at a
// time (Redis' client-output-buffer-limit): the replies of its requests from
// the moment they arrive until the client's owner has written them out and
// calls Release. Once a reply would pass the limit the budget is exceeded for
// good: that reply, and every later one, is dropped as it streams in (the
// backend connection is read on, so it stays in step and other clients'
// replies flow), and onExceed is told once, so the owner can disconnect the
// client and drop its pending work. Share one budget between all the
// requests of a client; a nil budget keeps everything.
type OutputBudget struct {
	limit    int64
	used     atomic.Int64
	exceeded atomic.Bool
	onExceed func()
}

// NewOutputBudget returns a budget of limit bytes. onExceed, when not nil,
// runs once, on the goroutine that read the reply that did not fit (a
// backend reader, with locks held): it must be quick and must not block.
func NewOutputBudget(limit int64, onExceed func()) *OutputBudget {
	return &OutputBudget{limit: limit, onExceed: onExceed}
}

// Limit is the budget's size in bytes.
func (b *OutputBudget) Limit() int64 { return b.limit }

// Exceeded reports whether a reply did not fit.
func (b *OutputBudget) Exceeded() bool { return b != nil && b.exceeded.Load() }

// Release gives back the bytes of the replies kept so far: the owner wrote
// them to the client. An exceeded budget stays exceeded.
func (b *OutputBudget) Release() {
	if b != nil {
		b.used.Store(0)
	}
}

// take counts n more bytes kept, reporting false (and exceeding the budget)
// when they do not fit.
func (b *OutputBudget) take(n int) bool {
	if b == nil {
		return true
	}
	if b.exceeded.Load() {
		return false
	}
	if b.used.Add(int64(n)) <= b.limit {
		return true
	}
	b.exceed()
	return false
}

// fits reports whether n more bytes could be kept now; when they could not,
// the budget is exceeded.
func (b *OutputBudget) fits(n int) bool {
	if b == nil {
		return true
	}
	if !b.exceeded.Load() && b.used.Load()+int64(n) <= b.limit {
		return true
	}
	b.exceed()
	return false
}

func (b *OutputBudget) exceed() {
	if !b.exceeded.Swap(true) && b.onExceed != nil {
		b.onExceed()
	}
}
