package hardening

import (
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
)

// procMemory is a process's resident memory (VmRSS) and its peak (VmHWM),
// in bytes, from /proc/<pid>/status.
type procMemory struct{ rss, hwm int64 }

var statusField = regexp.MustCompile(`(?m)^(VmRSS|VmHWM):\s+(\d+) kB$`)

func readProcMemory(tb testing.TB, pid int) procMemory {
	tb.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatalf("reading the proxy's memory: %v", err)
	}
	var m procMemory
	for _, match := range statusField.FindAllSubmatch(status, -1) {
		kb, _ := strconv.ParseInt(string(match[2]), 10, 64)
		if string(match[1]) == "VmRSS" {
			m.rss = kb << 10
		} else {
			m.hwm = kb << 10
		}
	}
	if m.rss == 0 || m.hwm == 0 {
		tb.Fatalf("no VmRSS or VmHWM in /proc/%d/status", pid)
	}
	return m
}

// requireProc skips the test where /proc cannot tell a process's memory.
func requireProc(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		tb.Skip("needs /proc to read the proxy's memory")
	}
}

// mib formats bytes as MiB.
func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }

// raiseFileLimit makes room for n descriptors in the test process, and
// restores the limit when the test ends. A limit that cannot be raised
// skips the test (fails it under CI=true).
func raiseFileLimit(tb testing.TB, n uint64) {
	tb.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	want := syscall.Rlimit{Cur: n, Max: max(n, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		msg := "the test needs " + strconv.FormatUint(n, 10) + " open files and cannot raise its limit: " + err.Error() +
			"; raise the hard limit (ulimit -Hn) or run as root"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	tb.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
}
