package proxy

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/internal/rawio"
	"kvproxy/internal/resp"
	"kvproxy/router"
)

// replyKind says where the reply to one client command comes from.
type replyKind uint8

const (
	// replyLocal: the proxy made it, in session.local[from:to].
	replyLocal replyKind = iota
	// replyRouted: the backend's reply to reqs[from], passed through.
	replyRouted
	// The others merge the replies of reqs[from:to].
	mergeSum       // integers added (DEL, EXISTS, DBSIZE, ...)
	mergeOK        // +OK when every part says OK (MSET, FLUSHDB, ...)
	mergeMGET      // array elements put back in argument order
	mergeConcat    // arrays joined (KEYS)
	mergeScan      // one master's SCAN page with the cursor rewritten
	mergeRandomKey // the first non-nil RANDOMKEY from a random master on
	mergeSame      // the first error, else the reply all gave (SCRIPT LOAD, ...)
	// mergeScriptExists: 1 where every master has the script.
	mergeScriptExists
	mergeConfigGet   // the first master's CONFIG GET without secrets
	mergeEveryMaster // a change on every master, partial failures named
	mergeInfo        // INFO with the masters' keyspaces summed (aux: sections)
)

// entry is one client command of the chunk being served.
type entry struct {
	kind     replyKind
	from, to int
	// keysFrom and keysTo delimit the command's part of session.keyParts
	// (mergeMGET).
	keysFrom, keysTo int
	// aux: the master index of a SCAN page, the starting master of
	// RANDOMKEY.
	aux int
	// resp3: the reply goes to the client in RESP3, converted by shape.
	resp3 bool
	shape resp.Shape
	// counted: the entry is a client command's reply, counted when written
	// (cmdstats.go) as a reply to cmd (nil: a command the proxy does not
	// know, or one queued in MULTI).
	counted bool
	cmd     *CommandInfo
}

// span is an element of a backend reply, as byte offsets.
type span struct{ from, to int }

// session is one client connection. Its buffers are reused from batch to
// batch, so serving a pipeline does not allocate in steady state.
type session struct {
	srv     *Server
	conn    replyConn
	netConn *guardConn
	flush   func() error
	// writeDirect writes to the client's socket past redcon's buffer; nil
	// when the connection is not a redcon one (tests).
	writeDirect func([]byte) (int, error)
	id          int64
	// affinity keeps the session's requests to a node on one connection.
	affinity uint32
	created  time.Time
	// encrypted: the client is connected over TLS.
	encrypted bool
	name      []byte
	authed    bool
	// resp3: the client chose RESP3 with HELLO 3 (resp3.go).
	resp3 bool
	// While capturing, write collects a reply in captured, for its
	// conversion into converted.
	capturing           bool
	captured, converted []byte
	// trackingOptIn: CLIENT TRACKING ON OPTIN; cachingAsked: CLIENT CACHING
	// YES came last (tracking.go).
	trackingOptIn, cachingAsked bool
	// While toSubscriber, write collects replies in subscriberOut, for a
	// RESP3 subscriber's writer (subscribedCommand).
	toSubscriber  bool
	subscriberOut []byte
	// user is the name the session authenticated as; admin: it may run
	// admin commands; readOnly: no command that may write. creds are the
	// credentials they were taken from (followCredentials).
	user            string
	admin, readOnly bool
	creds           *credentials
	// authFailures counts the failed AUTHs since the last good one.
	authFailures int
	quit         bool
	// lastCommand names the latest command, for CLIENT INFO/LIST.
	lastCommand string
	lastActive  time.Time
	// shown publishes the fields above for other clients' CLIENT LIST.
	shown clientShown
	// closeCause is why the proxy is closing the connection (a closed...
	// string), when the error that ends it will not tell.
	closeCause atomic.Value

	batch   []redcon.Command
	entries []entry
	// reqs are the requests of the chunk, in the order their commands came;
	// pool[i] is reused as reqs[i], and owned[i] is its buffer for
	// commands the proxy rewrites.
	reqs  []*router.Request
	pool  []*router.Request
	owned [][]byte
	// local holds the replies the proxy makes for the chunk.
	local []byte
	// classes[i] is the class loopSafe found for classed[i], so serving
	// the batch does not classify it again; serving is the index of the
	// command being served.
	classes []commandClass
	classed []redcon.Command
	serving int
	// lastOfBatch is the batch's last command: a command queued in MULTI
	// is sent to the server when the client waits for its reply (tx.go).
	lastOfBatch *redcon.Command
	// Scratch space for key positions, slot splitting and merging.
	keyIdx []int
	// keyParts holds, for each key of the chunk's split commands, the
	// slot and then the part (the sub-command) it went to.
	keyParts []uint16
	parts    []splitPart
	spans    []span
	// partOffsets[g] is where merge part g's next element starts.
	partOffsets []int
	scratch     []byte
	scanner     *resp.Scanner
	masters     []string
	// unflushed counts reply bytes written since the last flush.
	unflushed int

	// Request statistics (cmdstats.go): the shard of the counters the
	// session adds to, the chunk's timing, the command being classified and
	// the first bytes written of the reply being counted.
	statShard   int
	timing      chunkTiming
	statCmd     *CommandInfo
	replyHead   []byte
	endedChunks int
	tally       replyTally

	// Asynchronous answering (async.go). idle holds the client's turn;
	// starter and rawConn are nil when the backend or the connection does
	// not allow it, asyncOK is false while the client is served by a
	// goroutine, and onTurnFree is told each time the turn is given back;
	// onKilled ends the client's connection for CLIENT KILL. arena keeps
	// the chunk's commands, out its replies.
	idle    chan struct{}
	asyncOK bool
	// writes, while an event loop serves the session, defers its backend
	// writes to the loop's one flush per round of events.
	writes        *router.Writes
	onTurnFree    func()
	onKilled      func()
	starter       AsyncBackend
	rawConn       *rawio.Conn
	asyncDone     func()
	arena         []byte
	out           []byte
	async         bool
	asyncMayBlock bool

	// Dedicated-connection state (tx.go, blocking.go, pubsub.go).
	tx  txState
	sub *subscriber
	// lastSlot is the slot of the latest routed command, -1 after a keyless
	// one: WAIT goes to that master.
	lastSlot int

	// output bounds the replies kept for the client (ClientOutputLimit).
	output *router.OutputBudget

	// ctx bounds the session's backend calls: it ends when the server
	// closes, or when the client hung up (hangUp), which drops its held
	// requests unsent.
	ctx    context.Context
	hangUp context.CancelFunc
}

