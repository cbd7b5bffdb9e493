package soak

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Op is a kind of request the load sends.
type Op int

const (
	OpSet Op = iota
	OpGet
	OpMSet
	OpMGet
	OpIncr
	OpPipeline // one 16-deep pipeline; its commands count under their own ops too
	OpExec     // one MULTI/INCR/SET/EXEC transaction
	OpPublish
	OpBenchmark // redis-benchmark's SET and GET, counted when a run ends
	OpSubscribe // the subscriber's receive loop: only its errors count
	OpVerify    // the final read of every key
	opCount
)

var opNames = [opCount]string{"SET", "GET", "MSET", "MGET", "INCR", "pipeline", "MULTI/EXEC", "PUBLISH", "redis-benchmark", "subscriber", "final check"}

func (o Op) String() string { return opNames[o] }

// Tally counts requests and their longest latency by op, error replies by
// kind, and the anomalies reads found. Safe for concurrent use.
type Tally struct {
	start    time.Time
	requests [opCount]atomic.Uint64
	longest  [opCount]atomic.Int64 // nanoseconds
	// longestAt is when the longest one was answered, in nanoseconds since
	// start (written after longest, so at worst it belongs to a close second).
	longestAt [opCount]atomic.Int64
	errTotal  atomic.Uint64

	mu        sync.Mutex
	errors    map[errorKey]*ErrorCount
	anomalies map[anomalyKey]*AnomalyCount
}

// NewTally starts a tally; example times are taken from now.
func NewTally(now time.Time) *Tally {
	return &Tally{start: now, errors: map[errorKey]*ErrorCount{}, anomalies: map[anomalyKey]*AnomalyCount{}}
}

// Request counts n requests of op answered at now, the batch of them having
// taken took.
func (t *Tally) Request(op Op, n int, took time.Duration, now time.Time) {
	t.requests[op].Add(uint64(n))
	for {
		cur := t.longest[op].Load()
		if int64(took) <= cur {
			return
		}
		if t.longest[op].CompareAndSwap(cur, int64(took)) {
			t.longestAt[op].Store(int64(now.Sub(t.start)))
			return
		}
	}
}

// Latency is the longest wait for an answer of one op, and when it ended.
type Latency struct {
	Longest time.Duration
	At      time.Duration // since the start of the run
}

// Commands returns how many commands the load sent so far: pipelines and
// the final check are not counted, a pipeline's commands are.
func (t *Tally) Commands() uint64 {
	var n uint64
	for op := range opCount {
		if op != OpPipeline && op != OpSubscribe && op != OpVerify {
			n += t.requests[op].Load()
		}
	}
	return n
}

// maxErrorKinds bounds the distinct error texts kept; later new texts are
// counted under their prefix's overflow entry.
const maxErrorKinds = 64

// ErrorCount is how often one kind of error was seen, with the first one.
type ErrorCount struct {
	// Prefix is the RESP error code (TRYAGAIN, ERR, MOVED ...), "reply"
	// for a reply that is not what the command answers, or "network" for
	// an error that is not a reply (timeout, lost connection).
	Prefix string
	// Text is the error with digit runs written N, so one kind of error
	// with varying slots, ports or counts is one entry.
	Text  string
	Count uint64
	First ErrorExample
}

// ErrorExample is one error as it was seen.
type ErrorExample struct {
	At   time.Duration // since the start of the run
	Op   Op
	Text string
}

type errorKey struct{ prefix, text string }

// Error counts err, the answer to a request of op.
func (t *Tally) Error(op Op, err error, now time.Time) {
	t.errTotal.Add(1)
	prefix, text := classify(err)
	key := errorKey{prefix, normalizeDigits(text)}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.errors[key]
	if e == nil && len(t.errors) >= maxErrorKinds {
		key.text = "(other texts)"
		e = t.errors[key]
	}
	if e == nil {
		e = &ErrorCount{Prefix: key.prefix, Text: key.text, First: ErrorExample{At: now.Sub(t.start), Op: op, Text: text}}
		t.errors[key] = e
	}
	e.Count++
}

// ErrorTotal returns how many errors were counted so far.
func (t *Tally) ErrorTotal() uint64 { return t.errTotal.Load() }

