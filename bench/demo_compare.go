package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// This file compares the failover demo's target configurations (vblade and
// ironblade, each with and without -s) over the same file set and the same
// fault, and decides the run's verdict: a configuration that promises
// durability must lose nothing, while losses on fencing a target without
// -s are the result the demo exists to show.

// The events of a demo round (round.env's event key).
const (
	// EventMigrate is a clean stop of the target on A, then B takes over.
	EventMigrate = "migrate"
	// EventFence is A killed and its link cut, then B takes over.
	EventFence = "fence"
	// EventNone is no fault at all: the copy time the others compare with.
	EventNone = "none"
)

// The target configurations the demo compares (round.env's target key):
// the target program, with "-s" when it acknowledged writes only once
// they were durable.
const (
	TargetVblade        = "vblade"
	TargetVbladeSync    = "vblade-s"
	TargetIronblade     = "ironblade"
	TargetIronbladeSync = "ironblade-s"
)

// SyncRatioLimit is the bound on ironblade -s: its copy within
// 1.5x of ironblade's time without -s (check "c").
const SyncRatioLimit = 1.5

// The statuses of a DemoCheck.
const (
	// CheckPass and CheckFail: a FAIL fails the run.
	CheckPass = "PASS"
	CheckFail = "FAIL"
	// CheckMiss is an expectation on speed that this run missed: shown,
	// not failing the run (one run on a shared machine is no proof of
	// slowness).
	CheckMiss = "MISS"
	// CheckShown and CheckNotShown say whether a loss that is expected
	// happened this time.
	CheckShown    = "SHOWN"
	CheckNotShown = "NOT SHOWN"
	// CheckInfo is a measure with no bound.
	CheckInfo = "INFO"
	// CheckNA is a check the run has no rounds for.
	CheckNA = "n/a"
)

// TargetName is the round's target configuration: Target, or, for rounds
// written before the demo compared targets (all of them ironblade),
// "ironblade-s" or "ironblade" after Sync.
func (d *DemoRound) TargetName() string {
	switch {
	case d.Target != "":
		return d.Target
	case d.Sync:
		return TargetIronbladeSync
	}
	return TargetIronblade
}

// Durable reports whether the round's target promised that what it
// acknowledged was durable: it ran with -s. Either key saying so is
// enough, so that a round.env contradicting itself is judged strictly.
func (d *DemoRound) Durable() bool {
	return d.Sync || strings.HasSuffix(d.TargetName(), "-s")
}

// CopyTime is from the start of the copy to the end of the sync after it;
// 0 when either is unknown.
func (d *DemoRound) CopyTime() time.Duration {
	if d.CopyStart.IsZero() || d.SyncEnd.IsZero() || d.SyncEnd.Before(d.CopyStart) {
		return 0
	}
	return d.SyncEnd.Sub(d.CopyStart)
}

// TargetLabel prints a target configuration as its command line reads:
// "vblade -s" for "vblade-s".
func TargetLabel(target string) string {
	if name, ok := strings.CutSuffix(target, "-s"); ok {
		return name + " -s"
	}
	return target
}

// DemoEventStats sums up one configuration's rounds of one event.
type DemoEventStats struct {
	// Rounds is how many rounds had the event.
	Rounds int `json:"rounds"`
	// Corrupt is how many files were corrupt or missing, read through a
	// fresh connection, over all those rounds; PerRound is each round's
	// count, in the order of the rounds; RemountCorrupt is the total read
	// over the initiator that saw the event.
	Corrupt        int   `json:"corrupt"`
	PerRound       []int `json:"corrupt_per_round"`
	RemountCorrupt int   `json:"remount_corrupt"`
	// Copy is the mean copy time of the rounds whose copy time is known
	// (0 if none is).
	Copy time.Duration `json:"copy"`
	// StallMean and StallMax are over the StallFound rounds whose stall
	// was found; StallSampled says that one of them is an upper bound
	// from samples.
	StallMean    time.Duration `json:"stall_mean"`
	StallMax     time.Duration `json:"stall_max"`
	StallFound   int           `json:"stall_found"`
	StallSampled bool          `json:"stall_sampled,omitempty"`
}

