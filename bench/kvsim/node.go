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
	// Admin, when set, answers the simulator's own KVSIM admin commands
	// (args[0] is "KVSIM") with a complete RESP reply.
	Admin func(args [][]byte) []byte
	// Logger receives state transitions; nil means discard.
	Logger *slog.Logger
}

// Node is one simulated Kvrocks node.
type Node struct {
	cfg  NodeConfig
	id   string
	ks   *keyspace.Keyspace
	mu   sync.Mutex
	addr string
	srv  *redcon.Server
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
	return &Node{cfg: cfg, id: id, ks: keyspace.New(), addr: cfg.Addr}, nil
}

// StartNode makes and starts a node.
func StartNode(cfg NodeConfig) (*Node, error) {
	n, err := NewNode(cfg)
	if err != nil {
		return nil, err
	}
	return n, n.Start()
}

// Start listens and serves. After Kill it listens again on the same address.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	ln, err := net.Listen("tcp", n.addr)
	if err != nil {
		return fmt.Errorf("kvsim: listen %s: %w", n.addr, err)
	}
	n.addr = ln.Addr().String()
	n.srv = redcon.NewServer(n.addr, n.serve, nil, nil)
	go n.srv.Serve(ln)
	return nil
}

// Kill stops the node abruptly: the listener and every connection close.
// The keyspace and the topology are kept, as a process restarted on its data
// directory would find them.
func (n *Node) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.srv.Close()
		n.srv = nil
	}
}

// Addr is the node's host:port.
func (n *Node) Addr() string { n.mu.Lock(); defer n.mu.Unlock(); return n.addr }

// ID is the node's 40-character id.
func (n *Node) ID() string { return n.id }

// Keyspace exposes the node's data, for tests.
func (n *Node) Keyspace() *keyspace.Keyspace { return n.ks }

func (n *Node) serve(conn redcon.Conn, cmd redcon.Command) {
	c := keyspace.Lookup(cmd.Args[0])
	if c == nil {
		conn.WriteError("ERR unknown command")
		return
	}
	conn.WriteRaw(n.ks.Exec(nil, c, cmd.Args))
}

func randomID() string {
	var b [20]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
