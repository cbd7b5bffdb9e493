package failover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/bench/cluster"
	"kvproxy/internal/resp"
)

// ROLE replies as Redis 7.0 sends them.
const (
	roleOfMaster  = "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
	roleOfReplica = "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:7000\r\n$9\r\nconnected\r\n:1234\r\n"
	// roleOfSyncingMaster is a master with one replica.
	roleOfSyncingMaster = "*3\r\n$6\r\nmaster\r\n:1234\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n7000\r\n$4\r\n1234\r\n"
)

// Node ids of the fake pair.
var (
	fakeReplicaID   = strings.Repeat("r", 40)
	fakeOldMasterID = strings.Repeat("m", 40)
)

// CLUSTER NODES of the fake replica, as Redis 7.0 prints them.
var (
	nodesReplicating = fakeReplicaID + " 127.0.0.1:7001@17001 myself,slave " + fakeOldMasterID + " 0 0 1 connected\n" +
		fakeOldMasterID + " 127.0.0.1:7000@17000 master - 0 1700000000000 1 connected 0-16383\n"
	nodesPromoted = fakeReplicaID + " 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 0-16383\n" +
		fakeOldMasterID + " 127.0.0.1:7000@17000 master - 0 1700000000000 1 connected\n"
)

const errNoCluster = "ERR This instance has cluster support disabled"

// fakeRoleNode is a redcon server that answers each ROLE with the next
// scripted reply, repeating the last one once the script runs out. An empty
// reply leaves the request unanswered. It answers CLUSTER MYID with id and
// CLUSTER NODES with nodes, or with errNoCluster when they are empty.
type fakeRoleNode struct {
	id, nodes string

	mu      sync.Mutex
	replies []string
	served  int
}

func (n *fakeRoleNode) roles() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.served
}

func (n *fakeRoleNode) handle(conn redcon.Conn, cmd redcon.Command) {
	command := strings.ToUpper(string(bytes.Join(cmd.Args, []byte(" "))))
	switch {
	case command == "ROLE":
		n.mu.Lock()
		reply := n.replies[min(n.served, len(n.replies)-1)]
		n.served++
		n.mu.Unlock()
		conn.WriteRaw([]byte(reply))
	case command == "CLUSTER MYID" && n.id != "":
		conn.WriteBulkString(n.id)
	case command == "CLUSTER NODES" && n.nodes != "":
		conn.WriteBulkString(n.nodes)
	case strings.HasPrefix(command, "CLUSTER "):
		conn.WriteError(errNoCluster)
	default:
		conn.WriteError("ERR unknown command '" + string(cmd.Args[0]) + "'")
	}
}

// startFakeReplica serves a replica of the fake old master that answers
// ROLE with replies.
func startFakeReplica(t *testing.T, replies ...string) (net.Conn, *fakeRoleNode) {
	t.Helper()
	return startFakeNode(t, &fakeRoleNode{id: fakeReplicaID, nodes: nodesReplicating, replies: replies})
}

// startFakeOldMaster serves the fake old master answering ROLE with replies.
func startFakeOldMaster(t *testing.T, replies ...string) (net.Conn, *fakeRoleNode) {
	t.Helper()
	return startFakeNode(t, &fakeRoleNode{id: fakeOldMasterID, replies: replies})
}

// startFakeNode serves n on a free loopback port and returns a connection
// to it; both are closed in t.Cleanup.
func startFakeNode(t *testing.T, n *fakeRoleNode) (net.Conn, *fakeRoleNode) {
	t.Helper()
	require.NotEmpty(t, n.replies)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := redcon.NewServer(ln.Addr().String(), n.handle, nil, nil)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close() // fails only if Serve has not started: closing ln suffices
		_ = ln.Close()
		<-served
	})
	return dialAddr(t, ln.Addr().String()), n
}

// dialAddr opens a connection closed in t.Cleanup.
func dialAddr(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, noHang)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// bounded returns a context that ends after noHang, so a Follow that
// should have ended fails the test instead of hanging it.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), noHang)
	t.Cleanup(cancel)
	return ctx
}

