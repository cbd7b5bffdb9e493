package kvsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
)

// Failover states of CLUSTERX FAILOVER (apache/kvrocks#3295), in order.
const (
	failoverNone int32 = iota
	failoverStarted
	failoverCheckSlave
	failoverPauseWrite
	failoverWaitSync
	failoverSwitching
	failoverSuccess
	failoverFailed
)

var failoverStateNames = [...]string{"none", "started", "check_slave", "pause_write", "wait_sync", "switching", "success", "failed"}

// failoverMachine holds the state of the server-side graceful failover. An
// applied topology resets it; epoch lets a running failover notice that and
// stop touching the state.
type failoverMachine struct {
	state atomic.Int32
	mu    sync.Mutex // serializes starts, resets and transitions
	epoch uint64
}

func (f *failoverMachine) stateName() string { return failoverStateNames[f.state.Load()] }

// blocksWrites is true from pause_write until switching ends.
func (f *failoverMachine) blocksWrites() bool {
	s := f.state.Load()
	return s >= failoverPauseWrite && s <= failoverSwitching
}

func (f *failoverMachine) reset() {
	f.mu.Lock()
	f.epoch++
	f.state.Store(failoverNone)
	f.mu.Unlock()
}

// start moves none/failed to started and returns the epoch of the new run.
func (f *failoverMachine) start() (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.state.Load(); s != failoverNone && s != failoverFailed {
		return 0, false
	}
	f.epoch++
	f.state.Store(failoverStarted)
	return f.epoch, true
}

// move sets the state if the run of epoch is still the current one.
func (f *failoverMachine) move(epoch uint64, to int32) bool {
	return f.moveWith(epoch, to, nil)
}

// moveWith is move that also runs fn (if not nil) just before the change.
func (f *failoverMachine) moveWith(epoch uint64, to int32, fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.epoch != epoch {
		return false
	}
	if fn != nil {
		fn()
	}
	f.state.Store(to)
	return true
}

// clusterxFailover handles CLUSTERX FAILOVER <replica-id> [timeout-ms] with
// the validations of spec section 3, in order.
func (n *Node) clusterxFailover(conn redcon.Conn, args [][]byte) {
	if len(args) != 3 && len(args) != 4 {
		conn.WriteError("ERR wrong number of arguments")
		return
	}
	timeout := time.Second
	if len(args) == 4 {
		ms, err := strconv.ParseInt(string(args[3]), 10, 64)
		if err != nil {
			conn.WriteError("ERR Invalid timeout")
			return
		}
		if ms < 0 {
			conn.WriteError("ERR timeout is negative")
			return
		}
		timeout = time.Duration(ms) * time.Millisecond
	}
	if s := n.failover.state.Load(); s != failoverNone && s != failoverFailed {
		conn.WriteError("ERR Failover is already in progress")
		return
	}
	if n.view.Load().isReplica() {
		conn.WriteError("ERR Current node is a slave, can't failover")
		return
	}
	run := n.currentRun()
	epoch, ok := n.failover.start()
	if !ok || run == nil {
		conn.WriteError("ERR Failover is already in progress")
		return
	}
	targetID := string(args[2])
	run.wg.Add(1)
	go func() {
		defer run.wg.Done()
		if err := n.runFailover(run, epoch, targetID, timeout); err != nil {
			if n.failover.move(epoch, failoverFailed) {
				n.log.Warn("kvsim failover failed", "target", targetID, "err", err)
			}
		}
	}()
	conn.WriteString("OK")
}

var errFailoverAborted = errors.New("failover superseded or node killed")

