package keyspace

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// workloadTemplates cover every write path, plus reads that make a master
// delete expired keys. K is a key, M a member, N a small integer, F a float.
var workloadTemplates = []string{
	"SET K N", "SET K N EX N", "SET K N PX N", "SET K N KEEPTTL", "SET K N NX GET", "SET K N XX",
	"SETNX K N", "SETEX K N N", "PSETEX K N N", "GETSET K N", "GETDEL K", "MSET K N K N", "MSETNX K N K N",
	"INCR K", "DECRBY K N", "INCRBYFLOAT K F", "APPEND K M", "SETRANGE K N M", "GET K", "MGET K K",
	"DEL K K", "UNLINK K", "EXISTS K", "EXPIRE K N", "PEXPIRE K N", "EXPIRE K N GT", "PEXPIREAT K N",
	"PERSIST K", "TTL K", "TYPE K", "RENAME K K", "RENAMENX K K",
	"GETEX K", "GETEX K EX N", "GETEX K PX N", "GETEX K PXAT N", "GETEX K PERSIST", "COPY K K", "COPY K K REPLACE",
	"LPUSH K M M", "RPUSH K M", "LPUSHX K M", "RPUSHX K M", "LPOP K", "RPOP K N", "LSET K N M",
	"LREM K N M", "LTRIM K N N", "LINSERT K BEFORE M M", "LRANGE K 0 -1",
	"HSET K M N M N", "HSETNX K M N", "HDEL K M M", "HINCRBY K M N", "HINCRBYFLOAT K M F", "HGETALL K",
	"SADD K M M M", "SREM K M", "SPOP K", "SPOP K N", "SMOVE K K M", "SINTERSTORE K K K",
	"SUNIONSTORE K K K", "SDIFFSTORE K K K", "SRANDMEMBER K N",
	"ZADD K F M F M", "ZADD K INCR F M", "ZADD K GT CH F M", "ZINCRBY K F M", "ZREM K M", "ZPOPMIN K N",
	"ZPOPMAX K", "ZREMRANGEBYRANK K N N", "ZREMRANGEBYSCORE K F F", "ZRANGE K 0 -1 WITHSCORES",
	"FLUSHDB",
}

func randomCommand(rng *rand.Rand, now int64) [][]byte {
	tmpl := workloadTemplates[rng.IntN(len(workloadTemplates))]
	if tmpl == "FLUSHDB" && rng.IntN(20) != 0 {
		tmpl = "GET K" // flush rarely, or nothing would accumulate
	}
	var args [][]byte
	for _, w := range strings.Fields(tmpl) {
		switch w {
		case "K":
			w = fmt.Sprintf("k%d", rng.IntN(8))
		case "M":
			w = fmt.Sprintf("m%d", rng.IntN(6))
		case "N":
			w = fmt.Sprint(rng.IntN(12) - 2)
			if strings.HasPrefix(tmpl, "PEXPIREAT") || strings.HasSuffix(tmpl, "PXAT N") {
				w = fmt.Sprint(now + int64(rng.IntN(200)) - 50)
			}
		case "F":
			w = []string{"0.1", "-1.5", "2", "1e3", "inf", "-inf", "0"}[rng.IntN(7)]
		}
		args = append(args, []byte(w))
	}
	return args
}

// TestReplicationRebuildsIdenticalKeyspace runs a random workload on a master
// whose journal feeds a replica, and requires identical snapshots, also
// after a full resync through Snapshot and Load.
func TestReplicationRebuildsIdenticalKeyspace(t *testing.T) {
	seeds := uint64(20)
	if testing.Short() {
		seeds = 5
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		now := int64(1_000_000)
		master, replica := newTestKeyspace(&now), newTestKeyspace(&now)
		replica.SetReplica(true)
		lastSeq := uint64(1)
		apply := journalTo(replica)
		master.SetJournal(func(seq uint64, effect [][]byte) {
			require.Equal(t, lastSeq+1, seq, "sequence numbers are consecutive")
			lastSeq = seq
			apply(seq, effect)
		})
		rng := rand.New(rand.NewPCG(seed, 42))
		for i := 0; i < 3000; i++ {
			execLocal(master, randomCommand(rng, now))
			now += int64(rng.IntN(5))
			if i%10 == 0 {
				// Replica reads see expired keys as absent without deleting them.
				execLocal(replica, [][]byte{[]byte("EXISTS"), []byte(fmt.Sprintf("k%d", rng.IntN(8)))})
			}
		}
		mseq, msnap := master.Snapshot()
		require.NotEmpty(t, msnap, "seed %d: the workload left data to compare", seed)
		require.Greater(t, mseq, uint64(500), "seed %d: the workload wrote", seed)
		rseq, rsnap := replica.Snapshot()
		require.Equal(t, mseq, rseq, "seed %d", seed)
		require.Equal(t, dump(msnap), dump(rsnap), "seed %d", seed)

		fresh := newTestKeyspace(&now)
		fresh.Load(mseq, msnap)
		fseq, fsnap := fresh.Snapshot()
		assert.Equal(t, mseq, fseq)
		assert.Equal(t, dump(msnap), dump(fsnap), "seed %d", seed)
		assert.Equal(t, master.DBSize(), fresh.DBSize())
	}
}

func dump(cmds [][][]byte) string {
	var b strings.Builder
	for _, c := range cmds {
		for i, a := range c {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%q", a)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// journalTo is a master's journal that applies each change to replica, as
// replication does: copied, since the master reuses what it journals.
func journalTo(replica *Keyspace) JournalFunc {
	return func(seq uint64, effect [][]byte) {
		copied := make([][]byte, len(effect))
		for i, e := range effect {
			copied[i] = clone(e)
		}
		replica.Apply(seq, copied)
	}
}

// TestConcurrentExecAndReplication drives a master from several goroutines
// (for the race detector) and checks the replica converges.
func TestConcurrentExecAndReplication(t *testing.T) {
	master, replica := New(), New()
	replica.SetReplica(true)
	master.SetJournal(journalTo(replica))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 7))
			for i := 0; i < 500; i++ {
				execLocal(master, randomCommand(rng, 0))
				_ = master.Sequence()
				_ = replica.DBSize()
			}
		}(uint64(g))
	}
	wg.Wait()
	_, msnap := master.Snapshot()
	_, rsnap := replica.Snapshot()
	assert.Equal(t, dump(msnap), dump(rsnap))
	assert.Equal(t, master.Sequence(), replica.Sequence())
}
