package kvsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/ants/v2"
	"github.com/redis/go-redis/v9"
)

// Errors the controller returns; test them with errors.Is.
var (
	ErrNoShard          = errors.New("no such shard")
	ErrUnknownNode      = errors.New("unknown node")
	ErrNoReplica        = errors.New("no replica can be promoted")
	ErrNodeRunning      = errors.New("node is running")
	ErrNodeDown         = errors.New("node is down")
	ErrSyncTimeout      = errors.New("replica did not catch up")
	ErrPauseFailed      = errors.New("CLIENT PAUSE failed")
	ErrServerFailover   = errors.New("server failover failed")
	ErrFailoverRejected = errors.New("server failover rejected")
)

// FailoverOptions tunes one controller-driven manual failover, as
// kvrocks-controller's FailoverOptions do.
type FailoverOptions struct {
	// PauseTimeout is the CLIENT PAUSE WRITE duration on the old master; it
	// must exceed SyncTimeout so writes stay paused while the replica catches up.
	PauseTimeout time.Duration
	// SyncTimeout bounds the wait for the replica's slave_repl_offset to reach
	// the old master's master_repl_offset.
	SyncTimeout time.Duration
	// PollInterval is the pause between two INFO replication polls.
	PollInterval time.Duration
	// Force promotes the replica even when it did not catch up (writes not yet
	// replicated are lost) instead of unpausing and giving up.
	Force bool
	// Replica is the id of the replica to promote; empty picks the reachable
	// replica with the highest sequence.
	Replica string
}

// DefaultFailoverOptions returns upstream's defaults: pause 500 ms, sync 100 ms, poll 10 ms.
func DefaultFailoverOptions() FailoverOptions {
	return FailoverOptions{
		PauseTimeout: 500 * time.Millisecond,
		SyncTimeout:  100 * time.Millisecond,
		PollInterval: 10 * time.Millisecond,
	}
}

// Validate reports options that cannot work.
func (o FailoverOptions) Validate() error {
	if o.SyncTimeout <= 0 || o.PollInterval <= 0 {
		return fmt.Errorf("failover SyncTimeout (%v) and PollInterval (%v) must be positive", o.SyncTimeout, o.PollInterval)
	}
	if o.PauseTimeout <= o.SyncTimeout {
		return fmt.Errorf("failover PauseTimeout (%v) must exceed SyncTimeout (%v)", o.PauseTimeout, o.SyncTimeout)
	}
	return nil
}

// ControllerConfig configures the simulated kvrocks-controller.
type ControllerConfig struct {
	// ProbeInterval is how often every node gets a CLUSTER INFO probe.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe; a slower answer counts as a failure.
	ProbeTimeout time.Duration
	// FailureCount is how many consecutive failed probes of a master make
	// the controller promote one of its replicas.
	FailureCount int
	// AutoFailover enables those promotions from the start; SetAutoFailover
	// (KVSIM AUTOFAILOVER) changes it later. Probes and re-syncs of nodes that
	// missed a topology run either way.
	AutoFailover bool
	// CommandTimeout bounds every other command sent to a node.
	CommandTimeout time.Duration
	// Fanout is how many nodes the controller talks to at once.
	Fanout int
	// Failover holds the defaults of manual failovers started with KVSIM FAILOVER.
	Failover FailoverOptions
}

// DefaultControllerConfig returns upstream's timings: a probe every 3 s, a
// failover after 5 failed probes, manual failover pause 500 ms and sync 100 ms.
func DefaultControllerConfig() ControllerConfig {
	return ControllerConfig{
		ProbeInterval:  3 * time.Second,
		ProbeTimeout:   time.Second,
		FailureCount:   5,
		AutoFailover:   true,
		CommandTimeout: 3 * time.Second,
		Fanout:         16,
		Failover:       DefaultFailoverOptions(),
	}
}

// Validate reports settings that cannot work.
func (c ControllerConfig) Validate() error {
	switch {
	case c.ProbeInterval <= 0 || c.ProbeTimeout <= 0 || c.CommandTimeout <= 0:
		return fmt.Errorf("controller ProbeInterval (%v), ProbeTimeout (%v) and CommandTimeout (%v) must be positive",
			c.ProbeInterval, c.ProbeTimeout, c.CommandTimeout)
	case c.FailureCount < 1:
		return fmt.Errorf("controller FailureCount (%d) must be at least 1", c.FailureCount)
	case c.Fanout < 1:
		return fmt.Errorf("controller Fanout (%d) must be at least 1", c.Fanout)
	}
	return c.Failover.Validate()
}

