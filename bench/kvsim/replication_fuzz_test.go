package kvsim

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

// splitFuzzArgs splits b at NULs into at least one argument.
func splitFuzzArgs(b []byte) [][]byte { return bytes.Split(b, []byte{0}) }

// FuzzReplicationStream reads arbitrary bytes as a replica reads its
// master's answer to the handshake (CONT, or FULL and its snapshot) and the
// live stream after it: nothing panics or allocates what the bytes merely
// announce, and a change read from an E frame reads the same once written
// again. A stream built from the other inputs, as a master writes it,
// reads back exactly.
func FuzzReplicationStream(f *testing.F) {
	snapshot := appendCommand(nil, []byte("FULL"), []byte("7"), []byte("2"))
	snapshot = appendCommand(snapshot, []byte("S"), []byte("SET"), []byte("k"), []byte("v"))
	snapshot = appendCommand(snapshot, []byte("S"), []byte("PEXPIREAT"), []byte("k"), []byte("123"))
	live := appendCommand(nil, []byte("T"), []byte("1700000000000000000"))
	live = append(live, entryFrame(8, [][]byte{[]byte("DEL"), []byte("k")})...)
	for _, seed := range [][]byte{
		append(appendCommand(nil, []byte("CONT")), live...),
		append(snapshot, live...),
		appendCommand(nil, []byte("FULL"), []byte("1"), []byte("99999999999999")),
		appendCommand(nil, []byte("FULL"), []byte("1"), []byte("-1")),
		append(appendCommand(nil, []byte("CONT")), appendCommand(nil, []byte("E"), []byte("x"), []byte("SET"))...),
		append(appendCommand(nil, []byte("CONT")), "E 9 SET k v\r\nT x\r\n*2\r\n$1\r\nE\r\n"...),
		[]byte("-ERR a replica does not serve replication\r\n"),
	} {
		f.Add(seed, uint64(42), []byte("SET\x00k\x00v"), []byte("SET\x00a\x001\nSADD\x00s\x00x\x00y"), int64(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, seq uint64, effect, snap []byte, sentAt int64) {
		readStream(t, data)

		var cmds [][][]byte
		if len(snap) > 0 {
			for line := range bytes.SplitSeq(snap, []byte("\n")) {
				cmds = append(cmds, splitFuzzArgs(line))
			}
		}
		// As streamTo writes a full resync, then a live change.
		built := appendCommand(nil, []byte("FULL"), []byte(strconv.FormatUint(seq, 10)), []byte(strconv.Itoa(len(cmds))))
		for _, c := range cmds {
			built = appendCommand(built, append([][]byte{[]byte("S")}, c...)...)
		}
		built = appendCommand(built, []byte("T"), []byte(strconv.FormatInt(sentAt, 10)))
		frame := entryFrame(seq+1, splitFuzzArgs(effect))
		built = append(built, frame...)

		rd := redcon.NewReader(bytes.NewReader(built))
		header, err := rd.ReadCommand()
		require.NoError(t, err)
		gotSeq, gotCmds, err := readSnapshot(rd, header.Args)
		require.NoError(t, err)
		require.Equal(t, seq, gotSeq)
		require.Equal(t, len(cmds), len(gotCmds))
		for i := range cmds {
			require.Equal(t, cmds[i], gotCmds[i])
		}
		cmd, err := rd.ReadCommand()
		require.NoError(t, err)
		sent, e, err := parseStreamFrame(cmd)
		require.NoError(t, err)
		require.Nil(t, e)
		require.Equal(t, sentAt, sent.UnixNano())
		cmd, err = rd.ReadCommand()
		require.NoError(t, err)
		_, e, err = parseStreamFrame(cmd)
		require.NoError(t, err)
		require.Equal(t, seq+1, e.seq)
		require.Equal(t, splitFuzzArgs(effect), e.effect)
		require.Equal(t, frame, e.frame)
	})
}

// multibulkHeader matches what redcon's Reader reads as an array header.
var multibulkHeader = regexp.MustCompile(`\*\+?([0-9]+)\r\n`)

// announcesMore reports an array header announcing more elements than data
// holds bytes. redcon's Reader (v1.6.4) counts through every announced
// element each time it looks at an incomplete array, so such a header
// spins it for as long as the count says; a master never sends one.
func announcesMore(data []byte) bool {
	for _, m := range multibulkHeader.FindAllSubmatch(data, -1) {
		if n, err := strconv.Atoi(string(m[1])); err != nil || n > len(data) {
			return true
		}
	}
	return false
}

// readStream reads data as syncFromMaster does, checking each change.
func readStream(t *testing.T, data []byte) {
	if announcesMore(data) {
		return
	}
	rd := redcon.NewReader(bytes.NewReader(data))
	first, err := rd.ReadCommand()
	if err != nil {
		return
	}
	switch string(first.Args[0]) {
	case "CONT":
	case "FULL":
		if _, _, err := readSnapshot(rd, first.Args); err != nil {
			return
		}
	default:
		return
	}
	for {
		cmd, err := rd.ReadCommand()
		if err != nil {
			return
		}
		_, e, err := parseStreamFrame(cmd)
		if err != nil {
			return
		}
		if e == nil {
			continue
		}
		require.Equal(t, cmd.Raw, e.frame)
		again, err := redcon.Parse(entryFrame(e.seq, e.effect))
		require.NoError(t, err)
		_, e2, err := parseStreamFrame(redcon.Command{Raw: entryFrame(e.seq, e.effect), Args: again.Args})
		require.NoError(t, err)
		require.Equal(t, e.seq, e2.seq)
		require.Equal(t, e.effect, e2.effect)
	}
}