func TestRedisPhase(t *testing.T) {
	cases := []struct {
		name               string
		replica, oldMaster nodeRole
		last               Phase
		overdue            bool
		want               Phase
		err                error
	}{
		{"replica not promoted yet", roleSlave, roleMaster, "", false, PhaseStarted, nil},
		{"still not promoted", roleSlave, roleMaster, PhaseStarted, false, PhaseStarted, nil},
		{"promotion overdue", roleSlave, roleMaster, PhaseStarted, true, PhaseFailed, nil},
		{"overdue at the first poll", roleSlave, roleMaster, "", true, PhaseFailed, nil},
		{"promoted, old master not yet a replica", roleMaster, roleMaster, PhaseStarted, false, PhaseSwitching, nil},
		{"switching is never overdue", roleMaster, roleMaster, PhaseSwitching, true, PhaseSwitching, nil},
		{"roles swapped", roleMaster, roleSlave, PhaseSwitching, false, PhaseSuccess, nil},
		{"roles swapped between two polls", roleMaster, roleSlave, PhaseStarted, false, PhaseSuccess, nil},
		{"roles swapped before the first poll", roleMaster, roleSlave, "", true, PhaseSuccess, nil},
		{"promoted before the first poll", roleMaster, roleMaster, "", false, PhaseSwitching, nil},
		{"demoted again", roleSlave, roleMaster, PhaseSwitching, false, "", ErrDemoted},
	}
	for _, c := range cases {
		got, err := redisPhase(c.replica, c.oldMaster, c.last, c.overdue)
		assert.Equal(t, c.want, got, c.name)
		if c.err != nil {
			assert.ErrorIs(t, err, c.err, c.name)
		} else {
			assert.NoError(t, err, c.name)
		}
	}
}

func TestFollowRedisMapsRolesOntoPhases(t *testing.T) {
	replica, replicaNode := startFakeReplica(t, roleOfReplica, roleOfReplica, roleOfMaster, roleOfSyncingMaster, roleOfSyncingMaster)
	oldMaster, oldMasterNode := startFakeOldMaster(t, roleOfSyncingMaster, roleOfSyncingMaster, roleOfMaster, roleOfMaster, roleOfReplica)
	var calls []observed
	before := time.Now()
	h, err := FollowRedis(bounded(t), replica, oldMaster, time.Millisecond, func(p Phase, at time.Time) {
		calls = append(calls, observed{p, at})
	})
	require.NoError(t, err)

	want := []Phase{PhaseStarted, PhaseSwitching, PhaseSuccess}
	assert.Equal(t, want, h.Phases)
	require.Len(t, calls, len(want), "one call per change")
	for i, c := range calls {
		assert.Equal(t, want[i], c.phase)
		if i > 0 {
			assert.False(t, c.at.Before(calls[i-1].at), "call %d goes back in time", i)
		}
	}
	assert.Equal(t, PhaseSuccess, h.Final)
	assert.Equal(t, 5, h.Polls)
	assert.Equal(t, 5, replicaNode.roles())
	assert.Equal(t, 5, oldMasterNode.roles())
	assert.False(t, h.FirstPoll.Before(before))
	assert.Equal(t, calls[2].at, h.LastPoll)
	assert.True(t, h.HoldStart.IsZero(), "Redis does not show its pause")
	assert.True(t, h.HoldEnd.IsZero())
	assert.Zero(t, h.ObservedPause())
}

func TestFollowRedisAcceptsRESP3(t *testing.T) {
	// After HELLO 3 the role may come as a verbatim string; the rest is
	// the same.
	replica, _ := startFakeReplica(t, "*3\r\n=10\r\ntxt:master\r\n:0\r\n*0\r\n")
	oldMaster, _ := startFakeOldMaster(t, roleOfReplica)
	h, err := FollowRedis(bounded(t), replica, oldMaster, time.Millisecond, nil)
	require.NoError(t, err)
	assert.Equal(t, []Phase{PhaseSuccess}, h.Phases, "swapped before the first poll")
}