// CorruptPerRound is the mean number of corrupt files per round (per
// fence, for fences); 0 without rounds.
func (s *DemoEventStats) CorruptPerRound() float64 {
	if s.Rounds == 0 {
		return 0
	}
	return float64(s.Corrupt) / float64(s.Rounds)
}

// add counts one round in.
func (s *DemoEventStats) add(x *RoundResult, copySum *time.Duration, copies *int) {
	d := &x.Round
	s.Rounds++
	s.Corrupt += d.Corrupt
	s.RemountCorrupt += d.RemountCorrupt
	s.PerRound = append(s.PerRound, d.Corrupt)
	if c := d.CopyTime(); c > 0 {
		*copySum += c
		*copies++
	}
	if x.StallSource != "" && x.Stall > 0 {
		// StallMean holds the sum until finish divides it.
		s.StallMean += x.Stall
		s.StallMax = max(s.StallMax, x.Stall)
		s.StallFound++
		s.StallSampled = s.StallSampled || x.StallSource == "sampled"
	}
}

// finish turns the sums into means.
func (s *DemoEventStats) finish(copySum time.Duration, copies int) {
	if copies > 0 {
		s.Copy = copySum / time.Duration(copies)
	}
	if s.StallFound > 0 {
		s.StallMean /= time.Duration(s.StallFound)
	}
}

// DemoConfig is one target configuration's results over the rounds of one
// file set.
type DemoConfig struct {
	// Target is the configuration (see TargetName), Set the file set and
	// Files its number of files.
	Target string `json:"target"`
	Set    string `json:"set"`
	Files  int    `json:"files"`
	// Durable says the target ran with -s.
	Durable bool `json:"durable"`
	// Nodes and Storage are the modes its rounds ran in ("vm", "drbd"),
	// several joined by "/" if they differed.
	Nodes   string `json:"nodes,omitempty"`
	Storage string `json:"storage,omitempty"`
	// NoFault, Fence and Migrate sum up its rounds of each event.
	NoFault DemoEventStats `json:"no_fault"`
	Fence   DemoEventStats `json:"fence"`
	Migrate DemoEventStats `json:"migrate"`
	// Baseline is ironblade's no-fault copy time (without -s) of the same
	// set; the ratios are this configuration's copy times over it. Each is
	// 0 when unknown.
	Baseline     time.Duration `json:"baseline"`
	RatioNoFault float64       `json:"ratio_no_fault"`
	RatioFence   float64       `json:"ratio_fence"`
	RatioMigrate float64       `json:"ratio_migrate"`
}

// Label names the configuration in tables and plots: "vblade -s, 1M".
func (c *DemoConfig) Label() string { return TargetLabel(c.Target) + ", " + c.Set }

// Comparison groups the rounds by target configuration and file set, in
// the order first seen, and sums each group up.
func (r *DemoReport) Comparison() []DemoConfig {
	type key struct{ target, set string }
	index := make(map[key]int)
	var configs []DemoConfig
	var members [][]*RoundResult
	for i := range r.Rounds {
		d := &r.Rounds[i].Round
		k := key{d.TargetName(), d.Set}
		j, ok := index[k]
		if !ok {
			j = len(configs)
			index[k] = j
			configs = append(configs, DemoConfig{Target: k.target, Set: k.set, Files: d.Files})
			members = append(members, nil)
		}
		members[j] = append(members[j], &r.Rounds[i])
	}
	for j := range configs {
		configs[j].sum(members[j])
	}
	for j := range configs {
		c := &configs[j]
		if b, ok := index[key{TargetIronblade, c.Set}]; ok {
			c.Baseline = configs[b].NoFault.Copy
		}
		c.RatioNoFault = copyRatio(c.NoFault.Copy, c.Baseline)
		c.RatioFence = copyRatio(c.Fence.Copy, c.Baseline)
		c.RatioMigrate = copyRatio(c.Migrate.Copy, c.Baseline)
	}
	return configs
}

