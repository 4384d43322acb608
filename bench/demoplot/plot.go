// Package demoplot draws the failover demo's timeline: one panel per round
// of a bench.DemoReport, the write throughput over time with the event,
// the survivor's start and the resumption of I/O marked, as PNG and SVG.
//
// It is a package of its own so that gonum.org/v1/plot, with its fonts,
// LaTeX and PDF code, is linked only into the binary that draws (ironbench
// plot), not into every importer of bench.
package demoplot

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/ironblade/ironblade/bench"
)

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

// errNoRounds is returned by Write for a report without rounds.
var errNoRounds = errors.New("demo plot: no rounds to draw")

// Write draws the report's timeline to a PNG file and an SVG file (either
// path may be empty to skip it).
func Write(r *bench.DemoReport, pngPath, svgPath string) error {
	if len(r.Rounds) == 0 {
		return errNoRounds
	}
	height := plotPanelHeight*vg.Length(len(r.Rounds)) + plotLegendHeight
	return writePNGAndSVG(pngPath, svgPath, height, func(c canvasWriter, path string) error { return drawDemo(r, c, path) })
}

// writePNGAndSVG draws a plotWidth x height figure with draw once on a PNG
// canvas into pngPath and once on an SVG canvas into svgPath; an empty path
// skips that format.
func writePNGAndSVG(pngPath, svgPath string, height vg.Length, draw func(c canvasWriter, path string) error) error {
	if pngPath != "" {
		c := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(plotWidth, height), vgimg.UseDPI(110))}
		if err := draw(c, pngPath); err != nil {
			return err
		}
	}
	if svgPath != "" {
		if err := draw(vgsvg.New(plotWidth, height), svgPath); err != nil {
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
func drawDemo(r *bench.DemoReport, c canvasWriter, path string) error {
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
	return writeCanvas(c, path)
}

// writeCanvas writes c to a new file at path.
func writeCanvas(c io.WriterTo, path string) error {
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
