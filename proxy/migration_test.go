package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
	"kvproxy/router"
)

// migrationWorker drives one client's share of the load: pipelines of 1 to
// 8 SET, GET and INCR on keys of its own, half of them in the slot being
// migrated. As the only writer of its keys, it knows what every read must
// return.
type migrationWorker struct {
	client *redis.Client
	keys   []string // per group: plain keys, then the group's counter
	rng    *rand.Rand
	seq    int // numbers the values SET

	// last is the last acknowledged value of each key SET so far; counts is
	// the value of each counter after its last acknowledged INCR.
	last   map[string]string
	counts map[string]int64
	// uncertain holds the keys a write to which got an error: it may or
	// may not have run, so they are not checked any more.
	uncertain map[string]bool
	// failures are error replies and replies that contradict an
	// acknowledged write, in order.
	failures []string
}

// round sends one pipeline of random commands, then checks the replies in
// order: a GET must see the SETs before it, in the same pipeline too.
func (w *migrationWorker) round(ctx context.Context) (commands int) {
	pipe := w.client.Pipeline()
	type sent struct {
		key   string
		value string // for SET
		cmd   redis.Cmder
	}
	batch := make([]sent, 1+w.rng.IntN(8))
	for i := range batch {
		key := w.keys[w.rng.IntN(len(w.keys))]
		switch {
		case strings.HasSuffix(key, ":ctr"):
			batch[i] = sent{key: key, cmd: pipe.Incr(ctx, key)}
		case w.rng.IntN(2) == 0:
			w.seq++
			value := strconv.Itoa(w.seq)
			batch[i] = sent{key: key, value: value, cmd: pipe.Set(ctx, key, value, 0)}
		default:
			batch[i] = sent{key: key, cmd: pipe.Get(ctx, key)}
		}
	}
	_, _ = pipe.Exec(ctx) // each command's error is checked below
	for _, q := range batch {
		fail := func(format string, args ...any) {
			w.failures = append(w.failures, q.key+": "+fmt.Sprintf(format, args...))
		}
		switch cmd := q.cmd.(type) {
		case *redis.IntCmd: // INCR
			n, err := cmd.Result()
			if err != nil {
				w.uncertain[q.key] = true
				fail("INCR: %v", err)
				continue
			}
			if want := w.counts[q.key] + 1; !w.uncertain[q.key] && n != want {
				fail("INCR returned %d, want %d", n, want)
			}
			w.counts[q.key] = n
		case *redis.StatusCmd: // SET
			if err := cmd.Err(); err != nil {
				w.uncertain[q.key] = true
				fail("SET: %v", err)
				continue
			}
			w.last[q.key] = q.value
		case *redis.StringCmd: // GET
			got, err := cmd.Result()
			want, written := w.last[q.key]
			switch {
			case errors.Is(err, redis.Nil) && !written:
			case err != nil && !errors.Is(err, redis.Nil):
				fail("GET: %v", err)
			case w.uncertain[q.key]:
			case got != want || errors.Is(err, redis.Nil):
				fail("GET returned %q (err %v), want %q", got, err, want)
			}
		}
	}
	return len(batch)
}

