package proxy

import (
	"strconv"
	"sync"

	"kvproxy/internal/resp"
)

// A proxy SCAN cursor names the master being walked and that master's own
// cursor. Every proxy cursor is below 2^53, so clients that hold cursors as
// JavaScript numbers (node-redis 4) or doubles give back what they got.
//
// Bit 0 says which of two forms a cursor has, bits 1-10 are a check of the
// rest, and bits 11-52 are the payload:
//   - inline (0): the master index in the payload's low 10 bits, the
//     master's cursor above them (below 2^32). Redis Cluster's cursors are
//     small numbers and fit.
//   - table (1): the payload numbers an entry of a bounded table that holds
//     the position. Kvrocks cursors use all 64 bits (or are not numbers at
//     all, without redis-cursor-compatible); the table keeps the latest of
//     them, as Kvrocks keeps its own.
//
// The check makes a forged or garbled cursor (one whose master index names
// no master, say) an "invalid cursor" error, not a silent end of the scan,
// 1023 times in 1024; a table cursor must also match its entry exactly. The
// check is a fixed function, so inline cursors stay valid across proxy
// restarts and proxies; table cursors belong to the proxy that issued them.

const (
	scanCursorLimit = 1 << 53
	scanCheckBits   = 10
	scanPayloadAt   = 1 + scanCheckBits
	// scanMasterBits is how many payload bits of an inline cursor hold the
	// master index: SCAN walks at most scanMaxMasters masters.
	scanMasterBits = 10
	scanMaxMasters = 1 << scanMasterBits
	// scanInlineLimit bounds the backend cursors carried inline.
	scanInlineLimit = scanCursorLimit >> (scanPayloadAt + scanMasterBits)
	// scanTableSize is how many table cursors stay valid at once; an older
	// one is answered with "invalid cursor", like an expired Kvrocks cursor.
	scanTableSize = 16384
)

// scanPosition is where a SCAN through the proxy stands.
type scanPosition struct {
	master int
	// cursor is the master's cursor, as it sent it.
	cursor string
}

// scanCursor assembles a cursor of the form (0 inline, 1 table) and payload
// with its check: the top bits of a multiplicative hash, 0 for payload 0 of
// an inline cursor, so that cursor 0 starts the scan.
func scanCursor(form, payload uint64) uint64 {
	const fibonacci = 0x9e3779b97f4a7c15
	check := (payload<<1 | form) * fibonacci >> (64 - scanCheckBits)
	return payload<<scanPayloadAt | check<<1 | form
}

func inlineCursor(master int, backend uint64) uint64 {
	return scanCursor(0, backend<<scanMasterBits|uint64(master))
}

// scanCursors holds the cursors that do not fit inline, shared by every
// client so that a scan may continue on another connection.
type scanCursors struct {
	mu      sync.Mutex
	counter uint64
	entries []scanTableEntry
}

type scanTableEntry struct {
	cursor uint64
	pos    scanPosition
}

// encode returns the proxy cursor for pos; pos.master is below
// scanMaxMasters.
func (t *scanCursors) encode(pos scanPosition) uint64 {
	if n, ok := resp.ParseUint([]byte(pos.cursor)); ok && n < scanInlineLimit && pos.cursor == strconv.FormatUint(n, 10) {
		return inlineCursor(pos.master, n)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.entries == nil {
		t.entries = make([]scanTableEntry, scanTableSize)
	}
	// 2^42 table cursors: the counter never wraps.
	t.counter++
	cursor := scanCursor(1, t.counter)
	t.entries[t.counter%scanTableSize] = scanTableEntry{cursor: cursor, pos: pos}
	return cursor
}

// decode returns the position a proxy cursor names; ok is false for a
// cursor the proxy did not issue, or a table cursor since overwritten.
func (t *scanCursors) decode(cursor uint64) (pos scanPosition, ok bool) {
	form, payload := cursor&1, cursor>>scanPayloadAt
	if cursor >= scanCursorLimit || cursor != scanCursor(form, payload) {
		return scanPosition{}, false
	}
	if form == 0 {
		return scanPosition{
			master: int(payload & (scanMaxMasters - 1)),
			cursor: strconv.FormatUint(payload>>scanMasterBits, 10),
		}, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.entries == nil {
		return scanPosition{}, false
	}
	e := t.entries[payload%scanTableSize]
	return e.pos, e.cursor == cursor
}
