package failover

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzReadRole feeds arbitrary bytes to the ROLE reader and compares it
// with roleReference, a recursive reading of the RESP subset ROLE replies
// use: both accept the same replies, with the same role and length. The
// reply built from the other inputs (a name, then whatever elements) gives
// the fuzzer well-formed replies to start from.
func FuzzReadRole(f *testing.F) {
	for _, r := range []string{roleOfMaster, roleOfReplica, roleOfSyncingMaster,
		"*3\r\n=10\r\ntxt:master\r\n:0\r\n*0\r\n",
		"*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n",
		"-NOAUTH Authentication required.\r\n",
		"*2\r\n$6\r\nmaster\r\n*1\r\n*1\r\n*0\r\n",
		"*1\r\n:1\r\n", "*-1\r\n", "*3\r\n$6\r\nmaster\r\n"} {
		f.Add([]byte(r), "slave", []byte("$9\r\n127.0.0.1\r\n:7000\r\n$9\r\nconnected\r\n:1234\r\n"), uint8(4))
	}
	f.Add([]byte{}, "master", []byte(":0\r\n*0\r\n"), uint8(2))
	f.Add([]byte("*0\r\n"), "sentinel", []byte("$-1\r\n"), uint8(1))
	f.Add([]byte("*1\r\n$6\r\nmaster\r\n"), "master", []byte(strings.Repeat("*1\r\n", maxRoleDepth)+":1\r\n"), uint8(1))
	f.Add([]byte("*2\r\n$5\r\nslave\r\n+OK\r\n"), "slave", []byte("=4\r\ntxt:\r\n:+1\r\n$003\r\nabc\r\n"), uint8(3))
	f.Add([]byte("*2\r\n$5\r\nslave\r\n$300\r\n"), "slave", []byte("$250\r\n"+strings.Repeat("x", 250)+"\r\n"), uint8(1))
	const maxReply = 256
	f.Fuzz(func(t *testing.T, in []byte, name string, elements []byte, count uint8) {
		built := append([]byte("*"+strconv.Itoa(1+int(count))+"\r\n$"+strconv.Itoa(len(name))+"\r\n"+name+"\r\n"), elements...)
		for _, reply := range [][]byte{in, built} {
			read := &countingReader{r: bytes.NewReader(reply)}
			p := &rolePoller{poller: poller{r: bufio.NewReader(read), maxReply: maxReply}, read: read}
			role, err := p.readRole()
			wantRole, wantSize, ok := roleReference(reply, maxReply)
			if !ok {
				require.Error(t, err, "%q", reply)
				assert.Zero(t, role)
				var replyErr *ReplyError
				if errors.As(err, &replyErr) {
					assert.Equal(t, byte('-'), reply[0])
				}
				continue
			}
			require.NoError(t, err, "%q", reply)
			assert.Equal(t, wantRole, role, "%q", reply)
			assert.Equal(t, int64(wantSize), p.consumed(), "%q", reply)
		}
	})
}

// roleReference reads a ROLE reply of at most maxReply bytes: an array
// whose first element is the string "master" or "slave", its elements
// integers, non-null bulk or verbatim strings and arrays nested less than
// maxRoleDepth deep; numbers as strconv reads them.
func roleReference(b []byte, maxReply int) (role nodeRole, size int, ok bool) {
	n, next, ok := referenceHeader(b, '*')
	if !ok || n == 0 {
		return 0, 0, false
	}
	first := b[next:]
	name, end, ok := referenceString(first)
	if !ok {
		return 0, 0, false
	}
	switch string(name) {
	case "master":
		role = roleMaster
	case "slave":
		role = roleSlave
	default:
		return 0, 0, false
	}
	size = next + end
	for range n - 1 {
		end, ok := referenceElement(b[size:], 1)
		if !ok {
			return 0, 0, false
		}
		size += end
	}
	return role, size, size <= maxReply
}

// referenceHeader reads a "<kind><number>\r\n" line; lengths (not
// integers) must not be negative.
func referenceHeader(b []byte, kind byte) (n int64, next int, ok bool) {
	end := bytes.IndexByte(b, '\n')
	if len(b) == 0 || b[0] != kind || end < 2 || b[end-1] != '\r' {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(string(b[1:end-1]), 10, 64)
	if err != nil || kind != ':' && (n < 0 || n > math.MaxInt32) {
		return 0, 0, false
	}
	return n, end + 1, true
}

// referenceString reads a bulk or verbatim string ("txt:" and the like
// stripped).
func referenceString(b []byte) (s []byte, next int, ok bool) {
	if len(b) == 0 || b[0] != '$' && b[0] != '=' {
		return nil, 0, false
	}
	n, start, ok := referenceHeader(b, b[0])
	if !ok || int64(len(b)-start) < n+2 || b[start+int(n)] != '\r' || b[start+int(n)+1] != '\n' {
		return nil, 0, false
	}
	s = b[start : start+int(n)]
	if b[0] == '=' {
		if len(s) < 4 || s[3] != ':' {
			return nil, 0, false
		}
		s = s[4:]
	}
	return s, start + int(n) + 2, true
}

func referenceElement(b []byte, depth int) (size int, ok bool) {
	if len(b) == 0 {
		return 0, false
	}
	switch b[0] {
	case '$', '=':
		_, size, ok := referenceString(b)
		return size, ok
	case ':':
		_, size, ok := referenceHeader(b, ':')
		return size, ok
	case '*':
		n, size, ok := referenceHeader(b, '*')
		if !ok || depth >= maxRoleDepth {
			return 0, false
		}
		for range n {
			end, ok := referenceElement(b[size:], depth+1)
			if !ok {
				return 0, false
			}
			size += end
		}
		return size, true
	}
	return 0, false
}

// FuzzPairedIn feeds arbitrary CLUSTER NODES text to the pair check: it
// fails only with ErrNotReplica or ErrProtocol, and its verdict does not
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
		case errors.Is(err, ErrProtocol):
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
