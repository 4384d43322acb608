package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ironblade/ironblade/initiator"
)

// This file reads the failover demo's rounds (scripts/demo.sh writes one
// directory per round: round.env and timeline.jsonl) and computes, for
// each, the I/O stall and the throughput before and after the event.

// DemoRound is one round of the failover demo: a file set copied onto the
// device while its target was migrated or fenced (or left alone, for the
// baseline copy time), then checked.
type DemoRound struct {
	// Name is the round's directory name.
	Name string `json:"name"`
	// Set names the file set ("1M": 1 MiB files, and so on); Files and
	// Bytes are its size.
	Set   string `json:"set"`
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
	// Event is "migrate" (SIGTERM on A, then B takes over), "fence" (A
	// killed and its link cut, then B takes over) or "none" (no fault: the
	// copy time to compare the others with).
	Event string `json:"event"`
	// Target is the target program and whether it ran with -s: "vblade",
	// "vblade-s", "ironblade" or "ironblade-s". It is empty in rounds
	// written before the demo compared targets, which all ran ironblade:
	// TargetName derives the name from Sync then.
	Target string `json:"target,omitempty"`
	// Nodes is "vm" (qemu guests, each with its own kernel and page cache)
	// or "process" (processes on one host); Storage is "drbd", "shared" or
	// "file". Both are empty in older rounds.
	Nodes   string `json:"nodes,omitempty"`
	Storage string `json:"storage,omitempty"`
	// Repeat is which of the configuration's repeated fences this round
	// is (1..N, with --repeat N); 0 when not repeated.
	Repeat int `json:"repeat,omitempty"`
	// Mode is "standby" (B served the same store all along) or "cold" (B
	// was started only after the event).
	Mode string `json:"mode"`
	// Sync says the targets acknowledged writes only once durable (-s).
	Sync bool `json:"sync"`
	// Announce says B announced itself after the event (started, or
	// SIGUSR1); without it only the scorn timeout moves I/O.
	Announce     bool          `json:"announce"`
	ScornTimeout time.Duration `json:"scorn_timeout"`
	FenceDelay   time.Duration `json:"fence_delay"`
	VLAN         string        `json:"vlan,omitempty"`
	// Failed and Survivor are the MACs of node A and node B.
	Failed   string `json:"failed"`
	Survivor string `json:"survivor"`
	// CopyStart is when the copy began, EventTime when A was stopped or
	// fenced, AGoneTime when A's process had exited (or died), PromoteTime
	// when B was started or told to announce, CopyEnd when cp returned and
	// SyncEnd when the sync after it did.
	CopyStart   time.Time `json:"copy_start"`
	EventTime   time.Time `json:"event_time"`
	AGoneTime   time.Time `json:"node_a_gone_time"`
	PromoteTime time.Time `json:"promote_time"`
	CopyEnd     time.Time `json:"copy_end"`
	SyncEnd     time.Time `json:"sync_end"`
	// Intact and Corrupt count the files whose SHA-512 matched, or not
	// (missing or unreadable ones included), read through a fresh
	// initiator process; RemountIntact and RemountCorrupt after a
	// remount over the initiator that saw the event.
	Intact         int `json:"intact"`
	Corrupt        int `json:"corrupt"`
	RemountIntact  int `json:"remount_intact"`
	RemountCorrupt int `json:"remount_corrupt"`
	// RemountChecked says the remount check ran (round.env has its
	// counts; the VM nodes' demo skips it unless asked).
	RemountChecked bool `json:"remount_checked"`
	// Samples is the device's timeline during the copy.
	Samples []TimelineSample `json:"-"`
}

