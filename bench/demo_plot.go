package bench

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// This file draws the failover demo's timeline: one panel per round, the
// write throughput over time with the event, the survivor's start and the
// resumption of I/O marked.

// Plot sizes.
const (
	plotWidth       = 22 * vg.Centimeter
	plotPanelHeight = 6.5 * vg.Centimeter
	// plotLegendHeight is the strip above the panels that holds the one
	// legend they share, so that no legend covers data.
	plotLegendHeight = 1.6 * vg.Centimeter
)

// Marker colours.
var (
	colorThroughput = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colorRaw        = color.RGBA{R: 0xa6, G: 0xc8, B: 0xe3, A: 0xff}
	colorStall      = color.RGBA{R: 0xf4, G: 0xcc, B: 0xcc, A: 0xff}
	colorEvent      = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colorPromote    = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	colorGone       = color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
	colorResumed    = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colorCopy       = color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}
)

// smoothSamples is how many throughput samples the thick line averages.
const smoothSamples = 3

// movingAverage averages each point's Y with its neighbours, n points in
// all (fewer at the ends).
func movingAverage(xys plotter.XYs, n int) plotter.XYs {
	out := make(plotter.XYs, len(xys))
	for i := range xys {
		lo, hi := max(i-n/2, 0), min(i+n/2+1, len(xys))
		sum := 0.0
		for _, p := range xys[lo:hi] {
			sum += p.Y
		}
		out[i] = plotter.XY{X: xys[i].X, Y: sum / float64(hi-lo)}
	}
	return out
}

// WriteDemoPlots draws the report's timeline to a PNG file and an SVG
// file (either path may be empty to skip it).
func WriteDemoPlots(r *DemoReport, pngPath, svgPath string) error {
	if len(r.Rounds) == 0 {
		return fmt.Errorf("demo plot: no rounds to draw")
	}
	height := plotPanelHeight*vg.Length(len(r.Rounds)) + plotLegendHeight
	if pngPath != "" {
		c := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(plotWidth, height), vgimg.UseDPI(110))}
		if err := drawDemo(r, c, pngPath); err != nil {
			return err
		}
	}
	if svgPath != "" {
		if err := drawDemo(r, vgsvg.New(plotWidth, height), svgPath); err != nil {
			return err
		}
	}
	return nil
}

// canvasWriter is a canvas that writes itself out as an image file.
type canvasWriter interface {
	vg.CanvasSizer
	io.WriterTo
}

