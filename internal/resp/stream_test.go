package resp

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzReadString feeds arbitrary bytes to the string reader and compares it
// with referenceString: both accept the same bulk and verbatim strings of
// at most maxReply bytes, with the same body and length; an error reply is
// a *ReplyError. A bulk string built from the other input reads back.
func FuzzReadString(f *testing.F) {
	for _, state := range []string{"none", "wait_sync", "switching", "success", "failed"} {
		info := "cluster_failover_state:" + state + "\r\n"
		f.Add([]byte("$"+strconv.Itoa(len(info))+"\r\n"+info+"\r\n"), []byte("cluster_failover_state:success\r\n"))
	}
	f.Add([]byte("=10\r\ntxt:abcdef\r\n"), []byte{})
	f.Add([]byte("=3\r\ntxt\r\n"), []byte("\r\n"))
	f.Add([]byte("-NOAUTH Authentication required.\r\n"), []byte("x"))
	f.Add([]byte("$-1\r\n"), []byte(strings.Repeat("x", 512)))
	f.Add([]byte("$3\r\nab"), []byte(strings.Repeat("x", 513)))
	f.Add([]byte("$+3\r\nabc\r\n"), []byte("$3\r\nabc\r\n"))
	f.Add([]byte("*1\r\n$4\r\nINFO\r\n"), []byte("a\rb\nc"))
	const maxReply = 512
	f.Fuzz(func(t *testing.T, in, body []byte) {
		built := append([]byte("$"+strconv.Itoa(len(body))+"\r\n"), body...)
		built = append(built, "\r\n"...)
		for _, reply := range [][]byte{in, built} {
			r := NewReader(bytes.NewReader(reply))
			got, err := r.ReadString(maxReply)
			want, size, ok := referenceString(reply)
			if ok && reply[0] == '=' {
				ok = len(want)+len("txt:") <= maxReply // the bound counts the format
			}
			if !ok || len(want) > maxReply {
				require.Error(t, err, "%q", reply)
				assert.Nil(t, got)
				var replyErr *ReplyError
				if errors.As(err, &replyErr) {
					assert.Equal(t, byte('-'), reply[0])
				}
				continue
			}
			require.NoError(t, err, "%q", reply)
			assert.Equal(t, string(want), string(got))
			assert.Equal(t, int64(size), r.Consumed(), "bytes consumed")
		}
	})
}

// FuzzReadRole feeds arbitrary bytes to the ROLE reader and compares it
// with roleReference, a recursive reading of the RESP subset ROLE replies
// use: both accept the same replies, with the same role and length. The
// reply built from the other inputs (a name, then whatever elements) gives
// the fuzzer well-formed replies to start from.
func FuzzReadRole(f *testing.F) {
	for _, r := range []string{
		"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n",
		"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:7000\r\n$9\r\nconnected\r\n:1234\r\n",
		"*3\r\n$6\r\nmaster\r\n:1234\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n7000\r\n$4\r\n1234\r\n",
		"*3\r\n=10\r\ntxt:master\r\n:0\r\n*0\r\n",
		"*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n",
		"-NOAUTH Authentication required.\r\n",
		"*2\r\n$6\r\nmaster\r\n*1\r\n*1\r\n*0\r\n",
		"*1\r\n:1\r\n", "*-1\r\n", "*3\r\n$6\r\nmaster\r\n"} {
		f.Add([]byte(r), "slave", []byte("$9\r\n127.0.0.1\r\n:7000\r\n$9\r\nconnected\r\n:1234\r\n"), uint8(4))
	}
	f.Add([]byte{}, "master", []byte(":0\r\n*0\r\n"), uint8(2))
	f.Add([]byte("*0\r\n"), "sentinel", []byte("$-1\r\n"), uint8(1))
	f.Add([]byte("*1\r\n$6\r\nmaster\r\n"), "master", []byte(strings.Repeat("*1\r\n", MaxRoleDepth)+":1\r\n"), uint8(1))
	f.Add([]byte("*2\r\n$5\r\nslave\r\n+OK\r\n"), "slave", []byte("=4\r\ntxt:\r\n:+1\r\n$003\r\nabc\r\n"), uint8(3))
	f.Add([]byte("*2\r\n$5\r\nslave\r\n$300\r\n"), "slave", []byte("$250\r\n"+strings.Repeat("x", 250)+"\r\n"), uint8(1))
	const maxReply = 256
	f.Fuzz(func(t *testing.T, in []byte, name string, elements []byte, count uint8) {
		built := append([]byte("*"+strconv.Itoa(1+int(count))+"\r\n$"+strconv.Itoa(len(name))+"\r\n"+name+"\r\n"), elements...)
		for _, reply := range [][]byte{in, built} {
			r := NewReader(bytes.NewReader(reply))
			master, err := r.ReadRole(maxReply)
			wantMaster, wantSize, ok := roleReference(reply, maxReply)
			if !ok {
				require.Error(t, err, "%q", reply)
				assert.False(t, master)
				var replyErr *ReplyError
				if errors.As(err, &replyErr) {
					assert.Equal(t, byte('-'), reply[0])
				}
				continue
			}
			require.NoError(t, err, "%q", reply)
			assert.Equal(t, wantMaster, master, "%q", reply)
			assert.Equal(t, int64(wantSize), r.Consumed(), "%q", reply)
		}
	})
}

// roleReference reads a ROLE reply of at most maxReply bytes: an array
// whose first element is the string "master" (master) or "slave", its elements
// integers, non-null bulk or verbatim strings and arrays nested less than
// MaxRoleDepth deep; numbers as strconv reads them.
func roleReference(b []byte, maxReply int) (master bool, size int, ok bool) {
	n, next, ok := referenceHeader(b, '*')
	if !ok || n == 0 {
		return false, 0, false
	}
	first := b[next:]
	name, end, ok := referenceString(first)
	if !ok {
		return false, 0, false
	}
	switch string(name) {
	case "master":
		master = true
	case "slave":
	default:
		return false, 0, false
	}
	size = next + end
	for range n - 1 {
		end, ok := referenceElement(b[size:], 1)
		if !ok {
			return false, 0, false
		}
		size += end
	}
	return master, size, size <= maxReply
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
		if !ok || depth >= MaxRoleDepth {
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
