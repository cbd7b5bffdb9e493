package proxy

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

type recordingHandovers struct {
	mu      sync.Mutex
	masters []string
}

func (h *recordingHandovers) Follow(master string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.masters = append(h.masters, master)
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
}
