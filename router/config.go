package router

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"kvproxy/internal/resp"
)

// Config says how a Router reaches and treats the cluster. Start from
// DefaultConfig; every field must hold a valid value (Validate), zero is never
// read as "use the default".
type Config struct {
	// Seeds are host:port addresses of cluster nodes; the topology is loaded
	// from the first one that answers. At least one is required.
	Seeds []string
	// Password is sent with AUTH on every backend connection; empty sends none.
	Password string
	// TLS, when not nil, makes every connection to the cluster (data,
	// probes, dedicated, topology reloads) a TLS client of it. An empty
	// ServerName verifies each node's certificate against the host of the
	// address dialled.
	TLS *tls.Config
	// ConnsPerNode is the number of pipelined connections per backend node.
	// A slot always uses the same one, so per-key order holds. Kvrocks pins
	// each connection to one worker thread, so a few spread the load.
	ConnsPerNode int
	// DialTimeout bounds connecting (and AUTH) to a backend.
	DialTimeout time.Duration
	// ReadTimeout bounds the control plane's calls (topology reloads). Data
	// connections have no read timeout: a slow command delays what follows
	// it, as on the server itself; liveness is judged by probes.
	ReadTimeout time.Duration
	// ProbeInterval is how long a request may wait for its reply before
	// the node is probed (PING on a connection of the probe's own), and
	// how often an unresponsive node is probed.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for its reply (and for its
	// dial). A node that does not answer in time is unresponsive: every
	// request to it is held (an outage) until it answers again or its
	// slots move, each within its HoldTimeout. Keep ProbeInterval plus
	// ProbeTimeout a fraction of HoldTimeout: that is how long finding a
	// stopped node takes.
	ProbeTimeout time.Duration
	// DeadTimeout is how long a node may stay unresponsive before its
	// connections are closed: the requests sent on them are then answered
	// (writes with "may have run"), rather than waiting for the node. A
	// single-threaded Redis answers nothing while it runs a long script
	// (until busy-reply-threshold, 5 s) or builds a huge output (100 GETs
	// of 20 MB took it 5.6 s): keep DeadTimeout above such stalls.
	DeadTimeout time.Duration
	// RefreshInterval is the period of the background topology reload: how
	// long a topology pushed to an idle cluster can take to be routed by,
	// and how soon a dead master is noticed when nothing redirects. With
	// traffic, a MOVED patches the table at once and triggers a reload.
	// A reload costs CLUSTER INFO, SLOTS and NODES on one node.
	RefreshInterval time.Duration
	// RefreshCooldown is the least time between two reloads triggered by
	// MOVED, CLUSTERDOWN or a lost connection; triggers in between coalesce.
	RefreshCooldown time.Duration
	// MaxRedirects bounds the MOVED/ASK hops one request may follow to
	// nodes new to it. A redirect back to a node it came from (nodes that
	// disagree while a topology is pushed to them one by one) is not a
	// hop: the request waits for a reload, within HoldTimeout.
	MaxRedirects int
	// HoldTimeout bounds how long one request waits, in all, while its
	// master is held (see Hold); then it gets a TRYAGAIN error saying it
	// was not run.
	HoldTimeout time.Duration
	// MaxRetries bounds the resends of a read whose connection was lost and
	// of a request redirected to the node that sent it. Requests refused
	// without running (TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, READONLY)
	// and those to an unreachable node are bounded by HoldTimeout instead.
	MaxRetries int
	// RetryBackoff is the wait before the first resend of a rejected request;
	// it doubles on each further round up to MaxRetryBackoff.
	RetryBackoff time.Duration
	// MaxRetryBackoff caps the wait between two resends.
	MaxRetryBackoff time.Duration
	// MaxBulkLen is the largest bulk string kept from a backend reply; a
	// reply with a longer one is skipped as it streams in, and its request
	// answered with an error, the connection staying in step.
	MaxBulkLen int
	// MaxPending and MaxPendingBytes bound the requests (and their bytes)
	// written to one backend connection and not answered yet; further
	// requests wait in the proxy, in order, until replies make room. A
	// request alone on its connection is always sent.
	MaxPending      int
	MaxPendingBytes int
	// Hold is asked before requests are sent to a node (see Hold). Nil:
	// the router holds its unreachable nodes' requests in a failover.Buffer
	// of its own, with failover.DefaultConfig, and follows no failover.
	Hold Hold
	// Logger receives topology changes and connection failures.
	Logger *slog.Logger
}

