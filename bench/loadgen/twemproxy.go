package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TwemproxyOptions configures twemproxy (nutcracker) in front of Redis
// servers.
type TwemproxyOptions struct {
	// Binary is the nutcracker executable; empty looks up "nutcracker" in
	// PATH, then /usr/sbin/nutcracker.
	Binary string
	// Servers are the backends' host:port addresses; at least one.
	Servers []string
	// Password is the backends' requirepass (twemproxy's redis_auth);
	// clients must then AUTH to twemproxy with it too.
	Password string
}

// Twemproxy is a running nutcracker with one pool listening on a loopback
// port. Close stops it and removes its directory.
type Twemproxy struct {
	*server
	statsAddr string
}

// StartTwemproxy launches twemproxy for a test or benchmark and stops it in
// tb.Cleanup. Without nutcracker the test is skipped (failed when CI=true);
// any other error fails it.
func StartTwemproxy(tb testing.TB, opts TwemproxyOptions) *Twemproxy {
	tb.Helper()
	return startForTest(tb, func(ctx context.Context) (*Twemproxy, error) { return LaunchTwemproxy(ctx, opts) })
}

// LaunchTwemproxy writes a nutcracker configuration (one pool, redis: true,
// hash fnv1a_64, distribution ketama, auto_eject_hosts false, preconnect),
// checks it with nutcracker --test-conf, starts nutcracker on free loopback
// ports (the pool's and the stats port) and returns once it answers PING.
// ctx bounds the start only; Close stops it. It also dies with this process.
func LaunchTwemproxy(ctx context.Context, opts TwemproxyOptions) (*Twemproxy, error) {
	if len(opts.Servers) == 0 {
		return nil, errors.New("loadgen: TwemproxyOptions.Servers is empty")
	}
	for _, s := range opts.Servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("loadgen: twemproxy server %q: %w", s, err)
		}
	}
	bin, err := lookBinary(opts.Binary, "nutcracker")
	if err != nil {
		return nil, err
	}
	var statsAddr string
	s, err := launchServer(ctx, "loadgen-twemproxy-", opts.Password, func(dir string, port int) (*process, error) {
		statsPort, err := freePort()
		if err != nil {
			return nil, err
		}
		statsAddr = loopbackAddr(statsPort)
		conf := filepath.Join(dir, "nutcracker.yml")
		if err := os.WriteFile(conf, twemproxyConfig(loopbackAddr(port), opts), 0o644); err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		if err := testTwemproxyConfig(ctx, bin, conf); err != nil {
			return nil, err
		}
		return startProcess(dir, "nutcracker.log", bin, "--conf-file", conf,
			"--stats-addr", "127.0.0.1", "--stats-port", strconv.Itoa(statsPort),
			"--pid-file", filepath.Join(dir, "nutcracker.pid"), "--output", filepath.Join(dir, "nutcracker.log"))
	})
	if err != nil {
		return nil, err
	}
	return &Twemproxy{server: s, statsAddr: statsAddr}, nil
}

// twemproxyConfig renders the YAML configuration: one pool named "bench".
func twemproxyConfig(listen string, opts TwemproxyOptions) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "bench:\n")
	fmt.Fprintf(&b, "  listen: %s\n", listen)
	fmt.Fprintf(&b, "  redis: true\n")
	if opts.Password != "" {
		fmt.Fprintf(&b, "  redis_auth: %s\n", strconv.Quote(opts.Password))
	}
	fmt.Fprintf(&b, "  hash: fnv1a_64\n")
	fmt.Fprintf(&b, "  distribution: ketama\n")
	fmt.Fprintf(&b, "  auto_eject_hosts: false\n")
	fmt.Fprintf(&b, "  preconnect: true\n")
	fmt.Fprintf(&b, "  servers:\n")
	for _, s := range opts.Servers {
		// Each entry is host:port:weight.
		fmt.Fprintf(&b, "    - %s:1\n", s)
	}
	return b.Bytes()
}

// testTwemproxyConfig runs nutcracker --test-conf, which rejects a bad
// configuration before any server starts.
func testTwemproxyConfig(ctx context.Context, bin, conf string) error {
	cmd := exec.CommandContext(ctx, bin, "--test-conf", "--conf-file", conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		body, _ := os.ReadFile(conf)
		return fmt.Errorf("loadgen: nutcracker --test-conf rejected %s (%v): %s\nconfiguration:\n%s",
			conf, err, strings.TrimSpace(string(out)), body)
	}
	return nil
}

// StatsAddr is the address of nutcracker's JSON stats port.
func (t *Twemproxy) StatsAddr() string { return t.statsAddr }
