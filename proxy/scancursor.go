package proxy

import (
	"strconv"
	"sync"

	"kvproxy/internal/resp"
)

// A proxy SCAN cursor names the master being walked and that master's own
// cursor. Redis cursors are small numbers, so both fit in the cursor itself:
// the master index in the low bits, the backend cursor above them. Kvrocks
// cursors use all 64 bits (or are not numbers at all, without
// redis-cursor-compatible), so those are kept in a bounded table, as Kvrocks
// keeps its own, and the proxy cursor refers to an entry by number.

const (
	// scanMasterBits is how many low bits of an inline cursor hold the
	// master index.
	scanMasterBits = 10
	scanMaxMasters = 1 << scanMasterBits
	// scanInlineLimit bounds the backend cursors carried inline; the top
	// bit stays clear, marking the cursor as inline.
	scanInlineLimit = 1 << (63 - scanMasterBits)
	// scanTableBit marks a cursor that refers to the table.
	scanTableBit = 1 << 63
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

// scanCursors holds the cursors that do not fit inline, shared by every
// client so that a scan may continue on another connection.
type scanCursors struct {
	mu      sync.Mutex
	counter uint64
	entries []scanTableEntry
}

type scanTableEntry struct {
	id  uint64
	pos scanPosition
}

// encode returns the proxy cursor for pos.
func (t *scanCursors) encode(pos scanPosition) uint64 {
	if n, ok := resp.ParseUint([]byte(pos.cursor)); ok && n < scanInlineLimit && pos.cursor == strconv.FormatUint(n, 10) {
		return n<<scanMasterBits | uint64(pos.master)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.entries == nil {
		t.entries = make([]scanTableEntry, scanTableSize)
	}
	t.counter++
	id := scanTableBit | t.counter&(scanTableBit-1)
	t.entries[id%scanTableSize] = scanTableEntry{id: id, pos: pos}
	return id
}

// decode returns the position a proxy cursor names; ok is false for a
// table cursor that is unknown or was overwritten.
func (t *scanCursors) decode(cursor uint64) (pos scanPosition, ok bool) {
	if cursor&scanTableBit == 0 {
		return scanPosition{
			master: int(cursor & (scanMaxMasters - 1)),
			cursor: strconv.FormatUint(cursor>>scanMasterBits, 10),
		}, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.entries == nil {
		return scanPosition{}, false
	}
	e := t.entries[cursor%scanTableSize]
	return e.pos, e.id == cursor
}
