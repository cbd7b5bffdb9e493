package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"kvproxy/internal/resp"
)

// OpenLoopOptions describes a fixed-rate load: requests are due on a
// schedule at the offered rate whatever the server's replies do, and each
// request's latency counts from the time it was due, not from when it was
// written. A server that stalls therefore shows its stall in the latency of
// every request due meanwhile (no coordinated omission), and a target that
// cannot keep up shows an achieved rate below the offered one.
type OpenLoopOptions struct {
	// Addr is the target's host:port.
	Addr string
	// Rate is the offered load in requests per second.
	Rate float64
	// Duration is how long requests are scheduled.
	Duration time.Duration
	// Conns is how many connections carry the load; request i goes on
	// connection i mod Conns, pipelined behind the ones still unanswered.
	Conns int
	// Keyspace is the range of random keys; half the requests are SET, half
	// GET.
	Keyspace int
	// DataSize is the SET value's size in bytes.
	DataSize int
	// MaxOutstanding bounds the unanswered requests per connection: past it
	// the connection's sender waits (its requests' latency still counts from
	// their due time).
	MaxOutstanding int
	// Drain is how long replies are awaited once the schedule ended;
	// requests still unanswered then are counted as such.
	Drain time.Duration
}

// Validate reports the first option that cannot make a run.
func (o OpenLoopOptions) Validate() error {
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return fmt.Errorf("loadgen: OpenLoopOptions.Addr %q: %w", o.Addr, err)
	}
	switch {
	case !(o.Rate > 0) || math.IsInf(o.Rate, 0):
		return fmt.Errorf("loadgen: rate is %v, want a positive number", o.Rate)
	case o.Duration <= 0:
		return fmt.Errorf("loadgen: duration is %v, want positive", o.Duration)
	case o.Conns < 1:
		return fmt.Errorf("loadgen: conns is %d, want at least 1", o.Conns)
	case o.Keyspace < 1:
		return fmt.Errorf("loadgen: keyspace is %d, want at least 1", o.Keyspace)
	case o.DataSize < 0:
		return fmt.Errorf("loadgen: data size is %d, want 0 or more", o.DataSize)
	case o.MaxOutstanding < 1:
		return fmt.Errorf("loadgen: max outstanding is %d, want at least 1", o.MaxOutstanding)
	case o.Drain <= 0:
		return fmt.Errorf("loadgen: drain is %v, want positive", o.Drain)
	case o.scheduled() < 1:
		return fmt.Errorf("loadgen: rate %v for %v schedules no request", o.Rate, o.Duration)
	}
	return nil
}

func (o OpenLoopOptions) interval() time.Duration {
	return time.Duration(float64(time.Second) / o.Rate)
}

// scheduled is how many requests are due within Duration.
func (o OpenLoopOptions) scheduled() int64 {
	if o.interval() <= 0 {
		return 0
	}
	return int64(o.Duration / o.interval())
}

// OpenLoopResult is what RunOpenLoop measured.
type OpenLoopResult struct {
	// Scheduled requests were due within Duration; Sent of them were
	// written, Answered got a reply, Errors of those an error reply.
	Scheduled, Sent, Answered, Errors int64
	// Elapsed runs from the start to the last reply (at least Duration).
	Elapsed time.Duration
	// Latency holds every answered request's latency from its due time.
	Latency *Histogram
}

// AchievedRate is answered requests per second of Elapsed.
func (r OpenLoopResult) AchievedRate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Answered) / r.Elapsed.Seconds()
}

// Unanswered is how many scheduled requests got no reply.
func (r OpenLoopResult) Unanswered() int64 { return r.Scheduled - r.Answered }

// maxReplyBytes bounds one reply: GET of our own values and SET's +OK are
// tiny, so a huge frame means a confused target.
const maxReplyBytes = 1 << 20

