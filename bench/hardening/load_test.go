package hardening

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kvproxy/bench/cluster"
)

// Load over every shard for the tests that stop or kill nodes: every
// request's start, wait and reply class is kept, so a test can ask what
// the requests of one shard, started in one period, got.

// outcome is one request and what it got.
type outcome struct {
	shard int
	// fresh marks a single request sent on a connection of its own at a
	// planned time (an arrival), rather than by a client in a loop.
	fresh bool
	args  []string
	start time.Time
	wait  time.Duration
	class replyClass
	// text is the error reply or the reason there was none.
	text string
}

func (o outcome) String() string {
	return fmt.Sprintf("%s %s on shard %d, waited %v: %s %s", o.args[0], o.args[1], o.shard, o.wait.Round(time.Millisecond), o.class, o.text)
}

// shardLoad runs writers and readers on every shard, and arrivals.
type shardLoad struct {
	addr    string
	masters []*cluster.Node
	e       *env
	done    chan struct{}
	halt    sync.Once
	wg      sync.WaitGroup

	mu       sync.Mutex
	outcomes []outcome
}

// startShardLoad starts, for each master, writers clients looping on SET and
// readers looping on GET, one request at a time.
func startShardLoad(tb testing.TB, e *env, addr string, writers, readers int) *shardLoad {
	tb.Helper()
	l := &shardLoad{addr: addr, masters: e.cluster.Masters(), e: e, done: make(chan struct{})}
	// A test that ends early still stops its load.
	tb.Cleanup(func() { l.stop() })
	for shard, m := range l.masters {
		for w := range writers + readers {
			c := mustDial(tb, addr)
			key := e.shardKey(m, w, "load:"+strconv.Itoa(shard)+":"+strconv.Itoa(w))
			l.wg.Go(func() {
				defer func() { c.close() }()
				for i := 0; ; i++ {
					select {
					case <-l.done:
						return
					default:
					}
					args := []string{"GET", key}
					if w < writers {
						args = []string{"SET", key, strconv.Itoa(i)}
					}
					if l.send(c, shard, false, args).class == classNoReply {
						// The connection's state is unknown: start afresh.
						c.close()
						next, err := dialResp(addr)
						if err != nil {
							l.record(outcome{shard: shard, args: []string{"DIAL", addr}, start: time.Now(), class: classNoReply, text: err.Error()})
							return
						}
						c = next
					}
				}
			})
		}
	}
	return l
}

// send runs one request on c and records its outcome.
func (l *shardLoad) send(c *respConn, shard int, fresh bool, args []string) outcome {
	start := time.Now()
	rep, err := c.do(args...)
	o := outcome{shard: shard, fresh: fresh, args: args, start: start, wait: time.Since(start), class: classify(rep, err)}
	switch {
	case err != nil:
		o.text = err.Error()
	case rep.isError():
		o.text = rep.text
	}
	l.record(o)
	return o
}

func (l *shardLoad) record(o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.outcomes = append(l.outcomes, o)
}

// arrive sends one request to shard's master (alternately SET and GET) on a
// connection of its own every interval from first until last; the
// connections are dialled first, so each request leaves at its time.
func (l *shardLoad) arrive(tb testing.TB, shard int, first time.Time, interval time.Duration, count int) {
	tb.Helper()
	for i := range count {
		c := mustDial(tb, l.addr)
		key := l.e.shardKey(l.masters[shard], 100+i, "arrival:"+strconv.Itoa(i))
		args := []string{"GET", key}
		if i%2 == 0 {
			args = []string{"SET", key, "v"}
		}
		l.wg.Go(func() {
			defer c.close()
			time.Sleep(time.Until(first.Add(time.Duration(i) * interval)))
			l.send(c, shard, true, args)
		})
	}
}

// stop ends the loops, waits for the arrivals and returns every outcome.
func (l *shardLoad) stop() []outcome {
	l.halt.Do(func() { close(l.done) })
	l.wg.Wait()
	return l.outcomes
}

// selectOutcomes returns the outcomes keep accepts.
func selectOutcomes(all []outcome, keep func(outcome) bool) []outcome {
	var out []outcome
	for _, o := range all {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out
}

// breakdown counts outcomes by class, for messages.
func breakdown(outs []outcome) string {
	var n [classCount]int
	for _, o := range outs {
		n[o.class]++
	}
	var parts []string
	for c, count := range n {
		if count > 0 {
			parts = append(parts, replyClass(c).String()+": "+strconv.Itoa(count))
		}
	}
	texts := map[string]int{}
	for _, o := range outs {
		if o.class != classOK {
			texts[o.text]++
		}
	}
	return fmt.Sprintf("%d requests (%s); errors by text: %v", len(outs), strings.Join(parts, ", "), texts)
}

// longestWait returns the outcome that waited longest, and false if none.
func longestWait(outs []outcome) (outcome, bool) {
	var longest outcome
	for _, o := range outs {
		if o.wait >= longest.wait {
			longest = o
		}
	}
	return longest, len(outs) > 0
}

// expectNone fails the test when any outcome of outs is bad, quoting the first.
func expectNone(t *testing.T, outs []outcome, bad func(outcome) bool, what string) {
	t.Helper()
	if found := selectOutcomes(outs, bad); len(found) > 0 {
		t.Errorf("%s: %d of %d, first: %v", what, len(found), len(outs), found[0])
	}
}

// redisStyleError matches an error reply that starts with an upper-case
// code word, as Redis' do.
var redisStyleError = regexp.MustCompile(`^[A-Z]+ `)

// checkServedAgain gives each shard up to 10 s to answer a SET through the
// proxy, then expects 100 SET and GET round trips per shard to succeed.
func checkServedAgain(t *testing.T, e *env, addr string) {
	t.Helper()
	c := mustDial(t, addr)
	for shard, m := range e.cluster.Masters() {
		key := e.shardKey(m, 0, "served-again")
		deadline := time.Now().Add(10 * time.Second)
		var rep reply
		var err error
		for {
			if rep, err = c.do("SET", key, "0"); err == nil && !rep.isError() {
				break
			}
			if err != nil || time.Now().After(deadline) {
				t.Errorf("shard %d (%s) is not served again through the proxy: SET got %v (%v)", shard, m, rep, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		for i := range 100 {
			value := strconv.Itoa(i)
			set, err1 := c.do("SET", key, value)
			get, err2 := c.do("GET", key)
			if err1 != nil || err2 != nil || set.text != "OK" || get.text != value {
				t.Errorf("shard %d (%s) once served again: SET got %v (%v), GET got %v (%v)", shard, m, set, err1, get, err2)
				return
			}
		}
	}
}
