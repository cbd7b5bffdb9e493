package proxy

import (
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	require.NoError(t, good.Validate())
	for name, edit := range map[string]func(*Config){
		"listen":         func(c *Config) { c.ListenAddr = "nonsense" },
		"announce":       func(c *Config) { c.AnnounceAddr = ":6380" },
		"bulk":           func(c *Config) { c.MaxBulkLen = 0 },
		"bulk too long":  func(c *Config) { c.MaxBulkLen = router.MaxMaxBulkLen + 1 },
		"clients":        func(c *Config) { c.MaxClients = 0 },
		"many clients":   func(c *Config) { c.MaxClients = MaxMaxClients + 1 },
		"blocking":       func(c *Config) { c.MaxBlockingConns = 0 },
		"many blocking":  func(c *Config) { c.MaxBlockingConns = MaxMaxBlockingConns + 1 },
		"args":           func(c *Config) { c.MaxArgs = -1 },
		"request bytes":  func(c *Config) { c.MaxRequestBytes = 0 },
		"pipeline":       func(c *Config) { c.MaxPipeline = 0 },
		"output":         func(c *Config) { c.MaxOutputBytes = 0 },
		"pubsub output":  func(c *Config) { c.PubSubOutputLimit = 0 },
		"pubsub huge":    func(c *Config) { c.PubSubOutputLimit = MaxPubSubOutputLimit + 1 },
		"pubsub stall":   func(c *Config) { c.PubSubStallTimeout = 0 },
		"shutdown":       func(c *Config) { c.ShutdownTimeout = 0 },
		"logger":         func(c *Config) { c.Logger = nil },
		"announce port":  func(c *Config) { c.AnnounceAddr = "host:99999" },
		"listen no port": func(c *Config) { c.ListenAddr = "127.0.0.1" },
	} {
		cfg := DefaultConfig()
		edit(&cfg)
		assert.Error(t, cfg.Validate(), name)
	}
	cfg := DefaultConfig()
	cfg.ListenAddr = ":6380" // every interface
	assert.NoError(t, cfg.Validate())
}

func TestNewRejectsBadInput(t *testing.T) {
	_, err := New(DefaultConfig(), nil)
	assert.Error(t, err)
	cfg := DefaultConfig()
	cfg.MaxPipeline = 0
	_, err = New(cfg, newFakeCluster(1))
	assert.Error(t, err)
}

func TestPipelineRepliesInOrder(t *testing.T) {
	backend := newFakeCluster(3)
	_, addr := startProxy(t, backend, nil)
	c := dialResp(t, addr)
	c.send(encodeCommand("SET", "a", "1") + encodeCommand("PING") + encodeCommand("GET", "a") +
		encodeCommand("ECHO", "hi") + encodeCommand("GET", "missing") + encodeCommand("NOSUCH", "x") +
		"PING inline\r\n" + encodeCommand("SET", "b", "2") + encodeCommand("GET", "b"))
	for _, want := range []string{"+OK\r\n", "+PONG\r\n", "$1\r\n1\r\n", "$2\r\nhi\r\n", "$-1\r\n",
		"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n", "$6\r\ninline\r\n", "+OK\r\n", "$1\r\n2\r\n"} {
		assert.Equal(t, want, c.read())
	}
}

