// Reading the cluster's topology and installing it: the refresh loop,
// reloads from the masters and seeds, patches taught by MOVED, and the
// notice that the slot table changed.

package router

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

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
		TLSConfig:       tlsOrNil(r.cfg.TLS, addr),
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
