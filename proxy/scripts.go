package proxy

import (
	"sync"

	"github.com/tidwall/redcon"

	"kvproxy/internal/resp"
)

// Scripts: which master runs a script is known only to the node, so SCRIPT
// KILL and FUNCTION KILL go to every master, each on a dedicated
// connection: a shared one would queue the kill behind the script it is
// meant to stop.

var (
	cmdScriptKill   = LookupCommand([]byte("script")).Subcommand([]byte("kill"))
	cmdFunctionKill = LookupCommand([]byte("function")).Subcommand([]byte("kill"))
)

// The commands that run a script on their node: the router is told
// (router.Request.Long), so a node that misses its probes while it runs one
// is taken as busy, not unreachable.
func init() {
	for _, name := range []string{"eval", "eval_ro", "evalsha", "evalsha_ro", "fcall", "fcall_ro"} {
		LookupCommand([]byte(name)).runsScript = true
	}
}

// markLong marks the requests from index from on as Long.
func (s *session) markLong(from int) {
	for _, q := range s.reqs[from:] {
		q.Long = true
	}
}

// errNotBusy is Redis' reply to SCRIPT KILL and FUNCTION KILL when no script
// runs.
const errNotBusy = "NOTBUSY No scripts in execution right now."

// killScript sends SCRIPT KILL or FUNCTION KILL to every master at once, off
// the event loop (it is a blocksLoop kind), and answers OK if one killed
// its script; else the first error other than NOTBUSY (UNKILLABLE, an
// unreachable master, Kvrocks' unknown subcommand), else NOTBUSY.
func (s *session) killScript(c *redcon.Command) {
	masters := s.mastersList()
	if len(masters) == 0 {
		s.replyError(errNoMasters)
		return
	}
	s.runPending()
	s.srv.stats.commandsProcessed.Add(1)
	defer s.endDirect(s.statCmd, s.beginDirect())
	replies := make([][]byte, len(masters))
	var wg sync.WaitGroup
	for i, addr := range masters {
		wg.Go(func() {
			reply, err := s.srv.askNode(s.ctx, addr, c.Raw)
			if err != nil {
				reply = resp.AppendError(nil, "ERR kvproxy: "+oneLine(err.Error()))
			}
			replies[i] = reply
		})
	}
	wg.Wait()
	s.write(mergeKill(replies))
}

// mergeKill combines the masters' replies to a script kill (killScript).
func mergeKill(replies [][]byte) []byte {
	var firstErr []byte
	for _, reply := range replies {
		switch {
		case string(reply) == "+OK\r\n":
			return replyOK
		case firstErr == nil && resp.IsError(reply) && string(resp.ErrorCode(reply)) != "NOTBUSY":
			firstErr = reply
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return resp.AppendError(nil, errNotBusy)
}
