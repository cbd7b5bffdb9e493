// Package failover follows a Kvrocks master through a graceful failover
// (CLUSTERX FAILOVER, apache/kvrocks#3295) so the proxy can hold a shard's
// writes while the master refuses them.
package failover

import (
	"errors"
	"fmt"

	"kvproxy/internal/resp"
)

// Phase is a master's cluster_failover_state as printed in CLUSTER INFO.
type Phase string

// The phases of CLUSTERX FAILOVER, in the order a master moves through them:
// none → started → check_slave → pause_write → wait_sync → switching →
// success | failed. failed may follow any phase after none.
const (
	PhaseNone       Phase = "none"
	PhaseStarted    Phase = "started"
	PhaseCheckSlave Phase = "check_slave"
	PhasePauseWrite Phase = "pause_write"
	PhaseWaitSync   Phase = "wait_sync"
	PhaseSwitching  Phase = "switching"
	PhaseSuccess    Phase = "success"
	PhaseFailed     Phase = "failed"
)

// HoldsWrites reports whether the master answers writes with TRYAGAIN in p.
func (p Phase) HoldsWrites() bool {
	return p == PhasePauseWrite || p == PhaseWaitSync || p == PhaseSwitching
}

// Final reports whether p ends a failover: the master changes it only when
// a newer topology arrives.
func (p Phase) Final() bool { return p == PhaseSuccess || p == PhaseFailed }

var phases = [...]Phase{PhaseNone, PhaseStarted, PhaseCheckSlave, PhasePauseWrite, PhaseWaitSync, PhaseSwitching, PhaseSuccess, PhaseFailed}

var (
	// ErrNoFailoverState means CLUSTER INFO has no cluster_failover_state
	// line: the node is a replica, or a Kvrocks without CLUSTERX FAILOVER.
	ErrNoFailoverState = errors.New("failover: CLUSTER INFO has no cluster_failover_state line")
	// ErrUnknownPhase means cluster_failover_state holds a value this
	// package does not know.
	ErrUnknownPhase = errors.New("failover: unknown cluster_failover_state")
)

// ParsePhase reads the cluster_failover_state field of a CLUSTER INFO body
// (lines as resp.InfoField reads them). The first such field wins.
func ParsePhase(info []byte) (Phase, error) {
	value, ok := resp.InfoField(info, "cluster_failover_state")
	if !ok {
		return "", ErrNoFailoverState
	}
	for _, p := range phases {
		if string(value) == string(p) { // compared without a copy: polls stay allocation-free
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownPhase, value)
}
