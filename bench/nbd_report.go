package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// NBDRow sets the NBD path of one MTU, target and operation against the
// fastest raw pass.
type NBDRow struct {
	MTU    int    `json:"mtu"`
	Target string `json:"target"`
	Op     string `json:"op"`
	// Raw is the fastest raw pass that succeeded (nil if none did); NBD
	// the nbdcopy pass.
	Raw *NBDCell `json:"raw,omitempty"`
	NBD *NBDCell `json:"nbd,omitempty"`
	// Ratio is the NBD throughput over the raw one; 0 when either is
	// missing or failed.
	Ratio float64 `json:"ratio"`
}

// MeetsAim reports whether the row has a ratio of at least NBDAim.
func (r NBDRow) MeetsAim() bool { return r.Ratio >= NBDAim }

// Rows pairs the report's cells, in the order they were measured.
func (r *NBDReport) Rows() []NBDRow {
	type key struct {
		mtu        int
		target, op string
	}
	var rows []NBDRow
	index := make(map[key]int)
	for i := range r.Cells {
		c := &r.Cells[i]
		k := key{c.MTU, c.Target, c.Op}
		j, ok := index[k]
		if !ok {
			j = len(rows)
			index[k] = j
			rows = append(rows, NBDRow{MTU: c.MTU, Target: c.Target, Op: c.Op})
		}
		row := &rows[j]
		switch {
		case c.Path == PathNBD:
			row.NBD = c
		case c.Path == PathRaw && c.Error == "" && (row.Raw == nil || c.MBps > row.Raw.MBps):
			row.Raw = c
		}
	}
	for i := range rows {
		raw, nbd := rows[i].Raw, rows[i].NBD
		if raw != nil && nbd != nil && nbd.Error == "" && raw.MBps > 0 {
			rows[i].Ratio = nbd.MBps / raw.MBps
		}
	}
	return rows
}

// WriteJSON writes the report and its rows as indented JSON.
func (r *NBDReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*NBDReport
		Rows []NBDRow `json:"rows"`
	}{r, r.Rows()})
}

// WriteMarkdown writes the conditions, the table of rows with each ratio
// against NBDAim, every pass in detail and any failures.
func (r *NBDReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("nbdcopy through `ironaoe serve --unix` against the raw AoE load generator, same target, " +
		"one veth pair between two network namespaces.\n\n")
	fmt.Fprintf(&b, "- Each pass moves the whole %d MiB export in address order. Raw: the generator writes "+
		"(ending with FLUSH CACHE) then reads it, one full frame per request, at each queue depth; the "+
		"fastest is the reference. Via NBD: `nbdcopy --flush SOURCE URI` in, `nbdcopy URI null:` out, "+
		"each through a fresh `ironaoe serve`, timed from nbdcopy's start to its exit; SOURCE is a random "+
		"file in %s.\n", r.Size>>20, r.SourceDir)
	fmt.Fprintf(&b, "- The target serves a file in %s (%s), written in full before the passes. ", r.Dir, r.FileSystem)
	if r.Cache == "warm" {
		b.WriteString("Caches kept (warm): reads are served from the target's page cache, so they measure " +
			"the network path rather than the disk.\n")
	} else {
		b.WriteString("Before each pass its filesystem is synced and the page cache dropped (cold): reads " +
			"come from the disk, and a write of less than a page (MTU 1500: 1 KiB frames) reads the page first. " +
			"The target's page cache decides read speeds: run with --warm to see the network path alone.\n")
	}
	fmt.Fprintf(&b, "- Kernel %s, %d CPUs shared by target, initiator and nbdcopy; load average %s at the start, %s at the end.\n",
		r.Kernel, r.CPUs, r.LoadBefore, r.LoadAfter)
	var progs []string
	for _, p := range []string{r.Ironaoe, r.Ironblade, r.Vblade, r.Nbdcopy} {
		if p != "" {
			progs = append(progs, p)
		}
	}
	fmt.Fprintf(&b, "- %s. MB/s is 10^6 bytes/s. Aim: via NBD at least %.0f%% of raw.\n\n", strings.Join(progs, "; "), NBDAim*100)

	b.WriteString("| MTU | target | op | raw MB/s | raw QD | via NBD MB/s | ratio |\n")
	b.WriteString("|---:|:--|:--|---:|---:|---:|---:|\n")
	for _, row := range r.Rows() {
		fmt.Fprintf(&b, "| %d | %s | %s |", row.MTU, row.Target, row.Op)
		if row.Raw != nil {
			fmt.Fprintf(&b, " %.1f | %d |", row.Raw.MBps, row.Raw.QueueDepth)
		} else {
			b.WriteString(" failed | |")
		}
		switch {
		case row.NBD == nil:
			b.WriteString(" |")
		case row.NBD.Error != "":
			b.WriteString(" failed |")
		default:
			fmt.Fprintf(&b, " %.1f |", row.NBD.MBps)
		}
		switch {
		case row.Ratio == 0:
			b.WriteString(" n/a |\n")
		case row.MeetsAim():
			fmt.Fprintf(&b, " %.0f%% |\n", row.Ratio*100)
		default:
			fmt.Fprintf(&b, " %.0f%% (below %.0f%%) |\n", row.Ratio*100, NBDAim*100)
		}
	}

	b.WriteString("\nEvery pass, with the CPU seconds it cost each program (approximate: the kernel charges the " +
		"veth pair's work to whichever runs):\n\n" +
		"| MTU | target | op | path | QD | s | MB/s | flush s | retx | CPU s target | initiator | nbdcopy |\n")
	b.WriteString("|---:|:--|:--|:--|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var failures []string
	for _, c := range r.Cells {
		qd := ""
		if c.Path == PathRaw {
			qd = fmt.Sprint(c.QueueDepth)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |", c.MTU, c.Target, c.Op, c.Path, qd)
		if c.Error != "" {
			b.WriteString(" failed | | | | | | |\n")
			failures = append(failures, c.summary())
			continue
		}
		fmt.Fprintf(&b, " %.2f | %.1f |", c.Seconds, c.MBps)
		if c.FlushSeconds > 0 {
			fmt.Fprintf(&b, " %.2f |", c.FlushSeconds)
		} else {
			b.WriteString(" |")
		}
		if c.Path == PathRaw {
			fmt.Fprintf(&b, " %d | %.2f | %.2f | |\n", c.Retransmits, c.TargetCPU, c.InitiatorCPU)
		} else {
			fmt.Fprintf(&b, " | %.2f | %.2f | %.2f |\n", c.TargetCPU, c.InitiatorCPU, c.NbdcopyCPU)
		}
	}
	if len(failures) > 0 {
		b.WriteString("\nFailures:\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
