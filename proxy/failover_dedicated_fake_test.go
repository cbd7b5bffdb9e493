package proxy

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"

	"kvproxy/failover"
	"kvproxy/internal/resp"
	"kvproxy/router"
)

// failover.Buffer starts following a master on a dedicated connection's
// TRYAGAIN only while it keeps this method.
var _ tryAgainFollower = (*failover.Buffer)(nil)

// failoverBackend is a DedicatedBackend with a failover hold, a real
// failover.Buffer: every slot belongs to master, and AdmitWrite asks the
// Buffer, as the router does, with a budget of holdTimeout.
type failoverBackend struct {
	*fakeCluster
	hold        *failover.Buffer
	mu          sync.Mutex
	master      string
	holdTimeout time.Duration
	waited      []string
}

func newFailoverBackend(t *testing.T, master string) *failoverBackend {
	hold, err := failover.New(failover.DefaultConfig())
	require.NoError(t, err)
	t.Cleanup(hold.Close)
	return &failoverBackend{fakeCluster: newFakeCluster(1), hold: hold, master: master,
		holdTimeout: router.DefaultConfig().HoldTimeout}
}

func (b *failoverBackend) Masters() []string { return []string{b.MasterOf(0)} }

func (b *failoverBackend) MasterOf(int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.master
}

func (b *failoverBackend) setMaster(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.master = addr
}

func (b *failoverBackend) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	var dialer net.Dialer
	return dialer.DialContext(ctx, "tcp", addr)
}

func (b *failoverBackend) AdmitWrite(addr string, arrived time.Time) *failover.Ticket {
	b.mu.Lock()
	b.waited = append(b.waited, addr)
	budget := b.holdTimeout
	b.mu.Unlock()
	return b.hold.Admit(addr, true, arrived.Add(budget))
}

// startHold holds the master's writes, as its failover pausing them does,
// until the returned release is called.
func (b *failoverBackend) startHold() (release func()) {
	master := b.MasterOf(0)
	b.hold.Observe(master, failover.EventWritesPaused)
	var once sync.Once
	return func() { once.Do(func() { b.hold.Observe(master, failover.EventWritesResumed) }) }
}

// expireHolds holds the master's writes for good, with no budget: every
// write held from now on expires at once.
func (b *failoverBackend) expireHolds(t *testing.T) {
	b.mu.Lock()
	b.holdTimeout = 0
	b.mu.Unlock()
	t.Cleanup(b.startHold())
}

func (b *failoverBackend) waitedFor() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.waited...)
}

// fakeHandovers hands masters over when the test says so, and records the
// TRYAGAINs it is told of.
type fakeHandovers struct {
	mu       sync.Mutex
	handed   map[string]chan struct{}
	tryAgain []string
}

func (h *fakeHandovers) FollowClusterxFailover(string, string) <-chan failover.Outcome { return nil }
func (h *fakeHandovers) FollowRedisFailover(string, string) <-chan failover.Outcome    { return nil }
func (h *fakeHandovers) Report() failover.Report                                       { return failover.Report{} }

func (h *fakeHandovers) FollowAuthorityFailover(string, string, func(context.Context) error) <-chan failover.Outcome {
	return nil
}

func (h *fakeHandovers) NextHandover(master string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.handed == nil {
		h.handed = map[string]chan struct{}{}
	}
	if h.handed[master] == nil {
		h.handed[master] = make(chan struct{})
	}
	return h.handed[master]
}

// handOver closes master's channel, if anyone asked for it.
func (h *fakeHandovers) handOver(master string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.handed[master]
	if ch == nil {
		return false
	}
	close(ch)
	delete(h.handed, master)
	return true
}

func (h *fakeHandovers) Observe(addr string, ev failover.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ev == failover.EventTryAgain {
		h.tryAgain = append(h.tryAgain, addr)
	}
}

func (h *fakeHandovers) triedAgain() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.tryAgain...)
}

// failoverStack is a proxy over a failoverBackend and fakeHandovers.
type failoverStack struct {
	backend   *failoverBackend
	handovers *fakeHandovers
	srv       *Server
	addr      string
	client    *respConn
}

func startFailoverStack(t *testing.T, master string) *failoverStack {
	t.Helper()
	st := &failoverStack{backend: newFailoverBackend(t, master), handovers: &fakeHandovers{}}
	st.srv, st.addr = startProxy(t, st.backend, func(c *Config) { c.Handovers = st.handovers })
	st.client = dialResp(t, st.addr)
	return st
}

// nodeLog records the commands a scripted node received, in order.
type nodeLog struct {
	mu   sync.Mutex
	cmds []string
}

func (l *nodeLog) add(args []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cmds = append(l.cmds, strings.Join(args, " "))
}

func (l *nodeLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.cmds...)
}

// txNode is a node running transactions by script: queued answers each
// queued command (attempt counts MULTIs from 1), exec answers EXEC.
func txNode(t *testing.T, log *nodeLog, queued func(attempt int, args []string) string, exec func(attempt int) string) *scriptedNode {
	var multis atomic.Int64
	return startScriptedNode(t, func(args []string) (string, bool) {
		log.add(args)
		attempt := int(multis.Load())
		switch strings.ToUpper(args[0]) {
		case "MULTI":
			multis.Add(1)
			return "+OK\r\n", false
		case "EXEC":
			return exec(attempt), false
		case "WATCH":
			return "+OK\r\n", false
		}
		return queued(attempt, args), false
	})
}

