package kvsim

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"kvproxy/bench/kvsim/keyspace"
)

// BLPOP, BRPOP and BLMOVE as Kvrocks (unstable, 2025) runs them, read from
// src/commands/cmd_list.cc (CommandBPop, CommandBLMove),
// src/commands/blocking_commander.h and Server::BlockOnKey, UnblockOnKey and
// WakeupBlockingConns in src/server/server.cc:
//
//   - They are write commands: a CLIENT PAUSE WRITE or a failover's
//     pause_write holds them, and the cluster checks (CROSSSLOT, CLUSTERDOWN,
//     TRYAGAIN, MOVED) run before they try to pop or block.
//   - The timeout is a float of seconds ("ERR timeout is not a float or out
//     of range"); a negative one is "ERR timeout should not be negative" for
//     BLPOP/BRPOP and "ERR timeout is negative" for BLMOVE, whose LEFT|RIGHT
//     arguments are checked first ("ERR syntax error"). A timeout that rounds
//     to 0 microseconds blocks forever.
//   - A timeout answers Kvrocks' NoopReply: "$-1" for BLPOP and BRPOP, "*-1"
//     for BLMOVE (the reverse of Redis). Inside EXEC they never block: they
//     try once and answer NoopReply.
//   - A blocked client waits on its keys (BLMOVE on its source only) in FIFO
//     order. Only LPUSH, RPUSH, LPUSHX and RPUSHX wake waiters (LMOVE,
//     LINSERT and replicated changes do not): each wakes as many waiters of
//     its key as it pushed elements, taking them off the key's queue; a woken
//     client tries again (over all its keys, with no cluster or pause check)
//     and, if another client took the elements first, stays blocked but no
//     longer waits on that key, so only a push to its other keys or its
//     timeout ends it.
//   - Nothing else reaches a blocked client: a failover or a topology change
//     leaves it blocked until its timeout (a node turned replica sees no
//     pushes). Closing the connection unblocks it.
//   - BLMOVE treats a moved empty element as nothing moved and blocks, as
//     Kvrocks does. BRPOPLPUSH is not a Kvrocks command.
//
// kvsim's differences: replies to commands pipelined before a blocking one
// are flushed only when it returns (redcon writes a batch's replies after its
// last command); a client that sends more bytes while blocked loses the close
// detection (the bytes are left for redcon) and stays blocked until a push,
// its timeout or Kill; inside MULTI the cluster checks run at EXEC, not at
// queue time.

// blockingCommands are the key positions and arities of the blocking
// commands, for the cluster checks.
var blockingCommands = map[string]*keyspace.Command{
	"blpop":  {Name: "blpop", Arity: -3, Write: true, FirstKey: 1, LastKey: -2, Step: 1},
	"brpop":  {Name: "brpop", Arity: -3, Write: true, FirstKey: 1, LastKey: -2, Step: 1},
	"blmove": {Name: "blmove", Arity: 6, Write: true, FirstKey: 1, LastKey: 2, Step: 1},
}

var (
	cmdLPop  = keyspace.Lookup([]byte("lpop"))
	cmdRPop  = keyspace.Lookup([]byte("rpop"))
	cmdLPush = keyspace.Lookup([]byte("lpush"))
	cmdRPush = keyspace.Lookup([]byte("rpush"))
	cmdLLen  = keyspace.Lookup([]byte("llen"))
)

const (
	replyNilBulk  = "$-1\r\n"
	replyNilArray = "*-1\r\n"
)

// blockingRequest is a parsed blocking command; its byte slices are copies.
type blockingRequest struct {
	keys    [][]byte // keys to pop from in order; BLMOVE's source alone
	left    bool     // pop from the head
	dst     []byte   // BLMOVE's destination, nil for BLPOP and BRPOP
	dstLeft bool     // BLMOVE pushes to the destination's head
	timeout time.Duration
}

// noopReply is what the command answers when it popped nothing.
func (r *blockingRequest) noopReply() string {
	if r.dst != nil {
		return replyNilArray
	}
	return replyNilBulk
}

