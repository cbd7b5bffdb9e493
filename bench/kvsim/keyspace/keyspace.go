// Package keyspace is the in-memory data store of a simulated Kvrocks node:
// the data commands, their replies worded as Redis words them, a write
// sequence number, and a journal of deterministic effects for replication.
package keyspace

import (
	"sync"
	"time"
)

// Command describes one data command the simulator implements.
type Command struct {
	Name  string // lower case
	Arity int    // Redis convention: >0 exact argument count (name included), <0 at least -Arity
	Write bool   // modifies the keyspace: blocked by failover pauses, refused by replicas
	// Key positions in Redis' first/last/step convention; FirstKey 0 means keyless,
	// LastKey -1 means the last argument.
	FirstKey, LastKey, Step int

	run func(k *Keyspace, out []byte, args [][]byte) []byte
}

// Lookup finds a command by name, case-insensitively; nil if not implemented.
func Lookup(name []byte) *Command {
	var buf [24]byte
	if len(name) > len(buf) {
		return nil // longer than any command name
	}
	lower := buf[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return table[string(lower)]
}

// ArityOK reports whether n arguments (name included) satisfy the arity.
func (c *Command) ArityOK(n int) bool {
	if c.Arity >= 0 {
		return n == c.Arity
	}
	return n >= -c.Arity
}

// Keys returns the key arguments of args (args[0] is the command name).
// For contiguous keys it is a subslice of args, so the routing of every
// command does not allocate.
func (c *Command) Keys(args [][]byte) [][]byte {
	if c.FirstKey == 0 || c.FirstKey >= len(args) {
		return nil
	}
	last := c.LastKey
	if last < 0 {
		last = len(args) + last
	}
	last = min(last, len(args)-1)
	if c.Step == 1 {
		return args[c.FirstKey : last+1 : last+1]
	}
	var keys [][]byte
	for i := c.FirstKey; i <= last && i < len(args); i += c.Step {
		keys = append(keys, args[i])
	}
	return keys
}

// JournalFunc receives every change, as a deterministic effect command with
// the sequence number it was given. It runs under the keyspace lock, so calls
// arrive in sequence order; it must be quick. effect and its elements are
// only valid during the call (they may alias the caller's arguments and the
// keyspace's buffers): copy what you keep.
type JournalFunc func(seq uint64, effect [][]byte)

// Keyspace is one node's data. Safe for concurrent use.
type Keyspace struct {
	mu      sync.Mutex
	seq     uint64
	journal JournalFunc
	onWrite WriteHook
	replica bool // reads leave expired keys for the master's DEL
	data    map[string]*value
	index   *keyIndex   // every key, in SCAN order
	expires int         // keys with a deadline, so DBSize can skip the scan when 0
	cursors *cursorDict // HSCAN/SSCAN/ZSCAN cursors, allocated by the first one

	clock    func() int64 // unix milliseconds
	now      int64        // clock(), read at most once per command: it is not cheap
	nowRead  bool         // now holds the running command's time
	write    bool         // the running command writes
	applying bool         // replaying a master's effect: expiry is the master's business
	effect   [][]byte     // scratch for journaled effects
	discard  []byte       // scratch reply buffer for Apply
}

type kind uint8

const (
	kindString kind = iota + 1
	kindList
	kindHash
	kindSet
	kindZSet
)

var typeNames = [...]string{kindString: "string", kindList: "list", kindHash: "hash", kindSet: "set", kindZSet: "zset"}

type value struct {
	kind     kind
	expireAt int64 // unix milliseconds; 0 means no deadline
	str      []byte
	list     *list
	hash     *hash
	set      map[string]struct{}
	zset     *zset
}

// New returns an empty keyspace whose sequence is 1, as a fresh Kvrocks reports.
func New() *Keyspace {
	return &Keyspace{
		seq:   1,
		data:  map[string]*value{},
		index: newKeyIndex(),
		clock: func() int64 { return time.Now().UnixMilli() },
	}
}

// SetJournal installs the function that receives every change (nil: none).
func (k *Keyspace) SetJournal(fn JournalFunc) {
	k.mu.Lock()
	k.journal = fn
	k.mu.Unlock()
}

// SetReplica marks the keyspace as a replica's (true) or a master's (false,
// the default). A master's commands delete the expired keys they touch and
// journal the DEL; a replica's reads only treat them as absent and leave the
// deletion to the master's journaled DEL, so its sequence stays the master's.
func (k *Keyspace) SetReplica(replica bool) {
	k.mu.Lock()
	k.replica = replica
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
	return k.execLocked(out, cmd, args)
}

// timeNow is the running command's time in unix milliseconds: one clock
// read per command, so every key in it ages alike.
func (k *Keyspace) timeNow() int64 {
	if !k.nowRead {
		k.now, k.nowRead = k.clock(), true
	}
	return k.now
}

// journaling reports whether effects are wanted, so commands can skip
// building them.
func (k *Keyspace) journaling() bool { return k.journal != nil && !k.applying }

// record bumps the sequence and journals one effect. Caller holds k.mu.
// During Apply the master's sequence is adopted instead.
func (k *Keyspace) record(effect ...[]byte) {
	if k.applying {
		return
	}
	k.seq++
	if k.journal != nil {
		k.effect = append(k.effect[:0], effect...)
		k.journal(k.seq, k.effect)
	}
}

// recordArgs journals the command itself as its own effect.
func (k *Keyspace) recordArgs(args [][]byte) { k.record(args...) }

// Apply replays an effect received from a master and adopts its sequence.
// It never deletes expired keys by itself: the master journals those DELs.
func (k *Keyspace) Apply(seq uint64, effect [][]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.applyLocked(effect)
	k.seq = seq
}

func (k *Keyspace) applyLocked(effect [][]byte) {
	if len(effect) == 0 {
		return
	}
	cmd := Lookup(effect[0])
	if cmd == nil || !cmd.ArityOK(len(effect)) {
		return
	}
	k.nowRead = false
	k.write = true
	k.applying = true
	k.discard = cmd.run(k, k.discard[:0], effect)
	k.applying = false
}

// Snapshot returns the sequence and the effect commands that rebuild the
// whole keyspace, taken atomically (for a full resync). The commands share no
// memory with the keyspace.
func (k *Keyspace) Snapshot() (uint64, [][][]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var cmds [][][]byte
	k.index.each(0, func(e indexEntry) bool {
		cmds = append(cmds, k.data[e.key].rebuild(e.key)...)
		return true
	})
	return k.seq, cmds
}

// Load replaces the whole keyspace with a snapshot (the replica side of a full resync).
func (k *Keyspace) Load(seq uint64, cmds [][][]byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.data = map[string]*value{}
	k.index = newKeyIndex()
	k.expires = 0
	for _, c := range cmds {
		k.applyLocked(c)
	}
	k.seq = seq
}

// DBSize is the exact number of keys, expired ones excluded.
func (k *Keyspace) DBSize() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.liveCount(k.clock())
}

