package hardening

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kvproxy/bench/cluster"
	"kvproxy/bench/kvsim"
)

// Raw RESP connections: the tests must see every reply as the proxy sent
// it, which client libraries hide (go-redis retries TRYAGAIN, for one).

// answerTimeout is how long a request may go unanswered before the tests
// call it a hang: well past every budget the proxy has (hold-timeout 2.5 s,
// backend-dead-timeout 10 s).
const answerTimeout = 15 * time.Second

// reply is one RESP2 reply.
type reply struct {
	// kind is the type byte: '+', '-', ':', '$' or '*'.
	kind byte
	// text is a status, error (without the '-'), integer or bulk string.
	text string
	// null marks a null bulk string or array.
	null  bool
	elems []reply
}

func (r reply) isError() bool { return r.kind == '-' }

func (r reply) String() string {
	switch {
	case r.null:
		return "(nil)"
	case r.kind == '*':
		return fmt.Sprintf("array of %d", len(r.elems))
	case len(r.text) > 120:
		return fmt.Sprintf("%c%s... (%d bytes)", r.kind, r.text[:120], len(r.text))
	}
	return string(r.kind) + r.text
}

// respConn is one client connection, one request at a time or a pipeline.
type respConn struct {
	nc net.Conn
	r  *bufio.Reader
}

func dialResp(addr string) (*respConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &respConn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10)}, nil
}

// mustDial dials addr and closes the connection when the test ends.
func mustDial(tb testing.TB, addr string) *respConn {
	tb.Helper()
	c, err := dialResp(addr)
	if err != nil {
		tb.Fatalf("connecting to %s: %v", addr, err)
	}
	tb.Cleanup(c.close)
	return c
}

func (c *respConn) close() { c.nc.Close() }

// do sends one command and reads its reply, both within answerTimeout. An
// error means no reply: the connection failed or the reply did not come.
func (c *respConn) do(args ...string) (reply, error) {
	if err := c.nc.SetDeadline(time.Now().Add(answerTimeout)); err != nil {
		return reply{}, err
	}
	if _, err := c.nc.Write(appendCommand(nil, args...)); err != nil {
		return reply{}, err
	}
	return readReply(c.r)
}

// appendCommand appends args as a RESP array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (reply, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return reply{}, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return reply{}, fmt.Errorf("malformed reply line %q", line)
	}
	kind, text := line[0], line[1:len(line)-2]
	switch kind {
	case '+', '-', ':':
		return reply{kind: kind, text: text}, nil
	case '$', '*':
		n, err := strconv.Atoi(text)
		if err != nil {
			return reply{}, fmt.Errorf("malformed length in %q", line)
		}
		if n < 0 {
			return reply{kind: kind, null: true}, nil
		}
		if kind == '$' {
			b := make([]byte, n+2)
			if _, err := io.ReadFull(r, b); err != nil {
				return reply{}, err
			}
			return reply{kind: kind, text: string(b[:n])}, nil
		}
		rep := reply{kind: kind, elems: make([]reply, n)}
		for i := range n {
			if rep.elems[i], err = readReply(r); err != nil {
				return reply{}, err
			}
		}
		return rep, nil
	}
	return reply{}, fmt.Errorf("unknown reply type in %q", line)
}

// replyClass sorts what a request got into the outcomes issue 9 allows.
type replyClass int

const (
	classOK replyClass = iota
	// classNotExecuted is a TRYAGAIN saying the command was not executed:
	// the hold budget ran out, or the backend is unreachable.
	classNotExecuted
	// classMayHaveRun: the command was sent and its connection was lost.
	classMayHaveRun
	// classTryAgain is any other TRYAGAIN (a read sent to a node declared
	// dead).
	classTryAgain
	// classOtherError is any other error reply.
	classOtherError
	// classNoReply: no reply within answerTimeout, or the connection failed.
	classNoReply
	classCount
)

var classNames = [classCount]string{"ok", "TRYAGAIN not executed", "may have run", "other TRYAGAIN", "other error", "no reply"}

func (c replyClass) String() string { return classNames[c] }

// mayHaveRunError is the proxy's reply to a write whose backend connection
// was lost after it was sent.
const mayHaveRunError = "ERR backend connection lost after the command was sent: the command may have run"

func classify(rep reply, err error) replyClass {
	switch {
	case err != nil:
		return classNoReply
	case !rep.isError():
		return classOK
	case strings.HasPrefix(rep.text, "TRYAGAIN") && strings.Contains(rep.text, "not executed"):
		return classNotExecuted
	case rep.text == mayHaveRunError:
		return classMayHaveRun
	case strings.HasPrefix(rep.text, "TRYAGAIN"):
		return classTryAgain
	}
	return classOtherError
}

// proxyInfo returns the fields of the proxy's INFO (every section).
func proxyInfo(tb testing.TB, addr string) map[string]string {
	tb.Helper()
	c, err := dialResp(addr)
	if err != nil {
		tb.Fatalf("INFO: %v", err)
	}
	defer c.close()
	rep, err := c.do("INFO")
	if err != nil || rep.kind != '$' {
		tb.Fatalf("INFO through the proxy: %v %v", rep, err)
	}
	return kvsim.ParseInfoFields(rep.text)
}

// statValue returns an integer INFO field, and whether the proxy has it.
func statValue(tb testing.TB, fields map[string]string, name string) (int64, bool) {
	tb.Helper()
	s, ok := fields[name]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		tb.Fatalf("INFO %s:%s is not an integer", name, s)
	}
	return v, true
}

// nodePid is the process id a redis-server reports in INFO server.
func nodePid(tb testing.TB, n *cluster.Node) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	text, err := n.Client().Info(ctx, "server").Result()
	if err != nil {
		tb.Fatalf("INFO server on %s: %v", n, err)
	}
	pid, err := strconv.Atoi(kvsim.ParseInfoFields(text)["process_id"])
	if err != nil {
		tb.Fatalf("no process_id in INFO server of %s: %v", n, err)
	}
	return pid
}

// isClosedByPeer reports whether a read or write error means the other end
// closed or reset the connection.
func isClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
