package resp

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

var goodFrames = []struct {
	name  string
	frame string
}{
	{"simple string", "+OK\r\n"},
	{"empty simple string", "+\r\n"},
	{"simple string with lone CR", "+a\rb\r\n"},
	{"error", "-ERR unknown command 'foo'\r\n"},
	{"moved", "-MOVED 3999 127.0.0.1:6381\r\n"},
	{"integer", ":1000\r\n"},
	{"negative integer", ":-42\r\n"},
	{"integer beyond int64", ":99999999999999999999\r\n"},
	{"bulk", "$3\r\nfoo\r\n"},
	{"empty bulk", "$0\r\n\r\n"},
	{"bulk holding CRLF", "$6\r\na\r\nb\r\n\r\n"},
	{"bulk length with leading zeros", "$003\r\nfoo\r\n"},
	{"null bulk", "$-1\r\n"},
	{"empty array", "*0\r\n"},
	{"null array", "*-1\r\n"},
	{"array", "*3\r\n$3\r\nfoo\r\n:1\r\n+OK\r\n"},
	{"nested arrays", "*2\r\n*2\r\n:1\r\n*0\r\n*1\r\n$-1\r\n"},
	{"cluster slots", "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$40\r\n" + strings.Repeat("a", 40) + "\r\n"},
	{"array of errors", "*2\r\n-TRYAGAIN Failover in progress\r\n-ERR x\r\n"},
	{"deepest allowed nesting", strings.Repeat("*1\r\n", MaxNesting) + ":1\r\n"},
	{"null", "_\r\n"},
	{"double", ",3.14\r\n"},
	{"double inf", ",-inf\r\n"},
	{"true", "#t\r\n"},
	{"false", "#f\r\n"},
	{"big number", "(3492890328409238509324850943850943825024385\r\n"},
	{"negative big number", "(-1\r\n"},
	{"blob error", "!21\r\nSYNTAX invalid syntax\r\n"},
	{"verbatim", "=15\r\ntxt:Some string\r\n"},
	{"empty verbatim", "=4\r\ntxt:\r\n"},
	{"map", "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n"},
	{"empty map", "%0\r\n"},
	{"set", "~3\r\n+a\r\n+b\r\n+c\r\n"},
	{"push", ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"},
	{"attribute before array", "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.19\r\n$1\r\nb\r\n,0.01\r\n*2\r\n:2039123\r\n:9543892\r\n"},
	{"attribute inside array", "*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n:2\r\n"},
	{"empty attribute", "|0\r\n:1\r\n"},
	{"map of aggregates", "%1\r\n~1\r\n#t\r\n>1\r\n_\r\n"},
}

var badFrames = []struct {
	name  string
	frame string
	want  error
}{
	{"unknown type", "?x\r\n", errBadType},
	{"bare CRLF", "\r\n", errBadType},
	{"inline text", "OK\r\n", errBadType},
	{"unknown nested type", "*1\r\n?\r\n", errBadType},
	{"LF without CR", "+OK\n", errMissingCRLF},
	{"header LF without CR", "$3\nfoo\r\n", errMissingCRLF},
	{"bulk without CRLF", "$3\r\nfooXY", errMissingCRLF},
	{"bulk too long for its length", "$2\r\nfoo\r\n", errMissingCRLF},
	{"empty integer", ":\r\n", errBadNumber},
	{"integer with letters", ":12a\r\n", errBadNumber},
	{"lone minus", ":-\r\n", errBadNumber},
	{"bulk length not a number", "$abc\r\n", errBadNumber},
	{"bulk length with plus", "$+3\r\nfoo\r\n", errBadNumber},
	{"empty array count", "*\r\n", errBadNumber},
	{"array count overflow", "*99999999999999999999\r\n", errBadNumber},
	{"negative bulk", "$-2\r\n", errNegativeLength},
	{"negative array", "*-2\r\n", errNegativeLength},
	{"negative map", "%-1\r\n", errNegativeLength},
	{"negative set", "~-1\r\n", errNegativeLength},
	{"negative blob error", "!-1\r\n", errNegativeLength},
	{"null with content", "_x\r\n", errBadValue},
	{"bool not t or f", "#x\r\n", errBadValue},
	{"bool too long", "#tt\r\n", errBadValue},
	{"empty double", ",\r\n", errBadValue},
	{"empty big number", "(\r\n", errBadValue},
	{"big number with letters", "(1a\r\n", errBadValue},
	{"verbatim shorter than its format", "=3\r\nabc\r\n", errBadValue},
	{"verbatim without colon", "=4\r\ntxtX\r\n", errBadValue},
	{"nesting too deep", strings.Repeat("*1\r\n", MaxNesting+1) + ":1\r\n", errTooDeep},
	{"empty aggregate too deep", strings.Repeat("*1\r\n", MaxNesting) + "*0\r\n", errTooDeep},
	{"length header too long", "$" + strings.Repeat("0", 40) + "3\r\nfoo\r\n", errTooLarge},
	{"unterminated length header", "*" + strings.Repeat("1", 40), errTooLarge},
}

func TestScanGoodFrames(t *testing.T) {
	for _, tt := range goodFrames {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewScanner(DefaultMaxBulkLen).Scan([]byte(tt.frame))
			require.NoError(t, err)
			assert.Equal(t, len(tt.frame), n)

			// Bytes of the next reply must not be counted.
			n, err = NewScanner(DefaultMaxBulkLen).Scan([]byte(tt.frame + "+NEXT\r\n"))
			require.NoError(t, err)
			assert.Equal(t, len(tt.frame), n)
		})
	}
}

