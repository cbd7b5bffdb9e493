package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/failover"
	"kvproxy/proxy"
	"kvproxy/router"
)

// noEnv is an empty environment.
func noEnv(string) string { return "" }

// envOf serves vars as the environment.
func envOf(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestEnvName(t *testing.T) {
	assert.Equal(t, "KVPROXY_LISTEN", envName("listen"))
	assert.Equal(t, "KVPROXY_BACKEND_CONNS", envName("backend-conns"))
	assert.Equal(t, "KVPROXY_MAX_BULK_LEN", envName("max-bulk-len"))
	assert.Equal(t, "KVPROXY_MAX_BLOCKING_CONNS", envName("max-blocking-conns"))
}

func TestParseOptionsDefaults(t *testing.T) {
	o, err := parseOptions([]string{"--seeds", "10.0.0.1:6666"}, noEnv)
	require.NoError(t, err)
	assert.Equal(t, options{
		listen:            "127.0.0.1:6380",
		seeds:             []string{"10.0.0.1:6666"},
		backendConns:      4,
		logLevel:          slog.LevelInfo,
		maxBulkLen:        proxy.DefaultMaxBulkLen,
		maxRequestBytes:   proxy.DefaultMaxRequestBytes,
		maxBlockingConns:  proxy.DefaultConfig().MaxBlockingConns,
		maxClients:        proxy.DefaultMaxClients,
		holdTimeout:       router.DefaultConfig().HoldTimeout,
		holdMaxBytes:      failover.DefaultConfig().MaxBytes,
		clientOutputLimit: proxy.DefaultConfig().ClientOutputLimit,
		deadTimeout:       router.DefaultConfig().DeadTimeout,
		pubsubOutputLimit: proxy.DefaultPubSubOutputLimit,
		refreshInterval:   router.DefaultConfig().RefreshInterval,
		controllerTimeout: defaultControllerTimeout,
		shutdownTimeout:   proxy.DefaultConfig().ShutdownTimeout,
	}, o)

	o, err = parseOptions([]string{"--demo"}, noEnv)
	require.NoError(t, err)
	assert.True(t, o.demo)
	assert.Empty(t, o.seeds)
}

func TestParseOptionsEveryFlag(t *testing.T) {
	args := []string{
		"--listen", ":7000", "--seeds", " a:1, b:2 ,,c:3", "--password", "pw", "--backend-password", "bpw", "--admin-password", "apw",
		"--backend-conns", "8", "--announce", "proxy.example:7000", "--log-level", "WARN", "--max-bulk-len", "1024",
		"--max-blocking-conns", "7", "--hold-timeout", "1s", "--hold-max-bytes", "4096", "--max-clients", "50", "--max-request-bytes", "2097152",
		"--client-output-limit", "1048576", "--backend-dead-timeout", "3s", "--pubsub-output-limit", "1048576",
		"--refresh-interval", "250ms",
		"--controller", "http://c:9379", "--controller-namespace", "ns", "--controller-cluster", "cl",
		"--controller-token", "tk", "--controller-timeout", "3s", "--shutdown-timeout", "30s", "--log-format", "JSON",
		"--metrics-listen", ":9100", "--procs", "3",
	}
	o, err := parseOptions(args, noEnv)
	require.NoError(t, err)
	assert.Equal(t, options{
		listen:            ":7000",
		seeds:             []string{"a:1", "b:2", "c:3"},
		password:          "pw",
		backendPassword:   "bpw",
		adminPassword:     "apw",
		backendConns:      8,
		announce:          "proxy.example:7000",
		logLevel:          slog.LevelWarn,
		maxBulkLen:        1024,
		maxRequestBytes:   2 << 20,
		maxBlockingConns:  7,
		maxClients:        50,
		holdTimeout:       time.Second,
		holdMaxBytes:      4096,
		clientOutputLimit: 1 << 20,
		deadTimeout:       3 * time.Second,
		pubsubOutputLimit: 1 << 20,
		refreshInterval:   250 * time.Millisecond,
		controllerURL:     "http://c:9379", controllerNamespace: "ns", controllerCluster: "cl",
		controllerToken: "tk", controllerTimeout: 3 * time.Second,
		shutdownTimeout: 30 * time.Second, logJSON: true,
		metricsListen: ":9100", procs: 3,
	}, o)
}

func TestParseOptionsEnvironment(t *testing.T) {
	env := map[string]string{
		"KVPROXY_LISTEN":               "127.0.0.1:7001",
		"KVPROXY_SEEDS":                "s:1,t:2",
		"KVPROXY_PASSWORD":             "pw",
		"KVPROXY_BACKEND_PASSWORD":     "bpw",
		"KVPROXY_BACKEND_CONNS":        "2",
		"KVPROXY_ANNOUNCE":             "h:7001",
		"KVPROXY_LOG_LEVEL":            "debug",
		"KVPROXY_MAX_BULK_LEN":         "99",
		"KVPROXY_MAX_BLOCKING_CONNS":   "3",
		"KVPROXY_HOLD_TIMEOUT":         "750ms",
		"KVPROXY_HOLD_MAX_BYTES":       "1000",
		"KVPROXY_MAX_CLIENTS":          "20",
		"KVPROXY_MAX_REQUEST_BYTES":    "3145728",
		"KVPROXY_CLIENT_OUTPUT_LIMIT":  "2097152",
		"KVPROXY_BACKEND_DEAD_TIMEOUT": "7s",
		"KVPROXY_PUBSUB_OUTPUT_LIMIT":  "65536",
		"KVPROXY_REFRESH_INTERVAL":     "2s",
		"KVPROXY_CONTROLLER_TIMEOUT":   "4s",
		"KVPROXY_SHUTDOWN_TIMEOUT":     "1m",
		"KVPROXY_METRICS_LISTEN":       "127.0.0.1:9101",
	}
	o, err := parseOptions(nil, envOf(env))
	require.NoError(t, err)
	assert.Equal(t, options{
		listen:            "127.0.0.1:7001",
		seeds:             []string{"s:1", "t:2"},
		password:          "pw",
		backendPassword:   "bpw",
		backendConns:      2,
		announce:          "h:7001",
		logLevel:          slog.LevelDebug,
		maxBulkLen:        99,
		maxRequestBytes:   3 << 20,
		maxBlockingConns:  3,
		maxClients:        20,
		holdTimeout:       750 * time.Millisecond,
		holdMaxBytes:      1000,
		clientOutputLimit: 2 << 20,
		deadTimeout:       7 * time.Second,
		pubsubOutputLimit: 64 << 10,
		refreshInterval:   2 * time.Second,
		controllerTimeout: 4 * time.Second,
		shutdownTimeout:   time.Minute,
		metricsListen:     "127.0.0.1:9101",
	}, o)

	t.Run("flag wins over env", func(t *testing.T) {
		o, err := parseOptions([]string{"--backend-conns", "6", "--seeds", "u:3", "--log-level", "error",
			"--max-blocking-conns", "5"}, envOf(env))
		require.NoError(t, err)
		assert.Equal(t, 6, o.backendConns)
		assert.Equal(t, 5, o.maxBlockingConns)
		assert.Equal(t, []string{"u:3"}, o.seeds)
		assert.Equal(t, slog.LevelError, o.logLevel)
		assert.Equal(t, "pw", o.password, "settings without a flag still come from the environment")
	})
	t.Run("demo from env", func(t *testing.T) {
		o, err := parseOptions(nil, envOf(map[string]string{"KVPROXY_DEMO": "true"}))
		require.NoError(t, err)
		assert.True(t, o.demo)
	})
	t.Run("empty env value is unset", func(t *testing.T) {
		o, err := parseOptions([]string{"--seeds", "a:1"}, envOf(map[string]string{"KVPROXY_LISTEN": ""}))
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1:6380", o.listen)
	})
}

func TestParseOptionsRejects(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, "flag provided but not defined: -bogus"},
		{"positional argument", []string{"--seeds", "a:1", "extra"}, nil, `unexpected argument "extra"`},
		{"no seeds", nil, nil, "no --seeds"},
		{"blank seeds", []string{"--seeds", " , "}, nil, "no --seeds"},
		{"seeds with demo", []string{"--demo", "--seeds", "a:1"}, nil, "--seeds and --demo exclude each other"},
		{"seeds with demo from env", []string{"--demo"}, map[string]string{"KVPROXY_SEEDS": "a:1"}, "--seeds and --demo"},
		{"seed without port", []string{"--seeds", "a"}, nil, `--seeds: "a": want host:port`},
		{"seed without host", []string{"--seeds", ":1"}, nil, "missing host"},
		{"seed port zero", []string{"--seeds", "a:0"}, nil, "bad port"},
		{"backend conns zero", []string{"--seeds", "a:1", "--backend-conns", "0"}, nil, "--backend-conns 0"},
		{"backend conns not a number", []string{"--seeds", "a:1", "--backend-conns", "many"}, nil, "-backend-conns"},
		{"max bulk len negative", []string{"--seeds", "a:1", "--max-bulk-len", "-1"}, nil, "--max-bulk-len -1"},
		{"max request bytes too small", []string{"--seeds", "a:1", "--max-request-bytes", "1000"}, nil, "--max-request-bytes 1000: want 1048576 (1 MiB)"},
		{"max request bytes too large", []string{"--seeds", "a:1", "--max-request-bytes", "1099511627776"}, nil, "--max-request-bytes 1099511627776"},
		{"max blocking conns zero", []string{"--seeds", "a:1", "--max-blocking-conns", "0"}, nil, "--max-blocking-conns 0"},
		{"hold timeout zero", []string{"--seeds", "a:1", "--hold-timeout", "0s"}, nil, "--hold-timeout 0s"},
		{"hold max bytes zero", []string{"--seeds", "a:1", "--hold-max-bytes", "0"}, nil, "--hold-max-bytes 0"},
		{"backend conns too many", []string{"--seeds", "a:1", "--backend-conns", "20000"}, nil, "--backend-conns 20000: want 1 to 256"},
		{"max bulk len too long", []string{"--seeds", "a:1", "--max-bulk-len", "5000000000"}, nil, "--max-bulk-len 5000000000: want 1 to 4294967296"},
		{"max blocking conns too many", []string{"--seeds", "a:1", "--max-blocking-conns", "100001"}, nil, "--max-blocking-conns 100001: want 1 to 100000"},
		{"max clients zero", []string{"--seeds", "a:1", "--max-clients", "0"}, nil, "--max-clients 0: want 1 to 1000000"},
		{"max clients too many", []string{"--seeds", "a:1"}, map[string]string{"KVPROXY_MAX_CLIENTS": "2000000"}, "--max-clients 2000000"},
		{"hold timeout negative", []string{"--seeds", "a:1", "--hold-timeout", "-1s"}, nil, "--hold-timeout -1s"},
		{"hold timeout too long", []string{"--seeds", "a:1", "--hold-timeout", "11m"}, nil, "--hold-timeout 11m0s: want a positive duration up to 10m0s"},
		{"client output limit too small", []string{"--seeds", "a:1", "--client-output-limit", "1000"}, nil, "--client-output-limit 1000: want 65536 (64 KiB)"},
		{"client output limit too large", []string{"--seeds", "a:1", "--client-output-limit", "99999999999999"}, nil, "--client-output-limit 99999999999999"},
		{"dead timeout too short", []string{"--seeds", "a:1", "--backend-dead-timeout", "10ms"}, nil, "--backend-dead-timeout 10ms: want 1s to 10m0s"},
		{"dead timeout too long", []string{"--seeds", "a:1", "--backend-dead-timeout", "1h"}, nil, "--backend-dead-timeout 1h0m0s"},
		{"controller without its cluster", []string{"--seeds", "a:1", "--controller", "http://c:1"}, nil, "--controller needs --controller-namespace and --controller-cluster"},
		{"controller names without controller", []string{"--seeds", "a:1", "--controller-cluster", "x"}, nil, "need --controller"},
		{"controller with demo", []string{"--demo", "--controller", "http://c:1", "--controller-namespace", "n", "--controller-cluster", "c"}, nil, "--controller and --demo exclude each other"},
		{"controller timeout too short", []string{"--seeds", "a:1", "--controller-timeout", "1ms"}, nil, "--controller-timeout 1ms: want 1s to 10m"},
		{"refresh interval too short", []string{"--seeds", "a:1", "--refresh-interval", "10ms"}, nil, "--refresh-interval 10ms: want 100ms to 10m0s"},
		{"refresh interval too long", []string{"--seeds", "a:1", "--refresh-interval", "1h"}, nil, "--refresh-interval 1h0m0s"},
		{"hold max bytes too many", []string{"--seeds", "a:1", "--hold-max-bytes", "17179869185"}, nil, "--hold-max-bytes 17179869185: want 1 to 17179869184"},
		{"pubsub output limit too small", []string{"--seeds", "a:1", "--pubsub-output-limit", "65535"}, nil,
			"--pubsub-output-limit 65535: want 65536 (64 KiB) to 17179869184 (16 GiB)"},
		{"pubsub output limit too large", []string{"--seeds", "a:1"}, map[string]string{"KVPROXY_PUBSUB_OUTPUT_LIMIT": "17179869185"},
			"--pubsub-output-limit 17179869185"},
		{"max blocking conns from env negative", []string{"--seeds", "a:1"}, map[string]string{"KVPROXY_MAX_BLOCKING_CONNS": "-2"},
			"--max-blocking-conns -2"},
		{"max blocking conns not a number", []string{"--seeds", "a:1"}, map[string]string{"KVPROXY_MAX_BLOCKING_CONNS": "lots"},
			`KVPROXY_MAX_BLOCKING_CONNS="lots" is not a valid --max-blocking-conns`},
		{"bad log format", []string{"--seeds", "a:1", "--log-format", "xml"}, nil, `--log-format "xml": want text or json`},
		{"procs negative", []string{"--seeds", "a:1", "--procs", "-1"}, nil, "--procs -1: want 0 (automatic) to 4096"},
		{"procs too many", []string{"--seeds", "a:1", "--procs", "5000"}, nil, "--procs 5000: want 0 (automatic) to 4096"},
		{"shutdown timeout zero", []string{"--seeds", "a:1", "--shutdown-timeout", "0s"}, nil, "--shutdown-timeout 0s: want a positive duration up to 1h0m0s"},
		{"shutdown timeout too long", []string{"--seeds", "a:1", "--shutdown-timeout", "2h"}, nil, "--shutdown-timeout 2h0m0s"},
		{"bad log level", []string{"--seeds", "a:1", "--log-level", "loud"}, nil, `--log-level "loud"`},
		{"bad listen", []string{"--seeds", "a:1", "--listen", "6380"}, nil, `--listen "6380"`},
		{"listen port out of range", []string{"--seeds", "a:1", "--listen", ":70000"}, nil, "bad port"},
		{"bad metrics listen", []string{"--seeds", "a:1", "--metrics-listen", "9100"}, nil, `--metrics-listen "9100": want host:port`},
		{"metrics listen port out of range", []string{"--seeds", "a:1", "--metrics-listen", ":70000"}, nil, `--metrics-listen ":70000": bad port`},
		{"announce without host", []string{"--seeds", "a:1", "--announce", ":6380"}, nil, `--announce ":6380": missing host`},
		{"bad env value", []string{"--seeds", "a:1"}, map[string]string{"KVPROXY_BACKEND_CONNS": "x"},
			`KVPROXY_BACKEND_CONNS="x" is not a valid --backend-conns`},
		{"bad env bool", []string{"--seeds", "a:1"}, map[string]string{"KVPROXY_DEMO": "maybe"}, "KVPROXY_DEMO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(tt.args, envOf(tt.env))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestDefaultProcsIsHalfAtLeastOne(t *testing.T) {
	for available, want := range map[int]int{1: 1, 2: 1, 3: 1, 4: 2, 16: 8} {
		assert.Equal(t, want, defaultProcs(available), "of %d", available)
	}
}

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-h"}, noEnv, &stdout, &stderr)
	assert.Equal(t, exitOK, code)
	assert.Empty(t, stderr.String())
	for _, name := range []string{"listen", "seeds", "password", "backend-password", "backend-conns",
		"announce", "log-level", "log-format", "shutdown-timeout", "version", "max-bulk-len", "max-blocking-conns", "max-clients", "pubsub-output-limit", "demo"} {
		assert.Contains(t, stdout.String(), "--"+name)
		assert.Contains(t, stdout.String(), envName(name))
	}
}

