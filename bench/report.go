package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// CellKey is what a cell measured, apart from the target: the cells of
// two targets under the same key make a row of a report.
type CellKey struct {
	MTU        int    `json:"mtu"`
	Sync       bool   `json:"sync"`
	Op         string `json:"op"`
	QueueDepth int    `json:"queue_depth"`
	Pinned     bool   `json:"pinned,omitempty"`
}

// key returns the cell's CellKey.
func (c *Cell) key() CellKey {
	return CellKey{MTU: c.MTU, Sync: c.Sync, Op: c.Op, QueueDepth: c.QueueDepth, Pinned: c.Pinned}
}

// Row pairs ironblade's and vblade's cells for one MTU, mode, operation,
// queue depth and pinning, with the ceilings to read them against.
type Row struct {
	CellKey
	Ironblade *Cell `json:"ironblade,omitempty"`
	Vblade    *Cell `json:"vblade,omitempty"`
	// Ceiling is the responder's cell of the same MTU, operation, queue
	// depth and pinning (measured without -s, which it has not): what the
	// link and the generator allow.
	Ceiling *Cell `json:"ceiling,omitempty"`
	// Ratio is ironblade's throughput over vblade's; 0 when either
	// failed or vblade moved nothing.
	Ratio float64 `json:"ratio"`
	// CPURatio is ironblade's CPU time per request over vblade's, of the
	// target processes: below 1, ironblade is the cheaper. 0 when either
	// lacks the figure.
	CPURatio float64 `json:"target_cpu_per_op_ratio,omitempty"`
	// IronbladeOfLink and VbladeOfLink are each target's IOPS over the
	// Ceiling's.
	IronbladeOfLink float64 `json:"ironblade_of_link_ceiling,omitempty"`
	VbladeOfLink    float64 `json:"vblade_of_link_ceiling,omitempty"`
	// DiskCeiling is, in a -s write row, the writes per second the disk
	// allows with as many writes per fdatasync as the queue depth (group
	// commit at its best, SyncCeiling), the median of the run's
	// measurements; IronbladeOfDisk and VbladeOfDisk are each target's
	// share of it: the median over its rounds of the round's IOPS over
	// the ceiling measured just before that round (Cell.DiskCeiling).
	DiskCeiling     float64 `json:"disk_ceiling_writes_per_s,omitempty"`
	IronbladeOfDisk float64 `json:"ironblade_of_disk_ceiling,omitempty"`
	VbladeOfDisk    float64 `json:"vblade_of_disk_ceiling,omitempty"`
	// LinkFloor is the Ceiling's CPU time per request over vblade's: the
	// lowest CPURatio a target could show that added nothing to what
	// receiving and answering a frame costs on this link, which every
	// target pays alike (on veth, the sender's CPU also delivers each
	// frame into the peer's socket). Set where CPURatio is, but for -s
	// writes, whose cost is the disk's, and at queue depth 1, where each
	// request wakes an idle CPU and the wake-up's cost, which depends on
	// timing more than on work, outweighs the frame's (the responder may
	// cost more than vblade there).
	LinkFloor float64 `json:"link_floor_cpu_ratio,omitempty"`
	// IronbladeOverLink and VbladeOverLink are each target's CPU time
	// per request above the Ceiling's, in µs: the target's own cost. A
	// figure below zero is noise, a target as cheap as the responder.
	// Set only where LinkFloor is.
	IronbladeOverLink float64 `json:"ironblade_cpu_over_link_us,omitempty"`
	VbladeOverLink    float64 `json:"vblade_cpu_over_link_us,omitempty"`
}

// OverLinkRatio is ironblade's CPU time per request above the link's
// over vblade's (ironblade's counted as zero if below the link's): which
// of the targets adds less of its own. It is 0 where unknown, or where
// vblade adds nothing measurable.
func (r Row) OverLinkRatio() float64 {
	if r.LinkFloor <= 0 || r.VbladeOverLink <= 0 {
		return 0
	}
	return max(r.IronbladeOverLink, 0) / r.VbladeOverLink
}