func TestScanBadFrames(t *testing.T) {
	for _, tt := range badFrames {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewScanner(DefaultMaxBulkLen).Scan([]byte(tt.frame))
			assert.Zero(t, n)
			assert.ErrorIs(t, err, tt.want)
			assert.ErrorIs(t, err, ErrProtocol)
		})
	}
}

func TestScanEnforcesMaxBulkLen(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  error
	}{
		{"bulk at the limit", "$8\r\n12345678\r\n", nil},
		{"bulk over the limit", "$9\r\n123456789\r\n", errTooLarge},
		{"bulk over the limit before its body arrives", "$9\r\n", errTooLarge},
		{"blob error over the limit", "!9\r\n123456789\r\n", errTooLarge},
		{"simple string at the limit", "+12345678\r\n", nil},
		{"simple string over the limit", "+123456789\r\n", errTooLarge},
		{"unterminated simple string over the limit", "-1234567890", errTooLarge},
		{"unterminated simple string at the limit", "+12345678\r", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewScanner(8).Scan([]byte(tt.frame))
			if tt.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tt.want)
			}
		})
	}
}

func TestNewScannerRejectsNonPositiveLimit(t *testing.T) {
	assert.Panics(t, func() { NewScanner(0) })
}

// Every good frame, fed one more byte at a time, is incomplete until its last
// byte arrives, both for a Scanner that resumes and for a fresh one.
func TestScanEverySplit(t *testing.T) {
	for _, tt := range goodFrames {
		t.Run(tt.name, func(t *testing.T) {
			frame := []byte(tt.frame)
			resumed := NewScanner(DefaultMaxBulkLen)
			for cut := 0; cut < len(frame); cut++ {
				n, err := resumed.Scan(frame[:cut])
				require.NoError(t, err, "resumed at %d", cut)
				require.Zero(t, n, "resumed at %d", cut)

				n, err = NewScanner(DefaultMaxBulkLen).Scan(frame[:cut])
				require.NoError(t, err, "fresh at %d", cut)
				require.Zero(t, n, "fresh at %d", cut)
			}
			n, err := resumed.Scan(frame)
			require.NoError(t, err)
			assert.Equal(t, len(frame), n)
		})
	}
}

func TestScanConsecutiveFrames(t *testing.T) {
	var stream []byte
	for _, tt := range goodFrames {
		stream = append(stream, tt.frame...)
	}
	s := NewScanner(DefaultMaxBulkLen)
	for i, tt := range goodFrames {
		n, err := s.Scan(stream)
		require.NoError(t, err, "frame %d", i)
		require.Equal(t, len(tt.frame), n, "frame %d (%s)", i, tt.name)
		stream = stream[n:]
	}
	assert.Empty(t, stream)
}

func TestScanResetDropsPartialFrame(t *testing.T) {
	s := NewScanner(DefaultMaxBulkLen)
	n, err := s.Scan([]byte("*3\r\n:1\r\n"))
	require.NoError(t, err)
	require.Zero(t, n)
	s.Reset()
	n, err = s.Scan([]byte("+OK\r\n"))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
}

// largeArrayReply is an array of count three-byte bulk strings.
func largeArrayReply(count int) []byte {
	reply := []byte("*" + strconv.Itoa(count) + "\r\n")
	for range count {
		reply = append(reply, "$3\r\nfoo\r\n"...)
	}
	return reply
}

