package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"kvproxy/bench/loadgen"
)

func reportRuns(p *runProgress, rounds int, targets ...string) {
	for round := 1; round <= rounds; round++ {
		for i, target := range targets {
			p.report(loadgen.RunDone{Round: round, Rounds: rounds, Target: target, Elapsed: 1500 * time.Millisecond,
				Metrics: loadgen.Metrics{"SET -P 16 req/s": float64(1000 * (i + 1)), "not shown": 1}})
		}
	}
}

func formatWhole(_ string, v float64) string { return fmt.Sprintf("%.0f", v) }

// Into a log or a pipe, a line per run and nothing else.
func TestRunProgressWritesLinesWhenNotATerminal(t *testing.T) {
	var out bytes.Buffer
	p := newRunProgressOn(&out, false, 4, []string{"SET -P 16 req/s"}, formatWhole)
	reportRuns(p, 2, "direct", "kvproxy")
	p.done()
	assert.Equal(t, "kvbench: round 1/2 direct: SET -P 16 req/s 1000 (1.5s)\n"+
		"kvbench: round 1/2 kvproxy: SET -P 16 req/s 2000 (1.5s)\n"+
		"kvbench: round 2/2 direct: SET -P 16 req/s 1000 (1.5s)\n"+
		"kvbench: round 2/2 kvproxy: SET -P 16 req/s 2000 (1.5s)\n", out.String())
}

// On a terminal the same lines, each followed by the bar drawn again below
// it with the runs done, and the bar erased at the end.
func TestRunProgressDrawsABarOnATerminal(t *testing.T) {
	var out bytes.Buffer
	p := newRunProgressOn(&out, true, 4, []string{"SET -P 16 req/s"}, formatWhole)
	assert.Contains(t, out.String(), "(0/4)", "the empty bar is drawn at once")
	reportRuns(p, 2, "direct", "kvproxy")
	screen := out.String()
	first := strings.Index(screen, "kvbench: round 1/2 direct: SET -P 16 req/s 1000 (1.5s)\n")
	last := strings.Index(screen, "kvbench: round 2/2 kvproxy: SET -P 16 req/s 2000 (1.5s)\n")
	assert.Positive(t, first, "after the empty bar")
	assert.Greater(t, last, first)
	assert.Contains(t, screen[first:], "(1/4)")
	assert.Contains(t, screen[first:], "(3/4)")
	p.done()
	assert.True(t, strings.HasSuffix(out.String(), "\r"), "the bar's line is erased: %q", out.String()[len(screen):])
}
