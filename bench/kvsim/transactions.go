package kvsim

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tidwall/redcon"

	"kvproxy/bench/kvsim/keyspace"
)

// MULTI, EXEC, DISCARD, WATCH and UNWATCH as Kvrocks (unstable, 2025) runs
// them, read from src/commands/cmd_txn.cc, Connection::ExecuteCommands in
// src/server/redis_connection.cc and the watch functions of
// src/server/server.cc:
//
//   - Inside MULTI a command passes the checks it passes outside (unknown
//     command, arity, CLIENT PAUSE, LOADING, "<NAME> inside MULTI is not
//     allowed" for the no-multi commands, Cluster::CanExecByMySelf: CROSSSLOT,
//     CLUSTERDOWN, TRYAGAIN, MOVED), then gets +QUEUED. A failed check replies
//     its error and dooms the transaction: EXEC answers
//     "-EXECABORT Transaction discarded" (Kvrocks' text, not Redis' "...
//     because of previous errors."). MULTI, EXEC, DISCARD, WATCH and UNWATCH
//     carry the "multi" flag: they run at once, never queued (so UNWATCH
//     inside MULTI does unwatch).
//   - EXEC (CommandExec::Execute) replies "$-1" (NilString, not Redis' "*-1";
//     "_" to a RESP3 connection) when a watched key was written, else the array header, then feeds the
//     queue through ExecuteCommands again: every queued command is checked a
//     second time, so a queued write whose slot entered a failover's
//     pause_write, or moved, after it was queued gets TRYAGAIN or MOVED as its
//     element of EXEC's array while the other commands run. CanExecByMySelf
//     has no exception for commands run by EXEC. A keyless write on a replica
//     passes the queue-time checks and gets READONLY inside EXEC.
//   - WATCH (Server::WatchKey) is key-name tracking, not value comparison:
//     any write command that did not fail marks every connection watching one
//     of its keys (Server::UpdateWatchedKeysFromArgs), a keyless write
//     (FLUSHDB, FLUSHALL) marks every watcher; the writer's own writes count.
//     Nothing else calls it, so (inferred) keys expiring and changes
//     replicated from a master mark nothing. Where Redis 7 differs: its
//     FLUSHALL/FLUSHDB and DEL mark only the watchers of keys that existed,
//     and a watched key that expires aborts EXEC (TestWatchAsKvrocks).
//     EXEC and DISCARD end the watches; EXEC or DISCARD without MULTI keep
//     them.
//
// kvsim's differences: a command's syntax is checked when it runs, so a
// syntax error is an element of EXEC's array where Kvrocks refuses it at
// queue time; EXEC runs the queued data commands under the keyspace lock and,
// if any writes, the write gate (as one write: a failover's pause and switch,
// and CLIENT PAUSE, wait for it), and it waits out a CLIENT PAUSE WRITE
// before starting, as Redis does (Kvrocks' PauseConnIfNeeded checks each
// queued command; its handling inside EXEC could not be read); a queued
// control command (PING, INFO, CLIENT ...) runs with no lock held, so other
// connections' commands can run at that point of the transaction.

// transaction is a connection's MULTI and WATCH state. Only the
// connection's goroutine uses it, except watchDirty.
type transaction struct {
	active bool // between MULTI and EXEC/DISCARD
	failed bool // a queued command was refused: EXEC aborts
	writes bool // a queued data command writes
	queue  []queuedCommand

	watched    []string    // keys this connection watches
	watchDirty atomic.Bool // a watched key was written since WATCH
}

// queuedCommand is a command waiting for EXEC; data is nil for a control
// command.
type queuedCommand struct {
	data  *keyspace.Command
	lname string
	args  [][]byte // copied: redcon reuses its buffers
}

func (tx *transaction) reset() {
	tx.active, tx.failed, tx.writes = false, false, false
	clear(tx.queue)
	tx.queue = tx.queue[:0]
}

// watchCommand gives WATCH's key positions to the cluster checks.
var watchCommand = &keyspace.Command{Name: "watch", Arity: -2, FirstKey: 1, LastKey: -1, Step: 1}

// noMultiCommands are refused inside MULTI (Kvrocks' "no-multi" flag).
var noMultiCommands = map[string]bool{
	"subscribe": true, "unsubscribe": true, "psubscribe": true, "punsubscribe": true,
	"ssubscribe": true, "sunsubscribe": true,
}

// controlCommandArity is the arity of a command the node answers itself.
func controlCommandArity(lname string) (int, bool) {
	if arity, ok := controlArity[lname]; ok {
		return arity, true
	}
	arity, ok := pubsubArity[lname]
	return arity, ok
}