// sum fills a configuration's figures from its rounds.
func (c *DemoConfig) sum(rounds []*RoundResult) {
	var nodes, storage []string
	type acc struct {
		sum time.Duration
		n   int
	}
	var none, fence, migrate acc
	for _, x := range rounds {
		d := &x.Round
		c.Durable = c.Durable || d.Durable()
		nodes = appendNew(nodes, d.Nodes)
		storage = appendNew(storage, d.Storage)
		switch d.Event {
		case EventNone:
			c.NoFault.add(x, &none.sum, &none.n)
		case EventFence:
			c.Fence.add(x, &fence.sum, &fence.n)
		case EventMigrate:
			c.Migrate.add(x, &migrate.sum, &migrate.n)
		}
	}
	c.NoFault.finish(none.sum, none.n)
	c.Fence.finish(fence.sum, fence.n)
	c.Migrate.finish(migrate.sum, migrate.n)
	c.Nodes, c.Storage = strings.Join(nodes, "/"), strings.Join(storage, "/")
}

// appendNew appends s to list unless it is empty or there already.
func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	if s == "" {
		return list
	}
	return append(list, s)
}

// copyRatio is a over b, or 0 when either is unknown.
func copyRatio(a, b time.Duration) float64 { return ratio(float64(a), float64(b)) }

