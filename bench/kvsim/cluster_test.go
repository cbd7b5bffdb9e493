package kvsim

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Slots of the keys the tests use, as CLUSTER KEYSLOT gives them.
const (
	slotOfBar = 5061  // "bar": shard 0 of 2
	slotOfFoo = 12182 // "foo": shard 1 of 2
)

// lockedBuffer collects a cluster's log lines, written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testClusterConfig is a 2 x 1 cluster whose logs the test prints if it fails.
func testClusterConfig(t *testing.T) ClusterConfig {
	t.Helper()
	cfg, _ := loggedClusterConfig(t)
	return cfg
}

// loggedClusterConfig is testClusterConfig and the buffer of its logs.
func loggedClusterConfig(t *testing.T) (ClusterConfig, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster log:\n%s", logs)
		}
	})
	cfg := DefaultClusterConfig()
	cfg.Shards, cfg.Replicas = 2, 1
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return cfg, logs
}

func startTestCluster(t *testing.T, cfg ClusterConfig) *Cluster {
	t.Helper()
	c, err := StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// dial returns a go-redis client of node n that never retries.
func dial(t *testing.T, n *Node, password string) *redis.Client {
	t.Helper()
	cl := redis.NewClient(&redis.Options{
		Addr: n.Addr(), Password: password, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
	})
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func infoField(t *testing.T, ctx context.Context, cl *redis.Client, section, key string) string {
	t.Helper()
	text, err := cl.Info(ctx, section).Result()
	require.NoError(t, err)
	return ParseInfoFields(text)[key]
}

// polledInfoField is infoField for Eventually conditions, which must not
// stop the test: "" when INFO fails.
func polledInfoField(ctx context.Context, cl *redis.Client, section, key string) string {
	text, err := cl.Info(ctx, section).Result()
	if err != nil {
		return ""
	}
	return ParseInfoFields(text)[key]
}

func port(t *testing.T, n *Node) string {
	t.Helper()
	_, p, err := net.SplitHostPort(n.Addr())
	require.NoError(t, err)
	return p
}

func TestStartClusterBuildsTheTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	goroutines := runtime.NumGoroutine()
	c, err := StartCluster(testClusterConfig(t))
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			c.Close()
		}
	})
	ctx := testContext(t)

	nodes := c.Nodes()
	require.Len(t, nodes, 4)
	idPattern := regexp.MustCompile(`^[0-9a-f]{40}$`)
	seen := map[string]bool{}
	for _, n := range nodes {
		assert.Regexp(t, idPattern, n.ID())
		assert.False(t, seen[n.ID()], "ids are unique")
		seen[n.ID()] = true
		assert.Same(t, n, c.NodeByID(n.ID()))
		assert.Same(t, n, c.NodeByAddr(n.Addr()))
	}
	m0, r0, m1, r1 := nodes[0], nodes[1], nodes[2], nodes[3]
	assert.Equal(t, Topology{Version: 1, Shards: []ShardTopology{
		{Master: nodeRef(m0), Replicas: []NodeRef{nodeRef(r0)}, Slots: []SlotRange{{0, 8191}}},
		{Master: nodeRef(m1), Replicas: []NodeRef{nodeRef(r1)}, Slots: []SlotRange{{8192, 16383}}},
	}}, c.Topology())
	assert.Equal(t, []*Node{m0, m1}, c.Masters())
	assert.Equal(t, []*Node{r0}, c.ReplicasOf(m0.ID()))
	assert.Nil(t, c.ReplicasOf(r0.ID()), "a replica has no replicas")
	assert.Same(t, m0, c.MasterOfSlot(slotOfBar))
	assert.Same(t, m1, c.MasterOfSlot(slotOfFoo))
	assert.Nil(t, c.NodeByID(strings.Repeat("0", 40)))

	for _, n := range nodes {
		cl := dial(t, n, "")
		v, err := cl.Do(ctx, "CLUSTERX", "VERSION").Text()
		require.NoError(t, err, n.Addr())
		assert.Equal(t, "1", v, "every node got version 1")
	}
	clusterNodes, err := dial(t, m0, "").ClusterNodes(ctx).Result()
	require.NoError(t, err)
	assert.Contains(t, clusterNodes, r0.ID()+" "+r0.Addr()+"@")
	assert.Regexp(t, regexp.MustCompile(r0.ID()+` \S+ slave `+m0.ID()+` `), clusterNodes)
	assert.Equal(t, "up", infoField(t, ctx, dial(t, r1, ""), "replication", "master_link_status"),
		"StartCluster waits for every replication link")

	require.NoError(t, c.Controller().PushTopology(ctx), "pushing the same version again is accepted")

	table := c.Table()
	assert.True(t, strings.HasPrefix(table, "topology version 1\n"), table)
	assert.Regexp(t, regexp.MustCompile(m1.ID()+` +`+regexp.QuoteMeta(m1.Addr())+` +master +- +8192-16383 +up\n`), table)
	assert.Regexp(t, regexp.MustCompile(r1.ID()+` +`+regexp.QuoteMeta(r1.Addr())+` +slave +`+m1.ID()+` +- +up\n`), table)

	c.Close()
	closed = true
	for _, n := range nodes {
		conn, err := net.DialTimeout("tcp", n.Addr(), time.Second)
		if err == nil {
			conn.Close()
		}
		assert.Error(t, err, "node %s stopped", n.Addr())
	}
	// Polled by hand: Eventually's own goroutine would be counted.
	for i := 0; i < 500 && runtime.NumGoroutine() > goroutines; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if left := runtime.NumGoroutine(); left > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before:\n%s", left, goroutines, buf[:runtime.Stack(buf, true)])
	}
}