// replyConn is what a session needs of its connection besides the guarded
// socket: *client, or a recorder in tests.
type replyConn interface {
	WriteRaw(b []byte)
	Close() error
	RemoteAddr() string
}

// newSession makes the session of a connection. w is the connection's reply
// buffer and raw its socket, for writes past that buffer; either may be nil
// (tests), which leaves the session synchronous.
func newSession(srv *Server, conn replyConn, g *guardConn, w *redcon.Writer, raw *rawio.Conn) *session {
	s := &session{
		srv:     srv,
		conn:    conn,
		netConn: g,
		id:      srv.nextClientID.Add(1),
		created: time.Now(),
		// Replies reach a merge complete, already bounded by the router.
		scanner:  resp.NewScanner(math.MaxInt),
		tx:       txState{slot: -1},
		lastSlot: -1,
	}
	s.lastActive = s.created
	s.publishShown()
	s.ctx, s.hangUp = context.WithCancel(srv.ctx)
	s.startUnauthenticated()
	s.output = router.NewOutputBudget(srv.clientOutputLimit.Load(), s.outputLimitReached)
	s.statShard = int(s.id) & (statShards - 1)
	// Never zero, which would mean "by slot".
	s.affinity = uint32(s.id) | 1<<31
	s.flush = func() error { return nil }
	if w != nil {
		s.flush = w.Flush
		s.writeDirect = g.Conn.Write
	}
	s.idle = make(chan struct{}, 1)
	s.releaseTurnQuietly()
	s.asyncDone = s.completeAsync
	if raw != nil && w != nil {
		s.starter, _ = srv.backend.(AsyncBackend)
		s.rawConn = raw
	}
	return s
}

