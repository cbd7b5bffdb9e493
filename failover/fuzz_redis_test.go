package failover

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzReadRole feeds arbitrary bytes to the ROLE reader: it never panics,
// never reads past maxReply bytes of an accepted reply, and accepts only an
// array that starts with the role it returns.
func FuzzReadRole(f *testing.F) {
	for _, r := range []string{roleOfMaster, roleOfReplica, roleOfSyncingMaster,
		"*3\r\n=10\r\ntxt:master\r\n:0\r\n*0\r\n",
		"*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n",
		"-NOAUTH Authentication required.\r\n",
		"*2\r\n$6\r\nmaster\r\n*1\r\n*1\r\n*0\r\n",
		"*1\r\n:1\r\n", "*-1\r\n", "*3\r\n$6\r\nmaster\r\n"} {
		f.Add([]byte(r))
	}
	const maxReply = 256
	f.Fuzz(func(t *testing.T, in []byte) {
		read := &countingReader{r: bytes.NewReader(in)}
		p := &rolePoller{poller: poller{r: bufio.NewReader(read), maxReply: maxReply}, read: read}
		role, err := p.readRole()
		if err != nil {
			assert.Zero(t, role)
			var replyErr *ReplyError
			if errors.As(err, &replyErr) {
				assert.Equal(t, byte('-'), in[0])
			}
			return
		}
		require.NotEmpty(t, in)
		assert.Equal(t, byte('*'), in[0])
		assert.LessOrEqual(t, p.consumed(), int64(maxReply))
		assert.LessOrEqual(t, p.consumed(), int64(len(in)))
		switch role {
		case roleMaster:
			assert.Contains(t, string(in), "master")
		case roleSlave:
			assert.Contains(t, string(in), "slave")
		default:
			assert.Fail(t, "unknown role accepted", "%d", role)
		}
	})
}

// FuzzPairedIn feeds arbitrary CLUSTER NODES text to the pair check: it
// never panics and fails only with ErrNotReplica or ErrProtocol.
func FuzzPairedIn(f *testing.F) {
	f.Add([]byte(nodesReplicating))
	f.Add([]byte(nodesPromoted))
	f.Add([]byte(""))
	f.Add([]byte("a b myself,slave,master c 0 0 0 connected\n"))
	f.Fuzz(func(t *testing.T, nodes []byte) {
		err := pairedIn(nodes, fakeOldMasterID)
		if err != nil && !errors.Is(err, ErrNotReplica) {
			assert.ErrorIs(t, err, ErrProtocol)
		}
		if err == nil {
			assert.Contains(t, string(nodes), "myself")
		}
	})
}
