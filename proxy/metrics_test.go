package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/failover"
	"kvproxy/router"
)

// statsCluster is a fakeCluster that tells router Stats and NodeStats, as a
// Router does.
type statsCluster struct {
	*fakeCluster
	stats router.Stats
	nodes []router.NodeStats
}

func (c *statsCluster) Stats() router.Stats           { return c.stats }
func (c *statsCluster) NodeStats() []router.NodeStats { return c.nodes }

// reportHandovers is a Handovers whose Report is given.
type reportHandovers struct {
	fakeHandovers
	report failover.Report
}

func (h *reportHandovers) Report() failover.Report { return h.report }

func TestMetricsCollector(t *testing.T) {
	fc := newFakeCluster(2)
	backend := &statsCluster{fakeCluster: fc,
		stats: router.Stats{Moved: 5, Ask: 2, Rejected: 3, Resent: 4, Lost: 1, DialFailures: 6, Reloads: 9},
		nodes: []router.NodeStats{
			{Addr: fc.masters[0], Master: true, Up: 3, Connecting: 1, InFlight: 7, Parked: 2, QueuedBytes: 100},
			{Addr: fc.masters[1], Master: true, Up: 4},
			{Addr: "10.0.0.99:7000", Down: 4},
		}}
	holds := &reportHandovers{report: failover.Report{
		Totals: failover.Counts{Held: 10, Released: 7, Expired: 1, Abandoned: 1, HeldNow: 1, Full: 2, Longest: 1500 * time.Millisecond},
		Masters: []failover.MasterReport{{Master: fc.masters[0], Handovers: 3, Succeeded: 2,
			LongestPause: 250 * time.Millisecond, Outages: 1}},
	}}
	srv, _ := startProxy(t, backend, func(c *Config) { c.Handovers = holds })
	srv.stats.connectedClients.Store(4)
	srv.stats.rejectedConnections.Store(11)
	c := metricsCollector{srv}

	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)
	// 3 per-node series for 3 nodes' connection states, 5 more per node, 4 per master report.
	assert.Equal(t, 3*3, testutil.CollectAndCount(c, "kvproxy_backend_connections"))
	assert.Equal(t, 3, testutil.CollectAndCount(c, "kvproxy_backend_inflight_requests"))
	assert.Equal(t, 2, testutil.CollectAndCount(c, "kvproxy_handovers_total"))
	assert.Equal(t, 3, testutil.CollectAndCount(c, "kvproxy_hold_exits_total"))

	want := `
# HELP kvproxy_backend_redirects_total Redirect replies from backends, by kind.
# TYPE kvproxy_backend_redirects_total counter
kvproxy_backend_redirects_total{kind="ask"} 2
kvproxy_backend_redirects_total{kind="moved"} 5
# HELP kvproxy_client_connections Client connections open now.
# TYPE kvproxy_client_connections gauge
kvproxy_client_connections 4
# HELP kvproxy_client_connections_rejected_total Client connections turned away, by reason.
# TYPE kvproxy_client_connections_rejected_total counter
kvproxy_client_connections_rejected_total{reason="maxclients"} 11
# HELP kvproxy_handovers_total Master handovers followed to their end, by master and result.
# TYPE kvproxy_handovers_total counter
kvproxy_handovers_total{master="10.0.0.1:7000",result="failed"} 1
kvproxy_handovers_total{master="10.0.0.1:7000",result="success"} 2
# HELP kvproxy_held_requests Requests held now.
# TYPE kvproxy_held_requests gauge
kvproxy_held_requests 1
# HELP kvproxy_hold_longest_wait_seconds Longest wait of a request that left a hold.
# TYPE kvproxy_hold_longest_wait_seconds gauge
kvproxy_hold_longest_wait_seconds 1.5
# HELP kvproxy_backend_inflight_requests Requests sent or queued to a node and not yet answered.
# TYPE kvproxy_backend_inflight_requests gauge
kvproxy_backend_inflight_requests{node="10.0.0.1:7000"} 7
kvproxy_backend_inflight_requests{node="10.0.0.2:7000"} 0
kvproxy_backend_inflight_requests{node="10.0.0.99:7000"} 0
`
	assert.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
		"kvproxy_backend_redirects_total", "kvproxy_client_connections", "kvproxy_client_connections_rejected_total",
		"kvproxy_handovers_total", "kvproxy_held_requests", "kvproxy_hold_longest_wait_seconds",
		"kvproxy_backend_inflight_requests"))
}

