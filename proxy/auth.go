package proxy

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Authentication: AUTH, the user table and its roles, the commands only an
// admin may run, and the pacing of failed AUTHs.

// Role is what a user may run.
type Role uint8

const (
	// RoleReadOnly runs no command that may modify data (the command
	// table's write flag, and scripts other than their _RO forms).
	RoleReadOnly Role = iota + 1
	// RoleReadWrite runs every command but the admin ones.
	RoleReadWrite
	// RoleAdmin runs every command.
	RoleAdmin
)

// roleNames are the roles as the configuration spells them.
var roleNames = map[Role]string{RoleReadOnly: "read-only", RoleReadWrite: "read-write", RoleAdmin: "admin"}

func (r Role) String() string { return roleNames[r] }

// ParseRole reads read-only, read-write or admin.
func ParseRole(s string) (Role, error) {
	for r, name := range roleNames {
		if strings.EqualFold(s, name) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("role %q: want read-only, read-write or admin", s)
}

// User is one entry of Config.Users.
type User struct {
	Name     string
	Password string
	Role     Role
}

// Reserved user names: Redis' default user is Config.Password's, and admin
// is Config.AdminPassword's.
const (
	defaultUser = "default"
	adminUser   = "admin"
)

// credentials is one immutable state of the users: a reload (Server.Reload)
// installs a new one, and each session notices it at its next command.
type credentials struct {
	// open: no AUTH needed, connections start as the default user (no
	// password and no user table, Redis' default user with nopass).
	open  bool
	users map[string]User
	// anyAdmin: some user is an admin; without one, admin commands are
	// open to every user but the read-only ones.
	anyAdmin bool
}

// newCredentials checks cfg's users and builds their table: the default
// user from Password (or open, with no password and no Users), the admin
// user from AdminPassword, and Users.
func newCredentials(cfg *Config) (*credentials, error) {
	c := &credentials{open: cfg.Password == "" && len(cfg.Users) == 0, users: make(map[string]User, len(cfg.Users)+2)}
	if cfg.Password != "" {
		c.users[defaultUser] = User{Name: defaultUser, Password: cfg.Password, Role: RoleReadWrite}
	}
	if cfg.AdminPassword != "" {
		c.users[adminUser] = User{Name: adminUser, Password: cfg.AdminPassword, Role: RoleAdmin}
	}
	var bad []string
	named := make(map[string]bool, len(cfg.Users))
	for i, u := range cfg.Users {
		taken := named[u.Name]
		named[u.Name] = true
		switch {
		case u.Name == "" || strings.ContainsAny(u.Name, " \t\r\n"):
			bad = append(bad, fmt.Sprintf("users[%d]: name %q: want a name without blanks", i, u.Name))
		case u.Name == defaultUser || u.Name == adminUser && cfg.AdminPassword != "":
			bad = append(bad, fmt.Sprintf("users[%d]: name %q is the %s user's, set by its own password", i, u.Name, u.Name))
		case taken:
			bad = append(bad, fmt.Sprintf("users[%d]: name %q twice", i, u.Name))
		case u.Password == "":
			bad = append(bad, fmt.Sprintf("users[%d] (%s): no password", i, u.Name))
		case roleNames[u.Role] == "":
			bad = append(bad, fmt.Sprintf("users[%d] (%s): no role", i, u.Name))
		default:
			c.users[u.Name] = u
		}
	}
	if len(bad) > 0 {
		return nil, errors.New(strings.Join(bad, "; "))
	}
	for _, u := range c.users {
		c.anyAdmin = c.anyAdmin || u.Role == RoleAdmin
	}
	return c, nil
}

// CheckUsers reports every problem of users next to the default user's
// password and the admin user's (Config.Password, AdminPassword), in one
// error, as Config.Validate would.
func CheckUsers(password, adminPassword string, users []User) error {
	_, err := newCredentials(&Config{Password: password, AdminPassword: adminPassword, Users: users})
	return err
}

// signInAs marks the session authenticated as user (nil: not
// authenticated), under the credentials c.
func (s *session) signInAs(user *User, c *credentials) {
	s.creds = c
	s.authed = user != nil
	s.netConn.authenticated.Store(s.authed)
	s.user, s.admin, s.readOnly = "", false, false
	if user != nil {
		s.user = user.Name
		s.readOnly = user.Role == RoleReadOnly
		s.admin = user.Role == RoleAdmin || !c.anyAdmin && !s.readOnly
	}
}

// startUnauthenticated puts the session in the state of a new connection:
// the default user when no AUTH is needed, else none.
func (s *session) startUnauthenticated() {
	c := s.srv.creds.Load()
	if c.open {
		s.signInAs(&User{Name: defaultUser, Role: RoleReadWrite}, c)
		return
	}
	s.signInAs(nil, c)
}

// followCredentials catches the session up with a reload of the users, once
// per command and cheaply (one atomic load) when there was none: a session
// keeps its user, taking on its new role, unless the user is gone, when it
// must AUTH again; one that had not authenticated starts as a new
// connection would.
func (s *session) followCredentials() {
	c := s.srv.creds.Load()
	if c == s.creds {
		return
	}
	if !s.authed {
		s.startUnauthenticated()
		return
	}
	if s.user == defaultUser && c.open {
		s.signInAs(&User{Name: defaultUser, Role: RoleReadWrite}, c)
		return
	}
	if u, ok := c.users[s.user]; ok {
		s.signInAs(&u, c)
		return
	}
	s.signInAs(nil, c)
}

// isAdmin reports whether the session may run admin commands.
func (s *session) isAdmin() bool { return s.admin }

// deniedToReadOnly reports whether cmd may modify data: a read-only user
// may not run it. A script may write unless it is an _RO form.
func deniedToReadOnly(cmd *CommandInfo) bool {
	return cmd.Has(FlagWrite) || cmd.runsScript && !cmd.Has(FlagReadOnly)
}

// noPermError is Redis' refusal of a command the user's role excludes.
func noPermError(cmd *CommandInfo) string {
	return "NOPERM this user has no permissions to run the '" + cmd.Name + "' command"
}

// adminOnlyCommands need an admin user when one is configured (besides
// CLUSTERX FAILOVER): they wipe data, change a server's configuration or
// drop other clients.
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
// logged (rate-limited, the user's name but never the password), delayed
// past the free failures and, at the limit, followed by the connection's
// close. loopSafe sends a batch that may get a delayed failure to the
// client's goroutine, so the wait here never holds an event loop.
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

// checkCredentials returns the user that name and password open, or nil.
// Passwords are compared in constant time.
func (s *session) checkCredentials(name, password []byte) *User {
	c := s.srv.creds.Load()
	if string(name) == defaultUser && c.open {
		return &User{Name: defaultUser, Role: RoleReadWrite}
	}
	u, ok := c.users[string(name)]
	if !ok || subtle.ConstantTimeCompare(password, []byte(u.Password)) != 1 {
		return nil
	}
	return &u
}

func (s *session) auth(args [][]byte) {
	switch len(args) {
	case 2:
		if s.srv.creds.Load().open {
			s.replyError(errNoPass)
			return
		}
		s.authenticate([]byte(defaultUser), args[1])
	case 3:
		s.authenticate(args[1], args[2])
	default:
		s.replyError("ERR syntax error")
	}
}

func (s *session) authenticate(name, password []byte) {
	user := s.checkCredentials(name, password)
	if user == nil {
		s.authFailed(name)
		return
	}
	s.signIn(user)
	s.ok(nil)
}

// signIn marks the session authenticated as user, whose credentials were
// checked.
func (s *session) signIn(user *User) {
	s.signInAs(user, s.srv.creds.Load())
	s.authFailures = 0
}