// Controller plays apache/kvrocks-controller for a set of simulated nodes: it
// owns the topology, pushes it with CLUSTERX SETNODEID/SETNODES, runs manual
// (CLIENT PAUSE) and automatic (probe) failovers, and drives the in-server
// CLUSTERX FAILOVER. It talks to nodes only over the wire, except Kill and
// Restart, which stand for a process dying and being started again.
type Controller struct {
	cfg      ControllerConfig
	log      *slog.Logger
	password string
	nodes    map[string]*Node // fixed after construction
	// rank is each node's place in creation order and createdAt the unix
	// second the nodes were registered: the HTTP API lists a shard's nodes
	// in that order, with that created_at, as kvrocks-controller keeps a
	// shard's nodes in place and swaps roles.
	rank      map[string]int
	createdAt int64
	pool      *ants.Pool
	auto      atomic.Bool

	// opMu serializes topology changes: failovers, promotions.
	opMu sync.Mutex

	mu       sync.Mutex
	topo     Topology
	clients  map[string]*redis.Client
	down     map[string]bool
	failures map[string]int
	closed   bool

	stopProbe context.CancelFunc
	probeDone chan struct{}
}

func newController(cfg ControllerConfig, password string, log *slog.Logger, nodes []*Node) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pool, err := ants.NewPool(cfg.Fanout)
	if err != nil {
		return nil, fmt.Errorf("controller pool: %w", err)
	}
	c := &Controller{
		cfg:       cfg,
		log:       log,
		password:  password,
		nodes:     make(map[string]*Node, len(nodes)),
		rank:      make(map[string]int, len(nodes)),
		createdAt: time.Now().Unix(),
		pool:      pool,
		clients:   map[string]*redis.Client{},
		down:      map[string]bool{},
		failures:  map[string]int{},
	}
	for i, n := range nodes {
		c.nodes[n.ID()] = n
		c.rank[n.ID()] = i
	}
	c.auto.Store(cfg.AutoFailover)
	return c, nil
}

// Topology returns a copy of the topology the controller last committed.
func (c *Controller) Topology() Topology {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.topo.Clone()
}

func (c *Controller) setTopology(t Topology) {
	c.mu.Lock()
	c.topo = t.Clone()
	c.mu.Unlock()
}

// SetAutoFailover turns automatic failover on or off.
func (c *Controller) SetAutoFailover(on bool) {
	c.auto.Store(on)
	c.log.Info("automatic failover", "enabled", on)
}

// AutoFailover reports whether automatic failover is on.
func (c *Controller) AutoFailover() bool { return c.auto.Load() }

// IsDown reports whether node id was killed and not restarted.
func (c *Controller) IsDown(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down[id]
}

// Kill stops node id abruptly, as a crashed process; its data and topology stay.
func (c *Controller) Kill(id string) error {
	n := c.nodes[id]
	if n == nil {
		return fmt.Errorf("%w %s", ErrUnknownNode, id)
	}
	c.mu.Lock()
	if c.down[id] {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNodeDown, id)
	}
	c.down[id] = true
	c.mu.Unlock()
	n.Kill()
	c.log.Info("node killed", "id", id, "addr", n.Addr())
	return nil
}

