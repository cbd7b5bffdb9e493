package proxy

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
	"kvproxy/router"
)

// The whole data path as the event loops serve it, against a real Redis
// Cluster: a client's pipelined GETs and SETs read by the loop, routed,
// written to the backend, the replies read by the backend reader and written
// to the client. Measured in heap allocations per pipeline of the whole
// process (the client here allocates nothing), so a per-request or
// per-batch allocation anywhere on the way shows, whichever goroutine made
// it. The background topology reload is pushed past the run.
func TestEventLoopPathDoesNotAllocate(t *testing.T) {
	if !eventLoopsSupported {
		t.Skip("no event loops on this platform")
	}
	cp := startClusterProxyWith(t, cluster.Options{Masters: 1}, nil, func(cfg *router.Config) {
		cfg.RefreshInterval = time.Hour
	})
	for _, depth := range []int{1, 16} {
		t.Run("pipeline "+strconv.Itoa(depth), func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", cp.addr, 5*time.Second)
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			var pipeline, replies strings.Builder
			for i := range depth {
				key := "alloc:" + strconv.Itoa(i)
				pipeline.WriteString(encodeCommand("SET", key, "v"))
				pipeline.WriteString(encodeCommand("GET", key))
				replies.WriteString("+OK\r\n$1\r\nv\r\n")
			}
			request, want := []byte(pipeline.String()), []byte(replies.String())
			got := make([]byte, len(want))
			roundTrip := func() {
				require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
				_, err := conn.Write(request)
				require.NoError(t, err)
				_, err = io.ReadFull(conn, got)
				require.NoError(t, err)
				if !bytes.Equal(got, want) {
					t.Fatalf("replies %q, want %q", got, want)
				}
			}
			for range 200 { // warm the buffers and pools
				roundTrip()
			}
			const rounds = 2000
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range rounds {
				roundTrip()
			}
			runtime.ReadMemStats(&after)
			perRound := float64(after.Mallocs-before.Mallocs) / rounds
			t.Logf("%.3f heap allocations per pipeline of %d requests", perRound, 2*depth)
			// A steady path allocates nothing; the bound leaves room for
			// the rare timer or pool refill, not for one per pipeline.
			require.Less(t, perRound, 0.2, "allocations per pipeline of %d requests", 2*depth)
		})
	}
}