// ParseRoundEnv reads a round.env file: KEY=VALUE lines (blank lines and
// lines starting with # are skipped; unknown keys are ignored). Times are
// Unix seconds with a fraction, as `date +%s.%N` prints them; durations
// are Go durations ("500ms").
func ParseRoundEnv(r io.Reader) (DemoRound, error) {
	var d DemoRound
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, value, ok := strings.Cut(text, "=")
		if !ok {
			return d, fmt.Errorf("round.env line %d: want KEY=VALUE, got %q", line, text)
		}
		if err := d.set(strings.TrimSpace(key), strings.TrimSpace(value)); err != nil {
			return d, fmt.Errorf("round.env line %d: %s: %w", line, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return d, fmt.Errorf("round.env: %w", err)
	}
	return d, nil
}

// set assigns one round.env value.
func (d *DemoRound) set(key, value string) error {
	var err error
	switch key {
	case "name":
		d.Name = value
	case "set":
		d.Set = value
	case "event":
		d.Event, err = oneOf(value, "", EventMigrate, EventFence, EventNone)
	case "target":
		d.Target, err = oneOf(value, "", TargetVblade, TargetVbladeSync, TargetIronblade, TargetIronbladeSync)
	case "nodes":
		d.Nodes, err = oneOf(value, "", "vm", "process")
	case "storage":
		d.Storage, err = oneOf(value, "", "drbd", "shared", "file")
	case "repeat":
		d.Repeat, err = parseRepeat(value)
	case "mode":
		d.Mode = value
	case "vlan":
		d.VLAN = value
	case "node_a_mac":
		d.Failed = strings.ToLower(value)
	case "node_b_mac":
		d.Survivor = strings.ToLower(value)
	case "sync":
		d.Sync, err = strconv.ParseBool(value)
	case "announce":
		d.Announce, err = strconv.ParseBool(value)
	case "scorn_timeout":
		d.ScornTimeout, err = time.ParseDuration(value)
	case "fence_delay":
		d.FenceDelay, err = time.ParseDuration(value)
	case "files":
		d.Files, err = strconv.Atoi(value)
	case "bytes":
		d.Bytes, err = strconv.ParseInt(value, 10, 64)
	case "intact":
		d.Intact, err = strconv.Atoi(value)
	case "corrupt":
		d.Corrupt, err = strconv.Atoi(value)
	case "remount_intact":
		d.RemountIntact, err = strconv.Atoi(value)
		d.RemountChecked = true
	case "remount_corrupt":
		d.RemountCorrupt, err = strconv.Atoi(value)
		d.RemountChecked = true
	case "copy_start":
		d.CopyStart, err = parseUnixTime(value)
	case "event_time":
		d.EventTime, err = parseUnixTime(value)
	case "node_a_gone_time":
		d.AGoneTime, err = parseUnixTime(value)
	case "promote_time":
		d.PromoteTime, err = parseUnixTime(value)
	case "copy_end":
		d.CopyEnd, err = parseUnixTime(value)
	case "sync_end":
		d.SyncEnd, err = parseUnixTime(value)
	}
	return err
}

// oneOf returns value if it is one of valid, else an error listing them:
// a misspelt target or event would otherwise put a round in the wrong
// column of the verdict (a lost file excused as expected).
func oneOf(value string, valid ...string) (string, error) {
	if slices.Contains(valid, value) {
		return value, nil
	}
	var quoted []string
	for _, v := range valid {
		if v != "" {
			quoted = append(quoted, strconv.Quote(v))
		}
	}
	return "", fmt.Errorf("%q: want one of %s", value, strings.Join(quoted, ", "))
}

// parseRepeat reads a repetition index; empty is 0 (not repeated).
func parseRepeat(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: want a repetition index from 1 on", s)
	}
	return n, nil
}

// parseUnixTime reads seconds since the epoch with up to nine decimals
// ("1795559969.156580011"); an empty value is the zero time.
func parseUnixTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	whole, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || sec < 0 || len(frac) > 9 {
		return time.Time{}, fmt.Errorf("%q: want Unix seconds such as 1700000000.123456789", s)
	}
	var nsec int64
	if frac != "" {
		if nsec, err = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64); err != nil || nsec < 0 {
			return time.Time{}, fmt.Errorf("%q: want Unix seconds such as 1700000000.123456789", s)
		}
	}
	return time.Unix(sec, nsec), nil
}

