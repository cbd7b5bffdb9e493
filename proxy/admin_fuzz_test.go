package proxy

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// FuzzKeyspaceSum sums arbitrary INFO keyspace replies: never a panic, a
// well-formed section, and a master's text counted twice doubles its keys.
func FuzzKeyspaceSum(f *testing.F) {
	for _, seed := range []string{
		"# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=5000\r\n",
		"# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0,subexpiry=0\r\ndb3:keys=1,expires=1,avg_ttl=9\r\n",
		"# Keyspace\r\n# Last scan db time: Thu Jan  1 00:00:00 1970\r\ndb0:keys=7,expires=0,avg_ttl=0,expired=0\r\nsequence:12\r\n",
		"db:keys=1", "db01:keys=1", "db-1:keys=1", "db0:keys", "db0:=1,keys=x,expires=99999999999999999999", "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		reply := resp.AppendBulk(nil, text)
		once, twice := sumKeyspace(reply), sumKeyspace(reply, reply)
		require.True(t, strings.HasPrefix(once, "# Keyspace\r\n"))
		require.True(t, strings.HasSuffix(once, "\r\n"))
		onceFields, twiceFields := infoFields(once), infoFields(twice)
		require.Equal(t, len(onceFields), len(twiceFields))
		for db, value := range onceFields {
			keys, _ := strconv.ParseInt(lineValue(value, "keys"), 10, 64)
			doubled, _ := strconv.ParseInt(lineValue(twiceFields[db], "keys"), 10, 64)
			assert.Equal(t, 2*keys, doubled, "%s: %q vs %q", db, value, twiceFields[db])
		}
	})
}

// sumKeyspace is the keyspace section the replies give.
func sumKeyspace(replies ...[]byte) string {
	var b strings.Builder
	reqs := make([]*router.Request, len(replies))
	for i, r := range replies {
		reqs[i] = &router.Request{Reply: r}
	}
	writeKeyspace(&b, reqs)
	return b.String()
}

// lineValue is field's value in a "a=1,b=2" INFO value.
func lineValue(value, field string) string {
	for _, pair := range strings.Split(value, ",") {
		if v, ok := strings.CutPrefix(pair, field+"="); ok {
			return v
		}
	}
	return ""
}

// The keyspace section sums keys and expires and averages avg_ttl over the
// expiring keys of every master; a master that did not answer is counted.
func TestKeyspaceSum(t *testing.T) {
	got := sumKeyspace(
		resp.AppendBulkString(nil, "# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=1000\r\n"),
		resp.AppendBulkString(nil, "# Keyspace\r\ndb0:keys=5,expires=6,avg_ttl=3000\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n"),
		[]byte("-ERR down\r\n"),
	)
	assert.Equal(t, "# Keyspace\r\ndb0:keys=15,expires=8,avg_ttl=2500\r\ndb2:keys=1,expires=0,avg_ttl=0\r\nkeyspace_unanswered_masters:1\r\n", got)
	assert.Equal(t, "# Keyspace\r\n", sumKeyspace())
}

// FuzzConfigGetFilter passes arbitrary CONFIG GET replies through the
// filter: never a panic, and either the merge's error or an array of pairs
// without a secret parameter.
func FuzzConfigGetFilter(f *testing.F) {
	for _, seed := range []string{
		"*4\r\n$11\r\nrequirepass\r\n$2\r\npw\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
		"*2\r\n$10\r\nMasterAuth\r\n$1\r\nx\r\n",
		"*0\r\n", "*1\r\n$1\r\na\r\n", "*2\r\n:1\r\n:2\r\n", "-ERR nope\r\n", "*2\r\n$3\r\nab", "",
	} {
		f.Add([]byte(seed))
	}
	sess, conn := newTestSession(f, &staticBackend{})
	f.Fuzz(func(t *testing.T, reply []byte) {
		conn.out = conn.out[:0]
		sess.writeConfigGet(reply)
		out := conn.out
		if out[0] == '-' {
			return
		}
		sess.spans = sess.spans[:0]
		n, ok := sess.elements(out)
		require.True(t, ok, "%q", out)
		require.Zero(t, n%2)
		for i := 0; i < n; i += 2 {
			name := out[sess.spans[i].from:sess.spans[i].to]
			for secret := range secretParameters {
				require.False(t, bytes.Equal(bytes.ToLower(name), []byte("$"+strconv.Itoa(len(secret))+"\r\n"+secret+"\r\n")), "%q", out)
			}
		}
	})
}

// FuzzClientKillFilter parses arbitrary CLIENT KILL arguments: never a
// panic, every refusal a RESP error with a prefix.
func FuzzClientKillFilter(f *testing.F) {
	for _, seed := range []string{
		"127.0.0.1:6379", "ID 5", "TYPE pubsub SKIPME no", "ADDR 1.2.3.4:5 LADDR 1.2.3.4:6 USER default MAXAGE 10",
		"ID 0", "TYPE nope", "SKIPME maybe", "MAXAGE -1", "ID 1 MAXAGE", "FOO bar",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var args [][]byte
		for _, field := range strings.Fields(line) {
			args = append(args, []byte(field))
		}
		if len(args) == 0 {
			return
		}
		filter, oldForm, err := parseKillFilter(args)
		if err != "" {
			require.True(t, strings.HasPrefix(err, "ERR "), err)
			require.NotContains(t, err, "\r")
			require.NotContains(t, err, "\n")
			return
		}
		require.Equal(t, len(args) == 1, oldForm)
		require.GreaterOrEqual(t, filter.id, int64(0))
		require.GreaterOrEqual(t, filter.maxAge, int64(0))
	})
}