// Rows pairs the report's cells, in the order they were measured, and
// reads them against the ceilings.
func (r *Report) Rows() []Row {
	cells := r.cells()
	ceilings := make(map[CellKey]*Cell)
	for _, p := range pairCells(cells, TargetCeiling, "") {
		ceilings[p.CellKey] = p.a
	}
	var rows []Row
	for _, p := range pairCells(cells, "ironblade", "vblade") {
		row := Row{CellKey: p.CellKey, Ironblade: p.a, Vblade: p.b}
		ib, vb := okCell(p.a), okCell(p.b)
		if ib != nil && vb != nil && vb.MBps > 0 {
			row.Ratio = ib.MBps / vb.MBps
			row.CPURatio = ratio(ib.CPUPerOp().Seconds(), vb.CPUPerOp().Seconds())
		}
		link := p.CellKey
		link.Sync = false
		row.Ceiling = ceilings[link]
		syncWrites := row.Sync && row.Op == Write.String()
		if c := okCell(row.Ceiling); c != nil {
			row.IronbladeOfLink, row.VbladeOfLink = ratio(iops(ib), c.IOPS), ratio(iops(vb), c.IOPS)
			if linkCPU := c.CPUPerOp(); row.CPURatio > 0 && linkCPU > 0 && !syncWrites && row.QueueDepth > 1 {
				row.LinkFloor = ratio(linkCPU.Seconds(), vb.CPUPerOp().Seconds())
				row.IronbladeOverLink, row.VbladeOverLink = micros(ib.CPUPerOp()-linkCPU), micros(vb.CPUPerOp()-linkCPU)
			}
		}
		if syncWrites {
			row.DiskCeiling = r.diskCeiling(row.MTU, row.QueueDepth)
			row.IronbladeOfDisk, row.VbladeOfDisk = shareOfDisk(p.aRounds, row.DiskCeiling), shareOfDisk(p.bRounds, row.DiskCeiling)
		}
		rows = append(rows, row)
	}
	return rows
}

// shareOfDisk is the median, over a target's rounds of a -s write cell
// that did not fail, of each round's IOPS over the disk's ceiling
// measured just before it, or over ceiling (the median of all the run's
// measurements) for a cell from a report that has no ceiling of its own;
// 0 if none can be read so.
func shareOfDisk(rounds []*Cell, ceiling float64) float64 {
	var shares []float64
	for _, c := range rounds {
		if s := ratio(c.IOPS, cmp.Or(c.DiskCeiling, ceiling)); c.Error == "" && s > 0 {
			shares = append(shares, s)
		}
	}
	return median(shares)
}

// iops is c's IOPS, or 0 if c is nil.
func iops(c *Cell) float64 {
	if c == nil {
		return 0
	}
	return c.IOPS
}

// diskCeiling returns the disk's rate of writes made durable qd at a time
// at MTU mtu's frame size, or 0 if not measured.
func (r *Report) diskCeiling(mtu, qd int) float64 {
	for _, c := range r.Ceilings {
		if c.MTU == mtu {
			return c.Best(qd)
		}
	}
	return 0
}

// cells returns the report's cells, marked pinned if the report predates
// PinModes and says it pinned them all.
func (r *Report) cells() []Cell {
	if r.PinModes != nil || r.Pinning == "" {
		return r.Cells
	}
	cells := slices.Clone(r.Cells)
	for i := range cells {
		cells[i].Pinned = true
	}
	return cells
}

// pinModes returns the pinning modes of the report's cells, in the order
// measured.
func (r *Report) pinModes() []bool {
	var modes []bool
	for _, c := range r.cells() {
		if !slices.Contains(modes, c.Pinned) {
			modes = append(modes, c.Pinned)
		}
	}
	return modes
}

// cellPair is the cells of two targets, a and b, under one key; either
// may be missing.
type cellPair struct {
	CellKey
	a, b *Cell
	// aRounds and bRounds are every round of a's and b's.
	aRounds, bRounds []*Cell
}

// pairCells pairs the cells of targets a and b, in the order they were
// measured; cells of other targets are left out, and b may be "" to take
// a's cells alone. Of a target's rounds of
// a cell, the median by IOPS stands for it (the upper one of an even
// number), among those that did not fail if any.
func pairCells(cells []Cell, a, b string) []cellPair {
	var pairs []cellPair
	var rounds [][2][]*Cell
	index := make(map[CellKey]int)
	for i := range cells {
		c := &cells[i]
		if c.Target != a && c.Target != b {
			continue
		}
		k := c.key()
		j, ok := index[k]
		if !ok {
			j = len(pairs)
			index[k] = j
			pairs = append(pairs, cellPair{CellKey: k})
			rounds = append(rounds, [2][]*Cell{})
		}
		t := 0
		if c.Target != a {
			t = 1
		}
		rounds[j][t] = append(rounds[j][t], c)
	}
	for j := range pairs {
		pairs[j].a, pairs[j].b = medianCell(rounds[j][0]), medianCell(rounds[j][1])
		pairs[j].aRounds, pairs[j].bRounds = rounds[j][0], rounds[j][1]
	}
	return pairs
}

