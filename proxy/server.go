package proxy

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

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
	nodeID        string
	announceHost  string
	announcePort  int
	started       time.Time
	limits        scanLimits
	needsPassword bool

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
	// drained is closed when every session has ended, which lets the
	// listener report its closure to redcon (redcon closes every connection
	// the moment Accept fails, which would cut off in-flight batches).
	drained   chan struct{}
	serveDone chan struct{}
	listener  net.Listener

	nextClientID atomic.Int64
	stats        stats
	scanCursors  scanCursors

	// dedicated is the backend as a DedicatedBackend, nil when it is not one
	// (transactions, blocking commands and Pub/Sub are then refused); pool
	// keeps its idle dedicated connections.
	dedicated DedicatedBackend
	pool      *nodePool
	// blockingSlots holds a token per blocking command in progress.
	blockingSlots chan struct{}
}

// stats are the counters INFO reports.
type stats struct {
	connectionsReceived atomic.Int64
	connectedClients    atomic.Int64
	commandsProcessed   atomic.Int64
	rejectedRequests    atomic.Int64
}

// New returns a Server that sends commands to backend. It does not listen:
// call Serve.
func New(cfg Config, backend Backend) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if backend == nil {
		return nil, errors.New("proxy: nil Backend")
	}
	host, portText, _ := net.SplitHostPort(cfg.AnnounceAddr)
	port, _ := strconv.Atoi(portText)
	sum := sha1.Sum([]byte("kvproxy " + cfg.AnnounceAddr))
	ctx, cancel := context.WithCancel(context.Background())
	dedicated, _ := backend.(DedicatedBackend)
	return &Server{
		dedicated:     dedicated,
		pool:          newNodePool(dedicated),
		blockingSlots: make(chan struct{}, cfg.MaxBlockingConns),
		cfg:           cfg,
		backend:       backend,
		logger:        cfg.Logger,
		nodeID:        hex.EncodeToString(sum[:]),
		announceHost:  host,
		announcePort:  port,
		started:       time.Now(),
		needsPassword: cfg.Password != "",
		limits: scanLimits{
			maxBulkLen:      int64(cfg.MaxBulkLen),
			maxArgs:         int64(cfg.MaxArgs),
			maxRequestBytes: cfg.MaxRequestBytes,
		},
		ctx:       ctx,
		cancel:    cancel,
		sessions:  make(map[*session]struct{}),
		drained:   make(chan struct{}),
		serveDone: make(chan struct{}),
	}, nil
}

// Serve accepts clients on ln until Close; it returns ErrServerClosed after
// Close, or the listener's error. It may be called once.
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
	s.mu.Unlock()
	defer close(s.serveDone)

	err := redcon.Serve(&guardListener{Listener: ln, srv: s}, s.handle, s.accept, s.closed)
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return ErrServerClosed
	}
	return err
}

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
	serving := s.serving
	var err error
	if s.listener != nil {
		err = s.listener.Close()
	}
	// Idle clients are woken from their read; busy ones read again only
	// after answering the batch in hand, and then stop.
	for sess := range s.sessions {
		_ = sess.netConn.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()

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
	s.pool.close()
	close(s.drained)
	if serving {
		<-s.serveDone
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// guardListener wraps accepted connections in a guardConn and holds back the
// listener's failure until Close has drained the sessions.
type guardListener struct {
	net.Listener
	srv *Server
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		l.srv.mu.Lock()
		closing := l.srv.closing
		l.srv.mu.Unlock()
		if closing {
			<-l.srv.drained
			return nil, net.ErrClosed
		}
		return nil, err
	}
	return newGuardConn(c, l.srv.limits, !l.srv.needsPassword, &l.srv.stats.rejectedRequests, l.srv.logger), nil
}

// accept registers a new client; it runs on redcon's accept loop.
func (s *Server) accept(conn redcon.Conn) bool {
	g, _ := conn.NetConn().(*guardConn)
	if g == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	sess := newSession(s, conn, g)
	s.sessions[sess] = struct{}{}
	s.sessionsDone.Add(1)
	s.stats.connectionsReceived.Add(1)
	s.stats.connectedClients.Add(1)
	conn.SetContext(sess)
	return true
}

// closed runs when redcon is done with a client.
func (s *Server) closed(conn redcon.Conn, err error) {
	sess, _ := conn.Context().(*session)
	if sess == nil {
		return
	}
	if err != nil && !errors.Is(err, errRefused) && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
		s.logger.Debug("client connection ended", "client", conn.RemoteAddr(), "err", err)
	}
	sess.releaseDedicated()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.stats.connectedClients.Add(-1)
	s.sessionsDone.Done()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handle receives the first command of a client's pipeline; the rest of the
// pipeline is taken at once so the whole batch goes to the backends together.
func (s *Server) handle(conn redcon.Conn, cmd redcon.Command) {
	sess := conn.Context().(*session)
	defer func() {
		// A bug must cost one client its connection, not every client the
		// process.
		if v := recover(); v != nil {
			s.logger.Error("panic while serving a client; closing its connection",
				"client", conn.RemoteAddr(), "panic", v, "stack", string(debug.Stack()))
			_ = conn.Close()
		}
	}()
	sess.batch = append(sess.batch[:0], cmd)
	sess.batch = append(sess.batch, conn.ReadPipeline()...)
	sess.serve(sess.batch)
	// Drop the references so the commands' memory is not held until the
	// next batch.
	clear(sess.batch)
}
