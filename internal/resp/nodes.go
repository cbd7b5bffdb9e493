package resp

import (
	"fmt"
	"iter"
	"strings"
)

// NodeLine is one line of CLUSTER NODES, its fields as the server wrote
// them (Redis' and Kvrocks' format):
//
//	<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
//
// Nothing is checked or converted: each reader keeps its own policy (which
// addresses it can dial, which flags it skips, how it reads a number).
type NodeLine struct {
	ID string
	// Addr is the address as announced, bus port and hostname included
	// ("127.0.0.1:30001@31001,node-1"); its host is empty when the node
	// does not know its own IP yet. See HostPort.
	Addr string
	// Flags is comma-separated: myself, master, slave, fail?, fail,
	// handshake, noaddr, nofailover, noflags. See HasFlag.
	Flags    string
	MasterID string // "-" for a master
	PingSent string
	PongRecv string
	// ConfigEpoch is a decimal number in a well-formed line.
	ConfigEpoch string
	LinkState   string // connected or disconnected
	// Slots are the node's slots ("0-5460", "5461") followed, on the myself
	// line of a Redis master, by migrating ("[93->-<node id>]") and
	// importing ("[93-<-<node id>]") markers.
	Slots []string
}

// nodeLineFields is how many fields precede the slots.
const nodeLineFields = 8

// ClusterNodes yields each line of a CLUSTER NODES body that holds a field,
// fields split at white space (as strings.Fields does; a CR before the LF is
// white space too). A line with fewer than 8 fields yields an error wrapping
// ErrProtocol that quotes the line (without its line end), and the lines after it are still read.
func ClusterNodes(text string) iter.Seq2[NodeLine, error] {
	return func(yield func(NodeLine, error) bool) {
		for line := range strings.Lines(text) {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if len(f) < nodeLineFields {
				err := fmt.Errorf("%w: CLUSTER NODES line has %d fields, want at least %d: %q",
					ErrProtocol, len(f), nodeLineFields, clipLine(line))
				if !yield(NodeLine{}, err) {
					return
				}
				continue
			}
			n := NodeLine{ID: f[0], Addr: f[1], Flags: f[2], MasterID: f[3], PingSent: f[4], PongRecv: f[5],
				ConfigEpoch: f[6], LinkState: f[7], Slots: f[nodeLineFields:]}
			if !yield(n, nil) {
				return
			}
		}
	}
}

// clipLine is line without its line end, clipped for an error message.
func clipLine(line string) string {
	line = strings.TrimRight(line, "\r\n")
	return line[:min(len(line), 64)]
}

// HostPort returns Addr without its bus port and hostname: "host:port",
// the host possibly empty.
func (n NodeLine) HostPort() string {
	addr, _, _ := strings.Cut(n.Addr, "@")
	addr, _, _ = strings.Cut(addr, ",")
	return addr
}

// HasFlag reports whether Flags holds flag.
func (n NodeLine) HasFlag(flag string) bool {
	for f := range strings.SplitSeq(n.Flags, ",") {
		if f == flag {
			return true
		}
	}
	return false
}
