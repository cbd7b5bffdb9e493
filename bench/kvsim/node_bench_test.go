package kvsim

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkNodePipelinedSetGet measures the node's data path end to end over
// loopback: batches of 16 pipelined SETs and GETs on one connection.
func BenchmarkNodePipelinedSetGet(b *testing.B) {
	n := ntStartNode(b, NodeConfig{})
	c := ntDial(b, n.Addr())
	require.Equal(b, "+OK\r\n", c.do("CLUSTERX", "SETNODES", ntMasterLine(ntID('a'), n, "0-16383"), "1"))
	require.Equal(b, "+OK\r\n", c.do("CLUSTERX", "SETNODEID", ntID('a')))
	const depth = 16
	var batch []byte
	for i := range depth / 2 {
		key := []byte("key:" + strconv.Itoa(i))
		batch = appendCommand(batch, []byte("SET"), key, []byte("value"))
		batch = appendCommand(batch, []byte("GET"), key)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.conn.Write(batch); err != nil {
			b.Fatal(err)
		}
		for range depth {
			if _, err := ntReadFrame(c.rd); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*depth)/b.Elapsed().Seconds(), "cmds/s")
}

// BenchmarkCommandSlot measures routing a keyed command; it must not allocate.
func BenchmarkCommandSlot(b *testing.B) {
	cmd := mustLookupB(b, "set")
	args := [][]byte{[]byte("SET"), []byte("user:{1000}:name"), []byte("v")}
	b.ReportAllocs()
	for b.Loop() {
		commandSlot(cmd, args)
	}
}
