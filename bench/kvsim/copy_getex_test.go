package kvsim

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGetExAndCopyClusterChecks: both are writes to kvsim's cluster checks
// (MOVED, TRYAGAIN during a failover) and COPY's two keys must share a slot.
func TestGetExAndCopyClusterChecks(t *testing.T) {
	me, other, c := ntClusterOfTwo(t)
	mine := ntKeyInSlots(t, 0, 8191)
	theirs := ntKeyInSlots(t, 8192, 16383)
	theirSlot := strconv.Itoa(hashSlot([]byte(theirs)))
	moved := "-MOVED " + theirSlot + " " + other.Addr() + "\r\n"

	require.Equal(t, "+OK\r\n", c.do("SET", mine, "v"))
	assert.Equal(t, ntBulk("v"), c.do("GETEX", mine, "EX", "100"))
	assert.Equal(t, ":1\r\n", c.do("COPY", mine, "{"+mine+"}copy"))
	assert.Equal(t, moved, c.do("GETEX", theirs))
	assert.Equal(t, moved, c.do("COPY", theirs, "{"+theirs+"}copy"))
	assert.Equal(t, "-CROSSSLOT Attempted to access keys that don't hash to the same slot\r\n",
		c.do("COPY", mine, theirs))

	me.failover.state.Store(failoverWaitSync)
	defer me.failover.state.Store(failoverNone)
	assert.Equal(t, "-TRYAGAIN Failover in progress\r\n", c.do("GETEX", mine))
	assert.Equal(t, "-TRYAGAIN Failover in progress\r\n", c.do("COPY", mine, "{"+mine+"}x"))
}

// TestGetExAndCopyReplicate: the replica ends with the master's keys, TTLs
// and sequence.
func TestGetExAndCopyReplicate(t *testing.T) {
	ntSkipShort(t)
	s := ntStartShard(t, 1, NodeConfig{})
	m := ntDial(t, s.master.Addr())
	require.Equal(t, "+OK\r\n", m.do("SET", "{k}a", "v"))
	require.Equal(t, ntBulk("v"), m.do("GETEX", "{k}a", "PXAT", "99999999999999"))
	require.Equal(t, ":1\r\n", m.do("COPY", "{k}a", "{k}b"))
	require.Equal(t, ntBulk("v"), m.do("GETEX", "{k}a", "PERSIST"))
	require.Equal(t, ":1\r\n", m.do("HSET", "{k}h", "f", "1"))
	require.Equal(t, ":1\r\n", m.do("COPY", "{k}h", "{k}b", "REPLACE"))
	require.Equal(t, "+OK\r\n", m.do("SET", "{k}gone", "v"))
	require.Equal(t, ntBulk("v"), m.do("GETEX", "{k}gone", "PXAT", "1"))
	ntWaitCaughtUp(t, s.master, s.replicas[0])

	r := ntDial(t, s.replicas[0].Addr())
	require.Equal(t, "+OK\r\n", r.do("READONLY"))
	assert.Equal(t, ":-1\r\n", r.do("PTTL", "{k}a"))
	assert.Equal(t, "+hash\r\n", r.do("TYPE", "{k}b"))
	assert.Equal(t, ":-1\r\n", r.do("PTTL", "{k}b"), "REPLACE drops the destination's TTL for the source's")
	assert.Equal(t, ":0\r\n", r.do("EXISTS", "{k}gone"))
	_, masterData := s.master.Keyspace().Snapshot()
	_, replicaData := s.replicas[0].Keyspace().Snapshot()
	assert.ElementsMatch(t, masterData, replicaData)
}
