package proxy

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
	"kvproxy/router"
)

// BenchmarkThroughputVsDirect runs redis-benchmark (50 clients, SET and GET)
// against one cluster-enabled redis-server owning every slot, directly and
// through the proxy, in interleaved rounds, and reports the proxy's
// throughput as a fraction of direct at pipeline 1 and 16. Run it with
// -benchtime=1x; each iteration is one round of both targets.
func BenchmarkThroughputVsDirect(b *testing.B) {
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatalf("redis-benchmark is required when CI=true: %v", err)
		}
		b.Skip("redis-benchmark not installed")
	}
	c := cluster.Start(b, cluster.Options{Masters: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := router.DefaultConfig()
	cfg.Seeds = c.Addrs()
	r, err := router.New(ctx, cfg)
	require.NoError(b, err)
	b.Cleanup(func() { _ = r.Close() })
	_, proxyAddr := startProxy(b, r, nil)
	direct := c.Masters()[0].Addr

	rps := func(addr, pipeline string) float64 {
		host, port, _ := strings.Cut(addr, ":")
		out, err := exec.Command(bin, "-h", host, "-p", port, "-t", "set,get", "-c", "50", "-n", "100000",
			"-P", pipeline, "-q").CombinedOutput()
		require.NoError(b, err, "%s", out)
		// -q prints "SET: 81699.35 requests per second, ..." after
		// progress lines ended by CR.
		var total float64
		for _, line := range strings.Split(string(out), "\n") {
			line = line[strings.LastIndexByte(line, '\r')+1:]
			if _, rest, ok := strings.Cut(line, ": "); ok && strings.Contains(rest, "requests per second") {
				v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
				require.NoError(b, err)
				total += v
			}
		}
		require.Positive(b, total, "no result in %s", out)
		return total
	}
	sums := map[string][2]float64{}
	for b.Loop() {
		for _, p := range []string{"1", "16"} {
			s := sums[p]
			s[0] += rps(direct, p)
			s[1] += rps(proxyAddr, p)
			sums[p] = s
		}
	}
	for _, p := range []string{"1", "16"} {
		b.ReportMetric(sums[p][1]/sums[p][0], "proxy/direct_P"+p)
	}
}
