package keyspace

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSRandMemberAsKvrocks: SRANDMEMBER as Kvrocks' CommandSRandMember and
// Set::Take answer it, where Redis differs: no count is a count of 1 and
// still an array, a missing key an empty array, 0 an empty array whatever
// the key holds, a count past 32 bits not an integer, a fourth argument the
// wrong number of arguments.
func TestSRandMemberAsKvrocks(t *testing.T) {
	k := New()
	run := func(line string) string { return string(execLocal(k, splitArgs(line))) }
	assert.Equal(t, ":1\r\n", run("SADD one x"))
	assert.Equal(t, "+OK\r\n", run("SET str v"))
	for _, tc := range []struct{ line, want string }{
		{"SRANDMEMBER one", "*1\r\n$1\r\nx\r\n"}, // Redis: $1 x
		{"SRANDMEMBER none", "*0\r\n"},           // Redis: $-1
		{"SRANDMEMBER one 1", "*1\r\n$1\r\nx\r\n"},
		{"SRANDMEMBER one -2", "*2\r\n$1\r\nx\r\n$1\r\nx\r\n"},
		{"SRANDMEMBER str 0", "*0\r\n"}, // Redis: WRONGTYPE
		{"SRANDMEMBER str", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{"SRANDMEMBER one 2147483648", "-ERR value is not an integer or out of range\r\n"},
		{"SRANDMEMBER one -2147483649", "-ERR value is not an integer or out of range\r\n"},
		{"SRANDMEMBER one -9223372036854775808", "-ERR value is not an integer or out of range\r\n"},
		{"SRANDMEMBER one 1 2", "-ERR wrong number of arguments\r\n"}, // Redis: syntax error
	} {
		assert.Equal(t, tc.want, run(tc.line), tc.line)
	}
}

// TestRenameNXAsKvrocks: RENAMENX as Kvrocks' CommandRenameNX over
// Database::Copy(nx, delete_old): a missing source is `no such key` before
// anything else, an existing destination (the source itself included)
// answers 0 and changes nothing, else the key moves with its TTL and 1.
func TestRenameNXAsKvrocks(t *testing.T) {
	k := New()
	run := func(line string) string { return string(execLocal(k, splitArgs(line))) }
	for _, tc := range []struct{ line, want string }{
		{"RENAMENX none none", "-ERR no such key\r\n"},
		{"RENAMENX none b", "-ERR no such key\r\n"},
		{"SET a 1 EX 100", "+OK\r\n"},
		{"RENAMENX a a", ":0\r\n"},
		{"SET b 2", "+OK\r\n"},
		{"RENAMENX a b", ":0\r\n"},
		{"GET b", "$1\r\n2\r\n"},
		{"RENAMENX a c", ":1\r\n"},
		{"EXISTS a", ":0\r\n"},
		{"GET c", "$1\r\n1\r\n"},
	} {
		assert.Equal(t, tc.want, run(tc.line), tc.line)
	}
	assert.Contains(t, []string{":99\r\n", ":100\r\n"}, run("TTL c"), "the TTL moved with the key")
}
