package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator"
)

// statJSON is `ironaoe stat --json` output with one device, as a serve
// process prints it (abridged: fields a timeline ignores are left out).
const statJSON = `{"processes":[{"pid":4242,"command":"serve","stats":{"config":{"scorn_timeout":1000000000},
"devices":[{"name":"e1.0","state":"up","bytes_written":1048576,"bytes_read":512,"writes":2,"reads":1,
"flushes":1,"io_errors":0,"late_writes":0,"active":["02:1b:de:00:00:0a"],
"targets":[{"mac":"02:1b:de:00:00:0a","state":"active","frames":10,"retransmits":1,"outstanding":2},
{"mac":"02:1b:de:00:00:0b","state":"standby","frames":0}],
"events":[{"time":"2026-01-02T03:04:05.5Z","kind":"announce","target":"02:1b:de:00:00:0b"}]}]}}]}`

func TestParseStatSample(t *testing.T) {
	at := time.Unix(1700000000, 0)
	s, err := ParseStatSample([]byte(statJSON), "e1.0", at)
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != 4242 || s.BytesWritten != 1<<20 || s.Writes != 2 || !s.Time.Equal(at) || s.State != initiator.DeviceUp {
		t.Errorf("sample = %+v", s)
	}
	if len(s.Targets) != 2 || s.Targets[0].Frames != 10 || s.Targets[0].Outstanding != 2 || s.Targets[1].State != initiator.TargetStandby {
		t.Errorf("targets = %+v", s.Targets)
	}
	if len(s.Active) != 1 || s.Active[0] != "02:1b:de:00:00:0a" {
		t.Errorf("active = %v", s.Active)
	}
	if len(s.Events) != 1 || s.Events[0].Kind != initiator.EventAnnounce {
		t.Errorf("events = %+v", s.Events)
	}

	for _, c := range []struct {
		name, data, device string
		want               error
	}{
		{"other device", statJSON, "e1.1", errNoDevice},
		{"no process", `{"processes":[]}`, "e1.0", errNoDevice},
		{"not JSON", `no control socket answered`, "e1.0", nil},
		{"wrong type", `{"processes":[{"pid":"x"}]}`, "e1.0", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseStatSample([]byte(c.data), c.device, at)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Errorf("error %v, want one wrapping %v", err, c.want)
			}
		})
	}
}

func FuzzParseStatSample(f *testing.F) {
	f.Add([]byte(statJSON), "e1.0")
	f.Add([]byte(`{"processes":[{"stats":{"devices":[{"name":"e1.0","events":[{}]}]}}]}`), "e1.0")
	f.Add([]byte(`{`), "")
	f.Fuzz(func(t *testing.T, data []byte, device string) {
		s, err := ParseStatSample(data, device, time.Time{})
		if err == nil && s.Device != device {
			t.Errorf("device %q, asked for %q", s.Device, device)
		}
	})
}

