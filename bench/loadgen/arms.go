package loadgen

import (
	"context"
	"fmt"
	"os"
	"time"
)

// RunDone describes one measured run of an interleaved comparison, for
// progress reports.
type RunDone struct {
	// Round counts from 1 to Rounds.
	Round, Rounds int
	Target        string
	Metrics       Metrics
	Elapsed       time.Duration
}

// progressing wraps a comparison's run function so that report (when set)
// hears of every run that succeeded.
func progressing(rounds int, report func(RunDone), fn func(context.Context, int, string) (Metrics, error)) func(context.Context, int, string) (Metrics, error) {
	if report == nil {
		return fn
	}
	return func(ctx context.Context, round int, target string) (Metrics, error) {
		start := time.Now()
		m, err := fn(ctx, round, target)
		if err == nil {
			report(RunDone{Round: round + 1, Rounds: rounds, Target: target, Metrics: m, Elapsed: time.Since(start)})
		}
		return m, err
	}
}

// comparisonRuns is how many runs a comparison of rounds over the fixed
// targets and peers measures, one per target a round.
func comparisonRuns(rounds int, peers []PeerProxy) int {
	return rounds * (len(proxyTargets) + len(peers))
}

// arms are the ways to one cluster-enabled redis-server owning every slot
// that a comparison measures: directly, through kvproxy, through twemproxy
// and through each peer proxy, in that order.
type arms struct {
	server  *RedisServer
	targets []string
	addrs   map[string]string
	// proxyPids holds the proxy process of each target that has one.
	proxyPids map[string]int
	closers   []func()
}

// startArms starts redis-server and every proxy in front of it. kvproxy is
// built first when kvproxyBinary is empty. On error, whatever started is
// stopped.
func startArms(ctx context.Context, kvproxyBinary string, kvproxyArgs []string, peers []PeerProxy) (_ *arms, err error) {
	a := &arms{addrs: map[string]string{}, proxyPids: map[string]int{}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if kvproxyBinary == "" {
		dir, err := os.MkdirTemp("", "loadgen-kvproxy-build-")
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		a.closers = append(a.closers, func() { os.RemoveAll(dir) })
		if kvproxyBinary, err = BuildKvproxy(ctx, dir); err != nil {
			return nil, err
		}
	}
	if a.server, err = LaunchRedis(ctx, RedisOptions{Cluster: true}); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.server.Close)
	a.add(TargetDirect, a.server.Addr(), 0)
	seeds := []string{a.server.Addr()}

	kvproxy, err := LaunchKvproxy(ctx, KvproxyOptions{Binary: kvproxyBinary, Seeds: seeds, ExtraArgs: kvproxyArgs})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, kvproxy.Close)
	a.add(TargetKvproxy, kvproxy.Addr(), kvproxy.Pid())

	twemproxy, err := LaunchTwemproxy(ctx, TwemproxyOptions{Servers: seeds})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, twemproxy.Close)
	a.add(TargetTwemproxy, twemproxy.Addr(), twemproxy.Pid())

	for _, p := range peers {
		peer, err := LaunchPeerProxy(ctx, p, seeds)
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, peer.Close)
		a.add(p.Name, peer.Addr(), peer.Pid())
	}
	return a, nil
}

func (a *arms) add(name, addr string, proxyPid int) {
	a.targets = append(a.targets, name)
	a.addrs[name] = addr
	if proxyPid != 0 {
		a.proxyPids[name] = proxyPid
	}
}

// close stops every process, the last started first.
func (a *arms) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}
