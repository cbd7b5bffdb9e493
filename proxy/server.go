package proxy

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// Backend is what the proxy needs from the router; *router.Router implements
// it, and tests use scripted ones.
type Backend interface {
	// Do sends every request and returns once each has its Reply.
	Do(ctx context.Context, reqs []*router.Request)
	// Masters lists the master addresses in a stable order (fan-out
	// commands visit them in this order).
	Masters() []string
	// Topology describes the backends as the router routes to them.
	Topology() router.Topology
}

// ErrServerClosed is returned by Serve once Close has run.
var ErrServerClosed = errors.New("proxy: server closed")

// Server is the client side of the proxy: it speaks RESP to clients and sends
// their commands, batched per client pipeline, to the Backend.
type Server struct {
	cfg     Config
	backend Backend
	logger  *slog.Logger
	// nodeID is the 40-character id the proxy gives itself in CLUSTER
	// replies, derived from the announce address so it is stable.
	nodeID string
	// announce is what CLUSTER replies name to plain clients, tlsAnnounce
	// to TLS clients.
	announce, tlsAnnounce announcement
	started               time.Time
	limits                resp.RequestLimits
	// creds are the users (auth.go); the limits below are Config's that
	// Reload changes: read once per accepted connection.
	creds             atomic.Pointer[credentials]
	maxClients        atomic.Int64
	maxRequestBytes   atomic.Int64
	clientOutputLimit atomic.Int64
	pubsubOutputLimit atomic.Int64
	// Rate-limited logs of failed AUTHs, of requests the guard refused and
	// of subscribers dropped for reading nothing at their output limit.
	authFailureLog *rateLimitedLog
	badRequestLog  *rateLimitedLog
	outputLimitLog *rateLimitedLog
	stalledSubLog  *rateLimitedLog
	maxClientsLog  *rateLimitedLog

	// ctx is handed to Backend.Do; Close cancels it once the shutdown
	// budget is spent.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	closing  bool
	serving  bool
	sessions map[*session]struct{}
	// sessionsDone counts live sessions; Close waits for it.
	sessionsDone sync.WaitGroup
	// shuttingDown mirrors closing for the data path, without the lock.
	shuttingDown atomic.Bool
	serveDone    chan struct{}
	// stop is closed by Close: it ends Serve's pause after a failed accept
	// and releaseMemoryWhenQuiet's wait.
	stop     chan struct{}
	listener net.Listener
	loops    []*eventLoop

	nextClientID atomic.Int64
	stats        stats
	requests     requestStats
	memory       memoryRelease
	scanCursors  scanCursors

	// dedicated is the backend as a DedicatedBackend, nil when it is not one
	// (transactions, blocking commands and Pub/Sub are then refused); pool
	// keeps its idle dedicated connections.
	dedicated DedicatedBackend
	pool      *nodePool
	// blockingSlots holds a token per blocking command in progress.
	blockingSlots chan struct{}

	// background runs what follows a failover the proxy started
	// (afterHandover); Close waits for it.
	background sync.WaitGroup
	// failing marks the masters of shards a PROXY FAILOVER works on.
	failingMu sync.Mutex
	failing   map[string]bool
}

// stats are the counters INFO reports.
type stats struct {
	connectionsReceived atomic.Int64
	connectedClients    atomic.Int64
	commandsProcessed   atomic.Int64
	// rejectedRequests counts the connections the protocol guard closed
	// for a bad request; rejectedRequestsTooLarge those of them past a
	// size limit (the others are malformed).
	rejectedRequests         atomic.Int64
	rejectedRequestsTooLarge atomic.Int64
	// rejectedConnections counts clients turned away at MaxClients.
	rejectedConnections atomic.Int64
	// authFailures counts failed AUTH and HELLO ... AUTH attempts.
	authFailures atomic.Int64
	// outputLimitDisconnections counts clients disconnected for passing
	// ClientOutputLimit.
	outputLimitDisconnections atomic.Int64
	// pubsubOutputLimitPauses counts the times a subscriber's pending output
	// reached PubSubOutputLimit and its backend connections stopped being
	// read; pubsubOutputLimitDisconnections the subscribers then dropped
	// for taking nothing within PubSubStallTimeout.
	pubsubOutputLimitPauses         atomic.Int64
	pubsubOutputLimitDisconnections atomic.Int64
	// pubsubPeakOutput is the most output ever pending for one subscriber.
	pubsubPeakOutput atomic.Int64
	// Handovers the proxy started that succeeded: recorded by the topology
	// authority, and not (yet) recorded by it (no authority configured, or
	// its report still failing); authorityReportFailures counts the
	// attempts to tell it that failed.
	handoversReported       atomic.Int64
	handoversUnreported     atomic.Int64
	authorityReportFailures atomic.Int64
}