func queuedOK(int, []string) string { return "+QUEUED\r\n" }

func sendTransaction(c *respConn, cmds ...[]string) {
	raw := encodeCommand("MULTI")
	for _, cmd := range cmds {
		raw += encodeCommand(cmd...)
	}
	c.send(raw + encodeCommand("EXEC"))
}

// readTransaction reads the replies to MULTI and the n queued commands,
// each QUEUED, and returns EXEC's.
func readTransaction(t *testing.T, c *respConn, n int) string {
	t.Helper()
	queued, exec := readTransactionReplies(t, c, n)
	for _, reply := range queued {
		require.Equal(t, "+QUEUED\r\n", reply)
	}
	return exec
}

// readTransactionReplies reads the replies to MULTI, the n queued commands
// and EXEC.
func readTransactionReplies(t *testing.T, c *respConn, n int) (queued []string, exec string) {
	t.Helper()
	require.Equal(t, "+OK\r\n", c.read())
	for range n {
		queued = append(queued, c.read())
	}
	return queued, c.read()
}

// A transaction that writes waits in its master's hold and is sent once
// the hold ends; one that only reads is not held.
func TestTransactionWaitsInTheFailoverHold(t *testing.T) {
	var log nodeLog
	node := txNode(t, &log, queuedOK, func(int) string { return "*1\r\n+OK\r\n" })
	st := startFailoverStack(t, node.addr)
	release := st.backend.startHold()
	t.Cleanup(release)

	sendTransaction(st.client, []string{"SET", "k", "v"})
	require.Eventually(t, func() bool { return len(st.backend.waitedFor()) == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []string{node.addr}, st.backend.waitedFor())
	assert.Zero(t, node.accepted.Load(), "nothing is sent while the hold lasts")

	reader := dialResp(t, st.addr)
	sendTransaction(reader, []string{"GET", "k"})
	assert.Equal(t, "*1\r\n+OK\r\n", readTransaction(t, reader, 1), "a read-only transaction is not held")

	release()
	assert.Equal(t, "*1\r\n+OK\r\n", readTransaction(t, st.client, 1))
	assert.Equal(t, []string{"MULTI", "GET k", "EXEC", "MULTI", "SET k v", "EXEC"}, log.all())
}

// A transaction or blocking write held through a handover the router
// followed goes straight to the new master.
func TestHeldCommandsGoToTheNewMaster(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(c *respConn)
		read func(t *testing.T, c *respConn) string
		want string
	}{
		{"transaction", func(c *respConn) { sendTransaction(c, []string{"SET", "k", "v"}) },
			func(t *testing.T, c *respConn) string { return readTransaction(t, c, 1) }, "*1\r\n+OK\r\n"},
		{"BLPOP", func(c *respConn) { c.send(encodeCommand("BLPOP", "k", "1")) },
			func(_ *testing.T, c *respConn) string { return c.read() }, "*2\r\n$1\r\nk\r\n$1\r\nv\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var oldLog, newLog nodeLog
			answer := func(args []string) (string, bool) {
				switch args[0] {
				case "MULTI":
					return "+OK\r\n", false
				case "SET":
					return "+QUEUED\r\n", false
				}
				return tc.want, false
			}
			oldNode := blockingNode(t, &oldLog, answer)
			newNode := blockingNode(t, &newLog, answer)
			st := startFailoverStack(t, oldNode.addr)
			release := st.backend.startHold()
			t.Cleanup(release)
			tc.send(st.client)
			require.Eventually(t, func() bool { return len(st.backend.waitedFor()) == 1 }, 5*time.Second, time.Millisecond)
			st.backend.setMaster(newNode.addr)
			release()
			assert.Equal(t, tc.want, tc.read(t, st.client))
			assert.Empty(t, oldLog.all())
			assert.NotEmpty(t, newLog.all())
		})
	}
}

// A transaction held past the hold budget is answered TRYAGAIN and nothing
// reaches the backend.
func TestTransactionHeldPastTheBudget(t *testing.T) {
	var log nodeLog
	node := txNode(t, &log, queuedOK, func(int) string { return "*1\r\n+OK\r\n" })
	st := startFailoverStack(t, node.addr)
	st.backend.expireHolds(t)
	sendTransaction(st.client, []string{"SET", "k", "v"})
	assert.Equal(t, "-"+errHeldNotRun+"\r\n", readTransaction(t, st.client, 1))
	assert.Equal(t, "+PONG\r\n", st.client.do("PING"))
	assert.Zero(t, node.accepted.Load())
}

