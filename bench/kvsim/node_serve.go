package kvsim

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/bench/kvsim/keyspace"
)

// session is the per-connection state.
type session struct {
	id       int64
	addr     string
	created  time.Time
	authed   bool
	readonly bool         // READONLY: a replica serves reads of its master's slots
	name     atomicString // read by CLIENT LIST from other connections
	commands atomic.Int64 // per session: no cache line shared between connections
	out      []byte       // reply buffer reused across commands
	sub      *subscriber  // set when a subscription took the connection over
	tx       transaction  // MULTI/EXEC and WATCH (transactions.go)
	resp3    bool         // HELLO 3 chose RESP3 (resp3.go)
	out3     []byte       // scratch of the RESP3 rewrite (resp3.go), reused across commands
}

func (n *Node) addSession(conn redcon.Conn) {
	s := &session{
		id:      n.nextClientID.Add(1),
		addr:    conn.RemoteAddr(),
		created: time.Now(),
		authed:  n.cfg.Password == "",
	}
	conn.SetContext(s)
	n.totalConns.Add(1)
	n.clientsMu.Lock()
	n.clients[s] = struct{}{}
	n.clientsMu.Unlock()
}

func (n *Node) removeSession(conn redcon.Conn) {
	// A subscriber's session outlives redcon's hold on the connection:
	// endSubscriber ends it.
	if s, ok := conn.Context().(*session); ok && s.sub == nil {
		n.endSession(s)
	}
}

// endSession forgets a closed connection's session and its watches.
func (n *Node) endSession(s *session) {
	n.watches.unwatch(s)
	n.clientsMu.Lock()
	delete(n.clients, s)
	n.closedCmds += s.commands.Load()
	n.clientsMu.Unlock()
}

// replPsyncCommand is the internal command a replica sends to its master to
// start streaming; no client sends it and COMMAND never lists it.
const replPsyncCommand = "__kvsim_psync"

// serve handles one command. redcon calls it from the connection's goroutine
// and flushes the replies after each batch.
func (n *Node) serve(conn redcon.Conn, cmd redcon.Command) {
	s, _ := conn.Context().(*session)
	if s == nil || len(cmd.Args) == 0 {
		return
	}
	s.commands.Add(1)
	args := cmd.Args
	dataCmd := keyspace.Lookup(args[0])
	var lname string
	if dataCmd == nil {
		lname = strings.ToLower(string(args[0]))
	}
	if !s.authed && !authExempt(lname) {
		conn.WriteError("NOAUTH Authentication required.")
		return
	}
	_, blocking := blockingCommands[lname]
	switch {
	case runsExclusively(lname) && !s.tx.active:
		n.exclusive.Lock()
		defer n.exclusive.Unlock()
	case !blocking && !exclusionExempt(lname):
		n.exclusive.RLock()
		defer n.exclusive.RUnlock()
	}
	if dataCmd != nil {
		if dataCmd.Write {
			if !n.beginWrite() {
				return
			}
			defer n.writeGate.RUnlock()
		} else if !n.pause.wait(n, false) {
			return
		}
		if s.tx.active {
			n.queueData(conn, s, dataCmd, args)
		} else {
			n.execData(conn, s, dataCmd, args)
		}
		return
	}
	if blocking && !s.tx.active {
		n.serveBlocking(conn, s, lname, args)
		return
	}
	if !pauseExempt(lname) && !n.pause.wait(n, false) {
		return
	}
	if s.tx.active && n.queueControl(conn, s, lname, args) {
		return
	}
	n.execControl(conn, s, lname, args)
}

// authExempt lists what a connection may send before AUTH (as Kvrocks: AUTH,
// QUIT, HELLO).
func authExempt(lname string) bool {
	return lname == "auth" || lname == "quit" || lname == "hello"
}

// exclusionExempt lists the commands a running script does not hold up:
// the simulator's own (KVSIM, CLIENT, which unpauses, and the replication
// stream, which never ends). Blocking commands, which may wait long, take
// no part either.
func exclusionExempt(lname string) bool {
	return lname == "kvsim" || lname == "client" || lname == replPsyncCommand
}