// errBadReply marks a reply that is no error but not what the command
// answers (a wrong count of values, a counter that is no integer).
var errBadReply = errors.New("bad reply")

func badReply(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadReply}, args...)...)
}

// classify splits err into its RESP error code and text; a bad reply is
// "reply", and errors that are neither (the connection failed, the read
// timed out) are "network".
func classify(err error) (prefix, text string) {
	text = err.Error()
	if errors.Is(err, errBadReply) {
		return "reply", text
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		prefix, _, _ = strings.Cut(text, " ")
		return prefix, text
	}
	return "network", text
}

// normalizeDigits writes every run of digits in s as one N.
func normalizeDigits(s string) string {
	var b strings.Builder
	inDigits := false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if !inDigits {
				b.WriteByte('N')
			}
			inDigits = true
			continue
		}
		inDigits = false
		b.WriteRune(r)
	}
	return b.String()
}

// Anomaly names what a read found wrong.
type Anomaly string

const (
	// StaleRead: during the load, a read did not show the client's last
	// acknowledged write to the key.
	StaleRead Anomaly = "stale read during load"
	// LostWrite: at the end, an acknowledged write is not readable.
	LostWrite Anomaly = "lost acknowledged write"
	// DuplicatedWrite: a counter counted one INCR twice.
	DuplicatedWrite Anomaly = "duplicated write"
)

// maxAnomalyExamples bounds the examples kept per anomaly.
const maxAnomalyExamples = 5

// AnomalyCount is how often one anomaly was seen by one op, with the first
// examples.
type AnomalyCount struct {
	Anomaly  Anomaly
	Op       Op
	Count    uint64
	Examples []AnomalyExample
}

// AnomalyExample is one key whose read was wrong.
type AnomalyExample struct {
	At        time.Duration
	Key       string
	Want, Got string
}

type anomalyKey struct {
	anomaly Anomaly
	op      Op
}

// Anomaly counts one anomaly found by a read of op.
func (t *Tally) Anomaly(a Anomaly, op Op, key, want, got string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := anomalyKey{a, op}
	c := t.anomalies[k]
	if c == nil {
		c = &AnomalyCount{Anomaly: a, Op: op}
		t.anomalies[k] = c
	}
	c.Count++
	if len(c.Examples) < maxAnomalyExamples {
		c.Examples = append(c.Examples, AnomalyExample{At: now.Sub(t.start), Key: key, Want: want, Got: got})
	}
}

// Judge counts the anomaly a verdict of a read of key by op means, if any;
// want describes what the ledger expected.
func (t *Tally) Judge(v Verdict, during bool, op Op, key, want, got string, now time.Time) {
	switch {
	case v == Duplicated:
		t.Anomaly(DuplicatedWrite, op, key, want, got, now)
	case v == Lost && during:
		t.Anomaly(StaleRead, op, key, want, got, now)
	case v == Lost:
		t.Anomaly(LostWrite, op, key, want, got, now)
	}
}

// snapshot copies the counts, sorted: errors by count, anomalies by kind.
func (t *Tally) snapshot() (requests map[Op]uint64, longest map[Op]Latency, errs []ErrorCount, anomalies []AnomalyCount) {
	requests, longest = map[Op]uint64{}, map[Op]Latency{}
	for op := range opCount {
		if n := t.requests[op].Load(); n > 0 {
			requests[op] = n
			longest[op] = Latency{time.Duration(t.longest[op].Load()), time.Duration(t.longestAt[op].Load())}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.errors {
		errs = append(errs, *e)
	}
	slices.SortFunc(errs, func(a, b ErrorCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return strings.Compare(a.Prefix+a.Text, b.Prefix+b.Text)
	})
	for _, a := range t.anomalies {
		c := *a
		c.Examples = slices.Clone(a.Examples)
		anomalies = append(anomalies, c)
	}
	slices.SortFunc(anomalies, func(a, b AnomalyCount) int {
		if c := strings.Compare(string(a.Anomaly), string(b.Anomaly)); c != 0 {
			return c
		}
		return cmp.Compare(a.Op, b.Op)
	})
	return requests, longest, errs, anomalies
}
