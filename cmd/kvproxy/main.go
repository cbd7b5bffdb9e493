// Command kvproxy runs the RESP proxy in front of a Kvrocks cluster or a
// Redis Cluster:
//
//	kvproxy --seeds 10.0.0.1:6666,10.0.0.2:6666 [--listen 127.0.0.1:6380] [flags]
//	kvproxy --demo
//	kvproxy version
//
// Every flag has an environment variable (KVPROXY_ + the flag in upper case,
// '-' as '_') and a key of the --config YAML file (the flag's name); the flag
// wins over the variable, the variable over the file. --demo starts a
// simulated Kvrocks cluster on loopback and proxies it. SIGHUP reloads the
// settings (reload.go). SIGINT or SIGTERM shut down gracefully; a second one
// ends the process at once.
//
// Exit status: 0 after a graceful shutdown, 1 when serving failed, 2 when
// the proxy could not start (bad flag, port in use, no seed answering), with
// one line on stderr saying why.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
	"kvproxy/controller"
	"kvproxy/failover"
	"kvproxy/internal/version"
	"kvproxy/proxy"
	"kvproxy/router"
)

const (
	exitOK      = 0
	exitServing = 1
	exitStartup = 2
)

// startupTimeout bounds loading the topology from the seeds.
const startupTimeout = 30 * time.Second

