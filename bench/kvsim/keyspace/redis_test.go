package keyspace

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

// redisConn is a raw RESP connection to a real redis-server: the replies are
// compared byte for byte, so no client library may reinterpret them.
type redisConn struct {
	conn net.Conn
	rd   *bufio.Reader
	buf  []byte
}

// startRedis runs a plain redis-server on a free loopback port for the test.
func startRedis(t *testing.T) *redisConn {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is required in CI: %v", err)
		}
		t.Skip("redis-server not installed: skipping the differential test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	var conn net.Conn
	require.Eventually(t, func() bool {
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "redis-server did not start: %s", &logs)
	t.Cleanup(func() { _ = conn.Close() })
	return &redisConn{conn: conn, rd: bufio.NewReader(conn)}
}

// do sends one command and returns its raw reply frame.
func (r *redisConn) do(t *testing.T, args [][]byte) []byte {
	t.Helper()
	var req []byte
	req = appendArray(req, len(args))
	for _, a := range args {
		req = appendBulk(req, a)
	}
	require.NoError(t, r.conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := r.conn.Write(req)
	require.NoError(t, err)
	for {
		if n, _ := redcon.ReadNextRESP(r.buf); n > 0 {
			frame := append([]byte(nil), r.buf[:n]...)
			r.buf = r.buf[n:]
			return frame
		}
		chunk := make([]byte, 64<<10)
		n, err := r.rd.Read(chunk)
		require.NoError(t, err)
		r.buf = append(r.buf, chunk[:n]...)
	}
}

// execLocal runs a command on the keyspace the way a node does.
func execLocal(k *Keyspace, args [][]byte) []byte {
	cmd := Lookup(args[0])
	switch {
	case cmd == nil:
		return AppendUnknownCommand(nil, args)
	case !cmd.ArityOK(len(args)):
		return AppendArityError(nil, cmd)
	}
	return k.Exec(nil, cmd, args)
}

// splitArgs splits a script line on spaces; "" is an empty argument and
// double quotes group words.
func splitArgs(line string) [][]byte {
	var args [][]byte
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		if line[0] == '"' {
			end := strings.IndexByte(line[1:], '"') + 1
			args = append(args, []byte(line[1:end]))
			line = line[end+1:]
			continue
		}
		end := strings.IndexByte(line, ' ')
		if end < 0 {
			end = len(line)
		}
		args = append(args, []byte(line[:end]))
		line = line[end:]
	}
	return args
}

// unordered lists the commands whose element order Redis leaves to its hash
// tables: their replies are compared as sorted multisets.
var unordered = map[string]bool{
	"smembers": true, "sunion": true, "sinter": true, "sdiff": true, "keys": true,
	"scan": true, "spop": true, "srandmember": true,
}

// normalize parses a reply frame into a comparable string; with sortArrays
// the elements of every array are sorted.
func normalize(frame []byte, sortArrays bool) (string, []byte, error) {
	if len(frame) == 0 {
		return "", nil, errors.New("empty frame")
	}
	end := bytes.Index(frame, []byte("\r\n"))
	if end < 0 {
		return "", nil, errors.New("no CRLF")
	}
	head, rest := string(frame[:end]), frame[end+2:]
	switch frame[0] {
	case '$':
		n, _ := strconv.Atoi(head[1:])
		if n < 0 {
			return head, rest, nil
		}
		return head + ":" + string(rest[:n]), rest[n+2:], nil
	case '*':
		n, _ := strconv.Atoi(head[1:])
		var elems []string
		for i := 0; i < n; i++ {
			var e string
			var err error
			if e, rest, err = normalize(rest, sortArrays); err != nil {
				return "", nil, err
			}
			elems = append(elems, e)
		}
		if sortArrays {
			sort.Strings(elems)
		}
		return head + "[" + strings.Join(elems, ",") + "]", rest, nil
	}
	return head, rest, nil
}

// replyShape describes a reply without the contents of its bulk strings and
// integers: what random commands (SRANDMEMBER, SPOP, RANDOMKEY, SCAN) must
// still agree on.
func replyShape(t *testing.T, frame []byte) string {
	t.Helper()
	norm, rest, err := normalize(frame, false)
	require.NoError(t, err)
	require.Empty(t, rest)
	var b strings.Builder
	for i := 0; i < len(norm); i++ {
		c := norm[i]
		b.WriteByte(c)
		if c != '$' && c != ':' || i+1 < len(norm) && norm[i+1] == '-' {
			continue
		}
		// Skip the length or value and a bulk's contents, up to the next separator.
		for i+1 < len(norm) && norm[i+1] != ',' && norm[i+1] != ']' {
			i++
		}
	}
	return b.String()
}

func compareReply(t *testing.T, line string, args [][]byte, want, got []byte) {
	t.Helper()
	name := strings.ToLower(string(args[0]))
	if !unordered[name] {
		require.Equal(t, string(want), string(got), "command: %s", line)
		return
	}
	w, _, err := normalize(want, true)
	require.NoError(t, err)
	g, _, err := normalize(got, true)
	require.NoError(t, err)
	require.Equal(t, w, g, "command (unordered): %s", line)
}

// TestDifferentialAgainstRedis replays scripted command sequences against a
// real redis-server and the keyspace and requires identical reply bytes.
func TestDifferentialAgainstRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	r := startRedis(t)
	for _, sc := range differentialScripts {
		t.Run(sc.name, func(t *testing.T) {
			k := New()
			for _, args := range [][][]byte{splitArgs("FLUSHALL")} {
				r.do(t, args)
				execLocal(k, args)
			}
			for _, line := range strings.Split(strings.TrimSpace(sc.script), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				shapeOnly := strings.HasPrefix(line, "~")
				args := splitArgs(strings.TrimPrefix(line, "~"))
				want := r.do(t, args)
				got := execLocal(k, args)
				if shapeOnly {
					require.Equal(t, replyShape(t, want), replyShape(t, got), "command (shape): %s", line)
					continue
				}
				compareReply(t, line, args, want, got)
			}
		})
	}
}

