package cluster

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSplitSlotsMatchesRedisCli(t *testing.T) {
	assert.Equal(t, []SlotRange{{0, 5460}, {5461, 10922}, {10923, 16383}}, splitSlots(3))
	assert.Equal(t, []SlotRange{{0, 16383}}, splitSlots(1))
	assert.Equal(t, []SlotRange{{0, 8191}, {8192, 16383}}, splitSlots(2))

	for _, masters := range []int{1, 2, 3, 5, 7, 10, 100, 1000, SlotCount} {
		ranges := splitSlots(masters)
		require.Len(t, ranges, masters)
		next := 0
		for _, r := range ranges {
			require.Equal(t, next, r.Start, "masters=%d: ranges must be contiguous", masters)
			require.GreaterOrEqual(t, r.End, r.Start, "masters=%d", masters)
			next = r.End + 1
		}
		assert.Equal(t, SlotCount, next, "masters=%d: ranges must cover every slot", masters)
	}
}

func TestSlotFollowsClusterSpec(t *testing.T) {
	assert.Equal(t, uint16(0x31C3), crc16("123456789"), "CRC16/XMODEM check value")
	for key, want := range map[string]int{
		"":                     0,
		"foo":                  12182,
		"123456789":            0x31C3,
		"{user1000}.following": int(crc16("user1000")) % SlotCount,
		"foo{}{bar}":           int(crc16("foo{}{bar}")) % SlotCount, // empty tag: whole key
		"foo{{bar}}zap":        int(crc16("{bar")) % SlotCount,
		"foo{bar}{zap}":        int(crc16("bar")) % SlotCount,
		"{bar":                 int(crc16("{bar")) % SlotCount, // unclosed: whole key
	} {
		assert.Equal(t, want, Slot(key), "Slot(%q)", key)
	}
}

func TestKeyInSlotReachesEverySlot(t *testing.T) {
	for slot := range SlotCount {
		key := KeyInSlot(slot, "k")
		require.Equal(t, slot, Slot(key), "key %q", key)
	}
	assert.Panics(t, func() { KeyInSlot(SlotCount, "k") })
	assert.Panics(t, func() { KeyInSlot(-1, "k") })
}

func TestParseInfo(t *testing.T) {
	fields := parseInfo("# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nslave0:ip=127.0.0.1,port=1,state=online\r\n\r\nbad line\r\n")
	assert.Equal(t, map[string]string{
		"role":        "slave",
		"master_host": "127.0.0.1",
		"slave0":      "ip=127.0.0.1,port=1,state=online",
	}, fields)
}

func TestParseClusterNodes(t *testing.T) {
	const text = "" +
		"07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-a slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n" +
		"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [93->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]\n" +
		"6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail? - 1426238316232 1426238313000 5 disconnected\n" +
		"short line\n"
	entries := parseClusterNodes(text)
	require.Len(t, entries, 3)
	assert.Equal(t, nodeEntry{
		ID:        "07c37dfeb235213a872192d90877d0cd55635b91",
		Addr:      "127.0.0.1:30004",
		Flags:     []string{"slave"},
		MasterID:  "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca",
		LinkState: "connected",
	}, entries[0])
	assert.True(t, entries[1].has("myself"))
	assert.True(t, entries[1].has("master"))
	assert.Empty(t, entries[1].MasterID)
	assert.True(t, entries[2].has("fail?"))
	assert.Equal(t, "disconnected", entries[2].LinkState)
}

