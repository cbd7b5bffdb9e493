package proxy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"kvproxy/failover"
)

type recordingHandovers struct {
	mu      sync.Mutex
	masters []string
	redis   []string // followed with FollowRedisFailover
	// outcome, when its Final is set, is how every followed handover ends;
	// otherwise none is seen to end.
	outcome failover.Outcome
	// following makes Report say the first master's handover is followed.
	following bool
}

// ended returns a channel with h.outcome, or one that never receives.
func (h *recordingHandovers) ended() <-chan failover.Outcome {
	done := make(chan failover.Outcome, 1)
	if h.outcome.Handover.Final != "" || h.outcome.Err != nil {
		done <- h.outcome
	}
	return done
}

func (h *recordingHandovers) NextHandover(string) <-chan struct{} { return nil }

// FollowAuthorityFailover runs the authority's failover at once, holding
// nothing.
func (h *recordingHandovers) FollowAuthorityFailover(_, _ string, run func(context.Context) error) <-chan failover.Outcome {
	out := failover.Outcome{Err: run(context.Background())}
	if out.Err == nil {
		out.Handover.Final = failover.PhaseSuccess
	}
	done := make(chan failover.Outcome, 1)
	done <- out
	return done
}

func (h *recordingHandovers) FollowRedisFailover(master, _ string) <-chan failover.Outcome {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.redis = append(h.redis, master)
	return h.ended()
}

func (h *recordingHandovers) FollowClusterxFailover(master, _ string) <-chan failover.Outcome {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.masters = append(h.masters, master)
	return h.ended()
}

func (h *recordingHandovers) Report() failover.Report {
	h.mu.Lock()
	defer h.mu.Unlock()
	return failover.Report{Masters: []failover.MasterReport{{
		Master: "10.0.0.1:7000", Phase: failover.PhaseSuccess, Handovers: 1, LongestPause: 210 * time.Millisecond, Following: h.following,
		Last: failover.Handover{
			FirstPoll: time.UnixMilli(1000), LastPoll: time.UnixMilli(2000), HoldStart: time.UnixMilli(1500), HoldEnd: time.UnixMilli(1710),
			Phases: []failover.Phase{failover.PhaseStarted, failover.PhaseWaitSync, failover.PhaseSuccess}, Final: failover.PhaseSuccess,
		},
	}}}
}

func (h *recordingHandovers) followed() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.masters...)
}

