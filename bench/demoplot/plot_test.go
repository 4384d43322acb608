package demoplot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ironblade/ironblade/bench"
)

// demoReport analyzes the rounds in testdata: two rounds of a real run of
// scripts/demo.sh (a migration and a fence), and a copy of the first with
// a corrupt file, whose panel title says so.
func demoReport(t *testing.T) *bench.DemoReport {
	t.Helper()
	const window = 2 * time.Second
	rep := &bench.DemoReport{Window: window}
	for _, name := range []string{"01-1M-migrate", "02-1M-fence"} {
		d, err := bench.LoadDemoRound(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Samples) == 0 {
			t.Fatalf("%s: no timeline samples", name)
		}
		rep.Rounds = append(rep.Rounds, bench.AnalyzeRound(d, window))
	}
	bad := rep.Rounds[0]
	bad.Round.Name, bad.Round.Intact, bad.Round.Corrupt = "bad", bad.Round.Files-1, 1
	rep.Rounds = append(rep.Rounds, bad)
	return rep
}

func TestWrite(t *testing.T) {
	rep := demoReport(t)
	dir := t.TempDir()
	png, svg := filepath.Join(dir, "t.png"), filepath.Join(dir, "t.svg")
	if err := Write(rep, png, svg); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("PNG: %v, %d bytes", err, len(b))
	}
	if b, err := os.ReadFile(svg); err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Errorf("SVG: %v, %d bytes", err, len(b))
	}
	if err := Write(&bench.DemoReport{}, png, ""); !errors.Is(err, errNoRounds) {
		t.Errorf("Write with no rounds: %v, want %v", err, errNoRounds)
	}
}