// LoadDemoRound reads a round directory: round.env and, if present,
// timeline.jsonl.
func LoadDemoRound(dir string) (DemoRound, error) {
	f, err := os.Open(filepath.Join(dir, "round.env"))
	if err != nil {
		return DemoRound{}, fmt.Errorf("demo round: %w", err)
	}
	defer f.Close()
	d, err := ParseRoundEnv(f)
	if err != nil {
		return d, fmt.Errorf("demo round %s: %w", dir, err)
	}
	if d.Name == "" {
		d.Name = filepath.Base(dir)
	}
	tf, err := os.Open(filepath.Join(dir, "timeline.jsonl"))
	if os.IsNotExist(err) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("demo round: %w", err)
	}
	defer tf.Close()
	if d.Samples, err = ReadTimeline(tf); err != nil {
		return d, fmt.Errorf("demo round %s: %w", dir, err)
	}
	return d, nil
}

// RoundResult is what the demo reports of a round.
type RoundResult struct {
	Round DemoRound `json:"round"`
	// Stall is from the event to the first request the survivor
	// completed; StallSource says how it was found: "initiator" (the
	// initiator's "resumed" event), "sampled" (the first sample showing
	// more bytes written with the survivor active: an upper bound, to the
	// sampling interval) or "" (not found).
	Stall       time.Duration `json:"stall"`
	StallSource string        `json:"stall_source"`
	// Resumed is when I/O resumed on the survivor (zero if not found).
	Resumed time.Time `json:"resumed"`
	// InitiatorStall is the initiator's own measure: from when I/O on the
	// failed target stopped progressing (its last answer) to the first
	// completion afterwards; it may start before the event.
	InitiatorStall time.Duration `json:"initiator_stall"`
	// BeforeMBps and AfterMBps are the write throughput (10^6 bytes/s)
	// over the window before the event and after I/O resumed; negative
	// when the window was too short to tell.
	BeforeMBps float64 `json:"before_mbps"`
	AfterMBps  float64 `json:"after_mbps"`
	// SwitchedTo is the active target at the end of the copy.
	SwitchedTo string `json:"switched_to"`
	// IOErrors and LateWrites are the initiator's counts at the end of the
	// copy; both should be 0.
	IOErrors   uint64 `json:"io_errors"`
	LateWrites uint64 `json:"late_writes"`
	// Notes explain anything unusual, in words.
	Notes []string `json:"notes,omitempty"`
}

// minRateSpan is the shortest window a throughput is computed over.
const minRateSpan = 200 * time.Millisecond

// AnalyzeRound computes a round's stall and throughput; window is how long
// before the event and after the resumption throughput is averaged over.
func AnalyzeRound(d DemoRound, window time.Duration) RoundResult {
	res := RoundResult{Round: d, BeforeMBps: -1, AfterMBps: -1}
	samples := d.Samples
	if len(samples) == 0 {
		res.Notes = append(res.Notes, "no timeline samples")
		return res
	}
	last := samples[len(samples)-1]
	res.IOErrors, res.LateWrites = last.IOErrors, last.LateWrites
	if len(last.Active) > 0 {
		res.SwitchedTo = last.Active[0]
	}
	if d.Target != "" && d.Sync != strings.HasSuffix(d.Target, "-s") {
		res.Notes = append(res.Notes, fmt.Sprintf("round.env says sync=%v for target %s: judged as promising durability", d.Sync, d.Target))
	}
	switch {
	case d.Event == EventNone:
		// The baseline copy: there is no event to stall on, whatever
		// event_time says.
	case d.EventTime.IsZero():
		res.Notes = append(res.Notes, "no event happened")
		return res
	default:
		if !d.SyncEnd.IsZero() && d.EventTime.After(d.SyncEnd) {
			// Nothing was in flight: the round proves nothing about
			// writes lost or kept at the event.
			res.Notes = append(res.Notes, fmt.Sprintf("the %s came %v after the copy's sync had ended: no I/O was in flight",
				d.Event, d.EventTime.Sub(d.SyncEnd).Round(time.Millisecond)))
		}
		res.checkActiveAtEvent()
		res.findResumption()
		res.measureRates(window)
	}
	if res.LateWrites > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d late writes: a target executed writes after their fence expired", res.LateWrites))
	}
	if res.IOErrors > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d I/O errors", res.IOErrors))
	}
	return res
}

