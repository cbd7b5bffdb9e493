package main

import (
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDescriptorReserve(t *testing.T) {
	base := reservedDescriptors + runtime.GOMAXPROCS(0)
	assert.Equal(t, base+6*(4+perNodeDescriptors), descriptorReserve(6, 4, false))
	assert.Equal(t, base+2*3*(1+perNodeDescriptors), descriptorReserve(3, 1, true), "the demo's cluster holds the other ends")
}

func TestDescriptorShare(t *testing.T) {
	clients, blocking, ok := descriptorShare(20000, 100, 10000, 1000)
	assert.True(t, ok)
	assert.Equal(t, [2]int{10000, 1000}, [2]int{clients, blocking}, "enough: as configured")

	clients, blocking, ok = descriptorShare(1024, 100, 10000, 1000)
	assert.True(t, ok)
	assert.Equal(t, [2]int{840, 84}, [2]int{clients, blocking}, "924 left, shared 10:1")

	clients, blocking, ok = descriptorShare(103, 100, 10000, 1)
	assert.True(t, ok)
	assert.Equal(t, [2]int{2, 1}, [2]int{clients, blocking}, "at least one blocking command")

	_, _, ok = descriptorShare(101, 100, 10, 10)
	assert.False(t, ok, "no room for a client and a blocking command")
}

// raiseOpenFileLimit raises the soft limit when it is short, as far as the
// hard limit allows.
func TestRaiseOpenFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig))
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	if orig.Max < 512 {
		t.Skipf("hard open file limit %d: too low to lower and raise the soft one", orig.Max)
	}
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 256, Max: orig.Max}))

	got, err := raiseOpenFileLimit(300)
	require.NoError(t, err)
	assert.Equal(t, uint64(300), got)
	var now syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now))
	assert.Equal(t, uint64(300), now.Cur)

	got, err = raiseOpenFileLimit(200)
	require.NoError(t, err)
	assert.Equal(t, uint64(300), got, "never lowered")

	got, err = raiseOpenFileLimit(orig.Max + 1)
	require.NoError(t, err)
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now))
	assert.Equal(t, now.Cur, got)
	assert.GreaterOrEqual(t, got, orig.Max, "raised at least to the hard limit (past it when privileged)")
}
