package proxy

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Request statistics: per command (INFO commandstats) and per command class
// and result (the requests and latency metrics). They are counted where a
// reply is written, with atomic adds on counters allocated once: per
// command in its CommandInfo, per class in the server's tables. Each kind
// is split in statShards cache-line-sized shards, a session using the
// shard of its id, so two cores serving different clients do not fight
// over one line; a scrape or INFO sums the shards. A chunk's latency runs
// from the clock read serve makes for the batch anyway (CLIENT LIST's idle)
// to one more read when its replies are written, not per command: a
// pipelined command's latency is its chunk's.
// A run of replies alike (same command, same result: a pipeline of GETs) is
// tallied in the session and added once, when the run or the chunk ends.

// statShards is the number of shards of each counter; a power of two.
const statShards = 8

// commandShard is one shard of a command's counters, padded to a cache
// line.
type commandShard struct {
	calls, usec, rejected, failed atomic.Int64
	_                             [32]byte
}

// commandStats are a command's counters (INFO commandstats).
type commandStats struct{ shards [statShards]commandShard }

// commandTotals is the sum of a command's shards.
type commandTotals struct{ calls, usec, rejected, failed int64 }

func (c *commandStats) totals() commandTotals {
	var t commandTotals
	for i := range c.shards {
		sh := &c.shards[i]
		t.calls += sh.calls.Load()
		t.usec += sh.usec.Load()
		t.rejected += sh.rejected.Load()
		t.failed += sh.failed.Load()
	}
	return t
}

func (c *commandStats) reset() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.calls.Store(0)
		sh.usec.Store(0)
		sh.rejected.Store(0)
		sh.failed.Store(0)
	}
}

// requestClass is a command's class in the requests metrics, from its
// table flags.
type requestClass uint8

const (
	classRead requestClass = iota
	classWrite
	classAdmin
	// classOther: neither read nor write (EVAL, PING, ...), and commands
	// the proxy does not know or that were queued in MULTI.
	classOther
	numClasses
)

var classNames = [numClasses]string{"read", "write", "admin", "other"}

// classOfCommand is cmd's class; cmd may be nil.
func classOfCommand(cmd *CommandInfo) requestClass {
	switch {
	case cmd == nil:
		return classOther
	case cmd.Flags&FlagAdmin != 0:
		return classAdmin
	case cmd.Flags&FlagWrite != 0:
		return classWrite
	case cmd.Flags&FlagReadOnly != 0:
		return classRead
	}
	return classOther
}

// requestResult is how a request was answered: ok, or the error reply's
// prefix, one of a bounded set.
type requestResult uint8

const (
	resultOK requestResult = iota
	resultERR
	resultWRONGTYPE
	resultNOAUTH
	resultWRONGPASS
	resultNOPERM
	resultCROSSSLOT
	resultTRYAGAIN
	resultCLUSTERDOWN
	resultLOADING
	resultMASTERDOWN
	resultREADONLY
	resultBUSY
	resultNOSCRIPT
	resultEXECABORT
	resultOOM
	// resultMOVED and resultASK: a redirect reached the client, which the
	// proxy hides but for commands it passes on unchanged (none today).
	resultMOVED
	resultASK
	// resultOtherError: any other prefix.
	resultOtherError
	numResults
)

var resultNames = [numResults]string{"ok", "ERR", "WRONGTYPE", "NOAUTH", "WRONGPASS", "NOPERM", "CROSSSLOT",
	"TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN", "READONLY", "BUSY", "NOSCRIPT", "EXECABORT", "OOM",
	"MOVED", "ASK", "other_error"}

// maxErrorPrefix bounds the prefix resultOf looks at; none is longer.
const maxErrorPrefix = 16

