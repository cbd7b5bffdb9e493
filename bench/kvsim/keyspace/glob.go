package keyspace

// globMatch matches like Redis' stringmatchlen (KEYS, SCAN MATCH): '*', '?',
// '[...]' with '^' and ranges, '\' escapes; an unterminated '[' set ends at
// the end of the pattern.
func globMatch(pattern, str []byte) bool {
	skipLonger := false
	return globMatchAt(pattern, str, &skipLonger, 0)
}

// GlobMatch is globMatch for the node's Pub/Sub patterns, which match like
// KEYS patterns (Kvrocks' util::StringMatch, a port of stringmatchlen).
func GlobMatch(pattern, str []byte) bool { return globMatch(pattern, str) }

func globMatchAt(pattern, str []byte, skipLonger *bool, nesting int) bool {
	// Reads past the end see 0, as C sees the string's terminator.
	at := func(i int) byte {
		if i < len(pattern) {
			return pattern[i]
		}
		return 0
	}
	if nesting > 1000 {
		return false
	}
	for len(pattern) > 0 && len(str) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 0 && at(1) == '*' {
				pattern = pattern[1:]
			}
			if len(pattern) == 1 {
				return true
			}
			for len(str) > 0 {
				if globMatchAt(pattern[1:], str, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				str = str[1:]
			}
			*skipLonger = true
			return false
		case '?':
			str = str[1:]
		case '[':
			pattern = pattern[1:]
			not := at(0) == '^'
			if not {
				pattern = pattern[1:]
			}
			match := false
			c := int8(str[0])
			for {
				if at(0) == '\\' && len(pattern) >= 2 {
					pattern = pattern[1:]
					if pattern[0] == str[0] {
						match = true
					}
				} else if at(0) == ']' {
					break
				} else if len(pattern) == 0 {
					// Unterminated set: step back onto its last byte, which the
					// loop's final advance consumes.
					pattern = pattern[:0:0]
					break
				} else if len(pattern) >= 3 && pattern[1] == '-' {
					start, end := int8(pattern[0]), int8(pattern[2])
					if start > end {
						start, end = end, start
					}
					pattern = pattern[2:]
					if c >= start && c <= end {
						match = true
					}
				} else if pattern[0] == str[0] {
					match = true
				}
				pattern = pattern[1:]
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			str = str[1:]
			if len(pattern) == 0 {
				return len(str) == 0 // the unterminated set consumed the whole pattern
			}
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			if pattern[0] != str[0] {
				return false
			}
			str = str[1:]
		default:
			if pattern[0] != str[0] {
				return false
			}
			str = str[1:]
		}
		pattern = pattern[1:]
		if len(str) == 0 {
			for len(pattern) > 0 && pattern[0] == '*' {
				pattern = pattern[1:]
			}
			break
		}
	}
	return len(pattern) == 0 && len(str) == 0
}