// serve answers a client's batch, at most MaxPipeline commands per trip to
// the backends. The caller holds the client's turn. The last chunk is
// answered asynchronously when the session allows it (async.go): serve then
// reports true, and the turn passes to whoever writes the replies.
func (s *session) serve(cmds []redcon.Command) (async bool) {
	s.unflushed = 0
	s.lastActive = time.Now()
	// The first chunk starts with the batch: one clock read fewer.
	s.timing.start = s.lastActive
	if len(cmds) > 0 {
		s.lastOfBatch = &cmds[len(cmds)-1]
	}
	for chunk := 0; len(cmds) > 0 && !s.quit; chunk++ {
		if chunk > 0 {
			s.timing.begin()
		}
		n := min(len(cmds), s.srv.cfg.MaxPipeline)
		async = s.serveChunk(cmds[:n], n == len(cmds))
		cmds = cmds[n:]
	}
	s.lastOfBatch = nil // do not pin the client's buffer
	s.publishShown()
	if s.quit {
		_ = s.conn.Close()
	}
	return async
}

// serveChunk classifies a chunk's commands and answers them; it reports
// whether the answer was left to the asynchronous path.
func (s *session) serveChunk(cmds []redcon.Command, last bool) bool {
	s.masters = nil
	for i := range cmds {
		if s.quit {
			break // QUIT: what follows is not served
		}
		s.serving = i
		s.classify(&cmds[i])
	}
	// Only a batch of one chunk is classed; do not pin its commands.
	s.classes, s.classed = s.classes[:0], nil
	if last && s.startAsync() {
		return true
	}
	s.runPending()
	return false
}

// plain reports a session in no transaction and no subscription: its
// batches can be served without blocking.
func (s *session) plain() bool {
	return s.sub == nil && !s.tx.inMulti && s.tx.pinned == nil && !s.quit
}

// loopSafe reports whether serving cmds cannot block: the session is plain,
// the batch is one chunk small enough to be answered asynchronously, and no
// command's class blocks the loop (blocksLoop). It keeps the classes for
// serving the batch.
func (s *session) loopSafe(cmds []redcon.Command) bool {
	if !s.plain() || len(cmds) > s.srv.cfg.MaxPipeline {
		return false
	}
	size, auths := 0, 0
	s.classes, s.classed = s.classes[:0], cmds
	for i := range cmds {
		size += len(cmds[i].Raw)
		class := classOf(cmds[i].Args)
		s.classes = append(s.classes, class)
		if class.info == cmdAUTH || class.info == cmdHELLO {
			auths++
		}
		if class.blocksLoop() {
			return false
		}
	}
	// A failed AUTH past the free ones is answered late (authFailed): not
	// on the loop.
	return size <= maxAsyncCommandBytes && s.authFailures+auths <= freeAuthFailures
}

// runPending sends the requests recorded so far and writes every reply in
// order. A command served over a dedicated connection calls it first, so its
// reply follows those of the commands before it.
func (s *session) runPending() {
	s.srv.stats.commandsProcessed.Add(int64(len(s.entries)))
	if len(s.reqs) > 0 {
		s.srv.backend.Do(s.ctx, s.reqs)
	}
	s.timing.end()
	for i := range s.entries {
		s.writeReply(&s.entries[i])
	}
	s.flushTally()
	s.endChunk()
}

// endChunk drops the chunk's requests and replies, keeping the buffers.
func (s *session) endChunk() {
	for i, q := range s.reqs {
		q.Raw = nil // do not pin the client's command buffers
		// A one-off huge reply or command must not stay allocated for the
		// life of the connection.
		if cap(q.Reply) > maxKeptBuffer {
			q.Reply = nil
		}
		if cap(s.owned[i]) > maxKeptBuffer {
			s.owned[i] = nil
		}
	}
	if cap(s.local) > maxKeptBuffer {
		s.local = nil
	}
	if cap(s.arena) > maxKeptBuffer {
		s.arena = nil
	}
	if cap(s.out) > maxKeptBuffer {
		s.out = nil
	}
	if cap(s.scratch) > maxKeptBuffer {
		s.scratch = nil
	}
	if cap(s.captured) > maxKeptBuffer {
		s.captured = nil
	}
	if cap(s.converted) > maxKeptBuffer {
		s.converted = nil
	}
	// Nor the tables a command with very many keys needed.
	if len(s.pool) > maxKeptRequests {
		clear(s.pool[maxKeptRequests:])
		clear(s.owned[maxKeptRequests:])
		s.pool, s.owned = s.pool[:maxKeptRequests:maxKeptRequests], s.owned[:maxKeptRequests:maxKeptRequests]
	}
	if cap(s.keyParts) > maxKeptKeys {
		s.keyParts = nil
	}
	if cap(s.keyIdx) > maxKeptKeys {
		s.keyIdx = nil
	}
	if cap(s.parts) > maxKeptKeys {
		s.parts = nil
	}
	s.output.Release()
	s.endedChunks++
	s.entries = s.entries[:0]
	s.reqs = s.reqs[:0]
	s.local = s.local[:0]
	s.keyParts = s.keyParts[:0]
}

