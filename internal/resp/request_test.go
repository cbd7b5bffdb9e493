package resp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

var testLimits = RequestLimits{MaxBulkLen: 1 << 20, MaxArgs: 1 << 16, MaxRequestBytes: 1 << 24}

// scanAll feeds data to a fresh scanner as if it arrived in reads of size
// chunk (all at once when chunk <= 0) and returns the verdict and the offset
// where the refused or unfinished request starts (len(data) when it ends on
// a boundary).
func scanAll(data []byte, limits RequestLimits, chunk int) (boundary int, err *RequestError) {
	s := RequestScanner{Limits: limits}
	if chunk <= 0 {
		chunk = len(data) + 1
	}
	pos := 0
	for read := 0; read < len(data); {
		read = min(read+chunk, len(data))
		for pos < read {
			next, done, e := s.Scan(data[:read], pos)
			pos = next
			if e != nil {
				return boundary, e
			}
			if done {
				boundary = pos
			}
		}
	}
	return boundary, nil
}

func TestRequestScanner(t *testing.T) {
	tests := []struct {
		name     string
		input    string
		boundary int
		err      string
	}{
		{"one command", "*1\r\n$4\r\nPING\r\n", 14, ""},
		{"two commands and a partial", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET", 28, ""},
		{"inline", "PING\r\nGET a\n", 12, ""},
		{"empty bulk", "*2\r\n$3\r\nGET\r\n$0\r\n\r\n", 19, ""},
		{"plus sign and leading zeros", "*+1\r\n$004\r\nPING\r\n", 17, ""},
		{"minus zero bulk", "*1\r\n$-0\r\n\r\n", 11, ""},
		{"zero count", "*0\r\n", 0, "Protocol error: invalid multibulk length"},
		{"negative count", "*-1\r\n", 0, "Protocol error: invalid multibulk length"},
		{"LF without CR", "*1\n", 0, "Protocol error: invalid multibulk length"},
		{"CR inside count", "*1\r2\r\n", 0, "Protocol error: invalid multibulk length"},
		{"bad bulk length", "*1\r\n$x\r\n", 0, "Protocol error: invalid bulk length"},
		{"empty bulk length", "*1\r\n$\r\n", 0, "Protocol error: invalid bulk length"},
		{"not a bulk", "*1\r\n+PING\r\n", 0, "Protocol error: expected '$', got '+'"},
		{"line break as type", "*1\r\n\r\n", 0, "Protocol error: expected '$', got ' '"},
		{"missing CRLF after data", "*1\r\n$4\r\nPINGPONG", 0, "Protocol error: invalid bulk length"},
		{"refused after a good command", "*1\r\n$4\r\nPING\r\n*1\r\n$99999999\r\n", 14, "Protocol error: invalid bulk length"},
		{"too many args", "*65537\r\n", 0, "Protocol error: invalid multibulk length"},
		{"count overflows int64", "*99999999999999999999\r\n", 0, "Protocol error: invalid multibulk length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 2, 3, 7} {
				boundary, err := scanAll([]byte(tt.input), testLimits, chunk)
				assert.Equal(t, tt.boundary, boundary, "chunk %d", chunk)
				if tt.err == "" {
					assert.Nil(t, err, "chunk %d", chunk)
				} else if assert.NotNil(t, err, "chunk %d", chunk) {
					assert.Equal(t, tt.err, err.Msg, "chunk %d", chunk)
				}
			}
		})
	}
}

