package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// At debug level a client connection is logged when it opens and closes
// (with why and how long it lasted), and every refusal once; repeated bad
// requests and turned-away clients are warnings, rate-limited.
func TestConnectionAndRefusalLogs(t *testing.T) {
	var logs logRecorder
	_, addr := startProxy(t, newFakeCluster(1), func(c *Config) {
		c.Logger = logs.logger()
		c.Password = "secret"
		c.MaxBulkLen = 16
		c.MaxClients = 2
	})
	eventually := func(substr string, n int) []string {
		t.Helper()
		require.Eventually(t, func() bool { return len(logs.lines(substr)) >= n }, 10*time.Second, 5*time.Millisecond, substr)
		return logs.lines(substr)
	}

	first := dialResp(t, addr)
	assert.True(t, strings.HasPrefix(first.do("GET", "k"), "-NOAUTH"))
	assert.True(t, strings.HasPrefix(first.do("AUTH", "wrong"), "-WRONGPASS"))
	assert.Equal(t, "+OK\r\n", first.do("AUTH", "secret"))
	refused := logs.lines("client request refused")
	require.Len(t, refused, 2)
	assert.Contains(t, refused[0], "level=DEBUG")
	assert.Contains(t, refused[0], "command=get reason=NOAUTH")
	assert.Contains(t, refused[1], "command=auth reason=WRONGPASS")
	assert.NotContains(t, strings.Join(logs.lines(""), ""), "wrong", "no password is logged")
	opened := eventually("client connection opened", 1)
	assert.Contains(t, opened[0], "level=DEBUG")
	assert.Contains(t, opened[0], "id=")

	second := dialResp(t, addr)
	assert.Equal(t, "+OK\r\n", second.do("AUTH", "secret"))
	// A third client is turned away at MaxClients.
	third := dialResp(t, addr)
	assert.Equal(t, "-ERR max number of clients reached\r\n", third.read())
	assert.Contains(t, eventually("client connection refused: max number of clients reached", 1)[0], "level=WARN")
	assert.Contains(t, eventually("reason=maxclients", 1)[0], "level=DEBUG")

	assert.Equal(t, "+OK\r\n", first.do("QUIT"))
	closed := eventually("client connection closed", 1)
	assert.Contains(t, closed[0], "level=DEBUG")
	assert.Contains(t, closed[0], "reason=quit duration=")

	// Two requests past MaxBulkLen, each closing its connection.
	second.send(encodeCommand("SET", "k", strings.Repeat("v", 17)))
	assert.True(t, strings.HasPrefix(second.read(), "-ERR Protocol error"))
	closed = eventually("client connection closed", 2)
	assert.Contains(t, closed[1], "reason=bad_request")
	again := dialResp(t, addr)
	again.send(encodeCommand("AUTH", "secret") + encodeCommand("SET", "k", strings.Repeat("v", 17)))
	assert.Equal(t, "+OK\r\n", again.read())
	assert.True(t, strings.HasPrefix(again.read(), "-ERR Protocol error"))
	eventually("client connection closed", 3)
	debugRefusals := logs.lines("msg=\"client request refused\" client=")
	assert.Len(t, filterLines(debugRefusals, "Protocol error"), 2, "every refusal at debug level")
	warns := filterLines(logs.lines("closing client connection: bad request"), "level=WARN")
	assert.NotEmpty(t, warns, "bad requests are warnings")
	assert.LessOrEqual(t, len(warns), 2)

	last := dialResp(t, addr)
	assert.Equal(t, "+OK\r\n", last.do("AUTH", "secret"))
	require.NoError(t, last.conn.Close())
	assert.Contains(t, eventually("client connection closed", 4)[3], "reason=client_closed")
}

// filterLines keeps the lines that contain substr.
func filterLines(lines []string, substr string) []string {
	var out []string
	for _, line := range lines {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}
