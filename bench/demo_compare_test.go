package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseRoundEnvTargets(t *testing.T) {
	for _, c := range []struct {
		name    string
		env     string
		want    DemoRound // only the fields below are compared
		target  string    // TargetName()
		durable bool
	}{
		{"vm, drbd, no fault", "target=vblade-s\nnodes=vm\nstorage=drbd\nevent=none\nsync=true\n",
			DemoRound{Target: "vblade-s", Nodes: "vm", Storage: "drbd", Event: "none", Sync: true}, "vblade-s", true},
		{"repeated fence", "target=ironblade\nnodes=process\nstorage=file\nevent=fence\nrepeat=3\n",
			DemoRound{Target: "ironblade", Nodes: "process", Storage: "file", Event: "fence", Repeat: 3}, "ironblade", false},
		{"shared LUN, empty repeat", "target=ironblade-s\nstorage=shared\nrepeat=\n",
			DemoRound{Target: "ironblade-s", Storage: "shared"}, "ironblade-s", true},
		// Rounds of the old demo: always ironblade, -s after sync.
		{"old round, -s", "event=migrate\nsync=true\n", DemoRound{Event: "migrate", Sync: true}, "ironblade-s", true},
		{"old round, async", "event=fence\nsync=false\n", DemoRound{Event: "fence"}, "ironblade", false},
		// A round.env contradicting itself is judged as promising durability.
		{"-s target, sync=false", "target=vblade-s\nsync=false\n", DemoRound{Target: "vblade-s"}, "vblade-s", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := ParseRoundEnv(strings.NewReader(c.env))
			if err != nil {
				t.Fatal(err)
			}
			if d.Target != c.want.Target || d.Nodes != c.want.Nodes || d.Storage != c.want.Storage ||
				d.Event != c.want.Event || d.Repeat != c.want.Repeat || d.Sync != c.want.Sync {
				t.Errorf("got target %q nodes %q storage %q event %q repeat %d sync %v, want %+v",
					d.Target, d.Nodes, d.Storage, d.Event, d.Repeat, d.Sync, c.want)
			}
			if d.TargetName() != c.target || d.Durable() != c.durable {
				t.Errorf("TargetName() %q, Durable() %v; want %q, %v", d.TargetName(), d.Durable(), c.target, c.durable)
			}
		})
	}

	// A misspelt value would put a round in the wrong column of the
	// verdict: refused.
	for _, bad := range []string{
		"target=vblade_s",
		"target=ironblade -s",
		"nodes=bare-metal",
		"storage=nfs",
		"event=crash",
		"repeat=-1",
		"repeat=twice",
	} {
		if _, err := ParseRoundEnv(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseRoundEnv(%q) succeeded", bad)
		}
	}
}

// configRound is a round of target over set with the given event, copy
// time, stall (for a fence or a migration) and corrupt files, analyzed.
func configRound(name, target, set, event string, copyTime, stall time.Duration, corrupt, repeat int) RoundResult {
	d := syntheticRound(stall, true)
	d.Name, d.Target, d.Set, d.Event, d.Repeat = name, target, set, event, repeat
	d.Sync = strings.HasSuffix(target, "-s")
	d.Nodes, d.Storage = "vm", "drbd"
	d.SyncEnd = d.CopyStart.Add(copyTime)
	d.Intact, d.Corrupt, d.RemountIntact = d.Files-corrupt, corrupt, d.Files-corrupt
	if event == EventNone {
		d.EventTime, d.PromoteTime = time.Time{}, time.Time{}
	}
	return AnalyzeRound(d, 2*time.Second)
}