// parseBlocking parses a blocking command whose arity has been checked, or
// returns Kvrocks' parse error.
func parseBlocking(lname string, args [][]byte) (*blockingRequest, string) {
	req := &blockingRequest{left: lname != "brpop"}
	negative := "ERR timeout should not be negative"
	if lname == "blmove" {
		var ok bool
		if req.left, ok = parseSide(args[3]); !ok {
			return nil, "ERR syntax error"
		}
		if req.dstLeft, ok = parseSide(args[4]); !ok {
			return nil, "ERR syntax error"
		}
		req.dst = bytes.Clone(args[2])
		req.keys = [][]byte{bytes.Clone(args[1])}
		negative = "ERR timeout is negative"
	} else {
		req.keys = copyArgs(args[1 : len(args)-1])
	}
	seconds, err := strconv.ParseFloat(string(args[len(args)-1]), 64)
	micros := seconds * 1e6
	if err != nil || math.IsNaN(seconds) || math.IsInf(micros, 0) || math.Abs(micros) >= math.MaxInt64 {
		return nil, "ERR timeout is not a float or out of range"
	}
	if seconds < 0 {
		return nil, negative
	}
	// Kvrocks counts microseconds in an int64; past what a Duration holds
	// the wait is forever all the same.
	req.timeout = time.Duration(math.MaxInt64)
	if micros < math.MaxInt64/1000 {
		req.timeout = time.Duration(int64(micros)) * time.Microsecond
	}
	return req, ""
}

func parseSide(arg []byte) (left, ok bool) {
	switch strings.ToLower(string(arg)) {
	case "left":
		return true, true
	case "right":
		return false, true
	}
	return false, false
}

// blockedClient is one blocked connection.
type blockedClient struct {
	wake chan struct{} // capacity 1: a push to one of its keys woke it
}

// blockingRegistry is the FIFO of blocked clients of each key.
type blockingRegistry struct {
	count   atomic.Int64 // waiting entries, so writes skip the lock when none
	mu      sync.Mutex
	waiting map[string][]*blockedClient

	// silent, guarded by the keyspace lock, mutes wakeOnPush for BLMOVE's
	// own push (Kvrocks' LMove wakes nobody).
	silent bool
}