func TestScanDoesNotAllocate(t *testing.T) {
	reply := []byte("*1001\r\n")
	for range 1000 {
		reply = append(reply, "$3\r\nfoo\r\n"...)
	}
	reply = append(reply, "%1\r\n+k\r\n=7\r\ntxt:abc\r\n"...)
	s := NewScanner(DefaultMaxBulkLen)
	n, err := s.Scan(reply)
	require.NoError(t, err)
	require.Equal(t, len(reply), n)

	allocs := testing.AllocsPerRun(50, func() {
		for cut := 512; cut < len(reply); cut += 512 {
			if n, err := s.Scan(reply[:cut]); n != 0 || err != nil {
				panic("frame completed early")
			}
		}
		if n, err := s.Scan(reply); n != len(reply) || err != nil {
			panic("frame not completed")
		}
		_, _ = s.Scan([]byte("?"))
		s.Reset()
	})
	assert.Zero(t, allocs)
}

// redcon only knows RESP2, so the differential fuzz keeps RESP3 type bytes out
// of its input.
var resp3OnlyTypes = []byte("_,#(!=%~>|")

func withoutRESP3Types(data []byte) []byte {
	out := bytes.Clone(data)
	for i, c := range out {
		if bytes.IndexByte(resp3OnlyTypes, c) >= 0 {
			out[i] = 'x'
		}
	}
	return out
}

// redconFrameLength calls redcon.ReadNextRESP; it panics on some huge lengths
// (index overflow), reported as ok == false.
func redconFrameLength(data []byte) (n int, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	n, _ = redcon.ReadNextRESP(data)
	return n, true
}

// FuzzScanMatchesRedcon checks the Scanner against redcon.ReadNextRESP on
// RESP2 input. redcon returns 0 both for incomplete and malformed input and is
// laxer in a few ways (a '+' sign or a negative length other than -1, any
// header length, any nesting), where the Scanner reports an error instead.
func FuzzScanMatchesRedcon(f *testing.F) {
	for _, tt := range goodFrames {
		f.Add([]byte(tt.frame))
	}
	for _, tt := range badFrames {
		f.Add([]byte(tt.frame))
	}
	f.Add([]byte("*2\r\n$3\r\nfoo\r\n$3\r\nbar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = withoutRESP3Types(data)
		ours, err := NewScanner(DefaultMaxBulkLen).Scan(data)
		theirs, ok := redconFrameLength(data)
		if !ok {
			require.Error(t, err, "redcon panicked on a frame we accepted")
			return
		}
		switch {
		case err != nil:
			require.Zero(t, ours)
			if theirs == 0 {
				return
			}
			// redcon accepted what we reject: only where it is laxer.
			laxer := errors.Is(err, errNegativeLength) || errors.Is(err, errTooLarge) ||
				errors.Is(err, errTooDeep) || (errors.Is(err, errBadNumber) && bytes.IndexByte(data[:theirs], '+') >= 0)
			require.True(t, laxer, "redcon read %d bytes of %q, we said %v", theirs, data, err)
		case ours == 0:
			require.Zero(t, theirs, "incomplete for us, complete for redcon: %q", data)
		default:
			require.Equal(t, theirs, ours, "%q", data)
		}
	})
}

