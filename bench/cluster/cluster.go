// Package cluster launches a real Redis Cluster made of local redis-server
// processes (Debian's 7.0 build works) for tests and benchmarks: N masters
// with R replicas each on free loopback ports, formed the way
// `redis-cli --cluster create` forms one, and returned only once every node
// agrees on the slot map and every replica is in sync. It then drives the
// events kvproxy must hide from clients: manual failovers, killed and
// restarted nodes, and slot migrations taken one step at a time so a test
// can observe ASK and then MOVED.
//
// Tests use Start, which skips when redis-server is missing (fails under
// CI=true) and cleans up with t.Cleanup; benchmarks and commands use New and
// Close.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrNoRedisServer is returned by New when the redis-server binary cannot
// be found.
var ErrNoRedisServer = errors.New("cluster: redis-server not found")

// startAttempts bounds how often one node is relaunched on a fresh port
// pair after losing a bind race at start-up.
const startAttempts = 5

// stopGrace is how long Close waits after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// Cluster is a running Redis Cluster. Its methods are safe for concurrent
// use, but topology-changing calls (Kill, Restart, Failover, migrations)
// are meant to be made one at a time.
type Cluster struct {
	opts    Options
	binary  string
	baseDir string
	ownsDir bool // baseDir was created by New and is removed by Close
	log     *slog.Logger
	nodes   []*Node

	mu     sync.Mutex
	slots  []slotOwner // cached by refresh, sorted by range start
	closed bool

	closeOnce sync.Once
	closeErr  error
}

type slotOwner struct {
	SlotRange
	master *Node
}

// Start launches a cluster for a test or benchmark and closes it in
// t.Cleanup. Without redis-server it skips, or fails when CI=true; any other
// start-up error fails the test. When the test has failed, the tail of every
// node's log is logged before the cluster is closed.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := New(context.Background(), opts)
	return adopt(t, c, err)
}

// adopt hands the result of New to the test as Start describes.
func adopt(t testing.TB, c *Cluster, err error) *Cluster {
	t.Helper()
	if errors.Is(err, ErrNoRedisServer) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: redis-server is required)", err)
		}
		t.Skipf("%v: install redis-server (e.g. apt-get install redis-server) to run this test", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("log tail of %s (%s):\n%s", n, n.Dir, n.logTail(30))
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("closing cluster: %v", err)
		}
	})
	return c
}

// New launches and forms a cluster as opts describes and waits until it is
// healthy (see WaitHealthy). The caller must Close it. On error nothing is
// left running.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.withDefaults().StartTimeout)
	defer cancel()
	c, err := launch(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := c.form(ctx); err != nil {
		c.Close()
		return nil, err
	}
	c.log.Info("redis cluster ready", "masters", c.opts.Masters, "replicas_per_master", c.opts.ReplicasPerMaster, "dir", c.baseDir)
	return c, nil
}

