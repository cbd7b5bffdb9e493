package failbench

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/soak"
	"kvproxy/router"
)

// worker is one connection of the Go load generator: batches of Pipeline
// GETs and SETs of keys only it writes, every write in its ledger.
type worker struct {
	id       int
	cfg      Config
	cl       *redis.Client
	rec      *recorder
	shardOf  []int // by slot
	keys     []string
	keyShard []int
	ledger   *soak.Ledger
	rng      *rand.Rand
	padding  string
	seq      uint64
	stale    uint64 // reads that missed an acknowledged write
}

func newWorker(id int, addr string, cfg Config, rec *recorder, shardOf []int) *worker {
	w := &worker{id: id, cfg: cfg, cl: soak.NewClient(addr, cfg.ClientTimeout, 1), rec: rec, shardOf: shardOf,
		ledger: soak.NewLedger(), rng: rand.New(rand.NewPCG(cfg.Seed, uint64(id))),
		padding: strings.Repeat("x", max(cfg.ValueSize-24, 0))}
	for k := range cfg.Keys {
		key := "failbench:" + strconv.Itoa(id) + ":" + strconv.Itoa(k)
		w.keys = append(w.keys, key)
		w.keyShard = append(w.keyShard, shardOf[router.Slot([]byte(key))])
	}
	return w
}

// value is the n-th value the worker writes: unique, ValueSize bytes long
// (at least its number's).
func (w *worker) value(n uint64) string {
	v := strconv.Itoa(w.id) + ":" + strconv.FormatUint(n, 10) + ":"
	return v + w.padding[:min(len(w.padding), max(w.cfg.ValueSize-len(v), 0))]
}

// run sends batches until stop is set.
func (w *worker) run(stop *atomic.Bool) {
	ctx := context.Background()
	type sent struct {
		key   int
		value string // "" for a GET
	}
	batch := make([]sent, 0, w.cfg.Pipeline)
	outcomes := make([]outcome, 0, w.cfg.Pipeline)
	for !stop.Load() {
		batch, outcomes = batch[:0], outcomes[:0]
		pipe := w.cl.Pipeline()
		for range w.cfg.Pipeline {
			k := w.rng.IntN(len(w.keys))
			if w.rng.Float64() < w.cfg.Reads {
				pipe.Get(ctx, w.keys[k])
				batch = append(batch, sent{key: k})
				continue
			}
			w.seq++
			v := w.value(w.seq)
			pipe.Set(ctx, w.keys[k], v, 0)
			batch = append(batch, sent{key: k, value: v})
		}
		state := w.rec.snapshot()
		start := time.Now()
		cmds, _ := pipe.Exec(ctx)
		took := time.Since(start)
		for i, c := range cmds {
			s := batch[i]
			err := c.Err()
			if s.value != "" {
				w.ledger.Set(w.keys[s.key], s.value, err)
			} else if errors.Is(err, redis.Nil) {
				err = nil
				w.check(s.key, "", false)
			} else if err == nil {
				w.check(s.key, c.(*redis.StringCmd).Val(), true)
			}
			outcomes = append(outcomes, outcome{shard: w.keyShard[s.key], write: s.value != "", err: err})
		}
		w.rec.record(start, took, state, outcomes)
		if len(cmds) > 0 && cmds[0].Err() != nil && !isReply(cmds[0].Err()) {
			// The connection failed: do not spin on a proxy that is gone.
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (w *worker) check(k int, value string, found bool) {
	if w.ledger.CheckValue(w.keys[k], value, found) != soak.Consistent {
		w.stale++
	}
}

// verifyBatch is how many keys one read-back pipeline reads.
const verifyBatch = 256

// verify reads back every key the worker wrote through cl and returns how
// many it read and how many missed an acknowledged write; the keys it could
// not read are an error.
func (w *worker) verify(ctx context.Context, cl *redis.Client) (read, lost int, err error) {
	keys := w.ledger.ValueKeys()
	for i := 0; i < len(keys); i += verifyBatch {
		part := keys[i:min(i+verifyBatch, len(keys))]
		pipe := cl.Pipeline()
		for _, k := range part {
			pipe.Get(ctx, k)
		}
		cmds, _ := pipe.Exec(ctx)
		for j, c := range cmds {
			v, err := c.(*redis.StringCmd).Result()
			found := err == nil
			if err != nil && !errors.Is(err, redis.Nil) {
				return read, lost, err
			}
			read++
			if w.ledger.CheckValue(part[j], v, found) != soak.Consistent {
				lost++
			}
		}
	}
	return read, lost, nil
}

func isReply(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply)
}

// errorKind files an error under its RESP prefix (MOVED, TRYAGAIN,
// CLUSTERDOWN...), or "timeout", or "network" for a failed connection.
func errorKind(err error) string {
	var reply redis.Error
	if errors.As(err, &reply) {
		prefix, _, _ := strings.Cut(reply.Error(), " ")
		return prefix
	}
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return "timeout"
	}
	return "network"
}