// pauseExempt lists the commands an ALL pause does not block. Redis blocks
// every client command (even INFO and CLIENT UNPAUSE) during CLIENT PAUSE ALL;
// here connection setup, CLIENT (so an operator or the controller can always
// UNPAUSE), the simulator's own KVSIM admin commands and the internal
// replication handshake go through, so a pause can never deadlock the
// controller that set it or stall replication. INFO and CLUSTER do block, as
// in Redis: a controller polling them waits at most the pause's length.
func pauseExempt(lname string) bool {
	switch lname {
	case "auth", "hello", "quit", "client", "kvsim", replPsyncCommand:
		return true
	}
	return false
}

// beginWrite waits out a write-blocking CLIENT PAUSE and returns holding
// writeGate shared (the caller releases it once the write has executed), so a
// pause or a failover transition that starts later waits for the write to
// land. False, holding nothing, if the node is killed meanwhile.
func (n *Node) beginWrite() bool {
	for {
		n.writeGate.RLock()
		if !n.pause.blocks(true) {
			return true
		}
		n.writeGate.RUnlock()
		if !n.pause.wait(n, true) {
			return false
		}
	}
}

// execData runs a data command through the checks of spec section 2, in order.
// A write runs it holding writeGate shared (see beginWrite), so the view and
// the failover state it checks cannot change under it.
func (n *Node) execData(conn redcon.Conn, s *session, cmd *keyspace.Command, args [][]byte) {
	if !cmd.ArityOK(len(args)) {
		s.out = keyspace.AppendArityError(s.out[:0], cmd)
		conn.WriteRaw(s.out)
		return
	}
	if n.loading.Load() {
		conn.WriteError("LOADING kvrocks is restoring the db from backup")
		return
	}
	if msg := n.clusterRefusal(s, cmd, args); msg != "" {
		conn.WriteError(msg)
		return
	}
	if cmd.Write && cmd.FirstKey == 0 && n.view.Load().isReplica() {
		conn.WriteError("READONLY You can't write against a read only slave.")
		return
	}
	s.out = n.ks.Exec(s.out[:0], cmd, args)
	if s.resp3 {
		s.out3 = appendRESP3(s.out3[:0], s.out, resp3Aggregates[cmd.Name])
		conn.WriteRaw(s.out3)
		return
	}
	conn.WriteRaw(s.out)
}

// clusterRefusal is the error spec section 2's checks give cmd's keys
// (CROSSSLOT, CLUSTERDOWN, TRYAGAIN, MOVED), or "" when this node serves them
// or cmd has none: Kvrocks' Cluster::CanExecByMySelf.
func (n *Node) clusterRefusal(s *session, cmd *keyspace.Command, args [][]byte) string {
	slot, keyed, cross := commandSlot(cmd, args)
	if !keyed {
		return ""
	}
	if cross {
		return "CROSSSLOT Attempted to access keys that don't hash to the same slot"
	}
	v := n.view.Load()
	owner := v.slots[slot]
	if owner == nil {
		return "CLUSTERDOWN Hash slot not served"
	}
	write := cmd.Write
	if write && n.failover.blocksWrites() {
		return "TRYAGAIN Failover in progress"
	}
	switch {
	case v.owns(owner):
		if v.migratedTo != "" {
			return movedError(slot, v.migratedTo)
		}
	case v.takeover && v.masterOwns(owner):
	case !write && s.readonly && v.masterOwns(owner):
	default:
		return movedError(slot, owner.addr)
	}
	return ""
}

// commandSlot is the slot of cmd's keys, walking the key positions as
// Command.Keys does but without allocating: keyed is false for a keyless
// command, cross true if the keys span slots.
func commandSlot(cmd *keyspace.Command, args [][]byte) (slot int, keyed, cross bool) {
	if cmd.FirstKey == 0 {
		return 0, false, false
	}
	last := cmd.LastKey
	if last < 0 {
		last += len(args)
	}
	for i := cmd.FirstKey; i <= last && i < len(args); i += max(cmd.Step, 1) {
		s := hashSlot(args[i])
		if !keyed {
			slot, keyed = s, true
		} else if s != slot {
			return slot, true, true
		}
	}
	return slot, keyed, false
}

func movedError(slot int, addr string) string {
	return "MOVED " + strconv.Itoa(slot) + " " + addr
}

// wrongArityError is Redis 7's arity error, naming the command in lower case
// (the keyspace formats its own commands' with keyspace.AppendArityError).
func wrongArityError(name []byte) string {
	return "ERR wrong number of arguments for '" + strings.ToLower(string(name)) + "' command"
}