// launch starts the servers of a cluster as opts describes, each answering
// but not yet a cluster (see form). On error nothing is left running.
func launch(ctx context.Context, opts Options) (_ *Cluster, err error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	binary, err := exec.LookPath(opts.RedisServer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoRedisServer, err)
	}

	c := &Cluster{opts: opts, binary: binary, baseDir: opts.Dir, log: opts.Logger}
	if c.baseDir == "" {
		if c.baseDir, err = os.MkdirTemp("", "redis-cluster-"); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.ownsDir = true
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	total := opts.Masters * (1 + opts.ReplicasPerMaster)
	c.nodes = make([]*Node, total)
	ports, err := reservePortPairs(total)
	if err != nil {
		return nil, err
	}
	errs := make([]error, total)
	var wg sync.WaitGroup
	for i := range total {
		wg.Go(func() { c.nodes[i], errs[i] = c.startFresh(ctx, i, ports[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// startFresh launches node number index with an empty directory, moving to
// another port pair when the first one was taken in the meantime.
func (c *Cluster) startFresh(ctx context.Context, index, port int) (*Node, error) {
	dir := filepath.Join(c.baseDir, "node-"+strconv.Itoa(index))
	for attempt := 1; ; attempt++ {
		// A failed bind may have left a nodes.conf naming the old port.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		n := &Node{Addr: nodeAddr(port), Port: port, Dir: dir, cluster: c, client: newNodeClient(nodeAddr(port), c.opts.clientTLS())}
		if err := n.writeConfig(c.opts); err != nil {
			n.client.Close()
			return nil, fmt.Errorf("cluster: %w", err)
		}
		proc, err := n.launch(ctx, c.binary)
		if err == nil {
			c.mu.Lock()
			n.proc = proc
			c.mu.Unlock()
			return n, nil
		}
		n.client.Close()
		if !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			return nil, err
		}
		c.log.Info("redis port taken, retrying on another", "port", port, "attempt", attempt)
		ports, perr := reservePortPairs(1)
		if perr != nil {
			return nil, perr
		}
		port = ports[0]
	}
}

// form assigns slots, introduces the nodes, attaches the replicas and waits
// for a healthy cluster.
func (c *Cluster) form(ctx context.Context) error {
	if err := c.introduce(ctx); err != nil {
		return err
	}
	if err := c.poll(ctx, "every node to know every other", c.allKnown); err != nil {
		return err
	}
	if err := c.attachReplicas(ctx); err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// introduce assigns the masters their slots and has the first node meet
// every other one, without waiting for the handshakes.
func (c *Cluster) introduce(ctx context.Context) error {
	for _, n := range c.nodes {
		id, err := n.client.ClusterMyID(ctx).Result()
		if err != nil {
			return fmt.Errorf("cluster: CLUSTER MYID on %s: %w", n.Addr, err)
		}
		n.ID = id
	}
	masters := c.nodes[:c.opts.Masters]
	for i, r := range splitSlots(len(masters)) {
		if err := masters[i].client.ClusterAddSlotsRange(ctx, r.Start, r.End).Err(); err != nil {
			return fmt.Errorf("cluster: CLUSTER ADDSLOTSRANGE %d %d on %s: %w", r.Start, r.End, masters[i].Addr, err)
		}
	}
	// Distinct epochs up front spare the cluster the epoch-collision
	// resolution that would otherwise delay agreement (redis-cli does this).
	for i, n := range c.nodes {
		if err := n.client.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return fmt.Errorf("cluster: CLUSTER SET-CONFIG-EPOCH on %s: %w", n.Addr, err)
		}
	}
	for _, n := range c.nodes[1:] {
		if err := c.nodes[0].client.ClusterMeet(ctx, loopback, strconv.Itoa(n.Port)).Err(); err != nil {
			return fmt.Errorf("cluster: CLUSTER MEET %s: %w", n.Addr, err)
		}
	}
	return nil
}

// attachReplicas makes each replica replicate its master; every node must
// know every other one (allKnown).
func (c *Cluster) attachReplicas(ctx context.Context) error {
	masters := c.nodes[:c.opts.Masters]
	for i, replica := range c.nodes[len(masters):] {
		master := masters[i/c.opts.ReplicasPerMaster]
		if err := replica.client.ClusterReplicate(ctx, master.ID).Err(); err != nil {
			return fmt.Errorf("cluster: CLUSTER REPLICATE on %s: %w", replica.Addr, err)
		}
	}
	return nil
}

// allKnown checks that every node lists every other one, handshake done.
func (c *Cluster) allKnown(ctx context.Context) error {
	for _, n := range c.nodes {
		text, err := n.client.ClusterNodes(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER NODES on %s: %w", n.Addr, err)
		}
		entries := parseClusterNodes(text)
		for _, other := range c.nodes {
			i := slices.IndexFunc(entries, func(e nodeEntry) bool { return e.ID == other.ID })
			if i < 0 || entries[i].has("handshake") {
				return fmt.Errorf("%s does not know %s yet", n.Addr, other.Addr)
			}
		}
	}
	return nil
}

// poll calls check until it returns nil, ctx ends or WaitTimeout passes.
// The error names what was awaited and why the last check failed.
func (c *Cluster) poll(ctx context.Context, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.WaitTimeout)
	defer cancel()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for %s: %w (last check: %v)", what, ctx.Err(), err)
		case <-ticker.C:
		}
	}
}

// Close stops every node (SIGTERM, then SIGKILL after a grace period),
// closes the clients and removes the directory New created. It is
// idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		var procs []*process
		for _, n := range c.nodes {
			if n != nil && n.proc != nil {
				procs = append(procs, n.proc)
				n.proc = nil
			}
		}
		c.mu.Unlock()
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Go(func() { p.stop(syscall.SIGTERM, stopGrace) })
		}
		wg.Wait()
		var errs []error
		for _, n := range c.nodes {
			if n != nil {
				errs = append(errs, n.client.Close())
			}
		}
		if c.ownsDir {
			errs = append(errs, os.RemoveAll(c.baseDir))
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// Nodes returns every node in start-up order: the masters first, then the
// replicas of the first master, of the second, and so on.
func (c *Cluster) Nodes() []*Node { return slices.Clone(c.nodes) }

// Addrs returns the address of every node, in the order of Nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Masters returns the nodes that were masters at the last topology refresh.
func (c *Cluster) Masters() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.filter(func(n *Node) bool { return n.isMaster })
}

// Replicas returns the nodes that were replicas at the last topology
// refresh.
func (c *Cluster) Replicas() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.filter(func(n *Node) bool { return !n.isMaster })
}

// ReplicasOf returns the replicas of the master with id masterID as of the
// last topology refresh.
func (c *Cluster) ReplicasOf(masterID string) []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.filter(func(n *Node) bool { return !n.isMaster && n.masterID == masterID })
}

func (c *Cluster) filter(keep func(*Node) bool) []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if keep(n) {
			out = append(out, n)
		}
	}
	return out
}

// NodeByAddr returns the node listening on addr, or nil.
func (c *Cluster) NodeByAddr(addr string) *Node {
	for _, n := range c.nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// NodeByID returns the node with cluster id id, or nil.
func (c *Cluster) NodeByID(id string) *Node {
	for _, n := range c.nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// MasterForSlot returns the master that owned slot at the last topology
// refresh, or nil if none did.
func (c *Cluster) MasterForSlot(slot int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, found := slices.BinarySearchFunc(c.slots, slot, func(o slotOwner, slot int) int {
		switch {
		case o.End < slot:
			return -1
		case o.Start > slot:
			return 1
		}
		return 0
	})
	if !found {
		return nil
	}
	return c.slots[i].master
}

// MasterForKey returns the master that owned key's slot at the last
// topology refresh, or nil.
func (c *Cluster) MasterForKey(key string) *Node { return c.MasterForSlot(Slot(key)) }

// SlotRanges returns the slot ranges each master owned at the last topology
// refresh, keyed by master id.
func (c *Cluster) SlotRanges() map[string][]SlotRange {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]SlotRange)
	for _, o := range c.slots {
		out[o.master.ID] = append(out[o.master.ID], o.SlotRange)
	}
	return out
}

func (c *Cluster) running() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.filter(func(n *Node) bool { return n.proc != nil })
}