// notePubSubOutput raises pubsubPeakOutput to pending.
func (s *stats) notePubSubOutput(pending int64) {
	for {
		peak := s.pubsubPeakOutput.Load()
		if pending <= peak || s.pubsubPeakOutput.CompareAndSwap(peak, pending) {
			return
		}
	}
}

// New returns a Server that sends commands to backend, with its event loops
// started. It does not listen: call Serve. Close releases it.
func New(cfg Config, backend Backend) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if backend == nil {
		return nil, errors.New("proxy: nil Backend")
	}
	plain := newAnnouncement(cfg.AnnounceAddr)
	secure := plain
	if cfg.TLSAnnounceAddr != "" {
		secure = newAnnouncement(cfg.TLSAnnounceAddr)
	}
	sum := sha1.Sum([]byte("kvproxy " + cfg.AnnounceAddr))
	ctx, cancel := context.WithCancel(context.Background())
	dedicated, _ := backend.(DedicatedBackend)
	creds, err := newCredentials(&cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	loops, err := startEventLoops(cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	srv := &Server{
		loops:          loops,
		dedicated:      dedicated,
		pool:           newNodePool(dedicated),
		blockingSlots:  make(chan struct{}, cfg.MaxBlockingConns),
		cfg:            cfg,
		backend:        backend,
		logger:         cfg.Logger,
		nodeID:         hex.EncodeToString(sum[:]),
		announce:       plain,
		tlsAnnounce:    secure,
		started:        time.Now(),
		authFailureLog: newRateLimitedLog(cfg.Logger, slog.LevelWarn, "client authentication failed"),
		badRequestLog:  newRateLimitedLog(cfg.Logger, slog.LevelWarn, "closing client connection: bad request"),
		outputLimitLog: newRateLimitedLog(cfg.Logger, slog.LevelWarn, "closing client connection: its replies passed the client output limit"),
		stalledSubLog:  newRateLimitedLog(cfg.Logger, slog.LevelWarn, "pubsub: disconnecting a subscriber that reads nothing at its output limit"),
		maxClientsLog:  newRateLimitedLog(cfg.Logger, slog.LevelWarn, "client connection refused: max number of clients reached"),
		limits: resp.RequestLimits{
			MaxBulkLen:      int64(cfg.MaxBulkLen),
			MaxArgs:         int64(cfg.MaxArgs),
			MaxRequestBytes: cfg.MaxRequestBytes,
		},
		ctx:       ctx,
		cancel:    cancel,
		sessions:  make(map[*session]struct{}),
		serveDone: make(chan struct{}),
		stop:      make(chan struct{}),
		failing:   make(map[string]bool),
	}
	srv.takeLive(&cfg, creds)
	return srv, nil
}

// Reload takes on cfg's users and passwords (Password, AdminPassword,
// Users) and limits (MaxClients, MaxRequestBytes, ClientOutputLimit,
// PubSubOutputLimit) while serving; its other fields are not read. The
// users apply from each session's next command (followCredentials), the
// request and output limits to the connections and subscriptions that
// start after it. A cfg that does not validate changes nothing.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	creds, err := newCredentials(&cfg)
	if err != nil {
		return err
	}
	s.takeLive(&cfg, creds)
	return nil
}