// checkActiveAtEvent notes when A was not the active target at the event:
// the event only tests a failover if A carried the I/O when it came.
func (res *RoundResult) checkActiveAtEvent() {
	d := &res.Round
	for i := len(d.Samples) - 1; i >= 0; i-- {
		if s := d.Samples[i]; !s.Time.After(d.EventTime) {
			if d.Failed != "" && !contains(s.Active, d.Failed) {
				res.Notes = append(res.Notes, fmt.Sprintf("A was not the active target when the event came (active: %s):"+
					" the initiator had failed over before, see the events in the timeline", strings.Join(s.Active, ", ")))
			}
			return
		}
	}
}

// findResumption finds when I/O resumed on the survivor after the event:
// the initiator's first "resumed" event on it, else the first sample that
// shows more written through it.
func (res *RoundResult) findResumption() {
	d := &res.Round
	for _, s := range d.Samples {
		for _, e := range s.Events {
			if e.Kind != initiator.EventResumed || e.Time.Before(d.EventTime) || !res.Resumed.IsZero() {
				continue
			}
			if d.Survivor != "" && !strings.EqualFold(e.Target, d.Survivor) {
				continue
			}
			res.Resumed, res.Stall, res.StallSource = e.Time, e.Time.Sub(d.EventTime), "initiator"
			res.InitiatorStall = e.Stall
		}
	}
	if !res.Resumed.IsZero() {
		return
	}
	if t, ok := firstGrowthOn(d.Samples, d.EventTime, d.Survivor); ok {
		res.Resumed, res.Stall, res.StallSource = t, t.Sub(d.EventTime), "sampled"
		res.Notes = append(res.Notes, "stall from 100 ms samples (no request was waiting when the target failed over)")
	} else {
		res.Notes = append(res.Notes, "I/O never resumed on the survivor during the copy")
	}
}

// measureRates averages the write throughput over window before the
// event (from the copy's start at the earliest) and after the resumption
// (to the last growth at the latest).
func (res *RoundResult) measureRates(window time.Duration) {
	d := &res.Round
	series := seriesOf(d.Samples, d.EventTime)
	from := d.EventTime.Add(-window)
	if !d.CopyStart.IsZero() && from.Before(d.CopyStart) {
		from = d.CopyStart
	}
	res.BeforeMBps = series.rate(from, d.EventTime)
	if !res.Resumed.IsZero() {
		end := res.Resumed.Add(window)
		if g := series.lastGrowth(); g.Before(end) {
			end = g
		}
		res.AfterMBps = series.rate(res.Resumed, end)
	}
}

// firstGrowthOn finds the first sample after t, taken with survivor active
// (any target if survivor is empty), that shows more bytes written than
// the sample before it.
func firstGrowthOn(samples []TimelineSample, t time.Time, survivor string) (time.Time, bool) {
	for i := 1; i < len(samples); i++ {
		s, prev := samples[i], samples[i-1]
		if !s.Time.After(t) || s.PID != prev.PID || s.BytesWritten <= prev.BytesWritten {
			continue
		}
		if survivor == "" || contains(s.Active, survivor) {
			return s.Time, true
		}
	}
	return time.Time{}, false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// byteSeries is the cumulative bytes written over time, from the samples
// of one process.
type byteSeries struct {
	times []time.Time
	bytes []float64
}

// seriesOf takes the samples of the process that was sampled at t (the
// first process if none was yet).
func seriesOf(samples []TimelineSample, t time.Time) byteSeries {
	pid := samples[0].PID
	for _, s := range samples {
		if s.Time.After(t) {
			break
		}
		pid = s.PID
	}
	var bs byteSeries
	for _, s := range samples {
		if s.PID == pid {
			bs.times = append(bs.times, s.Time)
			bs.bytes = append(bs.bytes, float64(s.BytesWritten))
		}
	}
	return bs
}

// at interpolates the bytes written at t; ok is false outside the series.
func (bs byteSeries) at(t time.Time) (float64, bool) {
	n := len(bs.times)
	if n == 0 || t.Before(bs.times[0]) || t.After(bs.times[n-1]) {
		return 0, false
	}
	for i := 1; i < n; i++ {
		if t.After(bs.times[i]) {
			continue
		}
		span := bs.times[i].Sub(bs.times[i-1])
		if span <= 0 {
			return bs.bytes[i], true
		}
		f := float64(t.Sub(bs.times[i-1])) / float64(span)
		return bs.bytes[i-1] + f*(bs.bytes[i]-bs.bytes[i-1]), true
	}
	return bs.bytes[0], true
}

// rate is the write throughput from a to b in 10^6 bytes per second, or -1
// if the span is too short or not covered by the series.
func (bs byteSeries) rate(a, b time.Time) float64 {
	if len(bs.times) == 0 {
		return -1
	}
	if a.Before(bs.times[0]) {
		a = bs.times[0]
	}
	if last := bs.times[len(bs.times)-1]; b.After(last) {
		b = last
	}
	if b.Sub(a) < minRateSpan {
		return -1
	}
	x, ok1 := bs.at(a)
	y, ok2 := bs.at(b)
	if !ok1 || !ok2 {
		return -1
	}
	return (y - x) / 1e6 / b.Sub(a).Seconds()
}

// lastGrowth is the time of the last sample that showed more bytes written
// than the one before.
func (bs byteSeries) lastGrowth() time.Time {
	for i := len(bs.times) - 1; i > 0; i-- {
		if bs.bytes[i] > bs.bytes[i-1] {
			return bs.times[i]
		}
	}
	if len(bs.times) > 0 {
		return bs.times[len(bs.times)-1]
	}
	return time.Time{}
}

// RatePoint is the write throughput between two samples, at their middle.
type RatePoint struct {
	Time time.Time
	MBps float64
}

// WriteRates turns samples into the write throughput between consecutive
// samples of the same process.
func WriteRates(samples []TimelineSample) []RatePoint {
	var out []RatePoint
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		span := b.Time.Sub(a.Time)
		if a.PID != b.PID || span <= 0 || b.BytesWritten < a.BytesWritten {
			continue
		}
		out = append(out, RatePoint{
			Time: a.Time.Add(span / 2),
			MBps: float64(b.BytesWritten-a.BytesWritten) / 1e6 / span.Seconds(),
		})
	}
	return out
}

