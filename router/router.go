package router

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/failover"
)

// Request is one client command on its way to a backend. The proxy fills the
// command fields; the router fills Reply. A Request is reused by its session
// from batch to batch, so Reply's capacity is kept.
type Request struct {
	// Raw is the command, RESP-encoded; it is sent verbatim.
	Raw []byte
	// Slot is the hash slot of the command's keys, or -1 for a command aimed
	// at one node (Addr).
	Slot int
	// Addr names the backend for a Slot -1 request (a fan-out to one master).
	Addr string
	// ReadOnly marks commands that are safe to resend after a connection was
	// lost with the request already sent.
	ReadOnly bool
	// Affinity, when not zero, picks the connection to the node: requests
	// with the same affinity share one. A client's pipeline then travels in
	// one write and comes back in one read, while different clients spread
	// over the node's connections. Zero spreads requests by slot.
	Affinity uint32
	// Output, when not nil, bounds the reply bytes kept for the request's
	// client (see OutputBudget).
	Output *OutputBudget
	// Reply is the raw RESP reply once Do returns: the backend's own bytes, or
	// a RESP error made by the router (never a redirect, never a Go error).
	Reply []byte
}

// ErrClosed is returned by calls on a Router after Close.
var ErrClosed = errors.New("router: closed")

// Hold is the seam through which the failover hold (failover.Buffer) holds
// a master's requests while it cannot take them: its writes while it fails
// over, all of them while it is unreachable.
//
// Admit is asked before a request is sent to master, with the end of its
// HoldTimeout budget; nil sends it now. Otherwise the request, and every
// later request of the round to master (so a caller's requests to a node
// stay in order; reads before it are sent), joins the ticket, and waits
// until the ticket is released (then sent, and the ticket told Sent) or
// expired (then answered with a TRYAGAIN error saying it was not executed).
// Observe tells the hold what the router saw of master: a TRYAGAIN, an
// outage's start or end. Notices tells the router the replicas to dial
// ahead and the masters that handed their slots over.
type Hold interface {
	Admit(master string, write bool, deadline time.Time) *failover.Ticket
	Observe(master string, ev failover.Event)
	Notices() <-chan failover.Notice
}

// HeldNotRunError is the error (without its '-') of a write held past its
// budget while its shard's master failed over; the proxy's dedicated
// connections answer it too.
const HeldNotRunError = "TRYAGAIN the shard's master is failing over: the command was held and not executed, retry"

// HoldFullError is the error (without its '-') of a write refused, not
// held, because the hold holds as many bytes as it may; the proxy's
// dedicated connections answer it too.
const HoldFullError = "TRYAGAIN the shard's master is failing over and the proxy holds as much as it may: the command was not executed, retry"

// Replies the router makes itself.
var (
	replyShuttingDown = []byte("-ERR proxy is shutting down\r\n")
	replyLost         = []byte("-ERR backend connection lost after the command was sent: the command may have run\r\n")
	replyNotServed    = []byte("-CLUSTERDOWN Hash slot not served\r\n")
	replyNoRoute      = []byte("-ERR request has neither a valid slot nor a backend address\r\n")
	replyHoldExpired  = []byte("-" + HeldNotRunError + "\r\n")
	replyOversized    = []byte("-ERR reply too large: it holds a bulk string longer than the proxy's max-bulk-len, so it was discarded\r\n")
	replyOutputLimit  = []byte("-ERR the client's replies passed its output limit: discarded\r\n")
	replyCancelled    = []byte("-ERR request cancelled\r\n")
	replyHoldFull     = []byte("-" + HoldFullError + "\r\n")
)

