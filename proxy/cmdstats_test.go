package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResultOf(t *testing.T) {
	for reply, want := range map[string]requestResult{
		"+OK\r\n":                          resultOK,
		"$1\r\nv\r\n":                      resultOK,
		"":                                 resultOK,
		"-ERR unknown command\r\n":         resultERR,
		"-WRONGTYPE Operation against\r\n": resultWRONGTYPE,
		"-NOAUTH Authentication\r\n":       resultNOAUTH,
		"-TRYAGAIN\r\n":                    resultTRYAGAIN,
		"-MOVED 3999 127.0.0.1:6381\r\n":   resultMOVED,
		"-NOTBUSY No scripts\r\n":          resultOtherError,
		"-AVERYLONGPREFIXTHATISNOTKNOWN x": resultOtherError,
		"-":                                resultOtherError,
		"!21\r\nSYNTAX invalid syntax\r\n": resultOtherError,
		"!10\r\nCROSSSLOT x\r\n":           resultCROSSSLOT,
	} {
		assert.Equal(t, want, resultOf([]byte(reply)), "%q", reply)
	}
}

func TestLatencyBucket(t *testing.T) {
	assert.Equal(t, 0, latencyBucket(0))
	assert.Equal(t, 0, latencyBucket(100))
	assert.Equal(t, 1, latencyBucket(101))
	assert.Equal(t, len(latencyBounds)-1, latencyBucket(10_000_000))
	assert.Equal(t, len(latencyBounds), latencyBucket(10_000_001))
}

// scrapeText is what /metrics serves now.
func scrapeText(t *testing.T, srv *Server) string {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}

// infoLine is the value of key in an INFO reply, "" when absent.
func infoLine(info, key string) string { return valueAfter(info, key+":") }

// Commands are counted per command as Redis 7 prints them in INFO
// commandstats (a proxy-made error is a rejection, a backend's a failure),
// per class and result in the metrics, and CONFIG RESETSTAT resets the
// commandstats only.
func TestCommandStatsErrorStatsAndRequestMetrics(t *testing.T) {
	srv, addr := startProxy(t, newFakeCluster(2), nil)
	c := dialResp(t, addr)
	// The fake refuses CONFIG: the proxy's own commandstats are reset all
	// the same, before it is sent.
	assert.True(t, strings.HasPrefix(c.do("CONFIG", "RESETSTAT"), "-ERR"))
	for range 2 {
		// The fake does not know HSTRLEN: an ERR from the backend.
		assert.True(t, strings.HasPrefix(c.do("HSTRLEN", "h", "f"), "-ERR fake"))
	}
	assert.True(t, strings.HasPrefix(c.do("GETRANGE", "k"), "-ERR wrong number of arguments"))
	assert.Equal(t, "+OK\r\n", c.do("SET", "k", "v"))
	assert.Equal(t, "$1\r\nv\r\n", c.do("GET", "k"))
	c.send(encodeCommand("GET", "k") + encodeCommand("GET", "nokey"))
	assert.Equal(t, "$1\r\nv\r\n", c.read())
	assert.Equal(t, "$-1\r\n", c.read())
	assert.True(t, strings.HasPrefix(c.do("NOSUCHCOMMAND"), "-ERR unknown command"))

	info := c.do("INFO", "commandstats")
	assert.Contains(t, info, "# Commandstats\r\n")
	assert.Regexp(t, `^calls=2,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=0,failed_calls=2$`, infoLine(info, "cmdstat_hstrlen"))
	assert.Equal(t, "calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0", infoLine(info, "cmdstat_getrange"))
	assert.Regexp(t, `^calls=3,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=0,failed_calls=0$`, infoLine(info, "cmdstat_get"))
	assert.Regexp(t, `^calls=1,.*,failed_calls=1$`, infoLine(info, "cmdstat_config|resetstat"))
	assert.NotContains(t, info, "nosuchcommand")
	assert.NotContains(t, c.do("INFO"), "# Commandstats", "not a default section, as in Redis")

	errs := c.do("INFO", "errorstats")
	// HSTRLEN twice, GETRANGE, the unknown command, CONFIG RESETSTAT.
	assert.Equal(t, "count=5", infoLine(errs, "errorstat_ERR"))

	mc := metricsCollector{srv}
	problems, err := testutil.CollectAndLint(mc)
	require.NoError(t, err)
	assert.Empty(t, problems)
	want := map[string]string{
		`class="read",result="ok"`:   "3",
		`class="read",result="ERR"`:  "3",
		`class="write",result="ok"`:  "1",
		`class="admin",result="ERR"`: "1",
		`class="other",result="ERR"`: "1",
	}
	text := scrapeText(t, srv)
	for labels, n := range want {
		assert.Equal(t, n, metricValue(text, "kvproxy_requests_total{"+labels+"}"), labels)
	}
	assert.Equal(t, "6", metricValue(text, `kvproxy_request_duration_seconds_count{class="read"}`))
	assert.Equal(t, "6", metricValue(text, `kvproxy_request_duration_seconds_bucket{class="read",le="+Inf"}`))

	assert.True(t, strings.HasPrefix(c.do("CONFIG", "RESETSTAT"), "-ERR"))
	info = c.do("INFO", "commandstats")
	assert.Empty(t, infoLine(info, "cmdstat_hstrlen"), "reset")
	assert.Regexp(t, `^calls=1,`, infoLine(info, "cmdstat_config|resetstat"))
	assert.Equal(t, "3", metricValue(scrapeText(t, srv), `kvproxy_requests_total{class="read",result="ERR"}`),
		"Prometheus counters are not reset")
}