// Restart starts killed node id again on its address, with the data and the
// topology it had. A topology pushed while it was down reaches it at the next
// probe, as with kvrocks-controller.
func (c *Controller) Restart(id string) error {
	n := c.nodes[id]
	if n == nil {
		return fmt.Errorf("%w %s", ErrUnknownNode, id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.down[id] {
		return fmt.Errorf("%w: %s", ErrNodeRunning, id)
	}
	if err := n.Start(); err != nil {
		return fmt.Errorf("restart %s: %w", id, err)
	}
	delete(c.down, id)
	c.log.Info("node restarted", "id", id, "addr", n.Addr())
	return nil
}

// client returns the pooled go-redis client of node id, speaking RESP2 and
// never retrying, as kvrocks-controller's clients do.
func (c *Controller) client(ref NodeRef) (*redis.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("controller closed")
	}
	if cl := c.clients[ref.ID]; cl != nil {
		return cl, nil
	}
	cl := redis.NewClient(&redis.Options{
		Addr:                  ref.Addr,
		Password:              c.password,
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1,
		DialerRetries:         1, // a refused dial is a failed probe, not a reason to wait
		DialTimeout:           c.cfg.CommandTimeout,
		ReadTimeout:           c.cfg.CommandTimeout,
		WriteTimeout:          c.cfg.CommandTimeout,
		ContextTimeoutEnabled: true,
		PoolSize:              4,
	})
	c.clients[ref.ID] = cl
	return cl, nil
}

func (c *Controller) do(ctx context.Context, ref NodeRef, args ...any) (any, error) {
	cl, err := c.client(ref)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
	defer cancel()
	v, err := cl.Do(ctx, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", ref.Addr, strings.ToUpper(fmt.Sprint(args[0])), err)
	}
	return v, nil
}

// info runs INFO [section] on ref and returns its fields.
func (c *Controller) info(ctx context.Context, ref NodeRef, section ...any) (map[string]string, error) {
	v, err := c.do(ctx, ref, append([]any{"INFO"}, section...)...)
	if err != nil {
		return nil, err
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%s INFO: reply is %T, not a bulk string", ref.Addr, v)
	}
	return ParseInfoFields(s), nil
}

// clusterInfo runs CLUSTER INFO on ref and returns its fields.
func (c *Controller) clusterInfo(ctx context.Context, ref NodeRef) (map[string]string, error) {
	v, err := c.do(ctx, ref, "CLUSTER", "INFO")
	if err != nil {
		return nil, err
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%s CLUSTER INFO: reply is %T, not a bulk string", ref.Addr, v)
	}
	return ParseInfoFields(s), nil
}

// ParseInfoFields reads the "key:value" lines of an INFO or CLUSTER INFO
// reply; section headers, blank lines and lines without ':' are skipped.
func ParseInfoFields(text string) map[string]string {
	fields := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

func fieldInt(fields map[string]string, key string) (int64, error) {
	v, ok := fields[key]
	if !ok {
		return 0, fmt.Errorf("no %s field", key)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("field %s: %w", key, err)
	}
	return n, nil
}

// pushTo sends CLUSTERX SETNODEID and SETNODES <version> to one node.
func (c *Controller) pushTo(ctx context.Context, ref NodeRef, t Topology, rendered string) error {
	if _, err := c.do(ctx, ref, "CLUSTERX", "SETNODEID", ref.ID); err != nil {
		return err
	}
	_, err := c.do(ctx, ref, "CLUSTERX", "SETNODES", rendered, strconv.FormatInt(t.Version, 10))
	return err
}

// fanout runs fn for every node on the bounded pool and joins the errors.
// It must not be called from inside a pool task: a full pool would deadlock.
func (c *Controller) fanout(refs []NodeRef, fn func(NodeRef) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, ref := range refs {
		wg.Add(1)
		err := c.pool.Submit(func() {
			defer wg.Done()
			if err := fn(ref); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
		if err != nil {
			wg.Done()
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", ref.Addr, err))
			mu.Unlock()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// PushTopology pushes the current topology to every node in parallel.
func (c *Controller) PushTopology(ctx context.Context) error {
	return c.push(ctx, c.Topology(), c.Topology().allNodes())
}

// push sends t to refs in parallel.
func (c *Controller) push(ctx context.Context, t Topology, refs []NodeRef) error {
	rendered := t.Render()
	err := c.fanout(refs, func(ref NodeRef) error {
		return c.pushTo(ctx, ref, t, rendered)
	})
	if err != nil {
		c.log.Warn("topology push incomplete", "version", t.Version, "err", err)
		return fmt.Errorf("push topology version %d: %w", t.Version, err)
	}
	return nil
}

// commit makes next the controller's topology and pushes it, to the masters
// it promotes first: a real old master that applies a swapped topology while
// its replica has not deletes its former slots, and the deletions replicate
// to that replica, the new master (kvrocks-spec.md section 8). So next is
// committed only once every new master has it; until then nothing changes
// and the caller may retry. The pushes to the other nodes may fail and next
// stays committed: the probe loop re-syncs nodes that report an older
// version, as kvrocks-controller's does.
func (c *Controller) commit(ctx context.Context, next Topology) error {
	promoted := next.promotedSince(c.Topology())
	if err := c.push(ctx, next, promoted); err != nil {
		return fmt.Errorf("new masters first: %w", err)
	}
	c.setTopology(next)
	var rest []NodeRef
	for _, ref := range next.allNodes() {
		if !slices.Contains(promoted, ref) {
			rest = append(rest, ref)
		}
	}
	if err := c.push(ctx, next, rest); err != nil {
		return err
	}
	c.log.Info("topology pushed", "version", next.Version, "new_masters_first", len(promoted))
	return nil
}

// close stops the probe loop, then releases the pool and the clients.
func (c *Controller) close() {
	if c.stopProbe != nil {
		c.stopProbe()
		<-c.probeDone
	}
	_ = c.pool.ReleaseTimeout(c.cfg.CommandTimeout)
	c.mu.Lock()
	c.closed = true
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	for _, cl := range clients {
		_ = cl.Close()
	}
}