// Refusals proving the transaction did not run make the proxy send it
// again, to the slot's master of the moment; the client sees only the
// successful EXEC.
func TestTransactionResentAfterARefusal(t *testing.T) {
	const ran = "*1\r\n+OK\r\n"
	for _, tc := range []struct {
		name string
		// queued and exec script the first master's first attempt ("%s" is
		// the second master's address); later attempts succeed.
		queued, exec string
		// moved: the refusal redirects to the second master. learnt: the
		// router learns it at the refusal (else the MOVED target is used).
		moved, learnt bool
		tryAgain      bool
	}{
		{name: "a queued command got TRYAGAIN (Kvrocks failover pause)", queued: "-TRYAGAIN Failover in progress\r\n",
			exec: "-" + errExecAbort + "\r\n", tryAgain: true},
		{name: "a queued command got MOVED, router not told yet", queued: "-MOVED 12539 %s\r\n",
			exec: "-" + errExecAbort + "\r\n", moved: true},
		{name: "a queued command got MOVED, router already knows", queued: "-MOVED 12539 127.0.0.1:1\r\n",
			exec: "-" + errExecAbort + "\r\n", moved: true, learnt: true},
		{name: "EXEC got MOVED (Redis after a failover pause)", queued: "+QUEUED\r\n", exec: "-MOVED 12539 %s\r\n", moved: true},
		{name: "EXEC refused as a whole (Redis READONLY)", queued: "+QUEUED\r\n",
			exec: "-EXECABORT Transaction discarded because of: READONLY You can't write against a read only replica.\r\n"},
		{name: "queued CLUSTERDOWN", queued: "-CLUSTERDOWN Hash slot not served\r\n", exec: "-" + errExecAbort + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var oldLog, newLog nodeLog
			newNode := txNode(t, &newLog, queuedOK, func(int) string { return ran })
			var backend atomic.Pointer[failoverBackend]
			refuse := func(script string) string {
				if tc.learnt {
					backend.Load().setMaster(newNode.addr)
				}
				return strings.Replace(script, "%s", newNode.addr, 1)
			}
			oldNode := txNode(t, &oldLog,
				func(attempt int, _ []string) string {
					if attempt == 1 {
						return refuse(tc.queued)
					}
					return "+QUEUED\r\n"
				},
				func(attempt int) string {
					if attempt == 1 {
						return refuse(tc.exec)
					}
					return ran
				})
			st := startFailoverStack(t, oldNode.addr)
			backend.Store(st.backend)
			sendTransaction(st.client, []string{"SET", "k", "v"})
			assert.Equal(t, ran, readTransaction(t, st.client, 1))
			if tc.moved {
				assert.Equal(t, []string{"MULTI", "SET k v", "EXEC"}, oldLog.all())
				assert.Equal(t, []string{"MULTI", "SET k v", "EXEC"}, newLog.all())
				assert.Equal(t, []string{oldNode.addr, newNode.addr}, st.backend.waitedFor(), "each attempt waits in its master's hold")
			} else {
				assert.Equal(t, []string{"MULTI", "SET k v", "EXEC", "MULTI", "SET k v", "EXEC"}, oldLog.all())
				assert.Empty(t, newLog.all())
				assert.Equal(t, int64(1), oldNode.accepted.Load(), "the resend reuses the connection")
			}
			if strings.HasPrefix(tc.exec, "-MOVED") {
				require.Eventually(t, func() bool { return oldNode.closed.Load() == 1 }, 5*time.Second, time.Millisecond,
					"a connection whose EXEC was refused is not reused: Kvrocks may keep it in MULTI")
			}
			if tc.tryAgain {
				assert.Equal(t, []string{oldNode.addr}, st.handovers.triedAgain(), "the failover follower is told of the TRYAGAIN")
			} else {
				assert.Empty(t, st.handovers.triedAgain())
			}
		})
	}
}

// What may have run is never resent, and a refusal that keeps coming is
// given up on after a few resends.
func TestTransactionNotResent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		queued     func(args []string) string
		exec       string
		want       string
		wantQueued []string // each QUEUED when nil
		attempts   int
		multiFail  bool
	}{
		{name: "EXECABORT with a queued error that is not a refusal",
			queued: func(args []string) string {
				if args[0] == "GET" {
					return "-ERR unknown command 'GET'\r\n"
				}
				return "-TRYAGAIN Failover in progress\r\n"
			},
			exec: "-" + errExecAbort + "\r\n", want: "-" + errExecAbort + "\r\n", attempts: 1,
			// The pipeline's commands went with EXEC: the refusal that ran
			// nothing is queued by the proxy, the other error is the server's.
			wantQueued: []string{"+QUEUED\r\n", "-ERR unknown command 'GET'\r\n"}},
		{name: "an error inside EXEC's reply", queued: func([]string) string { return "+QUEUED\r\n" },
			exec: "*2\r\n+OK\r\n-TRYAGAIN Failover in progress\r\n", want: "*2\r\n+OK\r\n-TRYAGAIN Failover in progress\r\n", attempts: 1},
		{name: "TRYAGAIN that never ends", queued: func([]string) string { return "-TRYAGAIN Failover in progress\r\n" },
			exec: "-" + errExecAbort + "\r\n", want: "-EXECABORT Transaction discarded because of: TRYAGAIN Failover in progress\r\n",
			attempts: 1 + maxDedicatedResends},
		{name: "MOVED to itself that never ends", queued: func([]string) string { return "-MOVED 12539 %s\r\n" },
			exec:     "-" + errExecAbort + "\r\n",
			want:     "-EXECABORT Transaction discarded because of: TRYAGAIN the slot kept moving while the command was sent: it was not executed, retry\r\n",
			attempts: 1 + maxDedicatedResends},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log nodeLog
			var self atomic.Value
			node := txNode(t, &log,
				func(_ int, args []string) string {
					return strings.Replace(tc.queued(args), "%s", self.Load().(string), 1)
				},
				func(int) string { return tc.exec })
			self.Store(node.addr)
			st := startFailoverStack(t, node.addr)
			sendTransaction(st.client, []string{"SET", "k", "v"}, []string{"GET", "k"})
			queued, exec := readTransactionReplies(t, st.client, 2)
			if tc.wantQueued == nil {
				tc.wantQueued = []string{"+QUEUED\r\n", "+QUEUED\r\n"}
			}
			assert.Equal(t, tc.wantQueued, queued)
			assert.Equal(t, tc.want, exec)
			multis := 0
			for _, cmd := range log.all() {
				if cmd == "MULTI" {
					multis++
				}
			}
			assert.Equal(t, tc.attempts, multis)
		})
	}
}

