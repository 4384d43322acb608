package demoplot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/bench"
)

// compareRounds makes, from the fence round in testdata, a run of every
// target over each of sets: a copy with no fault and a fence, the targets
// without -s losing a file to it.
func compareRounds(t *testing.T, sets ...string) []bench.RoundResult {
	t.Helper()
	const window = 2 * time.Second
	base, err := bench.LoadDemoRound(filepath.Join("testdata", "02-1M-fence"))
	if err != nil {
		t.Fatal(err)
	}
	var rounds []bench.RoundResult
	for _, set := range sets {
		for _, tc := range []struct {
			target string
			copy   time.Duration // with no fault: vblade -s the slowest
		}{
			{bench.TargetVblade, 3 * time.Second},
			{bench.TargetVbladeSync, 11 * time.Second},
			{bench.TargetIronblade, 3 * time.Second},
			{bench.TargetIronbladeSync, 4 * time.Second},
		} {
			target := tc.target
			d := base
			d.Set, d.Target, d.Sync, d.Nodes, d.Storage = set, target, strings.HasSuffix(target, "-s"), "vm", "drbd"
			none := d
			none.Event, none.EventTime, none.AGoneTime, none.PromoteTime = bench.EventNone, time.Time{}, time.Time{}, time.Time{}
			none.SyncEnd = d.CopyStart.Add(tc.copy)
			rounds = append(rounds, bench.AnalyzeRound(none, window))
			if !d.Sync {
				d.Intact, d.Corrupt = d.Files-1, 1
			}
			rounds = append(rounds, bench.AnalyzeRound(d, window))
		}
	}
	return rounds
}

func TestWriteCompare(t *testing.T) {
	for _, c := range []struct {
		name   string
		rounds func(t *testing.T) []bench.RoundResult
		want   []string // text in the SVG
	}{
		{"four targets", func(t *testing.T) []bench.RoundResult { return compareRounds(t, "1M") },
			[]string{"vblade -s", "ironblade -s", "Copy time", "400 x 1M", "fenced", "1.5x ironblade", "loss expected"}},
		{"two sets", func(t *testing.T) []bench.RoundResult { return compareRounds(t, "1M", "4K") },
			[]string{"4K", "Corrupt files per fence"}},
		// The old demo's rounds: one target, a migration and a fence.
		{"old rounds", func(t *testing.T) []bench.RoundResult { return demoReport(t).Rounds[:2] },
			[]string{"ironblade -s", "fenced"}},
		{"migrations only", func(t *testing.T) []bench.RoundResult { return demoReport(t).Rounds[:1] },
			[]string{"migrated", "Corrupt files per migration"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := &bench.DemoReport{Window: 2 * time.Second, Rounds: c.rounds(t)}
			dir := t.TempDir()
			png, svg := filepath.Join(dir, "compare.png"), filepath.Join(dir, "compare.svg")
			if err := WriteCompare(rep, png, svg); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) || len(b) < 1000 {
				t.Errorf("PNG: %v, %d bytes", err, len(b))
			}
			b, err := os.ReadFile(svg)
			if err != nil || !bytes.Contains(b, []byte("<svg")) {
				t.Fatalf("SVG: %v, %d bytes", err, len(b))
			}
			for _, w := range c.want {
				if !bytes.Contains(b, []byte(w)) {
					t.Errorf("SVG lacks %q", w)
				}
			}
		})
	}
	if err := WriteCompare(&bench.DemoReport{}, filepath.Join(t.TempDir(), "x.png"), ""); !errors.Is(err, errNoConfigs) {
		t.Errorf("WriteCompare with no rounds: %v, want %v", err, errNoConfigs)
	}
}

// A copy with no fault marks no event on its timeline, even if round.env
// holds an event time.
func TestRoundPlotNoFault(t *testing.T) {
	d, err := bench.LoadDemoRound(filepath.Join("testdata", "02-1M-fence"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		event     string
		wantEvent bool
	}{{bench.EventFence, true}, {bench.EventNone, false}} {
		d.Event = c.event
		x := bench.AnalyzeRound(d, 2*time.Second)
		_, legend, err := roundPlot(&x)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range legend {
			names = append(names, e.name)
		}
		got := strings.Contains(strings.Join(names, ";"), "A fenced or migrated")
		if got != c.wantEvent || (c.event == bench.EventNone && strings.Contains(strings.Join(names, ";"), "I/O stall")) {
			t.Errorf("event %q: legend %q", c.event, names)
		}
	}
}
