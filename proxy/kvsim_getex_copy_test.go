package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestGetExAndCopyOverKvsim: GETEX and COPY reach the owning Kvrocks node
// with its replies, COPY's two keys are checked for one slot by the proxy.
func TestGetExAndCopyOverKvsim(t *testing.T) {
	kp := startKvsimProxy(t)
	c := dialResp(t, kp.addr)
	assert.Equal(t, "+OK\r\n", c.do("SET", "{a}1", "v"))
	assert.Equal(t, "$1\r\nv\r\n", c.do("GETEX", "{a}1", "EX", "100"))
	assert.Regexp(t, `^:(100|[1-9][0-9])\r\n$`, c.do("TTL", "{a}1"))
	assert.Equal(t, "-ERR out of numeric range\r\n", c.do("GETEX", "{a}1", "EX", "0"), "Kvrocks' error text")
	assert.Equal(t, ":1\r\n", c.do("COPY", "{a}1", "{a}2"))
	assert.Equal(t, c.do("PEXPIRETIME", "{a}1"), c.do("PEXPIRETIME", "{a}2"), "the copy keeps the TTL")
	assert.Equal(t, ":0\r\n", c.do("COPY", "{a}1", "{a}2"))
	assert.Equal(t, "-ERR no such key\r\n", c.do("COPY", "{a}none", "{a}2"), "Kvrocks, unlike Redis")
	assert.Equal(t, "-CROSSSLOT Keys in request don't hash to the same slot\r\n", c.do("COPY", "{a}1", "{b}1"))
}