// resultOf classifies a reply by its first bytes (RESP2 or RESP3: an
// error starts with '-', a RESP3 blob error with '!').
func resultOf(reply []byte) requestResult {
	if len(reply) == 0 || (reply[0] != '-' && reply[0] != '!') {
		return resultOK
	}
	if reply[0] == '!' {
		// "!<len>\r\n<prefix> ...": skip the length line.
		i := 1
		for i < len(reply) && reply[i] != '\n' {
			i++
		}
		reply = reply[i:]
	}
	end := 1
	for end < len(reply) && end <= maxErrorPrefix && reply[end] != ' ' && reply[end] != '\r' {
		end++
	}
	switch string(reply[1:end]) {
	case "ERR":
		return resultERR
	case "WRONGTYPE":
		return resultWRONGTYPE
	case "NOAUTH":
		return resultNOAUTH
	case "WRONGPASS":
		return resultWRONGPASS
	case "NOPERM":
		return resultNOPERM
	case "CROSSSLOT":
		return resultCROSSSLOT
	case "TRYAGAIN":
		return resultTRYAGAIN
	case "CLUSTERDOWN":
		return resultCLUSTERDOWN
	case "LOADING":
		return resultLOADING
	case "MASTERDOWN":
		return resultMASTERDOWN
	case "READONLY":
		return resultREADONLY
	case "BUSY":
		return resultBUSY
	case "NOSCRIPT":
		return resultNOSCRIPT
	case "EXECABORT":
		return resultEXECABORT
	case "OOM":
		return resultOOM
	case "MOVED":
		return resultMOVED
	case "ASK":
		return resultASK
	}
	return resultOtherError
}

// latencyBounds are the request latency histogram's upper bounds, in
// microseconds: 100 µs to 10 s.
var latencyBounds = [...]int64{100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000,
	100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000}

// latencyBucket is the index of the first bound usec is within,
// len(latencyBounds) past the last.
func latencyBucket(usec int64) int {
	for i, b := range latencyBounds {
		if usec <= b {
			return i
		}
	}
	return len(latencyBounds)
}

// requestShard is one shard of the per-class counters.
type requestShard struct {
	results [numClasses][numResults]atomic.Int64
	// buckets counts requests by latency bucket (not cumulative); usec sums
	// their latencies.
	buckets [numClasses][len(latencyBounds) + 1]atomic.Int64
	usec    [numClasses]atomic.Int64
	_       [64]byte
}

// requestStats are the per-class counters of a server.
type requestStats struct{ shards [statShards]requestShard }

// requestTotals is the sum of the shards.
type requestTotals struct {
	results [numClasses][numResults]int64
	buckets [numClasses][len(latencyBounds) + 1]int64
	usec    [numClasses]int64
}

// count is the number of requests of every class with result k.
func (t *requestTotals) count(k requestResult) int64 {
	var n int64
	for c := range numClasses {
		n += t.results[c][k]
	}
	return n
}

func (r *requestStats) totals() *requestTotals {
	t := new(requestTotals)
	for i := range r.shards {
		sh := &r.shards[i]
		for c := range numClasses {
			for k := range numResults {
				t.results[c][k] += sh.results[c][k].Load()
			}
			for b := range sh.buckets[c] {
				t.buckets[c][b] += sh.buckets[c][b].Load()
			}
			t.usec[c] += sh.usec[c].Load()
		}
	}
	return t
}

// chunkTiming is when a session's chunk started and, once its replies are
// written, how long it took.
type chunkTiming struct {
	start  time.Time
	usec   int64
	bucket int
}

func (t *chunkTiming) begin() { t.start = time.Now() }

// end measures the chunk for the replies about to be written.
func (t *chunkTiming) end() {
	t.usec = max(int64(time.Since(t.start)/time.Microsecond), 0)
	t.bucket = latencyBucket(t.usec)
}

// replyTally is a run of n replies alike of one chunk, not yet added to
// the counters.
type replyTally struct {
	cmd    *CommandInfo
	result requestResult
	local  bool
	n      int64
}

// countReply counts one command's reply: cmd is the command (nil when the
// proxy does not know it), head the reply's first bytes, local whether the
// proxy made the reply itself, an error then being a rejection. The caller
// calls flushTally once the chunk's replies are written.
func (s *session) countReply(cmd *CommandInfo, head []byte, local bool) {
	result := resultOf(head)
	if result == resultNOAUTH || result == resultNOPERM || result == resultWRONGPASS {
		s.logRefusal(cmd, result)
	}
	t := &s.tally
	if t.n > 0 && t.cmd == cmd && t.result == result && t.local == local {
		t.n++
		return
	}
	s.flushTally()
	*t = replyTally{cmd: cmd, result: result, local: local, n: 1}
}

