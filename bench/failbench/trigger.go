package failbench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"kvproxy/bench/kvsim"
	"kvproxy/bench/soak"
	"kvproxy/failover"
)

// Phase is one step of a handover, as the bench saw it happen: the
// trigger sent and answered, each cluster_failover_state the old master
// reported, the replica serving the slots, the topology committed.
type Phase struct {
	AtMs  float64 `json:"at_ms"` // since the load started
	Event string  `json:"event"`
}

// phases collects a failover's phases from the trigger and the poller.
type phases struct {
	start time.Time
	mu    sync.Mutex
	list  []Phase
	at    map[string]time.Time // first time of each event
}

func (p *phases) add(event string) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, Phase{AtMs: ms(now.Sub(p.start)), Event: event})
	if _, ok := p.at[event]; !ok {
		p.at[event] = now
	}
}

func (p *phases) first(event string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.at[event]
	return t, ok
}

// Events the poller and the triggers record; the master's failover states
// are recorded as "master " + the state.
const (
	eventSent      = "trigger sent"
	eventAccepted  = "trigger answered OK"
	eventTakeover  = "replica serves the slots"
	eventRouted    = "proxy routes to the replica"
	eventCommitted = "topology committed"
	eventDone      = "trigger done"
	masterPrefix   = "master "
)

// pollInterval is the poller's pace: the phases' timestamps are that
// precise (plus a round trip).
const pollInterval = 5 * time.Millisecond

