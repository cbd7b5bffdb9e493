package router

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"kvproxy/bench/cluster"
	"kvproxy/bench/kvsim"
)

// BenchmarkTopologyPickup measures how long the router takes to route by a
// topology kvsim's controller pushed: each op is one controller failover of
// shard 0 (CLIENT PAUSE, then the swapped topology one version up, pushed to
// every node at once), timed from the controller's return until the router
// routes the shard's slots to the new master (route-ms) and until its table
// has the new version (table-ms). With traffic, a writer keeps sending to
// the shard, so a MOVED tells the router at once and triggers a reload; idle,
// only the periodic reload (RefreshInterval) notices: each push comes at a
// random point of its period.
//
//	go test ./router -run '^$' -bench TopologyPickup -benchtime 8x
func BenchmarkTopologyPickup(b *testing.B) {
	skipIfShort(b)
	b.Run("idle", func(b *testing.B) { benchPickup(b, false) })
	b.Run("traffic", func(b *testing.B) { benchPickup(b, true) })
}

func benchPickup(b *testing.B, traffic bool) {
	sim := startKvsim(b, 3)
	cfg := DefaultConfig()
	cfg.Seeds = []string{sim.Masters()[0].Addr()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r, err := New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	slot := sim.Topology().Shards[0].Slots[0].Start
	key := cluster.KeyInSlot(slot, "pickup")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var errReplies []string
	if traffic {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := keyed(false, "SET", key, "v")
			for {
				select {
				case <-stop:
					return
				default:
				}
				r.Do(ctx, []*Request{req})
				if req.Reply[0] == '-' {
					errReplies = append(errReplies, string(req.Reply))
				}
			}
		}()
	}
	var route, table []time.Duration
	b.ResetTimer()
	for range b.N {
		if !traffic {
			// At a random point of the refresh period, as a push comes.
			b.StopTimer()
			time.Sleep(rand.N(cfg.RefreshInterval))
			b.StartTimer()
		}
		before := sim.Topology()
		newMaster := before.Shards[0].Replicas[0].Addr
		if err := sim.Controller().FailoverShard(ctx, 0, kvsim.DefaultFailoverOptions()); err != nil {
			b.Fatal(err)
		}
		pushed := time.Now()
		routed := time.Duration(-1)
		for {
			if routed < 0 && r.MasterOf(slot) == newMaster {
				routed = time.Since(pushed)
			}
			if routed >= 0 && r.Topology().Epoch > before.Version {
				break
			}
			if time.Since(pushed) > time.Minute {
				b.Fatalf("the router did not pick up version %d in a minute", before.Version+1)
			}
			time.Sleep(time.Millisecond)
		}
		route = append(route, routed)
		table = append(table, time.Since(pushed))
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	if len(errReplies) > 0 {
		b.Fatalf("%d error replies under traffic, first %q", len(errReplies), errReplies[0])
	}
	b.ReportMetric(float64(r.Stats().Bounces)/float64(b.N), "bounces/op")
	reportMillis(b, "route", route)
	reportMillis(b, "table", table)
}

// reportMillis reports the mean and the maximum of ds in milliseconds.
func reportMillis(b *testing.B, name string, ds []time.Duration) {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	b.ReportMetric(float64(sum.Microseconds())/float64(len(ds))/1000, name+"-ms")
	b.ReportMetric(float64(slices.Max(ds).Microseconds())/1000, name+"-max-ms")
}
