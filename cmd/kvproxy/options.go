package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"kvproxy/failover"
	"kvproxy/proxy"
	"kvproxy/router"
)

// envPrefix starts the environment variable of every flag: --backend-conns
// is KVPROXY_BACKEND_CONNS.
const envPrefix = "KVPROXY_"

// defaultBackendConns is the number of multiplexed connections per backend
// node when --backend-conns is not given.
const defaultBackendConns = 4

// The range of --max-request-bytes: from Redis' smallest proto-max-bulk-len
// to more than any machine could buffer.
const (
	minMaxRequestBytes = 1 << 20
	maxMaxRequestBytes = 64 << 30
)

// minPubSubOutputLimit is the least --pubsub-output-limit: below it a
// subscriber's cluster connections would stop every few messages.
const minPubSubOutputLimit = 64 << 10

// The range of --refresh-interval: a reload (CLUSTER INFO, SLOTS and NODES
// on one node) ten times a second at most, and a push picked up within
// minutes at least.
const (
	minRefreshInterval = 100 * time.Millisecond
	// defaultControllerTimeout leaves a controller's failover (a 500 ms
	// pause, a sync wait, the pushes) room on a busy machine.
	defaultControllerTimeout = 10 * time.Second
	maxRefreshInterval       = 10 * time.Minute
)

// maxProcs bounds --procs: far more than any machine's processors.
const maxProcs = 4096

// maxShutdownTimeout bounds --shutdown-timeout: longer than any request
// should take, short enough that a stuck shutdown still ends.
const maxShutdownTimeout = time.Hour

