package proxy

// The wording of the errors the proxy answers commands with, Redis' own
// where Redis has one.

const errNoAuth = "NOAUTH Authentication required."

// errNoMasters answers commands that need a master when none is known.
const errNoMasters = "CLUSTERDOWN The cluster is down"

// unknownCommandError is Redis 7's wording, arguments quoted after the name
// until 128 bytes of them are shown.
func unknownCommandError(args [][]byte) string {
	b := []byte("ERR unknown command '")
	b = appendSanitized(b, args[0], 128)
	b = append(b, "', with args beginning with: "...)
	shown := 0
	for _, arg := range args[1:] {
		if shown >= 128 {
			break
		}
		before := len(b)
		b = append(b, '\'')
		b = appendSanitized(b, arg, 128-shown)
		b = append(b, "' "...)
		shown += len(b) - before
	}
	return string(b)
}

// appendSanitized appends at most limit bytes of s with line breaks blanked,
// as Redis does to keep error replies on one line.
func appendSanitized(b, s []byte, limit int) []byte {
	if len(s) > limit {
		s = s[:limit]
	}
	for _, c := range s {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

func wrongArgsError(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}

func unknownSubcommandError(args [][]byte) string {
	b := []byte("ERR unknown subcommand '")
	b = appendSanitized(b, args[1], 128)
	b = append(b, "'. Try "...)
	b = appendUpper(b, args[0])
	b = append(b, " HELP."...)
	return string(b)
}

func unsupportedError(args [][]byte) string {
	b := []byte("ERR command '")
	b = appendUpper(b, args[0])
	if info := LookupCommand(args[0]); info != nil && info.IsContainer() && len(args) > 1 {
		b = append(b, ' ')
		b = appendUpper(b, args[1])
	}
	b = append(b, "' is not supported by kvproxy"...)
	return string(b)
}

func appendUpper(b, s []byte) []byte {
	for _, c := range s[:min(len(s), 128)] {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}