// transactionCommand runs MULTI, EXEC, DISCARD, WATCH or UNWATCH; arity has
// been checked.
func (n *Node) transactionCommand(conn redcon.Conn, s *session, lname string, args [][]byte) {
	tx := &s.tx
	switch lname {
	case "multi":
		if tx.active {
			conn.WriteError("ERR MULTI calls can not be nested")
			return
		}
		tx.reset()
		tx.active = true
		conn.WriteString("OK")
	case "discard":
		if !tx.active {
			conn.WriteError("ERR DISCARD without MULTI")
			return
		}
		tx.reset()
		n.watches.unwatch(s)
		conn.WriteString("OK")
	case "exec":
		if !tx.active {
			conn.WriteError("ERR EXEC without MULTI")
			return
		}
		n.exec(conn, s)
		tx.reset()
		n.watches.unwatch(s)
	case "watch":
		if tx.active {
			conn.WriteError("ERR WATCH inside MULTI is not allowed")
			return
		}
		if msg := n.clusterRefusal(s, watchCommand, args); msg != "" {
			conn.WriteError(msg)
			return
		}
		if !tx.watchDirty.Load() { // a doomed EXEC needs no more watches
			n.watches.watch(s, args[1:])
		}
		conn.WriteString("OK")
	case "unwatch":
		n.watches.unwatch(s)
		conn.WriteString("OK")
	}
}

// queueData answers a data command received inside MULTI: the refusal of a
// queue-time check (which dooms the transaction), or +QUEUED.
func (n *Node) queueData(conn redcon.Conn, s *session, cmd *keyspace.Command, args [][]byte) {
	if !cmd.ArityOK(len(args)) {
		s.out = keyspace.AppendArityError(s.out[:0], cmd)
		conn.WriteRaw(s.out)
		s.tx.failed = true
		return
	}
	msg := "LOADING kvrocks is restoring the db from backup"
	if !n.loading.Load() {
		msg = n.clusterRefusal(s, cmd, args)
	}
	if msg != "" {
		conn.WriteError(msg)
		s.tx.failed = true
		return
	}
	s.tx.queue = append(s.tx.queue, queuedCommand{data: cmd, args: copyArgs(args)})
	s.tx.writes = s.tx.writes || cmd.Write
	conn.WriteString("QUEUED")
}

// queueControl answers a control command received inside MULTI. It returns
// false for a transaction command, which the caller runs at once.
func (n *Node) queueControl(conn redcon.Conn, s *session, lname string, args [][]byte) bool {
	arity, known := controlCommandArity(lname)
	switch {
	case lname == "kvsim" && n.cfg.Admin != nil:
	case lname == replPsyncCommand:
		return false // the simulator's replication handshake, never a client's
	case !known:
		conn.WriteRaw(keyspace.AppendUnknownCommand(nil, args))
		s.tx.failed = true
		return true
	case arity > 0 && len(args) != arity || arity < 0 && len(args) < -arity:
		conn.WriteError(wrongArityError(args[0]))
		s.tx.failed = true
		return true
	}
	switch lname {
	case "multi", "exec", "discard", "unwatch":
		return false
	case "watch":
		// WATCH has keys: CanExecByMySelf checks them before WATCH refuses
		// to run inside MULTI.
		if msg := n.clusterRefusal(s, watchCommand, args); msg != "" {
			conn.WriteError(msg)
			s.tx.failed = true
			return true
		}
		return false
	}
	if noMultiCommands[lname] {
		conn.WriteError("ERR " + strings.ToUpper(lname) + " inside MULTI is not allowed")
		s.tx.failed = true
		return true
	}
	s.tx.queue = append(s.tx.queue, queuedCommand{lname: lname, args: copyArgs(args)})
	conn.WriteString("QUEUED")
	return true
}

// copyArgs copies args into one allocation.
func copyArgs(args [][]byte) [][]byte {
	size := 0
	for _, a := range args {
		size += len(a)
	}
	buf := make([]byte, 0, size)
	out := make([][]byte, len(args))
	for i, a := range args {
		buf = append(buf, a...)
		out[i] = buf[len(buf)-len(a) : len(buf) : len(buf)]
	}
	return out
}

