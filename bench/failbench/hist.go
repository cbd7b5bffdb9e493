package failbench

import (
	"math/bits"
	"time"
)

// histogram counts latencies in microseconds in log-linear bins: 16 bins
// per power of two, so a percentile read from it is within about 6% of
// the true value, in a fixed 1.6 KB whatever the number of requests.
type histogram struct {
	counts [histBins]uint32
	total  uint64
	max    time.Duration
}

const (
	histSubBits = 4 // 16 bins per power of two
	histSub     = 1 << histSubBits
	// histMaxExp bounds the latencies told apart: 2^25 us (about 33 s);
	// longer ones fall into the last bin (max keeps the true value).
	histMaxExp = 25
	histBins   = (histMaxExp + 1) * histSub
)

func histBin(us uint64) int {
	if us < histSub {
		return int(us)
	}
	exp := bits.Len64(us) - histSubBits // >= 1
	if exp > histMaxExp {
		return histBins - 1
	}
	return exp*histSub + int(us>>(exp-1)) - histSub
}

// histLow is the smallest latency in microseconds of bin i.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	exp := i / histSub
	return uint64(i%histSub+histSub) << (exp - 1)
}

func (h *histogram) add(d time.Duration, n int) {
	if n <= 0 {
		return
	}
	us := uint64(max(d, 0) / time.Microsecond)
	h.counts[histBin(us)] += uint32(n)
	h.total += uint64(n)
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile is the latency below which a fraction q of the counted ones
// fall: the upper end of the bin holding that rank, at most max. 0 when
// nothing was counted.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q * float64(h.total))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			if i == histBins-1 {
				return h.max
			}
			return min(time.Duration(histLow(i+1))*time.Microsecond, h.max)
		}
	}
	return h.max
}

// Latencies are a set of requests' latency percentiles, in milliseconds.
type Latencies struct {
	Requests uint64  `json:"requests"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	P999     float64 `json:"p999_ms"`
	Max      float64 `json:"max_ms"`
}

func (h *histogram) latencies() Latencies {
	return Latencies{Requests: h.total, P50: ms(h.quantile(0.5)), P99: ms(h.quantile(0.99)),
		P999: ms(h.quantile(0.999)), Max: ms(h.max)}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