// CLUSTERX FAILOVER goes to the replica's master, its reply comes back
// unchanged, and only an accepted one is followed.
func TestClusterxFailoverGoesToTheReplicasMaster(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	answer := "+OK\r\n"
	node := startScriptedNode(t, func(args []string) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, strings.Join(args, " "))
		return answer, false
	})
	handovers := &recordingHandovers{}
	backend := &dedicatedFake{fakeCluster: newFakeCluster(3), node: node.addr}
	_, addr := startProxy(t, backend, func(c *Config) { c.Handovers = handovers })
	c := dialResp(t, addr)
	replicaID := strings.Repeat("9", 40) // the fake topology's replica of its first master

	assert.Equal(t, "-ERR wrong number of arguments\r\n", c.do("CLUSTERX", "FAILOVER"))
	assert.Equal(t, "-ERR nosuch is not a replica in the topology kvproxy routes by (see PROXY NODES)\r\n",
		c.do("CLUSTERX", "FAILOVER", "nosuch"))
	assert.Equal(t, "-ERR "+strings.Repeat("1", 40)+" is not a replica in the topology kvproxy routes by (see PROXY NODES)\r\n",
		c.do("CLUSTERX", "FAILOVER", strings.Repeat("1", 40)), "a master is no replica")
	assert.Empty(t, handovers.followed())

	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "FAILOVER", replicaID, "3000"))
	assert.Equal(t, []string{"10.0.0.1:7000"}, handovers.followed())
	mu.Lock()
	assert.Equal(t, []string{"CLUSTERX FAILOVER " + replicaID + " 3000"}, seen)
	answer = "-ERR Failover is already in progress\r\n"
	mu.Unlock()
	assert.Equal(t, "-ERR Failover is already in progress\r\n", c.do("clusterx", "failover", replicaID))
	assert.Len(t, handovers.followed(), 1, "a refused failover is not followed")
	assert.Equal(t, "+PONG\r\n", c.do("PING"), "the client is served on after the admin command")

	// A Redis Cluster: the master does not know CLUSTERX, the replica is
	// asked for CLUSTER FAILOVER instead, and that is followed as Redis'.
	mu.Lock()
	seen = nil
	answer = "-ERR unknown command 'CLUSTERX', with args beginning with: 'FAILOVER' \r\n"
	mu.Unlock()
	redisNode := startScriptedNode(t, func(args []string) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, strings.Join(args, " "))
		if strings.EqualFold(args[0], "cluster") {
			return "+OK\r\n", false
		}
		return answer, false
	})
	backend.node = redisNode.addr
	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "FAILOVER", replicaID))
	mu.Lock()
	assert.Equal(t, []string{"CLUSTERX FAILOVER " + replicaID, "CLUSTER FAILOVER"}, seen)
	mu.Unlock()
	assert.Len(t, handovers.followed(), 1, "Redis pauses its own writes: nothing to hold")
	handovers.mu.Lock()
	assert.Equal(t, []string{"10.0.0.1:7000"}, handovers.redis, "followed as a Redis failover")
	handovers.mu.Unlock()

	info := c.do("INFO", "failover")
	assert.Contains(t, info, "# Failover\r\n")
	assert.Contains(t, info, "shard0:master=10.0.0.1:7000,replicas=10.0.0.99:7000,slots=0-5461,phase=success,following=0,holding=0,current_start_ms=0,handovers=1,"+
		"last_from=10.0.0.1:7000,last_start_ms=1000,last_end_ms=2000,last_duration_ms=1000,last_result=success,last_phases=started>wait_sync>success,"+
		"last_pause_ms=210,longest_pause_ms=210,held_now=0,held=0,released=0,expired=0,abandoned=0,longest_hold_ms=0,outages=0,in_outage=0\r\n")
}

// With an admin password, CLUSTERX FAILOVER needs the admin user.
func TestClusterxFailoverNeedsTheAdminPassword(t *testing.T) {
	node := startScriptedNode(t, func([]string) (string, bool) { return "+OK\r\n", false })
	handovers := &recordingHandovers{}
	backend := &dedicatedFake{fakeCluster: newFakeCluster(3), node: node.addr}
	_, addr := startProxy(t, backend, func(c *Config) {
		c.Handovers = handovers
		c.Password = "clients"
		c.AdminPassword = "operators"
	})
	replicaID := strings.Repeat("9", 40)
	c := dialResp(t, addr)
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "clients"))
	assert.Equal(t, "+PONG\r\n", c.do("PING"))
	assert.Equal(t, "-"+errNoAdmin+"\r\n", c.do("CLUSTERX", "FAILOVER", replicaID))
	assert.Equal(t, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", c.do("AUTH", "admin", "clients"))
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "admin", "operators"))
	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "FAILOVER", replicaID))
	assert.Equal(t, "+RESET\r\n", c.do("RESET"))
	assert.Equal(t, "-NOAUTH Authentication required.\r\n", c.do("CLUSTERX", "FAILOVER", replicaID), "RESET drops the admin user too")

	h := dialResp(t, addr)
	assert.True(t, strings.HasPrefix(h.do("HELLO", "2", "AUTH", "admin", "operators"), "*14\r\n"))
	assert.Equal(t, "+OK\r\n", h.do("CLUSTERX", "FAILOVER", replicaID), "HELLO AUTH signs the admin in too")
	assert.Len(t, handovers.followed(), 2)
}
