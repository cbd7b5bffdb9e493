package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"kvproxy/bench/loadgen"
)

// runProgress reports the runs of an interleaved comparison as they end:
// a line each with its figures, so a long comparison shows it is alive and
// a log of it reads well, and on a terminal a bar below the lines (runs
// done of all, time elapsed and left).
type runProgress struct {
	w      io.Writer
	bar    *progressbar.ProgressBar // nil: w is no terminal
	names  []string
	format func(name string, v float64) string
}

// newRunProgress reports to w runs out of the whole comparison's, showing
// the metrics names picks.
func newRunProgress(w io.Writer, runs int, names []string, format func(name string, v float64) string) *runProgress {
	return newRunProgressOn(w, isTerminal(w), runs, names, format)
}

func newRunProgressOn(w io.Writer, terminal bool, runs int, names []string, format func(name string, v float64) string) *runProgress {
	p := &runProgress{w: w, names: names, format: format}
	if terminal && runs > 0 {
		p.bar = progressbar.NewOptions(runs,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("kvbench: runs"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetRenderBlankState(true))
	}
	return p
}

// report takes one finished run (loadgen's Progress hook).
func (p *runProgress) report(run loadgen.RunDone) {
	parts := make([]string, 0, len(p.names))
	for _, name := range p.names {
		if v, ok := run.Metrics[name]; ok {
			parts = append(parts, name+" "+p.format(name, v))
		}
	}
	line := fmt.Sprintf("kvbench: round %d/%d %s: %s (%.1fs)", run.Round, run.Rounds, run.Target,
		strings.Join(parts, ", "), run.Elapsed.Seconds())
	if p.bar == nil {
		fmt.Fprintln(p.w, line)
		return
	}
	// The line takes the bar's place, and the bar is drawn again below it.
	_ = p.bar.Clear()
	fmt.Fprintln(p.w, line)
	_ = p.bar.Add(1)
}

// done removes the bar, before the report is printed.
func (p *runProgress) done() {
	if p.bar != nil {
		_ = p.bar.Exit()
		_ = p.bar.Clear()
	}
}

// isTerminal reports whether w is a terminal, where a progress bar can be
// drawn over itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
