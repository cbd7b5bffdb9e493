package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/failover"
)

// Blocking list commands through the proxy across a CLUSTERX FAILOVER of
// their shard (kvsim 3x1, 200 ms replication delay; kvsim blocks as Kvrocks
// does and leaves a blocked client blocked through a failover):
//  1. a BLPOP blocked on the master when the failover goes through the proxy
//     gets the proxy's "may have run" error, not a hang nor its timeout's nil,
//     and the proxy's hang-up unblocks it on the old master;
//  2. a BLPOP sent during the write pause waits, then blocks on the new
//     master, where a push through the proxy serves it;
//  3. after the failover, LPUSH then BLPOP through the proxy pop on the new
//     master.
func TestBlockingListCommandsAcrossFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	fx := startFailoverFixture(t, 200*time.Millisecond, 1)
	proxyAddr := fx.proxies[0].addr
	master := fx.sim.Masters()[0]
	replica := fx.sim.ReplicasOf(master.ID())[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tag := "{" + keyOnShard(fx.sim, master, false, 0) + "}"
	direct := func(n *kvsim.Node) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: n.Addr()})
		t.Cleanup(func() { c.Close() })
		return c
	}
	oldMaster, newMaster := direct(master), direct(replica)
	blockedOn := func(c *redis.Client) string {
		info, _ := c.Info(ctx, "clients").Result()
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "blocked_clients:"); ok {
				return v
			}
		}
		return ""
	}
	phaseOf := func(c *redis.Client) failover.Phase {
		info, _ := c.Do(ctx, "CLUSTER", "INFO").Text()
		phase, _ := failover.ParsePhase([]byte(info))
		return phase
	}
	type popResult struct {
		vals []string
		err  error
	}
	blpop := func(key string, timeout time.Duration) <-chan popResult {
		c := redis.NewClient(&redis.Options{Addr: proxyAddr, MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		done := make(chan popResult, 1)
		go func() {
			vals, err := c.BLPop(ctx, timeout, key).Result()
			done <- popResult{vals, err}
		}()
		return done
	}
	await := func(done <-chan popResult, what string) popResult {
		t.Helper()
		select {
		case r := <-done:
			return r
		case <-time.After(30 * time.Second):
			require.FailNow(t, what+" hung")
			return popResult{}
		}
	}
	client := redis.NewClient(&redis.Options{Addr: proxyAddr, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })

	beforeFailover := blpop(tag+"before", 5*time.Second)
	require.Eventually(t, func() bool { return blockedOn(oldMaster) == "1" }, 10*time.Second, 2*time.Millisecond,
		"the BLPOP blocks on the master")
	// A writer on the master, direct, keeps the replica 200 ms behind, so
	// the failover's write pause lasts that long at least.
	writerDone := make(chan struct{})
	stopWriter := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stopWriter:
				return
			default:
			}
			oldMaster.Set(ctx, tag+"lag", i, 0) // TRYAGAIN and MOVED once the failover starts
			time.Sleep(time.Millisecond)
		}
	}()
	stopLag := sync.OnceFunc(func() {
		close(stopWriter)
		<-writerDone
	})
	t.Cleanup(stopLag)
	require.Eventually(t, func() bool { return oldMaster.Exists(ctx, tag+"lag").Val() == 1 }, 10*time.Second, time.Millisecond)
	require.Equal(t, "OK", client.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "3000").Val())
	require.Eventually(t, func() bool { return phaseOf(oldMaster).HoldsWrites() }, 10*time.Second, time.Millisecond,
		"the failover pauses writes")
	duringPause := blpop(tag+"during", 10*time.Second)
	t.Logf("failover phase just after the BLPOP was sent: %s", phaseOf(oldMaster))

	r := await(beforeFailover, "the BLPOP blocked before the failover")
	require.Error(t, r.err, "got %q", r.vals)
	assert.Equal(t, "ERR the shard's master failed over while the blocking command waited: the command may have run",
		r.err.Error())
	require.Eventually(t, func() bool { return phaseOf(oldMaster).Final() }, 30*time.Second, 5*time.Millisecond)
	require.Equal(t, failover.PhaseSuccess, phaseOf(oldMaster))
	stopLag()
	require.Eventually(t, func() bool { return blockedOn(oldMaster) == "0" }, 10*time.Second, 2*time.Millisecond,
		"the proxy's hang-up unblocks the BLPOP on the old master")

	require.Eventually(t, func() bool { return blockedOn(newMaster) == "1" }, 10*time.Second, 2*time.Millisecond,
		"the BLPOP sent during the pause blocks on the new master")
	require.Equal(t, int64(1), client.RPush(ctx, tag+"during", "pushed").Val())
	r = await(duringPause, "the BLPOP sent during the pause")
	require.NoError(t, r.err)
	assert.Equal(t, []string{tag + "during", "pushed"}, r.vals)

	require.Equal(t, int64(2), client.LPush(ctx, tag+"after", "x", "y").Val())
	vals, err := client.BLPop(ctx, 5*time.Second, tag+"after").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{tag + "after", "y"}, vals)
	assert.Equal(t, int64(1), newMaster.LLen(ctx, tag+"after").Val(), "the pop ran on the new master")
}