// MULTI refused with LOADING is sent again; one refused otherwise is EXEC's
// answer.
func TestTransactionMultiRefused(t *testing.T) {
	var multis atomic.Int64
	node := startScriptedNode(t, func(args []string) (string, bool) {
		switch strings.ToUpper(args[0]) {
		case "MULTI":
			switch multis.Add(1) {
			case 1:
				return "-LOADING kvrocks is restoring the db from backup\r\n", false
			case 3:
				return "-ERR MULTI refused for a test\r\n", false
			}
			return "+OK\r\n", false
		case "EXEC":
			return "*1\r\n:1\r\n", false
		}
		return "+QUEUED\r\n", false
	})
	st := startFailoverStack(t, node.addr)
	sendTransaction(st.client, []string{"INCR", "k"})
	assert.Equal(t, "*1\r\n:1\r\n", readTransaction(t, st.client, 1))
	sendTransaction(st.client, []string{"INCR", "k"})
	assert.Equal(t, "-ERR MULTI refused for a test\r\n", readTransaction(t, st.client, 1))
	assert.Equal(t, int64(3), multis.Load())
}

// A WATCHed transaction cannot follow its keys to another master: when they
// moved, or the server discarded the transaction (its WATCHes with it), EXEC
// answers as if a watched key changed, and nothing runs twice.
func TestWatchedTransactionAbortsWhenItCannotBeResent(t *testing.T) {
	t.Run("refused after WATCH", func(t *testing.T) {
		var log nodeLog
		node := txNode(t, &log, func(int, []string) string { return "-TRYAGAIN Failover in progress\r\n" },
			func(int) string { return "-" + errExecAbort + "\r\n" })
		st := startFailoverStack(t, node.addr)
		require.Equal(t, "+OK\r\n", st.client.do("WATCH", "k"))
		sendTransaction(st.client, []string{"SET", "k", "v"})
		assert.Equal(t, "*-1\r\n", readTransaction(t, st.client, 1))
		assert.Equal(t, []string{"WATCH k", "MULTI", "SET k v", "EXEC"}, log.all())
	})
	t.Run("master changed during the hold", func(t *testing.T) {
		var oldLog, newLog nodeLog
		oldNode := txNode(t, &oldLog, queuedOK, func(int) string { return "*1\r\n+OK\r\n" })
		newNode := txNode(t, &newLog, queuedOK, func(int) string { return "*1\r\n+OK\r\n" })
		st := startFailoverStack(t, oldNode.addr)
		require.Equal(t, "+OK\r\n", st.client.do("WATCH", "k"))
		release := st.backend.startHold()
		t.Cleanup(release)
		sendTransaction(st.client, []string{"SET", "k", "v"})
		require.Eventually(t, func() bool { return len(st.backend.waitedFor()) == 1 }, 5*time.Second, time.Millisecond)
		st.backend.setMaster(newNode.addr)
		release()
		assert.Equal(t, "*-1\r\n", readTransaction(t, st.client, 1))
		assert.Equal(t, []string{"WATCH k"}, oldLog.all())
		assert.Empty(t, newLog.all())
		require.Eventually(t, func() bool { return oldNode.closed.Load() == 1 }, 5*time.Second, time.Millisecond,
			"the connection holding the WATCH is closed")
	})
}

// blockingNode answers blocking commands with answer(args), where "" leaves
// the command blocked, and records them.
func blockingNode(t *testing.T, log *nodeLog, answer func(args []string) (reply string, hangUp bool)) *scriptedNode {
	return startScriptedNode(t, func(args []string) (string, bool) {
		log.add(args)
		return answer(args)
	})
}

func neverAnswers([]string) (string, bool) { return "", false }

