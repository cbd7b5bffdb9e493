package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
	"kvproxy/router"
)

// latencies records request latencies of one kind, split at the handover.
type latencies struct {
	mu             sync.Mutex
	before, during []time.Duration
}

func (l *latencies) add(d time.Duration, during bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if during {
		l.during = append(l.during, d)
	} else {
		l.before = append(l.before, d)
	}
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// keyOnShard returns a key of the slot range the shard of master owns, or
// of another shard when other is set.
func keyOnShard(sim *kvsim.Cluster, master *kvsim.Node, other bool, n int) string {
	for i := n; ; i++ {
		key := "k" + strconv.Itoa(i)
		if (sim.MasterOfSlot(int(router.Slot([]byte(key)))) == master) != other {
			return key
		}
	}
}

// BenchmarkFailoverStall measures what clients feel of a CLUSTERX FAILOVER
// sent through the proxy (kvsim, 200 ms replication delay): the longest
// write latency on the failing-over shard against the master's write pause
// as the proxy observed it (goal: at most 50 ms more), and the p99 of reads
// on that shard and of writes to other shards during the handover against
// before it (goal: at most 2x). One handover per iteration; run with
// -benchtime=1x or a few.
func BenchmarkFailoverStall(b *testing.B) {
	for range b.N {
		runStall(b)
	}
}

func runStall(b *testing.B) {
	b.Helper()
	fx := startFailoverFixture(b, 200*time.Millisecond, 1)
	master := fx.sim.Masters()[0]
	replica := fx.sim.ReplicasOf(master.ID())[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := redis.NewClient(&redis.Options{Addr: fx.proxies[0].addr, PoolSize: 16, MaxRetries: -1})
	defer client.Close()

	var during atomic.Bool
	var stop atomic.Bool
	var writes, reads, others latencies
	var errs atomic.Int64
	var wg sync.WaitGroup
	run := func(l *latencies, do func(n int) error) {
		wg.Go(func() {
			for n := 0; !stop.Load(); n++ {
				// A request belongs to the handover if it overlaps it: a
				// held write ends only after the handover was seen over.
				start, began := time.Now(), during.Load()
				if err := do(n); err != nil && err != redis.Nil {
					errs.Add(1)
				}
				l.add(time.Since(start), began || during.Load())
			}
		})
	}
	for w := range 4 {
		run(&writes, func(n int) error {
			return client.Set(ctx, keyOnShard(fx.sim, master, false, w*1000000+n%1000), n, 0).Err()
		})
		run(&reads, func(n int) error {
			return client.Get(ctx, keyOnShard(fx.sim, master, false, w*1000000+n%1000)).Err()
		})
		run(&others, func(n int) error {
			return client.Set(ctx, keyOnShard(fx.sim, master, true, w*1000000+n%1000), n, 0).Err()
		})
	}
	time.Sleep(time.Second)
	during.Store(true)
	if err := client.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "3000").Err(); err != nil {
		b.Fatal(err)
	}
	var pauseMs float64
	for ctx.Err() == nil {
		info, _ := client.Info(ctx, "failover").Result()
		if strings.Contains(info, "last_result=success") {
			i := strings.Index(info, "last_pause_ms=")
			v := info[i+len("last_pause_ms="):]
			v = v[:strings.IndexAny(v, ",\r")]
			pauseMs, _ = strconv.ParseFloat(v, 64)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	during.Store(false)
	stop.Store(true)
	wg.Wait()
	if errs.Load() > 0 {
		b.Fatalf("%d requests failed", errs.Load())
	}
	stall := float64(slices.Max(writes.during)) / float64(time.Millisecond)
	ratio := func(l *latencies) float64 {
		return float64(quantile(l.during, 0.99)) / float64(max(quantile(l.before, 0.99), time.Microsecond))
	}
	b.ReportMetric(stall, "stall-ms")
	b.ReportMetric(pauseMs, "pause-ms")
	b.ReportMetric(stall-pauseMs, "stall-over-pause-ms")
	b.ReportMetric(ratio(&reads), "read-p99-x")
	b.ReportMetric(ratio(&others), "other-shard-p99-x")
	fmt.Printf("failover stall: longest write %.0f ms, observed pause %.0f ms; p99 during/before: reads %.2fx, other shards %.2fx\n",
		stall, pauseMs, ratio(&reads), ratio(&others))
}