// options is the command line once parsed and checked.
type options struct {
	listen          string
	seeds           []string
	password        string
	backendPassword string
	adminPassword   string
	backendConns    int
	// announce is empty when the listen address is to be announced.
	announce string
	logLevel slog.Level
	// logJSON: --log-format json.
	logJSON    bool
	maxBulkLen int
	// maxRequestBytes is proxy.Config.MaxRequestBytes.
	maxRequestBytes int64
	// maxBlockingConns is proxy.Config.MaxBlockingConns.
	maxBlockingConns int
	// maxClients is proxy.Config.MaxClients, before the open file limit
	// has its say (fitDescriptors).
	maxClients int
	// holdTimeout is router.Config.HoldTimeout.
	holdTimeout time.Duration
	// holdMaxBytes is failover.Config.MaxBytes.
	holdMaxBytes int64
	// clientOutputLimit is proxy.Config.ClientOutputLimit.
	clientOutputLimit int64
	// deadTimeout is router.Config.DeadTimeout.
	deadTimeout time.Duration
	// pubsubOutputLimit is proxy.Config.PubSubOutputLimit.
	pubsubOutputLimit int64
	// refreshInterval is router.Config.RefreshInterval.
	refreshInterval time.Duration
	// controller* reach the kvrocks-controller that owns the topology
	// (controller.New); controllerURL empty means none.
	controllerURL, controllerNamespace, controllerCluster, controllerToken string
	controllerTimeout                                                      time.Duration
	demo                                                                   bool
	// shutdownTimeout is proxy.Config.ShutdownTimeout.
	shutdownTimeout time.Duration
	// procs is GOMAXPROCS; 0 leaves main's default.
	procs int
	// showVersion: print the version and exit (--version).
	showVersion bool
	// metricsListen is where /metrics, /healthz and /readyz are served;
	// empty: nowhere.
	metricsListen string
	// configFile is --config: the YAML file under the environment and
	// the flags; empty: none.
	configFile string
	// printConfig: print the effective configuration and exit.
	printConfig bool
	// users are the file's users: (proxy.Config.Users).
	users []proxy.User
	tls   tlsOptions
}

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// newFlagSet declares every flag into o. The flag package prints nothing:
// run reports a bad command line as one line of its own.
func newFlagSet(o *options, seeds, logLevel, logFormat *string) *flag.FlagSet {
	fs := flag.NewFlagSet("kvproxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:6380", "`host:port` the proxy accepts clients on")
	fs.StringVar(seeds, "seeds", "", "comma-separated `host:port` list of cluster nodes; any node of the cluster will do")
	fs.StringVar(&o.password, "password", "", "password clients must give with AUTH (empty: no AUTH needed)")
	fs.StringVar(&o.backendPassword, "backend-password", "", "password the proxy sends with AUTH to every cluster node")
	fs.StringVar(&o.adminPassword, "admin-password", "", "password of the admin user (AUTH admin <password>), needed for CLUSTERX FAILOVER (empty: anyone authenticated may)")
	fs.IntVar(&o.backendConns, "backend-conns", defaultBackendConns, "multiplexed connections per cluster node")
	fs.StringVar(&o.announce, "announce", "", "`host:port` CLUSTER SLOTS and CLUSTER NODES report for the proxy (default: the listen address)")
	fs.StringVar(logLevel, "log-level", "info", "log level on stderr: debug, info, warn or error")
	fs.StringVar(logFormat, "log-format", "text", "log line format on stderr: text (key=value) or json")
	fs.IntVar(&o.maxBulkLen, "max-bulk-len", proxy.DefaultMaxBulkLen, "largest bulk string, in bytes, accepted from a client or a cluster node")
	fs.Int64Var(&o.maxRequestBytes, "max-request-bytes", proxy.DefaultMaxRequestBytes,
		"largest request (a command and its arguments), in bytes, accepted from a client; a larger one gets an error before it is read whole and its connection is closed")
	fs.IntVar(&o.maxBlockingConns, "max-blocking-conns", proxy.DefaultConfig().MaxBlockingConns,
		"blocking commands (BLPOP, XREAD BLOCK, WAIT ...) that may wait at once, each on a cluster connection of its own; more are refused")
	fs.IntVar(&o.maxClients, "max-clients", proxy.DefaultMaxClients,
		"clients that may be connected at once; the next one gets \"-ERR max number of clients reached\" (lowered, with a warning, to what the open file limit allows)")
	fs.DurationVar(&o.holdTimeout, "hold-timeout", router.DefaultConfig().HoldTimeout,
		"longest a write waits inside the proxy while its shard's master fails over; then the client gets TRYAGAIN")
	fs.Int64Var(&o.holdMaxBytes, "hold-max-bytes", failover.DefaultConfig().MaxBytes,
		"most bytes of requests held at once across all failing-over shards; past it a write gets TRYAGAIN at once")
	fs.Int64Var(&o.clientOutputLimit, "client-output-limit", proxy.DefaultConfig().ClientOutputLimit,
		"most reply bytes the proxy keeps for one client until it reads them; a client past it is disconnected")
	fs.DurationVar(&o.deadTimeout, "backend-dead-timeout", router.DefaultConfig().DeadTimeout,
		"how long a cluster node may leave its liveness probes unanswered before the requests already sent to it are answered (writes: may have run)")
	fs.Int64Var(&o.pubsubOutputLimit, "pubsub-output-limit", proxy.DefaultPubSubOutputLimit,
		"bytes of messages pending for one subscriber; at it the proxy stops reading that subscriber's cluster connections until it catches up (a subscriber that reads is never dropped)")
	fs.DurationVar(&o.refreshInterval, "refresh-interval", router.DefaultConfig().RefreshInterval,
		"period of the topology reload from the cluster: how long a topology pushed to an idle cluster may take to be routed by (with traffic, a MOVED tells at once)")
	fs.StringVar(&o.controllerURL, "controller", "",
		"`URL` of the kvrocks-controller that owns the cluster's topology (e.g. http://127.0.0.1:9379): failovers through the proxy are recorded there, and on Kvrocks without CLUSTERX FAILOVER done by it (empty: none, and a controller push may undo a failover done through the proxy)")
	fs.StringVar(&o.controllerNamespace, "controller-namespace", "", "the cluster's namespace in the controller (needed with --controller)")
	fs.StringVar(&o.controllerCluster, "controller-cluster", "", "the cluster's name in the controller (needed with --controller)")
	fs.StringVar(&o.controllerToken, "controller-token", "", "bearer token sent to the controller, for a gateway in front of it (upstream has no authentication)")
	fs.DurationVar(&o.controllerTimeout, "controller-timeout", defaultControllerTimeout,
		"longest wait for one answer of the controller, a failover included (it pauses writes up to 500 ms and waits for the replica)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", proxy.DefaultConfig().ShutdownTimeout,
		"on SIGINT or SIGTERM, how long the proxy waits for the requests in flight to be answered before it closes every connection")
	fs.IntVar(&o.procs, "procs", 0,
		"processors the proxy runs on (GOMAXPROCS: event loops and everything else); 0: half of the machine's, at least one, or GOMAXPROCS when that is set. A proxy sharing its host with the cluster or the clients does more per CPU on fewer (bench/RESULTS.md); on a host of its own, give it every core")
	fs.StringVar(&o.metricsListen, "metrics-listen", "",
		"`host:port` serving Prometheus metrics on /metrics, /healthz and /readyz over HTTP (empty: off)")
	o.tls.declare(fs)
	fs.StringVar(&o.configFile, "config", "",
		"YAML `file` of settings keyed by flag name (hold-timeout: 2.5s), under the environment and the flags; SIGHUP reloads it")
	fs.BoolVar(&o.printConfig, "print-config", false, "print the effective configuration as YAML (loadable with --config, secrets masked) and exit")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit (as `kvproxy version`)")
	fs.BoolVar(&o.demo, "demo", false, "start a simulated Kvrocks cluster (3 shards x 1 replica) on free loopback ports and proxy it")
	return fs
}