// A blocking write waits in its master's hold and is sent once the hold
// ends; held past the budget it gets TRYAGAIN and is not sent.
func TestBlockingCommandWaitsInTheFailoverHold(t *testing.T) {
	var log nodeLog
	node := blockingNode(t, &log, func([]string) (string, bool) { return "*2\r\n$1\r\nl\r\n$1\r\nv\r\n", false })
	st := startFailoverStack(t, node.addr)
	release := st.backend.startHold()
	t.Cleanup(release)
	st.client.send(encodeCommand("BLPOP", "l", "1"))
	require.Eventually(t, func() bool { return len(st.backend.waitedFor()) == 1 }, 5*time.Second, time.Millisecond)
	assert.Zero(t, node.accepted.Load(), "nothing is sent while the hold lasts")
	release()
	assert.Equal(t, "*2\r\n$1\r\nl\r\n$1\r\nv\r\n", st.client.read())

	st.backend.expireHolds(t)
	assert.Equal(t, "-"+errHeldNotRun+"\r\n", st.client.do("BRPOP", "l", "1"))
	assert.Equal(t, []string{"BLPOP l 1"}, log.all())
}

// A blocking command refused without taking effect is resent to the slot's
// master of the moment with what is left of its timeout.
func TestBlockingCommandResentAfterARefusal(t *testing.T) {
	for _, tc := range []struct {
		name, refusal string
		cmd           []string
		// timeout checks the resent command's timeout argument.
		timeout func(t *testing.T, resent []string)
	}{
		{name: "MOVED (Kvrocks after a failover)", refusal: "-MOVED 7 %s\r\n", cmd: []string{"BLPOP", "l", "2.5"},
			timeout: func(t *testing.T, resent []string) {
				left, err := strconv.ParseFloat(resent[2], 64)
				require.NoError(t, err)
				assert.True(t, left > 0 && left <= 2.5, resent[2])
			}},
		{name: "UNBLOCKED (Redis master turned replica)", cmd: []string{"BRPOP", "l", "3"},
			refusal: "-UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)\r\n",
			timeout: func(t *testing.T, resent []string) {
				assert.Contains(t, []string{"2", "3"}, resent[2], "whole seconds stay whole, rounded up")
			}},
		{name: "TRYAGAIN on XREADGROUP", refusal: "-TRYAGAIN Failover in progress\r\n",
			cmd: []string{"XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"},
			timeout: func(t *testing.T, resent []string) {
				assert.Equal(t, "0", resent[5], "no timeout stays none")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var oldLog, newLog nodeLog
			newNode := blockingNode(t, &newLog, func([]string) (string, bool) { return ":1\r\n", false })
			var backend atomic.Pointer[failoverBackend]
			oldNode := blockingNode(t, &oldLog, func([]string) (string, bool) {
				if !strings.HasPrefix(tc.refusal, "-MOVED") {
					backend.Load().setMaster(newNode.addr) // the router learnt it
				}
				return strings.Replace(tc.refusal, "%s", newNode.addr, 1), false
			})
			st := startFailoverStack(t, oldNode.addr)
			backend.Store(st.backend)
			assert.Equal(t, ":1\r\n", st.client.do(tc.cmd...))
			assert.Equal(t, []string{strings.Join(tc.cmd, " ")}, oldLog.all())
			require.Len(t, newLog.all(), 1)
			resent := strings.Fields(newLog.all()[0])
			tc.timeout(t, resent)
		})
	}
}

// refreshingBackend is a failoverBackend whose topology reload routes the
// slot to reloadedTo, as the router's would once the cluster knows better.
type refreshingBackend struct {
	*failoverBackend
	reloadedTo string
	reloads    atomic.Int64
}

func (b *refreshingBackend) Refresh(context.Context) {
	b.reloads.Add(1)
	b.setMaster(b.reloadedTo)
}

// A blocking command refused by a node that no longer serves its slot, while
// the proxy still routes the slot there, is resent after a topology reload:
// resending to the same node would be refused every time (a Redis master
// turned replica answers CLUSTERDOWN while its cluster state is fail) and
// the refusal would reach the client once the resends ran out.
func TestBlockingCommandRefusedByAFormerMasterWaitsForTheTopology(t *testing.T) {
	for _, refusal := range []string{
		"-UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)\r\n",
		"-CLUSTERDOWN The cluster is down\r\n",
	} {
		t.Run(strings.Fields(refusal)[0], func(t *testing.T) {
			var oldLog, newLog nodeLog
			newNode := blockingNode(t, &newLog, func([]string) (string, bool) { return ":1\r\n", false })
			oldNode := blockingNode(t, &oldLog, func([]string) (string, bool) {
				if len(oldLog.all()) == 1 {
					return refusal, false
				}
				return "-CLUSTERDOWN The cluster is down\r\n", false
			})
			backend := &refreshingBackend{failoverBackend: newFailoverBackend(t, oldNode.addr), reloadedTo: newNode.addr}
			_, addr := startProxy(t, backend, func(c *Config) { c.Handovers = &fakeHandovers{} })
			client := dialResp(t, addr)
			assert.Equal(t, ":1\r\n", client.do("BLPOP", "l", "5"))
			assert.Len(t, oldLog.all(), 1, "not resent to the node that refused")
			assert.Len(t, newLog.all(), 1)
			assert.Equal(t, int64(1), backend.reloads.Load())
		})
	}
}