// takeLive installs the settings Reload may change.
func (s *Server) takeLive(cfg *Config, creds *credentials) {
	s.maxClients.Store(int64(cfg.MaxClients))
	s.maxRequestBytes.Store(cfg.MaxRequestBytes)
	s.clientOutputLimit.Store(cfg.ClientOutputLimit)
	s.pubsubOutputLimit.Store(cfg.PubSubOutputLimit)
	s.creds.Store(creds)
}

// Serve accepts clients on ln until Close; it returns ErrServerClosed after
// Close, or net.ErrClosed when ln was closed by someone else. Any other
// accept error (EMFILE, ENFILE, ECONNABORTED ...) pauses accepting a while
// (failedAccepts) and the connected clients are served on. It may be called
// once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("proxy: Serve called twice")
	}
	s.serving = true
	s.listener = ln
	loops := s.loops
	s.mu.Unlock()
	defer close(s.serveDone)
	var failed failedAccepts
	for i := 0; ; i++ {
		nc, err := ln.Accept()
		if err != nil {
			if s.shuttingDown.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			timer := time.NewTimer(failed.add(err, s.logger))
			select {
			case <-timer.C:
			case <-s.stop:
				timer.Stop()
				return ErrServerClosed
			}
			continue
		}
		failed.recovered(s.logger)
		if s.stats.connectedClients.Load() >= s.maxClients.Load() {
			s.turnAway(nc)
			continue
		}
		c := s.newClient(nc)
		if c == nil {
			_ = nc.Close()
			continue
		}
		if s.logger.Enabled(context.Background(), slog.LevelDebug) {
			s.logger.Debug("client connection opened", "client", nc.RemoteAddr().String(), "id", c.sess.id)
		}
		var loop *eventLoop
		if len(loops) > 0 {
			loop = loops[i%len(loops)]
		}
		c.start(loop)
	}
}

// replyMaxClients is what a client past Config.MaxClients gets, in Redis'
// words, before its connection is closed.
var replyMaxClients = []byte("-ERR max number of clients reached\r\n")

// turnAway answers a client past MaxClients and closes its connection, as
// Redis does. The reply fits the empty send buffer of a new connection, so
// the write does not block the accept loop.
func (s *Server) turnAway(nc net.Conn) {
	s.stats.rejectedConnections.Add(1)
	s.maxClientsLog.Log("client", nc.RemoteAddr().String(), "maxclients", s.cfg.MaxClients)
	s.logger.Debug("client connection refused", "client", nc.RemoteAddr().String(), "reason", "maxclients")
	_, _ = nc.Write(replyMaxClients)
	_ = nc.Close()
}

// failedAccepts follows a burst of failed accepts: out of descriptors
// (EMFILE, ENFILE), a connection aborted before it was accepted. Serve
// pauses before each retry, 5 ms doubling up to 1 s as net/http does, so a
// lasting shortage does not spin, and logs the burst twice: when it starts
// and when accepting works again.
type failedAccepts struct {
	count int
	since time.Time
	pause time.Duration
}

const (
	firstAcceptPause = 5 * time.Millisecond
	maxAcceptPause   = time.Second
)

// add counts a failed accept and returns how long to pause.
func (f *failedAccepts) add(err error, logger *slog.Logger) time.Duration {
	if f.count == 0 {
		f.since = time.Now()
		f.pause = firstAcceptPause
		logger.Warn("cannot accept client connections: pausing and retrying; connected clients are still served", "err", err)
	} else {
		f.pause = min(2*f.pause, maxAcceptPause)
	}
	f.count++
	return f.pause
}

// recovered ends a burst once an accept succeeded.
func (f *failedAccepts) recovered(logger *slog.Logger) {
	if f.count == 0 {
		return
	}
	logger.Info("accepting client connections again", "failed_accepts", f.count, "after", time.Since(f.since).Round(time.Millisecond))
	*f = failedAccepts{}
}