func TestRequestScannerLimits(t *testing.T) {
	limits := RequestLimits{MaxBulkLen: 10, MaxArgs: 3, MaxRequestBytes: 30}
	_, err := scanAll([]byte("*1\r\n$11\r\n"), limits, 0)
	assert.Equal(t, errBulkTooLong, err)
	_, err = scanAll([]byte("*4\r\n"), limits, 0)
	assert.Equal(t, errTooManyArgs, err)
	_, err = scanAll([]byte("*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n"), limits, 0)
	assert.Equal(t, errRequestTooLarge, err)
	_, err = scanAll([]byte(strings.Repeat("x", MaxInlineLen+1)), testLimits, 0)
	assert.Equal(t, errInlineTooLong, err)
	_, err = scanAll([]byte("GET"+strings.Repeat(" ", maxInlineSeparators+1)), testLimits, 0)
	assert.Equal(t, errInlineTooManyArgs, err)
	_, err = scanAll([]byte("*"+strings.Repeat("0", maxHeaderLen+1)), testLimits, 0)
	assert.Equal(t, errMbulkHeaderLong, err)
	_, err = scanAll([]byte("*1\r\n$"+strings.Repeat("0", maxHeaderLen+1)), testLimits, 0)
	assert.Equal(t, errBulkHeaderLong, err)

	s := RequestScanner{Limits: testLimits, Unauthenticated: true}
	_, _, err = s.Scan([]byte("*11\r\n"), 0)
	assert.Equal(t, errUnauthMultibulk, err)
	s = RequestScanner{Limits: testLimits, Unauthenticated: true}
	_, _, err = s.Scan([]byte("*2\r\n$4\r\nAUTH\r\n$16385\r\n"), 0)
	assert.Equal(t, errUnauthBulk, err)

	// A header that announces more than maxRequestBytes is refused before
	// the bytes it announces arrive.
	_, err = scanAll([]byte("*3\r\n$1\r\nx\r\n$9\r\n123456789\r\n$5\r\n"), limits, 0)
	assert.Equal(t, errRequestTooLarge, err)

	// The scanner stops after each command, with its arguments recorded.
	s = RequestScanner{Limits: testLimits}
	input := []byte("*2\r\n$3\r\nGET\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n")
	next, done, err := s.Scan(input, 0)
	assert.Nil(t, err)
	assert.True(t, done)
	assert.Equal(t, 19, next)
	assert.Equal(t, [][]byte{[]byte("GET"), {}}, s.args[s.argsFrom:])
}

// redconVerdict parses data with redcon's own reader: the number of complete
// commands, and the protocol error that stopped it (nil at end of input).
func redconVerdict(data []byte) (commands int, protocolErr error) {
	rd := redcon.NewReader(bytes.NewReader(data))
	for {
		cmds, err := rd.ReadCommands()
		commands += len(cmds)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return commands, nil
			}
			return commands, err
		}
	}
}

// FuzzRequestScanner checks the guard against redcon's parser: whatever the
// guard lets through parses in redcon, whatever it refuses as malformed
// redcon refuses too, with the same message; and the verdict does not depend
// on how the bytes are split into reads.
func FuzzRequestScanner(f *testing.F) {
	for _, seed := range []string{
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"PING\r\n",
		"SET a \"b c\"\r\n",
		"*0\r\n",
		"*1\r\n$-1\r\n",
		"*1\r\n:1\r\n",
		"*2\r\n$1\r\na\r\n$1\r\nbX\r\n",
		"*+2\r\n$-0\r\n\r\n$01\r\nx\r\n",
		"*1\r\n$4\r\nPING\r",
		"\r\n\r\n*1\r\n$1\r\nx\r\n",
		// Under the tight caps, the last header crosses maxRequestBytes.
		"*4\r\n$8\r\n12345678\r\n$8\r\n12345678\r\n$1\r\nx\r\n$9\r\n",
	} {
		f.Add([]byte(seed), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		boundary, err := scanAll(data, testLimits, 0)
		chunked, chunkedErr := scanAll(data, testLimits, int(chunk))
		require.Equal(t, boundary, chunked, "boundary depends on the read sizes")
		require.Equal(t, err, chunkedErr, "verdict depends on the read sizes")
		// Under tight caps too: one byte per read never takes fastHeader.
		tight := RequestLimits{MaxBulkLen: 8, MaxArgs: 4, MaxRequestBytes: 40}
		tightBoundary, tightErr := scanAll(data, tight, 0)
		byteBoundary, byteErr := scanAll(data, tight, 1)
		require.Equal(t, byteBoundary, tightBoundary, "boundary under tight caps depends on the read sizes")
		require.Equal(t, byteErr, tightErr, "verdict under tight caps depends on the read sizes")
		if err != nil && err.Limit {
			return // a cap redcon does not have
		}

		// Everything the guard passed on is complete, valid commands.
		_, prefixErr := redconVerdict(data[:boundary])
		if prefixErr != nil && strings.Contains(prefixErr.Error(), "unbalanced quotes") {
			return // inline quoting is left to redcon, which answers it itself
		}
		require.NoError(t, prefixErr, "redcon refuses what the guard let through: %q", data[:boundary])

		_, fullErr := redconVerdict(data)
		if fullErr != nil && strings.Contains(fullErr.Error(), "unbalanced quotes") {
			return
		}
		if err == nil {
			require.NoError(t, fullErr, "redcon refuses what the guard accepts: %q", data)
			return
		}
		require.Error(t, fullErr, "the guard refuses what redcon accepts: %q (%s)", data, err.Msg)
		want := strings.NewReplacer("\r", " ", "\n", " ").Replace(fullErr.Error())
		require.Equal(t, want, err.Msg)
	})
}
