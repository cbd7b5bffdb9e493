package proxy

import (
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// Replies the merges write as they are.
var (
	replyOK       = []byte("+OK\r\n")
	replyNullBulk = []byte("$-1\r\n")
)

// Fan-out: commands that act on the whole keyspace run on every master and
// their replies are merged into the one reply a single server would give.

var (
	cmdScriptExists = LookupCommand([]byte("script")).Subcommand([]byte("exists"))
	cmdDBSIZE       = LookupCommand([]byte("dbsize"))
	cmdKEYS         = LookupCommand([]byte("keys"))
	cmdSCAN         = LookupCommand([]byte("scan"))
	cmdFLUSHDB      = LookupCommand([]byte("flushdb"))
	cmdFLUSHALL     = LookupCommand([]byte("flushall"))
	cmdRANDOMKEY    = LookupCommand([]byte("randomkey"))
)

// fanoutSame are keyless commands that change every master's script or
// function cache: they run everywhere and the first error, else the reply
// they all gave, answers (SCRIPT LOAD's sha, FUNCTION LOAD's library name:
// masters that answered differently get an error saying so). SCRIPT EXISTS runs everywhere too, but its answers are
// combined (mergeScriptExists).
var fanoutSame = map[*CommandInfo]bool{
	LookupCommand([]byte("script")).Subcommand([]byte("load")):      true,
	LookupCommand([]byte("script")).Subcommand([]byte("flush")):     true,
	LookupCommand([]byte("function")).Subcommand([]byte("load")):    true,
	LookupCommand([]byte("function")).Subcommand([]byte("delete")):  true,
	LookupCommand([]byte("function")).Subcommand([]byte("flush")):   true,
	LookupCommand([]byte("function")).Subcommand([]byte("restore")): true,
}

func (s *session) fanout(cmd *CommandInfo, c *redcon.Command) {
	switch cmd {
	case cmdDBSIZE:
		s.fanoutAll(c.Raw, true, mergeSum, 0)
	case cmdKEYS:
		s.fanoutAll(c.Raw, true, mergeConcat, 0)
	case cmdFLUSHDB, cmdFLUSHALL:
		s.fanoutAll(c.Raw, false, mergeOK, 0)
	case cmdRANDOMKEY:
		if n := len(s.mastersList()); n > 0 {
			s.fanoutAll(c.Raw, true, mergeRandomKey, rand.IntN(n))
		} else {
			s.replyError(errNoMasters)
		}
	case cmdSCAN:
		s.scan(c.Args)
	default:
		s.replyError(unsupportedError(c.Args))
	}
}

// fanoutAll sends raw to every master; kind merges the replies.
func (s *session) fanoutAll(raw []byte, readOnly bool, kind replyKind, aux int) {
	masters := s.mastersList()
	if len(masters) == 0 {
		s.replyError(errNoMasters)
		return
	}
	first := len(s.reqs)
	for _, addr := range masters {
		q, _ := s.newRequest()
		q.Raw = raw
		q.Addr = addr
		q.ReadOnly = readOnly
	}
	s.entries = append(s.entries, entry{kind: kind, from: first, to: len(s.reqs), aux: aux})
}

// scan walks the masters one after the other; the proxy cursor says which
// master is being walked and where (scanCursors).
func (s *session) scan(args [][]byte) {
	cursor, ok := resp.ParseUint(args[1])
	if !ok {
		s.replyError("ERR invalid cursor")
		return
	}
	masters := s.mastersList()
	if len(masters) == 0 {
		s.replyError(errNoMasters)
		return
	}
	if len(masters) > scanMaxMasters {
		s.replyError("ERR SCAN through kvproxy supports at most " + strconv.Itoa(scanMaxMasters) + " masters")
		return
	}
	pos, ok := s.srv.scanCursors.decode(cursor)
	if !ok {
		s.replyError("ERR invalid cursor")
		return
	}
	if pos.master >= len(masters) {
		// The masters changed under a cursor the proxy issued: the walk
		// is over.
		mark := len(s.local)
		s.local = append(s.local, "*2\r\n$1\r\n0\r\n*0\r\n"...)
		s.localReply(mark)
		return
	}
	q, i := s.newRequest()
	buf := resp.AppendArray(s.owned[i][:0], len(args))
	buf = resp.AppendBulk(buf, args[0])
	buf = resp.AppendBulkString(buf, pos.cursor)
	for _, arg := range args[2:] {
		buf = resp.AppendBulk(buf, arg)
	}
	s.owned[i] = buf
	q.Raw = buf
	q.Addr = masters[pos.master]
	q.ReadOnly = true
	s.entries = append(s.entries, entry{kind: mergeScan, from: i, to: i + 1, aux: pos.master})
}

// writeMerged writes the reply of a split or fanned-out command.
func (s *session) writeMerged(e *entry) {
	parts := s.reqs[e.from:e.to]
	if e.kind != mergeRandomKey && e.kind != mergeEveryMaster && e.kind != mergeInfo {
		// A part that failed fails the whole command, as on a single
		// server: the first error in part order is the answer.
		for _, q := range parts {
			if resp.IsError(q.Reply) {
				s.write(q.Reply)
				return
			}
		}
	}
	switch e.kind {
	case mergeSum:
		var sum int64
		for _, q := range parts {
			line, _, ok := resp.ReplyLine(q.Reply)
			n, isInt := resp.ParseInt(line)
			if !ok || q.Reply[0] != ':' || !isInt {
				s.writeUnexpected(q.Reply)
				return
			}
			sum += n
		}
		s.scratch = resp.AppendInt(s.scratch[:0], sum)
		s.write(s.scratch)
	case mergeOK:
		for _, q := range parts {
			if string(q.Reply) != "+OK\r\n" {
				s.write(q.Reply)
				return
			}
		}
		s.write(replyOK)
	case mergeMGET:
		s.writeMGET(e, parts)
	case mergeConcat:
		s.writeConcat(parts)
	case mergeScan:
		s.writeScan(e, parts[0].Reply)
	case mergeRandomKey:
		s.writeRandomKey(e, parts)
	case mergeSame:
		for _, q := range parts[1:] {
			if string(q.Reply) != string(parts[0].Reply) {
				s.scratch = resp.AppendError(s.scratch[:0], "ERR kvproxy: the masters answered differently: "+
					summarize(parts[0].Reply)+" and "+summarize(q.Reply))
				s.write(s.scratch)
				return
			}
		}
		s.write(parts[0].Reply)
	case mergeScriptExists:
		s.writeScriptExists(parts)
	case mergeConfigGet:
		s.writeConfigGet(parts[0].Reply)
	case mergeEveryMaster:
		s.writeEveryMaster(parts)
	case mergeInfo:
		s.writeInfo(e, parts)
	}
}

// writeScriptExists says a script exists only where every master has it,
// since EVALSHA may reach any of them.
func (s *session) writeScriptExists(parts []*router.Request) {
	s.spans = s.spans[:0]
	count := -1
	for _, q := range parts {
		n, ok := s.elements(q.Reply)
		if !ok || (count >= 0 && n != count) {
			s.writeUnexpected(q.Reply)
			return
		}
		count = n
	}
	s.scratch = resp.AppendArray(s.scratch[:0], count)
	for i := range count {
		exists := int64(1)
		for p, q := range parts {
			sp := s.spans[p*count+i]
			if string(q.Reply[sp.from:sp.to]) != ":1\r\n" {
				exists = 0
			}
		}
		s.scratch = resp.AppendInt(s.scratch, exists)
	}
	s.write(s.scratch)
}

// writeUnexpected answers with an error when a backend reply does not have
// the shape the merge needs.
func (s *session) writeUnexpected(reply []byte) {
	s.scratch = resp.AppendError(s.scratch[:0], "ERR kvproxy: unexpected backend reply while merging: "+summarize(reply))
	s.write(s.scratch)
}

// summarize quotes the start of a reply for an error message.
func summarize(reply []byte) string {
	const max = 40
	if len(reply) > max {
		reply = reply[:max]
	}
	return strconv.Quote(string(reply))
}

// elements splits the array reply into its elements, appended to s.spans;
// ok is false when reply is not a well-formed array of count elements.
func (s *session) elements(reply []byte) (count int, ok bool) {
	line, pos, ok := resp.ReplyLine(reply)
	if !ok || reply[0] != '*' {
		return 0, false
	}
	n, isInt := resp.ParseInt(line)
	if !isInt || n < 0 {
		return 0, false
	}
	for range n {
		s.scanner.Reset()
		size, err := s.scanner.Scan(reply[pos:])
		if err != nil || size == 0 {
			return 0, false
		}
		s.spans = append(s.spans, span{pos, pos + size})
		pos += size
	}
	return int(n), pos == len(reply)
}

// writeMGET puts the values of every part back in the order of the keys.
// Every part is checked first: an array of one well-formed value per key
// sent to it. The values are then copied out as the keys ask for them, each
// part read from where its last value ended: no table of every value's
// place, and the output goes out in pieces of MaxOutputBytes.
func (s *session) writeMGET(e *entry, parts []*router.Request) {
	keys := s.keyParts[e.keysFrom:e.keysTo]
	offsets := slices.Grow(s.partOffsets[:0], len(parts))[:len(parts)]
	clear(offsets)
	s.partOffsets = offsets
	for _, p := range keys {
		offsets[p]++ // first the keys of each part
	}
	for p, q := range parts {
		body, ok := s.arrayBody(q.Reply, offsets[p])
		if !ok {
			s.writeUnexpected(q.Reply)
			return
		}
		offsets[p] = body
	}
	out := resp.AppendArray(s.scratch[:0], len(keys))
	for _, p := range keys {
		reply := parts[p].Reply[offsets[p]:]
		s.scanner.Reset()
		size, _ := s.scanner.Scan(reply) // checked by arrayBody
		out = append(out, reply[:size]...)
		offsets[p] += size
		if len(out) >= s.srv.cfg.MaxOutputBytes {
			s.write(out)
			out = out[:0]
		}
	}
	if len(out) > 0 {
		s.write(out)
	}
	s.scratch = out
}

// arrayBody checks that reply is an array of count well-formed elements and
// returns where its first element starts.
func (s *session) arrayBody(reply []byte, count int) (body int, ok bool) {
	line, body, ok := resp.ReplyLine(reply)
	if !ok || reply[0] != '*' {
		return 0, false
	}
	if n, isInt := resp.ParseInt(line); !isInt || n != int64(count) {
		return 0, false
	}
	pos := body
	for range count {
		s.scanner.Reset()
		size, err := s.scanner.Scan(reply[pos:])
		if err != nil || size == 0 {
			return 0, false
		}
		pos += size
	}
	return body, pos == len(reply)
}

// writeConcat joins the arrays of every master (KEYS).
func (s *session) writeConcat(parts []*router.Request) {
	total := 0
	for _, q := range parts {
		line, _, ok := resp.ReplyLine(q.Reply)
		n, isInt := resp.ParseInt(line)
		if !ok || q.Reply[0] != '*' || !isInt || n < 0 {
			s.writeUnexpected(q.Reply)
			return
		}
		total += int(n)
	}
	s.scratch = resp.AppendArray(s.scratch[:0], total)
	s.write(s.scratch)
	for _, q := range parts {
		_, body, _ := resp.ReplyLine(q.Reply)
		s.write(q.Reply[body:])
	}
}

// writeScan rewrites one master's SCAN page with the proxy cursor.
func (s *session) writeScan(e *entry, reply []byte) {
	s.spans = s.spans[:0]
	if n, ok := s.elements(reply); !ok || n != 2 {
		s.writeUnexpected(reply)
		return
	}
	cursorFrame := reply[s.spans[0].from:s.spans[0].to]
	_, next, ok := resp.ReplyLine(cursorFrame)
	if !ok || cursorFrame[0] != '$' {
		s.writeUnexpected(reply)
		return
	}
	backendCursor := cursorFrame[next : len(cursorFrame)-2]
	var cursor uint64
	switch {
	case string(backendCursor) != "0":
		cursor = s.srv.scanCursors.encode(scanPosition{master: e.aux, cursor: string(backendCursor)})
	case e.aux+1 < len(s.masters):
		cursor = s.srv.scanCursors.encode(scanPosition{master: e.aux + 1, cursor: "0"}) // the next master, from its start
	default:
		cursor = 0 // every master walked
	}
	var digits [20]byte
	s.scratch = resp.AppendArray(s.scratch[:0], 2)
	s.scratch = resp.AppendBulk(s.scratch, strconv.AppendUint(digits[:0], cursor, 10))
	s.write(s.scratch)
	s.write(reply[s.spans[1].from:s.spans[1].to])
}

// writeRandomKey answers with the first key found, starting from a random
// master; nil when every master is empty, an error when none had a key and
// one failed.
func (s *session) writeRandomKey(e *entry, parts []*router.Request) {
	var firstError []byte
	for k := range parts {
		q := parts[(e.aux+k)%len(parts)]
		switch {
		case resp.IsError(q.Reply):
			if firstError == nil {
				firstError = q.Reply
			}
		case len(q.Reply) > 0 && q.Reply[0] == '$' && string(q.Reply) != string(replyNullBulk):
			s.write(q.Reply)
			return
		}
	}
	if firstError != nil {
		s.write(firstError)
		return
	}
	s.write(replyNullBulk)
}
