package kvsim

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSubkeyScansOnNode: HSCAN, SSCAN and ZSCAN on a cluster node answer the
// same bytes in RESP2 and RESP3 (Kvrocks writes arrays of bulk strings, the
// scores included, in both) and are routed by their key like other reads.
func TestSubkeyScansOnNode(t *testing.T) {
	_, other, c := ntClusterOfTwo(t)
	k := ntKeyInSlots(t, 0, 8191)
	h, s, z := "{"+k+"}h", "{"+k+"}s", "{"+k+"}z"
	require.Equal(t, ":2\r\n", c.do("HSET", h, "f", "1", "g", "2"))
	require.Equal(t, ":2\r\n", c.do("SADD", s, "a", "b"))
	require.Equal(t, ":2\r\n", c.do("ZADD", z, "2.5", "m", "1", "n"))
	want := map[string]string{
		"HSCAN": "*2\r\n" + ntBulk("0") + "*4\r\n" + ntBulk("f") + ntBulk("1") + ntBulk("g") + ntBulk("2"),
		"SSCAN": "*2\r\n" + ntBulk("0") + "*2\r\n" + ntBulk("a") + ntBulk("b"),
		"ZSCAN": "*2\r\n" + ntBulk("0") + "*4\r\n" + ntBulk("m") + ntBulk("2.5") + ntBulk("n") + ntBulk("1"),
	}
	keys := map[string]string{"HSCAN": h, "SSCAN": s, "ZSCAN": z}
	for _, proto := range []string{"2", "3"} {
		c.do("HELLO", proto)
		for cmd, reply := range want {
			assert.Equal(t, reply, c.do(cmd, keys[cmd], "0"), cmd+" in RESP"+proto)
			assert.Equal(t, "*2\r\n"+ntBulk("0")+"*0\r\n", c.do(cmd, "{"+k+"}missing", "0"), cmd+" in RESP"+proto)
		}
	}
	elsewhere := ntKeyInSlots(t, 8192, 16383)
	for _, cmd := range []string{"HSCAN", "SSCAN", "ZSCAN"} {
		reply := c.do(cmd, elsewhere, "0")
		assert.True(t, strings.HasPrefix(reply, "-MOVED ") && strings.HasSuffix(reply, " "+other.Addr()+"\r\n"),
			"%s is routed by its key: %q", cmd, reply)
	}
}
