package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrBinaryMissing is wrapped by every error caused by a program
// (redis-server, redis-benchmark, nutcracker) that cannot be found.
var ErrBinaryMissing = errors.New("binary not found")

// binaryFallbacks are looked at when a program is not in PATH: Debian
// installs nutcracker in /usr/sbin, which is not in every user's PATH.
var binaryFallbacks = map[string][]string{
	"nutcracker": {"/usr/sbin/nutcracker"},
}

// lookBinary resolves configured (when set) or else name, in PATH and then
// in name's known fallback locations.
func lookBinary(configured, name string) (string, error) {
	if configured != "" {
		path, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("loadgen: %w: %s: %v", ErrBinaryMissing, configured, err)
		}
		return path, nil
	}
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	for _, candidate := range binaryFallbacks[name] {
		if fi, statErr := os.Stat(candidate); statErr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", fmt.Errorf("loadgen: %w: %s is not in PATH", ErrBinaryMissing, name)
}

// RequireBinary returns the path of the named program. When it is missing
// the test is skipped, or failed when the environment has CI=true (CI
// machines must have every binary the tests use).
func RequireBinary(tb testing.TB, name string) string {
	tb.Helper()
	path, err := lookBinary("", name)
	if err != nil {
		skipOrFailMissing(tb, err)
	}
	return path
}

// skipOrFailMissing ends the test because of a missing binary: skipped
// normally, failed when CI=true.
func skipOrFailMissing(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%v (CI=true: every benchmark binary is required)", err)
	}
	tb.Skipf("%v: install redis-server, redis-tools and nutcracker to run this test", err)
}

// dieWithParent makes a child get SIGKILL when the process that started it
// dies, so a crashed or killed test leaves no server behind.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// freePort returns a loopback port that was free a moment ago. Whoever binds
// it next may lose a race with another process, so launchers retry.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("loadgen: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// pingTimeout bounds one readiness probe.
const pingTimeout = time.Second

// ping sends AUTH (when password is set) and PING over a fresh connection
// and expects +PONG. It speaks raw RESP because go-redis opens every
// connection with HELLO, which twemproxy does not support.
func ping(ctx context.Context, addr, password string) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	if password != "" {
		if _, err := conn.Write(respCommand("AUTH", password)); err != nil {
			return err
		}
		if _, err := readStatus(r, "OK"); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if _, err := conn.Write(respCommand("PING")); err != nil {
		return err
	}
	_, err = readStatus(r, "PONG")
	return err
}

func respCommand(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

// readStatus reads one reply line and checks it is the status +want.
func readStatus(r *bufio.Reader, want string) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line != "+"+want {
		return line, fmt.Errorf("got %q, want +%s", line, want)
	}
	return line, nil
}

// process is a started server process whose output goes to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has exited
	waitErr error         // Wait's result, set before done closes
}

// startProcess runs bin with args in dir, its stdout and stderr appended to
// dir/logName.
func startProcess(dir, logName, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, logName)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadgen: starting %s: %w", bin, err)
	}
	p := &process{name: filepath.Base(bin), cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends the process with SIGKILL (nothing it holds needs flushing) and
// waits for it.
func (p *process) kill() {
	if !p.exited() {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// maxLogTail bounds how much of a log goes into an error message.
const maxLogTail = 2048

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	if len(b) > maxLogTail {
		b = b[len(b)-maxLogTail:]
	}
	return strings.TrimSpace(string(b))
}

// errAddrInUse means the process exited because its port was taken between
// freePort and its bind: the launcher retries on another port.
var errAddrInUse = errors.New("address already in use")

// readyPollInterval is the pause between readiness probes.
const readyPollInterval = 20 * time.Millisecond

// waitReady probes addr with PING until it answers, the process exits, or
// ctx ends.
func (p *process) waitReady(ctx context.Context, addr, password string) error {
	for {
		if p.exited() {
			tail := p.logTail()
			if strings.Contains(strings.ToLower(tail), "address already in use") {
				return errAddrInUse
			}
			return fmt.Errorf("loadgen: %s exited before answering PING (%v); log:\n%s", p.name, p.waitErr, tail)
		}
		err := ping(ctx, addr, password)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadgen: %s at %s did not answer PING: %w (last error: %v); log:\n%s",
				p.name, addr, ctx.Err(), err, p.logTail())
		case <-time.After(readyPollInterval):
		}
	}
}

// startAttempts bounds relaunches after losing a port race.
const startAttempts = 5

// loopbackAddr is port's host:port on 127.0.0.1.
func loopbackAddr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// server is a launched process listening on a loopback address, with a
// temporary directory of its own.
type server struct {
	proc      *process
	addr      string
	dir       string
	closeOnce sync.Once
}

// launchServer makes a temporary directory named after dirPattern (see
// os.MkdirTemp) and starts a process in it with launch, as launchOnFreePort
// does. The directory is removed when the launch fails.
func launchServer(ctx context.Context, dirPattern, password string, launch func(dir string, port int) (*process, error)) (*server, error) {
	dir, err := os.MkdirTemp("", dirPattern)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	proc, addr, err := launchOnFreePort(ctx, password, func(port int) (*process, error) { return launch(dir, port) })
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &server{proc: proc, addr: addr, dir: dir}, nil
}

// launchOnFreePort calls launch with a fresh free loopback port until the
// process it starts answers PING on that port, or fails for another reason
// than a taken port. It returns the process and its address.
func launchOnFreePort(ctx context.Context, password string, launch func(port int) (*process, error)) (*process, string, error) {
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		p, err := launch(port)
		if err != nil {
			return nil, "", err
		}
		addr := loopbackAddr(port)
		err = p.waitReady(ctx, addr, password)
		if err == nil {
			return p, addr, nil
		}
		p.kill()
		if !errors.Is(err, errAddrInUse) {
			return nil, "", err
		}
		if attempt == startAttempts {
			return nil, "", fmt.Errorf("loadgen: %s lost the race for a free port %d times: %w", p.name, attempt, err)
		}
	}
}

// Addr is the server's host:port.
func (s *server) Addr() string { return s.addr }

// Pid is the server's process id, for CPUTime.
func (s *server) Pid() int { return s.proc.cmd.Process.Pid }

// LogTail is the end of the server's log (its stdout and stderr), to show
// what it said when a run went wrong. Close removes the log.
func (s *server) LogTail() string { return s.proc.logTail() }

// Close kills the server and removes its directory. It may be called more
// than once.
func (s *server) Close() {
	s.closeOnce.Do(func() {
		s.proc.kill()
		os.RemoveAll(s.dir)
	})
}

// startupTimeout bounds StartRedis and StartTwemproxy, which have no
// context of their own.
const startupTimeout = 30 * time.Second

// startForTest launches a server with launch, bounded by startupTimeout, for
// a test or benchmark and closes it in tb.Cleanup. A missing binary skips the
// test (fails it when CI=true); any other error fails it.
func startForTest[S interface{ Close() }](tb testing.TB, launch func(context.Context) (S, error)) S {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	s, err := launch(ctx)
	if errors.Is(err, ErrBinaryMissing) {
		skipOrFailMissing(tb, err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}