// TestRunVersion: `kvproxy version` and `kvproxy --version` print one line
// and exit 0, whatever else the command line holds.
func TestRunVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"--version", "--backend-conns", "0"}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, noEnv, &stdout, &stderr)
		assert.Equal(t, exitOK, code, args)
		assert.Empty(t, stderr.String(), args)
		assert.Regexp(t, `^kvproxy \S+ \(.*go1\.[0-9]+.*\)\n$`, stdout.String(), args)
	}
}

// TestNewLoggerFormats: --log-format json writes one JSON object per line.
func TestNewLoggerFormats(t *testing.T) {
	var text, js bytes.Buffer
	newLogger(&text, false, slog.LevelInfo).Info("hello", "k", "v")
	newLogger(&js, true, slog.LevelInfo).Info("hello", "k", "v")
	newLogger(&js, true, slog.LevelInfo).Debug("hidden")
	assert.Contains(t, text.String(), "msg=hello k=v")
	var line map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &line), js.String())
	assert.Equal(t, "hello", line["msg"])
	assert.Equal(t, "v", line["k"])
}

// refusedAddr returns the address of a listener that was closed: dialling
// it is refused at once.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestRunStartupFailures(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { busy.Close() })
	refused := refusedAddr(t)

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad flag", []string{"--listne", "127.0.0.1:0"}, nil, "flag provided but not defined: -listne"},
		{"no seeds", []string{"--listen", "127.0.0.1:0"}, nil, "no --seeds"},
		{"bad env", nil, map[string]string{"KVPROXY_MAX_BULK_LEN": "big"}, "KVPROXY_MAX_BULK_LEN"},
		{"backend conns 20000", []string{"--listen", "127.0.0.1:0", "--seeds", refused, "--backend-conns", "20000"}, nil,
			"--backend-conns 20000: want 1 to 256"},
		{"max clients out of range", []string{"--listen", "127.0.0.1:0", "--seeds", refused, "--max-clients", "-5"}, nil,
			"--max-clients -5: want 1 to 1000000"},
		{"hold timeout out of range", []string{"--listen", "127.0.0.1:0", "--seeds", refused}, map[string]string{"KVPROXY_HOLD_TIMEOUT": "24h"},
			"--hold-timeout 24h0m0s"},
		{"port in use", []string{"--listen", busy.Addr().String(), "--seeds", refused}, nil,
			"cannot listen on " + busy.Addr().String()},
		{"unreachable seed", []string{"--listen", "127.0.0.1:0", "--seeds", refused}, nil, refused},
		{"unreachable seeds from env", nil, map[string]string{"KVPROXY_LISTEN": "127.0.0.1:0", "KVPROXY_SEEDS": refused},
			"connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, envOf(tt.env), &stdout, &stderr)
			assert.Equal(t, exitStartup, code)
			assert.Empty(t, stdout.String())
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			require.Len(t, lines, 1, "stderr: %q", stderr.String())
			assert.True(t, strings.HasPrefix(lines[0], "kvproxy: "), lines[0])
			assert.Contains(t, lines[0], tt.want)
		})
	}
}

