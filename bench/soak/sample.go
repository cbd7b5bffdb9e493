package soak

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
)

// Sample is the proxy process and the load at one moment.
type Sample struct {
	At time.Duration // since the load started
	// RSSKiB and HWMKiB are the proxy's VmRSS and VmHWM (peak RSS);
	// Threads its OS threads; -1 when /proc could not be read.
	RSSKiB, HWMKiB, Threads int64
	// Goroutines is the goroutine count the proxy's INFO reports, -1 when
	// it reports none; Clients its connected_clients, -1 when INFO failed.
	Goroutines, Clients int64
	// Requests and Errors are the load's totals so far; Failovers and
	// FailoversOK the schedule's steps (failovers and pushes) started and
	// succeeded so far.
	Requests, Errors       uint64
	Failovers, FailoversOK int
}

// goroutineFields are the INFO fields that may carry the proxy's goroutine
// count, first found wins.
var goroutineFields = []string{"process_goroutines", "goroutines"}

// sampleProcess fills in the /proc figures of pid.
func sampleProcess(s *Sample, pid int) {
	s.RSSKiB, s.HWMKiB, s.Threads = -1, -1, -1
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return
	}
	s.RSSKiB, s.HWMKiB, s.Threads = parseProcStatus(b)
}

// parseProcStatus returns VmRSS and VmHWM (KiB) and Threads from the text
// of /proc/<pid>/status; -1 for each one missing.
func parseProcStatus(status []byte) (rssKiB, hwmKiB, threads int64) {
	rssKiB, hwmKiB, threads = -1, -1, -1
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmRSS":
			rssKiB = n
		case "VmHWM":
			hwmKiB = n
		case "Threads":
			threads = n
		}
	}
	return rssKiB, hwmKiB, threads
}

// proxyInfo runs INFO (every section) through cl and returns its fields.
func proxyInfo(cl *redis.Client) (map[string]string, error) {
	text, err := cl.Info(bg).Result()
	if err != nil {
		return nil, err
	}
	return kvsim.ParseInfoFields(text), nil
}

// sampleInfo fills in the INFO figures; it reports whether INFO had a
// goroutine count.
func sampleInfo(s *Sample, fields map[string]string) bool {
	s.Goroutines, s.Clients = -1, -1
	if fields == nil {
		return false
	}
	if n, err := strconv.ParseInt(fields["connected_clients"], 10, 64); err == nil {
		s.Clients = n
	}
	for _, name := range goroutineFields {
		if n, err := strconv.ParseInt(fields[name], 10, 64); err == nil {
			s.Goroutines = n
			return true
		}
	}
	return false
}

// progressLine is the one-line account of a sample.
func (s Sample) progressLine() string {
	return fmt.Sprintf("soak %s  rss %s  hwm %s  goroutines %s  clients %s  requests %d  errors %d  failovers %d/%d ok",
		formatElapsed(s.At), formatKiB(s.RSSKiB), formatKiB(s.HWMKiB), orDash(s.Goroutines), orDash(s.Clients),
		s.Requests, s.Errors, s.FailoversOK, s.Failovers)
}

func formatKiB(kib int64) string {
	if kib < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

func orDash(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

// formatElapsed writes d as m:ss.
func formatElapsed(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d/time.Minute), int(d%time.Minute/time.Second))
}
