package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/bench"
	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/internal/testenv"
)

// fakeIronaoe writes a shell script that answers `ironaoe stat --json` with
// one device whose bytes written grow by 1 MB per call, and returns its path.
func fakeIronaoe(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skipf("needs /bin/sh: %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ironaoe")
	script := `#!/bin/sh
[ "$1" = stat ] || exit 2
n=$(cat "` + dir + `/calls" 2>/dev/null || echo 0)
echo $((n + 1)) > "` + dir + `/calls"
cat <<EOF
{"processes":[{"pid":99,"stats":{"devices":[{"name":"e1.0","state":"up","bytes_written":$((n * 1000000)),
"active":["02:1b:de:00:00:0a"],"targets":[{"mac":"02:1b:de:00:00:0a","state":"active"},{"mac":"02:1b:de:00:00:0b","state":"standby"}],
"events":[{"time":"2026-01-02T03:04:05Z","kind":"target_added","target":"02:1b:de:00:00:0a"}]}]}}]}
EOF
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTimelineCommand(t *testing.T) {
	fake := fakeIronaoe(t)
	dir := t.TempDir()
	out, progress := filepath.Join(dir, "timeline.jsonl"), filepath.Join(dir, "progress")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- newApp(&stdout, &stderr).RunContext(ctx, []string{"ironbench", "timeline", "--ironaoe", fake,
			"--control-dir", dir, "--interval", "50ms", "--out", out, "--progress", progress})
	}()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	defer stop()
	// Stopped as SIGTERM would, once it has written three samples: what
	// they hold is the subject, not how many fit in a given time.
	testenv.WaitFor(t, 20*time.Second, "three timeline samples", func() bool {
		b, _ := os.ReadFile(out)
		return bytes.Count(b, []byte("\n")) >= 3
	})
	if err := stop(); err != nil {
		t.Fatalf("timeline: %v\n%s", err, stderr.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	samples, err := bench.ReadTimeline(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) < 3 {
		t.Fatalf("%d samples, want at least 3; stderr:\n%s", len(samples), stderr.String())
	}
	if samples[1].BytesWritten <= samples[0].BytesWritten || len(samples[0].Events) != 1 || len(samples[1].Events) != 0 {
		t.Errorf("samples: %+v", samples[:2])
	}
	b, err := os.ReadFile(progress)
	if err != nil {
		t.Fatal(err)
	}
	last := samples[len(samples)-1]
	if want := fmt.Sprintf("%d 02:1b:de:00:00:0a 2\n", last.BytesWritten); string(b) != want {
		t.Errorf("progress %q, want %q", b, want)
	}
}

func TestTimelineCommandErrors(t *testing.T) {
	for _, args := range [][]string{
		{"timeline"}, // no --control-dir
		{"timeline", "--control-dir", "/nonexistent", "--interval", "0s"},
		{"timeline", "--control-dir", "/nonexistent", "--ironaoe", "/nonexistent/ironaoe"},
		{"timeline", "--control-dir", "/nonexistent", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if err := newApp(&stdout, &stderr).Run(append([]string{"ironbench"}, args...)); err == nil {
			t.Errorf("ironbench %s succeeded", strings.Join(args, " "))
		}
	}
}

// writeRound writes a round directory as scripts/demo.sh does.
func writeRound(t *testing.T, dir, name string, corrupt int) string {
	t.Helper()
	rdir := filepath.Join(dir, name)
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1700000000, 0)
	env := fmt.Sprintf(`name=%s
set=1M
files=4
bytes=4194304
event=migrate
mode=standby
sync=true
announce=true
node_a_mac=02:1b:de:00:00:0a
node_b_mac=02:1b:de:00:00:0b
copy_start=1700000000
event_time=1700000001
node_a_gone_time=1700000001.03
promote_time=1700000001.05
copy_end=1700000002
sync_end=1700000002.2
intact=%d
corrupt=%d
remount_intact=4
remount_corrupt=0
`, name, 4-corrupt, corrupt)
	if err := os.WriteFile(filepath.Join(rdir, "round.env"), []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
	var lines bytes.Buffer
	enc := json.NewEncoder(&lines)
	for i := 0; i <= 25; i++ {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		s := bench.TimelineSample{Time: at, PID: 1, BytesWritten: uint64(i) * 1e6, Active: []string{"02:1b:de:00:00:0b"}}
		if i == 12 {
			s.Events = []initiator.Event{{Time: t0.Add(1150 * time.Millisecond), Kind: initiator.EventResumed, Target: "02:1b:de:00:00:0b"}}
		}
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rdir, "timeline.jsonl"), lines.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return rdir
}

func TestPlotCommand(t *testing.T) {
	dir := t.TempDir()
	good := writeRound(t, dir, "01-1M-migrate", 0)
	out := filepath.Join(dir, "report")
	preamble := filepath.Join(dir, "preamble.md")
	if err := os.WriteFile(preamble, []byte("Settings of the run.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := newApp(&stdout, &stderr).Run([]string{"ironbench", "plot", "--out", out, "--preamble", preamble, good}); err != nil {
		t.Fatalf("plot: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "| 4 x 1M | migrate | standby | -s | 30 ms | 50 ms | 150 ms |") {
		t.Errorf("table:\n%s", stdout.String())
	}
	for _, f := range []string{"report.md", "report.json", "timeline.png", "timeline.svg"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if md, _ := os.ReadFile(filepath.Join(out, "report.md")); !bytes.Contains(md, []byte("Settings of the run.")) {
		t.Errorf("report.md lacks the preamble:\n%s", md)
	}

	bad := writeRound(t, dir, "02-1M-migrate", 1)
	stdout.Reset()
	err := newApp(&stdout, &stderr).Run([]string{"ironbench", "plot", "--out", out, good, bad})
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("plot with a corrupt file: %v, want an error saying so", err)
	}
	for _, args := range [][]string{
		{"plot", "--out", out},
		{"plot", "--out", out, filepath.Join(dir, "missing")},
		{"plot", "--out", out, "--window", "0s", good},
	} {
		if err := newApp(&stdout, &stderr).Run(append([]string{"ironbench"}, args...)); err == nil {
			t.Errorf("ironbench %s succeeded", strings.Join(args, " "))
		}
	}
}

// writeConfigRound writes a round of the comparison: writeRound's, then
// the keys of a target configuration, which override it.
func writeConfigRound(t *testing.T, dir, name, target, event string, corrupt int) string {
	t.Helper()
	rdir := writeRound(t, dir, name, corrupt)
	sync := strings.HasSuffix(target, "-s")
	extra := fmt.Sprintf("target=%s\nsync=%v\nevent=%s\nnodes=vm\nstorage=drbd\nremount_intact=%d\n", target, sync, event, 4-corrupt)
	f, err := os.OpenFile(filepath.Join(rdir, "round.env"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	return rdir
}

func TestPlotCommandComparison(t *testing.T) {
	dir := t.TempDir()
	var rounds []string
	for i, target := range []string{"vblade", "vblade-s", "ironblade", "ironblade-s"} {
		// Fences of the targets without -s lose a file: the expected result.
		corrupt := 0
		if !strings.HasSuffix(target, "-s") {
			corrupt = 1
		}
		rounds = append(rounds,
			writeConfigRound(t, dir, fmt.Sprintf("%02d-none-%s", 2*i+1, target), target, "none", 0),
			writeConfigRound(t, dir, fmt.Sprintf("%02d-fence-%s", 2*i+2, target), target, "fence", corrupt))
	}
	out := filepath.Join(dir, "report")
	var stdout, stderr bytes.Buffer
	if err := newApp(&stdout, &stderr).Run(append([]string{"ironbench", "plot", "--out", out}, rounds...)); err != nil {
		t.Fatalf("plot of a run whose only losses are fences without -s: %v\n%s", err, stdout.String())
	}
	for _, want := range []string{
		"**Verdict: PASS**",
		"| vblade | 4 x 1M | 2.2 s | 1.00x | 2.2 s | 1.00x | 1 | 1 | 1 | 150 ms | 150 ms |",
		"| ironblade -s | 4 x 1M | 2.2 s | 1.00x | 2.2 s | 1.00x | 1 | 0 | 0 | 150 ms | 150 ms |",
		"(a) vblade, 1M: fencing a target without -s loses acknowledged writes: **SHOWN**: lost 1 file in 1 fence.",
		"| 4 x 1M | none | standby, vm, drbd | vblade -s | - | - | - |",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, f := range []string{"report.md", "report.json", "compare.png", "compare.svg", "timeline.png", "timeline.svg"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, want := range []string{"](compare.png)", "](timeline.png)", "## Comparison"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	var js struct {
		Comparison []bench.DemoConfig `json:"comparison"`
		Verdict    bench.DemoVerdict  `json:"verdict"`
	}
	if b, err := os.ReadFile(filepath.Join(out, "report.json")); err != nil || json.Unmarshal(b, &js) != nil ||
		len(js.Comparison) != 4 || !js.Verdict.Pass || js.Verdict.ExpectedLoss != 2 {
		t.Errorf("report.json: %v: %+v", err, js)
	}

	// A lost file where nothing may be lost fails the run.
	for _, c := range []struct{ name, target, event string }{
		{"-s fence", "ironblade-s", "fence"},
		{"vblade -s fence", "vblade-s", "fence"},
		{"no fault", "vblade", "none"},
		{"migration", "ironblade", "migrate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := writeConfigRound(t, t.TempDir(), "99-bad", c.target, c.event, 1)
			stdout.Reset()
			err := newApp(&stdout, &stderr).Run(append([]string{"ironbench", "plot", "--out", t.TempDir()}, append(rounds, bad)...))
			if err == nil || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("plot: %v, want an error saying files were corrupt", err)
			}
			if !strings.Contains(stdout.String(), "**Verdict: FAIL**") || !strings.Contains(stdout.String(), "- 99-bad (") {
				t.Errorf("output does not say why:\n%s", stdout.String())
			}
		})
	}
}