// INFO stats and the metrics count refusals by reason: commands before
// AUTH, requests past a size limit.
func TestRefusalsByReason(t *testing.T) {
	srv, addr := startProxy(t, newFakeCluster(1), func(c *Config) {
		c.Password = "secret"
		c.MaxBulkLen = 16
	})
	c := dialResp(t, addr)
	assert.True(t, strings.HasPrefix(c.do("GET", "k"), "-NOAUTH"))
	assert.True(t, strings.HasPrefix(c.do("AUTH", "wrong"), "-WRONGPASS"))
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "secret"))
	stats := c.do("INFO", "stats")
	assert.Equal(t, "1", infoLine(stats, "refused_noauth"))
	assert.Equal(t, "1", infoLine(stats, "auth_failures"))
	assert.Equal(t, "0", infoLine(stats, "rejected_requests_too_large"))
	assert.True(t, strings.HasPrefix(c.do("SET", "k", strings.Repeat("v", 17)), "-ERR Protocol error"))
	assert.True(t, c.closedByPeer())

	c = dialResp(t, addr)
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "secret"))
	stats = c.do("INFO", "stats")
	assert.Equal(t, "1", infoLine(stats, "rejected_requests"))
	assert.Equal(t, "1", infoLine(stats, "rejected_requests_too_large"))
	assert.Equal(t, "0", infoLine(stats, "rejected_requests_malformed"))
	assert.Equal(t, "0", infoLine(stats, "refused_hold_full"))
	text := scrapeText(t, srv)
	assert.Equal(t, "1", metricValue(text, `kvproxy_client_requests_rejected_total{reason="too_large"}`))
	assert.Equal(t, "1", metricValue(text, `kvproxy_requests_total{class="read",result="NOAUTH"}`))
	assert.Equal(t, "1", metricValue(text, `kvproxy_requests_total{class="other",result="WRONGPASS"}`))
}

// resultOf reads the first bytes of any backend reply: it never panics, and
// only an error reply has an error result.
func FuzzResultOf(f *testing.F) {
	for _, seed := range []string{"+OK\r\n", "-ERR x\r\n", "-MOVED 1 a:1\r\n", "!5\r\nERR x\r\n", "!", "-", "-\r\n", "$-1\r\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		result := resultOf(reply)
		isError := len(reply) > 0 && (reply[0] == '-' || reply[0] == '!')
		if isError != (result != resultOK) {
			t.Fatalf("resultOf(%q) = %s", reply, resultNames[result])
		}
	})
}

// Commands served on dedicated connections are counted once each, with
// their reply: a transaction (MULTI, the queued commands as EXEC, EXEC),
// WATCH, a blocking command, a backend error inside EXEC's array.
func TestCommandStatsOnDedicatedConnections(t *testing.T) {
	cp := startClusterProxy(t)
	c := dialResp(t, cp.addr)
	assert.True(t, strings.HasPrefix(c.do("CONFIG", "RESETSTAT"), "+OK"))
	assert.Equal(t, "+OK\r\n", c.do("WATCH", "{t}a"))
	assert.Equal(t, "+OK\r\n", c.do("MULTI"))
	assert.Equal(t, "+QUEUED\r\n", c.do("SET", "{t}a", "1"))
	assert.Equal(t, "+QUEUED\r\n", c.do("INCR", "{t}b"))
	assert.Equal(t, "*2\r\n+OK\r\n:1\r\n", c.do("EXEC"))
	assert.Equal(t, "*-1\r\n", c.do("BLPOP", "{t}list", "0.01"))
	assert.Equal(t, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", c.do("BLPOP", "{t}a", "0.01"))

	info := c.do("INFO", "commandstats")
	for name, want := range map[string]string{
		"watch": `^calls=1,.*,rejected_calls=0,failed_calls=0$`,
		"multi": `^calls=1,.*,rejected_calls=0,failed_calls=0$`,
		"exec":  `^calls=1,.*,rejected_calls=0,failed_calls=0$`,
		"blpop": `^calls=2,.*,rejected_calls=0,failed_calls=1$`,
	} {
		assert.Regexp(t, want, infoLine(info, "cmdstat_"+name), name)
	}
	assert.Empty(t, infoLine(info, "cmdstat_set"), "queued: counted as EXEC")
	assert.Empty(t, infoLine(info, "cmdstat_incr"))
}