// syncBuffer is a bytes.Buffer that run's logger and the test may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var servingLine = regexp.MustCompile(`msg="kvproxy serving" .*?listen=(\S+)`)

// runInBackground starts run with a cancellable context; it returns the
// address the proxy listens on (from its log) and a function that stops it
// and returns its exit code. The proxy is stopped in t.Cleanup too.
func runInBackground(t *testing.T, args []string, env func(string) string) (addr string, stdout, stderr *syncBuffer, stop func() int) {
	t.Helper()
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, args, env, stdout, stderr) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-exited:
			case <-time.After(30 * time.Second):
				t.Error("run did not return within 30s of its context ending")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	require.Eventually(t, func() bool {
		select {
		case code := <-exited:
			exited <- code
			return true
		default:
		}
		return servingLine.MatchString(stderr.String())
	}, 20*time.Second, 10*time.Millisecond)
	m := servingLine.FindStringSubmatch(stderr.String())
	require.NotNil(t, m, "run ended before serving; stderr:\n%s", stderr.String())
	return m[1], stdout, stderr, stop
}

func newClient(t *testing.T, addr, password string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRunDemo runs the demo in-process: it starts a kvsim cluster, serves
// through the proxy, prints the node table and the failover line, and shuts
// everything down when its context ends.
func TestRunDemo(t *testing.T) {
	addr, stdout, stderr, stop := runInBackground(t, []string{"--demo", "--listen", "127.0.0.1:0"}, noEnv)
	ctx := context.Background()
	c := newClient(t, addr, "")
	require.NoError(t, c.Set(ctx, "demo-key", "demo-value", 0).Err())
	assert.Equal(t, "demo-value", c.Get(ctx, "demo-key").Val())

	out := stdout.String()
	assert.Contains(t, out, "topology version 1")
	assert.Equal(t, 3, strings.Count(out, " master "), out)
	assert.Equal(t, 3, strings.Count(out, " slave "), out)
	_, port, _ := net.SplitHostPort(addr)
	assert.Contains(t, out, "\n  redis-cli -p "+port+" PROXY FAILOVER 0\n")
	assert.Contains(t, out, "admin command")

	assert.Equal(t, exitOK, stop())
	assert.Contains(t, stderr.String(), "shutdown complete")
	_, err := net.DialTimeout("tcp", addr, time.Second)
	assert.Error(t, err, "the proxy still listens after shutdown")
}

// With an admin password the demo's failover line signs in as admin, and
// the failover works for the admin only.
func TestRunDemoWithAdminPassword(t *testing.T) {
	addr, stdout, _, stop := runInBackground(t, []string{"--demo", "--listen", "127.0.0.1:0", "--admin-password", "ops"}, noEnv)
	defer stop()
	_, port, _ := net.SplitHostPort(addr)
	assert.Contains(t, stdout.String(), "\n  redis-cli -p "+port+" --user admin --askpass PROXY FAILOVER 0\n")
	ctx := context.Background()
	c := newClient(t, addr, "")
	assert.ErrorContains(t, c.Do(ctx, "PROXY", "FAILOVER", "0").Err(), "NOPERM")
	admin := redis.NewClient(&redis.Options{Addr: addr, Username: "admin", Password: "ops", MaxRetries: -1})
	defer admin.Close()
	assert.Contains(t, admin.Do(ctx, "PROXY", "FAILOVER", "0").Val(), "shard 0 failed over")
}

// TestRunWiresFlags runs against a password-protected kvsim cluster with
// settings from both flags and the environment, and checks that each
// reaches the proxy.
func TestRunWiresFlags(t *testing.T) {
	cfg := kvsim.DefaultClusterConfig()
	cfg.Shards, cfg.Replicas = 2, 0
	cfg.Password = "backend-secret"
	sim, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)

	env := envOf(map[string]string{
		"KVPROXY_PASSWORD":            "client-secret",
		"KVPROXY_BACKEND_PASSWORD":    "backend-secret",
		"KVPROXY_ANNOUNCE":            "proxy.invalid:7777",
		"KVPROXY_LOG_LEVEL":           "error", // overridden below: the serving line is logged at info
		"KVPROXY_PUBSUB_OUTPUT_LIMIT": "1048576",
	})
	args := []string{"--listen", "127.0.0.1:0", "--seeds", refusedAddr(t) + "," + sim.Nodes()[1].Addr(),
		"--log-level", "info", "--backend-conns", "1"}
	addr, stdout, _, stop := runInBackground(t, args, env)
	assert.Empty(t, stdout.String(), "only --demo prints on stdout")
	ctx := context.Background()

	err = newClient(t, addr, "").Ping(ctx).Err()
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "NOAUTH"), err.Error())

	c := newClient(t, addr, "client-secret")
	for _, key := range []string{"a", "b", "c", "d"} {
		require.NoError(t, c.Set(ctx, key, "v-"+key, 0).Err())
	}
	assert.Equal(t, []any{"v-a", "v-b", "v-c", "v-d"}, c.MGet(ctx, "a", "b", "c", "d").Val())
	slots, err := c.ClusterSlots(ctx).Result()
	require.NoError(t, err)
	require.Len(t, slots, 1)
	require.NotEmpty(t, slots[0].Nodes)
	assert.Equal(t, "proxy.invalid:7777", slots[0].Nodes[0].Addr)
	assert.Contains(t, c.Info(ctx, "clients").Val(), "pubsub_output_limit:1048576\r\n")

	assert.Equal(t, exitOK, stop())
}

