package soak

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// loadKind is what one load client sends.
type loadKind int

const (
	loadSetGet   loadKind = iota // SET, then GET of the same or another key
	loadMulti                    // MSET, then MGET, of keys across slots
	loadPipeline                 // pipelines of SET, GET and INCR
	loadTx                       // MULTI/INCR/SET/EXEC on one slot, read back
	loadKinds
)

// multiKeys is how many keys an MSET or MGET names.
const multiKeys = 8

// txTags is how many hash tags (slots) a transaction client spreads over.
const txTags = 16

// counters is how many INCR counters a pipelining client keeps.
const counters = 16

// NewClient returns a go-redis client of the proxy that never retries, so
// every error reply and failed connection reaches the soak.
func NewClient(addr string, timeout time.Duration, poolSize int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		DisableIdentity: true,
		MaxRetries:      -1,
		DialTimeout:     timeout,
		ReadTimeout:     timeout,
		WriteTimeout:    timeout,
		PoolSize:        poolSize,
	})
}

// worker is one load client: its own connection, keys only it writes, and
// the ledger of its writes.
type worker struct {
	id       int
	kind     loadKind
	cl       *redis.Client
	ledger   *Ledger
	rng      *rand.Rand
	tally    *Tally
	keys     int
	pipeline int
	seq      uint64
}

func newWorker(id int, addr string, cfg Config, tally *Tally) *worker {
	return &worker{
		id:       id,
		kind:     loadKind(id % int(loadKinds)),
		cl:       NewClient(addr, cfg.ClientTimeout, 1),
		ledger:   NewLedger(),
		rng:      rand.New(rand.NewPCG(cfg.Seed, uint64(id))),
		tally:    tally,
		keys:     cfg.Keys,
		pipeline: cfg.Pipeline,
	}
}

// Requests use a context that is never cancelled: stopping the load must
// not turn requests in flight into errors. The client timeouts bound them.
var bg = context.Background()

// run sends requests until stop is set.
func (w *worker) run(stop *atomic.Bool) {
	for !stop.Load() {
		switch w.kind {
		case loadSetGet:
			w.setGet()
		case loadMulti:
			w.multi()
		case loadPipeline:
			w.pipelined()
		default:
			w.transaction()
		}
	}
}

// Keys carry no hash tag, so a client's keys spread over every slot.
func (w *worker) key(i int) string     { return "soak:" + strconv.Itoa(w.id) + ":" + strconv.Itoa(i) }
func (w *worker) counter(i int) string { return "soak:" + strconv.Itoa(w.id) + ":n" + strconv.Itoa(i) }
func (w *worker) randomKey() string    { return w.key(w.rng.IntN(w.keys)) }

// value returns a value never written before.
func (w *worker) value() string {
	w.seq++
	return strconv.Itoa(w.id) + ":" + strconv.FormatUint(w.seq, 10)
}

// done counts n requests of op sent at start and err, their error, if any.
func (w *worker) done(op Op, n int, start time.Time, err error) {
	now := time.Now()
	w.tally.Request(op, n, now.Sub(start), now)
	if err != nil && !errors.Is(err, redis.Nil) {
		w.tally.Error(op, err, now)
	}
}

// checkValue judges a read of key during the load.
func (w *worker) checkValue(op Op, key string, value string, found bool) {
	if v := w.ledger.CheckValue(key, value, found); v != Consistent {
		want, _ := w.ledger.Acked(key)
		w.tally.Judge(v, true, op, key, want, shown(value, found), time.Now())
	}
}

// checkCounter judges a read of counter key during the load.
func (w *worker) checkCounter(op Op, key string, value string, found bool) {
	got, err := parseCount(value, found)
	if err != nil {
		w.tally.Error(op, badReply("counter %s holds %q, not an integer", key, value), time.Now())
		return
	}
	want := countWant(w.ledger, key, 0)
	if v := w.ledger.CheckCounter(key, got); v != Consistent {
		w.tally.Judge(v, true, op, key, want, strconv.FormatInt(got, 10), time.Now())
	}
}

// countWant describes what a counter should read, or what an INCR of it
// should answer (plus 1).
func countWant(l *Ledger, key string, plus int64) string {
	acked, unsure := l.CounterRange(key)
	if unsure == 0 {
		return strconv.FormatInt(acked+plus, 10)
	}
	return strconv.FormatInt(acked+plus, 10) + ".." + strconv.FormatInt(acked+plus+unsure, 10)
}

func parseCount(value string, found bool) (int64, error) {
	if !found {
		return 0, nil
	}
	return strconv.ParseInt(value, 10, 64)
}

func shown(value string, found bool) string {
	if !found {
		return "(nil)"
	}
	return value
}

func (w *worker) incr(op Op, key string, got int64, err error) {
	want := countWant(w.ledger, key, 1)
	if v := w.ledger.Incr(key, got, err); v != Consistent {
		w.tally.Judge(v, true, op, key, want, strconv.FormatInt(got, 10), time.Now())
	}
}

func (w *worker) setGet() {
	key, value := w.randomKey(), w.value()
	start := time.Now()
	err := w.cl.Set(bg, key, value, 0).Err()
	w.done(OpSet, 1, start, err)
	w.ledger.Set(key, value, err)

	if w.rng.IntN(2) == 0 {
		key = w.randomKey() // else read what was just written
	}
	start = time.Now()
	got, err := w.cl.Get(bg, key).Result()
	w.done(OpGet, 1, start, err)
	if err == nil || errors.Is(err, redis.Nil) {
		w.checkValue(OpGet, key, got, err == nil)
	}
}

