package resp

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// inlineCases are inline lines and the arguments Redis (sdssplitargs, as in
// Redis 7.0) makes of them; nil for "Protocol error: unbalanced quotes in
// request". The proxy's TestInlineCommandsParsedAsRedisDoes sends the same
// lines to a real redis-server.
var inlineCases = []struct {
	line string
	args []string
}{
	{`ECHO "a\x41"`, []string{"ECHO", "aA"}},
	{`ECHO "\x41\x4a\x4A\xff\x00z"`, []string{"ECHO", "AJJ\xff\x00z"}},
	{`ECHO "\x4g" "\xZZ" "\x"`, []string{"ECHO", "x4g", "xZZ", "x"}},
	{`ECHO "\n\r\t\b\a\\\"\q"`, []string{"ECHO", "\n\r\t\b\a\\\"q"}},
	{`ECHO 'a\'b' 'c\nd' 'e"f' '\x41'`, []string{"ECHO", "a'b", `c\nd`, `e"f`, `\x41`}},
	{`ECHO '\\'`, nil}, // the second backslash escapes the quote
	{`ECHO a"b c"`, []string{"ECHO", "ab c"}},
	{`ECHO a'b c' d`, []string{"ECHO", "ab c", "d"}},
	{`ECHO "" ''`, []string{"ECHO", "", ""}},
	{"ECHO \"a\"\tb", []string{"ECHO", "a", "b"}},
	{"ECHO \"a\"\vb", []string{"ECHO", "a", "b"}},
	{"ECHO\ta\rb  c ", []string{"ECHO", "a", "b", "c"}},
	{"ECHO a\vb\fc", []string{"ECHO", "a\vb\fc"}},
	{"\v\f ECHO a", []string{"ECHO", "a"}},
	{"ECHO a\x00b c", []string{"ECHO", "a"}},
	{`ECHO "a" `, []string{"ECHO", "a"}},
	{`   `, []string{}},
	{`ECHO "a"b`, nil},
	{`ECHO 'a'b`, nil},
	{`ECHO a"b`, nil},
	{`ECHO "abc`, nil},
	{`ECHO 'abc`, nil},
	{`ECHO "a\`, nil},
	{`ECHO 'a\'`, nil},
	{"ECHO \"a\x00\"", nil},
}

func TestParseInlineAsRedis(t *testing.T) {
	for _, tc := range inlineCases {
		for _, end := range []string{"\n", "\r\n"} {
			cmd, err := ParseInline([]byte(tc.line + end))
			if tc.args == nil {
				assert.Equal(t, errUnbalancedQuotes, err, "%q", tc.line)
				continue
			}
			require.Nil(t, err, "%q", tc.line)
			got := []string{}
			for _, a := range cmd.Args {
				got = append(got, string(a))
			}
			assert.Equal(t, tc.args, got, "%q", tc.line)
			if len(got) > 0 {
				assert.Equal(t, string(AppendCommand(nil, cmd.Args...)), string(cmd.Raw), "%q", tc.line)
			}
		}
	}
}

// quoteInline writes arg as redis-cli and sdscatrepr do: in double quotes,
// with \\, \" and the usual escapes, other bytes outside printable ASCII as
// \xHH.
func quoteInline(arg []byte) []byte {
	out := []byte{'"'}
	for _, c := range arg {
		switch {
		case c == '\\' || c == '"':
			out = append(out, '\\', c)
		case c == '\n':
			out = append(out, `\n`...)
		case c == '\r':
			out = append(out, `\r`...)
		case c == '\t':
			out = append(out, `\t`...)
		case c == '\a':
			out = append(out, `\a`...)
		case c == '\b':
			out = append(out, `\b`...)
		case c < ' ' || c > '~':
			out = fmt.Appendf(out, `\x%02x`, c)
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

// FuzzParseInline: any line parses without harm, to a Raw that encodes its
// Args; a line without quotes or NUL is split at Redis' blanks; arguments
// quoted as redis-cli quotes them come back as they were.
func FuzzParseInline(f *testing.F) {
	for _, tc := range inlineCases {
		f.Add([]byte(tc.line))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		line := append(bytes.Clone(data), '\n')
		cmd, err := ParseInline(line)
		if err == nil && len(cmd.Args) > 0 {
			require.Equal(t, AppendCommand(nil, cmd.Args...), cmd.Raw)
		}
		if !bytes.ContainsAny(data, "\"'\x00") {
			require.Nil(t, err)
			body := bytes.TrimSuffix(data, []byte{'\r'})
			want := bytes.FieldsFunc(body, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' })
			var got [][]byte
			for _, w := range want {
				// Leading \v and \f are blanks too; inside an argument not.
				if w = bytes.TrimLeft(w, "\v\f"); len(w) > 0 {
					got = append(got, w)
				}
			}
			require.Equal(t, len(got), len(cmd.Args), "%q", data)
			for k := range got {
				require.Equal(t, got[k], cmd.Args[k], "%q", data)
			}
		}

		// The data as arguments, split at 0xfe, each quoted.
		args := bytes.Split(data, []byte{0xfe})
		var quoted []byte
		for _, a := range args {
			quoted = append(append(quoted, quoteInline(a)...), ' ')
		}
		cmd, err = ParseInline(append(quoted, '\n'))
		require.Nil(t, err, "%q", quoted)
		require.Equal(t, len(args), len(cmd.Args), "%q", quoted)
		for k := range args {
			require.Equal(t, args[k], cmd.Args[k], "%q", quoted)
		}
	})
}