// TestProxyConfigFromOptions checks that every option meant for the proxy
// reaches its Config, and that the result is valid.
func TestProxyConfigFromOptions(t *testing.T) {
	o, err := parseOptions([]string{"--seeds", "a:1", "--password", "pw", "--max-bulk-len", "2048",
		"--max-blocking-conns", "9", "--max-clients", "77", "--max-request-bytes", "4194304", "--pubsub-output-limit", "2097152"}, noEnv)
	require.NoError(t, err)
	cfg := proxyConfig(o, "127.0.0.1:7000", "proxy.example:7000", slog.New(slog.DiscardHandler))
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "127.0.0.1:7000", cfg.ListenAddr)
	assert.Equal(t, "proxy.example:7000", cfg.AnnounceAddr)
	assert.Equal(t, "pw", cfg.Password)
	assert.Equal(t, 2048, cfg.MaxBulkLen)
	assert.Equal(t, 9, cfg.MaxBlockingConns)
	assert.Equal(t, 77, cfg.MaxClients)
	assert.Equal(t, int64(4<<20), cfg.MaxRequestBytes)
	assert.Equal(t, int64(2<<20), cfg.PubSubOutputLimit)
}

func TestAnnounceAddr(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	assert.Equal(t, "10.1.2.3:7000", announceAddr(&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 7000}, logger))
	assert.Equal(t, "[::1]:7000", announceAddr(&net.TCPAddr{IP: net.IPv6loopback, Port: 7000}, logger))
	assert.Empty(t, logs.String())

	assert.Equal(t, "127.0.0.1:7000", announceAddr(&net.TCPAddr{IP: net.IPv4zero, Port: 7000}, logger))
	assert.Equal(t, "127.0.0.1:7001", announceAddr(&net.TCPAddr{IP: net.IPv6unspecified, Port: 7001}, logger))
	assert.Equal(t, 2, strings.Count(logs.String(), "set --announce"), "listening everywhere warns")
}