// usage is what -h prints.
func usage() string {
	var o options
	var seeds, logLevel, logFormat string
	fs := newFlagSet(&o, &seeds, &logLevel, &logFormat)
	var b strings.Builder
	b.WriteString("usage: kvproxy --seeds host:port[,host:port...] [flags]\n")
	b.WriteString("       kvproxy --demo [flags]\n")
	b.WriteString("       kvproxy version\n\n")
	b.WriteString("kvproxy is a RESP proxy in front of a Kvrocks cluster or a Redis Cluster.\n")
	b.WriteString("Every flag can also be set through its environment variable or in the --config file;\n")
	b.WriteString("the flag wins over the variable, the variable over the file, the file over the default.\n\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, text := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  %s  (env %s)\n", strings.TrimSpace("--"+f.Name+" "+name), envName(f.Name))
		fmt.Fprintf(&b, "        %s", text)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	})
	return b.String()
}

// parseOptions reads the --config file, then the environment (through env),
// then the command line args, each winning over the one before, and checks
// the result. It returns flag.ErrHelp for -h.
func parseOptions(args []string, env func(string) string) (options, error) {
	o, _, err := loadSettings(args, env)
	return o, err
}

// loadSettings is parseOptions, also returning the flag set that holds the
// effective value of every setting (for --print-config). Every bad setting
// of the file, the environment and the checks is reported in the one error.
func loadSettings(args []string, env func(string) string) (options, *flag.FlagSet, error) {
	var o options
	var seeds, logLevel, logFormat string
	fs := newFlagSet(&o, &seeds, &logLevel, &logFormat)
	var problems []string
	var users []proxy.User
	if path := configPath(args, env); path != "" {
		var fileProblems []string
		var err error
		users, fileProblems, err = readConfigFile(fs, path)
		if err != nil {
			return options{}, nil, err
		}
		if len(fileProblems) > 0 {
			problems = append(problems, "--config "+path+": "+strings.Join(fileProblems, "; "))
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		value := env(envName(f.Name))
		if value == "" {
			return
		}
		if err := setFlag(fs, f.Name, value); err != nil {
			problems = append(problems, fmt.Sprintf("environment variable %s=%q is not a valid --%s (%v)", envName(f.Name), value, f.Name, err))
		}
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return options{}, nil, err
		}
		return options{}, nil, fmt.Errorf("%v (see kvproxy -h)", err)
	}
	if o.showVersion {
		return o, fs, nil
	}
	if fs.NArg() > 0 {
		return options{}, nil, fmt.Errorf("unexpected argument %q: every setting is a --flag (see kvproxy -h)", fs.Arg(0))
	}
	for _, s := range strings.Split(seeds, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.seeds = append(o.seeds, s)
		}
	}
	if level, err := parseLevel(logLevel); err != nil {
		problems = append(problems, err.Error())
	} else {
		o.logLevel = level
	}
	switch strings.ToLower(logFormat) {
	case "text":
	case "json":
		o.logJSON = true
	default:
		problems = append(problems, fmt.Sprintf("--log-format %q: want text or json", logFormat))
	}
	fs.VisitAll(func(f *flag.Flag) {
		if isSecret(f.Name) && f.Value.String() == maskedSecret {
			problems = append(problems, fmt.Sprintf("--%s is %s, as --print-config shows it: give the secret itself", f.Name, maskedSecret))
		}
	})
	o.users = users
	for _, u := range users {
		if u.Password == maskedSecret {
			problems = append(problems, fmt.Sprintf("user %q: password is %s, as --print-config shows it: give the password itself", u.Name, maskedSecret))
		}
	}
	problems = append(problems, o.problems()...)
	if len(problems) > 0 {
		return options{}, nil, errors.New(strings.Join(problems, "; "))
	}
	return o, fs, nil
}

// parseLevel accepts the four slog level names, in any case.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}