// DemoReport is the demo's result: every round analyzed.
type DemoReport struct {
	// Window is the span throughput is averaged over before the event
	// and after the resumption.
	Window time.Duration `json:"window"`
	Rounds []RoundResult `json:"rounds"`
}

// Intact reports whether every file of every round was intact. It is a
// fact, not the run's verdict: files lost on fencing a target without -s
// are the result the demo expects to show (see Passed).
func (r *DemoReport) Intact() bool {
	for _, x := range r.Rounds {
		if x.Round.Corrupt > 0 || x.Round.RemountCorrupt > 0 || x.Round.Intact != x.Round.Files {
			return false
		}
	}
	return true
}

// WriteMarkdown writes the verdict; then, when the rounds compare target
// configurations, the comparison and the checks of what the demo expects;
// then the table of rounds and notes.
func (r *DemoReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	configs := r.Comparison()
	v := r.verdictOf(configs)
	writeVerdict(&b, v)
	if r.compares() {
		r.writeComparison(&b, configs, v)
		b.WriteString("\n## Rounds\n\n")
	}
	b.WriteString("| set | event | mode | target | A gone | B in | stall | initiator's stall | MB/s before | MB/s after | intact | corrupt | active after |\n")
	b.WriteString("|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	// The shell numbers every round (repeat=1 when not repeating): the
	// number is worth a place only where a configuration repeated an event.
	type repeated struct{ target, set, event string }
	times := make(map[repeated]int)
	for i := range r.Rounds {
		d := &r.Rounds[i].Round
		times[repeated{d.TargetName(), d.Set, d.Event}]++
	}
	for _, x := range r.Rounds {
		d := x.Round
		// Rounds without a target key all ran ironblade: their column
		// says only how it acknowledged, as it always did.
		acks := "async"
		if d.Sync {
			acks = "-s"
		}
		if d.Target != "" {
			acks = TargetLabel(d.Target)
		}
		mode := d.Mode
		if !d.Announce {
			mode += ", no announce"
		}
		if d.Event == EventFence && d.Announce && d.FenceDelay > 0 {
			mode += fmt.Sprintf(", fence delay %v", d.FenceDelay)
		}
		for _, m := range []string{d.Nodes, d.Storage} {
			if m != "" {
				mode += ", " + m
			}
		}
		event := d.Event
		if d.Repeat > 0 && times[repeated{d.TargetName(), d.Set, d.Event}] > 1 {
			event += fmt.Sprintf(" #%d", d.Repeat)
		}
		active := x.SwitchedTo
		switch {
		case active == "":
			active = "none"
		case strings.EqualFold(active, d.Survivor):
			active = "B"
		case strings.EqualFold(active, d.Failed):
			active = "A"
		}
		fmt.Fprintf(&b, "| %s x %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %d | %s |\n",
			countOf(d), d.Set, event, mode, acks, sinceEvent(d, d.AGoneTime), sinceEvent(d, d.PromoteTime),
			formatStall(x.Stall, x.StallSource), formatStall(x.InitiatorStall, "initiator"),
			formatRate(x.BeforeMBps), formatRate(x.AfterMBps), d.Intact, d.Files, d.Corrupt, active)
	}
	fmt.Fprintf(&b, "\n- target: the target program, -s when it acknowledged writes only once durable (async: without -s).\n")
	fmt.Fprintf(&b, "- A gone: when A's process had exited (SIGTERM) or died (SIGKILL waits for its I/O in progress),"+
		" after the event; B in: when B was started (cold) or told to announce itself (standby).\n")
	fmt.Fprintf(&b, "- stall: from the event (SIGTERM to A, or A's link cut and SIGKILL) to the first request"+
		" completed by B, from the initiator's failover log; ~ marks an upper bound from 100 ms samples.\n")
	fmt.Fprintf(&b, "- initiator's stall: the initiator's own measure, from A's last answer to that completion.\n")
	fmt.Fprintf(&b, "- MB/s: data written to the device (10^6 bytes/s), over %v before the event and %v after I/O resumed.\n", r.Window, r.Window)
	fmt.Fprintf(&b, "- intact/corrupt: SHA-512 of every file, read after a remount through a fresh ironaoe process and nbdfuse (caches dropped).\n")
	for _, x := range r.Rounds {
		d := x.Round
		if d.RemountChecked && (d.RemountCorrupt > 0 || d.RemountIntact != d.Intact) {
			x.Notes = append(x.Notes, fmt.Sprintf("remount over the same initiator: %d intact, %d corrupt", d.RemountIntact, d.RemountCorrupt))
		}
		for _, n := range x.Notes {
			fmt.Fprintf(&b, "- %s: %s\n", d.Name, n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Summary sums the round up in one line: files, event, mode, stall,
// throughput before and after, files intact (the title of its panel in
// the demo's plot).
func (x *RoundResult) Summary() string {
	d := &x.Round
	acks := "async acks"
	if d.Sync {
		acks = "-s"
	}
	if d.Target != "" {
		acks = TargetLabel(d.Target)
	}
	event := d.Event
	if d.Repeat > 1 {
		// Alone, a round cannot tell whether #1 was repeated.
		event += fmt.Sprintf(" #%d", d.Repeat)
	}
	s := fmt.Sprintf("%d x %s, %s (%s, %s)", d.Files, d.Set, event, d.Mode, acks)
	if x.StallSource != "" {
		s += ": stall " + formatStall(x.Stall, x.StallSource)
	}
	s += fmt.Sprintf(", %s -> %s MB/s, %d/%d intact", formatRate(x.BeforeMBps), formatRate(x.AfterMBps), d.Intact, d.Files)
	if d.Corrupt > 0 {
		s += fmt.Sprintf(", %d CORRUPT", d.Corrupt)
	}
	return s
}

// sinceEvent prints how long after the round's event t was, or "-".
func sinceEvent(d DemoRound, t time.Time) string {
	if t.IsZero() || d.EventTime.IsZero() || d.Event == EventNone {
		return "-"
	}
	return fmt.Sprintf("%d ms", t.Sub(d.EventTime).Milliseconds())
}

// countOf is "400" for a round of 400 files.
func countOf(d DemoRound) string { return strconv.Itoa(d.Files) }

// formatStall prints a stall in milliseconds, "~" marking a sampled bound.
func formatStall(d time.Duration, source string) string {
	switch {
	case source == "" || d <= 0:
		return "-"
	case source == "sampled":
		return fmt.Sprintf("~%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// formatRate prints MB/s, or "-" when unknown.
func formatRate(v float64) string {
	if v < 0 || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}