// A blocking write still waiting when its master hands its slots over is
// cut short with an error saying it may have run (it may have popped just
// before); the next one goes to the new master. A blocked read is resent
// there instead.
func TestBlockedCommandWhenItsMasterHandsOver(t *testing.T) {
	var oldLog, newLog nodeLog
	oldNode := blockingNode(t, &oldLog, neverAnswers)
	newNode := blockingNode(t, &newLog, func(args []string) (string, bool) {
		if args[0] == "XREAD" {
			return "*-1\r\n", false
		}
		return "*2\r\n$1\r\nl\r\n$1\r\nv\r\n", false
	})
	st := startFailoverStack(t, oldNode.addr)

	st.client.send(encodeCommand("BLPOP", "l", "0"))
	require.Eventually(t, func() bool { return len(oldLog.all()) == 1 }, 5*time.Second, time.Millisecond)
	st.backend.setMaster(newNode.addr)
	require.True(t, st.handovers.handOver(oldNode.addr))
	assert.Equal(t, "-"+errBlockedHandedOver+mayHaveRun+"\r\n", st.client.read())
	require.Eventually(t, func() bool { return oldNode.closed.Load() == 1 }, 5*time.Second, time.Millisecond,
		"the connection to the old master is closed")
	assert.Equal(t, "*2\r\n$1\r\nl\r\n$1\r\nv\r\n", st.client.do("BLPOP", "l", "0"), "the next one runs on the new master")

	st.backend.setMaster(oldNode.addr)
	st.client.send(encodeCommand("XREAD", "BLOCK", "60000", "STREAMS", "s", "$"))
	require.Eventually(t, func() bool { return len(oldLog.all()) == 2 }, 5*time.Second, time.Millisecond)
	st.backend.setMaster(newNode.addr)
	require.True(t, st.handovers.handOver(oldNode.addr))
	assert.Equal(t, "*-1\r\n", st.client.read(), "a read is resent to the new master")
	newCmds := newLog.all()
	require.Len(t, newCmds, 2)
	resent := strings.Fields(newCmds[1])
	left, err := strconv.Atoi(resent[2])
	require.NoError(t, err)
	assert.True(t, left > 0 && left <= 60000, resent[2])
}

// A master that dies under a blocked command answers the client with an
// error saying a write may have run, never a hang.
func TestBlockedCommandWhenItsMasterDies(t *testing.T) {
	var log nodeLog
	var hangUp = make(chan struct{})
	node := blockingNode(t, &log, func([]string) (string, bool) {
		<-hangUp
		return "", true
	})
	st := startFailoverStack(t, node.addr)
	st.client.send(encodeCommand("BLPOP", "l", "0"))
	require.Eventually(t, func() bool { return len(log.all()) == 1 }, 5*time.Second, time.Millisecond)
	close(hangUp)
	assert.Equal(t, "-"+errBlockedLost+mayHaveRun+"\r\n", st.client.read())
	assert.Equal(t, "+PONG\r\n", st.client.do("PING"))
}

// A master gone silent under a blocked command (no reply, no reset) does
// not hold the client forever: past the command's timeout and a slack, the
// client gets an error saying the command may have run.
func TestBlockedCommandOnASilentMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	var log nodeLog
	node := blockingNode(t, &log, neverAnswers)
	st := startFailoverStack(t, node.addr)
	st.client.send(encodeCommand("BLPOP", "l", "0.1"))
	var reply string
	var err error
	for range 3 { // each read waits 5 s at most; the slack is 5 s
		if reply, err = st.client.tryRead(); err == nil || !isTimeout(err) {
			break
		}
	}
	require.NoError(t, err)
	assert.Equal(t, "-"+errBlockedLost+mayHaveRun+"\r\n", reply)
	require.Eventually(t, func() bool { return node.closed.Load() == 1 }, 5*time.Second, time.Millisecond)
}

func TestWithRemainingTimeout(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		elapsed time.Duration
		want    string // the resent timeout, "" when not resendable
	}{
		{[]string{"BLPOP", "a", "b", "10"}, 2500 * time.Millisecond, "8"},
		{[]string{"BLPOP", "a", "10"}, 15 * time.Second, "1"},
		{[]string{"BRPOP", "a", "1.5"}, 500 * time.Millisecond, "1.000"},
		{[]string{"BZPOPMIN", "a", "0"}, time.Hour, "0"},
		{[]string{"BLMOVE", "a", "b", "LEFT", "RIGHT", "2"}, 0, "2"},
		{[]string{"BLMPOP", "0.2", "1", "a", "LEFT"}, time.Second, "0.001"},
		{[]string{"XREAD", "COUNT", "block", "BLOCK", "900", "STREAMS", "s", "0"}, 400 * time.Millisecond, "500"},
		{[]string{"XREADGROUP", "GROUP", "block", "c", "BLOCK", "5", "STREAMS", "s", ">"}, 0, "5"},
		{[]string{"XREAD", "STREAMS", "BLOCK", "0"}, 0, ""},
		{[]string{"BLPOP", "a", "-1"}, 0, ""},
		{[]string{"BLPOP", "a", "nan"}, 0, ""},
		{[]string{"BLPOP", "a", "1e300"}, 0, ""},
		{[]string{"XREAD", "BLOCK", "9223372036854775807", "STREAMS", "s", "0"}, 0, ""},
		{[]string{"WAIT", "1", "100"}, 0, ""},
	} {
		args := make([][]byte, len(tc.args))
		for i, a := range tc.args {
			args[i] = []byte(a)
		}
		cmd := LookupCommand(args[0])
		raw, ok := withRemainingTimeout(cmd, args, tc.elapsed)
		if tc.want == "" {
			assert.False(t, ok, "%v", tc.args)
			continue
		}
		require.True(t, ok, "%v", tc.args)
		at, _ := timeoutArg(cmd, args)
		want := append([]string(nil), tc.args...)
		want[at] = tc.want
		assert.Equal(t, encodeCommand(want...), string(raw), "%v", tc.args)
	}
}