// medianCell returns the cell of median IOPS among those that did not
// fail, or the first if all failed, or nil if there are none.
func medianCell(cells []*Cell) *Cell {
	var ok []*Cell
	for _, c := range cells {
		if c.Error == "" {
			ok = append(ok, c)
		}
	}
	if len(ok) == 0 {
		if len(cells) == 0 {
			return nil
		}
		return cells[0]
	}
	slices.SortStableFunc(ok, func(x, y *Cell) int { return cmp.Compare(x.IOPS, y.IOPS) })
	return ok[len(ok)/2]
}

// WriteJSON writes the report and its rows as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	if r.Kind == KindAuth {
		return writeJSON(w, struct {
			*Report
			Rows []AuthRow `json:"auth_rows"`
		}{r, r.AuthRows()})
	}
	return writeJSON(w, struct {
		*Report
		Rows []Row `json:"rows"`
	}{r, r.Rows()})
}

// writeJSON writes v as indented JSON, as every report's WriteJSON does.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("bench: write JSON: %w", err)
	}
	return nil
}

// writeFailures lists the progress lines of the cells that failed, if
// any, under a heading: the end of every report's markdown.
func writeFailures(b *strings.Builder, failures []string) {
	if len(failures) == 0 {
		return
	}
	b.WriteString("\nFailures:\n")
	for _, f := range failures {
		fmt.Fprintf(b, "- %s\n", f)
	}
}

// WriteMarkdown writes the conditions, a table of the ratios ironblade
// over vblade and of each target's share of the ceilings, pinned and
// unpinned side by side, then for each pinning mode a table of every
// figure, followed by any failures (or, for a KindAuth report, its own
// tables of sealed against plain).
func (r *Report) WriteMarkdown(w io.Writer) error {
	if r.Kind == KindAuth {
		return r.writeAuthMarkdown(w)
	}
	var b strings.Builder
	rows := r.Rows()
	b.WriteString("ironblade vs vblade, same load generator, one veth pair between two network namespaces")
	if slices.ContainsFunc(rows, func(row Row) bool { return row.Ceiling != nil }) {
		b.WriteString("; the link ceiling is the same generator against `ironbench responder`, started and pinned as a " +
			"target is, which answers every request at once from memory, without storage")
	}
	b.WriteString(".\n\n")
	r.writeConditions(&b, "target and generator")
	b.WriteString("- MB/s is 10^6 bytes/s; latency is from a request's first transmission to its answer, " +
		"retransmissions included; retx counts requests sent again. CPU columns: CPU time per request in µs, and in " +
		"parentheses the CPUs kept busy in the measured window (1.00 is one CPU throughout), of the target process " +
		"and of the load generator (ironbench).\n")
	modes := r.pinModes()
	writeRatios(&b, rows, modes)
	writeOverLink(&b, rows)
	for _, pinned := range modes {
		r.writeModeTable(&b, rows, pinned)
	}
	writeCeilings(&b, r)
	writeFailures(&b, r.failures("ironblade", "vblade", TargetCeiling))
	_, err := io.WriteString(w, b.String())
	return err
}

// modeName names a pinning mode.
func modeName(pinned bool) string {
	if pinned {
		return "pinned"
	}
	return "unpinned"
}

// ratioLine is a line of the ratio table: the rows of one key, by
// pinning mode.
type ratioLine struct {
	key  CellKey // Pinned false
	rows map[bool]*Row
}

// ratioLines groups rows by their key without the pinning mode, in the
// order measured.
func ratioLines(rows []Row) []*ratioLine {
	var lines []*ratioLine
	index := make(map[CellKey]*ratioLine)
	for i := range rows {
		k := rows[i].CellKey
		k.Pinned = false
		l := index[k]
		if l == nil {
			l = &ratioLine{key: k, rows: make(map[bool]*Row)}
			index[k] = l
			lines = append(lines, l)
		}
		l.rows[rows[i].Pinned] = &rows[i]
	}
	return lines
}

