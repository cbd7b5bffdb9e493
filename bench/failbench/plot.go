package failbench

import (
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The timeline's size and colours.
var (
	plotWidth, plotHeight = vg.Points(900), vg.Points(640)
	failoverShade         = color.NRGBA{R: 255, G: 180, B: 0, A: 70}
	pauseShade            = color.NRGBA{R: 220, G: 40, B: 40, A: 70}
)

// span shades a stretch of time over the whole height of a plot.
type span struct {
	from, to float64 // seconds
	color    color.Color
}

func (s span) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	x0, x1 := trX(s.from), trX(s.to)
	c.FillPolygon(s.color, c.ClipPolygonXY([]vg.Point{
		{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y},
	}))
}

// WritePNG draws the timeline as PNG: the Go load's throughput and p99
// per 100 ms and the requests the proxy held per 100 ms, one panel each over the same
// time axis, each failover shaded (its server pause darker).
func (r *Report) WritePNG(w io.Writer) error {
	rps := make(plotter.XYs, len(r.Plot))
	var p99 plotter.XYs
	for i, pt := range r.Plot {
		rps[i] = plotter.XY{X: pt.AtMs / 1000, Y: pt.RPS}
		if pt.RPS > 0 { // no request answered: no latency to draw
			p99 = append(p99, plotter.XY{X: pt.AtMs / 1000, Y: pt.P99Ms})
		}
	}
	held := make(plotter.XYs, len(r.Held))
	for i, h := range r.Held {
		held[i] = plotter.XY{X: h.AtMs / 1000, Y: float64(h.Held)}
	}
	var shades []plot.Plotter
	for _, f := range r.Failovers {
		shades = append(shades, span{f.StartMs / 1000, f.EndMs / 1000, failoverShade})
		if f.ServerPauseMs != nil {
			if end, ok := f.phaseAt(masterPrefix + "success"); ok {
				shades = append(shades, span{(end - *f.ServerPauseMs) / 1000, end / 1000, pauseShade})
			}
		}
	}
	panels := []struct {
		title, label string
		data         plotter.XYs
		color        color.Color
	}{
		{fmt.Sprintf("kvbench failover: %s, trigger %s (shaded: failover, darker: server write pause)", r.Backend, r.Trigger),
			"requests/s (100 ms)", rps, color.NRGBA{B: 200, A: 255}},
		{"", "p99 latency ms (100 ms)", p99, color.NRGBA{R: 200, A: 255}},
		{"", "requests held by the proxy (100 ms)", held, color.NRGBA{G: 140, A: 255}},
	}
	plots := make([][]*plot.Plot, len(panels))
	for i, panel := range panels {
		p := plot.New()
		p.Title.Text = panel.title
		p.Y.Label.Text = panel.label
		p.X.Min, p.X.Max = 0, r.DurationMs/1000
		if i == len(panels)-1 {
			p.X.Label.Text = "seconds since the load started"
		}
		p.Add(plotter.NewGrid())
		p.Add(shades...)
		if len(panel.data) > 0 {
			line, err := plotter.NewLine(panel.data)
			if err != nil {
				return fmt.Errorf("timeline: %w", err)
			}
			line.Color = panel.color
			p.Add(line)
		}
		p.Y.Min, p.Y.Max = 0, max(p.Y.Max, 1)
		plots[i] = []*plot.Plot{p}
	}
	img := vgimg.New(plotWidth, plotHeight)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4),
		PadLeft: vg.Points(4), PadRight: vg.Points(12), PadY: vg.Points(6)}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	return nil
}

// phaseAt is when event first happened, in ms since the load started.
func (f FailoverReport) phaseAt(event string) (float64, bool) {
	for _, p := range f.Phases {
		if p.Event == event {
			return p.AtMs, true
		}
	}
	return 0, false
}
