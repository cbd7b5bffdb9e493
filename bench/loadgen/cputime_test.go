package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStatCPUTicks(t *testing.T) {
	// utime is field 14 and stime field 15; the command name may hold
	// spaces and parentheses.
	const tail = " R 27328 27328 4534 0 -1 4194304 99 0 0 0 1234 56 7 8 20 0 1 0 110922 3133440 393\n"
	for _, comm := range []string{"(cat)", "(my prog)", "(a) b (c))", "()"} {
		ticks, err := parseStatCPUTicks([]byte("27330 " + comm + tail))
		if assert.NoError(t, err, comm) {
			assert.Equal(t, uint64(1234+56), ticks, comm)
		}
	}
	for name, line := range map[string]string{
		"no comm":        "27330 cat R 1 2 3 4 5 6 7 8 9 10 11 12 13",
		"too short":      "27330 (cat) R 27328 27328 4534 0 -1 4194304 99 0 0 0 1234",
		"utime negative": "27330 (cat) R 27328 27328 4534 0 -1 4194304 99 0 0 0 -1 56",
		"stime garbage":  "27330 (cat) R 27328 27328 4534 0 -1 4194304 99 0 0 0 1 x",
	} {
		_, err := parseStatCPUTicks([]byte(line))
		assert.Error(t, err, name)
	}
}

// FuzzParseStatCPUTicks reads arbitrary stat lines, where fields after
// stime do not count, and a stat line built from the other inputs (a command name holding any
// bytes, spaces and parentheses included) gives back its utime+stime.
func FuzzParseStatCPUTicks(f *testing.F) {
	f.Add([]byte("27330 (cat) R 27328 27328 4534 0 -1 4194304 99 0 0 0 1234 56 7 8 20 0 1 0 110922"), "cat", uint32(1234), uint32(56))
	f.Add([]byte("27330 cat R 1 2 3 4 5 6 7 8 9 10 11 12 13"), "a) b (c)", uint32(0), uint32(0))
	f.Add([]byte("27330 (cat) R 27328 27328 4534 0 -1 4194304 99 0 0 0 -1 56"), ")", uint32(1<<32-1), uint32(1<<32-1))
	f.Add([]byte("27330 (cat) R 27328 27328 4534 0 -1 4194304 99 0 0 0 1 x"), "", uint32(7), uint32(0))
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b, "loadgen.test", uint32(1), uint32(2))
	}
	f.Fuzz(func(t *testing.T, stat []byte, comm string, utime, stime uint32) {
		if ticks, err := parseStatCPUTicks(stat); err == nil {
			more, err := parseStatCPUTicks(append(bytes.Clone(stat), " 9 9"...))
			require.NoError(t, err)
			require.Equal(t, ticks, more, "fields after stime do not count")
		}
		line := fmt.Sprintf("27330 (%s) R 27328 27328 4534 0 -1 4194304 99 0 0 0 %d %d 7 8 20 0 1 0 110922\n", comm, utime, stime)
		ticks, err := parseStatCPUTicks([]byte(line))
		require.NoError(t, err, "%q", line)
		require.Equal(t, uint64(utime)+uint64(stime), ticks, "%q", line)
	})
}

func TestParseMachineCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice:
	// guest time is in user time already, so it is not added again.
	idle, total, err := parseMachineCPU([]byte("cpu  100 2 30 400 5 6 7 8 90 10\ncpu0 50 1 15 200 2 3 3 4 45 5\n"))
	require.NoError(t, err)
	assert.Equal(t, uint64(400+5), idle)
	assert.Equal(t, uint64(100+2+30+400+5+6+7+8), total)
	idle, total, err = parseMachineCPU([]byte("cpu 1 2 3 4 5"))
	require.NoError(t, err, "an old kernel's five numbers")
	assert.Equal(t, uint64(9), idle)
	assert.Equal(t, uint64(15), total)
	for name, stat := range map[string]string{
		"empty":       "",
		"not cpu":     "cpu0 1 2 3 4 5 6 7 8\n",
		"too short":   "cpu 1 2 3 4\n",
		"garbage":     "cpu 1 2 x 4 5 6 7 8\n",
		"negative":    "cpu 1 2 3 -4 5 6 7 8\n",
		"second line": "intr 1\ncpu 1 2 3 4 5\n",
	} {
		_, _, err := parseMachineCPU([]byte(stat))
		assert.Error(t, err, name)
	}
}

// The machine's idle and total CPU time only grow, idle within total.
func TestMachineCPUGrows(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc/stat")
	}
	idle1, total1, err := MachineCPU()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, total2, err := MachineCPU()
		return err == nil && total2 > total1
	}, 10*time.Second, 10*time.Millisecond)
	idle2, total2, err := MachineCPU()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, idle2, idle1)
	assert.LessOrEqual(t, idle2-idle1, total2-total1)
}

func TestAuxvValue(t *testing.T) {
	vector := func(word int, pairs ...uint64) []byte {
		b := make([]byte, 0, len(pairs)*word)
		for _, v := range pairs {
			if word == 4 {
				b = binary.LittleEndian.AppendUint32(b, uint32(v))
			} else {
				b = binary.LittleEndian.AppendUint64(b, v)
			}
		}
		return b
	}
	for _, word := range []int{4, 8} {
		auxv := vector(word, 6, 4096, atClockTick, 100, 25, 7, 0, 0)
		v, err := auxvValue(auxv, atClockTick, word, binary.LittleEndian)
		require.NoError(t, err)
		assert.Equal(t, uint64(100), v)

		_, err = auxvValue(auxv, 99, word, binary.LittleEndian)
		assert.Error(t, err, "a key that is absent")
		// Entries after the terminating AT_NULL do not count.
		_, err = auxvValue(vector(word, 0, 0, atClockTick, 100), atClockTick, word, binary.LittleEndian)
		assert.Error(t, err, "a key after AT_NULL")
		_, err = auxvValue(auxv[:word], atClockTick, word, binary.LittleEndian)
		assert.Error(t, err, "a truncated vector")
	}
}

func TestCPUTimeOfThisProcessGrows(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	require.NoError(t, err)
	require.GreaterOrEqual(t, before, time.Duration(0))
	sink := 0
	require.Eventually(t, func() bool {
		// Burn a few milliseconds of CPU per check: the kernel counts ticks.
		for start := time.Now(); time.Since(start) < 5*time.Millisecond; {
			sink++
		}
		now, err := CPUTime(os.Getpid())
		return err == nil && now > before
	}, 30*time.Second, time.Millisecond)
	assert.Positive(t, sink)
}

func TestCPUTimeOfAMissingProcess(t *testing.T) {
	// Linux pids never exceed 2^22 (PID_MAX_LIMIT).
	_, err := CPUTime(1 << 30)
	assert.Error(t, err)
}