func main() {
	// Most of the proxy's garbage is short-lived per-batch buffers, and every
	// buffer it holds is capped; a rarer GC saved about 12% CPU per request in
	// kvbench proxy. GOGC set by the user still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// The proxy's cost per request is mostly system calls and the wake-ups
	// between its goroutines: on a 2-core host shared with the cluster and
	// the clients, one processor instead of two cut CPU per request by
	// 29% and raised throughput 11-38% (bench/RESULTS.md), and the other
	// half of the cores is left to the work beside it. GOMAXPROCS set by
	// the user, or --procs, still wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(defaultProcs(runtime.GOMAXPROCS(0)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Once the first signal started the graceful shutdown, restore the
	// default action so a second one ends the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// defaultProcs is the processors the proxy takes of the available ones.
func defaultProcs(available int) int { return max(1, available/2) }

// run starts the proxy as args and env say and serves until ctx ends, then
// shuts down gracefully. It returns the exit status.
func run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "version" {
		fmt.Fprintln(stdout, "kvproxy", version.String())
		return exitOK
	}
	opts, settings, err := loadSettings(args, env)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage())
		return exitOK
	}
	if err != nil {
		startupFailed(stderr, err)
		return exitStartup
	}
	if opts.showVersion {
		fmt.Fprintln(stdout, "kvproxy", version.String())
		return exitOK
	}
	if opts.printConfig {
		out, err := printConfig(settings, opts.users)
		if err != nil {
			startupFailed(stderr, err)
			return exitStartup
		}
		_, _ = stdout.Write(out)
		return exitOK
	}
	if opts.procs > 0 {
		runtime.GOMAXPROCS(opts.procs)
	}
	// A reload (SIGHUP) may change the level.
	level := new(slog.LevelVar)
	level.Set(opts.logLevel)
	logger := newLogger(stderr, opts.logJSON, level)
	// go-redis (the router's control plane) logs on its own; keep it for
	// debugging so a startup failure stays one line.
	redis.SetLogger(goRedisLog{logger.With("component", "go-redis")})

	// cleanup undoes the steps taken so far, last first.
	var cleanup []func()
	closeAll := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
		cleanup = nil
	}
	defer closeAll()

	tlsFiles, err := opts.tls.read()
	if err != nil {
		startupFailed(stderr, err)
		return exitStartup
	}
	tlsLive := newLiveTLS(tlsFiles)
	serverTLS, backendTLS := tlsLive.serverConfig(), tlsLive.backendConfig(opts.tls)
	ln, plainAddr, tlsAddr, err := listenClients(opts, serverTLS, logger)
	if err != nil {
		startupFailed(stderr, err)
		return exitStartup
	}
	// Serve owns the listener once it runs; closing it twice is harmless.
	cleanup = append(cleanup, func() { _ = ln.Close() })
	var metricsLn net.Listener
	if opts.metricsListen != "" {
		if metricsLn, err = net.Listen("tcp", opts.metricsListen); err != nil {
			startupFailed(stderr, fmt.Errorf("cannot listen on %s (--metrics-listen): %w", opts.metricsListen, err))
			return exitStartup
		}
		cleanup = append(cleanup, func() { _ = metricsLn.Close() })
	}
	announce := opts.announce
	if announce == "" {
		announce = announceAddr(ln.Addr().(*net.TCPAddr), logger)
	}
	var tlsAnnounce string
	switch {
	case plainAddr == "" && opts.tls.announce != "":
		announce = opts.tls.announce
	case plainAddr != "" && tlsAddr != "":
		tlsAnnounce = tlsAnnounceAddr(opts, ln.(*proxy.Listener).TLSAddr().(*net.TCPAddr), logger)
	}

	seeds := opts.seeds
	var sim *kvsim.Cluster
	if opts.demo {
		cfg := kvsim.DefaultClusterConfig()
		cfg.Password = opts.backendPassword
		cfg.ControllerAPI.Listen = "127.0.0.1:0"
		// The simulator's own start-up chatter would bury the node table the
		// demo prints; its warnings still show, and --log-level debug shows all.
		cfg.Logger = logger
		if opts.logLevel > slog.LevelDebug {
			cfg.Logger = newLogger(stderr, opts.logJSON, max(opts.logLevel, slog.LevelWarn))
		}
		if sim, err = kvsim.StartCluster(cfg); err != nil {
			startupFailed(stderr, fmt.Errorf("demo cluster: %w", err))
			return exitStartup
		}
		cleanup = append(cleanup, sim.Close)
		for _, n := range sim.Nodes() {
			seeds = append(seeds, n.Addr())
		}
	}

	rcfg := router.DefaultConfig()
	rcfg.Seeds = seeds
	rcfg.Password = opts.backendPassword
	rcfg.TLS = backendTLS
	rcfg.ConnsPerNode = opts.backendConns
	rcfg.MaxBulkLen = opts.maxBulkLen
	rcfg.HoldTimeout = opts.holdTimeout
	rcfg.DeadTimeout = opts.deadTimeout
	rcfg.RefreshInterval = opts.refreshInterval
	rcfg.Logger = logger
	// The hold follows a failing-over master on connections of its own,
	// dialled (and authenticated) as the router's are.
	hcfg := failover.DefaultConfig()
	hcfg.MaxBytes = opts.holdMaxBytes
	hcfg.Dial = router.Dialer{Password: rcfg.Password, Timeout: rcfg.DialTimeout, TLS: rcfg.TLS}.Dial
	hcfg.Logger = logger
	holds, err := failover.New(hcfg)
	if err != nil {
		startupFailed(stderr, err)
		return exitStartup
	}
	cleanup = append(cleanup, holds.Close)
	rcfg.Hold = holds
	startCtx, cancel := context.WithTimeout(ctx, startupTimeout)
	rt, err := router.New(startCtx, rcfg)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			logger.Info("interrupted while starting: stopped")
			return exitOK
		}
		startupFailed(stderr, err)
		return exitStartup
	}
	cleanup = append(cleanup, func() { _ = rt.Close() })
	// The topology tells how many nodes need descriptors of their own.
	if err := fitDescriptors(&opts, len(rt.Topology().Nodes), logger); err != nil {
		startupFailed(stderr, err)
		return exitStartup
	}

	listen := ln.Addr().String()
	pcfg := proxyConfig(opts, listen, announce, logger)
	pcfg.TLSAnnounceAddr = tlsAnnounce
	pcfg.Handovers = holds
	controllerURL, namespace, clusterName := opts.controllerURL, opts.controllerNamespace, opts.controllerCluster
	if sim != nil {
		// The demo's cluster has a controller of its own, reached as any
		// kvrocks-controller: the failovers started through the proxy are
		// recorded there, so that each one can be failed back.
		controllerURL, namespace, clusterName = sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster
	}
	if controllerURL != "" {
		client, err := controller.New(controllerURL, namespace, clusterName, opts.controllerToken, opts.controllerTimeout)
		if err != nil {
			startupFailed(stderr, fmt.Errorf("--controller: %w", err))
			return exitStartup
		}
		cleanup = append(cleanup, client.Close)
		pcfg.Authority = controllerAuthority{client: client, name: controllerURL,
			log: logger.With("component", "controller")}
	}
	srv, err := proxy.New(pcfg, rt)
	if err != nil {
		startupFailed(stderr, err)
		return exitStartup
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if metricsLn != nil {
		// Closed with the proxy: cleanup closes its listener and
		// connections, scrapes being short.
		hs := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		cleanup = append(cleanup, func() { _ = hs.Close() })
		go func() {
			if err := hs.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
				logger.Warn("metrics serving stopped", "err", err)
			}
		}()
		logger.Info("metrics serving", "addr", metricsLn.Addr().String())
	}
	if sim != nil {
		// Before the serving line, which tells scripts the proxy is up.
		printDemo(stdout, sim, announce, opts.password != "", opts.adminPassword != "")
	}
	logger.Info("kvproxy serving", "listen", plainAddr, "tls_listen", tlsAddr, "version", version.Version(), "procs", runtime.GOMAXPROCS(0), "announce", announce, "tls_announce", tlsAnnounce,
		"masters", rt.Masters(), "client_auth", opts.password != "", "backend_tls", backendTLS != nil)

	// SIGHUP reloads the settings (reload.go) for as long as the proxy
	// serves.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloads := &reloader{args: args, env: env, opts: opts, settings: settings, level: level,
		srv: srv, rt: rt, holds: holds, tls: tlsLive, log: logger,
		proxyConfig: func(o options) proxy.Config { return proxyConfig(o, listen, announce, logger) }}

	code := exitOK
