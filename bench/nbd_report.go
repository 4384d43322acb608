package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// NBDRow sets the NBD path of one MTU, target and operation against the
// raw generator. Each figure is the median of the rounds whose pass
// succeeded.
type NBDRow struct {
	MTU    int    `json:"mtu"`
	Target string `json:"target"`
	Op     string `json:"op"`
	// RawMBps is the raw figure at the queue depth whose median is best,
	// RawQueueDepth; 0 if no raw pass succeeded.
	RawMBps       float64 `json:"raw_mb_per_s"`
	RawQueueDepth int     `json:"raw_queue_depth,omitempty"`
	// NBDMBps is nbdcopy's figure; 0 if no NBD pass succeeded.
	NBDMBps float64 `json:"nbd_mb_per_s"`
	// Runs and Failed count the NBD passes that succeeded and failed.
	Runs   int `json:"runs"`
	Failed int `json:"failed,omitempty"`
	// Ratio is NBDMBps over RawMBps; 0 when either is missing.
	Ratio float64 `json:"ratio"`
}

// MeetsAim reports whether the row has a ratio of at least NBDAim.
func (r NBDRow) MeetsAim() bool { return r.Ratio >= NBDAim }

// Rows pairs the report's cells by MTU, target and operation, in the
// order they were measured.
func (r *NBDReport) Rows() []NBDRow {
	type key struct {
		mtu        int
		target, op string
	}
	type samples struct {
		raw    map[int][]float64 // by queue depth
		qds    []int             // in the order measured
		nbd    []float64
		failed int
	}
	var rows []NBDRow
	var all []*samples
	index := make(map[key]int)
	for _, c := range r.Cells {
		k := key{c.MTU, c.Target, c.Op}
		j, ok := index[k]
		if !ok {
			j = len(rows)
			index[k] = j
			rows = append(rows, NBDRow{MTU: c.MTU, Target: c.Target, Op: c.Op})
			all = append(all, &samples{raw: make(map[int][]float64)})
		}
		s := all[j]
		switch {
		case c.Path == PathNBD && c.Error != "":
			s.failed++
		case c.Path == PathNBD:
			s.nbd = append(s.nbd, c.MBps)
		case c.Path == PathRaw && c.Error == "":
			if _, seen := s.raw[c.QueueDepth]; !seen {
				s.qds = append(s.qds, c.QueueDepth)
			}
			s.raw[c.QueueDepth] = append(s.raw[c.QueueDepth], c.MBps)
		}
	}
	for j := range rows {
		row, s := &rows[j], all[j]
		for _, qd := range s.qds {
			if m := median(s.raw[qd]); m > row.RawMBps {
				row.RawMBps, row.RawQueueDepth = m, qd
			}
		}
		row.NBDMBps, row.Runs, row.Failed = median(s.nbd), len(s.nbd), s.failed
		if row.RawMBps > 0 && row.NBDMBps > 0 {
			row.Ratio = row.NBDMBps / row.RawMBps
		}
	}
	return rows
}

// median returns the median of v (the mean of the middle two if their
// number is even); 0 for none. It sorts v.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// WriteJSON writes the report and its rows as indented JSON.
func (r *NBDReport) WriteJSON(w io.Writer) error {
	return writeJSON(w, struct {
		*NBDReport
		Rows []NBDRow `json:"rows"`
	}{r, r.Rows()})
}

// WriteMarkdown writes the conditions, the table of rows with each ratio
// against NBDAim, every pass in detail and any failures.
func (r *NBDReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	r.writeConditions(&b)
	r.writeRows(&b)
	writeFailures(&b, r.writePasses(&b))
	_, err := io.WriteString(w, b.String())
	return err
}