// DemoCheck is one of the expectations, checked on one
// configuration or one file set.
type DemoCheck struct {
	// ID is the expectation: "a" (targets without -s lose acknowledged
	// writes on fencing: shown, not failing), "b" (targets with -s lose
	// none: failing), "c" (ironblade -s copies within 1.5x of ironblade's
	// time: PASS or MISS, not failing), "d" (vblade -s's copy time over
	// ironblade -s's: a measure).
	ID string `json:"id"`
	// Subject is what was checked: "vblade, 1M", or a set.
	Subject string `json:"subject"`
	// What states the expectation, Status is one of the Check constants
	// and Detail gives the figures.
	What   string `json:"what"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// DemoVerdict is the run's verdict.
type DemoVerdict struct {
	// Pass is false if a round lost files where nothing may be lost: a
	// target with -s, a copy with no fault or a migration; or if a round's
	// check did not count every file. Files lost on fencing a target
	// without -s do not fail the run: showing them is the point.
	Pass bool `json:"pass"`
	// Failures says why it failed, one line per round.
	Failures []string `json:"failures,omitempty"`
	// ExpectedLoss is how many files fences of targets without -s lost.
	ExpectedLoss int `json:"expected_loss"`
	// Checks are the expectations.
	Checks []DemoCheck `json:"checks,omitempty"`
}

// Verdict judges the run (see DemoVerdict).
func (r *DemoReport) Verdict() DemoVerdict { return r.verdictOf(r.Comparison()) }

// Passed reports whether the run passed: no configuration that promises
// durability lost a file (see DemoVerdict.Pass). It decides the exit
// status of `ironbench plot`.
func (r *DemoReport) Passed() bool { return r.Verdict().Pass }

// verdictOf judges the run whose comparison is configs.
func (r *DemoReport) verdictOf(configs []DemoConfig) DemoVerdict {
	v := DemoVerdict{Pass: true}
	for i := range r.Rounds {
		d := &r.Rounds[i].Round
		if f := roundFailure(d); f != "" {
			v.Pass = false
			v.Failures = append(v.Failures, f)
		} else if !d.Durable() && d.Event == EventFence {
			v.ExpectedLoss += d.Corrupt
		}
	}
	v.Checks = checksOf(configs)
	return v
}

// roundFailure says why a round fails the run, or "" if it does not.
func roundFailure(d *DemoRound) string {
	lost := fmt.Sprintf("%s corrupt or missing through a fresh connection", plural(d.Corrupt, "file"))
	if d.RemountCorrupt > 0 {
		lost += fmt.Sprintf(", %d after a remount over the same initiator", d.RemountCorrupt)
	}
	what := fmt.Sprintf("%s (%s, %d x %s, %s)", d.Name, TargetLabel(d.TargetName()), d.Files, d.Set, d.Event)
	switch {
	case d.Files > 0 && d.Intact+d.Corrupt != d.Files:
		// Without a count of every file the round proves nothing either way.
		return fmt.Sprintf("%s: the check counted %d intact and %d corrupt of %d files", what, d.Intact, d.Corrupt, d.Files)
	case d.Corrupt == 0 && d.RemountCorrupt == 0:
		return ""
	case d.Durable():
		return fmt.Sprintf("%s: %s although the target ran with -s", what, lost)
	case d.Event == EventFence:
		return "" // the failure the demo shows: writes acknowledged but not yet durable
	case d.Event == EventNone:
		return fmt.Sprintf("%s: %s with no fault at all", what, lost)
	}
	// A migration, or an event this code does not know: only a fence of a
	// target without -s is excused.
	return fmt.Sprintf("%s: %s, and only a fence of a target without -s may lose files", what, lost)
}

// checksOf checks the expectations on the comparison.
func checksOf(configs []DemoConfig) []DemoCheck {
	var checks []DemoCheck
	for i := range configs {
		c := &configs[i]
		if c.Durable || c.Fence.Rounds == 0 {
			continue
		}
		ch := DemoCheck{ID: "a", Subject: c.Label(), What: "fencing a target without -s loses acknowledged writes",
			Status: CheckShown, Detail: fmt.Sprintf("lost %s in %s", plural(c.Fence.Corrupt, "file"), plural(c.Fence.Rounds, "fence"))}
		if c.Fence.Corrupt == 0 {
			ch.Status, ch.Detail = CheckNotShown, "no loss this time: the fence came when little was unsynced"
		}
		checks = append(checks, ch)
	}
	for i := range configs {
		c := &configs[i]
		if !c.Durable || c.Fence.Rounds == 0 {
			continue
		}
		ch := DemoCheck{ID: "b", Subject: c.Label(), What: "a target with -s loses no acknowledged write on fencing",
			Status: CheckPass, Detail: fmt.Sprintf("no file lost in %s", plural(c.Fence.Rounds, "fence"))}
		if c.Fence.Corrupt > 0 || c.Fence.RemountCorrupt > 0 {
			ch.Status = CheckFail
			ch.Detail = fmt.Sprintf("lost %s in %s", plural(c.Fence.Corrupt, "file"), plural(c.Fence.Rounds, "fence"))
			if c.Fence.RemountCorrupt > 0 {
				ch.Detail += fmt.Sprintf(" (%d after a remount over the same initiator)", c.Fence.RemountCorrupt)
			}
		}
		checks = append(checks, ch)
	}
	for _, set := range setsOf(configs) {
		ib, ibs, vbs := findConfig(configs, TargetIronblade, set), findConfig(configs, TargetIronbladeSync, set), findConfig(configs, TargetVbladeSync, set)
		if ib != nil || ibs != nil {
			checks = append(checks, ratioCheck("c", set, fmt.Sprintf("ironblade -s copies within %.1fx of ironblade's time", SyncRatioLimit),
				ibs, ib, SyncRatioLimit))
		}
		if vbs != nil || ibs != nil {
			checks = append(checks, ratioCheck("d", set, "vblade -s's copy time over ironblade -s's", vbs, ibs, 0))
		}
	}
	return checks
}

// ratioCheck compares the no-fault copy times of two configurations, num
// over den: PASS or MISS against limit, or INFO if limit is 0.
func ratioCheck(id, set, what string, num, den *DemoConfig, limit float64) DemoCheck {
	ch := DemoCheck{ID: id, Subject: set, What: what + ", no fault", Status: CheckNA}
	if num == nil || den == nil || num.NoFault.Copy <= 0 || den.NoFault.Copy <= 0 {
		ch.Detail = "needs a copy with no fault (event none) of both"
		return ch
	}
	r := copyRatio(num.NoFault.Copy, den.NoFault.Copy)
	ch.Detail = fmt.Sprintf("%s %s, %s %s: %.2fx", TargetLabel(num.Target), formatSecs(num.NoFault.Copy),
		TargetLabel(den.Target), formatSecs(den.NoFault.Copy), r)
	switch {
	case limit == 0:
		ch.Status = CheckInfo
	case r <= limit:
		ch.Status = CheckPass
	default:
		ch.Status = CheckMiss
	}
	return ch
}

// setsOf lists the file sets of configs in the order first seen.
func setsOf(configs []DemoConfig) []string {
	var sets []string
	for i := range configs {
		sets = appendNew(sets, configs[i].Set)
	}
	return sets
}

// findConfig returns the configuration of target over set, or nil.
func findConfig(configs []DemoConfig, target, set string) *DemoConfig {
	for i := range configs {
		if configs[i].Target == target && configs[i].Set == set {
			return &configs[i]
		}
	}
	return nil
}

// plural is "1 file", "3 files".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// compares reports whether the rounds compare target configurations (or
// measure the copy with no fault), so that the comparison is worth its
// table: rounds of one target with faults only are the old demo.
func (r *DemoReport) compares() bool {
	first := ""
	for i := range r.Rounds {
		d := &r.Rounds[i].Round
		if d.Target != "" || d.Event == EventNone {
			return true
		}
		if first == "" {
			first = d.TargetName()
		} else if d.TargetName() != first {
			return true
		}
	}
	return false
}

// writeVerdict writes the verdict line, and the failures under it.
func writeVerdict(b *strings.Builder, v DemoVerdict) {
	if v.Pass {
		b.WriteString("**Verdict: PASS**: no configuration that promises durability lost a file," +
			" and no file was lost with no fault or in a migration.")
		if v.ExpectedLoss > 0 {
			fmt.Fprintf(b, " The %s lost on fencing targets without -s are the expected result, not a failure.",
				plural(v.ExpectedLoss, "file"))
		}
		b.WriteString("\n\n")
		return
	}
	b.WriteString("**Verdict: FAIL**: files were corrupt or missing where nothing may be lost:\n\n")
	for _, f := range v.Failures {
		fmt.Fprintf(b, "- %s\n", f)
	}
	b.WriteString("\n")
}

// writeComparison writes the comparison table, the migrations' if any,
// and the checks.
func (r *DemoReport) writeComparison(b *strings.Builder, configs []DemoConfig, v DemoVerdict) {
	b.WriteString("## Comparison\n\n")
	var nodes, storage []string
	for i := range configs {
		nodes = appendNew(nodes, configs[i].Nodes)
		storage = appendNew(storage, configs[i].Storage)
	}
	if len(nodes) > 0 || len(storage) > 0 {
		fmt.Fprintf(b, "Nodes: %s; storage: %s.\n\n", orDash(strings.Join(nodes, ", ")), orDash(strings.Join(storage, ", ")))
	}
	b.WriteString("| target | set | copy, no fault | vs ironblade | copy, fenced | vs ironblade | fences | corrupt | corrupt per fence | stall, mean | stall, max |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	migrations := false
	for i := range configs {
		c := &configs[i]
		f := &c.Fence
		migrations = migrations || c.Migrate.Rounds > 0
		fmt.Fprintf(b, "| %s | %d x %s | %s | %s | %s | %s | %d | %s | %s | %s | %s |\n",
			TargetLabel(c.Target), c.Files, c.Set, formatSecs(c.NoFault.Copy), formatRatio(c.RatioNoFault),
			formatSecs(f.Copy), formatRatio(c.RatioFence), f.Rounds, countOrDash(f.Corrupt, f.Rounds),
			formatPerRound(f), formatStallStat(f, f.StallMean), formatStallStat(f, f.StallMax))
	}
	b.WriteString("\n- copy: from the start of cp to the end of the sync after it; no fault: the mean of the copies with no fault;" +
		" fenced: the mean of the copies during which A was fenced.\n")
	b.WriteString("- vs ironblade: the copy time over ironblade's (without -s) copy time with no fault, same set.\n")
	b.WriteString("- corrupt: files whose SHA-512 did not match (or missing) after the fence, read through a fresh connection" +
		" with caches dropped; per fence: the mean, then each fence's count.\n")
	b.WriteString("- stall: from the fence to the first request completed by B, mean and max over the fences" +
		" (~: an upper bound from 100 ms samples; \"k of n\": found in k fences only).\n")
	if migrations {
		b.WriteString("\n| target | set | migrations | copy, migrated | vs ironblade | corrupt | stall, mean | stall, max |\n")
		b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|\n")
		for i := range configs {
			c := &configs[i]
			m := &c.Migrate
			if m.Rounds == 0 {
				continue
			}
			fmt.Fprintf(b, "| %s | %d x %s | %d | %s | %s | %d | %s | %s |\n", TargetLabel(c.Target), c.Files, c.Set,
				m.Rounds, formatSecs(m.Copy), formatRatio(c.RatioMigrate), m.Corrupt,
				formatStallStat(m, m.StallMean), formatStallStat(m, m.StallMax))
		}
	}
	if len(v.Checks) == 0 {
		return
	}
	b.WriteString("\n### What the demo expects\n\n")
	for _, ch := range v.Checks {
		fmt.Fprintf(b, "- (%s) %s: %s: **%s**: %s.\n", ch.ID, ch.Subject, ch.What, ch.Status, ch.Detail)
	}
	b.WriteString("\n(a) and (d) are shown, (c) is PASS or MISS without failing the run; a FAIL in (b) fails it.\n")
}

// orDash is s, or "-" if s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// formatSecs prints a copy time in seconds, or "-" when unknown.
func formatSecs(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// formatRatio prints a ratio as "1.17x", or "-" when unknown.
func formatRatio(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r)
}

// countOrDash prints n, or "-" when there were no rounds to count in.
func countOrDash(n, rounds int) string {
	if rounds == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// formatPerRound prints the corrupt files per round: "2" for one round,
// "1.5 (3, 0)" for several.
func formatPerRound(s *DemoEventStats) string {
	switch s.Rounds {
	case 0:
		return "-"
	case 1:
		return fmt.Sprint(s.Corrupt)
	}
	each := make([]string, len(s.PerRound))
	for i, n := range s.PerRound {
		each[i] = fmt.Sprint(n)
	}
	return fmt.Sprintf("%.1f (%s)", s.CorruptPerRound(), strings.Join(each, ", "))
}

// formatStallStat prints a stall over rounds in milliseconds: "~" if one
// was sampled, "k of n" if not found in every round.
func formatStallStat(s *DemoEventStats, d time.Duration) string {
	if s.StallFound == 0 {
		return "-"
	}
	out := fmt.Sprintf("%d ms", d.Milliseconds())
	if s.StallSampled {
		out = "~" + out
	}
	if s.StallFound < s.Rounds {
		out += fmt.Sprintf(" (%d of %d)", s.StallFound, s.Rounds)
	}
	return out
}

// demoJSON is the report as WriteJSON writes it: the rounds with the
// comparison and the verdict.
type demoJSON struct {
	*DemoReport
	Comparison []DemoConfig `json:"comparison"`
	Verdict    DemoVerdict  `json:"verdict"`
}

// WriteJSON writes the report as indented JSON: the window, the rounds,
// the comparison of configurations and the verdict.
func (r *DemoReport) WriteJSON(w io.Writer) error {
	configs := r.Comparison()
	return writeJSON(w, demoJSON{DemoReport: r, Comparison: configs, Verdict: r.verdictOf(configs)})
}