func TestFollowRedisFailsOnceThePromotionIsOverdue(t *testing.T) {
	replica, _ := startFakeReplica(t, roleOfReplica)
	oldMaster, _ := startFakeOldMaster(t, roleOfSyncingMaster)
	w := RedisWatch{Watch: Watch{Interval: time.Millisecond}, PromotionTimeout: 20 * time.Millisecond}
	h, err := w.Follow(bounded(t), replica, oldMaster)
	require.NoError(t, err, "a failed failover is a result, not an error")
	assert.Equal(t, []Phase{PhaseStarted, PhaseFailed}, h.Phases)
	assert.Equal(t, PhaseFailed, h.Final)
	assert.GreaterOrEqual(t, h.LastPoll.Sub(h.FirstPoll), w.PromotionTimeout)
}

func TestFollowRedisJoinsLateInTheSwitch(t *testing.T) {
	// Redis promotes within milliseconds: a follow may start after that.
	replica, _ := startFakeNode(t, &fakeRoleNode{id: fakeReplicaID, nodes: nodesPromoted, replies: []string{roleOfMaster}})
	oldMaster, _ := startFakeOldMaster(t, roleOfMaster, roleOfReplica)
	h, err := FollowRedis(bounded(t), replica, oldMaster, time.Millisecond, nil)
	require.NoError(t, err)
	assert.Equal(t, []Phase{PhaseSwitching, PhaseSuccess}, h.Phases)
}

func TestFollowRedisRejectsANodeThatIsNoReplica(t *testing.T) {
	otherID := strings.Repeat("o", 40)
	cases := map[string]string{
		"replica of another master": strings.ReplaceAll(nodesReplicating, fakeOldMasterID, otherID),
		"master that holds its own slots": fakeReplicaID + " 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 0-8191\n" +
			fakeOldMasterID + " 127.0.0.1:7000@17000 master - 0 0 1 connected 8192-16383\n",
	}
	for name, nodes := range cases {
		t.Run(name, func(t *testing.T) {
			replica, replicaNode := startFakeNode(t, &fakeRoleNode{id: fakeReplicaID, nodes: nodes, replies: []string{roleOfMaster}})
			oldMaster, oldMasterNode := startFakeOldMaster(t, roleOfMaster)
			h, err := FollowRedis(bounded(t), replica, oldMaster, time.Millisecond, func(Phase, time.Time) {
				assert.Fail(t, "no phase: no failover is under way")
			})
			require.ErrorIs(t, err, ErrNotReplica)
			assert.ErrorContains(t, err, "CLUSTER NODES on the replica")
			assert.Empty(t, h.Phases)
			assert.Zero(t, replicaNode.roles()+oldMasterNode.roles(), "no ROLE sent")
		})
	}
}

func TestFollowRedisNeedsClusterMode(t *testing.T) {
	replica, _ := startFakeReplica(t, roleOfReplica)
	oldMaster, _ := startFakeNode(t, &fakeRoleNode{replies: []string{roleOfMaster}})
	_, err := FollowRedis(bounded(t), replica, oldMaster, time.Millisecond, nil)
	var replyErr *resp.ReplyError
	require.ErrorAs(t, err, &replyErr)
	assert.Equal(t, errNoCluster, replyErr.Msg)
	assert.ErrorContains(t, err, "CLUSTER MYID on the old master")
}

func TestPairedIn(t *testing.T) {
	swapped := fakeReplicaID + " 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 0-16383\n" +
		fakeOldMasterID + " 127.0.0.1:7000@17000 slave " + fakeReplicaID + " 0 0 2 connected\n"
	other := strings.Repeat("o", 40) + " 127.0.0.1:7002@17002 master - 0 0 3 connected\n"
	cases := []struct {
		name, nodes string
		err         error
	}{
		{"replicating", nodesReplicating, nil},
		{"replicating, CRLF", strings.ReplaceAll(nodesReplicating, "\n", "\r\n"), nil},
		{"promoted", nodesPromoted, nil},
		{"swapped", swapped, nil},
		{"blank lines", "\n" + nodesReplicating + "\n", nil},
		{"replica of another master", strings.ReplaceAll(nodesReplicating, "slave "+fakeOldMasterID, "slave "+strings.Repeat("o", 40)), ErrNotReplica},
		{"old master unknown to a master", strings.SplitAfter(nodesPromoted, "\n")[0] + other, ErrNotReplica},
		{"old master still has slots", strings.ReplaceAll(nodesPromoted, "1 connected\n", "1 connected 0-10\n"), ErrNotReplica},
		{"old master a replica of another node", strings.ReplaceAll(swapped, "slave "+fakeReplicaID, "slave "+strings.Repeat("o", 40)), ErrNotReplica},
		{"no myself", strings.ReplaceAll(nodesReplicating, "myself,", ""), resp.ErrProtocol},
		{"short line", nodesReplicating + "abc master -\n", resp.ErrProtocol},
		{"empty", "", resp.ErrProtocol},
	}
	for _, c := range cases {
		err := pairedIn([]byte(c.nodes), fakeOldMasterID)
		if c.err == nil {
			assert.NoError(t, err, c.name)
		} else {
			assert.ErrorIs(t, err, c.err, c.name)
		}
	}
}

