package failover

import (
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/internal/resp"
)

// pollEvery is the polling interval of the end-to-end tests.
const pollEvery = 2 * time.Millisecond

func skipIfShort(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
}

// startShard starts a one-shard kvsim cluster (a master and its replica).
func startShard(t *testing.T, replDelay time.Duration, password string) (master, replica *kvsim.Node, c *kvsim.Cluster) {
	t.Helper()
	cfg := kvsim.DefaultClusterConfig()
	cfg.Shards = 1
	cfg.ReplDelay = replDelay
	cfg.Password = password
	c, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	master = c.Masters()[0]
	replicas := c.ReplicasOf(master.ID())
	require.Len(t, replicas, 1)
	return master, replicas[0], c
}

// dialNode opens the raw connection Follow polls on, authenticated if
// password is set.
func dialNode(t *testing.T, n *kvsim.Node, password string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.Addr(), noHang)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	if password != "" {
		require.NoError(t, conn.SetDeadline(time.Now().Add(noHang)))
		_, err := io.WriteString(conn, "*2\r\n$4\r\nAUTH\r\n$"+strconv.Itoa(len(password))+"\r\n"+password+"\r\n")
		require.NoError(t, err)
		reply := make([]byte, len("+OK\r\n"))
		_, err = io.ReadFull(conn, reply)
		require.NoError(t, err)
		require.Equal(t, "+OK\r\n", string(reply))
	}
	return conn
}

// adminClient is a go-redis client for admin commands, without retries so
// nothing is sent twice.
func adminClient(t *testing.T, n *kvsim.Node, password string) *redis.Client {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: n.Addr(), Password: password, MaxRetries: -1, Protocol: 2})
	t.Cleanup(func() { cl.Close() })
	return cl
}

// writeInBackground runs paced SETs on master until the test ends, ignoring
// their errors (TRYAGAIN during the pause, MOVED after the switch).
func writeInBackground(t *testing.T, master *kvsim.Node) {
	cl := adminClient(t, master, "")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			_ = cl.Set(ctx, "key:"+strconv.Itoa(i%1000), i, 0).Err()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// specOrder ranks each phase in the spec's sequence; failed shares success's rank.
var specOrder = map[Phase]int{
	PhaseNone: 0, PhaseStarted: 1, PhaseCheckSlave: 2, PhasePauseWrite: 3,
	PhaseWaitSync: 4, PhaseSwitching: 5, PhaseSuccess: 6, PhaseFailed: 6,
}

func assertSpecOrder(t *testing.T, seen []Phase) {
	t.Helper()
	for i := 1; i < len(seen); i++ {
		assert.Less(t, specOrder[seen[i-1]], specOrder[seen[i]], "%v is out of the spec's order", seen)
	}
}

func TestFollowKvsimFailoverUnderWrites(t *testing.T) {
	skipIfShort(t)
	master, replica, _ := startShard(t, 200*time.Millisecond, "")
	writeInBackground(t, master)
	// The replica applies writes 200 ms late: once it has some, the master's
	// check_slave measures a catch-up speed.
	require.Eventually(t, func() bool { return replica.Keyspace().Sequence() > 20 }, noHang, 10*time.Millisecond)

	conn := dialNode(t, master, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*noHang)
	defer cancel()
	require.NoError(t, adminClient(t, master, "").Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "2000").Err())
	var calls []Phase
	h, err := Follow(ctx, conn, pollEvery, func(p Phase, _ time.Time) { calls = append(calls, p) })
	require.NoError(t, err, "phases seen: %v", h.Phases)

	assert.Equal(t, PhaseSuccess, h.Final, "phases seen: %v", h.Phases)
	assert.Equal(t, h.Phases, calls)
	assertSpecOrder(t, h.Phases)
	assert.True(t, slices.ContainsFunc(h.Phases, Phase.HoldsWrites), "no write-holding phase in %v", h.Phases)
	require.False(t, h.HoldStart.IsZero())
	require.False(t, h.HoldEnd.IsZero())
	assert.True(t, h.HoldEnd.After(h.HoldStart))
	assert.Positive(t, h.ObservedPause())
	assert.Greater(t, h.Polls, len(h.Phases), "2 ms polls see each phase more than once")
	t.Logf("phases %v, observed pause %v, %d polls over %v", h.Phases, h.ObservedPause(), h.Polls, h.LastPoll.Sub(h.FirstPoll))
}