// FuzzScanChunked checks that feeding input in random chunks to one Scanner
// gives the same result as scanning it all at once.
func FuzzScanChunked(f *testing.F) {
	for i, tt := range goodFrames {
		f.Add([]byte(tt.frame), uint64(i))
	}
	for i, tt := range badFrames {
		f.Add([]byte(tt.frame), uint64(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		const maxBulkLen = 64
		whole, wholeErr := NewScanner(maxBulkLen).Scan(data)

		rng := rand.New(rand.NewPCG(seed, 0))
		s := NewScanner(maxBulkLen)
		var chunked int
		var chunkedErr error
		for cut := 0; ; {
			chunked, chunkedErr = s.Scan(data[:cut])
			if chunked != 0 || chunkedErr != nil || cut == len(data) {
				break
			}
			cut = min(len(data), cut+1+rng.IntN(16))
		}
		require.Equal(t, whole, chunked, "%q", data)
		if wholeErr == nil {
			require.NoError(t, chunkedErr, "%q", data)
		} else {
			require.ErrorIs(t, chunkedErr, ErrProtocol, "%q", data)
			require.Equal(t, wholeErr.Error(), chunkedErr.Error(), "%q", data)
		}
	})
}

// FuzzScanFrameEnd checks where the Scanner ends a frame: a frame it finds
// is found alone and followed by any bytes, and every strict prefix of it
// is incomplete, never an error (a backend's reply may arrive in any
// pieces).
func FuzzScanFrameEnd(f *testing.F) {
	for _, tt := range goodFrames {
		f.Add([]byte(tt.frame), []byte("+OK\r\n"))
	}
	for _, tt := range badFrames {
		f.Add([]byte(tt.frame), []byte(tt.frame))
	}
	f.Fuzz(func(t *testing.T, data, next []byte) {
		const maxBulkLen = 1 << 10
		n, err := NewScanner(maxBulkLen).Scan(data)
		if err != nil || n == 0 {
			return
		}
		frame := data[:n]
		alone, err := NewScanner(maxBulkLen).Scan(frame)
		require.NoError(t, err, "%q", frame)
		require.Equal(t, n, alone, "%q", frame)
		followed, err := NewScanner(maxBulkLen).Scan(append(bytes.Clone(frame), next...))
		require.NoError(t, err, "%q then %q", frame, next)
		require.Equal(t, n, followed, "%q then %q", frame, next)
		if n > 2048 {
			return // the prefixes cost n² to scan
		}
		for cut := range n {
			got, err := NewScanner(maxBulkLen).Scan(frame[:cut])
			require.NoError(t, err, "%q is a prefix of %q", frame[:cut], frame)
			require.Zero(t, got, "%q is a prefix of %q", frame[:cut], frame)
		}
	})
}

func BenchmarkScanSmallReply(b *testing.B) {
	reply := []byte("$16\r\nvalue-0123456789\r\n")
	b.Run("scanner", func(b *testing.B) {
		s := NewScanner(DefaultMaxBulkLen)
		b.ReportAllocs()
		for b.Loop() {
			if n, _ := s.Scan(reply); n != len(reply) {
				b.Fatal("bad length")
			}
		}
	})
	b.Run("redcon", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n, _ := redcon.ReadNextRESP(reply); n != len(reply) {
				b.Fatal("bad length")
			}
		}
	})
}

// BenchmarkScanLargeArrayInChunks scans a 100,000-element array that arrives
// 16 KiB at a time, the way a backend reader sees a big KEYS or MGET reply.
func BenchmarkScanLargeArrayInChunks(b *testing.B) {
	reply := largeArrayReply(100_000)
	const chunk = 16 << 10
	b.Run("scanner", func(b *testing.B) {
		s := NewScanner(DefaultMaxBulkLen)
		b.SetBytes(int64(len(reply)))
		b.ReportAllocs()
		for b.Loop() {
			for cut := chunk; ; cut += chunk {
				if n, _ := s.Scan(reply[:min(cut, len(reply))]); n != 0 {
					break
				}
			}
		}
	})
	b.Run("redcon", func(b *testing.B) {
		b.SetBytes(int64(len(reply)))
		b.ReportAllocs()
		for b.Loop() {
			for cut := chunk; ; cut += chunk {
				if n, _ := redcon.ReadNextRESP(reply[:min(cut, len(reply))]); n != 0 {
					break
				}
			}
		}
	})
}

// discardingScan feeds stream to s in chunks of the sizes rng picks, keeping
// at most the bytes of the frame in progress that are not scanned yet once
// discard says so; it returns every frame's end, as an offset in stream, and
// whether it was discarded and oversized, up to the first error.
func discardingScan(s *Scanner, stream []byte, rng *rand.Rand, discard func() bool) (ends []int, dropped []bool, oversized []bool, err error) {
	var buf []byte
	base := 0 // stream offset of buf[0]
	for fed := 0; fed < len(stream); {
		next := min(len(stream), fed+1+rng.IntN(24))
		buf = append(buf, stream[fed:next]...)
		fed = next
		for len(buf) > 0 {
			n, err := s.Scan(buf)
			if err != nil {
				return ends, dropped, oversized, err
			}
			if n == 0 {
				if s.Scanned() > 0 && !s.discarding && discard() {
					s.Discard()
					continue
				}
				break
			}
			d, o := s.Discarded()
			ends, dropped, oversized = append(ends, base+n), append(dropped, d), append(oversized, o)
			buf, base = buf[n:], base+n
		}
		if s.discarding {
			k := s.Scanned()
			buf, base = buf[k:], base+k
			s.Drop(k)
		}
	}
	return ends, dropped, oversized, nil
}