// ratioFigure is a figure of the ratio table: its heading and how a row
// shows it.
type ratioFigure struct {
	head string
	cell func(*Row) string
}

// ratioFigures returns the figures of the ratio table: the ratios, and
// the shares of the ceilings if rows have any.
func ratioFigures(rows []Row) []ratioFigure {
	figures := []ratioFigure{
		{"IOPS ib/vb", func(r *Row) string { return times(r.Ratio) }},
		{"CPU/req ib/vb", func(r *Row) string { return times(r.CPURatio) }},
	}
	if slices.ContainsFunc(rows, func(r Row) bool { return r.Ceiling != nil || r.DiskCeiling > 0 }) {
		figures = append(figures,
			ratioFigure{"ironblade of ceiling", func(r *Row) string { return share(r.IronbladeOfLink, r.IronbladeOfDisk, r.DiskCeiling) }},
			ratioFigure{"vblade of ceiling", func(r *Row) string { return share(r.VbladeOfLink, r.VbladeOfDisk, r.DiskCeiling) }})
	}
	return figures
}

// writeRatios writes the table of ratios: for each MTU, mode, operation
// and queue depth, each figure's value in every pinning mode side by side.
func writeRatios(b *strings.Builder, rows []Row, modes []bool) {
	figures := ratioFigures(rows)
	b.WriteString("\nRatios: ib/vb is ironblade over vblade, IOPS (above 1, ironblade answers more) and the target's CPU " +
		"time per request (below 1, ironblade is cheaper). Each target's IOPS is also given as a share of its ceiling: " +
		"link, the responder's IOPS in the same cell; disk, for -s writes, the disk's rate with as many writes per " +
		"fdatasync as the queue depth (group commit at its best, in the disk table below), each round read against " +
		"the rate measured just before it and the median of the rounds given.\n\n")
	b.WriteString("| MTU | -s | op | QD |")
	rule := "|---:|:--:|:--|---:|"
	for _, f := range figures {
		for _, m := range modes {
			fmt.Fprintf(b, " %s, %s |", f.head, modeName(m))
			rule += "---:|"
		}
	}
	b.WriteString("\n" + rule + "\n")
	for _, l := range ratioLines(rows) {
		fmt.Fprintf(b, "| %d | %s | %s | %d |", l.key.MTU, yesNo(l.key.Sync), l.key.Op, l.key.QueueDepth)
		for _, f := range figures {
			for _, m := range modes {
				cell := "n/a"
				if row := l.rows[m]; row != nil {
					cell = f.cell(row)
				}
				fmt.Fprintf(b, " %s |", cell)
			}
		}
		b.WriteString("\n")
	}
}

// writeOverLink writes, for the rows read against a link ceiling, what
// each target's CPU time per request adds to the link's own, and the
// lowest CPU ratio to vblade the link leaves possible.
func writeOverLink(b *strings.Builder, rows []Row) {
	if !slices.ContainsFunc(rows, func(r Row) bool { return r.LinkFloor > 0 }) {
		return
	}
	b.WriteString("\nCPU time per request above the link's: every target pays what receiving and answering a frame " +
		"costs on this link, measured as the responder's CPU time per request (link µs); on veth the sender's CPU also " +
		"delivers each frame into the peer's socket. Above link is each target's CPU time per request less that, its " +
		"own cost; ib/vb compares those (ironblade's counted as 0 where below the link's, within the noise). Lowest " +
		"possible is the link's CPU time over vblade's: the CPU/req ib/vb of a target that added nothing to the link. " +
		"Not at queue depth 1, where each request wakes an idle CPU and that wake-up, not the frame, sets the cost.\n\n")
	b.WriteString("| MTU | -s | op | QD | pinning | link µs | ironblade above link µs | vblade above link µs | above link ib/vb | lowest possible CPU/req ib/vb |\n")
	b.WriteString("|---:|:--:|:--|---:|:--|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		if r.LinkFloor <= 0 {
			continue
		}
		above := "n/a"
		if r.VbladeOverLink > 0 {
			above = fmt.Sprintf("%.2fx", r.OverLinkRatio())
		}
		fmt.Fprintf(b, "| %d | %s | %s | %d | %s | %.2f | %.2f | %.2f | %s | %s |\n", r.MTU, yesNo(r.Sync), r.Op,
			r.QueueDepth, modeName(r.Pinned), micros(r.Ceiling.CPUPerOp()), r.IronbladeOverLink, r.VbladeOverLink,
			above, times(r.LinkFloor))
	}
}

