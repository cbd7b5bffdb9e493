package proxy

import (
	"slices"
	"sync"

	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// Multi-key commands whose keys span slots are split into one sub-command
// per slot, and the replies merged (merge.go). A command of a million keys
// must not cost much more than its size: the keys' slots and parts take two
// bytes per key, each sub-command is written once into a buffer of its exact
// size, and a huge command is sent in waves of slots so its sub-commands are
// not all out at once.

// splittable commands are split by slot and their replies merged. Every
// argument after the name is a key, or for MSET a key and its value.
func splittable(cmd *CommandInfo) bool {
	return cmd == cmdMGET || cmd == cmdMSET || cmd == cmdDEL || cmd == cmdEXISTS || cmd == cmdUNLINK || cmd == cmdTOUCH
}

// splitWaveBytes bounds the sub-commands of one command that are out at
// once. A larger command is sent in waves of whole slots, each answered
// before the next is built: its sub-commands then cost this much (and as
// much again in the router's connection buffers) rather than its size.
const splitWaveBytes = 8 << 20

// splitPart is one sub-command of a split command: the keys of one slot.
type splitPart struct {
	slot uint16
	keys int
	// size is the bytes of the sub-command, encoded.
	size int
}

// partTables map a slot to 1 + its part while a command is split; zero
// otherwise. Shared, as they are too big to keep per session.
var partTables = sync.Pool{New: func() any { return new([router.SlotCount]uint16) }}

// multiKey routes a splittable command to the master of its keys' slot, or
// splits it when they span slots. Its keys' slots are computed once, into
// keyParts, where the split turns them into parts.
func (s *session) multiKey(cmd *CommandInfo, c *redcon.Command) {
	args := c.Args
	step := 1
	if cmd == cmdMSET {
		step = 2
	}
	huge := len(c.Raw) > splitWaveBytes && !s.asyncOK
	if huge {
		// Its waves are answered right away: the commands before it first.
		s.runPending()
	}
	keysFrom := len(s.keyParts)
	s.keyParts = slices.Grow(s.keyParts, (len(args)-1+step-1)/step)
	first := router.Slot(args[1])
	same := true
	for k := 1; k < len(args); k += step {
		slot := router.Slot(args[k])
		s.keyParts = append(s.keyParts, slot)
		same = same && slot == first
	}
	switch {
	case same:
		s.keyParts = s.keyParts[:keysFrom]
		s.route(c.Raw, int(first), cmd.Flags&FlagReadOnly != 0)
		return
	case cmd == cmdMSET && len(args)%2 == 0:
		s.keyParts = s.keyParts[:keysFrom]
		s.replyError(wrongArgsError(cmd.Name)) // a key without a value
		return
	case huge:
		s.splitInWaves(cmd, args, step, keysFrom)
	default:
		s.split(cmd, args, step, keysFrom)
	}
	if len(c.Raw) > maxKeptBuffer {
		// Its parts hold copies: let a huge command's buffer go
		// (commandReader.detach).
		clear(c.Args)
		*c = redcon.Command{}
	}
}

// groupKeys turns the slots of a command's keys, in place, into the index
// of their part, and returns the parts in the order their slots first
// occur: a key repeated in MSET stays in order, so the last value wins.
func (s *session) groupKeys(keys []uint16, args [][]byte, step int) []splitPart {
	table := partTables.Get().(*[router.SlotCount]uint16)
	parts := s.parts[:0]
	for k, slot := range keys {
		p := table[slot]
		if p == 0 {
			parts = append(parts, splitPart{slot: slot, size: bulkSize(len(args[0]))})
			p = uint16(len(parts))
			table[slot] = p
		}
		keys[k] = p - 1
		part := &parts[p-1]
		part.keys++
		for a := 1 + k*step; a <= k*step+step; a++ {
			part.size += bulkSize(len(args[a]))
		}
	}
	for i := range parts {
		table[parts[i].slot] = 0
		parts[i].size += 1 + decimalDigits(1+parts[i].keys*step) + 2 // its array header
	}
	partTables.Put(table)
	s.parts = parts
	return parts
}

// split sends one sub-command per slot, each written once into a buffer of
// its exact size, and merges the replies in argument order.
func (s *session) split(cmd *CommandInfo, args [][]byte, step, keysFrom int) {
	keys := s.keyParts[keysFrom:]
	parts := s.groupKeys(keys, args, step)
	first := len(s.reqs)
	for _, part := range parts {
		q, i := s.newRequest()
		buf := slices.Grow(s.owned[i][:0], part.size)
		buf = resp.AppendArray(buf, 1+part.keys*step)
		s.owned[i] = resp.AppendBulk(buf, args[0])
		q.Slot = int(part.slot)
		q.ReadOnly = cmd.Flags&FlagReadOnly != 0
	}
	for k, p := range keys {
		i := first + int(p)
		for a := 1 + k*step; a <= k*step+step; a++ {
			s.owned[i] = resp.AppendBulk(s.owned[i], args[a])
		}
	}
	for i := first; i < len(s.reqs); i++ {
		s.reqs[i].Raw = s.owned[i]
	}
	s.entries = append(s.entries, s.splitEntry(cmd, first, keysFrom))
}

// splitInWaves answers a huge split command at once, its parts sent in
// waves of at most splitWaveBytes, each written into the same buffer once
// the wave before it was answered. The session holds no other request:
// runPending answered those before it.
func (s *session) splitInWaves(cmd *CommandInfo, args [][]byte, step, keysFrom int) {
	defer s.endDirect(cmd, s.beginDirect())
	keys := s.keyParts[keysFrom:]
	parts := s.groupKeys(keys, args, step)
	// ends[p] is, while a wave is written, where part p's next argument
	// goes in buf.
	ends := slices.Grow(s.partOffsets[:0], len(parts))[:len(parts)]
	s.partOffsets = ends
	var buf []byte
	first := len(s.reqs)
	for from := 0; from < len(parts); {
		size, to := parts[from].size, from+1
		for to < len(parts) && size+parts[to].size <= splitWaveBytes {
			size += parts[to].size
			to++
		}
		buf = slices.Grow(buf[:0], size)
		waveFirst := len(s.reqs)
		for p := from; p < to; p++ {
			start := len(buf)
			buf = resp.AppendArray(buf, 1+parts[p].keys*step)
			buf = resp.AppendBulk(buf, args[0])
			ends[p] = len(buf)
			buf = buf[:start+parts[p].size]
			q, _ := s.newRequest()
			q.Raw = buf[start:len(buf):len(buf)]
			q.Slot = int(parts[p].slot)
			q.ReadOnly = cmd.Flags&FlagReadOnly != 0
		}
		for k, p := range keys {
			if int(p) < from || int(p) >= to {
				continue
			}
			for a := 1 + k*step; a <= k*step+step; a++ {
				ends[p] += len(resp.AppendBulk(buf[ends[p]:ends[p]], args[a]))
			}
		}
		s.srv.backend.Do(s.ctx, s.reqs[waveFirst:])
		for _, q := range s.reqs[waveFirst:] {
			q.Raw = nil // buf is the next wave's
		}
		from = to
	}
	s.srv.stats.commandsProcessed.Add(1)
	e := s.splitEntry(cmd, first, keysFrom)
	s.writeMerged(&e)
	s.endChunk()
}

// splitEntry records how the replies of a split command's parts, the
// requests from first on, are merged.
func (s *session) splitEntry(cmd *CommandInfo, first, keysFrom int) entry {
	kind := mergeSum
	switch cmd {
	case cmdMGET:
		kind = mergeMGET
	case cmdMSET:
		kind = mergeOK
	}
	if kind != mergeMGET {
		s.keyParts = s.keyParts[:keysFrom] // only MGET merges by key
	}
	return entry{kind: kind, from: first, to: len(s.reqs), keysFrom: keysFrom, keysTo: len(s.keyParts)}
}

// bulkSize is the length of a bulk string of n bytes, encoded.
func bulkSize(n int) int { return 1 + decimalDigits(n) + 2 + n + 2 }

// decimalDigits is the number of digits of n >= 0.
func decimalDigits(n int) int {
	digits := 1
	for ; n >= 10; n /= 10 {
		digits++
	}
	return digits
}