// Upper bounds Validate enforces, so a mistyped value is refused at start
// rather than exhausting descriptors or memory later.
const (
	// MaxConnsPerNode bounds ConnsPerNode: Kvrocks serves a connection on
	// one of its few worker threads, so more than a few per node only costs
	// descriptors.
	MaxConnsPerNode = 256
	// MaxHoldTimeout bounds HoldTimeout: a client has long given up on a
	// request held longer.
	MaxHoldTimeout = 10 * time.Minute
	// MaxMaxBulkLen bounds MaxBulkLen (4 GiB): a reply is buffered whole.
	MaxMaxBulkLen = 4 << 30
	// MinDeadTimeout and MaxDeadTimeout bound DeadTimeout as the command
	// line sets it: a node must miss several probes before what was sent
	// to it is given up, and a client has long given up after minutes.
	MinDeadTimeout = time.Second
	MaxDeadTimeout = 10 * time.Minute
)

// DefaultConfig returns a Config with every field but Seeds set.
func DefaultConfig() Config {
	return Config{
		ConnsPerNode:    4,
		DialTimeout:     time.Second,
		ReadTimeout:     5 * time.Second,
		RefreshInterval: time.Second,
		RefreshCooldown: 100 * time.Millisecond,
		MaxRedirects:    5,
		HoldTimeout:     2500 * time.Millisecond,
		ProbeInterval:   100 * time.Millisecond,
		ProbeTimeout:    250 * time.Millisecond,
		DeadTimeout:     10 * time.Second,
		MaxRetries:      10,
		RetryBackoff:    5 * time.Millisecond,
		MaxRetryBackoff: 200 * time.Millisecond,
		MaxBulkLen:      resp.DefaultMaxBulkLen,
		MaxPending:      8192,
		MaxPendingBytes: 16 << 20,
		Logger:          slog.New(slog.DiscardHandler),
	}
}

// Validate reports the first field that holds an unusable value.
func (c *Config) Validate() error {
	if len(c.Seeds) == 0 {
		return errors.New("router: at least one seed address is required")
	}
	for _, s := range c.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("router: seed %q is not host:port: %w", s, err)
		}
	}
	checks := []struct {
		ok   bool
		rule string
	}{
		{c.ConnsPerNode > 0 && c.ConnsPerNode <= MaxConnsPerNode, "ConnsPerNode must be 1 to " + strconv.Itoa(MaxConnsPerNode)},
		{c.DialTimeout > 0, "DialTimeout must be positive"},
		{c.ReadTimeout > 0, "ReadTimeout must be positive"},
		{c.RefreshInterval > 0, "RefreshInterval must be positive"},
		{c.RefreshCooldown > 0, "RefreshCooldown must be positive"},
		{c.MaxRedirects > 0, "MaxRedirects must be positive"},
		{c.HoldTimeout > 0 && c.HoldTimeout <= MaxHoldTimeout, "HoldTimeout must be positive and at most " + MaxHoldTimeout.String()},
		{c.ProbeInterval > 0, "ProbeInterval must be positive"},
		{c.ProbeTimeout > 0, "ProbeTimeout must be positive"},
		{c.DeadTimeout >= c.ProbeTimeout, "DeadTimeout must be at least ProbeTimeout"},
		{c.MaxRetries >= 0, "MaxRetries must not be negative"},
		{c.RetryBackoff > 0, "RetryBackoff must be positive"},
		{c.MaxRetryBackoff >= c.RetryBackoff, "MaxRetryBackoff must be at least RetryBackoff"},
		{c.MaxBulkLen > 0 && int64(c.MaxBulkLen) <= MaxMaxBulkLen, "MaxBulkLen must be 1 to " + strconv.FormatInt(MaxMaxBulkLen, 10)},
		{c.MaxPending > 0, "MaxPending must be positive"},
		{c.MaxPendingBytes > 0, "MaxPendingBytes must be positive"},
		{c.Logger != nil, "Logger must not be nil"},
	}
	for _, check := range checks {
		if !check.ok {
			return errors.New("router: Config." + check.rule)
		}
	}
	return nil
}
