package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A client whose replies pass ClientOutputLimit is disconnected, whether it
// pipelines replies it does not read or asks for one reply larger than the
// limit; the clients that stay under it, on the same shard, are served.
func TestClientPastItsOutputLimitIsDisconnected(t *testing.T) {
	const limit = 1 << 20
	cp := startClusterProxyWith(t, threeMasters, func(c *Config) { c.ClientOutputLimit = limit })
	bystander := dialResp(t, cp.addr)
	value := strings.Repeat("v", 300<<10)
	require.Equal(t, "+OK\r\n", bystander.do("SET", "{k}v", value))
	require.Equal(t, "+OK\r\n", bystander.do("SET", "{k}big", strings.Repeat("b", 2*limit)))

	// Three replies fit: a client that reads them is served.
	reader := dialResp(t, cp.addr)
	reader.send(strings.Repeat(encodeCommand("GET", "{k}v"), 3))
	for range 3 {
		assert.Len(t, reader.read(), len("$307200\r\n")+300<<10+2)
	}

	// Twenty do not: the pipelining client that reads nothing is dropped.
	greedy := dialResp(t, cp.addr)
	greedy.send(strings.Repeat(encodeCommand("GET", "{k}v"), 20))
	require.Eventually(t, func() bool { return infoField(t, bystander, "output_limit_disconnections") == "1" },
		10*time.Second, 5*time.Millisecond)
	assert.True(t, greedy.closedByPeer(), "the client was disconnected")

	// One reply larger than the limit disconnects too, as in Redis.
	huge := dialResp(t, cp.addr)
	huge.send(encodeCommand("GET", "{k}big"))
	assert.True(t, huge.closedByPeer())
	assert.Equal(t, "2", infoField(t, bystander, "output_limit_disconnections"))

	assert.Equal(t, "+OK\r\n", bystander.do("SET", "{k}after", "1"), "the shard serves on")
	assert.Equal(t, "+OK\r\n", reader.do("SET", "{k}after", "2"))
	assert.Equal(t, "0", infoField(t, bystander, "backend_connections_lost"))
}
