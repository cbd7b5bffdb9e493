package router

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
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
	// ConnsPerNode is the number of pipelined connections per backend node.
	// A slot always uses the same one, so per-key order holds. Kvrocks pins
	// each connection to one worker thread, so a few spread the load.
	ConnsPerNode int
	// DialTimeout bounds connecting (and AUTH) to a backend.
	DialTimeout time.Duration
	// ReadTimeout is how long a connection may have requests outstanding with
	// no reply arriving before it is declared dead. Keep it well above the
	// longest CLIENT PAUSE a failover may impose.
	ReadTimeout time.Duration
	// RefreshInterval is the period of the background topology reload, so a
	// dead master is noticed even when nothing redirects.
	RefreshInterval time.Duration
	// RefreshCooldown is the least time between two reloads triggered by
	// MOVED, CLUSTERDOWN or a lost connection; triggers in between coalesce.
	RefreshCooldown time.Duration
	// MaxRedirects bounds the MOVED/ASK hops one request may follow.
	MaxRedirects int
	// HoldTimeout bounds how long one request waits, in all, while a Gate
	// holds its node; then it gets a TRYAGAIN error saying it was not run.
	HoldTimeout time.Duration
	// HoldMaxBytes caps the bytes of all requests held at once; a request
	// that would pass it gets a TRYAGAIN error saying it was not run.
	HoldMaxBytes int64
	// OutageProbeInterval is how often a node whose connections were lost
	// or refused is dialled, and the topology reloaded, while its requests
	// are held.
	OutageProbeInterval time.Duration
	// MaxRetries bounds the resends of one request rejected without running
	// (CLUSTERDOWN, LOADING, MASTERDOWN, READONLY) or a read whose
	// connection was lost. TRYAGAIN and requests to an unreachable node are
	// bounded by HoldTimeout instead.
	MaxRetries int
	// RetryBackoff is the wait before the first resend of a rejected request;
	// it doubles on each further round up to MaxRetryBackoff.
	RetryBackoff time.Duration
	// MaxRetryBackoff caps the wait between two resends.
	MaxRetryBackoff time.Duration
	// MaxBulkLen is the largest bulk string accepted in a backend reply.
	MaxBulkLen int
	// MaxPending bounds the requests queued or in flight on one backend
	// connection; beyond it requests fail at once with an ERR reply.
	MaxPending int
	// Gate, when not nil, is consulted before requests are sent to a node
	// (see Gate). Nil sends without asking.
	Gate Gate
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
	// MaxHoldMaxBytes bounds HoldMaxBytes (16 GiB).
	MaxHoldMaxBytes = 16 << 30
	// MaxMaxBulkLen bounds MaxBulkLen (4 GiB): a reply is buffered whole.
	MaxMaxBulkLen = 4 << 30
)

// DefaultConfig returns a Config with every field but Seeds set.
func DefaultConfig() Config {
	return Config{
		ConnsPerNode:        4,
		DialTimeout:         time.Second,
		ReadTimeout:         5 * time.Second,
		RefreshInterval:     10 * time.Second,
		RefreshCooldown:     100 * time.Millisecond,
		MaxRedirects:        5,
		HoldTimeout:         2500 * time.Millisecond,
		HoldMaxBytes:        64 << 20,
		OutageProbeInterval: 50 * time.Millisecond,
		MaxRetries:          10,
		RetryBackoff:        5 * time.Millisecond,
		MaxRetryBackoff:     200 * time.Millisecond,
		MaxBulkLen:          DefaultMaxBulkLen,
		MaxPending:          8192,
		Logger:              slog.New(slog.DiscardHandler),
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
		{c.HoldMaxBytes > 0 && c.HoldMaxBytes <= MaxHoldMaxBytes, "HoldMaxBytes must be 1 to " + strconv.FormatInt(MaxHoldMaxBytes, 10)},
		{c.OutageProbeInterval > 0, "OutageProbeInterval must be positive"},
		{c.MaxRetries >= 0, "MaxRetries must not be negative"},
		{c.RetryBackoff > 0, "RetryBackoff must be positive"},
		{c.MaxRetryBackoff >= c.RetryBackoff, "MaxRetryBackoff must be at least RetryBackoff"},
		{c.MaxBulkLen > 0 && int64(c.MaxBulkLen) <= MaxMaxBulkLen, "MaxBulkLen must be 1 to " + strconv.FormatInt(MaxMaxBulkLen, 10)},
		{c.MaxPending > 0, "MaxPending must be positive"},
		{c.Logger != nil, "Logger must not be nil"},
	}
	for _, check := range checks {
		if !check.ok {
			return errors.New("router: Config." + check.rule)
		}
	}
	return nil
}
