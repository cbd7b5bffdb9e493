package proxy

import (
	"runtime/debug"
	"sync/atomic"
	"time"
)

// The buffers of clients that left are garbage the runtime keeps until its
// next collection, which a proxy that has gone quiet may not run for
// minutes (kvproxy runs with GOGC 400; the runtime forces one every two
// minutes), and the freed pages go back to the kernel slowly after it. So
// after a wave of departures the proxy collects and returns the freed
// memory itself (debug.FreeOSMemory), once the wave is over.
const (
	// departuresPerRelease is how many clients must have left since the
	// last release for another one.
	departuresPerRelease = 1000
	// departureWaveQuiet: a second with fewer departures than a tenth of
	// departuresPerRelease ends a wave; maxReleaseWait bounds the wait
	// under steady churn.
	departureWaveQuiet = time.Second
	maxReleaseWait     = 30 * time.Second
)

// memoryRelease follows the departures of clients.
type memoryRelease struct {
	departures atomic.Int64
	// releasedAt is the departure count when the last release was decided.
	releasedAt atomic.Int64
	pending    atomic.Bool
}

// clientLeft counts a departure and, once enough clients left, has the
// memory released when the wave of departures is over.
func (s *Server) clientLeft() {
	m := &s.memory
	if m.departures.Add(1)-m.releasedAt.Load() < departuresPerRelease || !m.pending.CompareAndSwap(false, true) {
		return
	}
	go s.releaseMemoryWhenQuiet()
}

func (s *Server) releaseMemoryWhenQuiet() {
	m := &s.memory
	defer m.pending.Store(false)
	for waited := time.Duration(0); waited < maxReleaseWait; waited += departureWaveQuiet {
		seen := m.departures.Load()
		select {
		case <-time.After(departureWaveQuiet):
		case <-s.stop:
			return
		}
		if m.departures.Load()-seen < departuresPerRelease/10 {
			break
		}
	}
	m.releasedAt.Store(m.departures.Load())
	debug.FreeOSMemory()
}
