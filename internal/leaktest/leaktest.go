// Package leaktest holds what every package's TestMain passes to goleak, so
// the goroutines that may outlive the tests without being leaked are named,
// with the reason, in one place.
package leaktest

import "go.uber.org/goleak"

// Options returns goleak's options for a package's tests. Call it at the
// start of TestMain, before the first test runs.
//
// Goroutines already running then are not the tests': ants, linked in with
// kvsim, starts its unused default pool's two janitors when it is
// initialised.
//
// go-redis starts a dial prober (ConnPool.tryDial) once a pool's dials have
// failed; it sleeps a second between probes and sees that its client was
// closed only when it wakes, so it outlives Client.Close by up to a second.
// It is not ours to stop: the client is closed, and it ends by itself.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
	}
}