func TestMultiKeyCommandsSplitAcrossSlots(t *testing.T) {
	backend := newFakeCluster(3)
	_, addr := startProxy(t, backend, nil)
	c := dialResp(t, addr)
	keys := []string{"alpha", "beta", "gamma", "delta", "epsilon", "{alpha}x"}
	// The keys must span masters, or this test proves nothing.
	owners := map[string]bool{}
	for _, k := range keys {
		owners[backend.ownerOf(int(router.Slot([]byte(k))))] = true
	}
	require.Greater(t, len(owners), 1)

	mset := []string{"MSET"}
	for i, k := range keys {
		mset = append(mset, k, "v"+strconv.Itoa(i))
	}
	mset = append(mset, "alpha", "last") // a repeated key: the last value wins
	assert.Equal(t, "+OK\r\n", c.do(mset...))

	var want strings.Builder
	want.WriteString("*8\r\n")
	for i, k := range append([]string{"nope"}, append(keys, "nope2")...) {
		switch {
		case k == "alpha":
			want.WriteString("$4\r\nlast\r\n")
		case strings.HasPrefix(k, "nope"):
			want.WriteString("$-1\r\n")
		default:
			v := "v" + strconv.Itoa(i-1)
			fmt.Fprintf(&want, "$%d\r\n%s\r\n", len(v), v)
		}
	}
	assert.Equal(t, want.String(), c.do(append([]string{"MGET", "nope"}, append(keys, "nope2")...)...))

	assert.Equal(t, ":3\r\n", c.do("EXISTS", "alpha", "beta", "nope", "alpha"))
	assert.Equal(t, ":1\r\n", c.do("TOUCH", "gamma", "nope"))
	assert.Equal(t, ":2\r\n", c.do("DEL", "alpha", "beta", "nope"))
	assert.Equal(t, ":1\r\n", c.do("UNLINK", "gamma", "beta"))
	assert.Equal(t, "*2\r\n$-1\r\n$2\r\nv3\r\n", c.do("MGET", "alpha", "delta"))

	assert.Equal(t, "-ERR wrong number of arguments for 'mset' command\r\n", c.do("MSET", "alpha", "1", "beta"))

	// Other multi-key commands must stay within one slot.
	assert.Equal(t, "-CROSSSLOT Keys in request don't hash to the same slot\r\n", c.do("SUNION", "alpha", "beta"))
	assert.Equal(t, "*0\r\n", c.do("SUNION", "{alpha}1", "{alpha}2"))
}

func TestFanOutCommandsMergeEveryMaster(t *testing.T) {
	backend := newFakeCluster(3)
	_, addr := startProxy(t, backend, nil)
	c := dialResp(t, addr)
	assert.Equal(t, "$-1\r\n", c.do("RANDOMKEY"))
	var keys []string
	for i := range 40 {
		k := "key:" + strconv.Itoa(i)
		keys = append(keys, k)
		require.Equal(t, "+OK\r\n", c.do("SET", k, "x"))
	}
	for _, addr := range backend.masters {
		require.NotEmpty(t, backend.data[addr], "every master must hold keys")
	}
	assert.Equal(t, ":40\r\n", c.do("DBSIZE"))

	got := parseBulkArray(t, c.do("KEYS", "key:*"))
	assert.ElementsMatch(t, keys, got)

	// SCAN walks every master once, with small pages.
	var scanned []string
	cursor := "0"
	for round := 0; ; round++ {
		require.Less(t, round, 100, "SCAN does not terminate")
		reply := c.do("SCAN", cursor, "COUNT", "7")
		next, page := parseScanReply(t, reply)
		scanned = append(scanned, page...)
		cursor = next
		if cursor == "0" {
			break
		}
	}
	assert.ElementsMatch(t, keys, scanned)
	assert.Equal(t, "-ERR invalid cursor\r\n", c.do("SCAN", "abc"))

	assert.Contains(t, keys, strings.Split(c.do("RANDOMKEY"), "\r\n")[1])
	assert.Equal(t, "+OK\r\n", c.do("FLUSHDB"))
	assert.Equal(t, ":0\r\n", c.do("DBSIZE"))
	assert.Equal(t, "$-1\r\n", c.do("RANDOMKEY"))

	// SCRIPT LOAD reaches every master; masters that disagree on the sha
	// (this fake names each its own) get an error, never one of the shas.
	assert.Equal(t, "-ERR kvproxy: the masters answered differently: \"$22\\r\\nsha-from-10.0.0.1:7000\\r\\n\" and \"$22\\r\\nsha-from-10.0.0.2:7000\\r\\n\"\r\n",
		c.do("SCRIPT", "LOAD", "return 1"))
	calls := backend.callLog()
	last := calls[len(calls)-1]
	assert.Len(t, last, 3)
}