func (k *Keyspace) liveCount(now int64) int {
	if k.expires == 0 {
		return len(k.data)
	}
	n := 0
	for _, v := range k.data {
		if !v.expiredAt(now) {
			n++
		}
	}
	return n
}

func (v *value) expiredAt(now int64) bool { return v.expireAt != 0 && v.expireAt < now }

// lookup returns the live value at key, or nil. An expired key is absent; a
// master (or any write, which must not leave a stale entry behind) deletes it
// and journals the DEL, a replica's read leaves it for the master's DEL.
// While applying, expiry is ignored: the master decides.
func (k *Keyspace) lookup(key []byte) *value {
	v := k.data[string(key)]
	if v == nil || v.expireAt == 0 || k.applying || !v.expiredAt(k.timeNow()) {
		return v
	}
	if !k.replica || k.write {
		k.remove(key)
		k.record(bDEL, key)
	}
	return nil
}

// lookupKind returns the live value at key (nil if absent) and false when it
// holds another type.
func (k *Keyspace) lookupKind(key []byte, want kind) (*value, bool) {
	v := k.lookup(key)
	if v != nil && v.kind != want {
		return nil, false
	}
	return v, true
}

// lookupOrAnswer looks key up as want for a command whose reply is already
// decided when the key holds another type (WRONGTYPE) or is absent (missing).
// Then it appends that reply to out and returns a nil value: the caller
// returns out.
func (k *Keyspace) lookupOrAnswer(out, key []byte, want kind, missing string) (*value, []byte) {
	v, ok := k.lookupKind(key, want)
	switch {
	case !ok:
		return nil, append(out, errWrongType...)
	case v == nil:
		return nil, append(out, missing...)
	}
	return v, out
}