// A resent command differs from the client's only in its timeout.
func FuzzWithRemainingTimeout(f *testing.F) {
	f.Add("BLPOP", "a", "1.5", int64(time.Second))
	f.Add("XREAD", "BLOCK", "100", int64(0))
	f.Add("BLMPOP", "1e3", "x", int64(-1))
	f.Fuzz(func(t *testing.T, name, a, b string, elapsed int64) {
		args := [][]byte{[]byte(name), []byte(a), []byte(b), []byte("STREAMS"), []byte("k"), []byte("0")}
		cmd := LookupCommand(args[0])
		raw, ok := withRemainingTimeout(cmd, args, time.Duration(elapsed))
		if !ok {
			return
		}
		parsed, err := redcon.Parse(raw)
		require.NoError(t, err)
		require.Len(t, parsed.Args, len(args))
		at, _ := timeoutArg(cmd, args)
		for i := range args {
			if i != at {
				assert.Equal(t, args[i], parsed.Args[i])
			}
		}
	})
}

func TestRefusedNotRun(t *testing.T) {
	for reply, want := range map[string]bool{
		"-TRYAGAIN Failover in progress\r\n":                       true,
		"-MOVED 1 a:1\r\n":                                         true,
		"-READONLY You can't write against a read only slave.\r\n": true,
		"-LOADING kvrocks is restoring the db from backup\r\n":     true,
		"-MASTERDOWN Link with MASTER is down\r\n":                 true,
		"-CLUSTERDOWN Hash slot not served\r\n":                    true,
		"-TRYAGAINX\r\n":                                           false,
		"-ERR TRYAGAIN\r\n":                                        false,
		"-ASK 1 a:1\r\n":                                           false,
		"+TRYAGAIN\r\n":                                            false,
		"-":                                                        false,
	} {
		assert.Equal(t, want, refusedNotRun([]byte(reply)), reply)
	}
}

// A first WATCH refused because its slot moved is applied on the new
// master, where the transaction then runs; a later WATCH cannot move, so
// EXEC aborts as if a watched key changed, without sending anything.
func TestWatchAfterItsSlotMoved(t *testing.T) {
	var newLog, oldLog nodeLog
	newNode := txNode(t, &newLog, queuedOK, func(int) string { return "*1\r\n+OK\r\n" })
	// The old master still has {t}a but no longer {t}b.
	oldNode := startScriptedNode(t, func(args []string) (string, bool) {
		oldLog.add(args)
		if args[0] == "WATCH" && args[1] == "{t}a" {
			return "+OK\r\n", false
		}
		return "-MOVED 5 " + newNode.addr + "\r\n", false
	})
	st := startFailoverStack(t, oldNode.addr)

	assert.Equal(t, "+OK\r\n", st.client.do("WATCH", "{t}b"))
	sendTransaction(st.client, []string{"SET", "{t}b", "v"})
	assert.Equal(t, "*1\r\n+OK\r\n", readTransaction(t, st.client, 1))
	assert.Equal(t, []string{"WATCH {t}b", "MULTI", "SET {t}b v", "EXEC"}, newLog.all())

	assert.Equal(t, "+OK\r\n", st.client.do("WATCH", "{t}a"))
	assert.Equal(t, "+OK\r\n", st.client.do("WATCH", "{t}b"))
	sendTransaction(st.client, []string{"SET", "{t}b", "v"})
	assert.Equal(t, "*-1\r\n", readTransaction(t, st.client, 1))
	assert.Equal(t, []string{"WATCH {t}b", "WATCH {t}a", "WATCH {t}b"}, oldLog.all())
	require.Eventually(t, func() bool { return oldNode.closed.Load() == 2 }, 5*time.Second, time.Millisecond,
		"the connections holding the WATCHes are closed")
	assert.Len(t, newLog.all(), 4, "nothing more reaches the new master")
}

