package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// raiseOwnFileLimit makes room for n descriptors in the test process: root
// may raise the hard limit, others only the soft one. Outside CI a limit
// that cannot be raised skips the test; under CI=true it fails it.
func raiseOwnFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur >= n {
		return
	}
	want := syscall.Rlimit{Cur: n, Max: max(n, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		msg := fmt.Sprintf("the test needs %d open files and cannot raise its limit (soft %d, hard %d): %v; run as root or raise the hard limit (ulimit -Hn)", n, lim.Cur, lim.Max, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
}

// procMemory is a process's resident memory as /proc/<pid>/status tells it.
type procMemory struct{ rss, hwm uint64 } // bytes

func readProcMemory(t *testing.T, pid int) procMemory {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	require.NoError(t, err)
	field := func(name string) uint64 {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\d+) kB$`).FindSubmatch(status)
		require.NotNil(t, m, "no %s in /proc/%d/status", name, pid)
		kb, err := strconv.ParseUint(string(m[1]), 10, 64)
		require.NoError(t, err)
		return kb << 10
	}
	return procMemory{rss: field("VmRSS"), hwm: field("VmHWM")}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// TestTenThousandIdleAndThousandActiveClients connects 10,000 clients that
// stay idle and 1,000 that run SET/GET through a kvproxy process in front
// of kvsim, and reports the proxy's resident memory and goroutines before,
// with every client connected, and after they left. Idle clients wait on
// the event loops, so they cost neither a goroutine nor much memory.
func TestTenThousandIdleAndThousandActiveClients(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the proxy's memory")
	}
	const idle, active, rounds = 10_000, 1_000, 50
	raiseOwnFileLimit(t, idle+active+1000)
	seeds := startSim(t)
	bin := kvproxyBuild.Binary(t)
	p := startBinary(t, bin, 0, "--seeds", strings.Join(seeds, ","), "--max-clients", strconv.Itoa(idle+active+10),
		"--max-blocking-conns", "10")
	pid := p.cmd.Process.Pid
	probe := dialRaw(t, p.addr)
	require.Equal(t, strconv.Itoa(idle+active+10), probe.info(t, "maxclients"), "the limit was not lowered: %s", p.stderr.String())
	goroutines := func() int {
		n, err := strconv.Atoi(probe.info(t, "goroutines"))
		require.NoError(t, err)
		return n
	}
	before, goroutinesBefore := readProcMemory(t, pid), goroutines()

	// Idle clients: connected, one PING each, then silent.
	idlers := dialMany(t, p.addr, idle)
	idleMem, goroutinesIdle := readProcMemory(t, pid), goroutines()

	// Active clients, with the idle ones still connected.
	workers := dialMany(t, p.addr, active)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, active)
	for i, c := range workers {
		wg.Go(func() {
			key := "active:" + strconv.Itoa(i)
			for r := range rounds {
				value := strconv.Itoa(r)
				if err := c.roundTrip("*3\r\n$3\r\nSET\r\n$"+strconv.Itoa(len(key))+"\r\n"+key+"\r\n$"+strconv.Itoa(len(value))+"\r\n"+value+"\r\n", "+OK\r\n"); err != nil {
					errs <- err
					return
				}
				if err := c.roundTrip("*2\r\n$3\r\nGET\r\n$"+strconv.Itoa(len(key))+"\r\n"+key+"\r\n",
					"$"+strconv.Itoa(len(value))+"\r\n"+value+"\r\n"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	took := time.Since(start)
	busy, goroutinesBusy := readProcMemory(t, pid), goroutines()
	assert.Equal(t, strconv.Itoa(idle+active+1), probe.info(t, "connected_clients"))

	for _, c := range append(idlers, workers...) {
		_ = c.conn.Close()
	}
	require.Eventually(t, func() bool { return probe.info(t, "connected_clients") == "1" }, 30*time.Second, 50*time.Millisecond)
	// Once the wave of departures is over the proxy returns their memory.
	returned := before.rss + (busy.hwm-before.rss)/2
	var after procMemory
	assert.Eventually(t, func() bool { after = readProcMemory(t, pid); return after.rss < returned },
		30*time.Second, 100*time.Millisecond, "at least half of what the clients took is returned")
	goroutinesAfter := goroutines()

	t.Logf("%d active clients x %d SET+GET took %v (%.0f commands/s) with %d idle clients connected",
		active, rounds, took.Round(time.Millisecond), float64(2*active*rounds)/took.Seconds(), idle)
	t.Logf("before:              RSS %s, peak %s, %d goroutines", mib(before.rss), mib(before.hwm), goroutinesBefore)
	t.Logf("%5d idle clients:  RSS %s, peak %s, %d goroutines (%.1f KiB per idle client)", idle, mib(idleMem.rss), mib(idleMem.hwm),
		goroutinesIdle, float64(idleMem.rss-before.rss)/idle/1024)
	t.Logf("+%d active clients: RSS %s, peak %s, %d goroutines", active, mib(busy.rss), mib(busy.hwm), goroutinesBusy)
	t.Logf("after they left:     RSS %s, peak %s, %d goroutines", mib(after.rss), mib(after.hwm), goroutinesAfter)

	assert.Less(t, float64(idleMem.rss-before.rss)/idle, float64(32<<10), "an idle client costs well under 32 KiB")
	assert.Less(t, goroutinesIdle, goroutinesBefore+idle/100, "idle clients sit on event loops, not goroutines")
	assert.Less(t, goroutinesAfter, goroutinesBefore+50, "the clients' goroutines ended")
	assert.True(t, p.running())
}

// loadClient is a client connection for load: raw RESP, no checks beyond
// the exact reply expected.
type loadClient struct {
	conn net.Conn
	rd   *bufio.Reader
	buf  []byte
}

// roundTrip sends req and fails unless the reply is want.
func (c *loadClient) roundTrip(req, want string) error {
	if err := c.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	if _, err := c.conn.Write([]byte(req)); err != nil {
		return err
	}
	if cap(c.buf) < len(want) {
		c.buf = make([]byte, len(want))
	}
	got := c.buf[:len(want)]
	if _, err := io.ReadFull(c.rd, got); err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("reply %q, want %q", got, want)
	}
	return nil
}

// dialMany connects n clients, each answered one PING, 16 at a time.
func dialMany(t *testing.T, addr string, n int) []*loadClient {
	t.Helper()
	clients := make([]*loadClient, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err == nil {
					c := &loadClient{conn: conn, rd: bufio.NewReaderSize(conn, 64)}
					if err = c.roundTrip("PING\r\n", "+PONG\r\n"); err == nil {
						clients[i] = c
						continue
					}
					_ = conn.Close()
				}
				mu.Lock()
				firstErr = errors.Join(firstErr, fmt.Errorf("client %d: %w", i, err))
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				_ = c.conn.Close()
			}
		}
	})
	require.NoError(t, firstErr)
	return clients
}