// runFailover drives check_slave → pause_write → wait_sync → switching →
// success. An error means failed.
func (n *Node) runFailover(run *nodeRun, epoch uint64, targetID string, timeout time.Duration) error {
	var target *viewNode
	for _, nd := range n.view.Load().nodes {
		if nd.id == targetID {
			target = nd
		}
	}
	if target == nil {
		return fmt.Errorf("node %s is not in the topology", targetID)
	}
	if !n.failover.move(epoch, failoverCheckSlave) {
		return errFailoverAborted
	}
	stream := n.streams.find(target.addr)
	if stream == nil {
		return fmt.Errorf("%s is not replicating from me", target.addr)
	}
	sample := min(max(timeout/2, 100*time.Millisecond), 3*time.Second)
	before := stream.acked.Load()
	if !sleepOrStop(run, sample) {
		return errFailoverAborted
	}
	if stream.isClosed() {
		return fmt.Errorf("%s stopped replicating", target.addr)
	}
	after := stream.acked.Load()
	if seq := n.ks.Sequence(); after < seq {
		lag := float64(seq - after)
		remaining := timeout - sample
		perMs := float64(after-before) / float64(sample.Milliseconds())
		if remaining <= 0 || perMs <= 0 || lag/perMs > float64(remaining.Milliseconds()) {
			return fmt.Errorf("replica lags %v entries, catching up %.2f/ms, %v left", lag, perMs, remaining)
		}
	}

	if n.beforePauseWrite != nil {
		n.beforePauseWrite()
	}
	// Under the exclusive gate every write either landed before the target
	// is recorded or checks the failover state after the pause began.
	n.writeGate.Lock()
	paused := n.failover.move(epoch, failoverPauseWrite)
	targetSeq := n.ks.Sequence()
	n.writeGate.Unlock()
	if !paused {
		return errFailoverAborted
	}
	pausedAt := time.Now()
	if !n.failover.move(epoch, failoverWaitSync) {
		return errFailoverAborted
	}
	for {
		if time.Since(pausedAt) >= timeout {
			return fmt.Errorf("replica did not reach sequence %d within %v", targetSeq, timeout)
		}
		if s := n.streams.find(target.addr); s != nil && s.acked.Load() >= targetSeq {
			break
		}
		if !sleepOrStop(run, 10*time.Millisecond) {
			return errFailoverAborted
		}
	}

	if !n.failover.move(epoch, failoverSwitching) {
		return errFailoverAborted
	}
	if err := n.sendTakeover(run, target.addr); err != nil {
		return fmt.Errorf("takeover on %s: %w", target.addr, err)
	}
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	// Under viewMu no topology can land between the redirect and the state;
	// under the exclusive gate no write sees the old view with the new state.
	n.writeGate.Lock()
	ok := n.failover.moveWith(epoch, failoverSuccess, func() {
		v := *n.view.Load()
		v.migratedTo = target.addr
		n.view.Store(&v)
	})
	n.writeGate.Unlock()
	if !ok {
		return errFailoverAborted
	}
	n.log.Info("kvsim failover succeeded", "target", target.addr)
	return nil
}

// sendTakeover connects to the replica, authenticates with my own password
// and sends CLUSTERX TAKEOVER; anything but +OK is an error.
func (n *Node) sendTakeover(run *nodeRun, addr string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-run.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stopClose := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopClose()
	if n.cfg.Password != "" {
		if err := roundTrip(conn, "+OK", []byte("AUTH"), []byte(n.cfg.Password)); err != nil {
			return err
		}
	}
	return roundTrip(conn, "+OK", []byte("CLUSTERX"), []byte("TAKEOVER"))
}

// roundTrip sends one command and requires the one-line reply want.
func roundTrip(conn net.Conn, want string, args ...[]byte) error {
	if _, err := conn.Write(appendCommand(nil, args...)); err != nil {
		return err
	}
	line, err := readLine(conn)
	if err != nil {
		return err
	}
	if line != want {
		return fmt.Errorf("%s replied %q", args[0], line)
	}
	return nil
}

// readLine reads one CRLF-terminated line byte by byte, so nothing after it
// is consumed (handshakes hand the connection to a buffered reader next).
func readLine(conn net.Conn) (string, error) {
	var line []byte
	var b [1]byte
	for len(line) < 64<<10 {
		if _, err := conn.Read(b[:]); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			if k := len(line); k > 0 && line[k-1] == '\r' {
				line = line[:k-1]
			}
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", errors.New("reply line too long")
}

func sleepOrStop(run *nodeRun, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-run.stop:
		return false
	}
}

// clusterxTakeover handles CLUSTERX TAKEOVER on a replica: it starts serving
// its master's slots, reads and writes, with nothing else changed.
func (n *Node) clusterxTakeover(conn redcon.Conn, args [][]byte) {
	if len(args) != 2 {
		conn.WriteError("ERR wrong number of arguments")
		return
	}
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	v := n.view.Load()
	if v.version < 0 {
		conn.WriteError("ERR Cluster is not initialized")
		return
	}
	if v.myMaster == nil {
		conn.WriteError("ERR No master to takeover")
		return
	}
	nv := *v
	nv.takeover = true
	n.view.Store(&nv)
	n.log.Info("kvsim takeover", "master", v.myMaster.addr)
	conn.WriteString("OK")
}