// Router routes requests by slot to the shard masters of a Kvrocks cluster
// or a Redis Cluster.
type Router struct {
	cfg Config
	log *slog.Logger

	// ctx is cancelled by Close; it stops the refresh loop and dials.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	table atomic.Pointer[slotTable]
	// tableMu serialises table writers (reloads and MOVED patches); it
	// guards changed, closed and replaced each time the table is, and
	// keptAtEpoch, the epoch of the last view logged for giving slots back
	// to nodes that handed over.
	tableMu     sync.Mutex
	changed     chan struct{}
	keptAtEpoch int64

	mu    sync.Mutex
	nodes map[string]*node
	// refreshed is closed and replaced after every reload; reloading is
	// true while one runs.
	refreshed chan struct{}
	reloading bool

	refreshTrigger chan struct{}

	counters counters
	// hold is cfg.Hold, or ownHold, made by New when cfg.Hold is nil and
	// closed by Close.
	hold    Hold
	ownHold *failover.Buffer
}

// New loads the topology from the first seed that answers, connects to every
// master and starts the periodic refresh. It fails if no seed answers.
func New(ctx context.Context, cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := newRouter(cfg)
	var errs []error
	for _, seed := range cfg.Seeds {
		view, err := r.fetchView(ctx, seed)
		if err == nil {
			r.applyView(view)
			r.counters.reloads.Add(1)
			break
		}
		errs = append(errs, err)
	}
	if r.table.Load() == nil {
		r.cancel()
		if r.ownHold != nil {
			r.ownHold.Close()
		}
		return nil, fmt.Errorf("router: no seed returned the cluster topology: %w", joinOneLine(errs))
	}
	r.wg.Add(3)
	go r.refreshLoop()
	go r.watch()
	go r.actOnNotices()
	return r, nil
}

// newRouter is a Router with no slot table yet: New loads it.
func newRouter(cfg Config) *Router {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		cfg:            cfg,
		log:            cfg.Logger.With("component", "router"),
		ctx:            ctx,
		cancel:         cancel,
		nodes:          make(map[string]*node),
		refreshed:      make(chan struct{}),
		refreshTrigger: make(chan struct{}, 1),
		hold:           cfg.Hold,
	}
	if r.hold == nil {
		hcfg := failover.DefaultConfig()
		hcfg.Logger = r.log
		own, err := failover.New(hcfg)
		if err != nil {
			panic("router: failover.DefaultConfig is refused: " + err.Error())
		}
		r.hold, r.ownHold = own, own
	}
	return r
}

// Close stops the refresh, fails every queued request and closes every
// backend connection. Do calls after Close answer with an ERR reply.
func (r *Router) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.cancel()
	r.mu.Lock()
	nodes := make([]*node, 0, len(r.nodes))
	for _, n := range r.nodes {
		nodes = append(nodes, n)
	}
	r.mu.Unlock()
	for _, n := range nodes {
		for _, c := range n.conns {
			c.close()
		}
	}
	r.wg.Wait()
	for _, n := range nodes {
		n.closeProbe()
	}
	if r.ownHold != nil {
		r.ownHold.Close()
	}
	return nil
}

// nodeOf returns the node for addr, creating it (and starting to dial its
// connections) on first use, so a node learnt from MOVED is dialled before
// the redirected requests reach it.
func (r *Router) nodeOf(addr string) *node {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.nodes[addr]; n != nil {
		return n
	}
	host, _, _ := net.SplitHostPort(addr)
	n := &node{addr: addr, host: host, conns: make([]*backendConn, r.cfg.ConnsPerNode)}
	for i := range n.conns {
		n.conns[i] = newBackendConn(r, n)
	}
	r.nodes[addr] = n
	if !r.closed.Load() {
		for _, c := range n.conns {
			c.preconnect()
		}
	}
	return n
}

// MasterOf returns the address of the master serving slot, or "" if none
// does or slot is out of range.
func (r *Router) MasterOf(slot int) string {
	if slot < 0 || slot >= SlotCount {
		return ""
	}
	if n := r.table.Load().owner[slot]; n != nil {
		return n.addr
	}
	return ""
}

// Masters returns the address of every node serving slots, in the order of
// their first slot (stable between topology changes). The slice is shared:
// do not modify it.
func (r *Router) Masters() []string {
	return r.table.Load().masters
}

