package demoplot

import (
	"errors"
	"fmt"
	"image/color"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/ironblade/ironblade/bench"
)

// Sizes of the comparison plot.
const (
	comparePanelHeight = 7.5 * vg.Centimeter
	// compareMaxBar is the widest a bar gets, with few configurations.
	compareMaxBar = vg.Centimeter
	// compareAxisRoom is what the Y axis and the paddings take of the
	// width, to size the bars from what is left.
	compareAxisRoom = 3 * vg.Centimeter
	labelFontSize   = 7
)

// Colours of the comparison.
var (
	colorNoFault = colorThroughput
	colorFault   = colorPromote
	colorLoss    = colorEvent
	colorNoLoss  = colorResumed
)

// errNoConfigs is returned by WriteCompare for a report without rounds.
var errNoConfigs = errors.New("demo plot: no configurations to compare")

// WriteCompare draws the comparison of target configurations to a PNG file
// and an SVG file (either path may be empty to skip it): the copy time of
// each configuration with no fault and with its fence, grouped, above the
// corrupt files per fence.
func WriteCompare(r *bench.DemoReport, pngPath, svgPath string) error {
	configs := r.Comparison()
	if len(configs) == 0 {
		return errNoConfigs
	}
	return writePNGAndSVG(pngPath, svgPath, 2*comparePanelHeight,
		func(c canvasWriter, path string) error { return drawCompare(configs, c, path) })
}

// drawCompare draws both panels on c, their axes aligned, and writes c to
// path.
func drawCompare(configs []bench.DemoConfig, c canvasWriter, path string) error {
	names := configNames(configs)
	bar := min(compareMaxBar, (plotWidth-compareAxisRoom)/vg.Length(len(configs))*0.35)
	top, err := copyPlot(configs, names, bar)
	if err != nil {
		return err
	}
	bottom, err := lossPlot(configs, names, bar)
	if err != nil {
		return err
	}
	plots := [][]*plot.Plot{{top}, {bottom}}
	tiles := draw.Tiles{
		Rows: 2, Cols: 1,
		PadY:   4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 3 * vg.Millimeter,
	}
	canvases := plot.Align(plots, tiles, draw.New(c))
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	return writeCanvas(c, path)
}

// configNames labels the configurations on the X axis: the target, and
// the set under it when the sets differ.
func configNames(configs []bench.DemoConfig) []string {
	oneSet := true
	for _, c := range configs {
		oneSet = oneSet && c.Set == configs[0].Set
	}
	names := make([]string, len(configs))
	for i, c := range configs {
		names[i] = bench.TargetLabel(c.Target)
		if !oneSet {
			names[i] += "\n" + c.Set
		}
	}
	return names
}

// setTitle is "400 x 1M" when every configuration copied the same set,
// else "".
func setTitle(configs []bench.DemoConfig) string {
	for _, c := range configs {
		if c.Set != configs[0].Set || c.Files != configs[0].Files {
			return ""
		}
	}
	return fmt.Sprintf("%d x %s", configs[0].Files, configs[0].Set)
}

// faultOf picks the event the second bar of each group shows: the fence,
// or the migration when the run fenced nothing.
func faultOf(configs []bench.DemoConfig) (name string, stats func(*bench.DemoConfig) *bench.DemoEventStats) {
	fences, migrations := 0, 0
	for i := range configs {
		fences += configs[i].Fence.Rounds
		migrations += configs[i].Migrate.Rounds
	}
	if fences == 0 && migrations > 0 {
		return "migrated", func(c *bench.DemoConfig) *bench.DemoEventStats { return &c.Migrate }
	}
	return "fenced", func(c *bench.DemoConfig) *bench.DemoEventStats { return &c.Fence }
}

// newComparePanel is a panel with the configurations on its X axis.
func newComparePanel(title, ylabel string, names []string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Y.Tick.Marker = integerTicks{}
	grid := plotter.NewGrid()
	grid.Vertical.Width = 0
	p.Add(grid)
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	return p
}

