package router

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// startRedisServer runs a throwaway redis-server on free loopback ports and
// returns a client for it; the server and client are gone when the test ends.
// It skips the test when redis-server is not installed, unless CI=true.
func startRedisServer(t *testing.T, extraArgs ...string) *redis.Client {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is required when CI=true: %v", err)
		}
		t.Skip("redis-server not installed")
	}
	// A port picked by listening on :0 can be taken again before redis-server
	// binds it, so retry a few times.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		client, err := tryStartRedisServer(t, bin, extraArgs)
		if err == nil {
			return client
		}
		lastErr = err
	}
	t.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

func tryStartRedisServer(t *testing.T, bin string, extraArgs []string) (*redis.Client, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log"),
	}, extraArgs...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1, Protocol: 2})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = client.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			_ = client.Close()
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return nil, fmt.Errorf("redis-server exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			_ = client.Close()
			stop()
			return nil, fmt.Errorf("redis-server not answering PING: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		_ = client.Close()
		stop()
	})
	return client, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// clusterArgs enables cluster mode with the cluster bus on its own free port.
func clusterArgs(t *testing.T) []string {
	busPort, err := freePort()
	require.NoError(t, err)
	return []string{"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(busPort),
		"--cluster-config-file", "nodes.conf"}
}
