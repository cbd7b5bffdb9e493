package keyspace

// WriteHook learns of every client write command that did not reply an
// error, with its arguments. It runs under the keyspace lock, so a
// transaction (see Transaction) never sees the data changed without the hook
// having run; it must be quick and must not call the Keyspace. Replayed
// effects (Apply, Load) do not call it.
type WriteHook func(cmd *Command, args [][]byte)

// SetWriteHook installs the function told of client writes (nil: none).
func (k *Keyspace) SetWriteHook(fn WriteHook) {
	k.mu.Lock()
	k.onWrite = fn
	k.mu.Unlock()
}

// execLocked runs cmd; the caller holds k.mu.
func (k *Keyspace) execLocked(out []byte, cmd *Command, args [][]byte) []byte {
	k.nowRead = false
	k.write = cmd.Write
	start := len(out)
	out = cmd.run(k, out, args)
	if cmd.Write && k.onWrite != nil && (len(out) == start || out[start] != '-') {
		k.onWrite(cmd, args)
	}
	return out
}

// Txn executes commands inside Transaction.
type Txn struct{ k *Keyspace }

// Transaction runs fn holding the keyspace lock: the commands fn runs with
// txn.Exec execute back to back, and no other command runs between them.
// fn must not call the Keyspace's own methods (they would wait for the lock
// fn holds).
func (k *Keyspace) Transaction(fn func(txn Txn)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fn(Txn{k})
}

// Exec is Keyspace.Exec inside a transaction.
func (t Txn) Exec(out []byte, cmd *Command, args [][]byte) []byte {
	return t.k.execLocked(out, cmd, args)
}