// problems lists every setting that cannot work, each naming its flag.
func (o options) problems() []string {
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	switch {
	case o.demo && len(o.seeds) > 0:
		add("--seeds and --demo exclude each other: --demo proxies a cluster of its own")
	case !o.demo && len(o.seeds) == 0:
		add("no --seeds: name at least one cluster node as host:port (or try --demo)")
	}
	if o.holdTimeout <= 0 || o.holdTimeout > router.MaxHoldTimeout {
		add("--hold-timeout %v: want a positive duration up to %v", o.holdTimeout, router.MaxHoldTimeout)
	}
	if o.deadTimeout < router.MinDeadTimeout || o.deadTimeout > router.MaxDeadTimeout {
		add("--backend-dead-timeout %v: want %v to %v", o.deadTimeout, router.MinDeadTimeout, router.MaxDeadTimeout)
	}
	if o.refreshInterval < minRefreshInterval || o.refreshInterval > maxRefreshInterval {
		add("--refresh-interval %v: want %v to %v", o.refreshInterval, minRefreshInterval, maxRefreshInterval)
	}
	switch {
	case o.controllerURL == "" && (o.controllerNamespace != "" || o.controllerCluster != "" || o.controllerToken != ""):
		add("--controller-namespace, --controller-cluster and --controller-token need --controller")
	case o.demo && o.controllerURL != "":
		add("--controller and --demo exclude each other: the demo's cluster has a controller of its own")
	case o.controllerURL != "" && (o.controllerNamespace == "" || o.controllerCluster == ""):
		add("--controller needs --controller-namespace and --controller-cluster")
	}
	if o.controllerTimeout < time.Second || o.controllerTimeout > 10*time.Minute {
		add("--controller-timeout %v: want 1s to 10m", o.controllerTimeout)
	}
	if o.procs < 0 || o.procs > maxProcs {
		add("--procs %d: want 0 (automatic) to %d", o.procs, maxProcs)
	}
	if o.shutdownTimeout <= 0 || o.shutdownTimeout > maxShutdownTimeout {
		add("--shutdown-timeout %v: want a positive duration up to %v", o.shutdownTimeout, maxShutdownTimeout)
	}
	if o.clientOutputLimit < proxy.MinClientOutputLimit || o.clientOutputLimit > proxy.MaxClientOutputLimit {
		add("--client-output-limit %d: want %d (64 KiB) to %d (64 GiB)", o.clientOutputLimit, proxy.MinClientOutputLimit, int64(proxy.MaxClientOutputLimit))
	}
	for _, c := range []struct {
		flag      string
		value, hi int64
	}{
		{"backend-conns", int64(o.backendConns), router.MaxConnsPerNode},
		{"max-bulk-len", int64(o.maxBulkLen), router.MaxMaxBulkLen},
		{"max-blocking-conns", int64(o.maxBlockingConns), proxy.MaxMaxBlockingConns},
		{"max-clients", int64(o.maxClients), proxy.MaxMaxClients},
		{"hold-max-bytes", o.holdMaxBytes, failover.MaxMaxBytes},
	} {
		if c.value < 1 || c.value > c.hi {
			add("--%s %d: want 1 to %d", c.flag, c.value, c.hi)
		}
	}
	if o.maxRequestBytes < minMaxRequestBytes || o.maxRequestBytes > maxMaxRequestBytes {
		add("--max-request-bytes %d: want %d (1 MiB) to %d (64 GiB)", o.maxRequestBytes, minMaxRequestBytes, maxMaxRequestBytes)
	}
	if o.pubsubOutputLimit < minPubSubOutputLimit || o.pubsubOutputLimit > proxy.MaxPubSubOutputLimit {
		add("--pubsub-output-limit %d: want %d (64 KiB) to %d (16 GiB)", o.pubsubOutputLimit, minPubSubOutputLimit, int64(proxy.MaxPubSubOutputLimit))
	}
	if err := o.tls.validate(o.listen, o.demo); err != nil {
		add("%v", err)
	}
	if o.listen != "" {
		if err := checkAddr(o.listen, false); err != nil {
			add("--listen %q: %v", o.listen, err)
		}
	}
	for _, s := range o.seeds {
		if err := checkAddr(s, true); err != nil {
			add("--seeds: %q: %v", s, err)
		}
	}
	if o.metricsListen != "" {
		if err := checkAddr(o.metricsListen, false); err != nil {
			add("--metrics-listen %q: %v", o.metricsListen, err)
		}
	}
	if o.announce != "" {
		if err := checkAddr(o.announce, true); err != nil {
			add("--announce %q: %v", o.announce, err)
		}
	}
	if err := proxy.CheckUsers(o.password, o.adminPassword, o.users); err != nil {
		add("%v", err)
	}
	return bad
}

// checkAddr accepts host:port with a numeric port; needHost is for addresses
// that are dialled rather than listened on.
func checkAddr(addr string, needHost bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if needHost && host == "" {
		return errors.New("missing host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || needHost && n == 0 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}
