package kvsim

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ntBlocked sends a command on its own connection and returns the channel
// its reply arrives on.
func ntBlocked(t *testing.T, addr string, args ...string) <-chan string {
	c := ntDial(t, addr)
	c.send(args...)
	out := make(chan string, 1)
	go func() {
		reply, err := ntReadFrame(c.rd)
		if err != nil {
			reply = "read error: " + err.Error()
		}
		out <- reply
	}()
	return out
}

func TestClientPauseWriteBlocksWritesOnly(t *testing.T) {
	ntSkipShort(t)
	me, _, c := ntClusterOfTwo(t)
	key := ntKeyInSlots(t, 0, 8191)
	require.Equal(t, "+OK\r\n", c.do("SET", key, "v"))
	require.Equal(t, "+OK\r\n", c.do("CLIENT", "PAUSE", "100000", "WRITE"))
	write := ntBlocked(t, me.Addr(), "SET", key, "v2")
	assert.Equal(t, ntBulk("v"), c.do("GET", key), "reads pass a WRITE pause")
	assert.Contains(t, c.do("INFO", "replication"), "role:master")
	assert.Never(t, func() bool { return len(write) > 0 }, 200*time.Millisecond, 10*time.Millisecond,
		"a paused write must block, not fail")
	assert.Equal(t, "+OK\r\n", c.do("CLIENT", "UNPAUSE"))
	select {
	case reply := <-write:
		assert.Equal(t, "+OK\r\n", reply)
	case <-time.After(10 * time.Second):
		t.Fatal("the write never resumed after UNPAUSE")
	}
	assert.Equal(t, ntBulk("v2"), c.do("GET", key))
}

func TestClientPauseAllBlocksEverythingButClient(t *testing.T) {
	ntSkipShort(t)
	me, _, c := ntClusterOfTwo(t)
	key := ntKeyInSlots(t, 0, 8191)
	require.Equal(t, "+OK\r\n", c.do("CLIENT", "PAUSE", "100000")) // ALL by default
	read := ntBlocked(t, me.Addr(), "GET", key)
	info := ntBlocked(t, me.Addr(), "INFO")
	assert.Never(t, func() bool { return len(read)+len(info) > 0 }, 200*time.Millisecond, 10*time.Millisecond)
	assert.Equal(t, "+OK\r\n", ntDial(t, me.Addr()).do("CLIENT", "UNPAUSE"), "UNPAUSE goes through an ALL pause")
	for _, ch := range []<-chan string{read, info} {
		select {
		case reply := <-ch:
			assert.NotContains(t, reply, "error")
		case <-time.After(10 * time.Second):
			t.Fatal("a paused command never resumed")
		}
	}
}

func TestClientPauseEnds(t *testing.T) {
	ntSkipShort(t)
	me, _, c := ntClusterOfTwo(t)
	key := ntKeyInSlots(t, 0, 8191)
	start := time.Now()
	require.Equal(t, "+OK\r\n", c.do("CLIENT", "PAUSE", "100", "WRITE"))
	select {
	case reply := <-ntBlocked(t, me.Addr(), "SET", key, "v"):
		assert.Equal(t, "+OK\r\n", reply)
	case <-time.After(10 * time.Second):
		t.Fatal("the pause never ended")
	}
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
}

func TestClientPauseErrors(t *testing.T) {
	n := ntStartNode(t, NodeConfig{})
	c := ntDial(t, n.Addr())
	assert.Equal(t, "-ERR timeout is not an integer or out of range\r\n", c.do("CLIENT", "PAUSE", "x"))
	assert.Equal(t, "-ERR timeout is negative\r\n", c.do("CLIENT", "PAUSE", "-5"))
	assert.Equal(t, "-ERR syntax error\r\n", c.do("CLIENT", "PAUSE", "5", "READ"))
	assert.Equal(t, "+OK\r\n", c.do("CLIENT", "UNPAUSE"))
}

func TestPauseGateExtendsAndLifts(t *testing.T) {
	var p pauseGate
	assert.False(t, p.blocks(true))
	p.pause(time.Hour, false)
	assert.True(t, p.blocks(true))
	assert.False(t, p.blocks(false))
	p.pause(time.Hour, true)
	assert.True(t, p.blocks(false))
	p.pause(0, true) // a shorter pause does not shorten a running one
	assert.True(t, p.blocks(false))
	p.reset()
	assert.False(t, p.blocks(true))
	p.pause(0, true)
	assert.False(t, p.blocks(false), "an expired pause lifts itself")
}