// parseBulkArray reads a RESP array of bulk strings.
func parseBulkArray(t *testing.T, reply string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(reply, "\r\n"), "\r\n")
	require.True(t, strings.HasPrefix(lines[0], "*"), reply)
	n, err := strconv.Atoi(lines[0][1:])
	require.NoError(t, err)
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, lines[2+2*i])
	}
	return out
}

func parseScanReply(t *testing.T, reply string) (string, []string) {
	t.Helper()
	lines := strings.SplitN(reply, "\r\n", 4)
	require.Equal(t, "*2", lines[0], reply)
	return lines[2], parseBulkArray(t, lines[3])
}

func TestLocalCommands(t *testing.T) {
	backend := newFakeCluster(2)
	srv, addr := startProxy(t, backend, nil)
	c := dialResp(t, addr)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"ping", "x"}, "$1\r\nx\r\n"},
		{[]string{"PING", "a", "b"}, "-ERR wrong number of arguments for 'ping' command\r\n"},
		{[]string{"ECHO"}, "-ERR wrong number of arguments for 'echo' command\r\n"},
		{[]string{"GET"}, "-ERR wrong number of arguments for 'get' command\r\n"},
		{[]string{"FOO"}, "-ERR unknown command 'FOO', with args beginning with: \r\n"},
		{[]string{"SELECT", "0"}, "+OK\r\n"},
		{[]string{"SELECT", "1"}, "-ERR DB index is out of range\r\n"},
		{[]string{"SELECT", "x"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"HELLO", "4"}, "-NOPROTO unsupported protocol version\r\n"},
		{[]string{"HELLO", "1"}, "-NOPROTO unsupported protocol version\r\n"},
		{[]string{"HELLO", "abc"}, "-ERR Protocol version is not an integer or out of range\r\n"},
		{[]string{"HELLO", "2", "FOO"}, "-ERR Syntax error in HELLO option 'FOO'\r\n"},
		{[]string{"AUTH", "pw"}, "-" + errNoPass + "\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
		{[]string{"CLIENT", "SETNAME", "a b"}, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"},
		{[]string{"CLIENT", "SETNAME", "app"}, "+OK\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$3\r\napp\r\n"},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETINFO", "foo", "x"}, "-ERR Unrecognized option 'foo'\r\n"},
		{[]string{"CLIENT", "NOSUCH"}, "-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n"},
		{[]string{"CLIENT", "SETNAME"}, "-ERR wrong number of arguments for 'client|setname' command\r\n"},
		{[]string{"CLIENT", "KILL", "ID", "1"}, ":0\r\n"}, // SKIPME yes: not the caller
		{[]string{"CLIENT", "KILL", "127.0.0.1:1"}, "-ERR No such client\r\n"},
		{[]string{"CLUSTER", "KEYSLOT", "foo"}, ":12182\r\n"},
		{[]string{"CLUSTER", "KEYSLOT", "{user1000}.following"}, fmt.Sprintf(":%d\r\n", router.Slot([]byte("user1000")))},
		{[]string{"CLUSTER", "MYID"}, "$40\r\n" + srv.nodeID + "\r\n"},
		{[]string{"MULTI"}, "-ERR command 'MULTI' is not supported by kvproxy\r\n"},
		{[]string{"BLPOP", "k", "0"}, "-ERR command 'BLPOP' is not supported by kvproxy\r\n"},
		{[]string{"SUBSCRIBE", "ch"}, "-ERR command 'SUBSCRIBE' is not supported by kvproxy\r\n"},
		{[]string{"CONFIG", "GET", "x"}, "-ERR fake: unknown command 'config'\r\n"}, // reached a master
		{[]string{"READONLY"}, "+OK\r\n"},
		{[]string{"COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"}, "*2\r\n$1\r\na\r\n$1\r\nb\r\n"},
		{[]string{"COMMAND", "INFO", "nosuch"}, "*1\r\n*-1\r\n"},
		{[]string{"COMMAND", "COUNT"}, fmt.Sprintf(":%d\r\n", len(commandTable))},
		{[]string{"PROXY"}, "-ERR wrong number of arguments for 'proxy' command\r\n"},
		{[]string{"PROXY", "NOPE"}, "-ERR unknown subcommand 'NOPE'. Try PROXY HELP.\r\n"},
		{[]string{"TIME"}, "$13\r\n" + backend.masters[int(1)%2] + "\r\n"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, c.do(tt.args...), "%q", tt.args)
	}

	hello := c.do("HELLO", "2", "SETNAME", "named")
	assert.Equal(t, "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$7\r\ncluster\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n", hello)
	assert.Equal(t, "$5\r\nnamed\r\n", c.do("CLIENT", "GETNAME"))
	assert.Equal(t, ":1\r\n", c.do("CLIENT", "ID"))

	info := c.do("CLIENT", "INFO")
	assert.Contains(t, info, "id=1 addr="+c.conn.LocalAddr().String()+" laddr="+addr+" fd=-1 name=named ")
	assert.Contains(t, info, " cmd=client|info user=default redir=-1 resp=2\n")

	host, port, _ := net.SplitHostPort(addr)
	assert.Equal(t, fmt.Sprintf("*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$%d\r\n%s\r\n:%s\r\n$40\r\n%s\r\n", len(host), host, port, srv.nodeID),
		c.do("CLUSTER", "SLOTS"))
	nodes := c.do("CLUSTER", "NODES")
	p, _ := strconv.Atoi(port)
	assert.Contains(t, nodes, srv.nodeID+" "+addr+"@"+strconv.Itoa(p+10000)+" myself,master - 0 0 1 connected 0-16383\n")
	assert.Contains(t, c.do("CLUSTER", "INFO"), "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n")

	all := c.do("INFO")
	for _, section := range []string{"# Server\r\n", "# Clients\r\n", "# Stats\r\n", "# Proxy\r\n", "redis_version:7.0.15\r\n", "kvproxy_version:devel\r\n", "connected_clients:1\r\n",
		"backend0:id=1111111111111111111111111111111111111111,addr=10.0.0.1:7000,role=master,master=-,slots=0-8191\r\n",
		"backend2:id=9999999999999999999999999999999999999999,addr=10.0.0.99:7000,role=replica,master=1111111111111111111111111111111111111111,slots=\r\n"} {
		assert.Contains(t, all, section)
	}
	proxyOnly := c.do("INFO", "proxy")
	assert.NotContains(t, proxyOnly, "# Server")
	assert.Contains(t, proxyOnly, "# Proxy\r\n")

	assert.Equal(t, "$"+strconv.Itoa(len(srv.backendNodes()))+"\r\n"+
		"1111111111111111111111111111111111111111 10.0.0.1:7000@17000 master - 0 0 7 connected 0-8191\n"+
		"2222222222222222222222222222222222222222 10.0.0.2:7000@17000 master - 0 0 7 connected 8192-16383\n"+
		"9999999999999999999999999999999999999999 10.0.0.99:7000@17000 slave 1111111111111111111111111111111111111111 0 0 7 connected\n\r\n",
		c.do("PROXY", "NODES"))

	assert.Equal(t, "+RESET\r\n", c.do("RESET"))
	assert.Equal(t, "$-1\r\n", c.do("CLIENT", "GETNAME"))

	assert.Equal(t, "+OK\r\n", c.do("QUIT"))
	assert.True(t, c.closedByPeer())
}