// A MOVED or ASK element of EXEC's array (Kvrocks re-checks each queued
// command at EXEC) reaches the client as a TRYAGAIN saying it did not run;
// other replies pass unchanged.
func TestHideRedirectsInExecReply(t *testing.T) {
	tryAgain := "-" + errRedirectedInExec + "\r\n"
	for _, c := range []struct{ in, want string }{
		{"*2\r\n+OK\r\n-MOVED 12 10.0.0.2:7000\r\n", "*2\r\n+OK\r\n" + tryAgain},
		{"*3\r\n-ASK 1 h:1\r\n$8\r\n-MOVED 1\r\n*1\r\n-MOVED 3 h:2\r\n", "*3\r\n" + tryAgain + "$8\r\n-MOVED 1\r\n*1\r\n-MOVED 3 h:2\r\n"},
		{"*2\r\n+OK\r\n-TRYAGAIN Failover in progress\r\n", "*2\r\n+OK\r\n-TRYAGAIN Failover in progress\r\n"},
		{"*-1\r\n", "*-1\r\n"},
		{"*3\r\n+OK\r\n-MOVED 1 h:1\r\n", "*3\r\n+OK\r\n-MOVED 1 h:1\r\n"}, // truncated: left alone
		{"-MOVED 1 h:1\r\n", "-MOVED 1 h:1\r\n"},                           // not EXEC's array: handled as a refusal
	} {
		assert.Equal(t, c.want, string(hideRedirects([]byte(c.in))), "%q", c.in)
	}
}

// hideRedirects reads backend bytes: whatever it gets, it returns the input
// or one whole frame with the same number of elements, none a redirect.
func FuzzHideRedirects(f *testing.F) {
	for _, seed := range []string{"*2\r\n+OK\r\n-MOVED 12 10.0.0.2:7000\r\n", "*1\r\n-ASK 1 h:1\r\n", "*-1\r\n",
		"*3\r\n+OK\r\n-MOVED 1 h:1\r\n", "*2\r\n$8\r\n-MOVED 1\r\n*1\r\n-MOVED 3 h:2\r\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := hideRedirects(in)
		if bytes.Equal(out, in) {
			return
		}
		size, err := resp.NewScanner(resp.DefaultMaxBulkLen).Scan(out)
		require.NoError(t, err)
		require.Equal(t, len(out), size, "one whole frame")
		line, next, ok := resp.ReplyLine(out)
		require.True(t, ok)
		n, ok := resp.ParseUint(line)
		require.True(t, ok)
		inLine, _, _ := resp.ReplyLine(in)
		require.Equal(t, string(inLine), string(line), "the same element count")
		scanner := resp.NewScanner(resp.DefaultMaxBulkLen)
		rest := out[next:]
		for range n {
			size, err := scanner.Scan(rest)
			require.NoError(t, err)
			require.False(t, bytes.HasPrefix(rest, []byte("-MOVED ")) || bytes.HasPrefix(rest, []byte("-ASK ")))
			rest = rest[size:]
		}
	})
}

// countsOf is what the hold counted of master's held requests, but the
// longest wait, which is wall time.
func (b *failoverBackend) countsOf(master string) failover.Counts {
	counts := b.hold.Report().Of(master).Holds
	counts.Longest = 0
	return counts
}

// A dedicated write's wait is counted by the hold as the router's own held
// writes are: expired past its budget (and not sent), or abandoned by a
// client that hangs up while it waits (and not sent).
func TestDedicatedHeldWritesAreCounted(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(c *respConn)
		read func(t *testing.T, c *respConn) string
	}{
		{"transaction", func(c *respConn) { sendTransaction(c, []string{"SET", "k", "v"}) },
			func(t *testing.T, c *respConn) string { return readTransaction(t, c, 1) }},
		{"BLPOP", func(c *respConn) { c.send(encodeCommand("BLPOP", "k", "1")) },
			func(_ *testing.T, c *respConn) string { return c.read() }},
	} {
		t.Run(tc.name+" expired", func(t *testing.T) {
			var log nodeLog
			node := blockingNode(t, &log, neverAnswers)
			st := startFailoverStack(t, node.addr)
			st.backend.expireHolds(t)
			tc.send(st.client)
			assert.Equal(t, "-"+errHeldNotRun+"\r\n", tc.read(t, st.client))
			assert.Equal(t, failover.Counts{Held: 1, Expired: 1}, st.backend.countsOf(node.addr))
			assert.Zero(t, node.accepted.Load())
		})
		t.Run(tc.name+" abandoned", func(t *testing.T) {
			var log nodeLog
			node := blockingNode(t, &log, neverAnswers)
			st := startFailoverStack(t, node.addr)
			release := st.backend.startHold()
			t.Cleanup(release)
			tc.send(st.client)
			require.Eventually(t, func() bool { return st.backend.countsOf(node.addr).HeldNow == 1 }, 5*time.Second, time.Millisecond)
			require.NoError(t, st.client.conn.Close())
			require.Eventually(t, func() bool { return st.backend.countsOf(node.addr).Abandoned == 1 }, 5*time.Second, time.Millisecond,
				"the client hung up while its write waited")
			release()
			assert.Equal(t, failover.Counts{Held: 1, Abandoned: 1}, st.backend.countsOf(node.addr))
			assert.Zero(t, node.accepted.Load(), "nothing is sent for a client gone")
		})
	}
}
