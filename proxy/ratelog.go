package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLimitedLog logs one kind of event at most once per second: events in
// between are only counted, and the next line logged says how many were
// left out ("suppressed"). A storm of bad clients (wrong passwords, protocol
// errors, clients dropped for their output) then costs a line a second, not
// a line per connection. It is safe for concurrent use.
type rateLimitedLog struct {
	logger *slog.Logger
	level  slog.Level
	msg    string
	// now is the clock; tests replace it.
	now func() time.Time

	mu         sync.Mutex
	quietUntil time.Time
	suppressed int64
}

// rateLimitedLogInterval is the least time between two lines of one
// rateLimitedLog.
const rateLimitedLogInterval = time.Second

func newRateLimitedLog(logger *slog.Logger, level slog.Level, msg string) *rateLimitedLog {
	return &rateLimitedLog{logger: logger, level: level, msg: msg, now: time.Now}
}

// Log records one event with its attributes (slog key-value pairs); it logs
// a line unless one was logged less than a second ago.
func (l *rateLimitedLog) Log(args ...any) {
	l.mu.Lock()
	now := l.now()
	if now.Before(l.quietUntil) {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.suppressed = 0
	l.quietUntil = now.Add(rateLimitedLogInterval)
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	l.logger.Log(context.Background(), l.level, l.msg, args...)
}
