package cluster

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"
)

// Options says what cluster to build. The zero value is a valid 3-master
// cluster without replicas.
type Options struct {
	// Masters is the number of masters; the 16384 slots are split evenly
	// between them. Zero means 3.
	Masters int
	// ReplicasPerMaster is the number of replicas behind each master.
	ReplicasPerMaster int
	// NodeTimeout is cluster-node-timeout: how long a node must be
	// unreachable before it is flagged as failing. Zero means 2s.
	NodeTimeout time.Duration
	// StartTimeout bounds Start (launching, forming and waiting for a
	// healthy cluster). Zero means 60s.
	StartTimeout time.Duration
	// WaitTimeout bounds every later wait (Failover, Restart, WaitHealthy,
	// migrations) when the caller's context has no earlier deadline.
	// Zero means 30s.
	WaitTimeout time.Duration
	// RedisServer is the redis-server binary, looked up on PATH. Empty
	// means "redis-server".
	RedisServer string
	// Dir is where the per-node directories (node-0, node-1, ...) go; New
	// empties them first. Empty means a fresh temporary directory that
	// Close removes.
	Dir string
	// ExtraConfig is appended to every node's redis.conf, one directive
	// per element (e.g. "maxmemory 64mb").
	ExtraConfig []string
	// Logger receives start-up retries and topology changes; nil discards.
	Logger *slog.Logger
	// TLS, when not nil, has every node serve TLS only, the cluster bus and
	// replication included.
	TLS *TLS
}

// TLS are the files a TLS cluster's nodes use and how this package's own
// clients reach them. Redis asks its clients for a certificate signed by
// CAFile (tls-auth-clients yes), so Client must present one.
type TLS struct {
	// CertFile and KeyFile: each node's certificate, presented to clients
	// and, on the cluster bus and to its master, to the other nodes.
	CertFile, KeyFile string
	// CAFile verifies clients and the other nodes.
	CAFile string
	// Client is the TLS configuration of the package's clients.
	Client *tls.Config
}

func (o Options) withDefaults() Options {
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = 2 * time.Second
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 30 * time.Second
	}
	if o.RedisServer == "" {
		o.RedisServer = "redis-server"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.Masters < 1 || o.Masters > SlotCount:
		return fmt.Errorf("cluster: Masters = %d, want 1..%d", o.Masters, SlotCount)
	case o.ReplicasPerMaster < 0:
		return fmt.Errorf("cluster: ReplicasPerMaster = %d, want >= 0", o.ReplicasPerMaster)
	case o.NodeTimeout < time.Millisecond:
		return fmt.Errorf("cluster: NodeTimeout = %v, want >= 1ms", o.NodeTimeout)
	case o.StartTimeout < 0 || o.WaitTimeout < 0:
		return fmt.Errorf("cluster: negative timeout")
	case o.TLS != nil && (o.TLS.CertFile == "" || o.TLS.KeyFile == "" || o.TLS.CAFile == "" || o.TLS.Client == nil):
		return fmt.Errorf("cluster: TLS needs CertFile, KeyFile, CAFile and Client")
	}
	return nil
}

// clientTLS is the TLS configuration of the package's clients, nil for a
// plain cluster.
func (o Options) clientTLS() *tls.Config {
	if o.TLS == nil {
		return nil
	}
	return o.TLS.Client
}
