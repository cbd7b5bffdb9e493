package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures a standalone redis-server.
type RedisOptions struct {
	// Binary is the redis-server executable; empty looks up "redis-server"
	// in PATH.
	Binary string
	// Password is requirepass; empty means no AUTH.
	Password string
	// Cluster starts it with cluster-enabled yes and makes it own every slot
	// (CLUSTER ADDSLOTSRANGE 0 16383): a one-node Redis Cluster.
	Cluster bool
	// ExtraArgs are more "--name value" configuration arguments.
	ExtraArgs []string
}

// RedisServer is a running redis-server on a loopback port, with no
// persistence, in a temporary directory of its own.
type RedisServer struct {
	proc      *process
	addr      string
	dir       string
	closeOnce sync.Once
}

// startupTimeout bounds StartRedis and StartTwemproxy, which have no
// context of their own.
const startupTimeout = 30 * time.Second

// StartRedis launches a redis-server for a test or benchmark and kills it in
// tb.Cleanup. Without redis-server the test is skipped (failed when CI=true);
// any other error fails it.
func StartRedis(tb testing.TB, opts RedisOptions) *RedisServer {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	s, err := LaunchRedis(ctx, opts)
	if errors.Is(err, ErrBinaryMissing) {
		skipOrFailMissing(tb, err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// LaunchRedis starts a redis-server on a free loopback port and returns once
// it answers PING (and, with Cluster, once CLUSTER INFO says
// cluster_state:ok). ctx bounds the start only; Close stops the server. The
// server also dies with this process.
func LaunchRedis(ctx context.Context, opts RedisOptions) (*RedisServer, error) {
	bin, err := lookBinary(opts.Binary, "redis-server")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loadgen-redis-")
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	proc, addr, err := launchOnFreePort(ctx, opts.Password, func() (*process, string, error) {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""}
		if opts.Password != "" {
			args = append(args, "--requirepass", opts.Password)
		}
		if opts.Cluster {
			args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+strconv.Itoa(port)+".conf")
		}
		args = append(args, opts.ExtraArgs...)
		p, err := startProcess(dir, "redis.log", bin, args...)
		return p, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), err
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &RedisServer{proc: proc, addr: addr, dir: dir}
	if opts.Cluster {
		if err := s.claimAllSlots(ctx, opts.Password); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// claimAllSlots gives the node every slot and waits until it considers the
// cluster healthy (Redis delays that for a moment after the slots arrive).
func (s *RedisServer) claimAllSlots(ctx context.Context, password string) error {
	client := redis.NewClient(&redis.Options{Addr: s.addr, Password: password, MaxRetries: -1})
	defer client.Close()
	if err := client.ClusterAddSlotsRange(ctx, 0, 16383).Err(); err != nil {
		return fmt.Errorf("loadgen: CLUSTER ADDSLOTSRANGE 0 16383 on %s: %w", s.addr, err)
	}
	for {
		info, err := client.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadgen: %s never reached cluster_state:ok: %w (last CLUSTER INFO error: %v)",
				s.addr, ctx.Err(), err)
		case <-time.After(readyPollInterval):
		}
	}
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return s.addr }

// Pid is the server's process id, for CPUTime.
func (s *RedisServer) Pid() int { return s.proc.cmd.Process.Pid }

// Dir is the server's working directory; its log is Dir()/redis.log.
func (s *RedisServer) Dir() string { return s.dir }

// Close kills the server and removes its directory. It may be called more
// than once.
func (s *RedisServer) Close() {
	s.closeOnce.Do(func() {
		s.proc.kill()
		os.RemoveAll(s.dir)
	})
}
