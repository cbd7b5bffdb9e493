// Package kvsim simulates a Kvrocks cluster node byte for byte as
// ../shared/kvrocks-spec.md describes it, plus a controller that drives a set
// of such nodes. It is the backend of kvproxy's tests and of its --demo.
package kvsim

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/bench/kvsim/keyspace"
)

// NodeConfig configures one simulated node.
type NodeConfig struct {
	// Addr is the listen address; "127.0.0.1:0" takes a free port.
	Addr string
	// ID is the 40-character node id; empty means a random one.
	ID string
	// Password is requirepass; empty means no AUTH needed.
	Password string
	// ReplDelay is how long a replica waits before applying each change it
	// receives from its master.
	ReplDelay time.Duration
	// Released makes the node answer as released Kvrocks, without the
	// graceful failover of kvrocks#3295: CLUSTERX FAILOVER and TAKEOVER get
	// the unknown-subcommand usage error and CLUSTER INFO has no
	// cluster_failover_state line. CLIENT PAUSE works either way.
	Released bool
	// Admin, when set, answers the simulator's own KVSIM admin commands
	// (args[0] is "KVSIM") with a complete RESP reply.
	Admin func(args [][]byte) []byte
	// Logger receives state transitions; nil means discard.
	Logger *slog.Logger
}

// Node is one simulated Kvrocks node.
type Node struct {
	cfg NodeConfig
	ks  *keyspace.Keyspace
	log *slog.Logger

	// view is the cluster as this node knows it; viewMu serializes changes.
	view   atomic.Pointer[clusterView]
	viewMu sync.Mutex
	gen    uint64 // topology generation counter, guarded by viewMu

	failover failoverMachine
	pubsub   pubsubHub
	// writeGate makes a client write atomic with the transitions that must
	// not cut through one: each write holds it shared from its pause check,
	// through its failover check and view load, to the end of its execution
	// (its sequence assigned); CLIENT PAUSE, a failover entering pause_write
	// and recording its target, and a failover installing success take it
	// exclusively. Reads never touch it.
	writeGate sync.RWMutex
	pause     pauseGate
	watches   watchRegistry
	blocked   blockingRegistry // clients blocked in BLPOP, BRPOP, BLMOVE
	loading   atomic.Bool      // replica mid full sync
	scripts   scriptCache
	functions functionLibs
	// exclusive lets a script run alone: every other command holds it
	// shared while it runs (see serve), a script exclusively.
	exclusive sync.RWMutex
	replLog   replLog
	streams   streamSet // replicas streaming from me
	link      replicaLinkHolder
	// following is the address of the master whose history the keyspace
	// is, "" once the topology made the node a master, nil before it
	// followed anyone: see syncFromMaster.
	following atomic.Pointer[string]

	mu        sync.Mutex // guards addr, run, startedAt
	addr      string
	run       *nodeRun
	startedAt time.Time

	clientsMu    sync.Mutex
	clients      map[*session]struct{}
	closedCmds   int64 // commands of closed sessions, guarded by clientsMu
	nextClientID atomic.Int64
	totalConns   atomic.Int64
	syncFull     atomic.Int64 // full resyncs served as a master
	syncPartial  atomic.Int64 // partial resyncs served as a master

	// beforePauseWrite, if set (tests only), runs when a CLUSTERX FAILOVER
	// has passed check_slave, just before writes are paused.
	beforePauseWrite func()
}

// nodeRun is one life of the node between Start and Kill: everything it
// started stops when stop closes, and wg counts it.
type nodeRun struct {
	ln   net.Listener
	srv  *redcon.Server
	stop chan struct{}
	wg   sync.WaitGroup
}

// NewNode makes a node without starting it.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.Addr == "" {
		return nil, errors.New("kvsim: NodeConfig.Addr is empty")
	}
	id := cfg.ID
	if id == "" {
		id = randomID()
	} else if len(id) != 40 {
		return nil, fmt.Errorf("kvsim: node id %q is not 40 characters", id)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		cfg:     cfg,
		ks:      keyspace.New(),
		log:     cfg.Logger,
		addr:    cfg.Addr,
		clients: map[*session]struct{}{},
	}
	// Like a Kvrocks process that has no SETNODEID yet, MYID answers empty
	// until the controller pushes the id; the configured id is already used
	// to find this node in a topology.
	n.view.Store(newClusterView(id, false))
	n.replLog.init(n.ks.Sequence())
	n.ks.SetJournal(n.journal)
	n.ks.SetWriteHook(n.onClientWrite)
	return n, nil
}

// StartNode makes and starts a node.
func StartNode(cfg NodeConfig) (*Node, error) {
	n, err := NewNode(cfg)
	if err != nil {
		return nil, err
	}
	return n, n.Start()
}

// Start listens and serves. After Kill it listens again on the same address,
// with the keyspace, its sequence and the last applied topology kept, as a
// Kvrocks process restarted on its data directory would; in-memory state
// (failover state, TAKEOVER, pauses, replication links) starts afresh.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.run != nil {
		return errors.New("kvsim: node already running")
	}
	ln, err := net.Listen("tcp", n.addr)
	if err != nil {
		return fmt.Errorf("kvsim: listen %s: %w", n.addr, err)
	}
	n.addr = ln.Addr().String()
	n.startedAt = time.Now()
	run := &nodeRun{ln: ln, stop: make(chan struct{})}
	run.srv = redcon.NewServer(n.addr, n.serve,
		func(conn redcon.Conn) bool {
			run.wg.Add(1) // Serve's own count keeps the group above zero here
			n.addSession(conn)
			return true
		},
		func(conn redcon.Conn, _ error) {
			n.removeSession(conn)
			run.wg.Done()
		})
	n.run = run

	n.viewMu.Lock()
	v := *n.view.Load()
	v.migratedTo, v.takeover = "", false
	n.view.Store(&v)
	n.failover.reset()
	n.pause.reset()
	n.link.stop() // a link a last command of the previous life started
	n.retargetReplication(run, &v)
	n.viewMu.Unlock()

	run.wg.Add(1)
	go func() {
		defer run.wg.Done()
		_ = run.srv.Serve(ln)
	}()
	n.log.Info("kvsim node started", "addr", n.addr, "id", v.myID)
	return nil
}

// Kill stops the node abruptly: the listener, every client connection, the
// replication links in both directions and every background goroutine stop
// before it returns. The keyspace and the topology are kept.
func (n *Node) Kill() {
	n.mu.Lock()
	run := n.run
	n.run = nil
	n.mu.Unlock()
	if run == nil {
		return
	}
	close(run.stop)
	// Closing the listener ourselves also works before Serve has begun,
	// when redcon's Close would report "not serving" and do nothing; Serve
	// then returns and closes every connection it accepted.
	_ = run.ln.Close()
	_ = run.srv.Close()
	n.viewMu.Lock()
	n.link.stop()
	n.viewMu.Unlock()
	n.streams.closeAll()
	run.wg.Wait()
	n.loading.Store(false)
	n.log.Info("kvsim node killed", "addr", n.Addr())
}

// Addr is the node's host:port.
func (n *Node) Addr() string { n.mu.Lock(); defer n.mu.Unlock(); return n.addr }

// ID is the node's 40-character id (the latest CLUSTERX SETNODEID, if any).
func (n *Node) ID() string { return n.view.Load().myID }

// Keyspace exposes the node's data, for tests.
func (n *Node) Keyspace() *keyspace.Keyspace { return n.ks }

// currentRun is the running life of the node, nil after Kill.
func (n *Node) currentRun() *nodeRun {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.run
}

func randomID() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
