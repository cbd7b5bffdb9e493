package resp

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoleMaster(t *testing.T) {
	for _, tc := range []struct {
		frame, addr string
		ok          bool
	}{
		{"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6380\r\n$9\r\nconnected\r\n:14\r\n", "127.0.0.1:6380", true},
		{"*5\r\n$5\r\nslave\r\n$3\r\n::1\r\n:7000\r\n$9\r\nconnected\r\n:14\r\n", "[::1]:7000", true},
		{"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n", "", false},
		{"-ERR unknown command 'role'\r\n", "", false},
		{"*5\r\n$5\r\nslave\r\n$0\r\n\r\n:6380\r\n", "", false},
		{"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:0\r\n", "", false},
		{"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n", "", false},
		{"*2\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n", "", false},
	} {
		addr, ok := RoleMaster([]byte(tc.frame))
		assert.Equal(t, tc.ok, ok, tc.frame)
		assert.Equal(t, tc.addr, addr, tc.frame)
	}
}

// FuzzRoleMaster reads arbitrary ROLE replies: an accepted address is one
// that can be dialled, its host and port from the frame, and a replica's
// reply built from the other inputs gives back the master it names.
func FuzzRoleMaster(f *testing.F) {
	f.Add([]byte("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6380\r\n$9\r\nconnected\r\n:14\r\n"), "127.0.0.1", int64(6380))
	f.Add([]byte("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"), "::1", int64(7000))
	f.Add([]byte("*3\r\n$5\r\nslave\r\n$99999999999\r\n"), "h", int64(0))
	f.Add([]byte("*5\r\n$5\r\nslave\r\n$0\r\n\r\n:6380\r\n"), "", int64(65536))
	f.Add([]byte("*5\r\n$5\r\nslave\r\n$1\r\nh\r\n$4\r\n6380\r\n"), "node-1.example", int64(-1))
	f.Add([]byte("-ERR unknown command 'role'\r\n"), "fe80::1%eth0", int64(65535))
	f.Fuzz(func(t *testing.T, frame []byte, host string, port int64) {
		if addr, ok := RoleMaster(frame); ok {
			h, p, err := net.SplitHostPort(addr)
			require.NoError(t, err)
			assert.Contains(t, string(frame), "\r\n"+h+"\r\n")
			n, err := strconv.Atoi(p)
			require.NoError(t, err)
			assert.True(t, n > 0 && n <= 65535, "port %d", n)
		}

		built := AppendArray(nil, 5)
		built = AppendBulkString(built, "slave")
		built = AppendBulkString(built, host)
		built = AppendInt(built, port)
		built = AppendBulkString(built, "connected")
		built = AppendInt(built, 14)
		addr, ok := RoleMaster(built)
		want := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		if _, _, err := net.SplitHostPort(want); err != nil || host == "" || port <= 0 || port > 65535 {
			assert.False(t, ok, "%q", built)
			return
		}
		require.True(t, ok, "%q", built)
		assert.Equal(t, want, addr)
	})
}