// /readyz follows the router's view: 503 with the reason while a master
// has no connection up or is in an outage, 200 once every master is
// reachable; /healthz answers all along.
func TestMetricsHandlerReadiness(t *testing.T) {
	fc := newFakeCluster(2)
	backend := &statsCluster{fakeCluster: fc, nodes: []router.NodeStats{
		{Addr: fc.masters[0], Master: true, Up: 1},
		{Addr: fc.masters[1], Master: true, Down: 4},
		{Addr: "10.0.0.99:7000", Down: 4},
	}}
	srv, _ := startProxy(t, backend, nil)
	h := srv.MetricsHandler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	code, body := get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "not ready: master 10.0.0.2:7000 has no connection up\n", body)
	backend.nodes[1] = router.NodeStats{Addr: fc.masters[1], Master: true, Up: 4, InOutage: true}
	_, body = get("/readyz")
	assert.Equal(t, "not ready: master 10.0.0.2:7000 is in an outage\n", body)
	backend.nodes[1].InOutage = false
	code, body = get("/readyz")
	assert.Equal(t, http.StatusOK, code, body)
	code, _ = get("/healthz")
	assert.Equal(t, http.StatusOK, code)
	code, body = get("/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "\nkvproxy_client_connections 0\n")
	assert.Contains(t, body, "\ngo_goroutines ")
	assert.Contains(t, body, "\nprocess_resident_memory_bytes ")
}

// metricValue is the value of the sample line that starts with series in a
// text exposition, "" when there is none.
func metricValue(exposition, series string) string { return valueAfter(exposition, series+" ") }

// valueAfter is the rest of the first line of text that starts with prefix,
// "" when there is none.
func valueAfter(text, prefix string) string {
	for line := range strings.Lines(text) {
		if value, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), prefix); ok {
			return value
		}
	}
	return ""
}

// A scrape over HTTP of a proxy over kvsim: /readyz is 200, and a failover
// under writes moves the handover and hold counters.
func TestMetricsScrapeThroughFailoverOnKvsim(t *testing.T) {
	sim := startKvsim(t)
	srv, addr := startFailoverServer(t, sim, true)
	web := httptest.NewServer(srv.MetricsHandler())
	defer web.Close()
	scrape := func() string {
		t.Helper()
		resp, err := http.Get(web.URL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body)
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(web.URL + "/readyz")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "every master reachable")

	master := sim.Masters()[0].Addr()
	handovers := `kvproxy_handovers_total{master="` + master + `",result="success"}`
	before := scrape()
	assert.Empty(t, metricValue(before, handovers), "no handover followed yet")
	assert.Equal(t, "0", metricValue(before, "kvproxy_proxy_failovers_reported_total"))
	assert.Equal(t, "0", metricValue(before, "kvproxy_held_requests"))
	assert.Equal(t, "1", metricValue(before, `kvproxy_backend_master{node="`+master+`"}`))

	writer := startAckedWriter(t, addr)
	c := dialResp(t, addr)
	require.True(t, strings.HasPrefix(c.do("PROXY", "FAILOVER", "0"), "+shard 0 failed over"))
	writer.check(t, addr)

	after := scrape()
	assert.Equal(t, "1", metricValue(after, handovers))
	assert.Equal(t, "1", metricValue(after, "kvproxy_proxy_failovers_reported_total"))
	assert.Equal(t, "0", metricValue(after, `kvproxy_backend_master{node="`+master+`"}`), "the old master serves no slots")
	commands, err := strconv.Atoi(metricValue(after, "kvproxy_commands_processed_total"))
	require.NoError(t, err)
	assert.Greater(t, commands, len(writer.acked), "every acknowledged write was a command")
	// Whether a write arrived inside the short write pause is up to the
	// scheduler; what was held was released, none lost.
	held := metricValue(after, "kvproxy_hold_requests_total")
	assert.Equal(t, held, metricValue(after, `kvproxy_hold_exits_total{outcome="released"}`))
	assert.Equal(t, held, metricValue(after, "kvproxy_hold_duration_seconds_count"), "every request that left a hold is in the histogram")
	t.Logf("held through the failover: %s", held)
	assert.Equal(t, "0", metricValue(before, `kvproxy_handover_pause_seconds_count{result="success"}`))
	assert.Equal(t, "1", metricValue(after, `kvproxy_handover_pause_seconds_count{result="success"}`))
	assert.Equal(t, "0", metricValue(after, `kvproxy_handover_pause_seconds_count{result="failed"}`))
	writes, err := strconv.Atoi(metricValue(after, `kvproxy_requests_total{class="write",result="ok"}`))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, writes, len(writer.acked), "every acknowledged write was answered OK")
	assert.Equal(t, "0", metricValue(after, `kvproxy_requests_total{class="write",result="TRYAGAIN"}`), "no write was refused")
	assert.NotEqual(t, "0", metricValue(after, `kvproxy_request_duration_seconds_count{class="write"}`))
	resp, err := http.Get(web.URL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "ready after the failover")
}
