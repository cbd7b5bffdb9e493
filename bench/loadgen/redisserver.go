package loadgen

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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
// persistence, in a temporary directory of its own. Close kills it and
// removes its directory.
type RedisServer struct {
	*server
}

// StartRedis launches a redis-server for a test or benchmark and kills it in
// tb.Cleanup. Without redis-server the test is skipped (failed when CI=true);
// any other error fails it.
func StartRedis(tb testing.TB, opts RedisOptions) *RedisServer {
	tb.Helper()
	return startForTest(tb, func(ctx context.Context) (*RedisServer, error) { return LaunchRedis(ctx, opts) })
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
	srv, err := launchServer(ctx, "loadgen-redis-", opts.Password, func(dir string, port int) (*process, error) {
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""}
		if opts.Password != "" {
			args = append(args, "--requirepass", opts.Password)
		}
		if opts.Cluster {
			args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+strconv.Itoa(port)+".conf")
		}
		args = append(args, opts.ExtraArgs...)
		return startProcess(dir, "redis.log", bin, args...)
	})
	if err != nil {
		return nil, err
	}
	s := &RedisServer{srv}
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

// Dir is the server's working directory; its log is Dir()/redis.log.
func (s *RedisServer) Dir() string { return s.dir }