// block queues c on each key. The caller holds the keyspace lock, so no push
// slips between its failed pop and the queueing.
func (r *blockingRegistry) block(c *blockedClient, keys [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil {
		r.waiting = map[string][]*blockedClient{}
	}
	for _, k := range keys {
		r.waiting[string(k)] = append(r.waiting[string(k)], c)
		r.count.Add(1)
	}
}

// unblock takes c off the queues of keys it still waits on.
func (r *blockingRegistry) unblock(c *blockedClient, keys [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		queue := r.waiting[string(k)]
		for i, w := range queue {
			if w == c {
				queue = append(queue[:i], queue[i+1:]...)
				r.count.Add(-1)
				break
			}
		}
		if len(queue) == 0 {
			delete(r.waiting, string(k))
		} else {
			r.waiting[string(k)] = queue
		}
	}
}

// wakeOnPush wakes, for a push that did not fail, as many of its key's
// waiters as it pushed elements, oldest first. It runs under the keyspace
// lock (keyspace.WriteHook).
func (r *blockingRegistry) wakeOnPush(cmd *keyspace.Command, args [][]byte) {
	if r.count.Load() == 0 || r.silent {
		return
	}
	switch cmd.Name {
	case "lpush", "rpush", "lpushx", "rpushx":
	default:
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := string(args[1])
	queue := r.waiting[key]
	n := min(len(args)-2, len(queue))
	for _, c := range queue[:n] {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	r.count.Add(-int64(n))
	if n == len(queue) {
		delete(r.waiting, key)
	} else {
		r.waiting[key] = append(queue[:0], queue[n:]...)
	}
}

// onClientWrite is the keyspace's WriteHook: watches and blocked clients
// learn of every client write.
func (n *Node) onClientWrite(cmd *keyspace.Command, args [][]byte) {
	n.watches.touch(cmd, args)
	n.blocked.wakeOnPush(cmd, args)
}

// checkBlocking runs a blocking command's checks in order (arity, syntax,
// LOADING, cluster) and returns its request or the error to answer.
func (n *Node) checkBlocking(s *session, lname string, args [][]byte) (*blockingRequest, []byte) {
	cmd := blockingCommands[lname]
	if !cmd.ArityOK(len(args)) {
		return nil, keyspace.AppendArityError(nil, cmd)
	}
	req, msg := parseBlocking(lname, args)
	switch {
	case msg != "":
	case n.loading.Load():
		msg = "LOADING kvrocks is restoring the db from backup"
	default:
		msg = n.clusterRefusal(s, cmd, args)
	}
	if msg != "" {
		return nil, redcon.AppendError(nil, msg)
	}
	return req, nil
}

// serveBlocking runs BLPOP, BRPOP or BLMOVE outside MULTI: it pops at once
// if it can, else blocks the connection's goroutine until a push wakes it,
// its timeout, the client closing the connection, or Kill.
func (n *Node) serveBlocking(conn redcon.Conn, s *session, lname string, args [][]byte) {
	if !n.beginWrite() {
		return
	}
	req, refusal := n.checkBlocking(s, lname, args)
	if refusal != nil {
		n.writeGate.RUnlock()
		conn.WriteRaw(refusal)
		return
	}
	client := &blockedClient{wake: make(chan struct{}, 1)}
	var reply []byte
	var done bool
	n.ks.Transaction(func(txn keyspace.Txn) {
		if reply, done = n.tryBlockingPop(txn, req); !done {
			n.blocked.block(client, req.keys)
		}
	})
	n.writeGate.RUnlock()
	if done {
		conn.WriteRaw(reply)
		return
	}
	defer n.blocked.unblock(client, req.keys)
	run := n.currentRun()
	if run == nil {
		return
	}
	var expired <-chan time.Time
	if req.timeout > 0 {
		timer := time.NewTimer(req.timeout)
		defer timer.Stop()
		expired = timer.C
	}
	closed, stopWatching := watchPeerClose(conn.NetConn())
	defer stopWatching()
	for {
		select {
		case <-client.wake:
			// As Kvrocks' OnWrite: no pause or cluster check, but the
			// write lands before any failover transition.
			n.writeGate.RLock()
			n.ks.Transaction(func(txn keyspace.Txn) { reply, done = n.tryBlockingPop(txn, req) })
			n.writeGate.RUnlock()
			if done {
				conn.WriteRaw(reply)
				return
			}
		case <-expired:
			conn.WriteRaw([]byte(req.noopReply()))
			return
		case <-closed:
			return
		case <-run.stop:
			return
		}
	}
}

// execBlockingInExec runs a blocking command queued in MULTI: one try, and
// NoopReply instead of blocking.
func (n *Node) execBlockingInExec(conn redcon.Conn, s *session, lname string, args [][]byte) {
	n.writeGate.RLock()
	defer n.writeGate.RUnlock()
	req, refusal := n.checkBlocking(s, lname, args)
	if refusal != nil {
		conn.WriteRaw(refusal)
		return
	}
	var reply []byte
	var done bool
	n.ks.Transaction(func(txn keyspace.Txn) { reply, done = n.tryBlockingPop(txn, req) })
	if !done {
		reply = []byte(req.noopReply())
	}
	conn.WriteRaw(reply)
}

// tryBlockingPop pops (or moves) one element under the keyspace lock. done
// is false when there was nothing to pop; otherwise reply is the command's
// reply, an error included.
func (n *Node) tryBlockingPop(txn keyspace.Txn, req *blockingRequest) (reply []byte, done bool) {
	if req.dst != nil {
		return n.tryMove(txn, req)
	}
	pop := cmdRPop
	if req.left {
		pop = cmdLPop
	}
	for _, key := range req.keys {
		out := txn.Exec(nil, pop, [][]byte{[]byte(pop.Name), key})
		if out[0] == '-' {
			return out, true
		}
		if elem, ok := bulkPayload(out); ok {
			reply = redcon.AppendArray(nil, 2)
			reply = redcon.AppendBulk(reply, key)
			return redcon.AppendBulk(reply, elem), true
		}
	}
	return nil, false
}

// tryMove is BLMOVE's try: LMOVE's type checks, then the pop and the push,
// journaled (and replicated) as two writes.
func (n *Node) tryMove(txn keyspace.Txn, req *blockingRequest) ([]byte, bool) {
	src := req.keys[0]
	for _, key := range [][]byte{src, req.dst} {
		out := txn.Exec(nil, cmdLLen, [][]byte{[]byte("llen"), key})
		if out[0] == '-' {
			return out, true
		}
		if bytes.Equal(key, src) && string(out) == ":0\r\n" {
			return nil, false
		}
	}
	pop, push := cmdRPop, cmdRPush
	if req.left {
		pop = cmdLPop
	}
	if req.dstLeft {
		push = cmdLPush
	}
	elem, _ := bulkPayload(txn.Exec(nil, pop, [][]byte{[]byte(pop.Name), src}))
	n.blocked.silent = true
	txn.Exec(nil, push, [][]byte{[]byte(push.Name), req.dst, elem})
	n.blocked.silent = false
	if len(elem) == 0 {
		return nil, false
	}
	return redcon.AppendBulk(nil, elem), true
}

// bulkPayload is the payload of a non-nil RESP bulk string reply.
func bulkPayload(reply []byte) ([]byte, bool) {
	if len(reply) < 4 || reply[0] != '$' || reply[1] == '-' {
		return nil, false
	}
	i := bytes.Index(reply, []byte("\r\n"))
	if i < 0 || len(reply) < i+4 {
		return nil, false
	}
	return reply[i+2 : len(reply)-2], true
}
