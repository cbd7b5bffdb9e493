package proxy

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// usersConfig has one user of each role besides the default and admin users.
func usersConfig(c *Config) {
	c.Password = "def-pw"
	c.AdminPassword = "adm-pw"
	c.Users = []User{
		{Name: "reader", Password: "r-pw", Role: RoleReadOnly},
		{Name: "writer", Password: "w-pw", Role: RoleReadWrite},
		{Name: "boss", Password: "b-pw", Role: RoleAdmin},
	}
}

func TestUsersAndRoles(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(2), usersConfig)

	anon := dialResp(t, addr)
	assert.True(t, strings.HasPrefix(anon.do("GET", "k"), "-NOAUTH"), "AUTH is needed")
	assert.Equal(t, "-"+errWrongPass+"\r\n", anon.do("AUTH", "reader", "w-pw"), "another user's password")
	assert.Equal(t, "-"+errWrongPass+"\r\n", anon.do("AUTH", "nobody", "r-pw"))

	writer := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", writer.do("AUTH", "writer", "w-pw"))
	require.Equal(t, "+OK\r\n", writer.do("SET", "k", "v"))
	assert.Equal(t, replyNoAdmin, writer.do("FLUSHALL"), "admin commands need an admin")
	assert.Equal(t, replyNoAdmin, writer.do("CLIENT", "LIST"))
	assert.Equal(t, replyNoAdmin, writer.do("PROXY", "FAILOVER", "0"))

	reader := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", reader.do("AUTH", "reader", "r-pw"))
	assert.Equal(t, "$1\r\nv\r\n", reader.do("GET", "k"))
	assert.Equal(t, "-NOPERM this user has no permissions to run the 'set' command\r\n", reader.do("SET", "k", "x"))
	assert.Equal(t, "-NOPERM this user has no permissions to run the 'del' command\r\n", reader.do("DEL", "k"))
	assert.Equal(t, "-NOPERM this user has no permissions to run the 'eval' command\r\n", reader.do("EVAL", "return 1", "0"),
		"a script may write")
	assert.Equal(t, replyNoAdmin, reader.do("CLIENT", "KILL", "127.0.0.1:1"))
	assert.Equal(t, "$1\r\nv\r\n", reader.do("GET", "k"), "nothing was written")
	assert.Contains(t, reader.do("CLIENT", "INFO"), "user=reader")

	// HELLO ... AUTH checks the same table.
	hello := dialResp(t, addr)
	assert.True(t, strings.HasPrefix(hello.do("HELLO", "2", "AUTH", "reader", "bad"), "-WRONGPASS"))
	assert.True(t, strings.HasPrefix(hello.do("HELLO", "2", "AUTH", "reader", "r-pw"), "*"))
	assert.True(t, strings.HasPrefix(hello.do("SET", "k", "x"), "-NOPERM"))

	// AUTH <password> is the default user's, of role read-write.
	def := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", def.do("AUTH", "def-pw"))
	require.Equal(t, "+OK\r\n", def.do("SET", "k", "y"))
	assert.Equal(t, replyNoAdmin, def.do("FLUSHDB"))

	for _, login := range [][]string{{"AUTH", "boss", "b-pw"}, {"AUTH", "admin", "adm-pw"}} {
		admin := dialResp(t, addr)
		require.Equal(t, "+OK\r\n", admin.do(login...))
		assert.Equal(t, "+OK\r\n", admin.do("FLUSHDB"), "%q", login)
		assert.True(t, strings.HasPrefix(admin.do("CLIENT", "LIST"), "$"))
	}
}

// Without an admin user, admin commands stay open to every user but the
// read-only ones; with a user table, the default user needs --password.
func TestUsersWithoutAdmin(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(2), func(c *Config) {
		c.Users = []User{{Name: "reader", Password: "r", Role: RoleReadOnly}, {Name: "writer", Password: "w", Role: RoleReadWrite}}
	})
	c := dialResp(t, addr)
	assert.True(t, strings.HasPrefix(c.do("GET", "k"), "-NOAUTH"), "a user table means AUTH")
	assert.Equal(t, "-"+errWrongPass+"\r\n", c.do("AUTH", "default", ""), "no default user without a password")
	require.Equal(t, "+OK\r\n", c.do("AUTH", "writer", "w"))
	assert.Equal(t, "+OK\r\n", c.do("FLUSHDB"))
	require.Equal(t, "+OK\r\n", c.do("AUTH", "reader", "r"))
	assert.Equal(t, replyNoAdmin, c.do("CLIENT", "LIST"))
}