// Bounds of what a session keeps for reuse: buffers up to maxKeptBuffer
// bytes, tables of up to maxKeptKeys keys, maxKeptRequests requests.
const (
	maxKeptBuffer   = 64 << 10
	maxKeptKeys     = 4 << 10
	maxKeptRequests = 1 << 10
)

// write sends reply bytes to the client, flushing once MaxOutputBytes are
// pending so a client's output stays bounded. A reply that large on its own
// goes straight to the socket, after what is pending, rather than being
// copied into redcon's buffer first.
func (s *session) write(b []byte) {
	if s.replyHead == nil {
		s.replyHead = b
	}
	if s.output.Exceeded() {
		return // the client is being disconnected
	}
	if s.capturing {
		s.captured = append(s.captured, b...)
		return
	}
	if s.toSubscriber {
		s.subscriberOut = append(s.subscriberOut, b...)
		return
	}
	if s.async {
		s.writeAsync(b)
		return
	}
	if len(b) >= s.srv.cfg.MaxOutputBytes && s.writeDirect != nil {
		if s.flush() == nil {
			_, _ = s.writeDirect(b)
		}
		s.unflushed = 0
		return
	}
	s.conn.WriteRaw(b)
	s.unflushed += len(b)
	if s.unflushed >= s.srv.cfg.MaxOutputBytes {
		_ = s.flush()
		s.unflushed = 0
	}
}

// newRequest appends a request for the chunk and returns it with its index.
func (s *session) newRequest() (*router.Request, int) {
	i := len(s.reqs)
	if i == len(s.pool) {
		s.pool = append(s.pool, &router.Request{})
		s.owned = append(s.owned, nil)
	}
	q := s.pool[i]
	q.Raw, q.Slot, q.Addr, q.ReadOnly, q.Long = nil, -1, "", false, false
	q.Affinity = s.affinity
	q.Output = s.output
	q.Reply = q.Reply[:0]
	s.reqs = append(s.reqs, q)
	return q, i
}

// localReply records a reply the proxy made: the bytes appended to s.local
// since mark.
func (s *session) localReply(mark int) {
	s.entries = append(s.entries, entry{kind: replyLocal, from: mark, to: len(s.local)})
}

// replyError answers the current command with an error; msg carries its
// prefix.
func (s *session) replyError(msg string) {
	mark := len(s.local)
	s.local = resp.AppendError(s.local, msg)
	s.localReply(mark)
}

func (s *session) mastersList() []string {
	if s.masters == nil {
		s.masters = s.srv.backend.Masters()
	}
	return s.masters
}

// writeReply writes the reply of one command to the client, converted to
// RESP3 for a RESP3 session's command.
func (s *session) writeReply(e *entry) {
	s.replyHead = nil
	if !e.resp3 {
		s.writeRESP2Reply(e)
	} else {
		s.capturing, s.captured = true, s.captured[:0]
		s.writeRESP2Reply(e)
		s.capturing = false
		s.writeConverted(s.captured, true, e.shape)
	}
	if e.counted {
		s.countReply(e.cmd, s.replyHead, e.kind == replyLocal)
	}
	s.replyHead = nil
}

// writeRESP2Reply writes the reply of one command as the backends gave it or
// the proxy made or merged it.
func (s *session) writeRESP2Reply(e *entry) {
	switch e.kind {
	case replyLocal:
		s.write(s.local[e.from:e.to])
	case replyRouted:
		s.write(s.reqs[e.from].Reply)
	default:
		s.writeMerged(e)
	}
}

// localAddr is the proxy side of the client's connection.
func (s *session) localAddr() string {
	if a := s.netConn.LocalAddr(); a != nil {
		return a.String()
	}
	return ""
}

// remoteAddr is the client side of the connection.
// announcement is the address CLUSTER replies name to this client: the
// TLS one for a client connected over TLS.
func (s *session) announcement() announcement {
	if s.encrypted {
		return s.srv.tlsAnnounce
	}
	return s.srv.announce
}

func (s *session) remoteAddr() string {
	return s.conn.RemoteAddr()
}
