package proxy

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/failover"
	"kvproxy/router"
)

// kvsimController is a kvsim cluster's controller as the proxy's topology
// authority: it commits a handover as kvrocks-controller would record it.
type kvsimController struct{ sim *kvsim.Cluster }

func (c kvsimController) Name() string { return "kvsim controller" }

func (c kvsimController) RecordHandover(ctx context.Context, master, replica router.NodeInfo) error {
	if shard, isMaster := c.sim.Topology().ShardOfNode(master.ID); isMaster {
		return c.sim.Controller().CommitHandover(ctx, shard, replica.ID)
	}
	return errors.New(master.ID + " is no master in the kvsim controller's topology")
}

// startFailoverProxy runs a proxy, with the holds that follow failovers,
// in front of a kvsim cluster of 3 shards with a replica each, with the
// cluster's controller as its topology authority or with none.
func startFailoverProxy(t *testing.T, withController bool) (*kvsim.Cluster, string) {
	t.Helper()
	sim := startKvsim(t)
	return sim, startFailoverProxyOn(t, sim, withController)
}

// startFailoverProxyOn is startFailoverProxy in front of sim; it returns
// the proxy's address.
func startFailoverProxyOn(t *testing.T, sim *kvsim.Cluster, withController bool) string {
	t.Helper()
	_, addr := startFailoverServer(t, sim, withController)
	return addr
}

// startFailoverServer is startFailoverProxyOn returning the Server too.
func startFailoverServer(t *testing.T, sim *kvsim.Cluster, withController bool) (*Server, string) {
	t.Helper()
	rcfg := router.DefaultConfig()
	for _, n := range sim.Nodes() {
		rcfg.Seeds = append(rcfg.Seeds, n.Addr())
	}
	holds := startHold(t, &rcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := router.New(ctx, rcfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, rt.Close()) })
	return startProxy(t, rt, func(c *Config) {
		c.Handovers = holds
		if withController {
			c.Authority = kvsimController{sim}
		}
	})
}

// startHold makes the failover hold of a router of rcfg, dialling as the
// router does, and sets it as rcfg.Hold.
func startHold(t *testing.T, rcfg *router.Config) *failover.Buffer {
	t.Helper()
	hcfg := failover.DefaultConfig()
	hcfg.Dial = router.Dialer{Password: rcfg.Password, Timeout: rcfg.DialTimeout, TLS: rcfg.TLS}.Dial
	holds, err := failover.New(hcfg)
	require.NoError(t, err)
	t.Cleanup(holds.Close)
	rcfg.Hold = holds
	return holds
}

// assertRoutedRoles checks that PROXY NODES, INFO proxy and INFO failover
// name master as shard's master, serving slots, and replica as its replica.
func assertRoutedRoles(t *testing.T, c *respConn, shard int, master, replica *kvsim.Node, slots string) {
	t.Helper()
	nodes := c.do("PROXY", "NODES")
	assert.Regexp(t, `(?m)^`+master.ID()+` `+regexp.QuoteMeta(master.Addr())+`@\d+ master - 0 0 \d+ connected `+slots+`$`, nodes)
	assert.Regexp(t, `(?m)^`+replica.ID()+` `+regexp.QuoteMeta(replica.Addr())+`@\d+ slave `+master.ID()+` 0 0 \d+ connected$`, nodes)
	proxyInfo := c.do("INFO", "proxy")
	assert.Contains(t, proxyInfo, "id="+master.ID()+",addr="+master.Addr()+",role=master,master=-,slots="+slots+"\r\n")
	assert.Contains(t, proxyInfo, "id="+replica.ID()+",addr="+replica.Addr()+",role=replica,master="+master.ID()+",slots=\r\n")
	assert.Contains(t, c.do("INFO", "failover"), "shard"+strconv.Itoa(shard)+":master="+master.Addr()+",replicas="+replica.Addr()+",slots="+slots+",")
}

// ackedWriter writes through the proxy until stopped and remembers every
// write the proxy acknowledged.
type ackedWriter struct {
	stop   chan struct{}
	halt   sync.Once
	done   sync.WaitGroup
	acked  []int
	errors []error
}

// stopWriting stops the writer and waits until it returned.
func (w *ackedWriter) stopWriting() {
	w.halt.Do(func() { close(w.stop) })
	w.done.Wait()
}

func startAckedWriter(t *testing.T, addr string) *ackedWriter {
	cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, Protocol: 2})
	t.Cleanup(func() { _ = cl.Close() })
	w := &ackedWriter{stop: make(chan struct{})}
	w.done.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := cl.Set(ctx, "acked:"+strconv.Itoa(i), i, 0).Err()
			cancel()
			if err != nil {
				w.errors = append(w.errors, err)
			} else {
				w.acked = append(w.acked, i)
			}
			time.Sleep(time.Millisecond)
		}
	})
	// Registered after the client's Close, so it runs first.
	t.Cleanup(w.stopWriting)
	return w
}

