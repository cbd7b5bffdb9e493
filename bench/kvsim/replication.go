package kvsim

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
)

// Replication runs over real TCP connections. A replica dials its master,
// AUTHs with its own password (cluster nodes share one) and sends
// `__kvsim_psync <host> <port> <sequence>`. The master takes the connection
// over and answers with frames, each a RESP array of bulk strings:
//
//	CONT                  partial resync: entries after <sequence> follow
//	FULL <seq> <count>    full resync: <count> snapshot frames `S <effect...>` follow
//	T <unix-nanos>        send time of the entries that follow it
//	E <seq> <effect...>   one change
//
// The replica applies each change no earlier than its send time plus
// ReplDelay and acks `ACK <seq>` on the same connection once per burst.

// Bounds of the master's in-memory replication log.
const (
	replLogMaxEntries = 1 << 17
	replLogMaxBytes   = 32 << 20
	// replStreamBurst caps the entries one stream write takes from the log.
	replStreamBurst = 4096
	// replHeartbeat is how often an idle stream sends a T frame, so the
	// replica's master_last_io_seconds_ago stays low.
	replHeartbeat = time.Second
	// replAckInterval bounds the time between acks while entries keep coming.
	replAckInterval = 50 * time.Millisecond
)

// replLog is the bounded log of recent changes, as E frames, that partial
// resyncs and live streams read. Every role keeps it: a replica logs what it
// applies, so after a promotion its old master can resync partially.
type replLog struct {
	mu      sync.Mutex
	base    uint64 // sequence just before entries[0]
	entries []replEntry
	bytes   int
	waiters map[chan struct{}]struct{}
	// maxEntries and maxBytes bound the log; tests shrink them.
	maxEntries, maxBytes int
}

type replEntry struct {
	seq   uint64
	frame []byte
}

func (l *replLog) init(seq uint64) {
	l.base = seq
	l.waiters = map[chan struct{}]struct{}{}
	l.maxEntries, l.maxBytes = replLogMaxEntries, replLogMaxBytes
}

// journal is the keyspace's JournalFunc: it logs each change and wakes the
// streams. It runs under the keyspace lock.
func (n *Node) journal(seq uint64, effect [][]byte) {
	n.replLog.append(seq, entryFrame(seq, effect))
}

// entryFrame is the E frame of one change.
func entryFrame(seq uint64, effect [][]byte) []byte {
	frame := appendArrayHeader(make([]byte, 0, 32+16*len(effect)), 2+len(effect))
	frame = appendBulkString(frame, "E")
	frame = appendBulkString(frame, strconv.FormatUint(seq, 10))
	for _, a := range effect {
		frame = appendBulkBytes(frame, a)
	}
	return frame
}

// append logs the entry of seq; entries already logged are ignored and a gap
// restarts the log.
func (l *replLog) append(seq uint64, frame []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	last := l.base + uint64(len(l.entries))
	if seq <= last {
		return
	}
	if seq != last+1 {
		l.resetLocked(seq - 1)
	}
	l.entries = append(l.entries, replEntry{seq, frame})
	l.bytes += len(frame)
	for len(l.entries) > l.maxEntries || l.bytes > l.maxBytes {
		l.bytes -= len(l.entries[0].frame)
		l.entries[0] = replEntry{}
		l.entries = l.entries[1:]
		l.base++
	}
	for ch := range l.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (l *replLog) reset(seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.resetLocked(seq)
}

func (l *replLog) resetLocked(seq uint64) {
	l.base, l.entries, l.bytes = seq, nil, 0
}

// covers reports whether a replica at sequence after can resync partially.
func (l *replLog) covers(after uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return after >= l.base && after <= l.base+uint64(len(l.entries))
}

// since returns up to max frames after sequence after and the sequence of
// the last one; ok is false when the log no longer holds the entry after it.
func (l *replLog) since(after uint64, max int) (frames [][]byte, last uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if after < l.base {
		return nil, after, false
	}
	idx := after - l.base
	if idx >= uint64(len(l.entries)) {
		return nil, after, true
	}
	tail := l.entries[idx:]
	if len(tail) > max {
		tail = tail[:max]
	}
	frames = make([][]byte, len(tail))
	for i, e := range tail {
		frames[i] = e.frame
	}
	return frames, tail[len(tail)-1].seq, true
}

func (l *replLog) subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	l.waiters[ch] = struct{}{}
	l.mu.Unlock()
	return ch
}

