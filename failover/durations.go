package failover

import "time"

// DurationBounds are the upper bounds of a Durations' buckets: 1 ms to
// 30 s, which covers a hold's budget and a handover's write pause.
var DurationBounds = [...]time.Duration{time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 30 * time.Second}

// Durations is a histogram of durations (the hold times, the handovers'
// write pauses), kept under the Buffer's lock. Buckets[i] counts those
// within DurationBounds[i] and past the bound before; the last one those
// past every bound. It is a value: a Report holds copies.
type Durations struct {
	Buckets [len(DurationBounds) + 1]uint64
	Count   uint64
	Sum     time.Duration
}

// Observe records n durations of d.
func (h *Durations) Observe(d time.Duration, n uint64) {
	i := 0
	for i < len(DurationBounds) && d > DurationBounds[i] {
		i++
	}
	h.Buckets[i] += n
	h.Count += n
	h.Sum += d * time.Duration(n)
}
