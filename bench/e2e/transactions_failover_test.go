package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/failover"
	"kvproxy/router"
)

// Transactions through the proxy survive a CLUSTERX FAILOVER of their shard
// (kvsim, 200 ms replication delay): go-redis clients, with their own
// retries off, run MULTI/INCR/SET/EXEC in a loop on the failing-over shard's
// keys while the failover goes through the proxy. No transaction gets an
// error, each INCR answers one more than the transactions acknowledged
// before it (none ran twice), and afterwards each counter on the new master
// equals the EXECs acknowledged for it (none lost).
func TestTransactionsSurviveFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	fx := startFailoverFixture(t, 200*time.Millisecond, 1)
	proxyAddr := fx.proxies[0].addr
	master := fx.sim.Masters()[0]
	replica := fx.sim.ReplicasOf(master.ID())[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const clients = 4
	type txClient struct {
		counter, last string
		acked         atomic.Int64
		lastAcked     int // n of the last transaction acknowledged
		errs          []string
	}
	workers := make([]*txClient, clients)
	for i := range workers {
		tag := "{" + keyOnShard(fx.sim, master, false, i*1000) + "}"
		workers[i] = &txClient{counter: tag + "count", last: tag + "last"}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, w := range workers {
		client := redis.NewClient(&redis.Options{Addr: proxyAddr, MaxRetries: -1, PoolSize: 1})
		t.Cleanup(func() { client.Close() })
		wg.Go(func() {
			for n := 1; !stop.Load() && ctx.Err() == nil; n++ {
				var incr *redis.IntCmd
				_, err := client.TxPipelined(ctx, func(p redis.Pipeliner) error {
					incr = p.Incr(ctx, w.counter)
					p.Set(ctx, w.last, n, 0)
					return nil
				})
				if err != nil {
					w.errs = append(w.errs, fmt.Sprintf("transaction %d: %v", n, err))
					continue
				}
				if want := w.acked.Load() + 1; incr.Val() != want {
					w.errs = append(w.errs, fmt.Sprintf("transaction %d: INCR answered %d, want %d", n, incr.Val(), want))
				}
				w.acked.Add(1)
				w.lastAcked = n
			}
		})
	}

	require.Eventually(t, func() bool {
		for _, w := range workers {
			if w.acked.Load() == 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, time.Millisecond, "every client ran a transaction before the failover")
	admin := redis.NewClient(&redis.Options{Addr: proxyAddr})
	defer admin.Close()
	require.Equal(t, "OK", admin.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "3000").Val())
	direct := redis.NewClient(&redis.Options{Addr: master.Addr()})
	defer direct.Close()
	var phase failover.Phase
	require.Eventually(t, func() bool {
		info, _ := direct.Do(ctx, "CLUSTER", "INFO").Text()
		phase, _ = failover.ParsePhase([]byte(info))
		return phase.Final()
	}, 30*time.Second, 5*time.Millisecond)
	require.Equal(t, failover.PhaseSuccess, phase)
	ackedAtSuccess := make([]int64, clients)
	for i, w := range workers {
		ackedAtSuccess[i] = w.acked.Load()
	}
	require.Eventually(t, func() bool {
		for i, w := range workers {
			if w.acked.Load() <= ackedAtSuccess[i] {
				return false
			}
		}
		return true
	}, 30*time.Second, time.Millisecond, "every client ran a transaction after the failover")
	stop.Store(true)
	wg.Wait()
	require.NoError(t, ctx.Err(), "the run hit its time limit")

	newMaster := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer newMaster.Close()
	for i, w := range workers {
		assert.Empty(t, w.errs, "no transaction of %s fails", w.counter)
		acked := w.acked.Load()
		assert.Equal(t, strconv.FormatInt(acked, 10), newMaster.Get(ctx, w.counter).Val(),
			"%s on the new master counts the acknowledged EXECs", w.counter)
		assert.Equal(t, strconv.Itoa(w.lastAcked), newMaster.Get(ctx, w.last).Val(),
			"%s on the new master is the last acknowledged transaction's", w.last)
		t.Logf("%s: %d transactions, %d after the failover", w.counter, acked, acked-ackedAtSuccess[i])
	}
	t.Logf("proxy router: %+v", fx.proxies[0].rt.Stats())
	slot := int(router.Slot([]byte(workers[0].counter)))
	assert.Equal(t, replica.Addr(), fx.proxies[0].rt.MasterOf(slot), "the shard's transactions go to the new master")
}