// startEventLoops starts cfg.EventLoops loops (one per processor when
// zero); none when negative or unsupported.
func startEventLoops(cfg Config) ([]*eventLoop, error) {
	n := cfg.EventLoops
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if n < 0 || !eventLoopsSupported {
		return nil, nil
	}
	loops := make([]*eventLoop, 0, n)
	for range n {
		l, err := newEventLoop()
		if err != nil {
			for _, l := range loops {
				l.close()
			}
			return nil, fmt.Errorf("proxy: %w", err)
		}
		loops = append(loops, l)
	}
	return loops, nil
}

func (s *Server) isClosing() bool { return s.shuttingDown.Load() }

// Close shuts the server down gracefully: it stops accepting, lets every
// batch already read finish and be answered, then closes the client
// connections. Past Config.ShutdownTimeout, in-flight backend calls are
// cancelled and every connection is closed. The Backend is not closed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	s.shuttingDown.Store(true)
	close(s.stop)
	serving := s.serving
	var err error
	if s.listener != nil {
		err = s.listener.Close()
	}
	clients := make([]*client, 0, len(s.sessions))
	for sess := range s.sessions {
		if c, ok := sess.conn.(*client); ok {
			clients = append(clients, c)
		}
	}
	s.mu.Unlock()
	// Idle clients end now; busy ones once the batch in hand is answered.
	for _, c := range clients {
		_ = c.nc.SetReadDeadline(time.Now()) // wakes a goroutine's read
		c.attemptServe(nil)                  // ends an idle loop client
	}

	allDone := make(chan struct{})
	go func() {
		s.sessionsDone.Wait()
		close(allDone)
	}()
	timer := time.NewTimer(s.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-allDone:
	case <-timer.C:
		s.logger.Warn("shutdown timeout: cancelling in-flight requests and closing clients")
		s.cancel()
		s.mu.Lock()
		for sess := range s.sessions {
			_ = sess.netConn.Close()
		}
		s.mu.Unlock()
		<-allDone
	}
	s.cancel()
	s.background.Wait()
	s.pool.close()
	if serving {
		<-s.serveDone
	}
	for _, l := range s.loops {
		l.close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// closed releases a session whose connection ended; the caller holds its
// turn.
func (s *Server) closed(sess *session, err error) {
	if s.logger.Enabled(context.Background(), slog.LevelDebug) {
		reason := sess.closeReason(err)
		attrs := []any{"client", sess.remoteAddr(), "id", sess.id, "reason", reason,
			"duration", time.Since(sess.created).Round(time.Millisecond)}
		if reason == closedOnError {
			attrs = append(attrs, "err", err)
		}
		s.logger.Debug("client connection closed", attrs...)
	}
	sess.releaseDedicated()
	sess.hangUp()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.stats.connectedClients.Add(-1)
	s.clientLeft()
	s.sessionsDone.Done()
}

// Why a client connection closed, as logged at debug level; the session
// records the reasons the error does not tell (closeCause).
const (
	closedByClient       = "client_closed"
	closedQuit           = "quit"
	closedKilled         = "killed"
	closedBadRequest     = "bad_request"
	closedOutputLimit    = "output_limit"
	closedAuthFailures   = "auth_failures"
	closedShutdown       = "shutdown"
	closedTimeout        = "timeout"
	closedOnError        = "error"
	closedSubscriberSlow = "pubsub_output_limit"
)

// closeReason tells why the session's connection ended with err.
func (sess *session) closeReason(err error) string {
	if cause, ok := sess.closeCause.Load().(string); ok {
		return cause
	}
	switch {
	case sess.shown.killed.Load():
		return closedKilled
	case errors.Is(err, errRefused):
		return closedBadRequest
	case errors.Is(err, errSubscriberStalled):
		return closedSubscriberSlow
	case sess.quit:
		return closedQuit
	case sess.srv.isClosing():
		return closedShutdown
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		return closedByClient
	case isTimeout(err):
		return closedTimeout
	}
	return closedOnError
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// announcement is an address the proxy gives clients, split once.
type announcement struct {
	addr, host string
	port       int
}

func newAnnouncement(addr string) announcement {
	host, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	return announcement{addr: addr, host: host, port: port}
}