// FuzzParseClusterNodes reads arbitrary CLUSTER NODES text: every entry is
// one line's fields, and a line built from the other inputs, added to the
// text, adds exactly the entry it describes.
func FuzzParseClusterNodes(f *testing.F) {
	f.Add("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460\n",
		"n2", "127.0.0.1:30002@31002,host", "slave", "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
	f.Add("a b c d e f g h\nx", "id", ":0@0", "handshake", "-")
	f.Add("", "id", "[::1]:7000@17000", "master,fail?", "-")
	f.Fuzz(func(t *testing.T, text, id, addr, flags, master string) {
		entries := parseClusterNodes(text)
		for _, e := range entries {
			if e.ID == "" || strings.ContainsAny(e.Addr, "@ \n") || e.MasterID == "-" || len(e.Flags) == 0 {
				t.Fatalf("malformed entry %+v from %q", e, text)
			}
		}
		for _, field := range []string{id, addr, flags, master} {
			if len(strings.Fields(field)) != 1 || strings.Fields(field)[0] != field {
				return
			}
		}
		line := id + " " + addr + " " + flags + " " + master + " 0 1426238316232 1 connected 0-5460\n"
		got := parseClusterNodes(text + "\n" + line)
		want := nodeEntry{ID: id, Addr: strings.Split(strings.Split(addr, "@")[0], ",")[0],
			Flags: strings.Split(flags, ","), LinkState: "connected"}
		if master != "-" {
			want.MasterID = master
		}
		require.Equal(t, append(entries, want), got, "%q", line)
	})
}

// FuzzParseInfo reads arbitrary INFO text: keys are never comments and
// never span lines; a field added on a line of its own after the text is
// found with its value.
func FuzzParseInfo(f *testing.F) {
	f.Add("# Replication\r\nrole:master\r\nconnected_slaves:1\r\n", "master_link_status", "up")
	f.Add("::\n#:\n", "k", "a:b")
	f.Add("role:master", "role", "")
	f.Fuzz(func(t *testing.T, text, key, value string) {
		for k, v := range parseInfo(text) {
			if strings.ContainsAny(k, ":\n") || strings.HasPrefix(k, "#") || strings.ContainsAny(v, "\n") {
				t.Fatalf("malformed field %q=%q from %q", k, v, text)
			}
		}
		if key == "" || strings.ContainsAny(key, ":\r\n") || key[0] == '#' || strings.ContainsAny(value, "\r\n") {
			return
		}
		fields := parseInfo(text + "\r\n" + key + ":" + value + "\r\n")
		require.Equal(t, value, fields[key])
	})
}

func TestReservePortPairsGivesFreeDistinctPairs(t *testing.T) {
	ports, err := reservePortPairs(8)
	require.NoError(t, err)
	seen := make(map[int]bool)
	for _, p := range ports {
		for _, port := range []int{p, p + busPortOffset} {
			assert.False(t, seen[port], "port %d handed out twice", port)
			seen[port] = true
			l, err := listen(port)
			if assert.NoError(t, err, "port %d must be free after release", port) {
				l.Close()
			}
		}
	}
}

func TestEphemeralRoom(t *testing.T) {
	low, high := ephemeralRoom(32768)
	assert.Equal(t, 10000, low)
	assert.Equal(t, 22768, high, "bus ports must stay below the ephemeral range")
	low, high = ephemeralRoom(15000)
	assert.Equal(t, low, high, "no room: fall back to kernel-chosen ports")
}

func TestOptionsValidate(t *testing.T) {
	assert.NoError(t, Options{}.withDefaults().validate())
	for name, o := range map[string]Options{
		"negative replicas": {ReplicasPerMaster: -1},
		"too many masters":  {Masters: SlotCount + 1},
		"negative masters":  {Masters: -2},
		"tiny node timeout": {NodeTimeout: 1},
		"negative timeout":  {WaitTimeout: -1},
	} {
		assert.Error(t, o.withDefaults().validate(), name)
	}
}

func TestWriteConfig(t *testing.T) {
	dir := t.TempDir()
	n := &Node{Port: 12345, Dir: dir}
	opts := Options{NodeTimeout: 1500 * time.Millisecond, ExtraConfig: []string{"maxmemory 64mb"}}
	require.NoError(t, n.writeConfig(opts.withDefaults()))
	b, err := os.ReadFile(filepath.Join(dir, "redis.conf"))
	require.NoError(t, err)
	conf := string(b)
	for _, line := range []string{
		"port 12345", "bind 127.0.0.1", "cluster-enabled yes", "cluster-node-timeout 1500",
		"appendonly no", `save ""`, "daemonize no", "maxmemory 64mb",
	} {
		assert.Contains(t, strings.Split(conf, "\n"), line)
	}
}

func TestNewWithoutRedisServer(t *testing.T) {
	_, err := New(context.Background(), Options{RedisServer: filepath.Join(t.TempDir(), "no-such-redis-server")})
	assert.ErrorIs(t, err, ErrNoRedisServer)
}

func TestStartFreshMovesOffATakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	binary := requireRedisServer(t)
	taken, err := net.Listen("tcp4", loopback+":0")
	require.NoError(t, err)
	t.Cleanup(func() { taken.Close() })
	port := taken.Addr().(*net.TCPAddr).Port

	// launch itself reports the lost race.
	n := &Node{Port: port, Addr: nodeAddr(port), Dir: t.TempDir(), client: newNodeClient(nodeAddr(port), nil)}
	t.Cleanup(func() { n.client.Close() })
	require.NoError(t, n.writeConfig(Options{}.withDefaults()))
	proc, err := n.launch(t.Context(), binary)
	if proc != nil {
		proc.stop(syscall.SIGKILL, 0)
	}
	assert.ErrorIs(t, err, errAddrInUse)

	// startFresh retries on another pair.
	c := &Cluster{opts: Options{}.withDefaults(), binary: binary, baseDir: t.TempDir()}
	c.log = c.opts.Logger
	n, err = c.startFresh(t.Context(), 0, port)
	require.NoError(t, err)
	t.Cleanup(func() {
		n.proc.stop(syscall.SIGKILL, 0)
		n.client.Close()
	})
	assert.NotEqual(t, port, n.Port)
	assert.True(t, n.servedBy(t.Context(), n.proc.cmd.Process.Pid))

	// Another redis-server answering on the port does not pass for ours.
	twin := &Node{Port: n.Port, Addr: n.Addr, Dir: t.TempDir(), client: newNodeClient(n.Addr, nil)}
	t.Cleanup(func() { twin.client.Close() })
	require.NoError(t, twin.writeConfig(Options{}.withDefaults()))
	proc, err = twin.launch(t.Context(), binary)
	if proc != nil {
		proc.stop(syscall.SIGKILL, 0)
	}
	assert.ErrorIs(t, err, errAddrInUse)
}
