package soak

// Verdict is what a read says about the writes a ledger recorded.
type Verdict int

const (
	// Consistent: the value read is one the writes can explain.
	Consistent Verdict = iota
	// Lost: an acknowledged write is missing (the key is gone, holds an
	// older value, or a counter is below its acknowledged count).
	Lost
	// Duplicated: a counter is above every count its increments allow, so
	// one of them was applied twice (a write resent after it had run).
	Duplicated
)

func (v Verdict) String() string {
	switch v {
	case Consistent:
		return "consistent"
	case Lost:
		return "lost"
	default:
		return "duplicated"
	}
}

// maxUnsure bounds the unanswered writes a ledger remembers per key; past
// it the key's value is unknown until the next acknowledged write.
const maxUnsure = 16

// valueState is what a ledger knows of a string key.
type valueState struct {
	acked    string
	hasAcked bool
	// unsure are values sent since the last acknowledgement whose outcome
	// is unknown: they got an error or no answer, so they may have run.
	unsure []string
	// unknown: more than maxUnsure unsure values; any value is accepted.
	unknown bool
}

// counterState is what a ledger knows of a key only INCR touches.
type counterState struct {
	acked  int64 // the count after the last acknowledged INCR
	unsure int64 // INCRs since then that may have run
}

// Ledger records the writes of one client to keys no other client writes,
// and judges what reads of them return: a read must show the last
// acknowledged write, or a later write whose outcome the client does not
// know. One client's operations are sequential, so a ledger needs no lock.
type Ledger struct {
	values   map[string]*valueState
	counters map[string]*counterState
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{values: map[string]*valueState{}, counters: map[string]*counterState{}}
}

// Set records a SET (or one key of an MSET) of value to key that was
// answered err (nil: acknowledged).
func (l *Ledger) Set(key, value string, err error) {
	st := l.values[key]
	if st == nil {
		st = &valueState{}
		l.values[key] = st
	}
	if err == nil {
		*st = valueState{acked: value, hasAcked: true, unsure: st.unsure[:0]}
		return
	}
	if len(st.unsure) == maxUnsure {
		st.unknown = true
		return
	}
	st.unsure = append(st.unsure, value)
}

// CheckValue judges a read of key that found value (found false: the key
// does not exist).
func (l *Ledger) CheckValue(key, value string, found bool) Verdict {
	st := l.values[key]
	if st == nil || st.unknown {
		return Consistent
	}
	if found && st.hasAcked && value == st.acked {
		return Consistent
	}
	if found {
		for _, v := range st.unsure {
			if v == value {
				return Consistent
			}
		}
	}
	if !found && !st.hasAcked {
		return Consistent // every write to it may have failed
	}
	return Lost
}

// Acked returns key's last acknowledged value, if any.
func (l *Ledger) Acked(key string) (string, bool) {
	st := l.values[key]
	if st == nil {
		return "", false
	}
	return st.acked, st.hasAcked
}

// Incr records an INCR of key answered got, or err (nil: acknowledged),
// and judges got: it must be one more than the acknowledged count, plus at
// most the increments whose outcome is unknown. After an acknowledged INCR
// the ledger takes got as the count, so one fault is reported once.
func (l *Ledger) Incr(key string, got int64, err error) Verdict {
	st := l.counter(key)
	if err != nil {
		st.unsure++
		return Consistent
	}
	verdict := countVerdict(got, st.acked+1, st.acked+1+st.unsure)
	*st = counterState{acked: got}
	return verdict
}

// CheckCounter judges a read of counter key that found got (0 when the key
// does not exist).
func (l *Ledger) CheckCounter(key string, got int64) Verdict {
	st := l.counter(key)
	return countVerdict(got, st.acked, st.acked+st.unsure)
}

// CounterRange returns counter key's acknowledged count and how many
// increments since may have run.
func (l *Ledger) CounterRange(key string) (acked, unsure int64) {
	st := l.counter(key)
	return st.acked, st.unsure
}

func (l *Ledger) counter(key string) *counterState {
	st := l.counters[key]
	if st == nil {
		st = &counterState{}
		l.counters[key] = st
	}
	return st
}

func countVerdict(got, least, most int64) Verdict {
	switch {
	case got < least:
		return Lost
	case got > most:
		return Duplicated
	default:
		return Consistent
	}
}

// ValueKeys and CounterKeys list the keys the ledger tracks, for the
// final check.
func (l *Ledger) ValueKeys() []string {
	keys := make([]string, 0, len(l.values))
	for k := range l.values {
		keys = append(keys, k)
	}
	return keys
}

func (l *Ledger) CounterKeys() []string {
	keys := make([]string, 0, len(l.counters))
	for k := range l.counters {
		keys = append(keys, k)
	}
	return keys
}
