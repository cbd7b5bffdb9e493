package kvsim

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What `redis-cli --cluster create` prints ("Master[i] -> Slots a - b") for
// 3, 4 and 5 masters (redis-cli 7.0.15), and what its formula gives for 1
// and 2, which it refuses to create.
var redisCliSplits = map[int][]SlotRange{
	1: {{0, 16383}},
	2: {{0, 8191}, {8192, 16383}},
	3: {{0, 5460}, {5461, 10922}, {10923, 16383}},
	4: {{0, 4095}, {4096, 8191}, {8192, 12287}, {12288, 16383}},
	5: {{0, 3276}, {3277, 6553}, {6554, 9829}, {9830, 13106}, {13107, 16383}},
}

func TestSplitSlotsMatchesRedisCli(t *testing.T) {
	for n := 1; n <= 5; n++ {
		assert.Equal(t, redisCliSplits[n], SplitSlots(n), "%d masters", n)
	}
}

func TestSplitSlotsCoversEverySlotOnce(t *testing.T) {
	for _, n := range []int{1, 2, 3, 6, 7, 10, 99, 1000, 16383, 16384} {
		ranges := SplitSlots(n)
		require.Len(t, ranges, n)
		next := 0
		for i, r := range ranges {
			require.Equal(t, next, r.Start, "%d masters: range %d starts where the previous ended", n, i)
			require.LessOrEqual(t, r.Start, r.End, "%d masters: range %d is not empty", n, i)
			next = r.End + 1
		}
		assert.Equal(t, SlotCount, next, "%d masters: the last range ends at 16383", n)
	}
	assert.Empty(t, SplitSlots(0))
}

// TestSplitSlotsAgainstLiveRedisCli asks the installed redis-cli for its plan
// on real cluster-enabled redis-servers, answering "no" to its confirmation.
func TestSplitSlotsAgainstLiveRedisCli(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	redisServer := binaryOrSkip(t, "redis-server")
	redisCli := binaryOrSkip(t, "redis-cli")
	planLine := regexp.MustCompile(`Master\[(\d+)\] -> Slots (\d+) - (\d+)`)
	for n := 3; n <= 5; n++ {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			addrs := make([]string, n)
			for i := range addrs {
				addrs[i] = startRedisClusterServer(t, redisServer)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, redisCli, append([]string{"--cluster", "create"}, addrs...)...)
			cmd.Stdin = strings.NewReader("no\n")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			var plan []SlotRange
			for _, m := range planLine.FindAllStringSubmatch(string(out), -1) {
				start, _ := strconv.Atoi(m[2])
				end, _ := strconv.Atoi(m[3])
				plan = append(plan, SlotRange{start, end})
			}
			assert.Equal(t, plan, SplitSlots(n), "redis-cli said:\n%s", out)
			assert.Equal(t, redisCliSplits[n], plan)
		})
	}
}

// binaryOrSkip finds name on PATH, or skips; with CI=true a missing binary fails.
func binaryOrSkip(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required when CI=true: %v", name, err)
		}
		t.Skipf("%s is not installed: %v", name, err)
	}
	return path
}

// startRedisClusterServer runs an empty cluster-enabled redis-server on a free
// loopback port until the test ends, and returns its address once it answers.
func startRedisClusterServer(t *testing.T, bin string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
		"--dir", dir, "--save", "", "--appendonly", "no")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	require.Eventually(t, func() bool {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte("PING\r\n")); err != nil {
			return false
		}
		buf := make([]byte, 7)
		n, _ := conn.Read(buf)
		return string(buf[:n]) == "+PONG\r\n"
	}, 10*time.Second, 20*time.Millisecond, "redis-server on %s did not start", addr)
	return addr
}

func sampleTopology() Topology {
	id := func(c byte) string { return strings.Repeat(string(c), 40) }
	return Topology{
		Version: 7,
		Shards: []ShardTopology{
			{
				Master:   NodeRef{id('a'), "127.0.0.1:30001"},
				Replicas: []NodeRef{{id('b'), "127.0.0.1:30002"}, {id('c'), "127.0.0.1:30003"}},
				Slots:    []SlotRange{{0, 100}, {200, 200}, {300, 8191}},
			},
			{
				Master: NodeRef{id('d'), "127.0.0.1:30004"},
				Slots:  []SlotRange{{8192, 16383}},
			},
		},
	}
}

func TestTopologyRender(t *testing.T) {
	a, b, c, d := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40), strings.Repeat("d", 40)
	want := a + " 127.0.0.1 30001 master - 0-100 200 300-8191\n" +
		b + " 127.0.0.1 30002 slave " + a + "\n" +
		c + " 127.0.0.1 30003 slave " + a + "\n" +
		d + " 127.0.0.1 30004 master - 8192-16383"
	assert.Equal(t, want, sampleTopology().Render())
	assert.Empty(t, Topology{}.Render())
}

func TestTopologyLookups(t *testing.T) {
	topo := sampleTopology()
	for slot, shard := range map[int]int{0: 0, 100: 0, 101: -1, 200: 0, 250: -1, 8191: 0, 8192: 1, 16383: 1} {
		assert.Equal(t, shard, topo.ShardOfSlot(slot), "slot %d", slot)
	}
	for id, want := range map[string]struct {
		shard  int
		master bool
	}{
		strings.Repeat("a", 40): {0, true},
		strings.Repeat("c", 40): {0, false},
		strings.Repeat("d", 40): {1, true},
		strings.Repeat("e", 40): {-1, false},
	} {
		shard, master := topo.ShardOfNode(id)
		assert.Equal(t, want.shard, shard, id)
		assert.Equal(t, want.master, master, id)
	}
}

func TestTopologyWithPromoted(t *testing.T) {
	topo := sampleTopology()
	a, b, c := topo.Shards[0].Master, topo.Shards[0].Replicas[0], topo.Shards[0].Replicas[1]

	next, err := topo.withPromoted(0, c.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(8), next.Version)
	assert.Equal(t, c, next.Shards[0].Master)
	assert.Equal(t, []NodeRef{a, b}, next.Shards[0].Replicas, "the old master replicates first, the others stay")
	assert.Equal(t, topo.Shards[0].Slots, next.Shards[0].Slots)
	assert.Equal(t, topo.Shards[1], next.Shards[1])
	assert.Equal(t, a, topo.Shards[0].Master, "the original is not modified")
	assert.Equal(t, []NodeRef{b, c}, topo.Shards[0].Replicas, "the original is not modified")

	_, err = topo.withPromoted(1, a.ID)
	assert.Error(t, err, "a node of another shard")
	_, err = topo.withPromoted(0, a.ID)
	assert.Error(t, err, "the master itself")
	_, err = topo.withPromoted(2, b.ID)
	assert.Error(t, err, "no such shard")
}

func TestTopologyCloneIsDeep(t *testing.T) {
	topo := sampleTopology()
	clone := topo.Clone()
	clone.Shards[0].Replicas[0].Addr = "changed"
	clone.Shards[0].Slots[0].End = 1
	assert.Equal(t, sampleTopology(), topo)
}

func TestSlotRangeString(t *testing.T) {
	assert.Equal(t, "5", SlotRange{5, 5}.String())
	assert.Equal(t, "0-16383", SlotRange{0, 16383}.String())
}

func ExampleSplitSlots() {
	for _, r := range SplitSlots(3) {
		fmt.Println(r)
	}
	// Output:
	// 0-5460
	// 5461-10922
	// 10923-16383
}