// writeConditions writes the bullets that say how the passes were made
// and on what.
func (r *NBDReport) writeConditions(b *strings.Builder) {
	b.WriteString("nbdcopy through `ironaoe serve --unix` against the raw AoE load generator, same target, " +
		"one veth pair between two network namespaces.\n\n")
	fmt.Fprintf(b, "- Each pass moves the whole %d MiB export in address order. Raw: the generator writes "+
		"(ending with FLUSH CACHE) then reads it, one full frame per request, at each queue depth; the "+
		"fastest is the reference. Via NBD: `nbdcopy --flush SOURCE URI` in, `nbdcopy URI null:` out, "+
		"each through a fresh `ironaoe serve`, timed from nbdcopy's start to its exit; SOURCE is a random "+
		"file in %s. %d round(s), raw and NBD passes taking turns; figures are medians.\n",
		r.Size>>20, r.SourceDir, max(r.Repeat, 1))
	fmt.Fprintf(b, "- The target serves a file in %s (%s), written in full before the passes, and is started "+
		"afresh for each pass (the kernel keeps readahead state per open file). ", r.Dir, r.FileSystem)
	if r.Cache == "warm" {
		b.WriteString("Caches kept (warm): reads are served from the target's page cache, so they measure " +
			"the network path rather than the disk.\n")
	} else {
		b.WriteString("Before each pass its filesystem is synced and the page cache dropped (cold): reads " +
			"come from the disk, and a write of less than a page (MTU 1500: 1 KiB frames) reads the page first. " +
			"The target's page cache decides read speeds: run with --warm to see the network path alone.\n")
	}
	fmt.Fprintf(b, "- Kernel %s, %d CPUs shared by target, initiator and nbdcopy; load average %s at the start, %s at the end.\n",
		r.Kernel, r.CPUs, r.LoadBefore, r.LoadAfter)
	var progs []string
	for _, p := range []string{r.Ironaoe, r.Ironblade, r.Vblade, r.Nbdcopy} {
		if p != "" {
			progs = append(progs, p)
		}
	}
	fmt.Fprintf(b, "- %s. MB/s is 10^6 bytes/s. Aim: via NBD at least %.0f%% of raw.\n\n", strings.Join(progs, "; "), NBDAim*100)
}

// writeRows writes the table of rows: raw against via NBD, and the ratio
// against NBDAim.
func (r *NBDReport) writeRows(b *strings.Builder) {
	b.WriteString("| MTU | target | op | raw MB/s | raw QD | via NBD MB/s | ratio |\n")
	b.WriteString("|---:|:--|:--|---:|---:|---:|---:|\n")
	for _, row := range r.Rows() {
		fmt.Fprintf(b, "| %d | %s | %s |", row.MTU, row.Target, row.Op)
		if row.RawMBps > 0 {
			fmt.Fprintf(b, " %.1f | %d |", row.RawMBps, row.RawQueueDepth)
		} else {
			b.WriteString(" failed | |")
		}
		if row.NBDMBps > 0 {
			fmt.Fprintf(b, " %.1f |", row.NBDMBps)
		} else {
			b.WriteString(" failed |")
		}
		switch {
		case row.Ratio == 0:
			b.WriteString(" n/a |\n")
		case row.MeetsAim():
			fmt.Fprintf(b, " %.0f%% |\n", row.Ratio*100)
		default:
			fmt.Fprintf(b, " %.0f%% (below %.0f%%) |\n", row.Ratio*100, NBDAim*100)
		}
	}
}

// writePasses writes the table of every pass and returns the progress
// lines of those that failed.
func (r *NBDReport) writePasses(b *strings.Builder) (failures []string) {
	b.WriteString("\nEvery pass, with the CPU seconds it cost each program (approximate: the kernel charges the " +
		"veth pair's work to whichever runs):\n\n" +
		"| MTU | target | run | op | path | QD | s | MB/s | flush s | retx | CPU s target | initiator | nbdcopy |\n")
	b.WriteString("|---:|:--|---:|:--|:--|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Cells {
		qd := ""
		if c.Path == PathRaw {
			qd = fmt.Sprint(c.QueueDepth)
		}
		fmt.Fprintf(b, "| %d | %s | %d | %s | %s | %s |", c.MTU, c.Target, c.Run+1, c.Op, c.Path, qd)
		if c.Error != "" {
			b.WriteString(" failed | | | | | | |\n")
			failures = append(failures, c.summary())
			continue
		}
		fmt.Fprintf(b, " %.2f | %.1f |", c.Seconds, c.MBps)
		if c.FlushSeconds > 0 {
			fmt.Fprintf(b, " %.2f |", c.FlushSeconds)
		} else {
			b.WriteString(" |")
		}
		fmt.Fprintf(b, " %d | %.2f | %.2f |", c.Retransmits, c.TargetCPU, c.InitiatorCPU)
		if c.Path == PathNBD {
			fmt.Fprintf(b, " %.2f |\n", c.NbdcopyCPU)
		} else {
			b.WriteString(" |\n")
		}
	}
	return failures
}