// RunOpenLoop offers the load to opts.Addr and returns what it measured.
// ctx ending stops it with an error.
func RunOpenLoop(ctx context.Context, opts OpenLoopOptions) (OpenLoopResult, error) {
	if err := opts.Validate(); err != nil {
		return OpenLoopResult{}, err
	}
	var dialer net.Dialer
	conns := make([]*openLoopConn, 0, opts.Conns)
	defer func() {
		for _, c := range conns {
			c.conn.Close()
		}
	}()
	value := make([]byte, opts.DataSize)
	for i := range value {
		value[i] = 'x'
	}
	for i := range opts.Conns {
		conn, err := dialer.DialContext(ctx, "tcp", opts.Addr)
		if err != nil {
			return OpenLoopResult{}, fmt.Errorf("loadgen: open-loop connection to %s: %w", opts.Addr, err)
		}
		conns = append(conns, &openLoopConn{
			conn: conn, due: make(chan time.Duration, opts.MaxOutstanding), latency: NewHistogram(),
			rng: rand.New(rand.NewPCG(uint64(i), 0x6b7670726f7879)), value: value,
		})
	}

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A connection that fails stops the whole run: its latencies would be
	// missing from the figures otherwise.
	var failOnce sync.Once
	var failure error
	fail := func(err error) {
		failOnce.Do(func() { failure = err; cancel() })
	}
	// Closing the connections unblocks their readers and senders when the
	// run is stopped or the drain time is over.
	stopped := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.conn.Close()
		}
	})
	defer stopped()

	start := time.Now()
	interval, total := opts.interval(), opts.scheduled()
	var senders, readers sync.WaitGroup
	for i, c := range conns {
		c.scheduled = countOnConn(total, int64(i), int64(opts.Conns))
		senders.Add(1)
		go func() {
			defer senders.Done()
			if err := c.send(ctx, start, interval, int64(i), int64(opts.Conns), opts.Keyspace); err != nil {
				fail(err)
			}
		}()
		readers.Add(1)
		go func() {
			defer readers.Done()
			if err := c.read(start); err != nil {
				fail(err)
			}
		}()
	}
	senders.Wait()
	drainEnd := time.AfterFunc(time.Until(start.Add(opts.Duration+opts.Drain)), cancel)
	readers.Wait()
	drainEnd.Stop()

	res := OpenLoopResult{Scheduled: total, Latency: NewHistogram(), Elapsed: opts.Duration}
	for _, c := range conns {
		res.Sent += c.sent
		res.Answered += c.answered
		res.Errors += c.errors
		res.Latency.Merge(c.latency)
		res.Elapsed = max(res.Elapsed, c.lastReply)
	}
	if failure != nil {
		return res, failure
	}
	if err := parent.Err(); err != nil {
		return res, fmt.Errorf("loadgen: open-loop run against %s stopped: %w", opts.Addr, err)
	}
	return res, nil
}

// countOnConn is how many of total requests go on connection i of n.
func countOnConn(total, i, n int64) int64 {
	if i >= total {
		return 0
	}
	return (total-1-i)/n + 1
}

// openLoopConn is one connection's sender and reader state. The sender
// writes requests when due and queues their due times in due; the reader
// takes one due time per reply.
type openLoopConn struct {
	conn  net.Conn
	due   chan time.Duration
	rng   *rand.Rand
	value []byte
	// scheduled is how many requests this connection carries.
	scheduled int64
	// sent is written by the sender, the rest by the reader; both are read
	// once they finished.
	sent             int64
	answered, errors int64
	lastReply        time.Duration
	latency          *Histogram
}

// send writes this connection's share of the schedule: request k (counted
// over all connections) is due at k*interval, and this connection carries
// k = i, i+n, i+2n... Requests already due when the sender wakes are
// written together.
func (c *openLoopConn) send(ctx context.Context, start time.Time, interval time.Duration, i, n int64, keyspace int) error {
	w := bufio.NewWriterSize(c.conn, 64<<10)
	var buf []byte
	for k := i; c.sent < c.scheduled; {
		due := time.Duration(k) * interval
		if wait := due - time.Since(start); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		now := time.Since(start)
		for ; c.sent < c.scheduled && time.Duration(k)*interval <= now; k += n {
			select {
			case c.due <- time.Duration(k) * interval:
			case <-ctx.Done():
				return nil
			}
			buf = c.appendRequest(buf[:0], k, keyspace)
			if _, err := w.Write(buf); err != nil {
				return c.writeError(ctx, err)
			}
			c.sent++
			// Once the reader's queue is full, what was buffered must go
			// out for replies to free it.
			if len(c.due) == cap(c.due) {
				if err := w.Flush(); err != nil {
					return c.writeError(ctx, err)
				}
			}
		}
		if err := w.Flush(); err != nil {
			return c.writeError(ctx, err)
		}
	}
	return nil
}

func (c *openLoopConn) writeError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil // the run was stopped, which closed the connection
	}
	return fmt.Errorf("loadgen: open-loop write to %s: %w", c.conn.RemoteAddr(), err)
}

