package router

import (
	"kvproxy/internal/resp"
)

// Refusal is how a backend refused a command without running it: the one
// classification behind the router's resends and the proxy's dedicated
// connections'.
type Refusal uint8

const (
	// NotRefused: the reply is the command's own, an error included.
	NotRefused Refusal = iota
	// RefusedTryAgain: a failover's write pause, or a slot migration's
	// write-forbidden phase.
	RefusedTryAgain
	// RefusedMoved and RefusedAsk: another node serves the slot, for good
	// or for this command (ASK).
	RefusedMoved
	RefusedAsk
	// RefusedNotServing: CLUSTERDOWN, READONLY, LOADING or MASTERDOWN: the
	// node serves the slot no more (a role swap) or not yet (a resync, a
	// restarted Redis rejoining its cluster); the topology may say who does.
	RefusedNotServing
)

// RefusalOf classifies a backend reply.
func RefusalOf(reply []byte) Refusal {
	switch string(resp.ErrorCode(reply)) {
	case "TRYAGAIN":
		return RefusedTryAgain
	case "MOVED":
		return RefusedMoved
	case "ASK":
		return RefusedAsk
	case "CLUSTERDOWN", "READONLY", "LOADING", "MASTERDOWN":
		return RefusedNotServing
	}
	return NotRefused
}
