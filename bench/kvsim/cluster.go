package kvsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// ClusterConfig configures a simulated Kvrocks cluster.
type ClusterConfig struct {
	// Shards is the number of masters; slots are split among them as
	// `redis-cli --cluster create` splits them.
	Shards int
	// Replicas is the number of replicas per master.
	Replicas int
	// BasePort 0 puts every node on its own free port; P puts them on
	// consecutive ports from P: shard 0's master, its replicas, shard 1's master...
	BasePort int
	// ReplDelay is how long every node, as a replica, waits before applying
	// each change from its master.
	ReplDelay time.Duration
	// Password is every node's requirepass; empty means none.
	Password string
	// Released makes every node answer as released Kvrocks does, without
	// CLUSTERX FAILOVER (see NodeConfig.Released).
	Released bool
	// ReadyTimeout bounds StartCluster's wait for every replication link.
	ReadyTimeout time.Duration
	// Controller holds the controller's timings.
	Controller ControllerConfig
	// ControllerAPI serves the controller's HTTP API, kvrocks-controller's,
	// when its Listen is set.
	ControllerAPI ControllerAPIConfig
	// Logger receives state transitions; nil means discard.
	Logger *slog.Logger
}

// DefaultClusterConfig returns 3 shards of one master and one replica each on
// free ports, with upstream controller timings.
func DefaultClusterConfig() ClusterConfig {
	return ClusterConfig{
		Shards:       3,
		Replicas:     1,
		ReadyTimeout: 10 * time.Second,
		Controller:   DefaultControllerConfig(),
	}
}

// Validate reports settings that cannot work.
func (c ClusterConfig) Validate() error {
	nodes := c.Shards * (1 + c.Replicas)
	switch {
	case c.Shards < 1 || c.Shards > SlotCount:
		return fmt.Errorf("kvsim: shards must be between 1 and %d, not %d", SlotCount, c.Shards)
	case c.Replicas < 0:
		return fmt.Errorf("kvsim: replicas must not be negative, not %d", c.Replicas)
	case c.BasePort < 0 || c.BasePort > 0 && c.BasePort+nodes-1 > 65535:
		return fmt.Errorf("kvsim: base port %d cannot hold %d nodes", c.BasePort, nodes)
	case c.ReplDelay < 0:
		return fmt.Errorf("kvsim: replication delay must not be negative, not %v", c.ReplDelay)
	case c.ReadyTimeout <= 0:
		return fmt.Errorf("kvsim: ready timeout must be positive, not %v", c.ReadyTimeout)
	case strings.ContainsAny(c.Password, " \r\n"):
		return errors.New("kvsim: password must not contain spaces or line breaks")
	}
	if err := c.Controller.Validate(); err != nil {
		return fmt.Errorf("kvsim: %w", err)
	}
	if err := c.ControllerAPI.Validate(); err != nil {
		return fmt.Errorf("kvsim: %w", err)
	}
	return nil
}

// Cluster is a running simulated Kvrocks cluster with its controller.
type Cluster struct {
	log   *slog.Logger
	nodes []*Node // in creation order: shard 0 master, its replicas, shard 1 master...
	byID  map[string]*Node
	ctrl  *Controller
	api   *apiServer // nil without ClusterConfig.ControllerAPI.Listen

	closing   chan struct{}
	closeOnce sync.Once
	tasks     sync.WaitGroup // admin actions that outlive their command
}

// StartCluster starts cfg.Shards x (1 + cfg.Replicas) nodes on loopback,
// pushes topology version 1 to every node with CLUSTERX SETNODEID and
// SETNODES, waits until every replica's replication link is up and starts the
// controller's probe loop.
func StartCluster(cfg ClusterConfig) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		log:     log.With("component", "kvsim"),
		byID:    map[string]*Node{},
		closing: make(chan struct{}),
	}
	// Every node exists, and so does the controller, before any starts
	// listening: KVSIM commands may arrive as soon as the first one does.
	total := cfg.Shards * (1 + cfg.Replicas)
	for i := range total {
		addr := "127.0.0.1:0"
		if cfg.BasePort > 0 {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.BasePort+i))
		}
		id := randomNodeID()
		n, err := NewNode(NodeConfig{
			Addr:      addr,
			ID:        id,
			Password:  cfg.Password,
			ReplDelay: cfg.ReplDelay,
			Released:  cfg.Released,
			Admin:     c.adminHandler(id),
			Logger:    log.With("component", "kvsim-node", "node", id[:8]),
		})
		if err != nil {
			return nil, err // NewNode's errors name the package and the node
		}
		c.nodes = append(c.nodes, n)
		c.byID[id] = n
	}
	ctrl, err := newController(cfg.Controller, cfg.Password, log.With("component", "kvsim-controller"), c.nodes)
	if err != nil {
		return nil, fmt.Errorf("kvsim: %w", err)
	}
	c.ctrl = ctrl

	for i, n := range c.nodes {
		if err := n.Start(); err != nil {
			c.stopNodes(c.nodes[:i])
			c.ctrl.close()
			return nil, err // "kvsim: listen <addr>: ..."
		}
	}

	topo := Topology{Version: 1}
	for s, slots := range SplitSlots(cfg.Shards) {
		group := c.nodes[s*(1+cfg.Replicas) : (s+1)*(1+cfg.Replicas)]
		shard := ShardTopology{Master: nodeRef(group[0]), Slots: []SlotRange{slots}}
		for _, r := range group[1:] {
			shard.Replicas = append(shard.Replicas, nodeRef(r))
		}
		topo.Shards = append(topo.Shards, shard)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ReadyTimeout)
	defer cancel()
	if err := c.ctrl.commit(ctx, topo); err != nil {
		c.Close()
		return nil, fmt.Errorf("kvsim: %w", err)
	}
	if err := c.waitReplicationLinks(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("kvsim: %w", err)
	}
	if cfg.ControllerAPI.Listen != "" {
		if c.api, err = startAPIServer(c.ctrl, cfg.ControllerAPI); err != nil {
			c.Close()
			return nil, fmt.Errorf("kvsim: %w", err)
		}
		namespace, cluster := cfg.ControllerAPI.names()
		c.log.Info("controller API listening", "url", c.ControllerAPIURL(), "namespace", namespace, "cluster", cluster)
	}
	c.ctrl.startProbing()
	c.log.Info("cluster started", "shards", cfg.Shards, "replicas", cfg.Replicas, "nodes", total)
	return c, nil
}

