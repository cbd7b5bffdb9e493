// Package keyspace is the in-memory data store of a simulated Kvrocks node:
// the data commands, their replies worded as Redis words them, a write
// sequence number, and a journal of deterministic effects for replication.
package keyspace

import (
	"strings"
	"sync"
)

// Command describes one data command the simulator implements.
type Command struct {
	Name  string // lower case
	Arity int    // Redis convention: >0 exact argument count (name included), <0 at least -Arity
	Write bool   // modifies the keyspace: blocked by failover pauses, refused by replicas
	// Key positions in Redis' first/last/step convention; FirstKey 0 means keyless,
	// LastKey -1 means the last argument.
	FirstKey, LastKey, Step int
}

var table = map[string]*Command{
	"get": {Name: "get", Arity: 2, FirstKey: 1, LastKey: 1, Step: 1},
	"set": {Name: "set", Arity: -3, Write: true, FirstKey: 1, LastKey: 1, Step: 1},
}

// Lookup finds a command by name, case-insensitively; nil if not implemented.
func Lookup(name []byte) *Command {
	return table[strings.ToLower(string(name))]
}

// ArityOK reports whether n arguments (name included) satisfy the arity.
func (c *Command) ArityOK(n int) bool {
	if c.Arity >= 0 {
		return n == c.Arity
	}
	return n >= -c.Arity
}

// Keys returns the key arguments of args (args[0] is the command name).
func (c *Command) Keys(args [][]byte) [][]byte {
	if c.FirstKey == 0 {
		return nil
	}
	last := c.LastKey
	if last < 0 {
		last = len(args) + last
	}
	var keys [][]byte
	for i := c.FirstKey; i <= last && i < len(args); i += c.Step {
		keys = append(keys, args[i])
	}
	return keys
}

// JournalFunc receives every change, as a deterministic effect command with
// the sequence number it was given. It runs under the keyspace lock, so calls
// arrive in sequence order; it must be quick.
type JournalFunc func(seq uint64, effect [][]byte)

// Keyspace is one node's data. Safe for concurrent use.
type Keyspace struct {
	mu      sync.Mutex
	seq     uint64
	journal JournalFunc
	strs    map[string][]byte
}

// New returns an empty keyspace whose sequence is 1, as a fresh Kvrocks reports.
func New() *Keyspace {
	return &Keyspace{seq: 1, strs: map[string][]byte{}}
}

// SetJournal installs the function that receives every change (nil: none).
func (k *Keyspace) SetJournal(fn JournalFunc) {
	k.mu.Lock()
	k.journal = fn
	k.mu.Unlock()
}

// Sequence is the sequence number of the latest change.
func (k *Keyspace) Sequence() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.seq
}

// Exec runs cmd, whose arity the caller has checked, appends the RESP reply to
// out and returns it. Changes are journaled.
func (k *Keyspace) Exec(out []byte, cmd *Command, args [][]byte) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch cmd.Name {
	case "get":
		v, ok := k.strs[string(args[1])]
		if !ok {
			return append(out, "$-1\r\n"...)
		}
		return appendBulk(out, v)
	case "set":
		k.strs[string(args[1])] = append([]byte(nil), args[2]...)
		k.record([][]byte{[]byte("set"), args[1], args[2]})
		return append(out, "+OK\r\n"...)
	}
	return append(out, "-ERR unknown command\r\n"...)
}

// record bumps the sequence and journals one effect. Caller holds k.mu.
func (k *Keyspace) record(effect [][]byte) {
	k.seq++
	if k.journal != nil {
		k.journal(k.seq, effect)
	}
}

// Apply replays an effect received from a master and adopts its sequence.
func (k *Keyspace) Apply(seq uint64, effect [][]byte) {
	if cmd := Lookup(effect[0]); cmd != nil {
		k.Exec(nil, cmd, effect)
	}
	k.mu.Lock()
	k.seq = seq
	k.mu.Unlock()
}

// Snapshot returns the sequence and the effect commands that rebuild the
// whole keyspace, taken atomically (for a full resync).
func (k *Keyspace) Snapshot() (uint64, [][][]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var cmds [][][]byte
	for key, v := range k.strs {
		cmds = append(cmds, [][]byte{[]byte("set"), []byte(key), v})
	}
	return k.seq, cmds
}

// Load replaces the whole keyspace with a snapshot (the replica side of a full resync).
func (k *Keyspace) Load(seq uint64, cmds [][][]byte) {
	k.mu.Lock()
	k.strs = map[string][]byte{}
	j := k.journal
	k.journal = nil
	k.mu.Unlock()
	for _, c := range cmds {
		k.Apply(seq, c)
	}
	k.mu.Lock()
	k.journal = j
	k.seq = seq
	k.mu.Unlock()
}

// DBSize is the exact number of keys.
func (k *Keyspace) DBSize() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.strs)
}

func appendBulk(out, v []byte) []byte {
	out = append(out, '$')
	out = appendInt(out, int64(len(v)))
	out = append(out, "\r\n"...)
	out = append(out, v...)
	return append(out, "\r\n"...)
}

func appendInt(out []byte, n int64) []byte {
	if n < 0 {
		out = append(out, '-')
		n = -n
	}
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(out, buf[i:]...)
}
