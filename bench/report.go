package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Row pairs ironblade's and vblade's cells for one MTU, mode, operation
// and queue depth.
type Row struct {
	MTU        int    `json:"mtu"`
	Sync       bool   `json:"sync"`
	Op         string `json:"op"`
	QueueDepth int    `json:"queue_depth"`
	Ironblade  *Cell  `json:"ironblade,omitempty"`
	Vblade     *Cell  `json:"vblade,omitempty"`
	// Ratio is ironblade's throughput over vblade's; 0 when either
	// failed or vblade moved nothing.
	Ratio float64 `json:"ratio"`
}

// Rows pairs the report's cells, in the order they were measured.
func (r *Report) Rows() []Row {
	type key struct {
		mtu  int
		sync bool
		op   string
		qd   int
	}
	var rows []Row
	index := make(map[key]int)
	for i := range r.Cells {
		c := &r.Cells[i]
		k := key{c.MTU, c.Sync, c.Op, c.QueueDepth}
		j, ok := index[k]
		if !ok {
			j = len(rows)
			index[k] = j
			rows = append(rows, Row{MTU: c.MTU, Sync: c.Sync, Op: c.Op, QueueDepth: c.QueueDepth})
		}
		switch c.Target {
		case "ironblade":
			rows[j].Ironblade = c
		case "vblade":
			rows[j].Vblade = c
		}
	}
	for i := range rows {
		ib, vb := rows[i].Ironblade, rows[i].Vblade
		if ib != nil && vb != nil && ib.Error == "" && vb.Error == "" && vb.MBps > 0 {
			rows[i].Ratio = ib.MBps / vb.MBps
		}
	}
	return rows
}

// WriteJSON writes the report and its rows as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*Report
		Rows []Row `json:"rows"`
	}{r, r.Rows()})
}

// WriteMarkdown writes the conditions and a table of the rows, with the
// ratio ironblade/vblade, followed by any failures.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "ironblade vs vblade, same load generator, one veth pair between two network namespaces.\n\n")
	fmt.Fprintf(&b, "- Each cell: %s measured after %s of warm-up; random one-frame requests (2 sectors at MTU 1500, 17 at 9000)"+
		" kept at the queue depth; a request unanswered after max(%s, 2 x mean + 8 x deviation of the round trip)"+
		" is sent again.\n", r.CellTime, r.Warmup, r.MinTimeout)
	fmt.Fprintf(&b, "- Backing store: a fresh %d MiB sparse file per cell in %s (%s)", r.FileSize>>20, r.Dir, r.FileSystem)
	if r.FileSystem == "tmpfs" {
		b.WriteString(": WARNING, fdatasync is a no-op on tmpfs, so the -s figures mean nothing")
	} else {
		b.WriteString(", on disk, so -s syncs reach the device; reads hit unwritten blocks")
	}
	b.WriteString(".\n")
	fmt.Fprintf(&b, "- Kernel %s, %d CPUs shared by target and generator; load average %s at the start, %s at the end. %s; %s.\n",
		r.Kernel, r.CPUs, r.LoadBefore, r.LoadAfter, r.Ironblade, r.Vblade)
	b.WriteString("- MB/s is 10^6 bytes/s; latency is from a request's first transmission to its answer, " +
		"retransmissions included; retx counts requests sent again; CPU is the target process's CPU use in the " +
		"measured window (1.00 is one CPU busy throughout) and its CPU time per request.\n\n")
	b.WriteString("| MTU | -s | op | QD | ironblade MB/s | IOPS | p50 µs | p99 µs | retx | CPU | vblade MB/s | IOPS | p50 µs | p99 µs | retx | CPU | ratio |\n")
	b.WriteString("|---:|:--:|:--|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var failures []string
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
				failures = append(failures, c.summary())
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
	if len(failures) > 0 {
		b.WriteString("\nFailures:\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
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