func (l *replLog) unsubscribe(ch chan struct{}) {
	l.mu.Lock()
	delete(l.waiters, ch)
	l.mu.Unlock()
}

// replicaStream is the master's side of one replica connection.
type replicaStream struct {
	ip, port  string
	addr      string // announced host:port
	conn      net.Conn
	acked     atomic.Uint64
	sent      atomic.Uint64 // sequence of the last entry written to conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (r *replicaStream) close() {
	r.closeOnce.Do(func() {
		close(r.closed)
		_ = r.conn.Close()
	})
}

func (r *replicaStream) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// streamSet is the replicas streaming from this node, in connection order.
type streamSet struct {
	mu   sync.Mutex
	list []*replicaStream
}

func (s *streamSet) add(r *replicaStream) {
	s.mu.Lock()
	s.list = append(s.list, r)
	s.mu.Unlock()
}

func (s *streamSet) remove(r *replicaStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.list {
		if x == r {
			s.list = append(s.list[:i:i], s.list[i+1:]...)
			return
		}
	}
}

// find returns the newest open stream of the replica announced as addr.
func (s *streamSet) find(addr string) *replicaStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.list) - 1; i >= 0; i-- {
		if r := s.list[i]; r.addr == addr && !r.isClosed() {
			return r
		}
	}
	return nil
}

func (s *streamSet) snapshot() []*replicaStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*replicaStream(nil), s.list...)
}