// A discarded frame ends where a kept one would, whatever the chunking and
// whenever Discard is called, and nothing but its unscanned tail is kept.
func TestScanDiscardKeepsFrameBoundaries(t *testing.T) {
	var stream []byte
	for _, tt := range goodFrames {
		stream = append(stream, tt.frame...)
	}
	stream = append(stream, largeArrayReply(300)...)
	stream = append(stream, "$200\r\n"+strings.Repeat("v", 200)+"\r\n"...)
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		want, _, _, err := discardingScan(NewScanner(DefaultMaxBulkLen), stream, rng, func() bool { return false })
		require.NoError(t, err)
		got, dropped, _, err := discardingScan(NewScanner(DefaultMaxBulkLen), stream, rng, func() bool { return rng.IntN(3) == 0 })
		require.NoError(t, err, "seed %d", seed)
		require.Equal(t, want, got, "seed %d", seed)
		assert.Len(t, dropped, len(goodFrames)+2)
	}
}

// With skipOversized, a bulk over the limit discards its frame and the
// stream stays in step; without, it is an error.
func TestScanSkipsOversizedBulk(t *testing.T) {
	big := "$100\r\n" + strings.Repeat("x", 100) + "\r\n"
	stream := []byte("+OK\r\n*3\r\n:1\r\n" + big + "$2\r\nok\r\n" + big + ":7\r\n")
	s := NewScanner(10)
	s.skipOversized = true
	ends, dropped, oversized, err := discardingScan(s, stream, rand.New(rand.NewPCG(1, 2)), func() bool { return false })
	require.NoError(t, err)
	first := len("+OK\r\n")
	second := first + len("*3\r\n:1\r\n"+big+"$2\r\nok\r\n")
	third := second + len(big)
	assert.Equal(t, []int{first, second, third, len(stream)}, ends)
	assert.Equal(t, []bool{false, true, true, false}, dropped)
	assert.Equal(t, []bool{false, true, true, false}, oversized)

	_, err = NewScanner(10).Scan([]byte(big))
	assert.ErrorIs(t, err, errTooLarge)
}

// While a frame is discarded, a huge blob costs no buffer: the caller never
// holds more than one chunk of it.
func TestScanDiscardSkipsABlobInPieces(t *testing.T) {
	s := NewScanner(DefaultMaxBulkLen)
	header := []byte("*2\r\n:1\r\n$1000000\r\n")
	n, err := s.Scan(header)
	require.NoError(t, err)
	require.Zero(t, n)
	s.Discard()
	n, err = s.Scan(header)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, len(header), s.Scanned())
	s.Drop(len(header))
	chunk := bytes.Repeat([]byte("z"), 4096)
	for left := 1000000; left > 0; left -= len(chunk) {
		piece := chunk[:min(len(chunk), left)]
		n, err = s.Scan(piece)
		require.NoError(t, err)
		require.Zero(t, n)
		s.Drop(s.Scanned())
	}
	n, err = s.Scan([]byte("\r\n+next\r\n"))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	discarded, oversized := s.Discarded()
	assert.True(t, discarded)
	assert.False(t, oversized)
	n, err = s.Scan([]byte("+next\r\n"))
	require.NoError(t, err)
	assert.Equal(t, 7, n)
	discarded, _ = s.Discarded()
	assert.False(t, discarded)
}

// FuzzScanDiscard checks that discarding frames at random points, with the
// caller dropping what was scanned, finds the frame boundaries a plain scan
// finds, on any input, and that oversized bulks are skipped, not errors.
func FuzzScanDiscard(f *testing.F) {
	for i, tt := range goodFrames {
		f.Add([]byte(tt.frame), uint64(i))
	}
	f.Add([]byte("*2\r\n$20\r\nabcdefghijabcdefghij\r\n:1\r\n+OK\r\n"), uint64(7))
	f.Add(largeArrayReply(20), uint64(3))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		const maxBulkLen = 8
		plain := NewScanner(DefaultMaxBulkLen)
		want, _, _, wantErr := discardingScan(plain, data, rand.New(rand.NewPCG(seed, 0)), func() bool { return false })
		rng := rand.New(rand.NewPCG(seed, 1))
		s := NewScanner(maxBulkLen)
		s.skipOversized = true
		got, _, _, gotErr := discardingScan(s, data, rng, func() bool { return rng.IntN(2) == 0 })
		// A skipped blob is not checked, so the discarding scan may pass
		// over bytes the plain one rejects; up to the first error both agree.
		n := min(len(want), len(got))
		require.True(t, slices.Equal(want[:n], got[:n]), "%q: %v against %v", data, got, want)
		switch {
		case wantErr != nil:
		case gotErr != nil:
			// Text lines keep their limit: only they may fail here.
			require.ErrorIs(t, gotErr, errTooLarge, "%q", data)
		default:
			require.Equal(t, len(want), len(got), "%q", data)
		}
	})
}
