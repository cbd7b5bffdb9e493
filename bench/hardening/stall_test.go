package hardening

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Sick backends: a master stopped, killed, or every node down. What a
// client may get from a shard whose master is gone: the command, or
// TRYAGAIN (not executed; or for a read sent to a node declared dead), or
// "may have run" for a write that was sent. Never a hang, and never an
// error from another shard.

// holdTimeout is kvproxy's --hold-timeout, passed explicitly.
const holdTimeout = 2500 * time.Millisecond

// detectionMargin is how long after a master stops the proxy has surely
// judged it unresponsive (a connection waits ~100 ms, then its probe
// ~250 ms), with room for a busy machine: a request arriving later is held,
// never sent to it.
const detectionMargin = time.Second

// allowedWhileDown reports whether o is something a client of a shard whose
// master is down may get.
func allowedWhileDown(o outcome) bool {
	return o.class == classOK || o.class == classNotExecuted || o.class == classMayHaveRun || o.class == classTryAgain
}

func isClusterDown(o outcome) bool {
	return o.class == classOtherError && strings.HasPrefix(o.text, "CLUSTERDOWN")
}

// checkOtherShards expects every request to the shards other than down to
// have succeeded.
func checkOtherShards(t *testing.T, all []outcome, down int) {
	t.Helper()
	others := selectOutcomes(all, func(o outcome) bool { return o.shard != down })
	t.Logf("other shards: %s", breakdown(others))
	expectNone(t, others, func(o outcome) bool { return o.class != classOK }, "requests to the other shards failed")
}

// TestStoppedMasterHoldBudget: a master SIGSTOPped for 6 s under load on
// every shard. Other shards see no error; the stopped shard's requests are
// all answered, with the allowed errors only; a request that arrives once
// the proxy has judged the master unresponsive is held, not sent, and
// answered TRYAGAIN not executed at its hold budget (or served after
// SIGCONT); after SIGCONT everything is served again.
func TestStoppedMasterHoldBudget(t *testing.T) {
	e := sharedEnv(t)
	const stopFor, arrivalEvery = 6 * time.Second, 100 * time.Millisecond
	proxy := e.launchProxy(t, "--backend-conns", "1", "--hold-timeout", holdTimeout.String())
	const down = 1
	master := e.cluster.Masters()[down]
	load := startShardLoad(t, e, proxy.Addr(), 4, 2)
	time.Sleep(2 * time.Second)

	resume := stopNode(t, master)
	stoppedAt := time.Now()
	load.arrive(t, down, stoppedAt.Add(arrivalEvery), arrivalEvery, int(stopFor/arrivalEvery)-1)
	time.Sleep(time.Until(stoppedAt.Add(stopFor)))
	resume()
	resumedAt := time.Now()
	time.Sleep(3 * time.Second)
	all := load.stop()

	checkOtherShards(t, all, down)
	shard := selectOutcomes(all, func(o outcome) bool { return o.shard == down })
	t.Logf("stopped shard: %s", breakdown(shard))
	expectNone(t, shard, func(o outcome) bool { return !allowedWhileDown(o) }, "requests to the stopped shard got what they may not")

	if o, ok := longestWait(selectOutcomes(shard, func(o outcome) bool { return o.class == classNotExecuted })); ok {
		t.Logf("longest wait of a request answered TRYAGAIN not executed: %v", o)
	}
	held := selectOutcomes(shard, func(o outcome) bool {
		return o.start.After(stoppedAt.Add(detectionMargin)) && o.start.Before(resumedAt)
	})
	t.Logf("requests that arrived from %v after SIGSTOP to SIGCONT: %s", detectionMargin, breakdown(held))
	expectNone(t, held, func(o outcome) bool { return o.class == classMayHaveRun },
		"requests that arrived after the master was judged unresponsive got 'may have run': they were sent to the stopped master instead of held")
	expectNone(t, held, func(o outcome) bool { return o.wait >= 2*holdTimeout },
		"requests that arrived after the master was judged unresponsive waited 2 x hold-timeout or more")
	if len(selectOutcomes(held, func(o outcome) bool { return o.class == classNotExecuted })) == 0 {
		t.Errorf("no request that arrived during the %v stop got TRYAGAIN not executed at its %v hold budget", stopFor, holdTimeout)
	}
	if o, ok := longestWait(held); ok {
		t.Logf("longest wait of those: %v", o)
	}

	after := selectOutcomes(shard, func(o outcome) bool { return o.start.After(resumedAt.Add(time.Second)) })
	t.Logf("stopped shard from 1s after SIGCONT: %s", breakdown(after))
	expectNone(t, after, func(o outcome) bool { return o.class != classOK }, "requests to the resumed shard failed")
	checkServedAgain(t, e, proxy.Addr())
}

