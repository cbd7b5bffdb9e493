package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var metricsLine = regexp.MustCompile(`msg="metrics serving" addr=(\S+)`)

// httpGet returns the status and body of GET url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// --metrics-listen on port 0 serves on a port the OS picks, logged; the
// demo's failover moves the handover counters; the endpoint closes with
// the proxy.
func TestRunServesMetrics(t *testing.T) {
	addr, _, stderr, stop := runInBackground(t, []string{"--demo", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, noEnv)
	m := metricsLine.FindStringSubmatch(stderr.String())
	require.NotNil(t, m, "no metrics address logged:\n%s", stderr.String())
	base := "http://" + m[1]

	code, _ := httpGet(t, base+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	require.Eventually(t, func() bool {
		code, _ := httpGet(t, base+"/readyz")
		return code == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "the demo's masters are reachable")
	code, body := httpGet(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "\nkvproxy_proxy_failovers_reported_total 0\n")
	assert.NotContains(t, body, "kvproxy_handovers_total{")

	c := newClient(t, addr, "")
	require.Contains(t, c.Do(context.Background(), "PROXY", "FAILOVER", "0").Val(), "shard 0 failed over")
	_, body = httpGet(t, base+"/metrics")
	assert.Contains(t, body, "\nkvproxy_proxy_failovers_reported_total 1\n")
	assert.Regexp(t, `\nkvproxy_handovers_total\{master="[^"]+",result="success"\} 1\n`, body)

	assert.Equal(t, exitOK, stop())
	_, err := net.DialTimeout("tcp", m[1], time.Second)
	assert.Error(t, err, "metrics still served after shutdown")
}