// copyPlot is the upper panel: each configuration's copy time with no
// fault and with its fault, and the bound ironblade -s should copy within.
func copyPlot(configs []bench.DemoConfig, names []string, bar vg.Length) (*plot.Plot, error) {
	fault, stats := faultOf(configs)
	title := "Copy time (cp and sync), per configuration"
	if s := setTitle(configs); s != "" {
		title += ", " + s
	}
	p := newComparePanel(title, "seconds", names)
	var plain, faulted plotter.Values
	var plainLabels, faultLabels []string
	top := 1.0
	for i := range configs {
		c := &configs[i]
		a, b := c.NoFault.Copy.Seconds(), stats(c).Copy.Seconds()
		plain, faulted = append(plain, a), append(faulted, b)
		plainLabels, faultLabels = append(plainLabels, secsLabel(a)), append(faultLabels, secsLabel(b))
		top = max(top, a, b, c.Baseline.Seconds()*bench.SyncRatioLimit)
	}
	for _, s := range []struct {
		values plotter.Values
		labels []string
		name   string
		color  color.Color
		offset vg.Length
	}{
		{plain, plainLabels, "no fault", colorNoFault, -bar / 2},
		{faulted, faultLabels, fault, colorFault, bar / 2},
	} {
		if err := addBars(p, s.values, s.labels, s.name, s.color, bar, s.offset); err != nil {
			return nil, err
		}
	}
	// The bound of check (c), over the ironblade -s bars.
	boundAdded := false
	for i := range configs {
		c := &configs[i]
		if c.Target != bench.TargetIronbladeSync || c.Baseline <= 0 {
			continue
		}
		y := c.Baseline.Seconds() * bench.SyncRatioLimit
		l, err := plotter.NewLine(plotter.XYs{{X: float64(i) - 0.45, Y: y}, {X: float64(i) + 0.45, Y: y}})
		if err != nil {
			return nil, fmt.Errorf("demo plot: %w", err)
		}
		l.Color, l.Width, l.Dashes = colorCopy, vg.Points(1.3), []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		if !boundAdded {
			p.Legend.Add(fmt.Sprintf("%gx ironblade's no-fault time", bench.SyncRatioLimit), l)
			boundAdded = true
		}
	}
	// Room above the bars for their labels and the legend.
	p.Y.Max = top * 1.3
	return p, nil
}

// lossPlot is the lower panel: corrupt files per fence of each
// configuration, red where the loss is expected (no -s), green where
// nothing may be lost (-s), so that a non-zero green bar stands out.
func lossPlot(configs []bench.DemoConfig, names []string, bar vg.Length) (*plot.Plot, error) {
	fault, stats := faultOf(configs)
	per := "fence"
	if fault == "migrated" {
		per = "migration"
	}
	p := newComparePanel("Corrupt files per "+per+" (read through a fresh connection, caches dropped)",
		"files per "+per, names)
	lossy, durable := make(plotter.Values, len(configs)), make(plotter.Values, len(configs))
	labels := make([]string, len(configs))
	top := 1.0
	for i := range configs {
		c := &configs[i]
		s := stats(c)
		v := s.CorruptPerRound()
		if c.Durable {
			durable[i] = v
		} else {
			lossy[i] = v
		}
		labels[i] = "no " + per
		if s.Rounds > 0 {
			labels[i] = strconv.FormatFloat(v, 'f', -1, 64)
			if s.Rounds > 1 {
				labels[i] = fmt.Sprintf("%.1f over %d", v, s.Rounds)
			}
		}
		top = max(top, v)
	}
	if err := addBars(p, lossy, labels, "without -s: loss expected", colorLoss, 2*bar, 0); err != nil {
		return nil, err
	}
	if err := addBars(p, durable, nil, "with -s: must be 0", colorNoLoss, 2*bar, 0); err != nil {
		return nil, err
	}
	p.Y.Max = top * 1.4
	return p, nil
}

// addBars adds a bar chart of values offset from each configuration's
// place, with labels (if any) above the bars.
func addBars(p *plot.Plot, values plotter.Values, labels []string, name string, c color.Color, width, offset vg.Length) error {
	bars, err := plotter.NewBarChart(values, width)
	if err != nil {
		return fmt.Errorf("demo plot: %w", err)
	}
	bars.Color, bars.LineStyle.Width, bars.Offset = c, 0, offset
	p.Add(bars)
	p.Legend.Add(name, bars)
	if labels == nil {
		return nil
	}
	xys := make(plotter.XYs, len(values))
	for i, v := range values {
		xys[i] = plotter.XY{X: float64(i), Y: v}
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return fmt.Errorf("demo plot: %w", err)
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Font.Size = vg.Points(labelFontSize)
		l.TextStyle[i].XAlign, l.TextStyle[i].YAlign = text.XCenter, text.YBottom
	}
	l.Offset = vg.Point{X: offset, Y: vg.Points(2)}
	p.Add(l)
	return nil
}

// secsLabel labels a bar of seconds; "-" for a copy not measured.
func secsLabel(s float64) string {
	if s <= 0 {
		return "-"
	}
	return strconv.FormatFloat(s, 'f', 1, 64)
}
