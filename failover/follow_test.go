package failover_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/failover"
	"kvproxy/router"
)

// A graceful failover started on the master behind the router's back
// (CLUSTERX FAILOVER sent to the master directly): writes through a router
// holding in a failover.Buffer see no error, none is lost, the hold counters add up,
// and the shard's writes land on the new master afterwards.
func TestBufferHidesAFailoverStartedBehindTheRoutersBack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := kvsim.DefaultClusterConfig()
	cfg.ReplDelay = 200 * time.Millisecond
	c, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	master := c.Masters()[0]
	replica := c.ReplicasOf(master.ID())[0]

	rcfg := router.DefaultConfig()
	rcfg.Seeds = []string{master.Addr()}
	hcfg := failover.DefaultConfig()
	hcfg.Dial = router.Dialer{Timeout: rcfg.DialTimeout}.Dial
	holds, err := failover.New(hcfg)
	require.NoError(t, err)
	t.Cleanup(holds.Close)
	rcfg.Hold = holds
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := router.New(ctx, rcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })

	// Writers: each sends pipelines of SETs of fresh keys over every shard
	// and remembers what was acknowledged.
	var stop atomic.Bool
	var mu sync.Mutex
	acked := map[string]bool{}
	var failures []string
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for n := 0; !stop.Load() && n < 100000; n++ {
				reqs := make([]*router.Request, 4)
				for i := range reqs {
					key := fmt.Sprintf("w%d:%d:%d", w, n, i)
					reqs[i] = &router.Request{Raw: command("SET", key, key), Slot: int(router.Slot([]byte(key)))}
				}
				rt.Do(ctx, reqs)
				mu.Lock()
				for i, q := range reqs {
					key := fmt.Sprintf("w%d:%d:%d", w, n, i)
					if string(q.Reply) == "+OK\r\n" {
						acked[key] = true
					} else {
						failures = append(failures, key+" -> "+string(q.Reply))
					}
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	admin := redis.NewClient(&redis.Options{Addr: master.Addr()})
	defer admin.Close()
	require.Equal(t, "OK", admin.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "3000").Val())
	require.Eventually(t, func() bool {
		info, _ := admin.Do(ctx, "CLUSTER", "INFO").Text()
		phase, _ := failover.ParsePhase([]byte(info))
		return phase.Final()
	}, 20*time.Second, 5*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	info, err := admin.Do(ctx, "CLUSTER", "INFO").Text()
	require.NoError(t, err)
	phase, err := failover.ParsePhase([]byte(info))
	require.NoError(t, err)
	require.Equal(t, failover.PhaseSuccess, phase)
	assert.Empty(t, failures, "no write may fail")
	st := holds.Report().Totals
	assert.Positive(t, st.Held, "writes were held during the pause")
	assert.Equal(t, st.Held, st.Released+st.Expired+st.Abandoned, "held = released + expired + abandoned: %+v", st)
	assert.Zero(t, st.Expired)

	// Every acknowledged write is there, read through the router.
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, acked)
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	for start := 0; start < len(keys); start += 200 {
		batch := keys[start:min(start+200, len(keys))]
		reqs := make([]*router.Request, len(batch))
		for i, k := range batch {
			reqs[i] = &router.Request{Raw: command("GET", k), Slot: int(router.Slot([]byte(k))), ReadOnly: true}
		}
		rt.Do(ctx, reqs)
		for i, k := range batch {
			require.Equal(t, fmt.Sprintf("$%d\r\n%s\r\n", len(k), k), string(reqs[i].Reply), "acknowledged write %s lost", k)
		}
	}
	// The shard's slots now go to the new master.
	slot := -1
	for s := 0; s < router.SlotCount && slot < 0; s++ {
		if c.MasterOfSlot(s) == master {
			slot = s
		}
	}
	require.GreaterOrEqual(t, slot, 0)
	assert.Equal(t, replica.Addr(), rt.MasterOf(slot))
}

// command RESP-encodes args.
func command(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}
