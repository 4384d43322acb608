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
}

// key returns the cell's CellKey.
func (c *Cell) key() CellKey {
	return CellKey{MTU: c.MTU, Sync: c.Sync, Op: c.Op, QueueDepth: c.QueueDepth}
}

// Row pairs ironblade's and vblade's cells for one MTU, mode, operation
// and queue depth.
type Row struct {
	CellKey
	Ironblade *Cell `json:"ironblade,omitempty"`
	Vblade    *Cell `json:"vblade,omitempty"`
	// Ratio is ironblade's throughput over vblade's; 0 when either
	// failed or vblade moved nothing.
	Ratio float64 `json:"ratio"`
}

// Rows pairs the report's cells, in the order they were measured.
func (r *Report) Rows() []Row {
	var rows []Row
	for _, p := range pairCells(r.Cells, "ironblade", "vblade") {
		row := Row{CellKey: p.CellKey, Ironblade: p.a, Vblade: p.b}
		if ib, vb := p.a, p.b; ib != nil && vb != nil && ib.Error == "" && vb.Error == "" && vb.MBps > 0 {
			row.Ratio = ib.MBps / vb.MBps
		}
		rows = append(rows, row)
	}
	return rows
}

// cellPair is the cells of two targets, a and b, under one key; either
// may be missing.
type cellPair struct {
	CellKey
	a, b *Cell
}

// pairCells pairs the cells of targets a and b, in the order they were
// measured; cells of other targets are left out. Of a target's rounds of
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

// WriteMarkdown writes the conditions and a table of the rows, with the
// ratio ironblade/vblade (or, for a KindAuth report, sealed/plain),
// followed by any failures.
func (r *Report) WriteMarkdown(w io.Writer) error {
	if r.Kind == KindAuth {
		return r.writeAuthMarkdown(w)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ironblade vs vblade, same load generator, one veth pair between two network namespaces.\n\n")
	r.writeConditions(&b, "target and generator")
	b.WriteString("- MB/s is 10^6 bytes/s; latency is from a request's first transmission to its answer, " +
		"retransmissions included; retx counts requests sent again; CPU is the target process's CPU use in the " +
		"measured window (1.00 is one CPU busy throughout) and its CPU time per request.\n\n")
	b.WriteString("| MTU | -s | op | QD | ironblade MB/s | IOPS | p50 µs | p99 µs | retx | CPU | vblade MB/s | IOPS | p50 µs | p99 µs | retx | CPU | ratio |\n")
	b.WriteString("|---:|:--:|:--|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range r.Rows() {
		sync := "no"
		if row.Sync {
			sync = "yes"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %d |", row.MTU, sync, row.Op, row.QueueDepth)
		for _, c := range []*Cell{row.Ironblade, row.Vblade} {
			switch {
			case c == nil:
				b.WriteString(" | | | | | |")
			case c.Error != "":
				b.WriteString(" failed | | | | | |")
			default:
				fmt.Fprintf(&b, " %.1f | %.0f | %.0f | %.0f | %d | %s |", c.MBps, c.IOPS, c.P50us, c.P99us, c.Retransmits, cpuCell(c))
			}
		}
		if row.Ratio > 0 {
			fmt.Fprintf(&b, " %.2fx |\n", row.Ratio)
		} else {
			b.WriteString(" n/a |\n")
		}
	}
	writeCeilings(&b, r)
	writeFailures(&b, r.failures("ironblade", "vblade"))
	_, err := io.WriteString(w, b.String())
	return err
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
		b.WriteString(", on disk, so -s syncs reach the device; reads hit unwritten blocks")
	}
	b.WriteString(".\n")
	cpus := fmt.Sprintf("%d CPUs shared by %s", r.CPUs, shared)
	if r.Pinning != "" {
		cpus = fmt.Sprintf("%d CPUs, %s", r.CPUs, r.Pinning)
	}
	programs := r.Ironblade
	if r.Vblade != "" {
		programs += "; " + r.Vblade
	}
	fmt.Fprintf(b, "- Kernel %s, %s; load average %s at the start, %s at the end. %s.\n",
		r.Kernel, cpus, r.LoadBefore, r.LoadAfter, programs)
}

// cpuCell formats a cell's CPU use: CPUs kept busy and time per request.
func cpuCell(c *Cell) string {
	if c.TargetCPU <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2f, %.1f µs", c.TargetCPU, float64(c.CPUPerOp().Nanoseconds())/1e3)
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
		"sync-before-ack target can answer writes faster on this disk, so the last column bounds the -s write ratio.\n\n")
	b.WriteString("| MTU | write bytes | O_SYNC writes/s | writes per fdatasync | writes/s | best ratio |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Ceilings {
		for _, br := range c.Batches {
			ratio := "n/a"
			if c.OSync > 0 {
				ratio = fmt.Sprintf("%.2fx", br.PerSecond/c.OSync)
			}
			fmt.Fprintf(b, "| %d | %d | %.0f | %d | %.0f | %s |\n", c.MTU, c.WriteBytes, c.OSync, br.Writes, br.PerSecond, ratio)
		}
	}
}
