package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

// benchmarkTests are the data-type tests of redis-benchmark's default suite,
// with LRANGE over 100 elements only (the longer ranges add nothing but time).
var benchmarkTests = []string{"set", "get", "incr", "lpush", "rpush", "lpop", "rpop", "sadd", "hset",
	"spop", "zadd", "lrange_100", "mset"}

// TestRedisBenchmark runs redis-benchmark's suite through the proxy.
// redis-benchmark exits 1 at the first error reply, so every command of the
// run, including the cross-slot MSET of 10 random keys, must succeed.
func TestRedisBenchmark(t *testing.T) {
	runs := []struct {
		name     string
		pipeline int
		requests int
		tests    []string
	}{
		{"pipeline 1", 1, 5000, benchmarkTests},
		{"pipeline 16", 16, 20000, []string{"set", "get", "incr", "lpush", "lpop", "mset"}},
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			addr := proxyAddr(t, backend)
			loadgen.RequireBinary(t, "redis-benchmark")
			for _, r := range runs {
				t.Run(r.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
					defer cancel()
					res, err := loadgen.RunRedisBenchmark(ctx, loadgen.BenchmarkOptions{
						Addr:     addr,
						Clients:  20,
						Requests: r.requests,
						Pipeline: r.pipeline,
						Keyspace: 100000,
						Tests:    r.tests,
					})
					require.NoError(t, err)
					// The LRANGE test adds its own LPUSH line to fill the list.
					wantLines := len(r.tests)
					for _, name := range r.tests {
						if strings.HasPrefix(name, "lrange") {
							wantLines++
						}
					}
					assert.Len(t, res.Tests, wantLines, "CSV:\n%s", res.CSV)
					for _, test := range res.Tests {
						assert.Positive(t, test.RequestsPerSec, "%s", test.Name)
						t.Logf("%-40s %9.0f req/s  p50 %v", test.Name, test.RequestsPerSec, test.P50Latency)
					}
				})
			}
		})
	}
}