// drawDemo draws the shared legend and every round's panel on c, stacked,
// and writes c to path. The panels share one time axis, so that rounds of
// different lengths compare at a glance.
func drawDemo(r *DemoReport, c canvasWriter, path string) error {
	plots := make([][]*plot.Plot, len(r.Rounds))
	var legend []legendEntry
	span := 1.0
	for i := range r.Rounds {
		p, entries, err := roundPlot(&r.Rounds[i])
		if err != nil {
			return err
		}
		plots[i] = []*plot.Plot{p}
		span = max(span, p.X.Max)
		legend = mergeLegend(legend, entries)
	}
	for _, row := range plots {
		row[0].X.Min, row[0].X.Max = 0, span
	}
	tiles := draw.Tiles{
		Rows: len(plots), Cols: 1,
		PadX: vg.Millimeter, PadY: 3 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 3 * vg.Millimeter,
	}
	dc := draw.New(c)
	top := dc
	top.Min.Y = dc.Max.Y - plotLegendHeight
	drawLegend(top, legend)
	panels := dc
	panels.Max.Y -= plotLegendHeight
	canvases := plot.Align(plots, tiles, panels)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("demo plot: %w", err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("demo plot: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("demo plot: %w", err)
	}
	return nil
}

// legendEntry is one item of the shared legend.
type legendEntry struct {
	name  string
	thumb plot.Thumbnailer
}

// mergeLegend adds the entries not yet in legend, in order.
func mergeLegend(legend, entries []legendEntry) []legendEntry {
next:
	for _, e := range entries {
		for _, l := range legend {
			if l.name == e.name {
				continue next
			}
		}
		legend = append(legend, e)
	}
	return legend
}

// drawLegend lays the entries out in rows across c, left to right.
func drawLegend(c draw.Canvas, entries []legendEntry) {
	const fontSize = 8
	x, row := vg.Length(0), 0
	for _, e := range entries {
		l := plot.NewLegend()
		l.Left, l.Top = true, true
		l.TextStyle.Font.Size = vg.Points(fontSize)
		l.ThumbnailWidth = vg.Points(18)
		l.Add(e.name, e.thumb)
		width := l.Rectangle(c).Max.X - l.Rectangle(c).Min.X + 4*vg.Millimeter
		if x > 0 && x+width > c.Max.X-c.Min.X {
			x, row = 0, row+1
		}
		l.XOffs, l.YOffs = x+2*vg.Millimeter, -vg.Length(row)*vg.Points(fontSize*1.8)-vg.Millimeter
		l.Draw(c)
		x += width
	}
}

// integerTicks puts major ticks on whole numbers (1, 2, 5 times a power of
// ten apart), labelled without decimals, so every panel's axis reads the
// same way whatever its range.
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1.0
	for (hi-lo)/step > 6 {
		switch {
		case (hi-lo)/(2*step) <= 6:
			step *= 2
		case (hi-lo)/(5*step) <= 6:
			step *= 5
		default:
			step *= 10
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', 0, 64)})
	}
	return ticks
}

// roundPlot is one round's panel: throughput over seconds since the copy
// started, with vertical markers. It returns the legend entries of what
// it drew.
func roundPlot(x *RoundResult) (*plot.Plot, []legendEntry, error) {
	d := &x.Round
	var legend []legendEntry
	p := plot.New()
	p.Y.Tick.Marker = integerTicks{}
	p.X.Tick.Marker = integerTicks{}
	p.Title.Text = panelTitle(x)
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "seconds since the copy started"
	p.Y.Label.Text = "written, MB/s"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())

	origin := d.CopyStart
	if origin.IsZero() && len(d.Samples) > 0 {
		origin = d.Samples[0].Time
	}
	secs := func(t time.Time) float64 { return t.Sub(origin).Seconds() }

	rates := WriteRates(d.Samples)
	top := 1.0
	raw := make(plotter.XYs, 0, len(rates))
	for _, r := range rates {
		raw = append(raw, plotter.XY{X: secs(r.Time), Y: r.MBps})
		top = max(top, r.MBps)
	}
	top = math.Ceil(top * 1.1)
	p.Y.Max = top
	if !x.Resumed.IsZero() && !d.EventTime.IsZero() {
		a, b := secs(d.EventTime), secs(x.Resumed)
		band, err := plotter.NewPolygon(plotter.XYs{{X: a, Y: 0}, {X: b, Y: 0}, {X: b, Y: top}, {X: a, Y: top}})
		if err != nil {
			return nil, nil, fmt.Errorf("demo plot: %w", err)
		}
		band.Color, band.LineStyle.Width = colorStall, 0
		p.Add(band)
		legend = append(legend, legendEntry{"I/O stall", band})
	}
	if len(raw) > 0 {
		line, err := plotter.NewLine(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("demo plot: %w", err)
		}
		line.Color, line.Width = colorRaw, vg.Points(0.8)
		smooth, err := plotter.NewLine(movingAverage(raw, smoothSamples))
		if err != nil {
			return nil, nil, fmt.Errorf("demo plot: %w", err)
		}
		smooth.Color, smooth.Width = colorThroughput, vg.Points(1.8)
		p.Add(line, smooth)
		legend = append(legend, legendEntry{"write throughput, per sample", line},
			legendEntry{fmt.Sprintf("mean of %d samples", smoothSamples), smooth})
	}

	mark := func(t time.Time, name string, c color.Color, dashes []vg.Length) error {
		if t.IsZero() {
			return nil
		}
		l, err := plotter.NewLine(plotter.XYs{{X: secs(t), Y: 0}, {X: secs(t), Y: top}})
		if err != nil {
			return fmt.Errorf("demo plot: %w", err)
		}
		l.Color, l.Width, l.Dashes = c, vg.Points(1.3), dashes
		p.Add(l)
		legend = append(legend, legendEntry{name, l})
		return nil
	}
	dash := []vg.Length{vg.Points(4), vg.Points(3)}
	dot := []vg.Length{vg.Points(1), vg.Points(2)}
	gone := d.AGoneTime
	if gone.Sub(d.EventTime).Abs() < 5*time.Millisecond {
		gone = time.Time{}
	}
	promote := d.PromoteTime
	if promote.Sub(d.EventTime).Abs() < 5*time.Millisecond {
		promote = time.Time{}
	}
	for _, m := range []struct {
		t      time.Time
		name   string
		c      color.Color
		dashes []vg.Length
	}{
		// One name for both events: the panel's title says which it was.
		{d.EventTime, "A fenced or migrated (see title)", colorEvent, nil},
		{gone, "A gone", colorGone, dot},
		{promote, "B started/announced", colorPromote, dash},
		{x.Resumed, "I/O resumed on B", colorResumed, nil},
		{d.CopyEnd, "cp done", colorCopy, dash},
		{d.SyncEnd, "sync done", colorCopy, dot},
	} {
		if err := mark(m.t, m.name, m.c, m.dashes); err != nil {
			return nil, nil, err
		}
	}
	if len(raw) > 0 {
		p.X.Max = raw[len(raw)-1].X
	}
	for _, t := range []time.Time{d.CopyEnd, d.SyncEnd, x.Resumed} {
		if !t.IsZero() {
			p.X.Max = max(p.X.Max, secs(t))
		}
	}
	return p, legend, nil
}

// panelTitle sums a round up in one line.
func panelTitle(x *RoundResult) string {
	d := &x.Round
	acks := "async acks"
	if d.Sync {
		acks = "-s"
	}
	s := fmt.Sprintf("%d x %s, %s (%s, %s)", d.Files, d.Set, d.Event, d.Mode, acks)
	if x.StallSource != "" {
		s += ": stall " + formatStall(x.Stall, x.StallSource)
	}
	s += fmt.Sprintf(", %s -> %s MB/s, %d/%d intact", formatRate(x.BeforeMBps), formatRate(x.AfterMBps), d.Intact, d.Files)
	if d.Corrupt > 0 {
		s += fmt.Sprintf(", %d CORRUPT", d.Corrupt)
	}
	return s
}