func TestCommandIntrospection(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(1), nil)
	c := dialResp(t, addr)
	get := c.do("COMMAND", "INFO", "get")
	assert.Equal(t, "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n", get)
	all := c.do("COMMAND")
	assert.True(t, strings.HasPrefix(all, "*"+strconv.Itoa(len(commandTable))+"\r\n"))
	assert.Contains(t, all, "$11\r\nclient|list\r\n")
	docs := c.do("COMMAND", "DOCS", "set")
	assert.Equal(t, "*2\r\n$3\r\nset\r\n*6\r\n$7\r\nsummary\r\n$0\r\n\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$7\r\ngeneric\r\n", docs)
}

func TestAuthentication(t *testing.T) {
	_, addr := startProxy(t, newFakeCluster(1), func(c *Config) { c.Password = "s3cret" })
	c := dialResp(t, addr)
	assert.Equal(t, "-NOAUTH Authentication required.\r\n", c.do("GET", "a"))
	assert.Equal(t, "-NOAUTH Authentication required.\r\n", c.do("PING"))
	assert.Equal(t, "-NOAUTH Authentication required.\r\n", c.do("PROXY", "NODES"))
	assert.Equal(t, "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n", c.do("HELLO", "2"))
	assert.Equal(t, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", c.do("AUTH", "wrong"))
	assert.Equal(t, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", c.do("AUTH", "other", "s3cret"))
	assert.Equal(t, "+OK\r\n", c.do("AUTH", "s3cret"))
	assert.Equal(t, "+PONG\r\n", c.do("PING"))
	assert.Equal(t, "+RESET\r\n", c.do("RESET"))
	assert.Equal(t, "-NOAUTH Authentication required.\r\n", c.do("PING"))
	assert.True(t, strings.HasPrefix(c.do("HELLO", "2", "AUTH", "default", "s3cret"), "*14\r\n"))
	assert.Equal(t, "$-1\r\n", c.do("GET", "a"))

	// A request pipelined behind AUTH is judged after the AUTH ran.
	c1 := dialResp(t, addr)
	c1.send(encodeCommand("AUTH", "s3cret") + encodeCommand(append([]string{"MSET"}, slices.Repeat([]string{"{t}k", "v"}, 6)...)...) +
		encodeCommand("SET", "big", strings.Repeat("x", 20000)))
	assert.Equal(t, "+OK\r\n", c1.read())
	assert.Equal(t, "+OK\r\n", c1.read())
	assert.Equal(t, "+OK\r\n", c1.read())

	// Before AUTH, Redis' small request caps apply.
	c2 := dialResp(t, addr)
	c2.send(encodeCommand("AUTH", strings.Repeat("x", 20000)))
	assert.Equal(t, "-ERR Protocol error: unauthenticated bulk length\r\n", c2.read())
	assert.True(t, c2.closedByPeer())
	c3 := dialResp(t, addr)
	c3.send(encodeCommand(slices.Repeat([]string{"x"}, 11)...))
	assert.Equal(t, "-ERR Protocol error: unauthenticated multibulk length\r\n", c3.read())
	assert.True(t, c3.closedByPeer())
}

func TestGuardClosesOnlyTheOffendingConnection(t *testing.T) {
	backend := newFakeCluster(2)
	_, addr := startProxy(t, backend, func(c *Config) {
		c.MaxBulkLen = 1000
		c.MaxArgs = 100
	})
	bystander := dialResp(t, addr)
	require.Equal(t, "+OK\r\n", bystander.do("SET", "k", "v"))

	tests := []struct {
		name, input, want string
	}{
		{"bulk over MaxBulkLen", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1001\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"too many arguments", "*101\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"negative bulk", "*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"not a bulk", "*1\r\n:5\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"},
		{"zero arguments", "*0\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"bad terminator", "*1\r\n$4\r\nPINGxx", "-ERR Protocol error: invalid bulk length\r\n"},
		{"huge inline", strings.Repeat("a", resp.MaxInlineLen+1), "-ERR Protocol error: too big inline request\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialResp(t, addr)
			// Earlier commands in the same stream are still answered.
			c.send(encodeCommand("PING") + encodeCommand("GET", "k") + tt.input)
			assert.Equal(t, "+PONG\r\n", c.read())
			assert.Equal(t, "$1\r\nv\r\n", c.read())
			assert.Equal(t, tt.want, c.read())
			assert.True(t, c.closedByPeer())
		})
	}
	assert.Equal(t, "$1\r\nv\r\n", bystander.do("GET", "k"))
	assert.Contains(t, bystander.do("INFO", "stats"), "rejected_requests:"+strconv.Itoa(len(tests))+"\r\n")
}

func TestLongPipelineIsServedInBoundedBatches(t *testing.T) {
	backend := newFakeCluster(2)
	_, addr := startProxy(t, backend, func(c *Config) {
		c.MaxPipeline = 3
		c.MaxOutputBytes = 16
	})
	c := dialResp(t, addr)
	var stream strings.Builder
	for i := range 10 {
		stream.WriteString(encodeCommand("SET", "k"+strconv.Itoa(i), strconv.Itoa(i)))
		stream.WriteString(encodeCommand("GET", "k"+strconv.Itoa(i)))
	}
	c.send(stream.String())
	for i := range 10 {
		assert.Equal(t, "+OK\r\n", c.read())
		v := strconv.Itoa(i)
		assert.Equal(t, "$"+strconv.Itoa(len(v))+"\r\n"+v+"\r\n", c.read())
	}
	for _, call := range backend.callLog() {
		assert.LessOrEqual(t, len(call), 3)
	}

	// A reply over MaxOutputBytes bypasses the buffer, in order.
	big := strings.Repeat("z", 100)
	require.Equal(t, "+OK\r\n", c.do("SET", "big", big))
	c.send(encodeCommand("GET", "k1") + encodeCommand("GET", "big") + encodeCommand("GET", "k2") + encodeCommand("MGET", "big", "k3"))
	assert.Equal(t, "$1\r\n1\r\n", c.read())
	assert.Equal(t, "$100\r\n"+big+"\r\n", c.read())
	assert.Equal(t, "$1\r\n2\r\n", c.read())
	assert.Equal(t, "*2\r\n$100\r\n"+big+"\r\n$1\r\n3\r\n", c.read())
}

func TestCloseFinishesInFlightBatches(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	backend := newFakeCluster(1)
	backend.hold = make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.AnnounceAddr = ln.Addr().String()
	srv, err := New(cfg, backend)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	idle := dialResp(t, ln.Addr().String())
	require.Equal(t, "+PONG\r\n", idle.do("PING"))
	busy := dialResp(t, ln.Addr().String())
	busy.send(encodeCommand("SET", "k", "v"))
	select {
	case <-backend.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the batch never reached the backend")
	}

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	// The idle client is let go while the busy one waits for its reply.
	assert.True(t, idle.closedByPeer())
	select {
	case <-closed:
		t.Fatal("Close returned before the in-flight batch was answered")
	default:
	}
	close(backend.hold)
	assert.Equal(t, "+OK\r\n", busy.read())
	assert.True(t, busy.closedByPeer())
	select {
	case err := <-closed:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	assert.ErrorIs(t, <-served, ErrServerClosed)
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	assert.Error(t, err, "the listener must be closed")
	assertNoGoroutinesLeft(t, goroutines)
}

// assertNoGoroutinesLeft waits (bounded) for the goroutine count to fall back
// to baseline. It polls by hand: assert.Eventually runs its condition on
// goroutines of its own, which the count would include.
func assertNoGoroutinesLeft(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left behind:\n%s", n-baseline, buf[:runtime.Stack(buf, true)])
	}
}

func TestCloseCancelsStuckBatchesAfterTimeout(t *testing.T) {
	backend := newFakeCluster(1)
	backend.hold = make(chan struct{}) // never released
	srv, addr := startProxy(t, backend, func(c *Config) { c.ShutdownTimeout = 50 * time.Millisecond })
	c := dialResp(t, addr)
	c.send(encodeCommand("GET", "k"))
	select {
	case <-backend.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the batch never reached the backend")
	}
	require.NoError(t, srv.Close())
	// The cancelled request is answered or the connection dropped; either
	// way the client is not left hanging.
	reply, err := c.tryRead()
	if err == nil {
		assert.Equal(t, "-ERR cancelled\r\n", reply)
	}
}