// TestSlotMigrationUnderLoadGivesNoClientError moves a slot with keys to
// another master while clients keep reading and writing through the proxy,
// in the slot and elsewhere: first some keys only (the source answers ASK
// for them), then the rest, then the ownership (the source answers MOVED).
// No client sees an error, every read returns the last acknowledged write,
// and afterwards every acknowledged write is readable, from the new owner.
func TestSlotMigrationUnderLoadGivesNoClientError(t *testing.T) {
	// No periodic reload: the proxy learns the new owner from MOVED.
	cp := startClusterProxy(t, func(c *router.Config) { c.RefreshInterval = time.Hour })
	// Cancelled only after the load has stopped (cleanups run last first),
	// so a test that ends early does not add cancelled commands to the
	// failures it reports.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)

	const tag = "{migrating}"
	slot := cluster.Slot(tag)
	src := cp.cluster.MasterForSlot(slot)
	require.NotNil(t, src)
	var dst *cluster.Node
	for _, m := range cp.cluster.Masters() {
		if m != src {
			dst = m
			break
		}
	}
	require.NotNil(t, dst)

	const workers, keysPerGroup = 4, 16
	var ops atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ws := make([]*migrationWorker, workers)
	for i := range ws {
		w := &migrationWorker{
			client:    redis.NewClient(&redis.Options{Addr: cp.addr, Protocol: 2, MaxRetries: -1, DisableIdentity: true}),
			rng:       rand.New(rand.NewPCG(uint64(i), 7)),
			last:      map[string]string{},
			counts:    map[string]int64{},
			uncertain: map[string]bool{},
		}
		t.Cleanup(func() { _ = w.client.Close() })
		for _, group := range []string{tag, "elsewhere"} {
			for k := range keysPerGroup {
				w.keys = append(w.keys, fmt.Sprintf("%s:w%d:k%d", group, i, k))
			}
			w.keys = append(w.keys, fmt.Sprintf("%s:w%d:ctr", group, i))
		}
		// Half the keys of the slot exist from the start; the load creates
		// the others, some while the migration runs.
		for _, key := range w.keys[:keysPerGroup/2] {
			require.NoError(t, w.client.Set(ctx, key, "initial", 0).Err())
			w.last[key] = "initial"
		}
		ws[i] = w
	}
	// However the test ends, the load stops first, then the failures the
	// clients saw are reported.
	t.Cleanup(func() {
		for i, w := range ws {
			assert.Empty(t, w.failures[:min(len(w.failures), 10)], "worker %d: %d failures, the first ones", i, len(w.failures))
		}
	})
	var stopOnce sync.Once
	stopLoad := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	t.Cleanup(stopLoad)
	for _, w := range ws {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				roundCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				ops.Add(int64(w.round(roundCtx)))
				cancel()
			}
		})
	}
	// runFor lets the load make progress: n more commands, bounded in time.
	runFor := func(n int64, phase string) {
		t.Helper()
		target := ops.Load() + n
		require.Eventually(t, func() bool { return ops.Load() >= target }, 60*time.Second, 5*time.Millisecond,
			"the load stalled %s", phase)
	}

	runFor(500, "before the migration")
	require.NoError(t, cp.cluster.BeginMigration(ctx, slot, src, dst))
	runFor(300, "once the slot is migrating")

	// Move some keys by hand: from now on src answers ASK for them.
	some, err := src.Client().ClusterGetKeysInSlot(ctx, slot, 10).Result()
	require.NoError(t, err)
	require.NotEmpty(t, some)
	migrate := []any{"MIGRATE", "127.0.0.1", dst.Port, "", 0, 5000, "KEYS"}
	for _, k := range some {
		migrate = append(migrate, k)
	}
	require.NoError(t, src.Client().Do(ctx, migrate...).Err())
	askBefore := cp.router.Stats().Ask
	require.Eventually(t, func() bool { return cp.router.Stats().Ask >= askBefore+50 }, 60*time.Second, 5*time.Millisecond,
		"no ASK while some keys are moved")
	runFor(300, "while some keys are moved")

	_, err = cp.cluster.MigrateKeys(ctx, slot, src, dst)
	require.NoError(t, err)
	runFor(300, "while every key is moved")

	movedBefore := cp.router.Stats().Moved
	require.NoError(t, cp.cluster.FinishMigration(ctx, slot, src, dst))
	require.Eventually(t, func() bool { return cp.router.Stats().Moved > movedBefore }, 60*time.Second, 5*time.Millisecond,
		"no MOVED once the slot changed owner")
	runFor(500, "after the migration")
	stopLoad()

	stats := cp.router.Stats()
	t.Logf("%d commands; router: %d ASK, %d MOVED, %d rejected, %d resent", ops.Load(), stats.Ask, stats.Moved, stats.Rejected, stats.Resent)
	for _, w := range ws {
		if len(w.failures) > 0 {
			continue // reported at cleanup
		}
		for key, want := range w.last {
			assert.Equal(t, want, w.client.Get(ctx, key).Val(), "%s through the proxy", key)
			if cluster.Slot(key) == slot {
				assert.Equal(t, want, dst.Client().Get(ctx, key).Val(), "%s on the new owner", key)
			}
		}
		for key, want := range w.counts {
			assert.Equal(t, strconv.FormatInt(want, 10), w.client.Get(ctx, key).Val(), "%s through the proxy", key)
		}
	}
	left, err := src.Client().ClusterCountKeysInSlot(ctx, slot).Result()
	require.NoError(t, err)
	assert.Zero(t, left, "keys of slot %d left on the old owner", slot)
}