func TestFollowRedisDetectsADemotion(t *testing.T) {
	replica, _ := startFakeReplica(t, roleOfReplica, roleOfMaster, roleOfReplica)
	oldMaster, _ := startFakeOldMaster(t, roleOfMaster)
	h, err := RedisWatch{Watch: Watch{Interval: time.Millisecond}}.Follow(bounded(t), replica, oldMaster)
	require.ErrorIs(t, err, ErrDemoted)
	assert.Equal(t, []Phase{PhaseStarted, PhaseSwitching}, h.Phases)
	assert.Empty(t, h.Final)
}

func TestFollowRedisStopsOnABadReply(t *testing.T) {
	cases := []struct{ name, reply string }{
		{"not an array", "$6\r\nmaster\r\n"},
		{"status", "+OK\r\n"},
		{"empty array", "*0\r\n"},
		{"null array", "*-1\r\n"},
		{"length not a number", "*x\r\n"},
		{"header without CR", "*1\n"},
		{"role not a string", "*1\r\n:1\r\n"},
		{"sentinel", "*2\r\n$8\r\nsentinel\r\n*0\r\n"},
		{"unknown role", "*1\r\n$7\r\nprimary\r\n"},
		{"unknown type", "*3\r\n$6\r\nmaster\r\nx\r\n*0\r\n"},
		{"integer not a number", "*3\r\n$6\r\nmaster\r\n:1x\r\n*0\r\n"},
		{"status inside", "*3\r\n$6\r\nmaster\r\n:0\r\n+OK\r\n"},
		{"error inside", "*2\r\n$5\r\nslave\r\n-ERR no\r\n"},
		{"null string inside", "*2\r\n$5\r\nslave\r\n$-1\r\n"},
		{"nested too deep", "*2\r\n$6\r\nmaster\r\n*1\r\n*1\r\n*0\r\n"},
		{"string too long", "*2\r\n$5\r\nslave\r\n" + bulk(strings.Repeat("a", 65))},
		{"reply too long", "*3\r\n$6\r\nmaster\r\n:0\r\n*1\r\n*3\r\n" + strings.Repeat(bulk(strings.Repeat("a", 20)), 3)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			replica, _ := startFakeReplica(t, c.reply)
			oldMaster, _ := startFakeOldMaster(t, roleOfMaster)
			w := RedisWatch{Watch: Watch{Interval: time.Millisecond, MaxReply: 64, OnPhase: func(Phase, time.Time) {
				assert.Fail(t, "no phase from a bad reply")
			}}}
			h, err := w.Follow(bounded(t), replica, oldMaster)
			assert.ErrorIs(t, err, resp.ErrProtocol)
			assert.NotErrorIs(t, err, ErrConn)
			assert.ErrorContains(t, err, "ROLE on the replica "+replica.RemoteAddr().String())
			assert.Zero(t, h.Polls)
			assert.False(t, h.FirstPoll.IsZero(), "the poll was sent")
		})
	}
}

func TestFollowRedisAcceptsAReplyOfExactlyMaxReply(t *testing.T) {
	replica, _ := startFakeReplica(t, roleOfSyncingMaster)
	oldMaster, _ := startFakeOldMaster(t, roleOfReplica)
	w := RedisWatch{Watch: Watch{Interval: time.Millisecond, MaxReply: len(roleOfSyncingMaster)}}
	h, err := w.Follow(bounded(t), replica, oldMaster)
	require.NoError(t, err)
	assert.Equal(t, PhaseSuccess, h.Final)

	replica, _ = startFakeReplica(t, roleOfSyncingMaster)
	oldMaster, _ = startFakeOldMaster(t, roleOfReplica)
	w.Watch.MaxReply--
	_, err = w.Follow(bounded(t), replica, oldMaster)
	require.ErrorIs(t, err, resp.ErrProtocol, "one byte over")
}

