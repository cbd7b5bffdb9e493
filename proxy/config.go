package proxy

import (
	"errors"
	"log/slog"
	"net"
	"strconv"
	"time"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// Config says how the proxy serves its clients. Start from DefaultConfig;
// every field must hold a valid value (Validate): zero is never read as "use
// the default".
type Config struct {
	// ListenAddr is the host:port the command line listens on. Serve takes
	// its listener from the caller, so the Server itself only reports it.
	ListenAddr string
	// Password, when not empty, is the default user's: AUTH <password> (or
	// HELLO ... AUTH default <password>) before any other command is
	// served. That user may read and write, and runs the admin commands
	// when no user is an admin.
	Password string
	// AnnounceAddr is the host:port the proxy advertises in CLUSTER SLOTS,
	// CLUSTER NODES and INFO, so cluster-aware clients keep talking to the
	// proxy. It must be reachable by the clients.
	AnnounceAddr string
	// MaxBulkLen is the largest bulk string a client may send (Redis'
	// proto-max-bulk-len); a longer one closes the connection with an error.
	MaxBulkLen int
	// MaxArgs is the largest number of arguments in one command; more closes
	// the connection with an error.
	MaxArgs int
	// MaxRequestBytes bounds the bytes of one command, so a client cannot
	// make the proxy buffer an endless request: a command whose headers
	// announce more is refused with an error before it is read whole, and
	// the connection is closed, as Redis does past client-query-buffer-limit.
	MaxRequestBytes int64
	// MaxPipeline is how many of a client's pipelined commands are sent to
	// the backends as one batch; a longer pipeline is served in several
	// batches, in order, so the requests and replies held per client stay
	// bounded.
	MaxPipeline int
	// MaxOutputBytes is how many reply bytes are buffered for one client
	// before they are written out; writing blocks while the client does not
	// read, so a client's pending output stays under this plus one reply.
	// Subscribers have a limit of their own, PubSubOutputLimit.
	MaxOutputBytes int
	// PubSubOutputLimit caps the bytes of messages and replies pending for
	// one subscriber (Redis' client-output-buffer-limit pubsub hard limit).
	// A subscriber is never dropped for reaching it: the proxy stops reading
	// that subscriber's own backend connections until it has drained half of
	// it, so the backend holds the rest (TCP backpressure). Its pending
	// output stays under this plus one message per backend connection.
	PubSubOutputLimit int64
	// PubSubStallTimeout is how long a subscriber at PubSubOutputLimit may
	// take no byte of its output before it is disconnected: it reads
	// nothing, and keeping its subscription only keeps the backend
	// buffering for it.
	PubSubStallTimeout time.Duration
	// MaxClients is how many clients may be connected at once (Redis'
	// maxclients); one more is answered "-ERR max number of clients
	// reached" and closed. Each client costs a file descriptor: the command
	// line lowers it to what RLIMIT_NOFILE allows.
	MaxClients int
	// ClientOutputLimit bounds the reply bytes the proxy keeps for one
	// client, from their arrival until they are written to its socket
	// (Redis' client-output-buffer-limit): a client whose replies would
	// pass it (a pipeline of big replies it does not read, one reply larger
	// than the limit) is disconnected, its pending requests dropped, and
	// the replies still arriving for it discarded as they stream in.
	// Pub/Sub messages have a cap of their own.
	ClientOutputLimit int64
	// MaxBlockingConns is how many blocking commands (BLPOP, XREAD BLOCK,
	// WAIT ...) may wait at once, each on a backend connection of its own;
	// past it they are refused with an error.
	MaxBlockingConns int
	// EventLoops is how many event loops read the clients (Linux only):
	// zero means one per processor (GOMAXPROCS), a negative number none,
	// every client then having a goroutine of its own.
	EventLoops int
	// AdminPassword, when not empty, is the password of the user named
	// admin, of role admin: AUTH admin <password> (or HELLO ... AUTH admin
	// <password>) before admin commands such as CLUSTERX FAILOVER. When no
	// user is an admin, every user but the read-only ones may run them.
	AdminPassword string
	// Users are named users besides the default and admin ones, each
	// AUTHing as AUTH <name> <password> (or HELLO ... AUTH) and limited by
	// its Role. With Users, every connection must AUTH: the default user
	// then exists only when Password is set.
	Users []User
	// Handovers, when set, follows every CLUSTERX FAILOVER a master
	// accepted through the proxy, holding the shard's writes through it.
	Handovers Handovers
	// Authority, when set, is told of every failover the proxy started
	// (CLUSTERX FAILOVER, PROXY FAILOVER) that succeeded on a Kvrocks
	// cluster, so its next topology push keeps the new master. When nil, no
	// controller is configured: each such failover is logged as a warning
	// and counted in INFO failover (controller_unreported), and PROXY
	// FAILOVER says so in its reply.
	Authority TopologyAuthority
	// ShutdownTimeout bounds how long Close waits for in-flight batches
	// before it cancels them and closes every client connection.
	ShutdownTimeout time.Duration
	// Logger receives connection-level events (protocol errors, shutdown);
	// nothing is logged per request unless its level is Debug.
	Logger *slog.Logger
}

// Defaults mirror Redis where Redis has a setting.
const (
	// DefaultMaxBulkLen is Redis' default proto-max-bulk-len.
	DefaultMaxBulkLen = resp.DefaultMaxBulkLen
	// DefaultMaxArgs allows a million arguments, far more than any real
	// client sends, while bounding the per-command argument table.
	DefaultMaxArgs = 1 << 20
	// DefaultMaxRequestBytes lets through a bulk string of Redis' default
	// proto-max-bulk-len with little more; a request costs the proxy about
	// twice its size while it is served.
	DefaultMaxRequestBytes = 512 << 20
	// DefaultMaxClients is Redis' default maxclients.
	DefaultMaxClients = 10000
	// DefaultPubSubOutputLimit is Redis' default hard limit for
	// subscribers (client-output-buffer-limit pubsub 32mb 8mb 60).
	DefaultPubSubOutputLimit = 32 << 20
	// DefaultPubSubStallTimeout is the 60 seconds of that Redis setting:
	// there a subscriber over 8 MB for 60 s is dropped even if it reads;
	// here only one that took nothing for that long while at the limit.
	DefaultPubSubStallTimeout = 60 * time.Second
)

// Upper bounds Validate enforces, so a mistyped value is refused at start.
const (
	// MaxMaxClients bounds MaxClients: a million connections is past what
	// one process serves well.
	MaxMaxClients = 1_000_000
	// MaxMaxBlockingConns bounds MaxBlockingConns: each waits on a backend
	// connection of its own.
	MaxMaxBlockingConns = 100_000
	// MinClientOutputLimit and MaxClientOutputLimit bound ClientOutputLimit:
	// below 64 KiB ordinary replies would disconnect clients; above 64 GiB
	// the limit bounds nothing a machine has.
	MinClientOutputLimit = 64 << 10
	MaxClientOutputLimit = 64 << 30
	// MaxPubSubOutputLimit bounds PubSubOutputLimit: more per subscriber
	// is a typo, not a plan.
	MaxPubSubOutputLimit = 16 << 30
)

// DefaultConfig returns a Config listening on 127.0.0.1:6380 with Redis'
// limits.
func DefaultConfig() Config {
	return Config{
		ListenAddr:      "127.0.0.1:6380",
		AnnounceAddr:    "127.0.0.1:6380",
		MaxBulkLen:      DefaultMaxBulkLen,
		MaxArgs:         DefaultMaxArgs,
		MaxRequestBytes: DefaultMaxRequestBytes,
		MaxPipeline:     1024,
		MaxOutputBytes:  1 << 20,
		// ClientOutputLimit: 64 MiB, twice Redis' hard limit for
		// Pub/Sub clients, for commands that reply in bulk.
		ClientOutputLimit:  64 << 20,
		PubSubOutputLimit:  DefaultPubSubOutputLimit,
		PubSubStallTimeout: DefaultPubSubStallTimeout,
		MaxClients:         DefaultMaxClients,
		MaxBlockingConns:   1000,
		ShutdownTimeout:    10 * time.Second,
		Logger:             slog.New(slog.DiscardHandler),
	}
}

// Validate reports the first field that holds an unusable value.
func (c *Config) Validate() error {
	if err := checkHostPort(c.ListenAddr, false); err != nil {
		return errors.New("proxy: Config.ListenAddr: " + err.Error())
	}
	if err := checkHostPort(c.AnnounceAddr, true); err != nil {
		return errors.New("proxy: Config.AnnounceAddr: " + err.Error())
	}
	checks := []struct {
		ok   bool
		rule string
	}{
		{c.MaxBulkLen > 0 && int64(c.MaxBulkLen) <= router.MaxMaxBulkLen, "MaxBulkLen must be 1 to " + strconv.FormatInt(router.MaxMaxBulkLen, 10)},
		{c.MaxArgs > 0, "MaxArgs must be positive"},
		{c.MaxRequestBytes > 0, "MaxRequestBytes must be positive"},
		{c.MaxPipeline > 0, "MaxPipeline must be positive"},
		{c.MaxOutputBytes > 0, "MaxOutputBytes must be positive"},
		{c.ClientOutputLimit >= MinClientOutputLimit && c.ClientOutputLimit <= MaxClientOutputLimit,
			"ClientOutputLimit must be " + strconv.Itoa(MinClientOutputLimit) + " to " + strconv.FormatInt(MaxClientOutputLimit, 10)},
		{c.PubSubOutputLimit > 0 && c.PubSubOutputLimit <= MaxPubSubOutputLimit, "PubSubOutputLimit must be 1 to " + strconv.FormatInt(MaxPubSubOutputLimit, 10)},
		{c.PubSubStallTimeout > 0, "PubSubStallTimeout must be positive"},
		{c.MaxClients > 0 && c.MaxClients <= MaxMaxClients, "MaxClients must be 1 to " + strconv.Itoa(MaxMaxClients)},
		{c.MaxBlockingConns > 0 && c.MaxBlockingConns <= MaxMaxBlockingConns, "MaxBlockingConns must be 1 to " + strconv.Itoa(MaxMaxBlockingConns)},
		{c.ShutdownTimeout > 0, "ShutdownTimeout must be positive"},
		{c.Logger != nil, "Logger must not be nil"},
	}
	for _, check := range checks {
		if !check.ok {
			return errors.New("proxy: Config." + check.rule)
		}
	}
	if _, err := newCredentials(c); err != nil {
		return errors.New("proxy: Config." + err.Error())
	}
	return nil
}

// checkHostPort accepts host:port with a numeric port. An address clients
// dial (the announce address) needs a host; a listen address may omit it.
func checkHostPort(addr string, needHost bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if needHost && host == "" {
		return errors.New("missing host in " + strconv.Quote(addr))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("bad port in " + strconv.Quote(addr))
	}
	return nil
}
