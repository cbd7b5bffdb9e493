package proxy

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A burst of events logs one line; the next line, a second later, says how
// many were left out.
func TestRateLimitedLogOneLinePerSecond(t *testing.T) {
	var logs bytes.Buffer
	l := newRateLimitedLog(slog.New(slog.NewTextHandler(&logs, nil)), slog.LevelWarn, "bad thing")
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }

	for i := range 100 {
		l.Log("n", i)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 1, logs.String())
	assert.Contains(t, lines[0], `level=WARN msg="bad thing" n=0`)
	assert.NotContains(t, lines[0], "suppressed")

	now = now.Add(999 * time.Millisecond)
	l.Log("n", 100)
	assert.Len(t, strings.Split(strings.TrimSpace(logs.String()), "\n"), 1, "still within the second")

	now = now.Add(time.Millisecond)
	l.Log("n", 101)
	lines = strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2, logs.String())
	assert.Contains(t, lines[1], `msg="bad thing" n=101 suppressed=100`)

	now = now.Add(time.Hour)
	l.Log("n", 102)
	lines = strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 3, logs.String())
	assert.NotContains(t, lines[2], "suppressed", "nothing was left out since the last line")
}

// Concurrent events are each either logged or counted.
func TestRateLimitedLogConcurrent(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	l := newRateLimitedLog(slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil)), slog.LevelInfo, "event")
	now := time.Now()
	l.now = func() time.Time { return now }
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				l.Log()
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, 1, strings.Count(logs.String(), "\n"))
	assert.Equal(t, int64(7999), l.suppressed, "every other event is counted")
}