serving:
	for {
		select {
		case <-hup:
			reloads.reload()
		case <-ctx.Done():
			logger.Info("signal received: shutting down gracefully")
			break serving
		case err := <-served:
			logger.Error("serving stopped", "err", err)
			code = exitServing
			break serving
		}
	}
	if err := srv.Close(); err != nil {
		logger.Warn("closing the client listener", "err", err)
	}
	if code == exitOK {
		// Close returns after Serve did; this only collects its result.
		<-served
	}
	closeAll()
	logger.Info("shutdown complete")
	return code
}

// proxyConfig is the proxy's Config for opts, serving on listen and
// announcing announce.
func proxyConfig(opts options, listen, announce string, logger *slog.Logger) proxy.Config {
	cfg := proxy.DefaultConfig()
	cfg.ListenAddr = listen
	cfg.AnnounceAddr = announce
	cfg.Password = opts.password
	cfg.AdminPassword = opts.adminPassword
	cfg.Users = opts.users
	cfg.MaxBulkLen = opts.maxBulkLen
	cfg.MaxRequestBytes = opts.maxRequestBytes
	cfg.MaxBlockingConns = opts.maxBlockingConns
	cfg.MaxClients = opts.maxClients
	cfg.ClientOutputLimit = opts.clientOutputLimit
	cfg.PubSubOutputLimit = opts.pubsubOutputLimit
	cfg.ShutdownTimeout = opts.shutdownTimeout
	cfg.Logger = logger.With("component", "proxy")
	return cfg
}