// share formats a target's share of its ceiling: of the disk's, if the
// row has one, else of the link's.
func share(link, disk, diskCeiling float64) string {
	switch {
	case diskCeiling > 0 && disk > 0:
		return fmt.Sprintf("%.0f%% disk", 100*disk)
	case diskCeiling <= 0 && link > 0:
		return fmt.Sprintf("%.0f%% link", 100*link)
	}
	return "n/a"
}

// writeModeTable writes every figure of the rows of one pinning mode: a
// line for each target and for the ceiling.
func (r *Report) writeModeTable(b *strings.Builder, rows []Row, pinned bool) {
	where := fmt.Sprintf("target and generator wherever the scheduler puts them on the %d CPUs", r.CPUs)
	if pinned {
		where = cmp.Or(r.Pinning, "target and generator on CPUs of their own")
	}
	fmt.Fprintf(b, "\n%s (%s):\n\n", strings.ToUpper(modeName(pinned)[:1])+modeName(pinned)[1:], where)
	b.WriteString("| MTU | -s | op | QD | target | IOPS | MB/s | p50 µs | p99 µs | retx | target CPU | generator CPU | of ceiling | ib/vb |\n")
	b.WriteString("|---:|:--:|:--|---:|:--|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range rows {
		if row.Pinned != pinned {
			continue
		}
		key := fmt.Sprintf("| %d | %s | %s | %d |", row.MTU, yesNo(row.Sync), row.Op, row.QueueDepth)
		writeTargetLine(b, key, "ironblade", row.Ironblade, share(row.IronbladeOfLink, row.IronbladeOfDisk, row.DiskCeiling), times(row.Ratio))
		writeTargetLine(b, "| | | | |", "vblade", row.Vblade, share(row.VbladeOfLink, row.VbladeOfDisk, row.DiskCeiling), "")
		switch {
		case row.DiskCeiling > 0:
			fmt.Fprintf(b, "| | | | | disk ceiling | %.0f | %.1f | | | | | | | |\n", row.DiskCeiling,
				row.DiskCeiling*float64(r.ceilingWriteBytes(row.MTU))/1e6)
		case row.Ceiling != nil && !row.Sync:
			writeTargetLine(b, "| | | | |", "link ceiling", row.Ceiling, "", "")
		}
	}
}

// ceilingWriteBytes returns the write size of the disk's ceiling at MTU
// mtu, or 0.
func (r *Report) ceilingWriteBytes(mtu int) int {
	for _, c := range r.Ceilings {
		if c.MTU == mtu {
			return c.WriteBytes
		}
	}
	return 0
}

// writeTargetLine writes the figures of one target's cell after key.
func writeTargetLine(b *strings.Builder, key, name string, c *Cell, ofCeiling, vsVblade string) {
	switch {
	case c == nil:
		fmt.Fprintf(b, "%s %s | n/a | | | | | | | | | |\n", key, name)
	case c.Error != "":
		fmt.Fprintf(b, "%s %s | failed | | | | | | | | | |\n", key, name)
	default:
		fmt.Fprintf(b, "%s %s | %.0f | %.1f | %.0f | %.0f | %d | %s | %s | %s | %s |\n", key, name, c.IOPS, c.MBps,
			c.P50us, c.P99us, c.Retransmits,
			cpuPerOp(c, (*Cell).CPUPerOp, func(c *Cell) float64 { return c.TargetCPU }),
			cpuPerOp(c, (*Cell).GeneratorCPUPerOp, func(c *Cell) float64 { return c.GeneratorCPU }),
			ofCeiling, vsVblade)
	}
}

// failures returns the progress lines of the cells of targets that
// failed, every round's.
func (r *Report) failures(targets ...string) []string {
	var out []string
	for _, c := range r.Cells {
		if c.Error != "" && slices.Contains(targets, c.Target) {
			out = append(out, c.summary())
		}
	}
	return out
}