// Topology returns a snapshot of the router's view of the cluster.
func (r *Router) Topology() Topology {
	t := r.table.Load()
	topo := Topology{Epoch: t.epoch}
	for _, addr := range t.masters {
		info := NodeInfo{Addr: addr, Role: "master", Slots: t.rangesOf(addr)}
		for _, n := range t.nodes {
			if n.addr == addr {
				info.ID, info.MasterID = n.id, n.masterID
				if !n.master {
					info.Role = "replica"
				}
				break
			}
		}
		topo.Nodes = append(topo.Nodes, info)
	}
	for _, n := range t.nodes {
		if slices.Contains(t.masters, n.addr) {
			continue
		}
		info := NodeInfo{ID: n.id, Addr: n.addr, Role: "master", MasterID: n.masterID}
		if !n.master {
			info.Role = "replica"
		}
		topo.Nodes = append(topo.Nodes, info)
	}
	return topo
}

// DialNode opens a dedicated connection to addr, authenticated when the
// Config has a password, for the proxy's transactions, blocking commands and
// Pub/Sub. The caller owns and closes it.
func (r *Router) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	return r.dial(ctx, addr)
}

// fetchView reads the cluster's epoch, slot owners and nodes from addr
// through the control-plane client, all of one topology version: a view
// the node changed while it was read (see readView) is read again.
func (r *Router) fetchView(ctx context.Context, addr string) (*clusterView, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	client := redis.NewClient(&redis.Options{
		Addr:            addr,
		Password:        r.cfg.Password,
		Protocol:        2,
		DialTimeout:     r.cfg.DialTimeout,
		DialerRetries:   1, // a dead node must cost one DialTimeout, not five
		ReadTimeout:     r.cfg.ReadTimeout,
		WriteTimeout:    r.cfg.ReadTimeout,
		MaxRetries:      -1,
		PoolSize:        1,
		DisableIdentity: true,
	})
	defer client.Close()
	for range viewReads {
		view, err := readView(ctx, client, addr, host)
		if !errors.Is(err, errViewChanged) {
			return view, err
		}
	}
	return nil, fmt.Errorf("%s: %w %d times in a row", addr, errViewChanged, viewReads)
}

// viewReads bounds the reads of a view that keeps changing: a push is one
// command on a node, so the next read normally sees it whole.
const viewReads = 3

var errViewChanged = errors.New("the topology changed while it was read")

// readView reads CLUSTER INFO, SLOTS, NODES and INFO again. A push may
// land on the node between two of them; slots and nodes of one version
// under the epoch of an older one would drop or skip handover records
// while the table keeps an epoch that a node still on an older version
// passes, so a stale topology could undo a handover. The view is
// errViewChanged when the two epochs differ (a FORCE push at the same
// version in between goes unseen).
func readView(ctx context.Context, client *redis.Client, addr, host string) (*clusterView, error) {
	epoch, err := readEpoch(ctx, client, addr)
	if err != nil {
		return nil, err
	}
	slots, err := client.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER SLOTS: %w", addr, err)
	}
	view := &clusterView{epoch: epoch}
	for _, s := range slots {
		if len(s.Nodes) == 0 {
			return nil, fmt.Errorf("%s: CLUSTER SLOTS range %d-%d has no node", addr, s.Start, s.End)
		}
		owner, err := withHost(s.Nodes[0].Addr, host)
		if err != nil {
			return nil, fmt.Errorf("%s: CLUSTER SLOTS: %w", addr, err)
		}
		view.owners = append(view.owners, slotOwner{SlotRange{s.Start, s.End}, owner, s.Nodes[0].ID})
	}
	if err := validateOwners(view.owners); err != nil {
		return nil, fmt.Errorf("%s: CLUSTER SLOTS: %w", addr, err)
	}
	text, err := client.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER NODES: %w", addr, err)
	}
	if view.nodes, err = parseClusterNodes(text, host); err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	after, err := readEpoch(ctx, client, addr)
	if err != nil {
		return nil, err
	}
	if after != epoch {
		return nil, errViewChanged
	}
	return view, nil
}