func TestReloadUsers(t *testing.T) {
	srv, addr := startProxy(t, newFakeCluster(2), usersConfig)
	reader := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", reader.do("AUTH", "reader", "r-pw"))
	writer := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", writer.do("AUTH", "writer", "w-pw"))
	def := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", def.do("AUTH", "def-pw"))

	cfg := srv.cfg
	cfg.Password = "new-def"
	cfg.Users = []User{{Name: "reader", Password: "r2", Role: RoleReadWrite}}
	require.NoError(t, srv.Reload(cfg))

	assert.Equal(t, "+OK\r\n", reader.do("SET", "k", "v"), "a kept user takes on its new role at once")
	assert.Contains(t, reader.do("CLIENT", "INFO"), "user=reader")
	assert.True(t, strings.HasPrefix(writer.do("GET", "k"), "-NOAUTH"), "a removed user must AUTH again")
	assert.Equal(t, "$1\r\nv\r\n", def.do("GET", "k"), "the default user is kept across a new password")

	fresh := dialResp(t, addr)
	assert.Equal(t, "-"+errWrongPass+"\r\n", fresh.do("AUTH", "def-pw"), "the old password is refused")
	assert.Equal(t, "+OK\r\n", fresh.do("AUTH", "new-def"))
	assert.Equal(t, "-"+errWrongPass+"\r\n", fresh.do("AUTH", "reader", "r-pw"))
	assert.Equal(t, "+OK\r\n", fresh.do("AUTH", "reader", "r2"))

	bad := cfg
	bad.Users = []User{{Name: "x", Role: RoleAdmin}, {Name: "default", Password: "p", Role: RoleAdmin}}
	err := srv.Reload(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "users[0] (x): no password")
	assert.Contains(t, err.Error(), `users[1]: name "default"`)
	assert.Equal(t, "+OK\r\n", dialResp(t, addr).do("AUTH", "new-def"), "a refused reload changes nothing")
}

func TestParseRole(t *testing.T) {
	for _, name := range []string{"read-only", "read-write", "admin", "READ-ONLY"} {
		r, err := ParseRole(name)
		require.NoError(t, err)
		assert.Equal(t, strings.ToLower(name), r.String())
	}
	_, err := ParseRole("root")
	assert.ErrorContains(t, err, `role "root": want read-only, read-write or admin`)
}

// Passwords are compared in constant time, whatever the user.
func TestPasswordsAreComparedInConstantTime(t *testing.T) {
	src, err := os.ReadFile("auth.go")
	require.NoError(t, err)
	text := string(src)
	assert.Contains(t, text, "subtle.ConstantTimeCompare(password, []byte(u.Password))")
	assert.Equal(t, 1, strings.Count(text, "ConstantTimeCompare"))
	assert.NotRegexp(t, `string\(password\) *[!=]=|[!=]= *string\(password\)|bytes\.Equal\(password`, text, "no other comparison")
}

// Reload changes the client limit for the next connection, and INFO tells
// the limits in force; a config that does not validate changes nothing.
func TestReloadLimits(t *testing.T) {
	srv, addr := startProxy(t, newFakeCluster(1), func(c *Config) { c.MaxClients = 1 })
	first := dialResp(t, addr)
	assert.Equal(t, "+PONG\r\n", first.do("PING"))
	assert.Equal(t, "-ERR max number of clients reached\r\n", dialResp(t, addr).read())

	cfg := srv.cfg
	cfg.MaxClients = 2
	cfg.PubSubOutputLimit = 1 << 20
	cfg.ClientOutputLimit = 1 << 20
	require.NoError(t, srv.Reload(cfg))
	second := dialResp(t, addr)
	assert.Equal(t, "+PONG\r\n", second.do("PING"))
	assert.Equal(t, "2", infoField(t, second, "maxclients"))
	assert.Equal(t, "1048576", infoField(t, second, "pubsub_output_limit"))

	bad := cfg
	bad.MaxClients = 0
	require.Error(t, srv.Reload(bad))
	assert.Equal(t, "2", infoField(t, first, "maxclients"))
}

// The per-command check for a reload of the users is one atomic load and a
// comparison.
func BenchmarkFollowCredentials(b *testing.B) {
	srv, _ := startProxy(b, newFakeCluster(1), usersConfig)
	s := &session{srv: srv, creds: srv.creds.Load(), authed: true, user: "reader"}
	for b.Loop() {
		s.followCredentials()
	}
}