func TestFollowRedisReturnsErrorRepliesAsReplyError(t *testing.T) {
	replica, _ := startFakeReplica(t, roleOfReplica)
	oldMaster, _ := startFakeOldMaster(t, "-NOAUTH Authentication required.\r\n")
	_, err := FollowRedis(bounded(t), replica, oldMaster, time.Millisecond, nil)
	var replyErr *resp.ReplyError
	require.ErrorAs(t, err, &replyErr)
	assert.Equal(t, "NOAUTH Authentication required.", replyErr.Msg)
	assert.ErrorContains(t, err, "ROLE on the old master")
	assert.NotErrorIs(t, err, ErrConn)
}

func TestFollowRedisTimesOutAPoll(t *testing.T) {
	replica, _ := startFakeReplica(t, roleOfReplica)
	// Half a reply, then silence.
	oldMaster, _ := startFakeOldMaster(t, "*3\r\n$6\r\nmaster\r\n")
	w := RedisWatch{Watch: Watch{Interval: time.Millisecond, PollTimeout: 20 * time.Millisecond}}
	h, err := w.Follow(bounded(t), replica, oldMaster)
	require.ErrorIs(t, err, ErrConn)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Zero(t, h.Polls)
}

func TestFollowRedisReportsAClosedConnection(t *testing.T) {
	replica, _ := startFakeReplica(t, roleOfReplica)
	oldMaster, _ := startFakeOldMaster(t, roleOfMaster)
	require.NoError(t, replica.Close())
	_, err := FollowRedis(bounded(t), replica, oldMaster, time.Millisecond, nil)
	require.ErrorIs(t, err, ErrConn)
	assert.ErrorContains(t, err, "CLUSTER NODES on the replica")
}

func TestFollowRedisCancelInterruptsABlockedPoll(t *testing.T) {
	replica, _ := startFakeReplica(t, roleOfReplica, "")
	oldMaster, _ := startFakeOldMaster(t, roleOfMaster)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan struct{})
	// A poll timeout far beyond noHang: only the cancel can end the wait.
	w := RedisWatch{Watch: Watch{Interval: time.Millisecond, PollTimeout: time.Hour, OnPhase: func(Phase, time.Time) { close(seen) }}}
	type result struct {
		h   Handover
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := w.Follow(ctx, replica, oldMaster)
		done <- result{h, err}
	}()
	t.Cleanup(func() {
		cancel() // unblocks Follow if the test failed before waiting
		<-done
	})
	select {
	case <-seen:
	case <-time.After(noHang):
		require.FailNow(t, "no phase observed")
	}
	cancel()
	select {
	case r := <-done:
		done <- r // for the cleanup
		require.ErrorIs(t, r.err, context.Canceled)
		assert.NotErrorIs(t, r.err, ErrConn)
		assert.Equal(t, []Phase{PhaseStarted}, r.h.Phases)
		assert.Empty(t, r.h.Final, "the outcome is unknown")
	case <-time.After(noHang):
		require.FailNow(t, "Follow did not return", "within %v", noHang)
	}
}

// writeCounter counts the writes made on a connection.
type writeCounter struct {
	net.Conn
	writes atomic.Int32
}

func (w *writeCounter) Write(b []byte) (int, error) {
	w.writes.Add(1)
	return w.Conn.Write(b)
}

func TestFollowRedisWithAnEndedContextSendsNothing(t *testing.T) {
	replicaConn, _ := startFakeReplica(t, roleOfMaster)
	oldMasterConn, _ := startFakeOldMaster(t, roleOfReplica)
	replica := &writeCounter{Conn: replicaConn}
	oldMaster := &writeCounter{Conn: oldMasterConn}
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("proxy shutting down")
	cancel(stop)
	h, err := FollowRedis(ctx, replica, oldMaster, time.Millisecond, nil)
	require.ErrorIs(t, err, stop, "the error carries the cause")
	assert.Zero(t, h.Polls)
	assert.Zero(t, replica.writes.Load())
	assert.Zero(t, oldMaster.writes.Load())
}