// With --admin-password, FLUSHALL and the other destructive commands need
// the admin user, inside MULTI too; failed AUTHs show in INFO and end the
// connection at the limit.
func TestRunAdminPasswordGatesDestructiveCommands(t *testing.T) {
	cfg := kvsim.DefaultClusterConfig()
	cfg.Shards, cfg.Replicas = 2, 0
	sim, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	addr, _, _, stop := runInBackground(t, []string{"--listen", "127.0.0.1:0", "--seeds", sim.Nodes()[0].Addr(),
		"--password", "pw"}, envOf(map[string]string{"KVPROXY_ADMIN_PASSWORD": "ops"}))
	defer stop()
	ctx := context.Background()
	c := newClient(t, addr, "pw")
	require.NoError(t, c.Set(ctx, "{k}1", "v", 0).Err())
	assert.ErrorContains(t, c.FlushAll(ctx).Err(), "NOPERM")
	assert.ErrorContains(t, c.FlushDB(ctx).Err(), "NOPERM")
	assert.ErrorContains(t, c.Do(ctx, "CONFIG", "SET", "maxmemory", "1").Err(), "NOPERM")
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{k}2", "v", 0)
		p.FlushDB(ctx)
		return nil
	})
	assert.ErrorContains(t, err, "EXECABORT", "a gated command dooms the transaction")
	assert.Equal(t, "v", c.Get(ctx, "{k}1").Val(), "nothing was flushed")
	assert.Zero(t, c.Exists(ctx, "{k}2").Val(), "the doomed transaction did not run")

	admin := redis.NewClient(&redis.Options{Addr: addr, Username: "admin", Password: "ops", Protocol: 2})
	defer admin.Close()
	assert.Equal(t, "OK", admin.FlushAll(ctx).Val())
	assert.Zero(t, c.Exists(ctx, "{k}1").Val())

	guesser := newClient(t, addr, "")
	for range 4 {
		assert.ErrorContains(t, guesser.Do(ctx, "AUTH", "guess").Err(), "WRONGPASS")
	}
	info := c.Info(ctx, "stats").Val()
	assert.Contains(t, info, "auth_failures:4\r\n")
}
