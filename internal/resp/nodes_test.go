package resp

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// collectNodes reads every item ClusterNodes yields.
func collectNodes(text string) (lines []NodeLine, errs []error) {
	for line, err := range ClusterNodes(text) {
		lines, errs = append(lines, line), append(errs, err)
	}
	return lines, errs
}

func TestClusterNodes(t *testing.T) {
	const text = "" +
		"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,node-1 myself,master - 0 1426238316232 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1] [93-<-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]\r\n" +
		"\r\n" +
		"short line\r\n" +
		"824fe116063bc5fcf9f4ffd895bc17aee7731ac3 :0@0 handshake - 0 0 0 disconnected\n"
	lines, errs := collectNodes(text)
	require.Len(t, lines, 3)
	assert.Equal(t, NodeLine{
		ID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", Addr: "127.0.0.1:30001@31001,node-1", Flags: "myself,master",
		MasterID: "-", PingSent: "0", PongRecv: "1426238316232", ConfigEpoch: "1", LinkState: "connected",
		Slots: []string{"0-5460", "[5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]", "[93-<-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]"},
	}, lines[0])
	assert.NoError(t, errs[0])
	assert.Equal(t, "127.0.0.1:30001", lines[0].HostPort())
	assert.True(t, lines[0].HasFlag("myself"))
	assert.True(t, lines[0].HasFlag("master"))
	assert.False(t, lines[0].HasFlag("mast"))

	require.ErrorIs(t, errs[1], ErrProtocol)
	assert.Contains(t, errs[1].Error(), `"short line"`)
	assert.Contains(t, errs[1].Error(), "2 fields")

	assert.NoError(t, errs[2])
	assert.Equal(t, ":0", lines[2].HostPort())
	assert.Empty(t, lines[2].Slots)
}

func TestClusterNodesStopsWhenAsked(t *testing.T) {
	line := strings.Repeat("a", 40) + " 127.0.0.1:7000@17000 master - 0 0 1 connected\n"
	n := 0
	for range ClusterNodes(line + "bad\n" + line) {
		n++
		break
	}
	assert.Equal(t, 1, n)
}

// FuzzClusterNodes: every line holding a field yields exactly one item, a
// NodeLine whose fields are the line's or an ErrProtocol quoting the line;
// a well-formed line added to the text adds the node it describes.
func FuzzClusterNodes(f *testing.F) {
	f.Add("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,n1 myself,master - 0 0 1 connected 0-5460 [93->-x]\r\n",
		"n2", "[::1]:7000@17000", "slave", "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", "5461-10922")
	f.Add("a b\n\n  \r\nc d e f g h i j\n", "id", ":0@0", "handshake", "-", "")
	f.Add("", "id", "noport", "master,fail?", "-", "[5461-<-abc]")
	f.Fuzz(func(t *testing.T, text, id, addr, flags, master, slots string) {
		var want, raw []string // each line's fields joined by one space, and the line
		for line := range strings.Lines(text) {
			if f := strings.Fields(line); len(f) > 0 {
				want, raw = append(want, strings.Join(f, " ")), append(raw, line)
			}
		}
		lines, errs := collectNodes(text)
		require.Len(t, lines, len(want))
		for i, line := range lines {
			if errs[i] != nil {
				require.ErrorIs(t, errs[i], ErrProtocol)
				require.Less(t, len(strings.Fields(want[i])), 8, "%q", want[i])
				require.Contains(t, errs[i].Error(), strconv.Quote(clipLine(raw[i])))
				require.Equal(t, NodeLine{}, line)
				continue
			}
			got := strings.Join(append([]string{line.ID, line.Addr, line.Flags, line.MasterID, line.PingSent,
				line.PongRecv, line.ConfigEpoch, line.LinkState}, line.Slots...), " ")
			require.Equal(t, want[i], got)
			require.NotContains(t, line.HostPort(), "@")
			require.True(t, strings.HasPrefix(line.Addr, line.HostPort()))
		}

		for _, field := range []string{id, addr, flags, master} {
			if f := strings.Fields(field); len(f) != 1 || f[0] != field {
				return
			}
		}
		if strings.Join(strings.Fields(slots), " ") != slots {
			return
		}
		line := id + " " + addr + " " + flags + " " + master + " 0 1426238316232 1 connected " + slots + "\r\n"
		more, moreErrs := collectNodes(text + "\n" + line)
		require.Len(t, more, len(lines)+1)
		for i := range lines {
			require.Equal(t, lines[i], more[i])
			require.Equal(t, errs[i], moreErrs[i])
		}
		require.NoError(t, moreErrs[len(lines)])
		added := more[len(lines)]
		assert.Equal(t, NodeLine{ID: id, Addr: addr, Flags: flags, MasterID: master, PingSent: "0", PongRecv: "1426238316232",
			ConfigEpoch: "1", LinkState: "connected", Slots: strings.Fields(slots)}, added, "%q", line)
		for flag := range strings.SplitSeq(flags, ",") {
			assert.True(t, added.HasFlag(flag))
		}
		assert.False(t, added.HasFlag(flags+"x"))
	})
}