// exec runs a transaction whose MULTI was accepted and writes EXEC's reply.
func (n *Node) exec(conn redcon.Conn, s *session) {
	tx := &s.tx
	if tx.failed {
		conn.WriteError("EXECABORT Transaction discarded")
		return
	}
	// A transaction that writes waits out CLIENT PAUSE WRITE once, then
	// holds the write gate, except around queued control commands, which
	// may pause writes or wait for the gate themselves.
	gateHeld := false
	if tx.writes {
		if !n.beginWrite() {
			return
		}
		gateHeld = true
	}
	defer func() {
		if gateHeld {
			n.writeGate.RUnlock()
		}
	}()
	out := s.out[:0]
	next, aborted := 0, false
	n.ks.Transaction(func(txn keyspace.Txn) {
		// Checked under the keyspace lock: a write marks its watchers
		// before it releases the lock (keyspace.WriteHook).
		if tx.watchDirty.Load() {
			aborted = true
			return
		}
		out = appendArrayHeader(out, len(tx.queue))
		out, next = n.execQueuedData(txn, s, out, 0)
	})
	if aborted {
		writeNil(conn, s.resp3)
		return
	}
	for next < len(tx.queue) {
		if gateHeld {
			n.writeGate.RUnlock()
			gateHeld = false
		}
		capture := &replyRecorder{Conn: conn, out: out}
		q := tx.queue[next]
		n.execControl(capture, s, q.lname, q.args)
		out = capture.out
		if capture.closeRequested {
			_ = conn.Close()
		}
		next++
		if next < len(tx.queue) && tx.queue[next].data != nil {
			if tx.writes {
				n.writeGate.RLock()
				gateHeld = true
			}
			n.ks.Transaction(func(txn keyspace.Txn) {
				out, next = n.execQueuedData(txn, s, out, next)
			})
		}
	}
	s.out = out
	conn.WriteRaw(out)
}

// execQueuedData runs the queued data commands from index i up to the next
// control command, each after the checks it passed when queued, which it
// may fail now; it returns where it stopped.
func (n *Node) execQueuedData(txn keyspace.Txn, s *session, out []byte, i int) ([]byte, int) {
	for ; i < len(s.tx.queue) && s.tx.queue[i].data != nil; i++ {
		q := s.tx.queue[i]
		if n.loading.Load() {
			out = redcon.AppendError(out, "LOADING kvrocks is restoring the db from backup")
		} else if msg := n.clusterRefusal(s, q.data, q.args); msg != "" {
			out = redcon.AppendError(out, msg)
		} else if q.data.Write && q.data.FirstKey == 0 && n.view.Load().isReplica() {
			out = redcon.AppendError(out, "READONLY You can't write against a read only slave.")
		} else if s.resp3 {
			s.out3 = txn.Exec(s.out3[:0], q.data, q.args)
			out = appendRESP3(out, s.out3, resp3Aggregates[q.data.Name])
		} else {
			out = txn.Exec(out, q.data, q.args)
		}
	}
	return out, i
}

// watchRegistry maps watched keys to the connections watching them.
type watchRegistry struct {
	// keys counts the watched keys, so writes skip the lock when none is.
	keys     atomic.Int64
	mu       sync.Mutex
	watchers map[string]map[*session]struct{}
}

func (w *watchRegistry) watch(s *session, keys [][]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watchers == nil {
		w.watchers = map[string]map[*session]struct{}{}
	}
	for _, k := range keys {
		key := string(k)
		set := w.watchers[key]
		if set == nil {
			set = map[*session]struct{}{}
			w.watchers[key] = set
		}
		if _, ok := set[s]; !ok {
			set[s] = struct{}{}
			s.tx.watched = append(s.tx.watched, key)
		}
	}
	w.keys.Store(int64(len(w.watchers)))
}

// unwatch ends the session's watches and forgets that they were touched.
func (w *watchRegistry) unwatch(s *session) {
	if len(s.tx.watched) == 0 {
		s.tx.watchDirty.Store(false)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, key := range s.tx.watched {
		if set := w.watchers[key]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(w.watchers, key)
			}
		}
	}
	clear(s.tx.watched)
	s.tx.watched = s.tx.watched[:0]
	s.tx.watchDirty.Store(false)
	w.keys.Store(int64(len(w.watchers)))
}

// touch is the keyspace's WriteHook: it marks the watchers of a write's
// keys, or every watcher for a keyless write.
func (w *watchRegistry) touch(cmd *keyspace.Command, args [][]byte) {
	if w.keys.Load() == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	mark := func(set map[*session]struct{}) {
		for s := range set {
			s.tx.watchDirty.Store(true)
		}
	}
	if cmd.FirstKey == 0 {
		for _, set := range w.watchers {
			mark(set)
		}
		return
	}
	last := cmd.LastKey
	if last < 0 {
		last += len(args)
	}
	for i := cmd.FirstKey; i <= last && i < len(args); i += max(cmd.Step, 1) {
		mark(w.watchers[string(args[i])])
	}
}
