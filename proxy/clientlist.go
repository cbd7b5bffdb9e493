package proxy

import (
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"kvproxy/internal/resp"
)

// CLIENT LIST, CLIENT INFO and CLIENT KILL over every client of the proxy.
// A session's own fields belong to whoever serves it, so each session
// publishes what the list shows (clientShown) after every batch, for other
// clients' goroutines to read.

var cmdClientKill = LookupCommand([]byte("client")).Subcommand([]byte("kill"))

// clientShown is what CLIENT LIST shows of a session, safe to read from any
// goroutine.
type clientShown struct {
	name       atomic.Pointer[string]
	command    atomic.Pointer[string]
	lastActive atomic.Int64 // Unix nanoseconds
	inMulti    atomic.Bool
	multiCount atomic.Int64
	user       atomic.Pointer[string]
	resp3      atomic.Bool
	sub        atomic.Pointer[subscriber]
	// killed: CLIENT KILL closed the connection; the session is no longer
	// listed while it ends.
	killed atomic.Bool
}

// commandNames interns the command table's names, so publishing the last
// command allocates nothing.
var commandNames = func() map[string]*string {
	names := map[string]*string{}
	var add func(c *CommandInfo)
	add = func(c *CommandInfo) {
		name := c.Name
		names[name] = &name
		for _, sub := range c.subcommands {
			add(sub)
		}
	}
	for _, c := range commandTable {
		add(c)
	}
	return names
}()

// publishShown publishes the session's state for CLIENT LIST; serve calls
// it after each batch.
func (s *session) publishShown() {
	shown := &s.shown
	if name := shown.name.Load(); name == nil || *name != string(s.name) {
		n := string(s.name)
		shown.name.Store(&n)
	}
	if c := shown.command.Load(); c == nil || *c != s.lastCommand {
		shown.command.Store(commandNames[s.lastCommand])
	}
	shown.lastActive.Store(s.lastActive.UnixNano())
	shown.inMulti.Store(s.tx.inMulti)
	shown.multiCount.Store(int64(s.tx.count))
	if u := shown.user.Load(); u == nil || *u != s.user {
		shown.user.Store(&s.user)
	}
	shown.resp3.Store(s.resp3)
	shown.sub.Store(s.sub)
}

// shownUser is the user the session is signed in as.
func (s *session) shownUser() string {
	if u := s.shown.user.Load(); u != nil && *u != "" {
		return *u
	}
	return defaultUser
}

// shownType is the session's CLIENT LIST type.
func (s *session) shownType() string {
	if s.shown.sub.Load() != nil {
		return "pubsub"
	}
	return "normal"
}

// subscriptionCounts are the channels, patterns and shard channels the
// subscriber holds.
func (sub *subscriber) subscriptionCounts() (channels, patterns, shards int) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for _, c := range sub.conns {
		channels += len(c.channels)
		patterns += len(c.patterns)
		shards += len(c.shards)
	}
	return channels, patterns, shards
}

// clientInfoLine describes sess in Redis' CLIENT INFO format; fields the
// proxy has no counterpart of are Redis' idle values.
func clientInfoLine(sess *session, now time.Time) string {
	shown := &sess.shown
	name, command := "", "NULL"
	if n := shown.name.Load(); n != nil {
		name = *n
	}
	if c := shown.command.Load(); c != nil && *c != "" {
		command = *c
	}
	flags, multi := "", int64(-1)
	if shown.inMulti.Load() {
		flags += "x"
		multi = shown.multiCount.Load()
	}
	var channels, patterns, shards int
	if sub := shown.sub.Load(); sub != nil {
		flags += "P"
		channels, patterns, shards = sub.subscriptionCounts()
	}
	if flags == "" {
		flags = "N"
	}
	idle := max(now.Sub(time.Unix(0, shown.lastActive.Load())), 0)
	var b strings.Builder
	b.WriteString("id=" + itoa(sess.id))
	b.WriteString(" addr=" + sess.remoteAddr())
	b.WriteString(" laddr=" + sess.localAddr())
	b.WriteString(" fd=-1 name=" + name)
	b.WriteString(" age=" + itoa(int64(now.Sub(sess.created)/time.Second)))
	b.WriteString(" idle=" + itoa(int64(idle/time.Second)))
	b.WriteString(" flags=" + flags + " db=0")
	b.WriteString(" sub=" + strconv.Itoa(channels) + " psub=" + strconv.Itoa(patterns) + " ssub=" + strconv.Itoa(shards))
	b.WriteString(" multi=" + itoa(multi))
	b.WriteString(" qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r")
	b.WriteString(" cmd=" + command)
	resp := " redir=-1 resp=2\n"
	if shown.resp3.Load() {
		resp = " redir=-1 resp=3\n"
	}
	b.WriteString(" user=" + sess.shownUser() + resp)
	return b.String()
}

// clients is every session of the server not killed, by id.
func (srv *Server) clients() []*session {
	srv.mu.Lock()
	all := make([]*session, 0, len(srv.sessions))
	for sess := range srv.sessions {
		if !sess.shown.killed.Load() {
			all = append(all, sess)
		}
	}
	srv.mu.Unlock()
	slices.SortFunc(all, func(a, b *session) int { return int(a.id - b.id) })
	return all
}