// readEpoch reads cluster_current_epoch from CLUSTER INFO.
func readEpoch(ctx context.Context, client *redis.Client, addr string) (int64, error) {
	info, err := client.ClusterInfo(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("%s: CLUSTER INFO: %w", addr, err)
	}
	epoch, err := parseClusterEpoch(info)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", addr, err)
	}
	return epoch, nil
}

// joinOneLine joins errors like errors.Join, but on one line ("; "), so a
// command line can print it as one.
func joinOneLine(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return oneLineErrors(errs)
}

type oneLineErrors []error

func (e oneLineErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e oneLineErrors) Unwrap() []error { return e }

// withHost fills in the host of addr when it has none.
func withHost(addr, host string) (string, error) {
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if h == "" {
		h = host
	}
	return net.JoinHostPort(h, port), nil
}

// applyView installs a reloaded topology. At the current epoch, slots
// patched by MOVED keep their patched owner: Kvrocks' CLUSTER SLOTS stays
// stale after a failover until the controller pushes a new version. A newer
// epoch replaces everything; so does an older one, which reload only passes
// when every node reported it (the cluster was rebuilt). Whatever the epoch,
// no slot goes back to a node that handed over (see handover) unless the
// view makes it a master again at a higher config epoch. A view that
// changes nothing leaves the table, and Changed, alone.
func (r *Router) applyView(view *clusterView) {
	r.tableMu.Lock()
	defer r.tableMu.Unlock()
	cur := r.table.Load()
	nt := &slotTable{epoch: view.epoch, nodes: view.nodes}
	for _, o := range view.owners {
		n := r.nodeOf(o.addr)
		for s := o.Start; s <= o.End; s++ {
			nt.owner[s] = n
		}
	}
	if cur != nil {
		if view.epoch == cur.epoch {
			for s := range nt.owner {
				if cur.patched[s] {
					nt.owner[s], nt.patched[s] = cur.owner[s], true
				}
			}
		}
		nt.handovers = cur.handoversUnder(view)
		if kept := nt.keepHandedOverSlots(cur); kept > 0 && r.keptAtEpoch != view.epoch {
			r.keptAtEpoch = view.epoch
			r.log.Info("topology gives slots back to nodes that handed them over: kept with their new masters until a newer version makes those nodes masters again",
				"epoch", view.epoch, "slots", kept, "handed_over", nt.handovers)
		}
	}
	nt.masters = distinctOwners(&nt.owner)
	if cur != nil && nt.sameAs(cur) {
		return
	}
	r.storeTableLocked(nt)
	if cur == nil || cur.epoch != nt.epoch || !slices.Equal(cur.masters, nt.masters) {
		r.log.Info("topology loaded", "epoch", nt.epoch, "masters", nt.masters)
	}
}

