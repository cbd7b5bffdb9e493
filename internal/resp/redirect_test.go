package resp

import (
	"cmp"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRedirect(t *testing.T) {
	tests := []struct {
		reply string
		kind  RedirectKind
		slot  int
		addr  string
	}{
		{"-MOVED 3999 127.0.0.1:6381\r\n", RedirectMoved, 3999, "127.0.0.1:6381"},
		{"-ASK 0 10.1.2.3:7000\r\n", RedirectAsk, 0, "10.1.2.3:7000"},
		{"-MOVED 16383 :6379\r\n", RedirectMoved, 16383, "192.168.0.5:6379"},
		{"-MOVED 12 [::1]:7001\r\n", RedirectMoved, 12, "[::1]:7001"},
		{"-MOVED 12 node-1.example:7001\r\n", RedirectMoved, 12, "node-1.example:7001"},
		{"-MOVED 16384 127.0.0.1:6381\r\n", NotRedirect, 0, ""},
		{"-MOVED -1 127.0.0.1:6381\r\n", NotRedirect, 0, ""},
		{"-MOVED +1 127.0.0.1:6381\r\n", NotRedirect, 0, ""},
		{"-MOVED 1 127.0.0.1\r\n", NotRedirect, 0, ""},
		{"-MOVED 1 127.0.0.1:0\r\n", NotRedirect, 0, ""},
		{"-MOVED 1 127.0.0.1:6381", NotRedirect, 0, ""},
		{"-MOVED 1\r\n", NotRedirect, 0, ""},
		{"-MOVEDX 1 a:1\r\n", NotRedirect, 0, ""},
		{"-TRYAGAIN Failover in progress\r\n", NotRedirect, 0, ""},
		{"+MOVED 1 a:1\r\n", NotRedirect, 0, ""},
	}
	for _, tt := range tests {
		kind, slot, addr := ParseRedirect([]byte(tt.reply), "192.168.0.5")
		assert.Equal(t, tt.kind, kind, "%q", tt.reply)
		assert.Equal(t, tt.slot, slot, "%q", tt.reply)
		assert.Equal(t, tt.addr, addr, "%q", tt.reply)
	}
}

func TestMovedTarget(t *testing.T) {
	for _, tc := range []struct {
		reply, from, want string
	}{
		{"-MOVED 3999 127.0.0.1:6381\r\n", "127.0.0.1:6380", "127.0.0.1:6381"},
		{"-MOVED 3999 :6381\r\n", "10.1.2.3:6380", "10.1.2.3:6381"},
		{"-MOVED 3999 [::1]:6381\r\n", "x", "[::1]:6381"},
		{"-MOVED 3999\r\n", "a:1", ""},
		{"-MOVED x a:1\r\n", "a:1", ""},
		{"-MOVED 1 a\r\n", "a:1", ""},
		{"-ASK 1 a:1\r\n", "a:1", ""},
		{"-MOVED 1 a:1", "a:1", ""},
		{"+OK\r\n", "a:1", ""},
	} {
		got, ok := MovedTarget([]byte(tc.reply), tc.from)
		assert.Equal(t, tc.want != "", ok, tc.reply)
		assert.Equal(t, tc.want, got, tc.reply)
	}
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
		kind, gotSlot, addr := ParseRedirect(reply, "h")
		moved, isMoved := MovedTarget(reply, "h:1")
		require.Equal(t, kind == RedirectMoved, isMoved)
		if kind != NotRedirect {
			require.Less(t, gotSlot, ClusterSlots)
			require.GreaterOrEqual(t, gotSlot, 0)
			_, p, err := net.SplitHostPort(addr)
			require.NoError(t, err)
			n, err := strconv.Atoi(p)
			require.NoError(t, err)
			require.True(t, n > 0 && n <= 65535, "port %d", n)
			require.False(t, strings.ContainsAny(addr, " \r\n"), "%q", addr)
			k, s, a := ParseRedirect(redirectReply(kind, gotSlot, addr), "other")
			require.Equal(t, []any{kind, gotSlot, addr}, []any{k, s, a}, "printed again")
			if isMoved {
				require.Equal(t, addr, moved)
			}
		}

		joined := net.JoinHostPort(host, strconv.Itoa(int(port)))
		if h, _, err := net.SplitHostPort(joined); err != nil || h != host || slot >= ClusterSlots || port == 0 ||
			strings.ContainsAny(host, " \r\n") {
			return // not a redirect a server could send
		}
		wantKind := RedirectMoved
		if ask {
			wantKind = RedirectAsk
		}
		k, s, a := ParseRedirect(redirectReply(wantKind, int(slot), joined), "h")
		want := net.JoinHostPort(cmp.Or(host, "h"), strconv.Itoa(int(port)))
		require.Equal(t, []any{wantKind, int(slot), want}, []any{k, s, a}, "%q", joined)
	})
}

func redirectReply(kind RedirectKind, slot int, addr string) []byte {
	name := "MOVED"
	if kind == RedirectAsk {
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
