package kvsim

import (
	"sync"
	"sync/atomic"
	"time"
)

// pauseGate implements CLIENT PAUSE as released Kvrocks does (apache/kvrocks
// #3378, modelled on Redis): paused commands block, with no error, until the
// pause ends or CLIENT UNPAUSE. A WRITE pause lets reads through; an ALL pause
// blocks every client command but those pauseExempt lists. Replication
// streams never pass through it.
type pauseGate struct {
	// active is the lock-free fast path: false means no pause is set.
	active atomic.Bool
	mu     sync.Mutex
	// allUntil and writeUntil are the ends of the ALL and WRITE pauses; a new
	// pause never shortens a running one of the same kind.
	allUntil, writeUntil time.Time
	// changed closes when the pause is lifted, waking every blocked command.
	changed chan struct{}
}

// blocks reports whether a pause currently applies to a command that writes
// (write) or not.
func (p *pauseGate) blocks(write bool) bool {
	if !p.active.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, blocked := p.deadlineLocked(write, time.Now())
	return blocked
}

// deadlineLocked is when the pause applying to the command ends; it lifts
// expired pauses.
func (p *pauseGate) deadlineLocked(write bool, now time.Time) (time.Time, bool) {
	if !now.Before(p.allUntil) && !now.Before(p.writeUntil) {
		p.liftLocked()
		return time.Time{}, false
	}
	if now.Before(p.allUntil) {
		if write && p.writeUntil.After(p.allUntil) {
			return p.writeUntil, true
		}
		return p.allUntil, true
	}
	return p.writeUntil, write
}

// wait blocks while a pause applies to the command. It returns false if the
// node is killed meanwhile.
func (p *pauseGate) wait(n *Node, write bool) bool {
	if !p.active.Load() {
		return true
	}
	run := n.currentRun()
	if run == nil {
		return false
	}
	for {
		p.mu.Lock()
		until, blocked := p.deadlineLocked(write, time.Now())
		changed := p.changed
		p.mu.Unlock()
		if !blocked {
			return true
		}
		timer := time.NewTimer(time.Until(until))
		select {
		case <-changed:
		case <-timer.C:
		case <-run.stop:
			timer.Stop()
			return false
		}
		timer.Stop()
	}
}

// pause starts (or extends) a pause of d; all selects ALL rather than WRITE.
func (p *pauseGate) pause(d time.Duration, all bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	end := time.Now().Add(d)
	if all {
		if end.After(p.allUntil) {
			p.allUntil = end
		}
	} else if end.After(p.writeUntil) {
		p.writeUntil = end
	}
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	p.active.Store(true)
}

// reset lifts every pause (CLIENT UNPAUSE, or a restart).
func (p *pauseGate) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.liftLocked()
}

func (p *pauseGate) liftLocked() {
	p.allUntil, p.writeUntil = time.Time{}, time.Time{}
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
	p.active.Store(false)
}

// drainWrites waits until no write that passed the pause check is still
// executing: what Redis' single thread guarantees when CLIENT PAUSE returns.
// Writes that start meanwhile see the pause. It cannot hang: no write blocks
// while holding the gate.
func (n *Node) drainWrites() {
	n.writeGate.Lock() // granted once every holder has released it
	n.writeGate.Unlock()
}