func TestFollowKvsimUnknownReplicaFails(t *testing.T) {
	skipIfShort(t)
	master, _, _ := startShard(t, 0, "")
	conn := dialNode(t, master, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*noHang)
	defer cancel()
	unknown := "0123456789012345678901234567890123456789"
	require.NoError(t, adminClient(t, master, "").Do(ctx, "CLUSTERX", "FAILOVER", unknown).Err())
	h, err := Follow(ctx, conn, pollEvery, nil)
	require.NoError(t, err)
	assert.Equal(t, PhaseFailed, h.Final)
	assertSpecOrder(t, h.Phases)
	for _, p := range h.Phases {
		assert.Contains(t, []Phase{PhaseStarted, PhaseCheckSlave, PhaseFailed}, p, "writes were never held")
	}
	assert.True(t, h.HoldStart.IsZero())
}

func TestFollowKvsimNeedsAuthentication(t *testing.T) {
	skipIfShort(t)
	const password = "s3cret"
	master, _, _ := startShard(t, 0, password)
	ctx, cancel := context.WithTimeout(context.Background(), 2*noHang)
	defer cancel()

	_, err := Follow(ctx, dialNode(t, master, ""), pollEvery, nil)
	var replyErr *resp.ReplyError
	require.ErrorAs(t, err, &replyErr)
	assert.Equal(t, "NOAUTH Authentication required.", replyErr.Msg)

	unknown := "0123456789012345678901234567890123456789"
	require.NoError(t, adminClient(t, master, password).Do(ctx, "CLUSTERX", "FAILOVER", unknown).Err())
	h, err := Follow(ctx, dialNode(t, master, password), pollEvery, nil)
	require.NoError(t, err)
	assert.Equal(t, PhaseFailed, h.Final)
}

func TestFollowKvsimMasterKilled(t *testing.T) {
	skipIfShort(t)
	master, replica, c := startShard(t, 200*time.Millisecond, "")
	conn := dialNode(t, master, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*noHang)
	defer cancel()
	// A 2 s timeout keeps the master in check_slave for 1 s: time to kill it.
	require.NoError(t, adminClient(t, master, "").Do(ctx, "CLUSTERX", "FAILOVER", replica.ID(), "2000").Err())
	seen := make(chan struct{}, 1)
	onPhase := func(Phase, time.Time) {
		select {
		case seen <- struct{}{}:
		default:
		}
	}
	wait := followAsync(t, ctx, Watch{Interval: pollEvery, OnPhase: onPhase}, conn)
	select {
	case <-seen:
	case <-time.After(noHang):
		require.FailNow(t, "no phase observed")
	}
	require.NoError(t, c.Controller().Kill(master.ID()))
	h, err := wait()
	require.ErrorIs(t, err, ErrConn)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.Empty(t, h.Final)
	assert.NotEmpty(t, h.Phases)
}

func TestFollowKvsimCancel(t *testing.T) {
	skipIfShort(t)
	master, _, _ := startShard(t, 0, "")
	conn := dialNode(t, master, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan Phase, 1)
	onPhase := func(p Phase, _ time.Time) {
		select {
		case seen <- p:
		default:
		}
	}
	// No failover runs: the state stays none and only the cancel ends Follow.
	wait := followAsync(t, ctx, Watch{Interval: pollEvery, OnPhase: onPhase}, conn)
	select {
	case p := <-seen:
		require.Equal(t, PhaseNone, p)
	case <-time.After(noHang):
		require.FailNow(t, "no phase observed")
	}
	cancel()
	h, err := wait()
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrConn)
	assert.Equal(t, []Phase{PhaseNone}, h.Phases)
	assert.Positive(t, h.Polls)
}