func TestFollowRedisLeavesNoDeadlineAfterTheFinalPhase(t *testing.T) {
	replicaConn, _ := startFakeReplica(t, roleOfReplica, roleOfMaster)
	oldMasterConn, _ := startFakeOldMaster(t, roleOfMaster, roleOfReplica)
	replica := &deadlineRecorder{Conn: replicaConn}
	oldMaster := &deadlineRecorder{Conn: oldMasterConn}
	h, err := FollowRedis(bounded(t), replica, oldMaster, time.Millisecond, nil)
	require.NoError(t, err)
	require.Equal(t, PhaseSuccess, h.Final)
	for name, rec := range map[string]*deadlineRecorder{"replica": replica, "old master": oldMaster} {
		rec.mu.Lock()
		assert.Equal(t, 4, rec.set, "%s: one deadline per round trip, then none", name)
		assert.True(t, rec.last.IsZero(), "%s is left without a deadline", name)
		rec.mu.Unlock()
	}
}

func TestFollowRedisRejectsBadArguments(t *testing.T) {
	conn, _ := startFakeReplica(t, roleOfMaster)
	ctx := bounded(t)
	follow := func(w RedisWatch, replica, oldMaster net.Conn) func() (Handover, error) {
		return func() (Handover, error) { return w.Follow(ctx, replica, oldMaster) }
	}
	ok := Watch{Interval: time.Millisecond}
	cases := map[string]func() (Handover, error){
		"nil replica":                follow(RedisWatch{Watch: ok}, nil, conn),
		"nil old master":             follow(RedisWatch{Watch: ok}, conn, nil),
		"zero interval":              follow(RedisWatch{}, conn, conn),
		"negative poll timeout":      follow(RedisWatch{Watch: Watch{Interval: 1, PollTimeout: -1}}, conn, conn),
		"negative reply size":        follow(RedisWatch{Watch: Watch{Interval: 1, MaxReply: -1}}, conn, conn),
		"negative promotion timeout": follow(RedisWatch{Watch: ok, PromotionTimeout: -1}, conn, conn),
	}
	for name, follow := range cases {
		h, err := follow()
		assert.Error(t, err, name)
		assert.True(t, h.FirstPoll.IsZero(), "%s: nothing sent", name)
	}
}