// comparisonRun is a run of the four targets over the 1M set, with no
// fault and fenced (ironblade twice, with --repeat), and one old round of
// another set: ironblade -s by its sync key.
func comparisonRun() *DemoReport {
	const s = time.Second
	old := configRound("old", "", "4M", EventFence, 20*s, 400*time.Millisecond, 0, 0)
	old.Round.Target, old.Round.Sync, old.Round.Nodes, old.Round.Storage = "", true, "", ""
	return &DemoReport{Window: 2 * s, Rounds: []RoundResult{
		configRound("01", TargetVblade, "1M", EventNone, 10*s, 0, 0, 1),
		configRound("02", TargetVbladeSync, "1M", EventNone, 60*s, 0, 0, 0),
		configRound("03", TargetIronblade, "1M", EventNone, 8*s, 0, 0, 0),
		configRound("04", TargetIronbladeSync, "1M", EventNone, 10*s, 0, 0, 0),
		configRound("05", TargetVblade, "1M", EventNone, 12*s, 0, 0, 0),
		configRound("06", TargetVblade, "1M", EventFence, 11*s, 1200*time.Millisecond, 3, 0),
		configRound("07", TargetVbladeSync, "1M", EventFence, 62*s, 1100*time.Millisecond, 0, 0),
		configRound("08", TargetIronblade, "1M", EventFence, 9*s, 500*time.Millisecond, 2, 1),
		configRound("09", TargetIronblade, "1M", EventFence, 9*s, time.Second, 0, 2),
		configRound("10", TargetIronbladeSync, "1M", EventFence, 12*s, 300*time.Millisecond, 0, 1),
		old,
	}}
}