// listenClients opens --listen and --tls-listen, whichever are set, and
// returns their addresses (empty when not set). A single plain listener is
// served as it is, so plain clients keep their path untouched; with TLS
// both go through a proxy.Listener.
func listenClients(opts options, serverTLS *tls.Config, logger *slog.Logger) (ln net.Listener, plainAddr, tlsAddr string, err error) {
	var plain net.Listener
	if opts.listen != "" {
		if plain, err = net.Listen("tcp", opts.listen); err != nil {
			return nil, "", "", fmt.Errorf("cannot listen on %s: %w", opts.listen, err)
		}
		plainAddr = plain.Addr().String()
		if serverTLS == nil {
			return plain, plainAddr, "", nil
		}
	}
	secure, err := net.Listen("tcp", opts.tls.listen)
	if err != nil {
		if plain != nil {
			_ = plain.Close()
		}
		return nil, "", "", fmt.Errorf("cannot listen on %s (--tls-listen): %w", opts.tls.listen, err)
	}
	both, err := proxy.NewListener(plain, secure, serverTLS, logger.With("component", "proxy"))
	if err != nil {
		return nil, "", "", err
	}
	return both, plainAddr, secure.Addr().String(), nil
}

// newLogger logs at level and above to w, as key=value text or as JSON
// objects, one per line.
func newLogger(w io.Writer, json bool, level slog.Leveler) *slog.Logger {
	ho := &slog.HandlerOptions{Level: level}
	if json {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// startupFailed prints err as the one line a failed start leaves on stderr.
func startupFailed(stderr io.Writer, err error) {
	fmt.Fprintln(stderr, "kvproxy: "+oneLine(err))
}

// announceAddr is the address clients are told to use when --announce is
// not given: the listen address, or loopback when listening on every
// interface (no single address is right then).
func announceAddr(addr *net.TCPAddr, logger *slog.Logger) string {
	port := strconv.Itoa(addr.Port)
	if !addr.IP.IsUnspecified() {
		return net.JoinHostPort(addr.IP.String(), port)
	}
	announce := net.JoinHostPort("127.0.0.1", port)
	logger.Warn("listening on every interface: CLUSTER SLOTS will name loopback; set --announce to an address clients can reach",
		"announce", announce)
	return announce
}

// printDemo tells the user what the demo started and how to try it.
func printDemo(w io.Writer, sim *kvsim.Cluster, announce string, clientAuth, adminAuth bool) {
	host, port, _ := net.SplitHostPort(announce)
	cli := "redis-cli -p " + port
	if host != "127.0.0.1" && host != "localhost" {
		cli = "redis-cli -h " + host + " -p " + port
	}
	if clientAuth {
		cli += " --askpass"
	}
	master := sim.Masters()[0]
	replica := sim.ReplicasOf(master.ID())[0]
	fmt.Fprintln(w, "kvproxy demo: a simulated Kvrocks cluster (3 shards x 1 replica) on loopback:")
	fmt.Fprint(w, sim.Table())
	fmt.Fprintf(w, "Its controller speaks kvrocks-controller's HTTP API at %s (namespace %s, cluster %s).\n",
		sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster)
	fmt.Fprintf(w, "\nkvproxy listens on %s. Try:\n", announce)
	fmt.Fprintf(w, "  %s SET greeting hello\n", cli)
	fmt.Fprintf(w, "  %s GET greeting\n", cli)
	fmt.Fprintf(w, "  %s CLUSTER SLOTS\n", cli)
	fmt.Fprintf(w, "\nGraceful failover of shard 0 (master %s, replica %s), an admin command of\n", master.Addr(), replica.Addr())
	fmt.Fprintln(w, "the proxy: it sends CLUSTERX FAILOVER to the shard's master, holds the shard's writes through")
	fmt.Fprintln(w, "the handover and has the cluster's controller record it. Run it again to fail back:")
	admin := cli
	if adminAuth {
		admin = strings.Replace(cli, " --askpass", "", 1) + " --user admin --askpass"
	}
	fmt.Fprintf(w, "  %s PROXY FAILOVER 0\n", admin)
	fmt.Fprintln(w, "The roles as the proxy routes by them:")
	fmt.Fprintf(w, "  %s PROXY NODES\n", cli)
	fmt.Fprintf(w, "  %s INFO failover\n", cli)
	fmt.Fprintln(w, "\nCtrl-C stops the proxy and the cluster.")
}

// goRedisLog sends go-redis' internal messages to slog at debug level.
type goRedisLog struct{ log *slog.Logger }

func (l goRedisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