// TestFollowRedisClusterManualFailover follows CLUSTER FAILOVER on a real
// Redis Cluster, after checking on the same cluster how Follow ends when no
// failover happens.
func TestFollowRedisClusterManualFailover(t *testing.T) {
	skipIfShort(t)
	c := cluster.Start(t, cluster.Options{Masters: 3, ReplicasPerMaster: 1})
	replicas := c.Replicas()
	require.NotEmpty(t, replicas)
	replica := replicas[0]
	oldMaster := c.NodeByID(replica.MasterID())
	require.NotNil(t, oldMaster)
	var otherMaster *cluster.Node
	for _, m := range c.Masters() {
		if m != oldMaster {
			otherMaster = m
			break
		}
	}
	require.NotNil(t, otherMaster)
	w := RedisWatch{Watch: Watch{Interval: pollEvery}}

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(bounded(t))
		defer cancel()
		w := w
		w.Watch.OnPhase = func(Phase, time.Time) { cancel() }
		h, err := w.Follow(ctx, dialAddr(t, replica.Addr), dialAddr(t, oldMaster.Addr))
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, []Phase{PhaseStarted}, h.Phases)
		assert.Empty(t, h.Final)
	})
	t.Run("no failover sent", func(t *testing.T) {
		w := w
		w.PromotionTimeout = 50 * time.Millisecond
		h, err := w.Follow(bounded(t), dialAddr(t, replica.Addr), dialAddr(t, oldMaster.Addr))
		require.NoError(t, err)
		assert.Equal(t, []Phase{PhaseStarted, PhaseFailed}, h.Phases)
	})
	t.Run("a master is no replica", func(t *testing.T) {
		h, err := w.Follow(bounded(t), dialAddr(t, otherMaster.Addr), dialAddr(t, oldMaster.Addr))
		require.ErrorIs(t, err, ErrNotReplica)
		assert.Empty(t, h.Phases)
	})
	t.Run("another master's replica", func(t *testing.T) {
		replicasOfOther := c.ReplicasOf(otherMaster.ID)
		require.NotEmpty(t, replicasOfOther)
		h, err := w.Follow(bounded(t), dialAddr(t, replicasOfOther[0].Addr), dialAddr(t, oldMaster.Addr))
		require.ErrorIs(t, err, ErrNotReplica)
		assert.Empty(t, h.Phases)
	})
	t.Run("followed from before CLUSTER FAILOVER", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), noHang)
		defer cancel()
		// Follow from before the command, so started is seen for sure.
		started := make(chan struct{})
		w := w
		w.Watch.OnPhase = func(p Phase, _ time.Time) {
			if p == PhaseStarted {
				close(started)
			}
		}
		type result struct {
			h   Handover
			err error
		}
		done := make(chan result, 1)
		replicaConn, oldMasterConn := dialAddr(t, replica.Addr), dialAddr(t, oldMaster.Addr)
		go func() {
			h, err := w.Follow(ctx, replicaConn, oldMasterConn)
			done <- result{h, err}
		}()
		t.Cleanup(func() {
			cancel() // unblocks Follow if the test failed before waiting
			<-done
		})
		select {
		case <-started:
		case r := <-done:
			done <- r // for the cleanup
			require.FailNow(t, "Follow ended before the failover", "%v %v", r.h.Phases, r.err)
		}
		require.NoError(t, replica.Client().ClusterFailover(ctx).Err())
		r := <-done
		done <- r // for the cleanup
		require.NoError(t, r.err)
		assert.Equal(t, PhaseSuccess, r.h.Final)
		require.NotEmpty(t, r.h.Phases)
		assert.Equal(t, PhaseStarted, r.h.Phases[0])
		// switching lasts tens of milliseconds: a slow poll may miss it.
		assertSpecOrder(t, r.h.Phases)
		assert.Subset(t, []Phase{PhaseStarted, PhaseSwitching, PhaseSuccess}, r.h.Phases)
		assert.Zero(t, r.h.ObservedPause())
		assertRoles(ctx, t, replica, "master")
		assertRoles(ctx, t, oldMaster, "slave")
	})
	// The proxy's way: CLUSTER FAILOVER first, then Follow, which may
	// start after the promotion. This fails back to the first master.
	t.Run("followed after CLUSTER FAILOVER", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), noHang)
		defer cancel()
		require.NoError(t, c.WaitHealthy(ctx), "the old master has resynced")
		replica, oldMaster := oldMaster, replica
		replicaConn, oldMasterConn := dialAddr(t, replica.Addr), dialAddr(t, oldMaster.Addr)
		sent := time.Now()
		require.NoError(t, replica.Client().ClusterFailover(ctx).Err())
		var timeline []string
		w := w
		w.Watch.OnPhase = func(p Phase, at time.Time) {
			timeline = append(timeline, fmt.Sprintf("%s after %v", p, at.Sub(sent)))
		}
		h, err := w.Follow(ctx, replicaConn, oldMasterConn)
		t.Logf("CLUSTER FAILOVER, then %s; %d polls", strings.Join(timeline, ", "), h.Polls)
		require.NoError(t, err)
		assert.Equal(t, PhaseSuccess, h.Final)
		assertSpecOrder(t, h.Phases)
		assert.Subset(t, []Phase{PhaseStarted, PhaseSwitching, PhaseSuccess}, h.Phases)
		assertRoles(ctx, t, replica, "master")
		assertRoles(ctx, t, oldMaster, "slave")
	})
}

// assertRoles checks the role n reports itself.
func assertRoles(ctx context.Context, t *testing.T, n *cluster.Node, want string) {
	t.Helper()
	role, err := n.Client().Do(ctx, "ROLE").Slice()
	if assert.NoError(t, err, n.String()) && assert.NotEmpty(t, role, n.String()) {
		assert.Equal(t, want, role[0], n.String())
	}
}