func TestDemoComparison(t *testing.T) {
	const s = time.Second
	configs := comparisonRun().Comparison()
	type want struct {
		label                    string
		durable                  bool
		noFault, fenced          time.Duration
		fences, corrupt          int
		perRound                 []int
		stallMean, stallMax      time.Duration
		ratioNoFault, ratioFence float64
		nodes, storage           string
		corruptPerFence          float64
	}
	wants := []want{
		{"vblade, 1M", false, 11 * s, 11 * s, 1, 3, []int{3}, 1200 * time.Millisecond, 1200 * time.Millisecond, 11.0 / 8, 11.0 / 8, "vm", "drbd", 3},
		{"vblade -s, 1M", true, 60 * s, 62 * s, 1, 0, []int{0}, 1100 * time.Millisecond, 1100 * time.Millisecond, 60.0 / 8, 62.0 / 8, "vm", "drbd", 0},
		{"ironblade, 1M", false, 8 * s, 9 * s, 2, 2, []int{2, 0}, 750 * time.Millisecond, time.Second, 1, 9.0 / 8, "vm", "drbd", 1},
		{"ironblade -s, 1M", true, 10 * s, 12 * s, 1, 0, []int{0}, 300 * time.Millisecond, 300 * time.Millisecond, 10.0 / 8, 12.0 / 8, "vm", "drbd", 0},
		// No ironblade round of the 4M set: no ratio.
		{"ironblade -s, 4M", true, 0, 20 * s, 1, 0, []int{0}, 400 * time.Millisecond, 400 * time.Millisecond, 0, 0, "", "", 0},
	}
	if len(configs) != len(wants) {
		t.Fatalf("%d configurations, want %d: %+v", len(configs), len(wants), configs)
	}
	for i, w := range wants {
		c := configs[i]
		t.Run(w.label, func(t *testing.T) {
			if c.Label() != w.label || c.Durable != w.durable || c.Nodes != w.nodes || c.Storage != w.storage {
				t.Errorf("config %d: %q durable %v nodes %q storage %q", i, c.Label(), c.Durable, c.Nodes, c.Storage)
			}
			if c.NoFault.Copy != w.noFault || c.Fence.Copy != w.fenced {
				t.Errorf("copy %v with no fault, %v fenced; want %v, %v", c.NoFault.Copy, c.Fence.Copy, w.noFault, w.fenced)
			}
			if c.Fence.Rounds != w.fences || c.Fence.Corrupt != w.corrupt || !equalInts(c.Fence.PerRound, w.perRound) ||
				c.Fence.CorruptPerRound() != w.corruptPerFence {
				t.Errorf("fences %d, corrupt %d %v (%.2f per fence); want %d, %d %v", c.Fence.Rounds, c.Fence.Corrupt,
					c.Fence.PerRound, c.Fence.CorruptPerRound(), w.fences, w.corrupt, w.perRound)
			}
			if c.Fence.StallMean != w.stallMean || c.Fence.StallMax != w.stallMax || c.Fence.StallFound != w.fences {
				t.Errorf("stall mean %v max %v (found %d); want %v, %v", c.Fence.StallMean, c.Fence.StallMax, c.Fence.StallFound, w.stallMean, w.stallMax)
			}
			if !nearly(c.RatioNoFault, w.ratioNoFault) || !nearly(c.RatioFence, w.ratioFence) {
				t.Errorf("ratios %.3f, %.3f; want %.3f, %.3f", c.RatioNoFault, c.RatioFence, w.ratioNoFault, w.ratioFence)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func nearly(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestDemoVerdict(t *testing.T) {
	const s = time.Second
	stall := 500 * time.Millisecond
	incomplete := configRound("05", TargetVbladeSync, "1M", EventFence, 9*s, stall, 0, 0)
	incomplete.Round.Intact = 0 // the check never ran
	remount := configRound("06", TargetVbladeSync, "1M", EventFence, 9*s, stall, 0, 0)
	remount.Round.RemountCorrupt = 1
	contradiction := configRound("07", TargetIronblade, "1M", EventFence, 9*s, stall, 1, 0)
	contradiction.Round.Sync = true
	oldSync := configRound("08", "", "1M", EventFence, 9*s, stall, 1, 0)
	oldSync.Round.Sync = true
	oldAsync := configRound("09", "", "1M", EventFence, 9*s, stall, 1, 0)
	for _, c := range []struct {
		name     string
		rounds   []RoundResult
		pass     bool
		expected int    // files lost as expected
		sub      string // in the failures, or else in the checks
	}{
		{"async fence with corruption passes", []RoundResult{
			configRound("01", TargetIronblade, "1M", EventFence, 9*s, stall, 3, 0),
		}, true, 3, "(a) ironblade, 1M: SHOWN: lost 3 files in 1 fence"},
		{"vblade fence with corruption passes", []RoundResult{
			configRound("01", TargetVblade, "1M", EventFence, 9*s, stall, 1, 0),
		}, true, 1, "(a) vblade, 1M: SHOWN: lost 1 file in 1 fence"},
		{"async fence without loss passes, saying so", []RoundResult{
			configRound("01", TargetVblade, "1M", EventFence, 9*s, stall, 0, 0),
		}, true, 0, "NOT SHOWN: no loss this time: the fence came when little was unsynced"},
		{"-s fence with corruption fails", []RoundResult{
			configRound("01", TargetIronblade, "1M", EventFence, 9*s, stall, 3, 0),
			configRound("02", TargetIronbladeSync, "1M", EventFence, 9*s, stall, 1, 0),
		}, false, 3, "02 (ironblade -s, 10 x 1M, fence): 1 file corrupt or missing through a fresh connection although the target ran with -s"},
		{"-s fence without loss passes (b)", []RoundResult{
			configRound("01", TargetVbladeSync, "1M", EventFence, 9*s, stall, 0, 0),
		}, true, 0, "(b) vblade -s, 1M: PASS: no file lost in 1 fence"},
		{"no-fault round with corruption fails", []RoundResult{
			configRound("01", TargetVblade, "1M", EventNone, 9*s, 0, 2, 0),
		}, false, 0, "2 files corrupt or missing through a fresh connection with no fault at all"},
		{"migration with corruption fails", []RoundResult{
			configRound("01", TargetVblade, "1M", EventMigrate, 9*s, stall, 1, 0),
		}, false, 0, "01 (vblade, 10 x 1M, migrate): 1 file corrupt or missing through a fresh connection, and only a fence of a target without -s may lose files"},
		{"check that did not count every file fails", []RoundResult{incomplete}, false, 0,
			"the check counted 0 intact and 0 corrupt of 10 files"},
		{"-s fence with a remount corrupt file fails", []RoundResult{remount}, false, 0,
			"0 files corrupt or missing through a fresh connection, 1 after a remount over the same initiator"},
		{"sync=true contradicting target=ironblade fails", []RoundResult{contradiction}, false, 0, "although the target ran with -s"},
		{"old round with sync=true fails", []RoundResult{oldSync}, false, 0, "08 (ironblade -s, 10 x 1M, fence)"},
		{"old async round passes", []RoundResult{oldAsync}, true, 1, "(a) ironblade, 1M: SHOWN"},
		{"ironblade -s too slow is a MISS, not a failure", []RoundResult{
			configRound("01", TargetIronblade, "1M", EventNone, 10*s, 0, 0, 0),
			configRound("02", TargetIronbladeSync, "1M", EventNone, 20*s, 0, 0, 0),
		}, true, 0, "(c) 1M: MISS: ironblade -s 20.0 s, ironblade 10.0 s: 2.00x"},
		{"ironblade -s within 1.5x", []RoundResult{
			configRound("01", TargetIronblade, "1M", EventNone, 10*s, 0, 0, 0),
			configRound("02", TargetIronbladeSync, "1M", EventNone, 15*s, 0, 0, 0),
		}, true, 0, "(c) 1M: PASS: ironblade -s 15.0 s, ironblade 10.0 s: 1.50x"},
		{"vblade -s over ironblade -s", []RoundResult{
			configRound("01", TargetVbladeSync, "1M", EventNone, 120*s, 0, 0, 0),
			configRound("02", TargetIronbladeSync, "1M", EventNone, 15*s, 0, 0, 0),
		}, true, 0, "(d) 1M: INFO: vblade -s 120.0 s, ironblade -s 15.0 s: 8.00x"},
		{"ratio without a no-fault round", []RoundResult{
			configRound("01", TargetVbladeSync, "1M", EventFence, 120*s, stall, 0, 0),
		}, true, 0, "(d) 1M: n/a: needs a copy with no fault (event none) of both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := &DemoReport{Window: 2 * s, Rounds: c.rounds}
			v := rep.Verdict()
			if v.Pass != c.pass || rep.Passed() != c.pass || v.ExpectedLoss != c.expected {
				t.Errorf("pass %v (Passed() %v), expected loss %d; want %v, %d; failures %q", v.Pass, rep.Passed(), v.ExpectedLoss,
					c.pass, c.expected, v.Failures)
			}
			var checks []string
			for _, ch := range v.Checks {
				checks = append(checks, "("+ch.ID+") "+ch.Subject+": "+ch.Status+": "+ch.Detail)
			}
			all := strings.Join(v.Failures, "\n") + "\n" + strings.Join(checks, "\n")
			if !strings.Contains(all, c.sub) {
				t.Errorf("verdict lacks %q:\n%s", c.sub, all)
			}
			if c.pass != (len(v.Failures) == 0) {
				t.Errorf("pass %v with failures %q", c.pass, v.Failures)
			}
		})
	}
}

func TestDemoComparisonMarkdown(t *testing.T) {
	rep := comparisonRun()
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	out := md.String()
	for _, want := range []string{
		"**Verdict: PASS**",
		"The 5 files lost on fencing targets without -s are the expected result, not a failure.",
		"## Comparison",
		"Nodes: vm; storage: drbd.",
		"| vblade | 10 x 1M | 11.0 s | 1.38x | 11.0 s | 1.38x | 1 | 3 | 3 | 1200 ms | 1200 ms |",
		"| vblade -s | 10 x 1M | 60.0 s | 7.50x | 62.0 s | 7.75x | 1 | 0 | 0 | 1100 ms | 1100 ms |",
		"| ironblade | 10 x 1M | 8.0 s | 1.00x | 9.0 s | 1.12x | 2 | 2 | 1.0 (2, 0) | 750 ms | 1000 ms |",
		"| ironblade -s | 10 x 1M | 10.0 s | 1.25x | 12.0 s | 1.50x | 1 | 0 | 0 | 300 ms | 300 ms |",
		"| ironblade -s | 10 x 4M | - | - | 20.0 s | - | 1 | 0 | 0 | 400 ms | 400 ms |",
		"- (a) vblade, 1M: fencing a target without -s loses acknowledged writes: **SHOWN**: lost 3 files in 1 fence.",
		"- (a) ironblade, 1M: fencing a target without -s loses acknowledged writes: **SHOWN**: lost 2 files in 2 fences.",
		"- (b) ironblade -s, 4M: a target with -s loses no acknowledged write on fencing: **PASS**: no file lost in 1 fence.",
		"- (c) 1M: ironblade -s copies within 1.5x of ironblade's time, no fault: **PASS**: ironblade -s 10.0 s, ironblade 8.0 s: 1.25x.",
		"- (d) 1M: vblade -s's copy time over ironblade -s's, no fault: **INFO**: vblade -s 60.0 s, ironblade -s 10.0 s: 6.00x.",
		"- (c) 4M: ironblade -s copies within 1.5x of ironblade's time, no fault: **n/a**",
		"## Rounds",
		// A round with no fault has no stall, nor A gone and B in.
		"| 10 x 1M | none | standby, vm, drbd | vblade | - | - | - | - | - | - | 10/10 | 0 | B |",
		"| 10 x 1M | fence #2 | standby, vm, drbd | ironblade | - | 500 ms | 1000 ms | 1020 ms | 100 | 50 | 10/10 | 0 | B |",
		// repeat=1 of an event not repeated: no number.
		"| 10 x 1M | fence | standby, vm, drbd | ironblade -s | - | 150 ms | 300 ms |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	// The comparison comes first.
	if strings.Index(out, "## Comparison") > strings.Index(out, "## Rounds") {
		t.Error("the comparison is not above the rounds")
	}
	if strings.Contains(out, "## Migrations") || strings.Contains(out, "| migrations |") {
		t.Error("a table of migrations without migrations")
	}

	// A failed run says why, first.
	rep.Rounds = append(rep.Rounds, configRound("11", TargetIronbladeSync, "1M", EventFence, 12*time.Second, time.Second, 2, 2))
	md.Reset()
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if out := md.String(); !strings.HasPrefix(out, "**Verdict: FAIL**") ||
		!strings.Contains(out, "- 11 (ironblade -s, 10 x 1M, fence): 2 files corrupt") ||
		!strings.Contains(out, "**FAIL**: lost 2 files in 2 fences") {
		t.Errorf("failed run:\n%s", out)
	}

	// Migrations get a table of their own.
	rep.Rounds = append(rep.Rounds, configRound("12", TargetVblade, "1M", EventMigrate, 14*time.Second, 200*time.Millisecond, 0, 0))
	md.Reset()
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if want := "| vblade | 10 x 1M | 1 | 14.0 s | 1.75x | 0 | 200 ms | 200 ms |"; !strings.Contains(md.String(), want) {
		t.Errorf("markdown lacks %q:\n%s", want, md.String())
	}
}

// The old demo's rounds (one target, faults only) get no comparison, but
// the verdict.
func TestDemoMarkdownWithoutComparison(t *testing.T) {
	rep := &DemoReport{Window: 2 * time.Second, Rounds: []RoundResult{AnalyzeRound(syntheticRound(300*time.Millisecond, true), 2*time.Second)}}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if out := md.String(); strings.Contains(out, "## Comparison") || !strings.HasPrefix(out, "**Verdict: PASS**") {
		t.Errorf("old demo's report:\n%s", out)
	}
}

func TestAnalyzeRoundNoFault(t *testing.T) {
	// event_time set by mistake: still no stall looked for.
	d := syntheticRound(500*time.Millisecond, true)
	d.Event = EventNone
	r := AnalyzeRound(d, 2*time.Second)
	if r.StallSource != "" || r.Stall != 0 || !r.Resumed.IsZero() || r.BeforeMBps >= 0 || len(r.Notes) != 0 {
		t.Errorf("no-fault round analyzed as a failover: %+v", r)
	}
	if r.SwitchedTo != d.Survivor {
		t.Errorf("active at the end %q, want %q", r.SwitchedTo, d.Survivor)
	}
}

func TestDemoReportJSONComparison(t *testing.T) {
	rep := comparisonRun()
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Window     time.Duration     `json:"window"`
		Rounds     []json.RawMessage `json:"rounds"`
		Comparison []DemoConfig      `json:"comparison"`
		Verdict    DemoVerdict       `json:"verdict"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Window != 2*time.Second || len(got.Rounds) != len(rep.Rounds) || len(got.Comparison) != 5 {
		t.Fatalf("window %v, %d rounds, %d configurations", got.Window, len(got.Rounds), len(got.Comparison))
	}
	if c := got.Comparison[2]; c.Target != TargetIronblade || c.Fence.Corrupt != 2 || c.NoFault.Copy != 8*time.Second {
		t.Errorf("comparison[2] = %+v", c)
	}
	if !got.Verdict.Pass || got.Verdict.ExpectedLoss != 5 || len(got.Verdict.Checks) == 0 {
		t.Errorf("verdict = %+v", got.Verdict)
	}
	if !bytes.Contains(js.Bytes(), []byte(`"target": "vblade-s"`)) || !bytes.Contains(js.Bytes(), []byte(`"repeat": 2`)) {
		t.Errorf("rounds lack their target or repeat:\n%s", js.String())
	}
}
