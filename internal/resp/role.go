package resp

import (
	"net"
	"strconv"
)

// RoleMaster reads the master's address from a replica's ROLE reply:
// "slave", host, port, state, offset.
func RoleMaster(frame []byte) (addr string, ok bool) {
	if len(frame) == 0 || frame[0] != '*' {
		return "", false
	}
	line, next, ok := ReplyLine(frame)
	if !ok {
		return "", false
	}
	if n, ok := ParseInt(line); !ok || n < 3 {
		return "", false
	}
	role, next, ok := BulkAt(frame, next)
	if !ok || string(role) != "slave" {
		return "", false
	}
	host, next, ok := BulkAt(frame, next)
	if !ok || len(host) == 0 || next >= len(frame) || frame[next] != ':' {
		return "", false
	}
	line, _, ok = ReplyLine(frame[next:])
	if !ok {
		return "", false
	}
	port, ok := ParseInt(line)
	if !ok || port <= 0 || port > 65535 {
		return "", false
	}
	addr = net.JoinHostPort(string(host), strconv.FormatInt(port, 10))
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", false // a host no address can hold ("[", say): nothing to dial
	}
	return addr, true
}
