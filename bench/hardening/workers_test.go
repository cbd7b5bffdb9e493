package hardening

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

// step is one request of a worker's loop and the reply it must get: want
// is the exact reply text ("OK", a value), or "" for any reply but an error.
type step struct {
	args []string
	want string
}

// workers are clients that each run their steps in a loop, one request at a
// time, until stopped, and note every reply that is not the one wanted.
type workers struct {
	done chan struct{}
	halt sync.Once
	wg   sync.WaitGroup

	mu       sync.Mutex
	answered []int // per worker
	errs     []string
	longest  time.Duration
}

// startWorkers starts n clients of addr; worker w's i-th round runs
// steps(w, i).
func startWorkers(tb testing.TB, addr string, n int, steps func(w, i int) []step) *workers {
	tb.Helper()
	ws := &workers{done: make(chan struct{}), answered: make([]int, n)}
	// A test that ends early still stops its workers.
	tb.Cleanup(ws.end)
	for w := range n {
		c := mustDial(tb, addr)
		ws.wg.Go(func() {
			for i := 0; ; i++ {
				for _, s := range steps(w, i) {
					select {
					case <-ws.done:
						return
					default:
					}
					start := time.Now()
					rep, err := c.do(s.args...)
					if !ws.record(w, s, rep, err, time.Since(start)) {
						return
					}
				}
			}
		})
	}
	return ws
}

// record notes one reply; it returns false when the connection is unusable.
func (ws *workers) record(w int, s step, rep reply, err error, took time.Duration) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.longest = max(ws.longest, took)
	switch {
	case err != nil:
		ws.errs = append(ws.errs, s.args[0]+" "+s.args[1]+": no reply within "+answerTimeout.String()+": "+err.Error())
		return false
	case rep.isError():
		ws.errs = append(ws.errs, s.args[0]+" "+s.args[1]+": "+rep.String())
	case s.want != "" && rep.text != s.want:
		ws.errs = append(ws.errs, s.args[0]+" "+s.args[1]+": "+rep.String()+", want "+s.want)
	}
	ws.answered[w]++
	return true
}

// end stops the loops and waits for them.
func (ws *workers) end() {
	ws.halt.Do(func() { close(ws.done) })
	ws.wg.Wait()
}

// stop ends the loops and checks that every worker was answered and no
// reply was wrong.
func (ws *workers) stop(t *testing.T, what string) {
	t.Helper()
	ws.end()
	total := 0
	for w, n := range ws.answered {
		if n == 0 {
			t.Errorf("%s: worker %d got no reply at all", what, w)
		}
		total += n
	}
	t.Logf("%s: %d requests answered, longest wait %v", what, total, ws.longest.Round(time.Millisecond))
	if len(ws.errs) > 0 {
		t.Errorf("%s: %d requests failed, want none; first: %s", what, len(ws.errs), ws.errs[0])
	}
}

// setGetSteps is a SET and a GET of a key of worker w, among keys made by
// key(w, i).
func setGetSteps(key func(w int) string) func(w, i int) []step {
	return func(w, i int) []step {
		k, v := key(w), strconv.Itoa(i)
		return []step{{[]string{"SET", k, v}, "OK"}, {[]string{"GET", k}, v}}
	}
}