// storeTableLocked installs t and tells whoever waits on Changed; the
// caller holds tableMu.
func (r *Router) storeTableLocked(t *slotTable) {
	r.table.Store(t)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// Changed returns a channel closed the next time the slot table changes: a
// reload, a MOVED, a handover. Subscriptions that must live on a given
// node (the first master, for Pub/Sub) watch it to move when it does.
func (r *Router) Changed() <-chan struct{} {
	r.tableMu.Lock()
	defer r.tableMu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.changed
}

// Refresh reloads the topology and returns once a reload that started after
// the call has finished, or ctx or ReadTimeout ended first: a caller that
// had the topology changed (a controller told of a handover) routes by it.
func (r *Router) Refresh(ctx context.Context) {
	r.awaitRefresh(ctx)
}

// patch applies the MOVED redirects of one round in one new table, unless
// another caller already applied them all.
func (r *Router) patch(patches []slotPatch) {
	r.tableMu.Lock()
	defer r.tableMu.Unlock()
	cur := r.table.Load()
	for _, p := range patches {
		if n := cur.owner[p.slot]; n == nil || n.addr != p.addr {
			// Patches to nodes that handed over are skipped: maybe all.
			if nt := cur.withPatches(patches, r.nodeOf); !nt.sameAs(cur) {
				r.storeTableLocked(nt)
			}
			return
		}
	}
}

// triggerRefresh asks for a reload; requests coalesce.
func (r *Router) triggerRefresh() {
	select {
	case r.refreshTrigger <- struct{}{}:
	default:
	}
}

// awaitRefresh triggers a reload and waits until one that started after the
// call has finished, bounded by ctx and ReadTimeout.
func (r *Router) awaitRefresh(ctx context.Context) {
	timer := time.NewTimer(r.cfg.ReadTimeout)
	defer timer.Stop()
	r.mu.Lock()
	refreshed, running := r.refreshed, r.reloading
	r.mu.Unlock()
	r.triggerRefresh()
	for {
		select {
		case <-refreshed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		case <-r.ctx.Done():
			return
		}
		if !running {
			return
		}
		// That reload began before the call; the trigger queued another.
		r.mu.Lock()
		refreshed, running = r.refreshed, false
		r.mu.Unlock()
	}
}

// refreshLoop reloads the topology periodically and on request, at most once
// per RefreshCooldown for requested reloads.
func (r *Router) refreshLoop() {
	defer r.wg.Done()
	ticker := time.NewTicker(r.cfg.RefreshInterval)
	defer ticker.Stop()
	last := time.Now()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-ticker.C:
		case <-r.refreshTrigger:
			if wait := r.cfg.RefreshCooldown - time.Since(last); wait > 0 {
				select {
				case <-r.ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		r.mu.Lock()
		r.reloading = true
		r.mu.Unlock()
		r.reload()
		last = time.Now()
		r.mu.Lock()
		r.reloading = false
		close(r.refreshed)
		r.refreshed = make(chan struct{})
		r.mu.Unlock()
	}
}

// unreachable reports whether addr is a node in an outage.
func (r *Router) unreachable(addr string) bool {
	r.mu.Lock()
	n := r.nodes[addr]
	r.mu.Unlock()
	return n != nil && n.inOutage.Load()
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// reload fetches the topology from the current masters, then the seeds, and
// installs the first answer at the current epoch or a newer one. A node that
// reports an older epoch has not received the latest topology yet; its view
// is used only if no node knows better.
func (r *Router) reload() {
	cur := r.table.Load()
	candidates := slices.Clone(cur.masters)
	for _, s := range r.cfg.Seeds {
		if !slices.Contains(candidates, s) {
			candidates = append(candidates, s)
		}
	}
	// Unreachable nodes last: one that swallows packets costs a whole
	// DialTimeout, and the reload is what ends its outage.
	slices.SortStableFunc(candidates, func(a, b string) int {
		return cmp.Compare(boolRank(r.unreachable(a)), boolRank(r.unreachable(b)))
	})
	var errs []error
	var behind *clusterView
	for _, addr := range candidates {
		view, err := r.fetchView(r.ctx, addr)
		switch {
		case err == nil && view.epoch >= cur.epoch:
			r.applyView(view)
			r.counters.reloads.Add(1)
			return
		case err == nil:
			if behind == nil || view.epoch > behind.epoch {
				behind = view
			}
		case r.ctx.Err() != nil:
			return
		default:
			errs = append(errs, err)
		}
	}
	if behind != nil {
		r.log.Warn("every node reports an older cluster epoch: taking its topology", "epoch", behind.epoch, "was", cur.epoch)
		r.applyView(behind)
		r.counters.reloads.Add(1)
		return
	}
	r.counters.reloadFailures.Add(1)
	r.log.Warn("topology reload failed", "err", joinOneLine(errs))
}
