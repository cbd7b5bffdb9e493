package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Authority keeps the controller the cluster's topology authority for the
// failovers that pass through the proxy:
//   - Failover asks it for a shard's failover (released Kvrocks, which has no
//     CLUSTERX FAILOVER: the controller's CLIENT PAUSE way);
//   - Report makes it record a failover the servers did themselves
//     (CLUSTERX FAILOVER of kvrocks#3295), retrying until it has, so that no
//     later push of the controller gives the slots back to the old master.
//
// It is safe for concurrent use.
type Authority struct {
	client *Client
	log    *slog.Logger
	// retryMin and retryMax bound the wait between two attempts of a report.
	retryMin, retryMax time.Duration

	mu sync.Mutex
	// pending holds the reports not recorded yet, by new master address:
	// one per shard in practice, since a report replaces the one it undoes.
	pending map[string]*report
	wake    chan struct{}

	recorded, failures, promotedOther atomic.Uint64
	lastError                         atomic.Pointer[string]

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// report is one failover to record: the shard's slots went from oldMaster
// to newMaster (addresses).
type report struct {
	oldMaster, newMaster string
	attempts             int
	next                 time.Time
}

// AuthorityStats is what INFO shows of the controller link.
type AuthorityStats struct {
	// Pending counts the failovers the controller has not recorded yet.
	Pending int
	// Recorded counts the failovers it recorded on the proxy's report,
	// Failures the attempts that failed (each is retried).
	Recorded, Failures uint64
	// PromotedOther counts failovers where the controller promoted another
	// replica than the one asked for.
	PromotedOther uint64
	// LastError is the last attempt's failure, empty if none.
	LastError string
}

// NewAuthority returns an Authority using client; its reports are retried
// in the background until Close.
func NewAuthority(client *Client, log *slog.Logger) *Authority {
	ctx, cancel := context.WithCancel(context.Background())
	a := &Authority{
		client: client, log: log,
		retryMin: 500 * time.Millisecond, retryMax: 30 * time.Second,
		pending: map[string]*report{},
		wake:    make(chan struct{}, 1),
		ctx:     ctx, cancel: cancel, done: make(chan struct{}),
	}
	go a.run()
	return a
}

// Close stops the retries; reports not recorded yet are logged.
func (a *Authority) Close() {
	a.cancel()
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.pending {
		a.log.Warn("the controller never recorded a failover: a push of its topology may give the slots back to the old master",
			"old_master", r.oldMaster, "new_master", r.newMaster, "attempts", r.attempts)
	}
}

// Stats returns the link's counters.
func (a *Authority) Stats() AuthorityStats {
	a.mu.Lock()
	pending := len(a.pending)
	a.mu.Unlock()
	st := AuthorityStats{Pending: pending, Recorded: a.recorded.Load(), Failures: a.failures.Load(),
		PromotedOther: a.promotedOther.Load()}
	if s := a.lastError.Load(); s != nil {
		st.LastError = *s
	}
	return st
}

// ErrPromotedOther is a failover in which the controller promoted another
// replica than the one asked for (upstream ignores a preferred node it does
// not find eligible).
var ErrPromotedOther = errors.New("the controller promoted another replica")

// Failover asks the controller to fail over the shard holding replica (its
// node id or host:port) to it, and waits for the answer. The error is an
// *Error, or wraps ErrPromotedOther when the failover happened to another
// replica.
func (a *Authority) Failover(ctx context.Context, replica string) error {
	cluster, err := a.client.GetCluster(ctx)
	if err != nil {
		return err
	}
	shard, ok := cluster.ShardOfNode(replica)
	if !ok {
		return &Error{Message: fmt.Sprintf("node %s is not in the controller's cluster", replica)}
	}
	s := cluster.Shards[shard]
	if s.Master.ID == replica || s.Master.Addr == replica {
		return &Error{Message: fmt.Sprintf("node %s is already the master of shard %d in the controller's topology", replica, shard)}
	}
	want := replica
	for _, r := range s.Replicas {
		if r.Addr == replica {
			want = r.ID
		}
	}
	promoted, err := a.client.FailoverShard(ctx, shard, want)
	if err != nil {
		return err
	}
	if promoted != want {
		a.promotedOther.Add(1)
		return fmt.Errorf("%w: %s instead of %s (shard %d)", ErrPromotedOther, promoted, want, shard)
	}
	return nil
}

// Report queues the failover of oldMaster's slots to newMaster for the
// controller to record, and returns at once. A report of the opposite
// failover replaces one not recorded yet: the shard is back where the
// controller has it.
func (a *Authority) Report(oldMaster, newMaster string) {
	a.mu.Lock()
	if back := a.pending[oldMaster]; back != nil && back.oldMaster == newMaster {
		delete(a.pending, oldMaster)
		a.mu.Unlock()
		a.log.Info("failover undone before the controller recorded it: nothing to report",
			"old_master", oldMaster, "new_master", newMaster)
		return
	}
	a.pending[newMaster] = &report{oldMaster: oldMaster, newMaster: newMaster}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run sends the due reports, one at a time, until Close.
func (a *Authority) run() {
	defer close(a.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		a.mu.Lock()
		var due *report
		var next time.Time
		now := time.Now()
		for _, r := range a.pending {
			switch {
			case !r.next.After(now):
				due = r
			case next.IsZero() || r.next.Before(next):
				next = r.next
			}
			if due != nil {
				break
			}
		}
		a.mu.Unlock()
		if due != nil {
			a.attempt(due)
			continue
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(wait)
		select {
		case <-a.ctx.Done():
			return
		case <-a.wake:
		case <-timer.C:
		}
	}
}

// attempt tries once to have the controller record r, and schedules the
// next attempt if it failed.
func (a *Authority) attempt(r *report) {
	recorded, err := a.record(r)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending[r.newMaster] != r {
		return // replaced or undone meanwhile
	}
	r.attempts++
	if err == nil {
		delete(a.pending, r.newMaster)
		if recorded {
			a.recorded.Add(1)
			a.log.Info("the controller recorded the failover", "old_master", r.oldMaster, "new_master", r.newMaster)
		}
		return
	}
	a.failures.Add(1)
	msg := err.Error()
	a.lastError.Store(&msg)
	backoff := min(a.retryMax, a.retryMin<<min(r.attempts-1, 10))
	r.next = time.Now().Add(backoff)
	a.log.Warn("the controller did not record a failover yet: retrying; until it does, a push of its topology may give the slots back to the old master",
		"old_master", r.oldMaster, "new_master", r.newMaster, "retry_in", backoff, "err", err)
}

// record makes the controller's topology have r.newMaster as master:
// nothing to do if it already has (recorded false), a failover of the shard
// to it if the controller still has r.oldMaster. Any other master means the
// controller moved on (a later failover): the report is dropped, logged.
func (a *Authority) record(r *report) (recorded bool, err error) {
	ctx := a.ctx
	cluster, err := a.client.GetCluster(ctx)
	if err != nil {
		return false, err
	}
	shard, ok := cluster.ShardOfNode(r.newMaster)
	if !ok {
		return false, &Error{Message: fmt.Sprintf("node %s is not in the controller's cluster", r.newMaster)}
	}
	s := cluster.Shards[shard]
	switch s.Master.Addr {
	case r.newMaster:
		return false, nil
	case r.oldMaster:
	default:
		a.log.Warn("the controller has another master for the shard than the failover's: report dropped",
			"shard", shard, "controller_master", s.Master.Addr, "old_master", r.oldMaster, "new_master", r.newMaster)
		return false, nil
	}
	var id string
	for _, n := range s.Replicas {
		if n.Addr == r.newMaster {
			id = n.ID
		}
	}
	promoted, err := a.client.FailoverShard(ctx, shard, id)
	if err != nil {
		return false, err
	}
	if promoted != id {
		a.promotedOther.Add(1)
		a.log.Error("the controller promoted another replica than the proxy's new master: the topology it pushes now disagrees with the servers",
			"shard", shard, "promoted", promoted, "new_master", r.newMaster)
	}
	return true, nil
}