func nodeRef(n *Node) NodeRef { return NodeRef{ID: n.ID(), Addr: n.Addr()} }

// waitReplicationLinks polls INFO replication on every replica until it
// reports master_link_status:up.
func (c *Cluster) waitReplicationLinks(ctx context.Context) error {
	const poll = 20 * time.Millisecond
	for _, s := range c.ctrl.Topology().Shards {
		for _, r := range s.Replicas {
			for {
				fields, err := c.ctrl.info(ctx, r, "replication")
				if err == nil && fields["master_link_status"] == "up" {
					break
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("replica %s: replication link not up (last error: %v): %w", r.Addr, err, ctx.Err())
				case <-time.After(poll):
				}
			}
		}
	}
	return nil
}

// ControllerAPIURL is the base URL of the controller's HTTP API
// ("http://127.0.0.1:port"), "" when it was not started.
func (c *Cluster) ControllerAPIURL() string {
	if c.api == nil {
		return ""
	}
	return "http://" + c.api.addr
}

// Controller returns the cluster's controller.
func (c *Cluster) Controller() *Controller { return c.ctrl }

// Topology returns the topology as the controller knows it.
func (c *Cluster) Topology() Topology { return c.ctrl.Topology() }

// Nodes returns every node in creation order: shard 0's first master, its
// replicas, shard 1's first master...
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// Masters returns the current master of every shard, in shard order.
func (c *Cluster) Masters() []*Node {
	var out []*Node
	for _, s := range c.Topology().Shards {
		out = append(out, c.byID[s.Master.ID])
	}
	return out
}

// ReplicasOf returns the current replicas of master id; nil if id is not a master.
func (c *Cluster) ReplicasOf(id string) []*Node {
	for _, s := range c.Topology().Shards {
		if s.Master.ID != id {
			continue
		}
		out := make([]*Node, 0, len(s.Replicas))
		for _, r := range s.Replicas {
			out = append(out, c.byID[r.ID])
		}
		return out
	}
	return nil
}

// NodeByID returns node id, or nil.
func (c *Cluster) NodeByID(id string) *Node { return c.byID[id] }

// NodeByAddr returns the node listening on host:port addr, or nil.
func (c *Cluster) NodeByAddr(addr string) *Node {
	for _, n := range c.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// MasterOfSlot returns the master that serves slot in the controller's topology, or nil.
func (c *Cluster) MasterOfSlot(slot int) *Node {
	t := c.Topology()
	if s := t.ShardOfSlot(slot); s >= 0 {
		return c.byID[t.Shards[s].Master.ID]
	}
	return nil
}

// Table renders the node table: id, address, role, master id, slots and
// whether the node runs, in topology order, under a line with the version.
func (c *Cluster) Table() string {
	t := c.Topology()
	var b strings.Builder
	fmt.Fprintf(&b, "topology version %d\n", t.Version)
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tADDRESS\tROLE\tMASTER\tSLOTS\tSTATE")
	state := func(id string) string {
		if c.ctrl.IsDown(id) {
			return "down"
		}
		return "up"
	}
	for _, s := range t.Shards {
		slots := make([]string, len(s.Slots))
		for i, r := range s.Slots {
			slots[i] = r.String()
		}
		fmt.Fprintf(w, "%s\t%s\tmaster\t-\t%s\t%s\n", s.Master.ID, s.Master.Addr, strings.Join(slots, " "), state(s.Master.ID))
		for _, r := range s.Replicas {
			fmt.Fprintf(w, "%s\t%s\tslave\t%s\t-\t%s\n", r.ID, r.Addr, s.Master.ID, state(r.ID))
		}
	}
	w.Flush()
	return b.String()
}

// Close stops the controller, then kills every node. No goroutine of the
// cluster outlives it.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		close(c.closing)
		if c.api != nil {
			c.api.close(c.ctrl.cfg.CommandTimeout)
		}
		c.tasks.Wait()
		c.ctrl.close()
		c.stopNodes(c.nodes)
		c.log.Info("cluster closed")
	})
}

func (c *Cluster) stopNodes(nodes []*Node) {
	for _, n := range nodes {
		n.Kill()
	}
}

func randomNodeID() string {
	var b [20]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
