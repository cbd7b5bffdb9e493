package kvsim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// ntID makes a recognizable 40-character node id.
func ntID(c byte) string { return strings.Repeat(string(c), 40) }

// ntStartNode starts a node on a free loopback port, killed at cleanup.
func ntStartNode(t testing.TB, cfg NodeConfig) *Node {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	n, err := StartNode(cfg)
	require.NoError(t, err)
	t.Cleanup(n.Kill)
	return n
}

// ntConn is a test client speaking RESP over a plain connection and
// returning replies as raw bytes, for byte-exact checks.
type ntConn struct {
	t    testing.TB
	conn net.Conn
	rd   *bufio.Reader
}

func ntDial(t testing.TB, addr string) *ntConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &ntConn{t: t, conn: conn, rd: bufio.NewReader(conn)}
}

// send writes one command without reading its reply.
func (c *ntConn) send(args ...string) {
	c.t.Helper()
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	require.NoError(c.t, c.conn.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := c.conn.Write(appendCommand(nil, bs...))
	require.NoError(c.t, err)
}

// read reads one whole reply frame.
func (c *ntConn) read() string {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	reply, err := ntReadFrame(c.rd)
	require.NoError(c.t, err)
	return reply
}

// tryDo is do without test assertions, for helper goroutines.
func (c *ntConn) tryDo(args ...string) (string, error) {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	if err := c.conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.conn.Write(appendCommand(nil, bs...)); err != nil {
		return "", err
	}
	return ntReadFrame(c.rd)
}

// do sends a command and returns its raw reply.
func (c *ntConn) do(args ...string) string {
	c.t.Helper()
	c.send(args...)
	return c.read()
}

// ntReadFrame reads one RESP2 frame and returns it verbatim.
func ntReadFrame(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return "", fmt.Errorf("bad line %q", line)
	}
	switch line[0] {
	case '+', '-', ':', '_', ',', '#':
		return line, nil
	case '$', '=':
		n, err := strconv.Atoi(line[1 : len(line)-2])
		if err != nil {
			return "", err
		}
		if n < 0 {
			return line, nil
		}
		buf := make([]byte, n+2)
		if _, err := ntReadFull(rd, buf); err != nil {
			return "", err
		}
		return line + string(buf), nil
	case '*', '~', '%', '>':
		n, err := strconv.Atoi(line[1 : len(line)-2])
		if err != nil {
			return "", err
		}
		if line[0] == '%' {
			n *= 2
		}
		out := line
		for range max(n, 0) {
			el, err := ntReadFrame(rd)
			if err != nil {
				return "", err
			}
			out += el
		}
		return out, nil
	}
	return "", fmt.Errorf("bad frame %q", line)
}

func ntReadFull(rd *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := rd.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// bulk is the RESP bulk string of s.
func ntBulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// ntClient returns a go-redis client of addr (RESP2), closed at cleanup.
func ntClient(t testing.TB, addr, password string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, Protocol: 2,
		MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// ntMasterLine and ntReplicaLine build SETNODES lines.
func ntMasterLine(id string, n *Node, ranges ...string) string {
	host, port, _ := net.SplitHostPort(n.Addr())
	return strings.Join(append([]string{id, host, port, "master", "-"}, ranges...), " ")
}

func ntReplicaLine(id string, n *Node, masterID string) string {
	host, port, _ := net.SplitHostPort(n.Addr())
	return strings.Join([]string{id, host, port, "slave", masterID}, " ")
}

// ntPush sends SETNODEID and SETNODES to every node, as a controller does.
func ntPush(t testing.TB, version int, lines []string, nodes map[string]*Node) {
	t.Helper()
	body := strings.Join(lines, "\n")
	for id, n := range nodes {
		c := ntDial(t, n.Addr())
		if n.cfg.Password != "" {
			require.Equal(t, "+OK\r\n", c.do("AUTH", n.cfg.Password))
		}
		require.Equal(t, "+OK\r\n", c.do("CLUSTERX", "SETNODEID", id))
		require.Equal(t, "+OK\r\n", c.do("CLUSTERX", "SETNODES", body, strconv.Itoa(version)))
		c.conn.Close()
	}
}

// shard is a master with replicas on fresh nodes sharing one topology.
type ntShard struct {
	master   *Node
	replicas []*Node
	lines    []string
	nodes    map[string]*Node
}

// ntStartShard starts a master owning every slot and its replicas, pushes
// topology version 1 and waits for the replication links.
func ntStartShard(t testing.TB, replicas int, cfg NodeConfig) *ntShard {
	t.Helper()
	s := &ntShard{nodes: map[string]*Node{}}
	cfg.ID = ntID('a')
	s.master = ntStartNode(t, cfg)
	s.nodes[cfg.ID] = s.master
	s.lines = []string{ntMasterLine(cfg.ID, s.master, "0-16383")}
	for i := range replicas {
		cfg.ID = ntID(byte('b' + i))
		r := ntStartNode(t, cfg)
		s.replicas = append(s.replicas, r)
		s.nodes[cfg.ID] = r
		s.lines = append(s.lines, ntReplicaLine(cfg.ID, r, ntID('a')))
	}
	ntPush(t, 1, s.lines, s.nodes)
	for _, r := range s.replicas {
		ntWaitLinkUp(t, r)
	}
	return s
}

func ntWaitLinkUp(t testing.TB, n *Node) {
	t.Helper()
	require.Eventually(t, func() bool {
		l := n.link.get()
		return l != nil && l.up.Load()
	}, 10*time.Second, 5*time.Millisecond, "replication link of %s never came up", n.Addr())
}

// ntInfoField reads one field of INFO <section>.
func ntInfoField(t testing.TB, c *redis.Client, section, key string) string {
	t.Helper()
	text, err := c.Info(context.Background(), section).Result()
	require.NoError(t, err)
	for _, line := range strings.Split(text, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return v
		}
	}
	return ""
}

func ntFailoverState(t testing.TB, c *redis.Client) string {
	t.Helper()
	text, err := c.ClusterInfo(context.Background()).Result()
	require.NoError(t, err)
	for _, line := range strings.Split(text, "\r\n") {
		if v, ok := strings.CutPrefix(line, "cluster_failover_state:"); ok {
			return v
		}
	}
	return ""
}

// ntErr is the text of a RESP error from go-redis, "" for nil.
func ntErr(err error) string {
	var re redis.Error
	if errors.As(err, &re) {
		return re.Error()
	}
	if err != nil {
		return "go error: " + err.Error()
	}
	return ""
}

func ntSkipShort(t testing.TB) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
}