// poll records, until ctx ends, every change of the old master's
// cluster_failover_state, the moment the replica serves the shard's first
// slot itself, and the moment the proxy routes the shard to it (INFO
// failover names it the shard's master). It closes done once both were
// seen, or the first alone when the proxy does not report its shards.
func (b *bench) poll(ctx context.Context, sh shard, ph *phases, done chan<- struct{}) {
	master := soak.NewClient(sh.Master.Addr, b.cfg.ClientTimeout, 1)
	defer master.Close()
	replica := soak.NewClient(sh.Replica.Addr, b.cfg.ClientTimeout, 1)
	defer replica.Close()
	proxy := soak.NewClient(b.env.proxyAddr, b.cfg.ClientTimeout, 1)
	defer proxy.Close()
	state, took, routed, closed := "", false, false, false
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if info, err := master.ClusterInfo(ctx).Result(); err == nil {
			if s := kvsim.ParseInfoFields(info)["cluster_failover_state"]; s != "" && s != state {
				state = s
				ph.add(masterPrefix + s)
			}
		}
		if !took {
			if ranges, err := replica.ClusterSlots(ctx).Result(); err == nil {
				for _, r := range ranges {
					if r.Start <= sh.FirstSlot && sh.FirstSlot <= r.End && len(r.Nodes) > 0 && r.Nodes[0].ID == sh.Replica.ID {
						took = true
						ph.add(eventTakeover)
					}
				}
			}
		}
		if !routed {
			if info, err := proxy.Info(ctx, "failover").Result(); err == nil {
				if !strings.Contains(info, "shard0:") {
					routed = true // not kvproxy, or too old to say
				} else if shardLine(info, sh.Replica.Addr) != nil {
					routed = true
					ph.add(eventRouted)
				}
			}
		}
		if took && routed && !closed {
			closed = true
			close(done)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// trigger starts the failover of shard sh and returns once
// the trigger is done: for a controller's failover, once it committed the
// new topology; for CLUSTERX FAILOVER, once the master reported success
// (and, on kvsim, the topology was committed as a controller does).
func (b *bench) trigger(ctx context.Context, sh shard, ph *phases) error {
	ph.add(eventSent)
	switch b.cfg.Trigger {
	case TriggerProxied:
		timeoutMs := strconv.FormatInt(b.cfg.FailoverTimeout.Milliseconds(), 10)
		reply, err := b.admin.Do(ctx, "CLUSTERX", "FAILOVER", sh.Replica.ID, timeoutMs).Text()
		if err != nil {
			return fmt.Errorf("CLUSTERX FAILOVER through the proxy: %w", err)
		}
		if reply != "OK" {
			return fmt.Errorf("CLUSTERX FAILOVER through the proxy answered %q", reply)
		}
		ph.add(eventAccepted)
		if b.env.sim == nil {
			return nil // a Redis Cluster agrees on the roles itself; a user's controller must commit
		}
		if err := b.awaitFinal(ctx, ph); err != nil {
			return err
		}
		ctlShard, err := b.kvsimShard(sh)
		if err != nil {
			return err
		}
		if err := b.env.sim.Controller().CommitHandover(ctx, ctlShard, sh.Replica.ID); err != nil {
			return err
		}
		ph.add(eventCommitted)
		return nil
	case TriggerDirect:
		ctlShard, err := b.kvsimShard(sh)
		if err != nil {
			return err
		}
		if err := b.env.sim.Controller().ServerFailover(ctx, ctlShard, b.cfg.FailoverTimeout); err != nil {
			return err
		}
		ph.add(eventCommitted)
		return nil
	case TriggerController:
		ctlShard, err := b.kvsimShard(sh)
		if err != nil {
			return err
		}
		promoted, err := b.env.api.FailoverShard(ctx, ctlShard, sh.Replica.ID)
		if err != nil {
			return err
		}
		if promoted != sh.Replica.ID {
			return fmt.Errorf("the controller promoted %s, not %s", promoted, sh.Replica.ID)
		}
		ph.add(eventCommitted)
		return nil
	case TriggerPause:
		ctlShard, err := b.kvsimShard(sh)
		if err != nil {
			return err
		}
		opts := soak.PauseFailoverOptions(b.cfg.ReplDelay)
		opts.Replica = sh.Replica.ID
		if err := b.env.sim.Controller().FailoverShard(ctx, ctlShard, opts); err != nil {
			return err
		}
		ph.add(eventCommitted)
		return nil
	case TriggerKill:
		if b.env.sim != nil {
			return b.env.sim.Controller().Kill(sh.Master.ID)
		}
		n := b.env.redis.NodeByID(sh.Master.ID)
		if n == nil {
			return fmt.Errorf("no redis-server has id %s", sh.Master.ID)
		}
		return b.env.redis.Kill(n)
	case TriggerRedis:
		cl := soak.NewClient(sh.Replica.Addr, b.cfg.ClientTimeout, 1)
		defer cl.Close()
		if err := cl.ClusterFailover(ctx).Err(); err != nil {
			return fmt.Errorf("CLUSTER FAILOVER on %s: %w", sh.Replica.Addr, err)
		}
		ph.add(eventAccepted)
		return nil
	}
	return fmt.Errorf("unknown trigger %q", b.cfg.Trigger)
}

// awaitFinal waits for the poller to see the master's failover succeed.
func (b *bench) awaitFinal(ctx context.Context, ph *phases) error {
	for {
		if _, ok := ph.first(masterPrefix + string(failover.PhaseSuccess)); ok {
			return nil
		}
		if _, ok := ph.first(masterPrefix + string(failover.PhaseFailed)); ok {
			return errors.New("the master's failover failed (cluster_failover_state:failed)")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the master's failover did not finish: %w", ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// kvsimShard is the controller's number of shard sh.
func (b *bench) kvsimShard(sh shard) (int, error) {
	for i, s := range b.env.sim.Topology().Shards {
		if s.Master.ID == sh.Master.ID {
			return i, nil
		}
	}
	return 0, fmt.Errorf("the controller has no shard with master %s", sh.Master.ID)
}

// serverPause is the old master's write pause as the poller saw it: from
// its first pause_write (or, when polls missed that, wait_sync or
// switching) to success. ok is false when the master reported no pause (a
// controller's failover, a kill, a Redis Cluster).
func serverPause(ph *phases) (time.Duration, bool) {
	end, ok := ph.first(masterPrefix + string(failover.PhaseSuccess))
	if !ok {
		return 0, false
	}
	for _, p := range []failover.Phase{failover.PhasePauseWrite, failover.PhaseWaitSync, failover.PhaseSwitching} {
		if begin, ok := ph.first(masterPrefix + string(p)); ok {
			return end.Sub(begin), true
		}
	}
	return 0, false
}
