package failover

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/internal/resp"
)

// FuzzPairedIn feeds arbitrary CLUSTER NODES text to the pair check: it
// fails only with ErrNotReplica or resp.ErrProtocol, and its verdict does not
// change with "\r\n" line ends, blank lines, or a line about another node.
func FuzzPairedIn(f *testing.F) {
	f.Add([]byte(nodesReplicating))
	f.Add([]byte(nodesPromoted))
	f.Add([]byte(""))
	f.Add([]byte("a b myself,slave,master c 0 0 0 connected\n"))
	f.Add([]byte(fakeOldMasterID + " 127.0.0.1:7000@17000 slave " + fakeReplicaID + " 0 0 2 connected\n" +
		fakeReplicaID + " 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 0-16383\n"))
	f.Add([]byte(fakeReplicaID + " 127.0.0.1:7001@17001 myself,slave x 0 0 1 connected\n"))
	f.Add([]byte(fakeReplicaID + " 127.0.0.1:7001@17001 myself,master - 0 0 1\n"))
	verdict := func(err error) string {
		switch {
		case err == nil:
			return "paired"
		case errors.Is(err, ErrNotReplica):
			return "not a replica"
		case errors.Is(err, resp.ErrProtocol):
			return "protocol error"
		}
		return err.Error()
	}
	other := strings.Repeat("o", 40) + " 10.0.0.9:7009@17009 master - 0 0 1 connected 1-2\n"
	f.Fuzz(func(t *testing.T, nodes []byte) {
		got := verdict(pairedIn(nodes, fakeOldMasterID))
		require.Contains(t, []string{"paired", "not a replica", "protocol error"}, got)
		if got == "paired" {
			assert.Contains(t, string(nodes), "myself")
		}
		crlf := bytes.ReplaceAll(nodes, []byte("\n"), []byte("\r\n"))
		assert.Equal(t, got, verdict(pairedIn(crlf, fakeOldMasterID)), "\\r\\n line ends")
		blank := append([]byte("\n\n"), nodes...)
		assert.Equal(t, got, verdict(pairedIn(blank, fakeOldMasterID)), "blank lines")
		if !bytes.Contains(nodes, []byte(other[:40])) {
			withOther := append([]byte(other), nodes...)
			assert.Equal(t, got, verdict(pairedIn(withOther, fakeOldMasterID)), "a line about another node")
		}
	})
}
