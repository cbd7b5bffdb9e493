package loadgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// CPUTime is the CPU time (user plus system, from /proc/<pid>/stat) that the
// process has used so far. Sampled before and after a run, the difference
// divided by the requests served gives a server's or proxy's CPU cost per
// request. The kernel counts in clock ticks (usually 10 ms), so runs should
// last well over a second.
func CPUTime(pid int) (time.Duration, error) {
	tick, err := clockTick()
	if err != nil {
		return 0, err
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("loadgen: CPU time of pid %d: %w", pid, err)
	}
	ticks, err := parseStatCPUTicks(stat)
	if err != nil {
		return 0, fmt.Errorf("loadgen: CPU time of pid %d: %w", pid, err)
	}
	return time.Duration(ticks) * tick, nil
}

// MachineCPU is the time every CPU of the machine has spent so far, in
// clock ticks: idle (idle plus iowait, from the cpu line of /proc/stat) and
// in all. Sampled around a run, idle/total is the share of the machine the
// run left unused.
func MachineCPU() (idle, total uint64, err error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("loadgen: machine CPU time: %w", err)
	}
	idle, total, err = parseMachineCPU(stat)
	if err != nil {
		return 0, 0, fmt.Errorf("loadgen: machine CPU time: %w", err)
	}
	return idle, total, nil
}

// Positions among the cpu line's numbers of /proc/stat (user nice system
// idle iowait irq softirq steal guest guest_nice).
const procStatIdle, procStatIowait, procStatSteal = 3, 4, 7

// parseMachineCPU reads the cpu line, the first of /proc/stat. Guest time
// is counted in user time already, so the numbers after steal are left out.
func parseMachineCPU(stat []byte) (idle, total uint64, err error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 1+procStatIowait+1 || string(fields[0]) != "cpu" {
		return 0, 0, fmt.Errorf("first line %q, want cpu and at least %d numbers", line, procStatIowait+1)
	}
	for i, f := range fields[1:min(len(fields), 1+procStatSteal+1)] {
		n, err := strconv.ParseUint(string(f), 10, 63)
		if err != nil {
			return 0, 0, fmt.Errorf("cpu field %d: %w", i+1, err)
		}
		if i == procStatIdle || i == procStatIowait {
			idle += n
		}
		total += n
	}
	return idle, total, nil
}

// statUtimeField is the position of utime in /proc/<pid>/stat counted from
// the state field (field 3 in proc(5)); stime follows it.
const statUtimeField = 14 - 3

// parseStatCPUTicks returns utime+stime from a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may itself hold spaces and
// parentheses, so fields are counted from its last ')'.
func parseStatCPUTicks(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("stat line has no (comm) field")
	}
	fields := bytes.Fields(stat[end+1:])
	if len(fields) <= statUtimeField+1 {
		return 0, fmt.Errorf("stat line has %d fields after (comm), want more than %d", len(fields), statUtimeField+1)
	}
	utime, err := strconv.ParseUint(string(fields[statUtimeField]), 10, 63)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseUint(string(fields[statUtimeField+1]), 10, 63)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return utime + stime, nil
}

// atClockTick is AT_CLKTCK, the auxiliary vector entry holding the kernel's
// clock tick rate (sysconf(_SC_CLK_TCK), which Go cannot call without cgo).
const atClockTick = 17

// clockTick is the length of one /proc/<pid>/stat tick, read once from this
// process's auxiliary vector.
var clockTick = sync.OnceValues(func() (time.Duration, error) {
	auxv, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 0, fmt.Errorf("loadgen: reading the clock tick rate: %w", err)
	}
	hz, err := auxvValue(auxv, atClockTick, int(unsafe.Sizeof(uintptr(0))), binary.NativeEndian)
	if err != nil {
		return 0, fmt.Errorf("loadgen: reading the clock tick rate: %w", err)
	}
	if hz == 0 || hz > uint64(time.Second) {
		return 0, fmt.Errorf("loadgen: implausible clock tick rate %d Hz", hz)
	}
	return time.Second / time.Duration(hz), nil
})

// auxvValue finds key in an auxiliary vector: (key, value) pairs of
// machine words ending at key 0.
func auxvValue(auxv []byte, key uint64, word int, order binary.ByteOrder) (uint64, error) {
	read := func(b []byte) uint64 {
		if word == 4 {
			return uint64(order.Uint32(b))
		}
		return order.Uint64(b)
	}
	for i := 0; i+2*word <= len(auxv); i += 2 * word {
		k := read(auxv[i:])
		if k == 0 {
			break
		}
		if k == key {
			return read(auxv[i+word:]), nil
		}
	}
	return 0, fmt.Errorf("auxiliary vector has no entry %d", key)
}