// writeConditions writes the bullets that say how the cells were
// measured and on what; shared names who shares the CPUs.
func (r *Report) writeConditions(b *strings.Builder, shared string) {
	fmt.Fprintf(b, "- Each cell: %s measured after %s of warm-up; random one-frame requests (2 sectors at MTU 1500, 17 at 9000)"+
		" kept at the queue depth; a request unanswered after max(%s, 2 x mean + 8 x deviation of the round trip)"+
		" is sent again", r.CellTime, r.Warmup, r.MinTimeout)
	if r.Repeat > 1 {
		fmt.Fprintf(b, "; %d rounds of each cell, the targets taking turns, and the tables show each target's median round by IOPS", r.Repeat)
	}
	b.WriteString(".\n")
	fmt.Fprintf(b, "- Backing store: a fresh %d MiB sparse file per cell in %s (%s)", r.FileSize>>20, r.Dir, r.FileSystem)
	if r.FileSystem == "tmpfs" {
		b.WriteString(": WARNING, fdatasync is a no-op on tmpfs, so the -s figures mean nothing")
	} else {
		b.WriteString(", on disk, so -s syncs reach the device")
		if r.ReadCache == "warm" {
			b.WriteString("; a read cell's file is read through once before its target starts, so that its (zeroed) " +
				"pages are in the page cache and reads measure the targets, not the page cache filling up (`--cold` " +
				"leaves it out); a write cell's is not, so writes fill the page cache as new data does")
		} else {
			b.WriteString("; reads hit unwritten blocks, not in the page cache")
		}
	}
	b.WriteString(".\n")
	cpus := fmt.Sprintf("%d CPUs shared by %s", r.CPUs, shared)
	if r.Pinning != "" {
		cpus = fmt.Sprintf("%d CPUs, %s", r.CPUs, r.Pinning)
		if slices.Contains(r.pinModes(), false) {
			cpus = fmt.Sprintf("%d CPUs: each cell pinned, %s (taskset for the target, sched_setaffinity for the "+
				"generator), then unpinned, shared by %s", r.CPUs, r.Pinning, shared)
		}
	}
	programs := r.Ironblade
	if r.Vblade != "" {
		programs += "; " + r.Vblade
	}
	if r.Responder != "" {
		programs += "; responder: " + r.Responder
	}
	fmt.Fprintf(b, "- Kernel %s, %s; load average %s at the start, %s at the end. %s.\n",
		r.Kernel, cpus, r.LoadBefore, r.LoadAfter, programs)
}

// writeCeilings writes the disk's ceilings for sync-before-ack writes and
// the best ratio to vblade -s they allow at each queue depth.
func writeCeilings(b *strings.Builder, r *Report) {
	if len(r.Ceilings) == 0 {
		return
	}
	b.WriteString("\nThe disk's ceiling for -s, measured without a network: one thread writing random one-frame blocks " +
		"to a fresh sparse file in " + r.Dir + ", either each with O_SYNC (as vblade -s does) or N at a time with one " +
		"fdatasync after each N (group commit at its best, every write in flight joining the next sync). No " +
		"sync-before-ack target can answer writes faster on this disk, so the last column bounds the -s write ratio. " +
		"N per fdatasync is measured before the cells and again before each round of the -s write cells with N in " +
		"flight; the table gives the median and the range. A -s write cell's share of the ceiling is read round by " +
		"round, each against the figure measured just before it, and is the median of those shares: it need not " +
		"equal the IOPS shown (the median round) over the disk ceiling line (the median of all figures).\n\n")
	b.WriteString("| MTU | write bytes | O_SYNC writes/s | writes per fdatasync | writes/s | best ratio |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Ceilings {
		for _, br := range c.Batches {
			ratio := "n/a"
			if c.OSync > 0 {
				ratio = fmt.Sprintf("%.2fx", br.PerSecond/c.OSync)
			}
			rate := fmt.Sprintf("%.0f", br.PerSecond)
			if len(br.Samples) > 1 {
				rate += fmt.Sprintf(" (%.0f-%.0f)", slices.Min(br.Samples), slices.Max(br.Samples))
			}
			fmt.Fprintf(b, "| %d | %d | %.0f | %d | %s | %s |\n", c.MTU, c.WriteBytes, c.OSync, br.Writes, rate, ratio)
		}
	}
}
