package main

import (
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"kvproxy/bench/loadgen"
)

// reportFiles are the machine-readable outputs a comparison writes besides
// its table: -json, -csv, -png; "" is none, "-" (json, csv) stdout.
type reportFiles struct {
	json, csv, png string
}

func (r *reportFiles) register(fs *flag.FlagSet, chart string) {
	fs.StringVar(&r.json, "json", "", "also write the report as JSON to this file (\"-\": stdout, instead of the table)")
	fs.StringVar(&r.csv, "csv", "", "also write the medians as CSV to this file (\"-\": stdout, instead of the table)")
	fs.StringVar(&r.png, "png", "", "also draw a bar chart of "+chart+" per target into this PNG file")
}

// toStdout reports whether a report goes to stdout, which then carries only
// it.
func (r *reportFiles) toStdout() bool { return r.json == "-" || r.csv == "-" }

func (r *reportFiles) validate() error {
	if r.json == "-" && r.csv == "-" {
		return fmt.Errorf("-json and -csv cannot both go to stdout")
	}
	if r.png == "-" {
		return fmt.Errorf("-png needs a file name")
	}
	return nil
}

// metricRow is one (metric, target) figure of a comparison, as written to
// JSON and CSV.
type metricRow struct {
	Metric string  `json:"metric"`
	Target string  `json:"target"`
	Median float64 `json:"median"`
	// RatioToBaseline is the median over the baseline's; absent for the
	// baseline itself and where the baseline measured 0.
	RatioToBaseline *float64  `json:"ratio_to_baseline,omitempty"`
	Samples         []float64 `json:"samples"`
}

// jsonReport is the -json document of every comparison.
type jsonReport struct {
	Command string `json:"command"`
	// Complete is false for a run stopped early (Ctrl-C, an error); Error
	// then says why and the figures are over the rounds that completed.
	Complete bool      `json:"complete"`
	Error    string    `json:"error,omitempty"`
	Date     time.Time `json:"date"`
	CPUs     int       `json:"cpus"`
	Config   any       `json:"config"`
	Baseline string    `json:"baseline"`
	Targets  []string  `json:"targets"`
	// Rounds is how many rounds each target completed.
	Rounds   map[string]int `json:"rounds"`
	Metrics  []metricRow    `json:"metrics"`
	Verdicts []string       `json:"verdicts,omitempty"`
}

// comparisonRows lists the figures of cmp for metrics in that order, per
// target; skip drops the figures that mean nothing (a proxy's CPU for the
// direct target).
func comparisonRows(cmp *loadgen.Comparison, metrics []string, skip func(target, metric string) bool) []metricRow {
	var rows []metricRow
	for _, metric := range metrics {
		for _, target := range cmp.Targets {
			samples, ok := cmp.Samples[target][metric]
			if !ok || (skip != nil && skip(target, metric)) {
				continue
			}
			row := metricRow{Metric: metric, Target: target, Median: cmp.Medians[target][metric], Samples: samples}
			if ratio, ok := cmp.Ratios[target][metric]; ok && target != cmp.Baseline {
				row.RatioToBaseline = &ratio
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// csvHeader is the first line of every -csv output.
var csvHeader = []string{"metric", "target", "rounds", "median", "min", "max", "ratio_to_baseline"}

func writeCSV(w io.Writer, rows []metricRow) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	format := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	for _, r := range rows {
		ratio := ""
		if r.RatioToBaseline != nil {
			ratio = format(*r.RatioToBaseline)
		}
		if err := cw.Write([]string{r.Metric, r.Target, strconv.Itoa(len(r.Samples)), format(r.Median),
			format(slices.Min(r.Samples)), format(slices.Max(r.Samples)), ratio}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeFile writes with write to path, or to stdout for "-".
func writeFile(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "-" {
		return write(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// write writes the JSON, CSV and PNG outputs that were asked for. chart
// lists the metrics the PNG shows, all in unit.
func (r *reportFiles) write(stdout io.Writer, report jsonReport, chart []string, title, unit string) error {
	if r.json != "" {
		if err := writeFile(r.json, stdout, func(w io.Writer) error { return writeJSON(w, report) }); err != nil {
			return fmt.Errorf("-json: %w", err)
		}
	}
	if r.csv != "" {
		if err := writeFile(r.csv, stdout, func(w io.Writer) error { return writeCSV(w, report.Metrics) }); err != nil {
			return fmt.Errorf("-csv: %w", err)
		}
	}
	if r.png != "" {
		if err := drawBarChart(r.png, report, chart, title, unit); err != nil {
			return fmt.Errorf("-png: %w", err)
		}
	}
	return nil
}

// drawBarChart draws the medians of metrics as groups of bars, one bar per
// target, into a PNG file.
func drawBarChart(path string, report jsonReport, metrics []string, title, unit string) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	p.Legend.Top = true
	medians := map[string]map[string]float64{}
	for _, row := range report.Metrics {
		if medians[row.Target] == nil {
			medians[row.Target] = map[string]float64{}
		}
		medians[row.Target][row.Metric] = row.Median
	}
	var targets []string
	for _, t := range report.Targets {
		if medians[t] != nil {
			targets = append(targets, t)
		}
	}
	barWidth := vg.Points(float64(min(60, 240/max(len(targets), 1))))
	for i, target := range targets {
		values := make(plotter.Values, len(metrics))
		for j, m := range metrics {
			values[j] = medians[target][m]
		}
		bars, err := plotter.NewBarChart(values, barWidth)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = barWidth * vg.Length(float64(i)-float64(len(targets)-1)/2)
		p.Add(bars)
		p.Legend.Add(target, bars)
	}
	p.NominalX(metrics...)
	p.Y.Min = 0
	p.Y.Max *= 1.25 // room for the legend above the bars
	width := max(4*vg.Inch, vg.Length(len(metrics)*len(targets))*barWidth*1.4)
	return p.Save(width, 4*vg.Inch, path)
}