// TestKilledMasterRestarted: a master without replica killed under load on
// every shard, then restarted on its port. Other shards see no error; its
// shard's requests are all answered, with the allowed errors only; once it
// is back its requests succeed again through the same proxy.
func TestKilledMasterRestarted(t *testing.T) {
	e := sharedEnv(t)
	proxy := e.launchProxy(t, "--hold-timeout", holdTimeout.String())
	const down = 1
	master := e.cluster.Masters()[down]
	load := startShardLoad(t, e, proxy.Addr(), 4, 2)
	time.Sleep(time.Second)

	if err := e.cluster.Kill(master); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * holdTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.cluster.Restart(ctx, master); err != nil {
		load.stop()
		t.Fatalf("restarting %s: %v", master, err)
	}
	time.Sleep(time.Second)
	all := load.stop()

	checkOtherShards(t, all, down)
	shard := selectOutcomes(all, func(o outcome) bool { return o.shard == down })
	t.Logf("killed shard: %s", breakdown(shard))
	expectNone(t, shard, func(o outcome) bool { return !allowedWhileDown(o) && !isClusterDown(o) },
		"requests to the killed shard got what they may not")
	// Redis refuses commands with CLUSTERDOWN for about 2 s after a master
	// restarts (its rejoin delay), while it already accepts connections;
	// only the restarted master can have answered it.
	expectNone(t, shard, isClusterDown,
		"requests to the restarting master got its CLUSTERDOWN (its rejoin delay), passed on instead of held within the hold budget")
	if len(selectOutcomes(shard, func(o outcome) bool { return o.class != classOK })) == 0 {
		t.Errorf("no request to the killed shard failed in %v: the kill was not noticed", 2*holdTimeout)
	}
	if o, ok := longestWait(shard); ok {
		t.Logf("longest wait on the killed shard: %v", o)
	}
	checkServedAgain(t, e, proxy.Addr())
}

// TestAllBackendsDownAndBack: every node killed under load; every request is
// answered with a Redis-style error, none hangs, the proxy stays up; once
// the nodes are restarted the same proxy serves every shard again.
func TestAllBackendsDownAndBack(t *testing.T) {
	e := sharedEnv(t)
	proxy := e.launchProxy(t, "--hold-timeout", holdTimeout.String())
	load := startShardLoad(t, e, proxy.Addr(), 2, 1)
	time.Sleep(time.Second)

	for _, n := range e.cluster.Nodes() {
		if err := e.cluster.Kill(n); err != nil {
			t.Fatal(err)
		}
	}
	downAt := time.Now()
	time.Sleep(2 * holdTimeout)
	ping := mustDial(t, proxy.Addr())
	if rep, err := ping.do("PING"); err != nil || rep.text != "PONG" {
		t.Errorf("PING with every backend down got %v (%v), want +PONG", rep, err)
	}
	restartBegan := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(e.cluster.Nodes()))
	for i, n := range e.cluster.Nodes() {
		// Concurrently: each Restart waits for the whole cluster.
		wg.Go(func() { errs[i] = e.cluster.Restart(ctx, n) })
	}
	wg.Wait()
	time.Sleep(time.Second)
	all := load.stop()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("restarting the cluster: %v", err)
		}
	}

	if err := syscall.Kill(proxy.Pid(), 0); err != nil {
		t.Fatalf("kvproxy is gone: %v", err)
	}
	outage := selectOutcomes(all, func(o outcome) bool { return o.start.After(downAt) && o.start.Before(restartBegan) })
	t.Logf("requests started while every node was down: %s", breakdown(outage))
	expectNone(t, outage, func(o outcome) bool { return o.class == classNoReply }, "requests got no reply")
	expectNone(t, outage, func(o outcome) bool {
		return o.class != classOK && o.class != classNoReply && !redisStyleError.MatchString(o.text)
	}, "requests got an error without a Redis-style code")
	for shard := range e.cluster.Masters() {
		failed := selectOutcomes(outage, func(o outcome) bool { return o.shard == shard && o.class != classOK })
		if len(failed) == 0 {
			t.Errorf("shard %d: no request failed while every node was down", shard)
		}
	}
	if o, ok := longestWait(outage); ok {
		t.Logf("longest wait while every node was down: %v", o)
	}
	checkServedAgain(t, e, proxy.Addr())
}