func TestStartClusterOnConsecutivePorts(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.Shards, cfg.Replicas = 1, 2
	var err error
	cfg.BasePort, err = FreeConsecutivePorts(3)
	require.NoError(t, err)
	c := startTestCluster(t, cfg)
	for i, n := range c.Nodes() {
		assert.Equal(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.BasePort+i)), n.Addr())
	}
	assert.Equal(t, []SlotRange{{0, 16383}}, c.Topology().Shards[0].Slots)
}

func TestStartClusterFailsOnAPortInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	var err error
	cfg.BasePort, err = FreeConsecutivePorts(4)
	require.NoError(t, err)
	taken, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.BasePort+2)))
	require.NoError(t, err)
	t.Cleanup(func() { taken.Close() })

	c, err := StartCluster(cfg)
	if err == nil {
		c.Close()
	}
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	// The nodes started before the failure were stopped: their ports are free.
	for i := range 2 {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.BasePort+i)))
		require.NoError(t, err, "port %d released", cfg.BasePort+i)
		ln.Close()
	}
}

func TestClusterConfigValidate(t *testing.T) {
	valid := DefaultClusterConfig()
	require.NoError(t, valid.Validate())
	for name, change := range map[string]func(*ClusterConfig){
		"no shards":          func(c *ClusterConfig) { c.Shards = 0 },
		"negative replicas":  func(c *ClusterConfig) { c.Replicas = -1 },
		"port range too big": func(c *ClusterConfig) { c.BasePort = 65534 },
		"negative port":      func(c *ClusterConfig) { c.BasePort = -1 },
		"negative delay":     func(c *ClusterConfig) { c.ReplDelay = -time.Second },
		"password with a space": func(c *ClusterConfig) {
			c.Password = "a b"
		},
		"no ready timeout":  func(c *ClusterConfig) { c.ReadyTimeout = 0 },
		"no probe interval": func(c *ClusterConfig) { c.Controller.ProbeInterval = 0 },
		"no failure count":  func(c *ClusterConfig) { c.Controller.FailureCount = 0 },
		"no fanout":         func(c *ClusterConfig) { c.Controller.Fanout = 0 },
		"pause shorter than sync": func(c *ClusterConfig) {
			c.Controller.Failover.PauseTimeout = c.Controller.Failover.SyncTimeout
		},
	} {
		cfg := valid
		change(&cfg)
		assert.Error(t, cfg.Validate(), name)
		_, err := StartCluster(cfg)
		assert.Error(t, err, name)
	}
}

func TestDefaultsAreUpstreams(t *testing.T) {
	cfg := DefaultControllerConfig()
	assert.Equal(t, 3*time.Second, cfg.ProbeInterval)
	assert.Equal(t, 5, cfg.FailureCount)
	assert.Equal(t, 500*time.Millisecond, cfg.Failover.PauseTimeout)
	assert.Equal(t, 100*time.Millisecond, cfg.Failover.SyncTimeout)
	assert.True(t, cfg.AutoFailover)
}

func isMoved(err error, slot int, addr string) bool {
	return err != nil && err.Error() == "MOVED "+strconv.Itoa(slot)+" "+addr
}
