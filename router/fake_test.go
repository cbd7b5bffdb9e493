package router

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

// fakeCluster is a scripted cluster of redcon servers for failures a real
// server cannot produce on demand. Every node answers CLUSTER INFO, SLOTS and
// NODES from the same topology, GET/SET from its own map, and hands every
// other command (and every command first) to its script.
type fakeCluster struct {
	mu     sync.Mutex
	epoch  int64
	owners []fakeRange
	nodes  []*fakeNode
}

type fakeRange struct {
	start, end int
	node       *fakeNode
}

// fakeNode is one scripted server.
type fakeNode struct {
	cluster *fakeCluster
	id      string
	addr    string
	srv     *redcon.Server
	served  chan struct{} // closed once Serve returned and closed every connection

	mu   sync.Mutex
	data map[string]string
	// script, when set, may answer a command itself (returning true).
	script func(conn redcon.Conn, args []string) bool

	// lagging nodes answer CLUSTER INFO and SLOTS from the topology they
	// had when freeze was called, like a node a controller has not reached.
	lagging      bool
	frozenEpoch  int64
	frozenOwners []fakeRange

	slotsCalls atomic.Int32 // CLUSTER SLOTS requests served
	accepted   atomic.Int32 // connections accepted

	// stopped, while not nil, is closed when a stopped node resumes: every
	// command waits for it, like a process under SIGSTOP.
	stopped chan struct{}
}

// stopProcess makes n answer nothing, on every connection, until resume.
func (n *fakeNode) stopProcess() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped == nil {
		n.stopped = make(chan struct{})
	}
}

// resume lets a stopped node answer again.
func (n *fakeNode) resume() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped != nil {
		close(n.stopped)
		n.stopped = nil
	}
}

func newFakeCluster(t *testing.T, nodes int) *fakeCluster {
	t.Helper()
	fc := &fakeCluster{epoch: 1}
	for i := range nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		n := &fakeNode{cluster: fc, id: strings.Repeat(strconv.Itoa(i), 40), addr: ln.Addr().String(), data: map[string]string{}}
		n.srv = redcon.NewServer(n.addr, n.handle, func(redcon.Conn) bool { n.accepted.Add(1); return true }, nil)
		n.served = make(chan struct{})
		go func() {
			defer close(n.served)
			_ = n.srv.Serve(ln)
		}()
		t.Cleanup(n.stop)
		t.Cleanup(n.resume) // runs first: a stopped node's handlers must end
		fc.nodes = append(fc.nodes, n)
	}
	// Split the slots evenly, in ranges of 4096 slots so that adjacent
	// ranges of one node are listed unmerged, as Kvrocks does.
	per := SlotCount / nodes
	for i, n := range fc.nodes {
		end := (i+1)*per - 1
		if i == nodes-1 {
			end = SlotCount - 1
		}
		for s := i * per; s <= end; s += 4096 {
			fc.owners = append(fc.owners, fakeRange{s, min(s+4095, end), n})
		}
	}
	return fc
}

// setOwner gives every slot to n under a new epoch (or the same, to mimic a
// stale Kvrocks topology).
func (fc *fakeCluster) setOwner(n *fakeNode, epoch int64) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.owners = []fakeRange{{0, SlotCount - 1, n}}
	fc.epoch = epoch
}

// freeze makes n keep answering with the current topology.
func (fc *fakeCluster) freeze(n *fakeNode) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	n.lagging, n.frozenEpoch, n.frozenOwners = true, fc.epoch, fc.owners
}

func (fc *fakeCluster) seeds() []string {
	var seeds []string
	for _, n := range fc.nodes {
		seeds = append(seeds, n.addr)
	}
	return seeds
}

// stop closes the listener and every connection, and waits for both.
func (n *fakeNode) stop() {
	_ = n.srv.Close() // an error only says it was closed already
	<-n.served
}

func (n *fakeNode) setScript(script func(conn redcon.Conn, args []string) bool) {
	n.mu.Lock()
	n.script = script
	n.mu.Unlock()
}

