package resp

import (
	"bytes"
	"net"
	"strconv"
	"strings"
)

// ClusterSlots is the number of hash slots of a Redis or Kvrocks cluster,
// the bound of a MOVED or ASK's slot.
const ClusterSlots = 16384

// ErrorCode returns the first word of an error reply ("-TRYAGAIN ..." →
// "TRYAGAIN"), nil for any other reply.
func ErrorCode(reply []byte) []byte {
	if len(reply) < 2 || reply[0] != '-' {
		return nil
	}
	end := bytes.IndexAny(reply, " \r")
	if end < 1 {
		return nil
	}
	return reply[1:end]
}

// MovedTarget returns the address of a "-MOVED <slot> <host>:<port>" reply
// (an empty host is that of from, the node that replied); ok is false for
// any other reply.
func MovedTarget(reply []byte, from string) (addr string, ok bool) {
	host, _, _ := net.SplitHostPort(from)
	kind, _, addr := ParseRedirect(reply, host)
	if kind != RedirectMoved {
		return "", false
	}
	return addr, true
}

// IsRedirect reports whether reply is a MOVED or ASK, which a client must
// never see.
func IsRedirect(reply []byte) bool {
	return bytes.HasPrefix(reply, []byte("-MOVED ")) || bytes.HasPrefix(reply, []byte("-ASK "))
}

// RedirectKind classifies a reply that redirects a keyed command.
type RedirectKind uint8

const (
	NotRedirect RedirectKind = iota
	RedirectMoved
	RedirectAsk
)

// ParseRedirect recognises "-MOVED <slot> <host:port>" and "-ASK <slot>
// <host:port>" error replies. An empty host means the host of the node that
// replied, hostOfReplier.
func ParseRedirect(reply []byte, hostOfReplier string) (kind RedirectKind, slot int, addr string) {
	var rest []byte
	switch {
	case bytes.HasPrefix(reply, []byte("-MOVED ")):
		kind, rest = RedirectMoved, reply[len("-MOVED "):]
	case bytes.HasPrefix(reply, []byte("-ASK ")):
		kind, rest = RedirectAsk, reply[len("-ASK "):]
	default:
		return NotRedirect, 0, ""
	}
	rest, ok := bytes.CutSuffix(rest, []byte("\r\n"))
	if !ok {
		return NotRedirect, 0, ""
	}
	slotText, target, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return NotRedirect, 0, ""
	}
	if len(slotText) == 0 || len(slotText) > 5 || !allDigits(slotText) {
		return NotRedirect, 0, ""
	}
	slot, _ = strconv.Atoi(string(slotText))
	if slot >= ClusterSlots {
		return NotRedirect, 0, ""
	}
	host, port, err := net.SplitHostPort(string(target))
	if err != nil || port == "" || strings.ContainsAny(port, " \r\n") || strings.ContainsAny(host, " \r\n") {
		return NotRedirect, 0, ""
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return NotRedirect, 0, ""
	}
	if host == "" {
		host = hostOfReplier
	}
	return kind, slot, net.JoinHostPort(host, port)
}
