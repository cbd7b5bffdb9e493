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