// check stops the writer and reads back every acknowledged write.
func (w *ackedWriter) check(t *testing.T, addr string) {
	t.Helper()
	w.stopWriting()
	assert.Empty(t, w.errors, "client errors")
	require.NotEmpty(t, w.acked)
	cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer cl.Close()
	lost := 0
	for _, i := range w.acked {
		if v, err := cl.Get(context.Background(), "acked:"+strconv.Itoa(i)).Int(); err != nil || v != i {
			lost++
		}
	}
	assert.Zero(t, lost, "acknowledged writes lost of %d", len(w.acked))
	t.Logf("%d acknowledged writes, all read back", len(w.acked))
}

// PROXY FAILOVER fails a shard over to its replica and, run again, back,
// as often as it is asked, with the controller told each time; the roles
// the proxy shows follow each handover at once, and no acknowledged write
// is lost. CLUSTERX FAILOVER through the proxy takes the same path.
func TestProxyFailoverBackAndForthOnKvsim(t *testing.T) {
	sim, addr := startFailoverProxy(t, true)
	c := dialResp(t, addr)
	master := sim.Masters()[0]
	replica := sim.ReplicasOf(master.ID())[0]
	slots := "0-5460"
	assertRoutedRoles(t, c, 0, master, replica, slots)
	writer := startAckedWriter(t, addr)

	for round := range 4 {
		reply := c.do("PROXY", "FAILOVER", "0")
		require.True(t, strings.HasPrefix(reply, "+shard 0 failed over in "), "round %d: %s", round, reply)
		assert.Contains(t, reply, ": "+replica.Addr()+" is its master now, "+master.Addr()+" its replica; recorded by the topology authority (kvsim controller)")
		master, replica = replica, master
		assertRoutedRoles(t, c, 0, master, replica, slots)
		assert.Equal(t, master.ID(), sim.Masters()[0].ID(), "the controller recorded it")
	}
	assert.Contains(t, c.do("INFO", "failover"), "\r\ncontroller_reported:4\r\ncontroller_report_failures:0\r\ncontroller_unreported:0\r\n")

	// Shard 2 named by its master's id, then back by CLUSTERX FAILOVER.
	m2 := sim.Masters()[2]
	r2 := sim.ReplicasOf(m2.ID())[0]
	assert.True(t, strings.HasPrefix(c.do("PROXY", "FAILOVER", m2.ID()), "+shard 2 failed over"))
	assertRoutedRoles(t, c, 2, r2, m2, "10923-16383")
	// CLUSTERX FAILOVER is the server's: unlike PROXY FAILOVER it does not
	// wait for the old master to replicate from the new one.
	direct := redis.NewClient(&redis.Options{Addr: r2.Addr(), Protocol: 2})
	defer direct.Close()
	_, m2Port, _ := net.SplitHostPort(m2.Addr())
	require.Eventually(t, func() bool {
		return strings.Contains(direct.Info(context.Background(), "replication").Val(), ",port="+m2Port+",")
	}, 10*time.Second, 10*time.Millisecond, "the old master replicates from the new one")
	assert.Equal(t, "+OK\r\n", c.do("CLUSTERX", "FAILOVER", m2.ID()))
	require.Eventually(t, func() bool {
		return strings.Contains(c.do("INFO", "failover"), "\r\ncontroller_reported:6\r\n")
	}, 10*time.Second, 10*time.Millisecond, "the handover CLUSTERX FAILOVER started is recorded: %s", c.do("INFO", "failover"))
	assertRoutedRoles(t, c, 2, m2, r2, "10923-16383")
	assert.Equal(t, m2.ID(), sim.Masters()[2].ID())

	writer.check(t, addr)
}

// Without a controller, the first failover succeeds with a warning; the
// new master still calls itself a replica, so failing back is refused
// with the reason.
func TestProxyFailoverWithoutControllerOnKvsim(t *testing.T) {
	sim, addr := startFailoverProxy(t, false)
	c := dialResp(t, addr)
	master := sim.Masters()[0]
	replica := sim.ReplicasOf(master.ID())[0]
	reply := c.do("PROXY", "FAILOVER", "0")
	assert.True(t, strings.HasPrefix(reply, "+shard 0 failed over in "), reply)
	assert.Contains(t, reply, "WARNING: no controller configured")
	assertRoutedRoles(t, c, 0, replica, master, "0-5460")
	assert.Contains(t, c.do("INFO", "failover"), "\r\ncontroller:none\r\ncontroller_reported:0\r\ncontroller_report_failures:0\r\ncontroller_unreported:1\r\n")
	assert.Equal(t, "-ERR shard 0 (master "+replica.Addr()+"): "+replica.Addr()+" still calls itself a replica (INFO replication role:slave), "+
		"so it cannot fail over: it took the shard over in a failover the cluster's topology authority has not recorded; "+
		"have the controller record it (e.g. its failover API), see the README\r\n", c.do("PROXY", "FAILOVER", "0"))
	assert.Equal(t, master.ID(), sim.Masters()[0].ID(), "the controller never learnt of it")
}