// appendRequest appends request k: even ones SET a random key, odd ones GET
// one.
func (c *openLoopConn) appendRequest(buf []byte, k int64, keyspace int) []byte {
	key := strconv.AppendInt([]byte("key:"), int64(c.rng.IntN(keyspace)), 10)
	if k%2 == 0 {
		buf = append(buf, "*3\r\n$3\r\nSET\r\n$"...)
		buf = strconv.AppendInt(buf, int64(len(key)), 10)
		buf = append(buf, "\r\n"...)
		buf = append(buf, key...)
		buf = append(buf, "\r\n$"...)
		buf = strconv.AppendInt(buf, int64(len(c.value)), 10)
		buf = append(buf, "\r\n"...)
		buf = append(buf, c.value...)
		return append(buf, "\r\n"...)
	}
	buf = append(buf, "*2\r\n$3\r\nGET\r\n$"...)
	buf = strconv.AppendInt(buf, int64(len(key)), 10)
	buf = append(buf, "\r\n"...)
	buf = append(buf, key...)
	return append(buf, "\r\n"...)
}

// read takes the replies until every scheduled request was answered or the
// connection is closed, recording each one's latency from its due time.
func (c *openLoopConn) read(start time.Time) error {
	scanner := resp.NewScanner(maxReplyBytes)
	buf := make([]byte, 64<<10)
	// buf[from:to] holds the bytes read and not yet taken as replies.
	from, to := 0, 0
	for c.answered < c.scheduled {
		n, err := scanner.Scan(buf[from:to])
		if err != nil {
			return fmt.Errorf("loadgen: open-loop reply from %s: %w", c.conn.RemoteAddr(), err)
		}
		if n == 0 {
			// Move the partial reply to the front (the Scanner resumes at
			// the same offsets within it), growing buf only for a reply
			// larger than it.
			to = copy(buf, buf[from:to])
			from = 0
			if to == len(buf) {
				buf = append(buf, make([]byte, len(buf))...)
			}
			m, err := c.conn.Read(buf[to:])
			to += m
			if err != nil {
				return nil // closed: the run ended or was stopped
			}
			continue
		}
		var due time.Duration
		select {
		case due = <-c.due:
		default:
			return fmt.Errorf("loadgen: %s sent a reply to no request", c.conn.RemoteAddr())
		}
		now := time.Since(start)
		c.latency.Record(now - due)
		c.lastReply = now
		c.answered++
		if resp.IsError(buf[from : from+n]) {
			c.errors++
		}
		from += n
	}
	return nil
}

// Histogram counts durations in buckets of at most 1/128 (0.8%) of their
// value, in fixed memory; Max is exact.
type Histogram struct {
	counts [histogramBuckets]int64
	total  int64
	max    time.Duration
}

const (
	// histogramSubBits sets the precision: 2^7 buckets per power of two.
	histogramSubBits = 7
	// histogramMaxBits caps recorded values at 2^40 ns, about 18 minutes.
	histogramMaxBits = 40
	histogramBuckets = (histogramMaxBits - histogramSubBits + 1) << histogramSubBits
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

func histogramBucket(v int64) int {
	if v < 1<<histogramSubBits {
		return int(v)
	}
	msb := bits.Len64(uint64(v)) - 1
	shift := msb - histogramSubBits
	return (shift+1)<<histogramSubBits + int(v>>shift) - 1<<histogramSubBits
}

// histogramUpper is the largest value of bucket b.
func histogramUpper(b int) int64 {
	if b < 1<<histogramSubBits {
		return int64(b)
	}
	shift := b>>histogramSubBits - 1
	mantissa := int64(b&(1<<histogramSubBits-1)) + 1<<histogramSubBits
	return (mantissa+1)<<shift - 1
}

// Record counts one duration; negative ones count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := min(max(int64(d), 0), int64(1)<<histogramMaxBits-1)
	h.counts[histogramBucket(v)]++
	h.total++
	h.max = max(h.max, d)
}

// Merge adds other's counts.
func (h *Histogram) Merge(other *Histogram) {
	for i, n := range other.counts {
		h.counts[i] += n
	}
	h.total += other.total
	h.max = max(h.max, other.max)
}

// Count is how many durations were recorded.
func (h *Histogram) Count() int64 { return h.total }

// Max is the longest duration recorded.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile is the duration at or below which a fraction q of the recorded
// ones are (rounded up to its bucket's top, never above Max); 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(h.total))), 1)
	var seen int64
	for b, n := range h.counts {
		if seen += n; seen >= rank {
			return min(time.Duration(histogramUpper(b)), h.max)
		}
	}
	return h.max
}
