package resp

import (
	"iter"
	"strings"
)

// INFO and CLUSTER INFO bodies are "key:value" lines; Redis and Kvrocks end
// every line with CRLF. Here a line ends at LF or at the end of the text, and
// one CR right before that end belongs to the line end, so a bare LF is
// accepted too. Any other CR (a second one, say) is part of the value: the
// servers never send it, and a value is not guessed at. A line is a field
// when it holds a ':'; the key is what precedes the first ':'. Section
// headers ("# Replication") and blank lines hold none.

// InfoField returns the value of the first field named key (a key holding
// ':' is never found). It does not allocate, so a poll can read a field of
// every reply.
func InfoField[T ~string | ~[]byte](text T, key string) (value T, ok bool) {
	if strings.IndexByte(key, ':') >= 0 {
		return value, false
	}
	for len(text) > 0 {
		var line T
		line, text = infoLine(text)
		if len(line) > len(key) && line[len(key)] == ':' && hasPrefix(line, key) {
			return line[len(key)+1:], true
		}
	}
	return value, false
}

// InfoFields yields the key and value of every field, in order.
func InfoFields[T ~string | ~[]byte](text T) iter.Seq2[T, T] {
	return func(yield func(T, T) bool) {
		for len(text) > 0 {
			var line T
			line, text = infoLine(text)
			for i := 0; i < len(line); i++ {
				if line[i] == ':' {
					if !yield(line[:i], line[i+1:]) {
						return
					}
					break
				}
			}
		}
	}
}

// infoLine splits the first line off text, without its line end.
func infoLine[T ~string | ~[]byte](text T) (line, rest T) {
	end := 0
	for end < len(text) && text[end] != '\n' {
		end++
	}
	line, rest = text[:end], text[end:]
	if len(rest) > 0 {
		rest = rest[1:]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// hasPrefix compares byte by byte: a conversion in generic code may copy.
func hasPrefix[T ~string | ~[]byte](s T, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if s[i] != prefix[i] {
			return false
		}
	}
	return true
}