func (n *fakeNode) handle(conn redcon.Conn, cmd redcon.Command) {
	args := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		args[i] = string(a)
	}
	n.mu.Lock()
	script, stopped := n.script, n.stopped
	n.mu.Unlock()
	if stopped != nil {
		<-stopped
	}
	if script != nil && script(conn, args) {
		return
	}
	name := strings.ToUpper(args[0])
	switch {
	case name == "CLUSTER" && len(args) == 2:
		n.cluster.answer(conn, n, strings.ToUpper(args[1]))
	case name == "ASKING" || name == "PING":
		conn.WriteString("OK")
	case name == "SET" && len(args) == 3:
		n.mu.Lock()
		n.data[args[1]] = args[2]
		n.mu.Unlock()
		conn.WriteString("OK")
	case name == "GET" && len(args) == 2:
		n.mu.Lock()
		v, ok := n.data[args[1]]
		n.mu.Unlock()
		if ok {
			conn.WriteBulkString(v)
		} else {
			conn.WriteNull()
		}
	default:
		conn.WriteError("ERR unknown command '" + args[0] + "'")
	}
}

func (fc *fakeCluster) answer(conn redcon.Conn, self *fakeNode, sub string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	epoch, owners := fc.epoch, fc.owners
	if self.lagging {
		epoch, owners = self.frozenEpoch, self.frozenOwners
	}
	switch sub {
	case "INFO":
		conn.WriteBulkString(fmt.Sprintf("cluster_state:ok\r\ncluster_current_epoch:%d\r\ncluster_my_epoch:%d\r\n", epoch, epoch))
	case "SLOTS":
		self.slotsCalls.Add(1)
		conn.WriteArray(len(owners))
		for _, o := range owners {
			host, port, _ := net.SplitHostPort(o.node.addr)
			p, _ := strconv.Atoi(port)
			conn.WriteArray(3)
			conn.WriteInt(o.start)
			conn.WriteInt(o.end)
			conn.WriteArray(3)
			conn.WriteBulkString(host)
			conn.WriteInt(p)
			conn.WriteBulkString(o.node.id)
		}
	case "NODES":
		var b strings.Builder
		for _, n := range fc.nodes {
			flags := "master"
			if n == self {
				flags = "myself,master"
			}
			fmt.Fprintf(&b, "%s %s@1%s %s - 0 0 %d connected", n.id, n.addr, n.addr[strings.LastIndexByte(n.addr, ':')+1:], flags, fc.epoch)
			for _, o := range fc.owners {
				if o.node == n {
					fmt.Fprintf(&b, " %d-%d", o.start, o.end)
				}
			}
			b.WriteByte('\n')
		}
		conn.WriteBulkString(b.String())
	default:
		conn.WriteError("ERR CLUSTER command, CLUSTER INFO|NODES|SLOTS|KEYSLOT|RESET|REPLICAS")
	}
}

// testConfig is a Config for fakes: fast backoffs, short timeouts.
func testConfig(seeds ...string) Config {
	cfg := DefaultConfig()
	cfg.Seeds = seeds
	cfg.ConnsPerNode = 2
	cfg.DialTimeout = 2 * time.Second
	cfg.RefreshCooldown = time.Millisecond
	cfg.RetryBackoff = time.Millisecond
	cfg.MaxRetryBackoff = 10 * time.Millisecond
	cfg.MaxRetries = 10 // 75 ms of backoff in all: more than one reconnect backoff
	return cfg
}

func newTestRouter(t *testing.T, cfg Config) *Router {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// command RESP-encodes args.
func command(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// keyed builds a request for a command whose first argument is the key.
func keyed(readOnly bool, args ...string) *Request {
	return &Request{Raw: command(args...), Slot: int(Slot([]byte(args[1]))), ReadOnly: readOnly}
}

// doWithin runs Do with a generous bound so a bug fails instead of hanging.
func doWithin(t *testing.T, r *Router, reqs ...*Request) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r.Do(ctx, reqs)
	for i, q := range reqs {
		require.NotEmpty(t, q.Reply, "request %d has no reply", i)
	}
}

// keyOwnedBy returns a key whose slot fc gives to n.
func keyOwnedBy(fc *fakeCluster, n *fakeNode, prefix string) string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for i := 0; ; i++ {
		key := prefix + strconv.Itoa(i)
		s := int(Slot([]byte(key)))
		for _, o := range fc.owners {
			if o.node == n && s >= o.start && s <= o.end {
				return key
			}
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func isCommand(args []string, name string) bool {
	return strings.EqualFold(args[0], name)
}