// TestCommandTableMatchesRedis checks every command's arity, write flag and
// key positions against COMMAND INFO of the real server.
func TestCommandTableMatchesRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	r := startRedis(t)
	for name, cmd := range table {
		frame := r.do(t, [][]byte{[]byte("COMMAND"), []byte("INFO"), []byte(name)})
		info := parseCommandInfo(t, frame)
		want := fmt.Sprintf("arity=%s write=%v keys=%s,%s,%s", info[1], strings.Contains(info[2], "write"), info[3], info[4], info[5])
		got := fmt.Sprintf("arity=%d write=%v keys=%d,%d,%d", cmd.Arity, cmd.Write, cmd.FirstKey, cmd.LastKey, cmd.Step)
		require.Equal(t, want, got, "command %s", name)
	}
}

// parseCommandInfo flattens the first six fields of a COMMAND INFO entry:
// name, arity, flags (joined), first key, last key, step.
func parseCommandInfo(t *testing.T, frame []byte) []string {
	t.Helper()
	lines := strings.Split(string(frame), "\r\n")
	// *1, *10 (entry), $n name, :arity, *k flags..., :first, :last, :step
	require.GreaterOrEqual(t, len(lines), 8)
	var out []string
	i := 2
	out = append(out, lines[i+1]) // name
	i += 2
	out = append(out, strings.TrimPrefix(lines[i], ":"))
	i++
	nflags, err := strconv.Atoi(strings.TrimPrefix(lines[i], "*"))
	require.NoError(t, err)
	i++
	var flags []string
	for j := 0; j < nflags; j++ {
		flags = append(flags, strings.TrimPrefix(lines[i], "+"))
		i++
	}
	out = append(out, strings.Join(flags, " "))
	for j := 0; j < 3; j++ {
		out = append(out, strings.TrimPrefix(lines[i], ":"))
		i++
	}
	return out
}

func TestReplyShape(t *testing.T) {
	assert.Equal(t, "*2[$,:]", replyShape(t, []byte("*2\r\n$1\r\na\r\n:5\r\n")))
	assert.Equal(t, "$-1", replyShape(t, []byte("$-1\r\n")))
	assert.Equal(t, "*2[$,*1[$]]", replyShape(t, []byte("*2\r\n$1\r\n0\r\n*1\r\n$3\r\nkey\r\n")))
	assert.Equal(t, "-ERR x", replyShape(t, []byte("-ERR x\r\n")))
}