// clientList answers CLIENT LIST [TYPE type] [ID id ...].
func (s *session) clientList(args [][]byte) (string, string) {
	var ids []int64
	kind := ""
	for i := 2; i < len(args); i++ {
		switch {
		case equalFold(args[i], "type") && i+1 < len(args):
			i++
			var err string
			if kind, err = clientType(args[i]); err != "" {
				return "", err
			}
		case equalFold(args[i], "id") && i+1 < len(args):
			for i++; i < len(args); i++ {
				id, ok := redisInt(args[i])
				if !ok || id <= 0 {
					return "", "ERR Invalid client ID"
				}
				ids = append(ids, id)
			}
		default:
			return "", "ERR syntax error"
		}
	}
	s.publishShown() // the caller's own line shows this command
	now := time.Now()
	var b strings.Builder
	for _, sess := range s.srv.clients() {
		if (kind != "" && sess.shownType() != kind) || (ids != nil && !slices.Contains(ids, sess.id)) {
			continue
		}
		b.WriteString(clientInfoLine(sess, now))
	}
	return b.String(), ""
}

// clientType checks a CLIENT LIST/KILL type; the proxy's clients are all
// normal or pubsub, but Redis' other types are valid names.
func clientType(arg []byte) (string, string) {
	kind := strings.ToLower(string(arg))
	switch kind {
	case "normal", "pubsub", "master", "replica":
		return kind, ""
	case "slave":
		return "replica", ""
	}
	return "", "ERR Unknown client type '" + string(appendSanitized(nil, arg, 64)) + "'"
}

// killFilter is CLIENT KILL's filter form.
type killFilter struct {
	id                      int64
	kind, addr, laddr, user string
	skipMe                  bool
	maxAge                  int64
}

// parseKillFilter reads CLIENT KILL's arguments after KILL: the old form
// (one address) or filter pairs. The error is a RESP error message.
func parseKillFilter(args [][]byte) (f killFilter, oldForm bool, err string) {
	if len(args) == 1 {
		return killFilter{addr: string(args[0])}, true, ""
	}
	if len(args)%2 != 0 {
		return f, false, "ERR syntax error"
	}
	f.skipMe = true
	for i := 0; i < len(args); i += 2 {
		value := args[i+1]
		switch strings.ToLower(string(args[i])) {
		case "id":
			id, ok := redisInt(value)
			if !ok || id <= 0 {
				return f, false, "ERR client-id should be greater than 0"
			}
			f.id = id
		case "type":
			if f.kind, err = clientType(value); err != "" {
				return f, false, err
			}
		case "addr":
			f.addr = string(value)
		case "laddr":
			f.laddr = string(value)
		case "user":
			f.user = string(value)
		case "skipme":
			switch {
			case equalFold(value, "yes"):
				f.skipMe = true
			case equalFold(value, "no"):
				f.skipMe = false
			default:
				return f, false, "ERR syntax error"
			}
		case "maxage":
			age, ok := redisInt(value)
			if !ok || age < 0 {
				return f, false, "ERR value is not an integer or out of range"
			}
			f.maxAge = age
		default:
			return f, false, "ERR syntax error"
		}
	}
	return f, false, ""
}

// matches reports whether the filter selects sess; me is the caller.
func (f *killFilter) matches(sess, me *session, now time.Time) bool {
	switch {
	case f.id != 0 && sess.id != f.id,
		f.kind != "" && sess.shownType() != f.kind,
		f.addr != "" && sess.remoteAddr() != f.addr,
		f.laddr != "" && sess.localAddr() != f.laddr,
		f.user != "" && sess.shownUser() != f.user,
		f.skipMe && sess == me,
		f.maxAge != 0 && int64(now.Sub(sess.created)/time.Second) < f.maxAge:
		return false
	}
	return true
}

// clientKill closes the connections of the clients the arguments select
// and answers as Redis 7 does; killing itself ends the caller's connection
// after the reply.
func (s *session) clientKill(args [][]byte) {
	f, oldForm, err := parseKillFilter(args[2:])
	if err != "" {
		s.replyError(err)
		return
	}
	s.publishShown()
	now := time.Now()
	killed := int64(0)
	for _, sess := range s.srv.clients() {
		if !f.matches(sess, s, now) {
			continue
		}
		killed++
		if sess == s {
			s.quit = true
		} else {
			sess.kill()
		}
	}
	switch {
	case !oldForm:
		mark := len(s.local)
		s.local = resp.AppendInt(s.local, killed)
		s.localReply(mark)
	case killed == 0:
		s.replyError("ERR No such client")
	default:
		s.ok(nil)
	}
}

// kill ends another session's connection from outside whatever serves it:
// shutting the socket down (onKilled) wakes its reader, an event loop or a
// goroutine, or the watch of a blocking command, with the end of the
// stream, which ends the session the usual way; hanging up ends the backend
// calls it waits for. Without onKilled the connection is closed.
func (s *session) kill() {
	s.shown.killed.Store(true)
	s.hangUp()
	if s.onKilled != nil {
		s.onKilled()
		return
	}
	_ = s.netConn.Close()
}