func TestSampleTimeline(t *testing.T) {
	// The fake process answers twice with the same event log, fails once,
	// then answers with one more event; the sampler stops after four
	// queries.
	const announce = `{"time":"2026-01-02T03:04:05.5Z","kind":"announce","target":"02:1b:de:00:00:0b"}`
	const resumed = `{"time":"2026-01-02T03:04:06Z","kind":"resumed","target":"02:1b:de:00:00:0b","stall":250000000}`
	later := strings.Replace(statJSON, announce, announce+","+resumed, 1)
	if later == statJSON {
		t.Fatal("statJSON has no announce event to extend")
	}
	answers := []string{statJSON, statJSON, "", later}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	var out bytes.Buffer
	var errs, seen int
	err := SampleTimeline(ctx, TimelineConfig{
		Device:   "e1.0",
		Interval: time.Millisecond,
		Out:      &out,
		Query: func(context.Context) ([]byte, error) {
			n := int(calls.Add(1)) - 1
			if n >= len(answers)-1 {
				cancel()
			}
			if answers[min(n, len(answers)-1)] == "" {
				return nil, errors.New("control socket: connection refused")
			}
			return []byte(answers[min(n, len(answers)-1)]), nil
		},
		OnSample: func(TimelineSample) { seen++ },
		OnError:  func(error) { errs++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	samples, err := ReadTimeline(&out)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 3 || seen != 3 || errs != 1 {
		t.Fatalf("%d samples (%d seen), %d errors; want 3, 3, 1:\n%s", len(samples), seen, errs, out.String())
	}
	var kinds []string
	for _, s := range samples {
		for _, e := range s.Events {
			kinds = append(kinds, string(e.Kind))
		}
	}
	if got := strings.Join(kinds, ","); got != "announce,resumed" {
		t.Errorf("events written %q, want each once: announce,resumed", got)
	}
	if samples[2].Events[0].Stall != 250*time.Millisecond {
		t.Errorf("stall %v", samples[2].Events[0].Stall)
	}
}

func TestReadTimelineTruncated(t *testing.T) {
	line, _ := json.Marshal(TimelineSample{PID: 1, BytesWritten: 5})
	data := string(line) + "\n" + string(line[:len(line)/2])
	got, err := ReadTimeline(strings.NewReader(data))
	if err != nil || len(got) != 1 {
		t.Errorf("ReadTimeline of a truncated last line: %d samples, %v; want 1, nil", len(got), err)
	}
	if _, err := ReadTimeline(strings.NewReader("{]")); err == nil {
		t.Error("ReadTimeline of garbage succeeded")
	}
}

func TestParseRoundEnv(t *testing.T) {
	good := `# a comment
name=01-1M-fence
set=1M
files=400
bytes=419430400
event=fence
mode=standby
sync=true
announce=true
scorn_timeout=1s
fence_delay=500ms
vlan=VLAN 42, tagged in userspace
node_a_mac=02:1B:DE:00:00:0A
node_b_mac=02:1b:de:00:00:0b
copy_start=1700000000.5
event_time=1700000002.123456789
node_a_gone_time=1700000002.2
promote_time=
intact=400
corrupt=0
remount_intact=400
remount_corrupt=0
future_key=ignored
`
	d, err := ParseRoundEnv(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	want := DemoRound{
		Name: "01-1M-fence", Set: "1M", Files: 400, Bytes: 400 << 20, Event: "fence", Mode: "standby", Sync: true,
		Announce: true, ScornTimeout: time.Second, FenceDelay: 500 * time.Millisecond, VLAN: "VLAN 42, tagged in userspace",
		Failed: "02:1b:de:00:00:0a", Survivor: "02:1b:de:00:00:0b",
		CopyStart: time.Unix(1700000000, 5e8), EventTime: time.Unix(1700000002, 123456789), AGoneTime: time.Unix(1700000002, 2e8),
		Intact: 400, RemountIntact: 400, RemountChecked: true,
	}
	if fmt.Sprintf("%+v", d) != fmt.Sprintf("%+v", want) {
		t.Errorf("got  %+v\nwant %+v", d, want)
	}

	for _, bad := range []string{
		"no equals sign",
		"files=many",
		"sync=perhaps",
		"fence_delay=half a second",
		"event_time=yesterday",
		"event_time=-5",
		"event_time=1.1234567890",
		"copy_end=1.-5",
	} {
		if _, err := ParseRoundEnv(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseRoundEnv(%q) succeeded", bad)
		}
	}
}

func FuzzParseRoundEnv(f *testing.F) {
	f.Add("event_time=1700000002.123456789\nfiles=3\n")
	f.Add("sync=true\nfence_delay=1s\n#x\n\n")
	f.Add("copy_start=.5")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseRoundEnv(strings.NewReader(s))
		if err != nil {
			return
		}
		// Whatever parses can be analyzed and reported without panicking.
		r := &DemoReport{Window: time.Second, Rounds: []RoundResult{AnalyzeRound(d, time.Second)}}
		var b bytes.Buffer
		if err := r.WriteMarkdown(&b); err != nil {
			t.Fatal(err)
		}
	})
}

// syntheticRound is a round sampled every 100 ms for 10 s: writes at 100
// MB/s through A until the event at 5 s, nothing for stall, then 50 MB/s
// through B. withResumed adds the initiator's "resumed" event.
func syntheticRound(stall time.Duration, withResumed bool) DemoRound {
	const a, b = "02:1b:de:00:00:0a", "02:1b:de:00:00:0b"
	t0 := time.Unix(1700000000, 0)
	event := t0.Add(5 * time.Second)
	resume := event.Add(stall)
	d := DemoRound{
		Name: "synthetic", Set: "1M", Files: 10, Event: "fence", Mode: "standby", Sync: true, Announce: true,
		Failed: a, Survivor: b, CopyStart: t0, EventTime: event, PromoteTime: event.Add(stall / 2),
		CopyEnd: t0.Add(9 * time.Second), SyncEnd: t0.Add(9500 * time.Millisecond), Intact: 10, RemountIntact: 10,
	}
	var written float64
	for i := 0; i <= 100; i++ {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		s := TimelineSample{Time: at, PID: 7, Device: "e1.0", BytesWritten: uint64(written), Active: []string{a}}
		if !at.Before(resume) {
			s.Active = []string{b}
		}
		if withResumed && !at.Before(resume) && at.Add(-100*time.Millisecond).Before(resume) {
			s.Events = []initiator.Event{{Time: resume, Kind: initiator.EventResumed, Target: b, Stall: stall + 20*time.Millisecond}}
		}
		d.Samples = append(d.Samples, s)
		switch next := at.Add(100 * time.Millisecond); {
		case !next.After(event):
			written += 10e6 // 100 MB/s
		case !at.Before(resume):
			written += 5e6 // 50 MB/s
		}
	}
	return d
}

func TestAnalyzeRound(t *testing.T) {
	for _, c := range []struct {
		name        string
		round       DemoRound
		stall       time.Duration
		source      string
		before      float64
		after       float64
		initiator   time.Duration
		switchedTo  string
		wantNoteSub string
	}{
		{"initiator log", syntheticRound(500*time.Millisecond, true), 500 * time.Millisecond, "initiator", 100, 50,
			520 * time.Millisecond, "02:1b:de:00:00:0b", ""},
		{"sampled", syntheticRound(500*time.Millisecond, false), 600 * time.Millisecond, "sampled", 100, 50,
			0, "02:1b:de:00:00:0b", "100 ms samples"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := AnalyzeRound(c.round, 2*time.Second)
			if r.Stall != c.stall || r.StallSource != c.source || r.InitiatorStall != c.initiator {
				t.Errorf("stall %v (%s, initiator's %v), want %v (%s, %v)", r.Stall, r.StallSource, r.InitiatorStall, c.stall, c.source, c.initiator)
			}
			if math.Abs(r.BeforeMBps-c.before) > 1 {
				t.Errorf("before %.1f MB/s, want %.0f", r.BeforeMBps, c.before)
			}
			if math.Abs(r.AfterMBps-c.after) > 4 {
				t.Errorf("after %.1f MB/s, want %.0f", r.AfterMBps, c.after)
			}
			if r.SwitchedTo != c.switchedTo {
				t.Errorf("switched to %q, want %q", r.SwitchedTo, c.switchedTo)
			}
			if notes := strings.Join(r.Notes, "; "); !strings.Contains(notes, c.wantNoteSub) {
				t.Errorf("notes %q, want %q in them", notes, c.wantNoteSub)
			}
		})
	}

	t.Run("degenerate", func(t *testing.T) {
		empty := AnalyzeRound(DemoRound{Name: "x"}, time.Second)
		if empty.StallSource != "" || empty.BeforeMBps >= 0 || len(empty.Notes) == 0 {
			t.Errorf("no samples: %+v", empty)
		}
		d := syntheticRound(time.Second, true)
		d.EventTime = time.Time{}
		if r := AnalyzeRound(d, time.Second); r.StallSource != "" || !strings.Contains(strings.Join(r.Notes, ""), "no event") {
			t.Errorf("no event: %+v", r)
		}
		// B was active before the event.
		d = syntheticRound(time.Second, true)
		for i := range d.Samples {
			d.Samples[i].Active = []string{d.Survivor}
		}
		if r := AnalyzeRound(d, time.Second); !strings.Contains(strings.Join(r.Notes, ""), "not the active target") {
			t.Errorf("B active before the event: notes %q", r.Notes)
		}
		// The event came after the copy and its sync had ended.
		d = syntheticRound(time.Second, true)
		d.SyncEnd = d.EventTime.Add(-2 * time.Second)
		if r := AnalyzeRound(d, time.Second); !strings.Contains(strings.Join(r.Notes, ""), "no I/O was in flight") {
			t.Errorf("event after the sync: notes %q", r.Notes)
		}
		if r := AnalyzeRound(syntheticRound(time.Second, true), time.Second); strings.Contains(strings.Join(r.Notes, ""), "no I/O was in flight") {
			t.Errorf("event during the copy: notes %q", r.Notes)
		}
		// I/O never resumes on the survivor.
		d = syntheticRound(time.Second, false)
		for i := range d.Samples {
			d.Samples[i].Active = []string{d.Failed}
		}
		if r := AnalyzeRound(d, time.Second); r.StallSource != "" || r.AfterMBps >= 0 {
			t.Errorf("never resumed: %+v", r)
		}
	})
}

func TestWriteRates(t *testing.T) {
	t0 := time.Unix(100, 0)
	samples := []TimelineSample{
		{Time: t0, PID: 1, BytesWritten: 0},
		{Time: t0.Add(time.Second), PID: 1, BytesWritten: 2e6},
		{Time: t0.Add(2 * time.Second), PID: 2, BytesWritten: 0}, // a new process: no rate across
		{Time: t0.Add(2500 * time.Millisecond), PID: 2, BytesWritten: 1e6},
	}
	got := WriteRates(samples)
	if len(got) != 2 || got[0].MBps != 2 || got[1].MBps != 2 || !got[0].Time.Equal(t0.Add(500*time.Millisecond)) {
		t.Errorf("WriteRates = %+v", got)
	}
}

func TestDemoReportOutputs(t *testing.T) {
	good := AnalyzeRound(syntheticRound(300*time.Millisecond, true), 2*time.Second)
	bad := good
	bad.Round.Name, bad.Round.Event, bad.Round.Intact, bad.Round.Corrupt = "bad", "migrate", 9, 1
	rep := &DemoReport{Window: 2 * time.Second, Rounds: []RoundResult{good, bad}}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| 10 x 1M | fence | standby | -s | - | 150 ms | 300 ms | 320 ms | 100 | 50 | 10/10 | 0 | B |",
		"| 10 x 1M | migrate | standby | -s | - | 150 ms | 300 ms | 320 ms | 100 | 50 | 9/10 | 1 | B |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	if rep.Intact() {
		t.Error("Intact() with a corrupt file")
	}
	if (&DemoReport{Rounds: []RoundResult{good}}).Intact() != true {
		t.Error("not Intact() with every file intact")
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil || !json.Valid(js.Bytes()) {
		t.Errorf("WriteJSON: %v", err)
	}

	// The plot's panel title.
	if got, want := bad.Summary(), "10 x 1M, migrate (standby, -s): stall 300 ms, 100 -> 50 MB/s, 9/10 intact, 1 CORRUPT"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
}
