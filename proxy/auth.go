package proxy

import (
	"crypto/subtle"
	"time"
)

// Authentication: AUTH, the default and admin users, the commands only the
// admin may run, and the pacing of failed AUTHs.

func (s *session) setAuthenticated(authed bool) {
	s.authed = authed
	s.admin = false
	s.netConn.authenticated.Store(authed)
}

// adminUser is the user an operator AUTHs as, with Config.AdminPassword.
const adminUser = "admin"

// isAdmin reports whether the session may run admin commands: anyone may
// when no admin password is configured.
func (s *session) isAdmin() bool {
	return s.admin || s.srv.cfg.AdminPassword == ""
}

// adminOnlyCommands need the admin user when an admin password is set
// (besides CLUSTERX FAILOVER): they wipe data, change a server's
// configuration or drop other clients.
var adminOnlyCommands = map[*CommandInfo]bool{
	cmdFLUSHALL: true,
	cmdFLUSHDB:  true,
	LookupCommand([]byte("script")).Subcommand([]byte("flush")):    true,
	LookupCommand([]byte("function")).Subcommand([]byte("flush")):  true,
	LookupCommand([]byte("function")).Subcommand([]byte("delete")): true,
	cmdConfigSet:       true,
	cmdConfigRewrite:   true,
	cmdConfigResetstat: true,
	LookupCommand([]byte("client")).Subcommand([]byte("kill")): true,
	LookupCommand([]byte("client")).Subcommand([]byte("list")): true,
}

// adminOnly reports whether cmd, a command or the subcommand a container's
// args name (nil if none), is one of adminOnlyCommands. A malformed one is
// not: as in Redis, its arity error comes first.
func adminOnly(cmd *CommandInfo, args [][]byte) bool {
	return adminOnlyCommands[cmd] && cmd.ArityOK(len(args))
}

// Failed AUTHs on one connection: the first freeAuthFailures are answered
// at once, each later one after firstAuthFailureDelay doubling, and the
// maxAuthFailures-th closes the connection after its reply, so passwords
// cannot be tried at wire speed. A good AUTH starts the count again.
const (
	freeAuthFailures      = 2
	firstAuthFailureDelay = 100 * time.Millisecond
	maxAuthFailures       = 5
)

// authFailed answers a failed AUTH or HELLO ... AUTH for user: counted,
// logged (rate-limited), delayed past the free failures and, at the limit,
// followed by the connection's close. loopSafe sends a batch that may
// get a delayed failure to the client's goroutine, so the wait here never
// holds an event loop.
func (s *session) authFailed(user []byte) {
	s.authFailures++
	s.srv.stats.authFailures.Add(1)
	closing := s.authFailures >= maxAuthFailures
	s.srv.authFailureLog.Log("client", s.remoteAddr(), "user", string(appendSanitized(nil, user, 64)),
		"failures", s.authFailures, "closing", closing)
	if s.authFailures > freeAuthFailures {
		delay := firstAuthFailureDelay << (s.authFailures - freeAuthFailures - 1)
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-s.ctx.Done(): // hung up, or the server is closing
			timer.Stop()
		}
	}
	s.replyError(errWrongPass)
	if closing {
		s.closeCause.Store(closedAuthFailures)
		s.quit = true
	}
}

const (
	errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	errNoPass    = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
)

// checkCredentials reports whether user and password open the proxy; the
// only user is Redis' "default".
func (s *session) checkCredentials(user, password []byte) bool {
	if string(user) == adminUser && s.srv.cfg.AdminPassword != "" {
		return subtle.ConstantTimeCompare(password, []byte(s.srv.cfg.AdminPassword)) == 1
	}
	if string(user) != "default" {
		return false
	}
	if !s.srv.needsPassword {
		return true // like Redis' default user with nopass
	}
	return subtle.ConstantTimeCompare(password, []byte(s.srv.cfg.Password)) == 1
}

func (s *session) auth(args [][]byte) {
	switch len(args) {
	case 2:
		if !s.srv.needsPassword {
			s.replyError(errNoPass)
			return
		}
		s.authenticate([]byte("default"), args[1])
	case 3:
		s.authenticate(args[1], args[2])
	default:
		s.replyError("ERR syntax error")
	}
}

func (s *session) authenticate(user, password []byte) {
	if !s.checkCredentials(user, password) {
		s.authFailed(user)
		return
	}
	s.signIn(user)
	s.ok(nil)
}

// signIn marks the session authenticated as user, whose credentials were
// checked.
func (s *session) signIn(user []byte) {
	s.setAuthenticated(true)
	s.authFailures = 0
	s.admin = string(user) == adminUser && s.srv.cfg.AdminPassword != ""
}
