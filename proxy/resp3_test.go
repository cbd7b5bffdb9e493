package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func helloMap(proto, id string) string {
	return "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:" + proto +
		"\r\n$2\r\nid\r\n:" + id + "\r\n$4\r\nmode\r\n$7\r\ncluster\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
}

// HELLO's forms, as Redis 7 answers them: the protocol switches only with
// a HELLO that succeeds, a bare HELLO keeps it, RESET returns to RESP2.
func TestHelloForms(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(2), func(c *Config) { c.Password = "pw" })
	c := dialResp(t, addr)
	assert.Equal(t, "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n", c.do("HELLO", "3"))
	assert.Equal(t, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", c.do("HELLO", "3", "AUTH", "default", "nope"))
	assert.Equal(t, "-NOPROTO unsupported protocol version\r\n", c.do("HELLO", "4", "AUTH", "default", "pw"))
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "pw"))
	assert.Equal(t, "$-1\r\n", c.do("GET", "missing"), "still RESP2 after failed HELLOs")
	assert.Equal(t, helloMap("3", "1"), c.do("HELLO", "3", "AUTH", "default", "pw", "SETNAME", "app"))
	assert.Equal(t, "$3\r\napp\r\n", c.do("CLIENT", "GETNAME"))
	assert.Equal(t, helloMap("3", "1"), c.do("HELLO"), "a bare HELLO keeps RESP3")
	assert.Equal(t, "_\r\n", c.do("GET", "missing"))
	info := c.do("CLIENT", "INFO")
	assert.Regexp(t, `^=\d+\r\ntxt:id=1 .* resp=3\n\r\n$`, info)
	assert.Equal(t, "+RESET\r\n", c.do("RESET"))
	assert.Equal(t, "-NOAUTH Authentication required.\r\n", c.do("GET", "missing"))
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "pw"))
	assert.Equal(t, "$-1\r\n", c.do("GET", "missing"), "RESET returns to RESP2")
}

// Client-side caching: OPTIN is accepted (it tracks nothing), CACHING YES
// and the command after it are refused, other modes refused at once.
func TestClientTrackingRefusesCaching(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(2), nil)
	c := dialResp(t, addr)
	c.do("HELLO", "3")
	assert.Equal(t, "-"+errTrackingMode+"\r\n", c.do("CLIENT", "TRACKING", "ON"))
	assert.Equal(t, "-"+errTrackingMode+"\r\n", c.do("CLIENT", "TRACKING", "ON", "BCAST"))
	assert.Equal(t, "-ERR syntax error\r\n", c.do("CLIENT", "TRACKING", "MAYBE"))
	assert.Equal(t, "-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled\r\n", c.do("CLIENT", "CACHING", "YES"))
	assert.Equal(t, "+OK\r\n", c.do("CLIENT", "TRACKING", "ON", "OPTIN"))
	assert.Equal(t, "-"+errCaching+"\r\n", c.do("CLIENT", "CACHING", "YES"))
	assert.Equal(t, "-"+errCaching+"\r\n", c.do("GET", "k"), "the command to be cached is refused")
	assert.Equal(t, "_\r\n", c.do("GET", "k"), "the next one is served")
	assert.Equal(t, "+OK\r\n", c.do("CLIENT", "TRACKING", "OFF"))
}
