package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Node is one redis-server of the cluster. Its fields never change after
// New returns: a restarted node keeps its port, directory and (through
// nodes.conf) its id.
type Node struct {
	// ID is the 40-character cluster node id.
	ID string
	// Addr is "127.0.0.1:port".
	Addr string
	// Port is the client port; the cluster bus listens on Port+10000.
	Port int
	// Dir holds redis.conf, nodes.conf and redis.log.
	Dir string

	cluster *Cluster
	client  *redis.Client

	// Guarded by cluster.mu.
	proc     *process
	isMaster bool
	masterID string
}

// Client returns a go-redis client bound to this node alone (no redirects
// followed). The cluster owns it: do not close it.
func (n *Node) Client() *redis.Client { return n.client }

// Running reports whether the node's process is up (not killed or closed).
func (n *Node) Running() bool {
	n.cluster.mu.Lock()
	defer n.cluster.mu.Unlock()
	return n.proc != nil
}

// IsMaster reports the node's role as of the last topology refresh (see
// Cluster.Refresh).
func (n *Node) IsMaster() bool {
	n.cluster.mu.Lock()
	defer n.cluster.mu.Unlock()
	return n.isMaster
}

// MasterID returns the id of the node's master, or "" for a master, as of
// the last topology refresh.
func (n *Node) MasterID() string {
	n.cluster.mu.Lock()
	defer n.cluster.mu.Unlock()
	return n.masterID
}

// String returns the address and a short id, for test messages.
func (n *Node) String() string {
	if len(n.ID) >= 8 {
		return n.Addr + "/" + n.ID[:8]
	}
	return n.Addr
}

func (n *Node) confPath() string { return filepath.Join(n.Dir, "redis.conf") }
func (n *Node) logPath() string  { return filepath.Join(n.Dir, "redis.log") }

// writeConfig renders redis.conf for the node's current port.
func (n *Node) writeConfig(opts Options) error {
	port := []string{"port " + strconv.Itoa(n.Port)}
	if t := opts.TLS; t != nil {
		port = []string{"port 0", "tls-port " + strconv.Itoa(n.Port),
			"tls-cert-file " + strconv.Quote(t.CertFile), "tls-key-file " + strconv.Quote(t.KeyFile),
			"tls-ca-cert-file " + strconv.Quote(t.CAFile), "tls-cluster yes", "tls-replication yes"}
	}
	lines := []string{
		"bind " + loopback,
		"protected-mode no",
		"daemonize no",
		"dir " + strconv.Quote(n.Dir),
		"logfile " + strconv.Quote(n.logPath()),
		"cluster-enabled yes",
		"cluster-config-file nodes.conf",
		"cluster-node-timeout " + strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
		// Let any replica take over however long its link was down, and
		// keep replicas where we put them.
		"cluster-replica-validity-factor 0",
		"cluster-allow-replica-migration no",
		"appendonly no",
		`save ""`,
		// Full syncs start at once instead of after the 5 s default delay.
		"repl-diskless-sync yes",
		"repl-diskless-sync-delay 0",
		// A replica is left out of CLUSTER SLOTS until its replication
		// offset is non-zero; with no writes only these pings move it.
		"repl-ping-replica-period 1",
		// A SIGTERMed master must not wait for replicas that are dying too.
		"shutdown-timeout 0",
	}
	lines = append(append(port, lines...), opts.ExtraConfig...)
	return os.WriteFile(n.confPath(), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait has returned
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to grace for the exit, then SIGKILLs.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
}

// launch starts redis-server for n and waits until it answers. It
// returns an error wrapping errAddrInUse when the server could not bind.
func (n *Node) launch(ctx context.Context, binary string) (*process, error) {
	cmd := exec.Command(binary, n.confPath())
	cmd.Dir = n.Dir
	cmd.SysProcAttr = serverSysProcAttr()
	// Start-up failures before the log file opens go to stderr.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w", n.Addr, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()

	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for {
		// Until the server binds, whoever holds the port may answer, so
		// the server must name our process.
		if !p.exited() && n.servedBy(ctx, cmd.Process.Pid) {
			return p, nil
		}
		select {
		case <-p.done:
			tail := n.logTail(20) + stderr.String()
			err := fmt.Errorf("cluster: %s exited during start-up (%v): %s", n.Addr, cmd.ProcessState, tail)
			if strings.Contains(tail, "already in use") {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return nil, err
		case <-ctx.Done():
			p.stop(syscall.SIGKILL, 0)
			return nil, fmt.Errorf("cluster: %s did not answer: %w; log: %s", n.Addr, ctx.Err(), n.logTail(20))
		case <-ticker.C:
		}
	}
}

// servedBy reports whether the node's port answers with process pid.
func (n *Node) servedBy(ctx context.Context, pid int) bool {
	// Short, because a failed probe is simply repeated.
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	info, err := n.client.Info(ctx, "server").Result()
	return err == nil && parseInfo(info)["process_id"] == strconv.Itoa(pid)
}

// logTail returns the last lines of the node's log file.
func (n *Node) logTail(lines int) string {
	b, err := os.ReadFile(n.logPath())
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// newNodeClient reaches addr, over TLS when tlsConfig is not nil.
func newNodeClient(addr string, tlsConfig *tls.Config) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		TLSConfig:             tlsConfig,
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1, // control-plane calls are polled, never blindly retried
		DialTimeout:           time.Second,
		ReadTimeout:           5 * time.Second,
		WriteTimeout:          5 * time.Second,
		ContextTimeoutEnabled: true,
		PoolSize:              4,
	})
}

func nodeAddr(port int) string { return net.JoinHostPort(loopback, strconv.Itoa(port)) }