// add stores a new value at an absent key.
func (k *Keyspace) add(key []byte, v *value) {
	s := string(key)
	k.data[s] = v
	k.index.insert(s)
}

// remove deletes a key; it reports whether the key was there.
func (k *Keyspace) remove(key []byte) bool {
	v, ok := k.data[string(key)]
	if !ok {
		return false
	}
	if v.expireAt != 0 {
		k.expires--
	}
	s := string(key)
	k.index.delete(s)
	delete(k.data, s)
	return true
}

// replace stores v at key, dropping whatever was there (TTL included).
func (k *Keyspace) replace(key []byte, v *value) {
	k.remove(key)
	k.add(key, v)
}

func (k *Keyspace) setExpire(v *value, at int64) {
	if v.expireAt == 0 && at != 0 {
		k.expires++
	} else if v.expireAt != 0 && at == 0 {
		k.expires--
	}
	v.expireAt = at
}

// removeIfEmpty deletes a container key that lost its last element, as Redis does.
func (k *Keyspace) removeIfEmpty(key []byte, v *value) {
	if v.length() == 0 {
		k.remove(key)
	}
}

func (v *value) length() int {
	switch v.kind {
	case kindList:
		return v.list.len()
	case kindHash:
		return v.hash.len()
	case kindSet:
		return len(v.set)
	case kindZSet:
		return v.zset.len()
	}
	return len(v.str)
}

// rebuild returns the effects that recreate this key, TTL included.
func (v *value) rebuild(key string) [][][]byte {
	bkey := []byte(key)
	var cmd [][]byte
	switch v.kind {
	case kindString:
		cmd = [][]byte{bSET, bkey, clone(v.str)}
	case kindList:
		cmd = [][]byte{bRPUSH, bkey}
		for i := 0; i < v.list.len(); i++ {
			cmd = append(cmd, clone(v.list.at(i)))
		}
	case kindHash:
		cmd = [][]byte{bHSET, bkey}
		for i, f := range v.hash.fields {
			cmd = append(cmd, []byte(f), clone(v.hash.values[i]))
		}
	case kindSet:
		cmd = [][]byte{bSADD, bkey}
		for _, m := range sortedMembers(v.set) {
			cmd = append(cmd, []byte(m))
		}
	case kindZSet:
		cmd = [][]byte{bZADD, bkey}
		for n := v.zset.sl.first(); n != nil; n = n.levels[0].forward {
			cmd = append(cmd, formatScoreExact(n.score), []byte(n.member))
		}
	}
	cmds := [][][]byte{cmd}
	if v.expireAt != 0 {
		cmds = append(cmds, [][]byte{bPEXPIREAT, bkey, itoa(v.expireAt)})
	}
	return cmds
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// Effect command names.
var (
	bDEL       = []byte("DEL")
	bSET       = []byte("SET")
	bRPUSH     = []byte("RPUSH")
	bHSET      = []byte("HSET")
	bSADD      = []byte("SADD")
	bSREM      = []byte("SREM")
	bZADD      = []byte("ZADD")
	bZREM      = []byte("ZREM")
	bPEXPIREAT = []byte("PEXPIREAT")
	bPXAT      = []byte("PXAT")
	bKEEPTTL   = []byte("KEEPTTL")
	bFLUSHALL  = []byte("FLUSHALL")
	bPERSIST   = []byte("PERSIST")
	bCOPY      = []byte("COPY")
	bREPLACE   = []byte("REPLACE")
)