// flushTally adds the run of replies tallied to the counters.
func (s *session) flushTally() {
	t := &s.tally
	if t.n == 0 {
		return
	}
	n, usec := t.n, t.n*s.timing.usec
	class := classOfCommand(t.cmd)
	sh := &s.srv.requests.shards[s.statShard]
	sh.results[class][t.result].Add(n)
	sh.buckets[class][s.timing.bucket].Add(n)
	sh.usec[class].Add(usec)
	t.n = 0
	if t.cmd == nil {
		return
	}
	cs := &t.cmd.stats.shards[s.statShard]
	switch {
	case t.result == resultOK:
		cs.calls.Add(n)
		cs.usec.Add(usec)
	case t.local:
		cs.rejected.Add(n)
	default:
		cs.calls.Add(n)
		cs.usec.Add(usec)
		cs.failed.Add(n)
	}
}

// logRefusal logs, at debug level, a command refused for want of AUTH or
// of the admin user, or a failed AUTH.
func (s *session) logRefusal(cmd *CommandInfo, result requestResult) {
	if !s.srv.logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	name := ""
	if cmd != nil {
		name = cmd.Name
	}
	s.srv.logger.Debug("client request refused", "client", s.remoteAddr(), "id", s.id, "command", name, "reason", resultNames[result])
}

// beginDirect starts a command served outside the chunk's entries (on a
// dedicated connection, split in waves, ...): endDirect counts its reply,
// the first written after beginDirect, unless it answered through the
// chunk's entries after all (counted as they are written). Use as
// defer s.endDirect(cmd, s.beginDirect()).
func (s *session) beginDirect() time.Time {
	s.replyHead = nil
	return time.Now()
}

func (s *session) endDirect(cmd *CommandInfo, start time.Time) {
	if s.replyHead == nil {
		return
	}
	s.timing.usec = max(int64(time.Since(start)/time.Microsecond), 0)
	s.timing.bucket = latencyBucket(s.timing.usec)
	s.countReply(cmd, s.replyHead, false)
	s.flushTally()
	s.replyHead = nil
}

// everyCommand lists the table's commands and subcommands, sorted by name,
// for INFO commandstats and CONFIG RESETSTAT.
var everyCommand = func() []*CommandInfo {
	var all []*CommandInfo
	for _, c := range commandTable {
		all = append(all, c)
		for _, sub := range c.subcommands {
			all = append(all, sub)
		}
	}
	slices.SortFunc(all, func(a, b *CommandInfo) int { return strings.Compare(a.Name, b.Name) })
	return all
}()

// resetCommandStats zeroes every command's counters (CONFIG RESETSTAT).
// The per-class counters stay: Prometheus counters only grow.
func resetCommandStats() {
	for _, c := range everyCommand {
		c.stats.reset()
	}
}

// writeCommandStats prints INFO commandstats as Redis 7 does, for the
// commands called or rejected since the start or the last CONFIG
// RESETSTAT.
func writeCommandStats(line func(key, value string)) {
	for _, c := range everyCommand {
		t := c.stats.totals()
		if t.calls == 0 && t.rejected == 0 {
			continue
		}
		perCall := 0.0
		if t.calls > 0 {
			perCall = float64(t.usec) / float64(t.calls)
		}
		line("cmdstat_"+c.Name, "calls="+itoa(t.calls)+",usec="+itoa(t.usec)+
			",usec_per_call="+strconv.FormatFloat(math.Round(perCall*100)/100, 'f', 2, 64)+
			",rejected_calls="+itoa(t.rejected)+",failed_calls="+itoa(t.failed))
	}
}

// writeErrorStats prints INFO errorstats as Redis 7 does, from the
// per-class counters (so CONFIG RESETSTAT does not reset it); prefixes
// outside the bounded set are counted as errorstat_other_error.
func writeErrorStats(t *requestTotals, line func(key, value string)) {
	for k := resultERR; k < numResults; k++ {
		if n := t.count(k); n > 0 {
			line("errorstat_"+strings.ToUpper(resultNames[k]), "count="+itoa(n))
		}
	}
}