// waitSent waits until every open stream has written the entries up to seq,
// or timeout passes.
func (s *streamSet) waitSent(seq uint64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, r := range s.snapshot() {
		for !r.isClosed() && r.sent.Load() < seq && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}

func (s *streamSet) closeAll() {
	for _, r := range s.snapshot() {
		r.close()
	}
}

// servePsync is the master's side of the handshake: it takes the connection
// over from redcon and streams to it until either side drops.
func (n *Node) servePsync(conn redcon.Conn, args [][]byte) {
	if len(args) != 4 && (len(args) != 5 || string(args[4]) != psyncFull) {
		conn.WriteError(wrongArityError(args[0]))
		return
	}
	forceFull := len(args) == 5
	from, err := strconv.ParseUint(string(args[3]), 10, 64)
	if _, perr := strconv.Atoi(string(args[2])); err != nil || perr != nil {
		conn.WriteError("ERR value is not an integer or out of range")
		return
	}
	if n.view.Load().isReplica() {
		conn.WriteError("ERR a replica does not serve replication")
		return
	}
	run := n.currentRun()
	if run == nil {
		return
	}
	dc := conn.Detach()
	rs := &replicaStream{
		ip: string(args[1]), port: string(args[2]),
		addr:   net.JoinHostPort(string(args[1]), string(args[2])),
		conn:   dc.NetConn(),
		closed: make(chan struct{}),
	}
	rs.acked.Store(from)
	n.streams.add(rs)
	run.wg.Add(2)
	go n.streamTo(run, rs, dc, from, forceFull)
	go func() {
		defer run.wg.Done()
		defer rs.close()
		for {
			cmd, err := dc.ReadCommand()
			if err != nil {
				return
			}
			if len(cmd.Args) == 2 && string(cmd.Args[0]) == "ACK" {
				if seq, err := strconv.ParseUint(string(cmd.Args[1]), 10, 64); err == nil {
					rs.acked.Store(seq)
				}
			}
		}
	}()
}

// streamTo sends a partial resync (unless forceFull) or a full one, then
// the live log.
func (n *Node) streamTo(run *nodeRun, rs *replicaStream, dc redcon.DetachedConn, from uint64, forceFull bool) {
	defer run.wg.Done()
	defer n.streams.remove(rs)
	defer rs.close()
	wake := n.replLog.subscribe()
	defer n.replLog.unsubscribe(wake)
	if dc.Flush() != nil { // replies redcon still buffered
		return
	}
	w := bufio.NewWriterSize(rs.conn, 64<<10)
	next := from
	if !forceFull && n.replLog.covers(from) {
		_, _ = w.Write(appendCommand(nil, []byte("CONT")))
		n.syncPartial.Add(1)
		n.log.Info("kvsim partial resync", "replica", rs.addr, "from", from)
	} else {
		seq, cmds := n.ks.Snapshot()
		_, _ = w.Write(appendCommand(nil, []byte("FULL"), []byte(strconv.FormatUint(seq, 10)), []byte(strconv.Itoa(len(cmds)))))
		var buf []byte
		for _, c := range cmds {
			buf = appendCommand(buf[:0], append([][]byte{[]byte("S")}, c...)...)
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
		next = seq
		n.syncFull.Add(1)
		n.log.Info("kvsim full resync", "replica", rs.addr, "seq", seq, "entries", len(cmds))
	}
	heartbeat := time.NewTicker(replHeartbeat)
	defer heartbeat.Stop()
	for {
		frames, last, ok := n.replLog.since(next, replStreamBurst)
		if !ok {
			n.log.Warn("kvsim replica fell behind the replication log", "replica", rs.addr)
			return
		}
		if len(frames) > 0 {
			_, _ = w.Write(timeFrame())
			for _, f := range frames {
				_, _ = w.Write(f)
			}
			next = last
		}
		if w.Flush() != nil {
			return
		}
		rs.sent.Store(next)
		if len(frames) > 0 {
			continue
		}
		select {
		case <-wake:
		case <-heartbeat.C:
			_, _ = w.Write(timeFrame())
		case <-rs.closed:
			return
		case <-run.stop:
			return
		}
	}
}

func timeFrame() []byte {
	return appendCommand(nil, []byte("T"), []byte(strconv.FormatInt(time.Now().UnixNano(), 10)))
}

// psyncFull is the last argument of a replica's handshake when it needs a
// full resync whatever its sequence.
const psyncFull = "full"

// replicaLink is a replica's connection to its master; it reconnects with a
// short backoff until stopped.
type replicaLink struct {
	masterAddr string
	host       string
	port       string
	cancel     chan struct{}
	done       chan struct{}
	up         atomic.Bool
	lastIO     atomic.Int64 // unix nanos of the last frame received

	mu     sync.Mutex
	conn   net.Conn
	closed bool
}

type replicaLinkHolder struct{ p atomic.Pointer[replicaLink] }

func (h *replicaLinkHolder) get() *replicaLink { return h.p.Load() }

// stop ends the current link and waits for its goroutines.
func (h *replicaLinkHolder) stop() {
	l := h.p.Swap(nil)
	if l == nil {
		return
	}
	l.mu.Lock()
	l.closed = true
	close(l.cancel)
	if l.conn != nil {
		_ = l.conn.Close()
	}
	l.mu.Unlock()
	<-l.done
}

// setConn records the live connection; false if the link is already stopped.
func (l *replicaLink) setConn(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conn = c
	return true
}

// retargetReplication makes replication follow view v: a replica links to its
// master (re-linking if the master changed), a master stops linking, and a
// node that became a replica drops the replicas streaming from it. Caller
// holds viewMu.
func (n *Node) retargetReplication(run *nodeRun, v *clusterView) {
	// A replica leaves expired keys to its master's journaled DELs, so its
	// sequence stays the master's.
	n.ks.SetReplica(v.isReplica())
	want := ""
	if v.isReplica() && v.myMaster != nil {
		want = v.myMaster.addr
	}
	if cur := n.link.get(); cur != nil && cur.masterAddr == want {
		return
	}
	n.link.stop()
	n.loading.Store(false)
	if v.isReplica() {
		n.streams.closeAll()
	} else if v.me != nil {
		n.following.Store(new(string)) // a master of the topology writes a history of its own
	}
	if want == "" || run == nil {
		return
	}
	l := &replicaLink{
		masterAddr: want,
		host:       v.myMaster.host,
		port:       strconv.Itoa(v.myMaster.port),
		cancel:     make(chan struct{}),
		done:       make(chan struct{}),
	}
	n.link.p.Store(l)
	run.wg.Add(1)
	go func() {
		defer run.wg.Done()
		defer close(l.done)
		n.runLink(run, l)
	}()
}

func (n *Node) runLink(run *nodeRun, l *replicaLink) {
	const minBackoff, maxBackoff = 50 * time.Millisecond, time.Second
	backoff := minBackoff
	for {
		reachedUp, err := n.syncFromMaster(run, l)
		l.up.Store(false)
		n.loading.Store(false)
		select {
		case <-l.cancel:
			return
		case <-run.stop:
			return
		default:
		}
		if reachedUp {
			backoff = minBackoff
		}
		n.log.Info("kvsim replication link down", "master", l.masterAddr, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-l.cancel:
			t.Stop()
			return
		case <-run.stop:
			t.Stop()
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// pendingEntry is a received change waiting for its apply time.
type pendingEntry struct {
	seq    uint64
	due    time.Time
	effect [][]byte
	frame  []byte
}

// syncFromMaster runs one connection to the master: handshake, resync, then
// the live stream until the connection drops.
func (n *Node) syncFromMaster(run *nodeRun, l *replicaLink) (reachedUp bool, err error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.Dial("tcp", l.masterAddr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if !l.setConn(conn) {
		return false, errors.New("link stopped")
	}
	if n.cfg.Password != "" {
		if err := roundTrip(conn, "+OK", []byte("AUTH"), []byte(n.cfg.Password)); err != nil {
			return false, err
		}
	}
	host, port, err := net.SplitHostPort(n.Addr())
	if err != nil {
		return false, err
	}
	// Sequences name a write only within one master's history. A node
	// whose data followed another master, or its own writes as a master
	// (an old master after a failover, which kept serving PUBLISH and so
	// moved its sequence while the new master wrote on its own), would skip
	// writes of the new master that share a sequence with writes of its
	// own history: it asks for a full resync, as Kvrocks refuses such a
	// node's partial sync ("sequence out of range, please use fullsync").
	psync := [][]byte{[]byte(replPsyncCommand), []byte(host), []byte(port), []byte(strconv.FormatUint(n.ks.Sequence(), 10))}
	if f := n.following.Load(); f != nil && *f != l.masterAddr {
		psync = append(psync, []byte(psyncFull))
	}
	if _, err := conn.Write(appendCommand(nil, psync...)); err != nil {
		return false, err
	}
	rd := redcon.NewReader(conn)
	first, err := rd.ReadCommand()
	if err != nil {
		return false, err
	}
	switch string(first.Args[0]) {
	case "CONT":
	case "FULL":
		if err := n.loadSnapshot(rd, first.Args); err != nil {
			return false, err
		}
	default:
		return false, fmt.Errorf("master refused: %q", first.Raw)
	}
	n.following.Store(&l.masterAddr)
	l.lastIO.Store(time.Now().UnixNano())
	l.up.Store(true)
	n.log.Info("kvsim replication link up", "master", l.masterAddr, "seq", n.ks.Sequence())

	queue := make(chan pendingEntry, 1<<14)
	applierDone := make(chan struct{})
	go func() {
		defer close(applierDone)
		n.applyEntries(run, l, conn, queue)
	}()
	defer func() { close(queue); <-applierDone }()
	var sentAt time.Time
	for {
		cmd, err := rd.ReadCommand()
		if err != nil {
			return true, err
		}
		l.lastIO.Store(time.Now().UnixNano())
		sent, e, err := parseStreamFrame(cmd)
		if err != nil {
			return true, err
		}
		if e == nil {
			sentAt = sent
			continue
		}
		e.due = sentAt.Add(n.cfg.ReplDelay)
		select {
		case queue <- *e:
		case <-l.cancel:
			return true, errors.New("link stopped")
		case <-run.stop:
			return true, errors.New("node killed")
		}
	}
}

// parseStreamFrame reads one frame of the live stream: a T frame's send
// time, or an E frame's change (entry, its effect in a copy of the frame).
func parseStreamFrame(cmd redcon.Command) (sentAt time.Time, entry *pendingEntry, err error) {
	switch {
	case len(cmd.Args) == 2 && string(cmd.Args[0]) == "T":
		ns, _ := strconv.ParseInt(string(cmd.Args[1]), 10, 64)
		return time.Unix(0, ns), nil, nil
	case len(cmd.Args) >= 3 && string(cmd.Args[0]) == "E":
		frame := append([]byte(nil), cmd.Raw...)
		parsed, err := redcon.Parse(frame)
		if err != nil {
			return time.Time{}, nil, err
		}
		seq, err := strconv.ParseUint(string(parsed.Args[1]), 10, 64)
		if err != nil {
			return time.Time{}, nil, err
		}
		return time.Time{}, &pendingEntry{seq: seq, effect: parsed.Args[2:], frame: frame}, nil
	}
	return time.Time{}, nil, fmt.Errorf("unexpected replication frame %q", cmd.Raw)
}

// loadSnapshot reads a full resync's snapshot frames and loads them; the node
// answers LOADING meanwhile.
func (n *Node) loadSnapshot(rd *redcon.Reader, header [][]byte) error {
	n.loading.Store(true)
	defer n.loading.Store(false)
	seq, cmds, err := readSnapshot(rd, header)
	if err != nil {
		return err
	}
	n.ks.Load(seq, cmds)
	n.replLog.reset(seq)
	return nil
}

// readSnapshot reads the snapshot frames a FULL header announces.
func readSnapshot(rd *redcon.Reader, header [][]byte) (seq uint64, cmds [][][]byte, err error) {
	if len(header) != 3 {
		return 0, nil, errors.New("bad FULL header")
	}
	seq, err1 := strconv.ParseUint(string(header[1]), 10, 64)
	count, err2 := strconv.Atoi(string(header[2]))
	if err1 != nil || err2 != nil || count < 0 {
		return 0, nil, errors.New("bad FULL header")
	}
	// The count is the master's word: the frames that arrive bound memory.
	cmds = make([][][]byte, 0, min(count, 1<<16))
	for range count {
		cmd, err := rd.ReadCommand()
		if err != nil {
			return 0, nil, err
		}
		if len(cmd.Args) < 2 || string(cmd.Args[0]) != "S" {
			return 0, nil, fmt.Errorf("unexpected snapshot frame %q", cmd.Raw)
		}
		parsed, err := redcon.Parse(append([]byte(nil), cmd.Raw...))
		if err != nil {
			return 0, nil, err
		}
		cmds = append(cmds, parsed.Args[1:])
	}
	return seq, cmds, nil
}

// applyEntries applies queued changes at their due time and acks the applied
// sequence once per burst.
func (n *Node) applyEntries(run *nodeRun, l *replicaLink, conn net.Conn, queue <-chan pendingEntry) {
	defer conn.Close() // unblocks the reader if the applier stops first
	lastAck := time.Now()
	ack := func() bool {
		lastAck = time.Now()
		msg := appendCommand(nil, []byte("ACK"), []byte(strconv.FormatUint(n.ks.Sequence(), 10)))
		_, err := conn.Write(msg)
		return err == nil
	}
	if !ack() {
		return
	}
	pending := false // applied entries not acked yet
	for e := range queue {
		if wait := time.Until(e.due); wait > 0 {
			// Ack what is applied before waiting, so a delayed stream keeps
			// the master's view of this replica moving.
			if pending && !ack() {
				return
			}
			pending = false
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-l.cancel:
				t.Stop()
				return
			case <-run.stop:
				t.Stop()
				return
			}
		}
		n.applyEffect(e.seq, e.effect)
		n.replLog.append(e.seq, e.frame)
		n.replayPublish(e.effect)
		pending = true
		// One ack per burst, and at least every replAckInterval under a flood.
		if len(queue) == 0 || time.Since(lastAck) >= replAckInterval {
			if !ack() {
				return
			}
			pending = false
		}
	}
}