// distinctKeys returns n different random keys of the client's (all of
// them if it has fewer).
func (w *worker) distinctKeys(n int) []string {
	n = min(n, w.keys)
	seen := make(map[int]bool, n)
	keys := make([]string, 0, n)
	for len(keys) < n {
		i := w.rng.IntN(w.keys)
		if !seen[i] {
			seen[i] = true
			keys = append(keys, w.key(i))
		}
	}
	return keys
}

func (w *worker) multi() {
	keys := w.distinctKeys(multiKeys)
	values := make([]string, len(keys))
	pairs := make([]any, 0, 2*len(keys))
	for i, k := range keys {
		values[i] = w.value()
		pairs = append(pairs, k, values[i])
	}
	start := time.Now()
	err := w.cl.MSet(bg, pairs...).Err()
	w.done(OpMSet, 1, start, err)
	for i, k := range keys {
		w.ledger.Set(k, values[i], err)
	}

	keys = w.distinctKeys(multiKeys)
	start = time.Now()
	got, err := w.cl.MGet(bg, keys...).Result()
	w.done(OpMGet, 1, start, err)
	if err != nil {
		return
	}
	if len(got) != len(keys) {
		w.tally.Error(OpMGet, badReply("MGET of %d keys answered %d values", len(keys), len(got)), time.Now())
		return
	}
	for i, k := range keys {
		s, found := got[i].(string)
		w.checkValue(OpMGet, k, s, found)
	}
}

// pipelined sends one pipeline of SET, GET and INCR and judges every
// answer in order, as the proxy must keep a client's order.
func (w *worker) pipelined() {
	type sent struct {
		op    Op
		key   string
		value string
		cmd   redis.Cmder
	}
	pipe := w.cl.Pipeline()
	batch := make([]sent, w.pipeline)
	for i := range batch {
		switch w.rng.IntN(3) {
		case 0:
			key, value := w.randomKey(), w.value()
			batch[i] = sent{OpSet, key, value, pipe.Set(bg, key, value, 0)}
		case 1:
			key := w.randomKey()
			batch[i] = sent{op: OpGet, key: key, cmd: pipe.Get(bg, key)}
		default:
			key := w.counter(w.rng.IntN(counters))
			batch[i] = sent{op: OpIncr, key: key, cmd: pipe.Incr(bg, key)}
		}
	}
	start := time.Now()
	_, _ = pipe.Exec(bg) // every command's own error is judged below
	w.done(OpPipeline, 1, start, nil)
	for _, s := range batch {
		err := s.cmd.Err()
		w.done(s.op, 1, start, err)
		switch s.op {
		case OpSet:
			w.ledger.Set(s.key, s.value, err)
		case OpGet:
			if err == nil || errors.Is(err, redis.Nil) {
				got := s.cmd.(*redis.StringCmd).Val()
				w.checkValue(OpGet, s.key, got, err == nil)
			}
		case OpIncr:
			w.incr(OpIncr, s.key, s.cmd.(*redis.IntCmd).Val(), err)
		}
	}
}

// transaction runs MULTI, INCR of a counter, SET of a key in the same slot,
// EXEC; every fourth one then reads both back.
func (w *worker) transaction() {
	tag := "{soak:" + strconv.Itoa(w.id) + ":t" + strconv.Itoa(w.rng.IntN(txTags)) + "}"
	counterKey, lastKey := tag+":n", tag+":last"
	value := w.value()
	var incr *redis.IntCmd
	start := time.Now()
	_, err := w.cl.TxPipelined(bg, func(p redis.Pipeliner) error {
		incr = p.Incr(bg, counterKey)
		p.Set(bg, lastKey, value, 0)
		return nil
	})
	w.done(OpExec, 1, start, err)
	w.incr(OpExec, counterKey, incr.Val(), err)
	w.ledger.Set(lastKey, value, err)

	if w.seq%4 != 0 {
		return
	}
	start = time.Now()
	got, err := w.cl.MGet(bg, counterKey, lastKey).Result()
	w.done(OpMGet, 1, start, err)
	if err != nil || len(got) != 2 {
		return
	}
	count, found := got[0].(string)
	w.checkCounter(OpMGet, counterKey, count, found)
	last, found := got[1].(string)
	w.checkValue(OpMGet, lastKey, last, found)
}

// verifyChunk is how many keys one MGET of the final check reads.
const verifyChunk = 100

// verify reads every key the client wrote, after the load stopped, and
// counts what is missing. It returns how many keys it checked.
func (w *worker) verify(cl *redis.Client) int {
	checked := 0
	read := func(keys []string, judge func(key, value string, found bool)) {
		for len(keys) > 0 {
			chunk := keys[:min(verifyChunk, len(keys))]
			keys = keys[len(chunk):]
			start := time.Now()
			got, err := cl.MGet(bg, chunk...).Result()
			w.done(OpVerify, 1, start, err)
			if err != nil || len(got) != len(chunk) {
				continue
			}
			for i, k := range chunk {
				s, found := got[i].(string)
				judge(k, s, found)
			}
			checked += len(chunk)
		}
	}
	now := time.Now()
	read(w.ledger.ValueKeys(), func(key, value string, found bool) {
		if v := w.ledger.CheckValue(key, value, found); v != Consistent {
			want, _ := w.ledger.Acked(key)
			w.tally.Judge(v, false, OpVerify, key, want, shown(value, found), now)
		}
	})
	read(w.ledger.CounterKeys(), func(key, value string, found bool) {
		got, err := parseCount(value, found)
		if err != nil {
			w.tally.Judge(Lost, false, OpVerify, key, countWant(w.ledger, key, 0), value, now)
			return
		}
		if v := w.ledger.CheckCounter(key, got); v != Consistent {
			w.tally.Judge(v, false, OpVerify, key, countWant(w.ledger, key, 0), value, now)
		}
	})
	return checked
}
