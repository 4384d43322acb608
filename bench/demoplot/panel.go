package demoplot

import (
	"fmt"
	"image/color"
	"math"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/ironblade/ironblade/bench"
)

// smoothSamples is how many throughput samples the thick line averages.
const smoothSamples = 3

// markerSnap is how close to the event a later marker may come before it
// is left out: it would only hide the event's line.
const markerSnap = 5 * time.Millisecond

// panel is one round's plot as it is built, with the legend entries of
// what it holds.
type panel struct {
	p      *plot.Plot
	legend []legendEntry
	// origin is the time at x = 0: the start of the copy.
	origin time.Time
	// top is the height of the vertical markers and the Y axis.
	top float64
}

// roundPlot is one round's panel: throughput over seconds since the copy
// started, with vertical markers. It returns the legend entries of what
// it drew.
func roundPlot(x *bench.RoundResult) (*plot.Plot, []legendEntry, error) {
	d := &x.Round
	pn := newPanel(x)
	raw := pn.rates(d.Samples)
	if !x.Resumed.IsZero() && !d.EventTime.IsZero() {
		if err := pn.stallBand(d.EventTime, x.Resumed); err != nil {
			return nil, nil, err
		}
	}
	if len(raw) > 0 {
		if err := pn.throughput(raw); err != nil {
			return nil, nil, err
		}
	}
	if err := pn.markers(x); err != nil {
		return nil, nil, err
	}
	if len(raw) > 0 {
		pn.p.X.Max = raw[len(raw)-1].X
	}
	for _, t := range []time.Time{d.CopyEnd, d.SyncEnd, x.Resumed} {
		if !t.IsZero() {
			pn.p.X.Max = max(pn.p.X.Max, pn.secs(t))
		}
	}
	return pn.p, pn.legend, nil
}

// newPanel starts a round's panel: title, axes and grid, its time origin
// the start of the copy (else the first sample).
func newPanel(x *bench.RoundResult) *panel {
	d := &x.Round
	p := plot.New()
	p.Y.Tick.Marker = integerTicks{}
	p.X.Tick.Marker = integerTicks{}
	p.Title.Text = x.Summary()
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Label.Text = "seconds since the copy started"
	p.Y.Label.Text = "written, MB/s"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	origin := d.CopyStart
	if origin.IsZero() && len(d.Samples) > 0 {
		origin = d.Samples[0].Time
	}
	return &panel{p: p, origin: origin}
}

// secs places t on the panel's time axis.
func (pn *panel) secs(t time.Time) float64 { return t.Sub(pn.origin).Seconds() }

// rates returns the write throughput between samples and sets the
// panel's height from its peak, with a tenth to spare.
func (pn *panel) rates(samples []bench.TimelineSample) plotter.XYs {
	rates := bench.WriteRates(samples)
	top := 1.0
	raw := make(plotter.XYs, 0, len(rates))
	for _, r := range rates {
		raw = append(raw, plotter.XY{X: pn.secs(r.Time), Y: r.MBps})
		top = max(top, r.MBps)
	}
	pn.top = math.Ceil(top * 1.1)
	pn.p.Y.Max = pn.top
	return raw
}

// stallBand shades the stall, from the event to the resumption.
func (pn *panel) stallBand(event, resumed time.Time) error {
	a, b := pn.secs(event), pn.secs(resumed)
	band, err := plotter.NewPolygon(plotter.XYs{{X: a, Y: 0}, {X: b, Y: 0}, {X: b, Y: pn.top}, {X: a, Y: pn.top}})
	if err != nil {
		return fmt.Errorf("demo plot: %w", err)
	}
	band.Color, band.LineStyle.Width = colorStall, 0
	pn.p.Add(band)
	pn.legend = append(pn.legend, legendEntry{"I/O stall", band})
	return nil
}

// throughput draws the throughput per sample, thin, and its moving
// average, thick.
func (pn *panel) throughput(raw plotter.XYs) error {
	line, err := plotter.NewLine(raw)
	if err != nil {
		return fmt.Errorf("demo plot: %w", err)
	}
	line.Color, line.Width = colorRaw, vg.Points(0.8)
	smooth, err := plotter.NewLine(movingAverage(raw, smoothSamples))
	if err != nil {
		return fmt.Errorf("demo plot: %w", err)
	}
	smooth.Color, smooth.Width = colorThroughput, vg.Points(1.8)
	pn.p.Add(line, smooth)
	pn.legend = append(pn.legend, legendEntry{"write throughput, per sample", line},
		legendEntry{fmt.Sprintf("mean of %d samples", smoothSamples), smooth})
	return nil
}

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

// markers draws a vertical line at each moment of the round that is
// known: the event, A gone and B in (unless they coincide with the
// event), the resumption, the end of the copy and of the sync.
func (pn *panel) markers(x *bench.RoundResult) error {
	d := &x.Round
	dash := []vg.Length{vg.Points(4), vg.Points(3)}
	dot := []vg.Length{vg.Points(1), vg.Points(2)}
	event, gone, promote := d.EventTime, d.AGoneTime, d.PromoteTime
	if d.Event == bench.EventNone {
		// A copy with no fault: whatever times round.env holds, nothing
		// happened to A or B.
		event, gone, promote = time.Time{}, time.Time{}, time.Time{}
	}
	if gone.Sub(event).Abs() < markerSnap {
		gone = time.Time{}
	}
	if promote.Sub(event).Abs() < markerSnap {
		promote = time.Time{}
	}
	for _, m := range []struct {
		t      time.Time
		name   string
		c      color.Color
		dashes []vg.Length
	}{
		// One name for both events: the panel's title says which it was.
		{event, "A fenced or migrated (see title)", colorEvent, nil},
		{gone, "A gone", colorGone, dot},
		{promote, "B started/announced", colorPromote, dash},
		{x.Resumed, "I/O resumed on B", colorResumed, nil},
		{d.CopyEnd, "cp done", colorCopy, dash},
		{d.SyncEnd, "sync done", colorCopy, dot},
	} {
		if err := pn.mark(m.t, m.name, m.c, m.dashes); err != nil {
			return err
		}
	}
	return nil
}

// mark draws a vertical line at t, unless t is the zero time.
func (pn *panel) mark(t time.Time, name string, c color.Color, dashes []vg.Length) error {
	if t.IsZero() {
		return nil
	}
	l, err := plotter.NewLine(plotter.XYs{{X: pn.secs(t), Y: 0}, {X: pn.secs(t), Y: pn.top}})
	if err != nil {
		return fmt.Errorf("demo plot: %w", err)
	}
	l.Color, l.Width, l.Dashes = c, vg.Points(1.3), dashes
	pn.p.Add(l)
	pn.legend = append(pn.legend, legendEntry{name, l})
	return nil
}
