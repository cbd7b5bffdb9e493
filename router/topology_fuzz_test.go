package router

import (
	"encoding/binary"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// oneField reports whether s is a single CLUSTER NODES field: not empty and
// without the white space strings.Fields splits on.
func oneField(s string) bool {
	f := strings.Fields(s)
	return len(f) == 1 && f[0] == s
}

// FuzzParseClusterNodes reads arbitrary CLUSTER NODES text. What it accepts
// are dialable nodes taken from the text's lines, read alike with "\n" and
// "\r\n" line ends; and a well-formed line (built from the other inputs)
// added to any accepted text adds exactly the node it describes.
func FuzzParseClusterNodes(f *testing.F) {
	kvrocks := "" +
		"2222222222222222222222222222222222222222 127.0.0.1:30002@40002 slave 1111111111111111111111111111111111111111 0 0 3 connected\n" +
		"1111111111111111111111111111111111111111 127.0.0.1:30001@40001 myself,master - 0 0 3 connected 0-100 101-199 200-8191\n"
	redis := "" +
		"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,node-1 myself,master - 0 1426238316232 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]\n" +
		"67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 :30002@31002 master - 0 1426238316232 2 connected 5461-10922\n" +
		"292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 1426238316232 1426238316232 3 disconnected 10923-16383\n" +
		"824fe116063bc5fcf9f4ffd895bc17aee7731ac3 :0@0 handshake - 0 0 0 disconnected\n"
	id := strings.Repeat("1", 40)
	for _, seed := range []struct {
		text, id, host, master string
		port                   uint16
		replica                bool
	}{
		{kvrocks, strings.Repeat("3", 40), "127.0.0.1", id, 30003, true},
		{redis, "n1", "", "-", 7000, false},
		{"", id, "::1", "", 7001, false},
		{"a b\n", id, "node-1.example", "", 1, false},                                  // too few fields
		{id + " noport master - 0 0 1 connected\n", "x", "10.0.0.1", "-", 65535, true}, // bad address
		{id + " [::1]:7000@17000 slave - 0 0 1 connected\r\n", "x", "h", "y", 0, true}, // port 0: skipped
		{id + " 127.0.0.1:7000@17000 master,noaddr - 0 0 1 connected\n\n", "x", "fe80::1%eth0", "x", 2, false},
	} {
		f.Add(seed.text, seed.id, seed.host, seed.master, seed.port, seed.replica)
	}
	f.Fuzz(func(t *testing.T, text, id, host, master string, port uint16, replica bool) {
		nodes, err := parseClusterNodes(text, "h")
		if err == nil {
			checkParsedNodes(t, text, nodes)
			crlf, err := parseClusterNodes(strings.ReplaceAll(text, "\n", "\r\n"), "h")
			require.NoError(t, err)
			require.Equal(t, nodes, crlf, "\\r\\n line ends")
		} else {
			text, nodes = "", nil
		}

		hostOK := host == "" || oneField(host) && !strings.ContainsAny(host, "@,[]")
		if !oneField(id) || !hostOK || !oneField(master) {
			return
		}
		flags, want := "master", clusterNode{id: id, master: true, configEpoch: 1}
		if replica {
			flags, want = "slave", clusterNode{id: id, masterID: master, configEpoch: 1}
			if master == "-" {
				want.masterID = ""
			}
		}
		want.addr = net.JoinHostPort(cmpOr(host, "h"), strconv.Itoa(int(port)))
		line := id + " " + net.JoinHostPort(host, strconv.Itoa(int(port))) + "@" + strconv.Itoa(int(port)+10000) +
			" " + flags + " " + master + " 0 0 1 connected 0-16383\n"
		if port != 0 {
			nodes = append(nodes, want)
		}
		got, err := parseClusterNodes(text+"\n"+line, "h")
		require.NoError(t, err, "%q", line)
		require.Equal(t, nodes, got, "%q", line)
	})
}

func cmpOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// checkParsedNodes checks what parseClusterNodes accepted from text: nodes
// named by the first field of a line, at addresses the router can dial.
func checkParsedNodes(t *testing.T, text string, nodes []clusterNode) {
	t.Helper()
	var ids, fields []string
	for line := range strings.Lines(text) {
		if f := strings.Fields(line); len(f) > 0 {
			ids = append(ids, f[0])
			fields = append(fields, f...)
		}
	}
	require.LessOrEqual(t, len(nodes), len(ids))
	for _, n := range nodes {
		require.Contains(t, ids, n.id)
		host, port, err := net.SplitHostPort(n.addr)
		require.NoError(t, err, "%+v", n)
		require.NotEmpty(t, host, "%+v", n)
		require.NotEqual(t, "0", port, "%+v", n)
		require.False(t, strings.ContainsAny(n.addr, " \t\r\n"), "%+v", n)
		if n.masterID != "" {
			require.Contains(t, fields, n.masterID)
			require.NotEqual(t, "-", n.masterID)
		}
	}
}

// FuzzParseClusterEpoch reads arbitrary CLUSTER INFO text: an accepted
// epoch is not negative, and the first cluster_current_epoch line decides,
// whatever precedes or follows it.
func FuzzParseClusterEpoch(f *testing.F) {
	f.Add("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_current_epoch:7\r\ncluster_my_epoch:7\r\n", int64(3))
	f.Add("cluster_current_epoch:99999999999999999999\n", int64(0))
	f.Add("cluster_state:ok\ncluster_current_epoch:12", int64(1<<62))
	f.Add("cluster_current_epoch:-1\r\n", int64(-5))
	f.Add("cluster_current_epoch:+7\r\n", int64(7))
	f.Add("", int64(9))
	f.Fuzz(func(t *testing.T, text string, epoch int64) {
		got, err := parseClusterEpoch(text)
		if err == nil {
			require.GreaterOrEqual(t, got, int64(0))
			require.Contains(t, text, "cluster_current_epoch:")
		}
		if epoch < 0 {
			return
		}
		field := "cluster_current_epoch:" + strconv.FormatInt(epoch, 10)
		first, firstErr := parseClusterEpoch(field + "\r\n" + text)
		require.NoError(t, firstErr)
		require.Equal(t, epoch, first, "the first line decides")

		later, laterErr := parseClusterEpoch(text + "\n" + field + "\r\n")
		if err != nil && strings.Contains(err.Error(), "has no cluster_current_epoch") {
			require.NoError(t, laterErr)
			require.Equal(t, epoch, later, "the only line decides")
			return
		}
		require.Equal(t, err, laterErr, "an earlier line decides")
		require.Equal(t, got, later, "an earlier line decides")
	})
}

// FuzzParseRedirect reads arbitrary error replies: an accepted redirect
// names a slot in range and a dialable address, reads the same once printed
// again, and agrees with MovedTarget; a redirect built from the other
// inputs reads back as built.
func FuzzParseRedirect(f *testing.F) {
	for _, seed := range []string{
		"-MOVED 3999 127.0.0.1:6381\r\n", "-ASK 1 :7000\r\n", "-MOVED 1 [::1]:7000\r\n",
		"-MOVED 16384 a:1\r\n", "-MOVED 1 a:0\r\n", "-MOVED 1 a:65536\r\n", "-MOVED 01 a:1\r\n",
		"-MOVED 1 a:1", "-MOVED 1\r\n", "-ASK  1 a:1\r\n", "-MOVEDX 1 a:1\r\n", "+MOVED 1 a:1\r\n",
	} {
		f.Add([]byte(seed), uint16(3999), "127.0.0.1", uint16(6381), false)
	}
	f.Add([]byte("-TRYAGAIN Failover in progress\r\n"), uint16(16383), "", uint16(1), true)
	f.Add([]byte("-ERR x\r\n"), uint16(0), "fe80::1%eth0", uint16(65535), false)
	f.Fuzz(func(t *testing.T, reply []byte, slot uint16, host string, port uint16, ask bool) {
		kind, gotSlot, addr := parseRedirect(reply, "h")
		moved, isMoved := MovedTarget(reply, "h:1")
		require.Equal(t, kind == redirectMoved, isMoved)
		if kind != notRedirect {
			require.Less(t, gotSlot, SlotCount)
			require.GreaterOrEqual(t, gotSlot, 0)
			_, p, err := net.SplitHostPort(addr)
			require.NoError(t, err)
			n, err := strconv.Atoi(p)
			require.NoError(t, err)
			require.True(t, n > 0 && n <= 65535, "port %d", n)
			require.False(t, strings.ContainsAny(addr, " \r\n"), "%q", addr)
			k, s, a := parseRedirect(redirectReply(kind, gotSlot, addr), "other")
			require.Equal(t, []any{kind, gotSlot, addr}, []any{k, s, a}, "printed again")
			if isMoved {
				require.Equal(t, addr, moved)
			}
		}

		joined := net.JoinHostPort(host, strconv.Itoa(int(port)))
		if h, _, err := net.SplitHostPort(joined); err != nil || h != host || slot >= SlotCount || port == 0 ||
			strings.ContainsAny(host, " \r\n") {
			return // not a redirect a server could send
		}
		wantKind := redirectMoved
		if ask {
			wantKind = redirectAsk
		}
		k, s, a := parseRedirect(redirectReply(wantKind, int(slot), joined), "h")
		want := net.JoinHostPort(cmpOr(host, "h"), strconv.Itoa(int(port)))
		require.Equal(t, []any{wantKind, int(slot), want}, []any{k, s, a}, "%q", joined)
	})
}

func redirectReply(kind redirectKind, slot int, addr string) []byte {
	name := "MOVED"
	if kind == redirectAsk {
		name = "ASK"
	}
	return []byte("-" + name + " " + strconv.Itoa(slot) + " " + addr + "\r\n")
}

// FuzzMovedTarget reads arbitrary replies as MOVEDs from a node at an
// arbitrary address: a target is found only in a MOVED, and its port and
// host come from the reply's target (the host from the replying node when
// the target has none).
func FuzzMovedTarget(f *testing.F) {
	f.Add([]byte("-MOVED 3999 127.0.0.1:6381\r\n"), "127.0.0.1:1")
	f.Add([]byte("-MOVED 3999 :6381\r\n"), "h:1")
	f.Add([]byte("-MOVED 3999 :6381\r\n"), "[::1]:7000")
	f.Add([]byte("-MOVED 3999 :6381\r\n"), "no-port")
	f.Add([]byte("-ASK 3999 a:6381\r\n"), "h:1")
	f.Add([]byte("-MOVED 0 \f:1\r\n"), "0") // a form feed is a host, as far as MOVED goes
	f.Fuzz(func(t *testing.T, reply []byte, from string) {
		addr, ok := MovedTarget(reply, from)
		if !ok {
			require.Empty(t, addr)
			return
		}
		require.True(t, strings.HasPrefix(string(reply), "-MOVED "))
		host, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		target := strings.TrimSuffix(string(reply), "\r\n")
		target = target[strings.LastIndexByte(target, ' ')+1:]
		replyHost, replyPort, err := net.SplitHostPort(target)
		require.NoError(t, err)
		require.Equal(t, replyPort, port)
		if replyHost == "" {
			replyHost, _, _ = net.SplitHostPort(from)
		}
		require.Equal(t, replyHost, host)
	})
}

// FuzzValidateOwners checks CLUSTER SLOTS ranges (pairs of 16-bit numbers,
// negative and out of range ones included, and an address or none) against
// a sort-based reading of the rule: in bounds, with an address, no slot
// twice.
func FuzzValidateOwners(f *testing.F) {
	rangeBytes := func(ranges ...int) []byte {
		var b []byte
		for i := 0; i+1 < len(ranges); i += 2 {
			b = binary.BigEndian.AppendUint16(b, uint16(int16(ranges[i])))
			b = binary.BigEndian.AppendUint16(b, uint16(int16(ranges[i+1])))
			b = append(b, 1)
		}
		return b
	}
	f.Add(rangeBytes(0, 5460, 5461, 10922, 10923, 16383))
	f.Add(rangeBytes(0, 100, 101, 199, 200, 16383))
	f.Add(rangeBytes(10923, 16383, 0, 10922))
	f.Add(rangeBytes(0, 100, 100, 200))
	f.Add(rangeBytes(5, 4))
	f.Add(rangeBytes(-1, 3))
	f.Add(rangeBytes(0, 16384))
	f.Add(append(rangeBytes(0, 1), 0, 2, 0, 3, 0)) // no address
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var owners []slotOwner
		for ; len(data) >= 5; data = data[5:] {
			o := slotOwner{SlotRange: SlotRange{
				Start: int(int16(binary.BigEndian.Uint16(data))),
				End:   int(int16(binary.BigEndian.Uint16(data[2:]))),
			}}
			if data[4]&1 == 1 {
				o.addr, o.id = "n"+strconv.Itoa(int(data[4]))+":1", "id"
			}
			owners = append(owners, o)
		}
		err := validateOwners(owners)
		require.Equal(t, validOwnersReference(owners), err == nil, "%v: %v", owners, err)
	})
}

func validOwnersReference(owners []slotOwner) bool {
	sorted := slices.Clone(owners)
	slices.SortFunc(sorted, func(a, b slotOwner) int { return a.Start - b.Start })
	for i, o := range sorted {
		if o.Start < 0 || o.End >= SlotCount || o.Start > o.End || o.addr == "" {
			return false
		}
		if i > 0 && o.Start <= sorted[i-1].End {
			return false
		}
	}
	return true
}
