package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/internal/testenv"
)

// TestReport formats hand-made cells: pairs, ratio, failures.
func TestReport(t *testing.T) {
	rep := &Report{CellTime: "3s", Warmup: "300ms", MinTimeout: "10ms", Dir: "/var/tmp", FileSystem: "ext4", FileSize: 256 << 20,
		Kernel: "6.1", CPUs: 2, Ironblade: "ironblade version v1", Vblade: "vblade 25",
		Cells: []Cell{
			{Target: "ironblade", MTU: 1500, Op: "write", QueueDepth: 16, MBps: 150, IOPS: 146484, P50us: 100, P99us: 300,
				TargetCPU: 0.5},
			{Target: "vblade", MTU: 1500, Op: "write", QueueDepth: 16, MBps: 100, IOPS: 97656, P50us: 150, P99us: 400, Retransmits: 7},
			{Target: "ironblade", MTU: 9000, Sync: true, Op: "read", QueueDepth: 1, MBps: 10},
			{Target: "vblade", MTU: 9000, Sync: true, Op: "read", QueueDepth: 1, Error: "no response"},
		},
		Ceilings: []SyncCeiling{{MTU: 1500, WriteBytes: 1024, OSync: 4000, Batches: []BatchRate{{Writes: 1, PerSecond: 3000}, {Writes: 16, PerSecond: 26000}}}},
	}
	rows := rep.Rows()
	if len(rows) != 2 || rows[0].Ratio != 1.5 || rows[1].Ratio != 0 || rows[1].Vblade == nil || rows[1].Vblade.Error == "" {
		t.Fatalf("rows %+v: want 2, ratio 1.5 then none", rows)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| 1500 | no | write | 16 | 1.50x | n/a |\n",
		"| 1500 | no | write | 16 | ironblade | 146484 | 150.0 | 100 | 300 | 0 | 3.41 (0.50) | n/a | n/a | 1.50x |\n" +
			"| | | | | vblade | 97656 | 100.0 | 150 | 400 | 7 | n/a | n/a | n/a |  |\n",
		"| 1500 | 1024 | 4000 | 16 | 26000 | 6.50x |",
		"| 9000 | yes | read | 1 | ironblade | 0 | 10.0 |", "vblade | failed", "n/a |", "Failures:", "no response", "(ext4), on disk",
		"2 CPUs shared by target and generator", "Unpinned (target and generator wherever",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	rep.FileSystem = "tmpfs"
	md.Reset()
	_ = rep.WriteMarkdown(&md)
	if !strings.Contains(md.String(), "WARNING") {
		t.Errorf("a tmpfs report carries no warning:\n%s", md.String())
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Cells []Cell `json:"cells"`
		Rows  []Row  `json:"rows"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Cells) != 4 || len(back.Rows) != 2 || back.Rows[0].Ratio != 1.5 {
		t.Errorf("JSON round trip: %v, %+v\n%s", err, back, js.String())
	}
}

// pinnedReport is a hand-made report of a run measured pinned and
// unpinned, with the responder's ceiling and the disk's.
func pinnedReport() *Report {
	cell := func(target string, pinned, sync bool, iops, cpu float64) Cell {
		return Cell{Target: target, MTU: 1500, Sync: sync, Op: "write", QueueDepth: 16, Pinned: pinned, IOPS: iops,
			MBps: iops * 1024 / 1e6, TargetCPU: cpu, GeneratorCPU: 0.9}
	}
	return &Report{CellTime: "3s", Warmup: "300ms", MinTimeout: "10ms", Dir: "/var/tmp", FileSystem: "ext4", FileSize: 256 << 20,
		Kernel: "6.1", CPUs: 2, Ironblade: "ironblade version v1", Vblade: "vblade 25", Responder: "ironbench version v1",
		Pinning: "target on CPU 1, generator on CPU 0", PinModes: []bool{true, false},
		Cells: []Cell{
			cell("ironblade", true, false, 150000, 0.9), cell("vblade", true, false, 100000, 0.9), cell(TargetCeiling, true, false, 200000, 0.5),
			cell("ironblade", false, false, 110000, 0.8), cell("vblade", false, false, 100000, 0.9), cell(TargetCeiling, false, false, 150000, 0.5),
			cell("ironblade", true, true, 24700, 0.2), cell("vblade", true, true, 4000, 0.1),
			cell("ironblade", false, true, 26000, 0.2), {Target: "vblade", MTU: 1500, Sync: true, Op: "write", QueueDepth: 16, Error: "no response"},
		},
		Ceilings: []SyncCeiling{{MTU: 1500, WriteBytes: 1024, OSync: 4000, Batches: []BatchRate{{Writes: 1, PerSecond: 3000}, {Writes: 16, PerSecond: 26000}}}},
	}
}

// near reports whether a and b agree to 1e-6.
func near(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }

// TestReportPinnedCeiling reads pinned and unpinned cells against the
// ceilings: one row per pinning mode, the ratios, the shares of the link's
// ceiling and, for -s writes, of the disk's; and the tables that show them.
func TestReportPinnedCeiling(t *testing.T) {
	rep := pinnedReport()
	rows := rep.Rows()
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4: %+v", len(rows), rows)
	}
	pinned, unpinned, syncPinned, syncUnpinned := rows[0], rows[1], rows[2], rows[3]
	// Pinned: ironblade 0.9 CPU / 150000 IOPS = 6 µs a request, vblade 9 µs.
	if !pinned.Pinned || !near(pinned.Ratio, 1.5) || !near(pinned.CPURatio, 2.0/3) || pinned.Ceiling == nil ||
		pinned.Ceiling.IOPS != 200000 || pinned.IronbladeOfLink != 0.75 || pinned.VbladeOfLink != 0.5 || pinned.DiskCeiling != 0 {
		t.Errorf("pinned row %+v", pinned)
	}
	// The link costs 2.5 µs a request: ironblade adds 3.5 µs to it,
	// vblade 6.5 µs, and a target adding nothing would cost 2.5/9 of
	// vblade.
	if !near(pinned.LinkFloor, 2.5/9) || !near(pinned.IronbladeOverLink, 3.5) || !near(pinned.VbladeOverLink, 6.5) ||
		!near(pinned.OverLinkRatio(), 3.5/6.5) || syncPinned.LinkFloor != 0 || syncPinned.OverLinkRatio() != 0 {
		t.Errorf("CPU above the link: pinned row %+v, -s pinned row %+v", pinned, syncPinned)
	}
	if unpinned.Pinned || !near(unpinned.Ratio, 1.1) || unpinned.Ceiling.IOPS != 150000 || !near(unpinned.IronbladeOfLink, 11.0/15) {
		t.Errorf("unpinned row %+v", unpinned)
	}
	// -s writes: the link's ceiling is the cell's without -s; the disk's,
	// 26000 writes/s with 16 a sync.
	if !syncPinned.Pinned || syncPinned.Ceiling != pinned.Ceiling || syncPinned.DiskCeiling != 26000 ||
		!near(syncPinned.IronbladeOfDisk, 0.95) || !near(syncPinned.VbladeOfDisk, 4000.0/26000) {
		t.Errorf("-s pinned row %+v", syncPinned)
	}
	if syncUnpinned.IronbladeOfDisk != 1 || syncUnpinned.VbladeOfDisk != 0 || syncUnpinned.Ratio != 0 {
		t.Errorf("-s unpinned row %+v", syncUnpinned)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| MTU | -s | op | QD | IOPS ib/vb, pinned | IOPS ib/vb, unpinned | CPU/req ib/vb, pinned | CPU/req ib/vb, unpinned | " +
			"ironblade of ceiling, pinned | ironblade of ceiling, unpinned | vblade of ceiling, pinned | vblade of ceiling, unpinned |\n",
		"| 1500 | no | write | 16 | 1.50x | 1.10x | 0.67x | 0.81x | 75% link | 73% link | 50% link | 67% link |\n",
		"| 1500 | yes | write | 16 | 6.17x | n/a | 0.32x | n/a | 95% disk | 100% disk | 15% disk | n/a |\n",
		"| MTU | -s | op | QD | pinning | link µs | ironblade above link µs | vblade above link µs | above link ib/vb | lowest possible CPU/req ib/vb |\n",
		"| 1500 | no | write | 16 | pinned | 2.50 | 3.50 | 6.50 | 0.54x | 0.28x |\n",
		"| 1500 | no | write | 16 | unpinned | 3.33 | 3.94 | 5.67 | 0.70x | 0.37x |\n",
		"Pinned (target on CPU 1, generator on CPU 0):",
		"| 1500 | no | write | 16 | ironblade | 150000 | 153.6 | 0 | 0 | 0 | 6.00 (0.90) | 6.00 (0.90) | 75% link | 1.50x |\n",
		"| | | | | link ceiling | 200000 | 204.8 | 0 | 0 | 0 | 2.50 (0.50) | 4.50 (0.90) |  |  |\n",
		"| | | | | disk ceiling | 26000 | 26.6 |",
		"Unpinned (target and generator wherever the scheduler puts them on the 2 CPUs):",
		"each cell pinned, target on CPU 1, generator on CPU 0 (taskset for the target, sched_setaffinity for the generator), " +
			"then unpinned, shared by target and generator",
		"responder: ironbench version v1", "`ironbench responder`",
		"; reads hit unwritten blocks, not in the page cache.",
		"Failures:", "vblade    MTU 1500 -s write QD 16: FAILED: no response",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	// The JSON reads back to the same rows.
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if again := back.Rows(); len(again) != 4 || !again[0].Pinned || again[1].Pinned || again[2].IronbladeOfDisk != rows[2].IronbladeOfDisk {
		t.Errorf("rows read back: %+v", again)
	}
}

// TestReportBeforePinModes reads a report from before PinModes: all its
// cells were pinned if it names the CPUs, none if not.
func TestReportBeforePinModes(t *testing.T) {
	old := `{"pinning": "target on CPU 1, generator on CPU 0", "cpus": 2, "cells": [
		{"target": "ironblade", "mtu": 1500, "sync": false, "op": "read", "queue_depth": 16, "iops": 3000, "mb_per_s": 3},
		{"target": "vblade", "mtu": 1500, "sync": false, "op": "read", "queue_depth": 16, "iops": 2000, "mb_per_s": 2}]}`
	var rep Report
	if err := json.Unmarshal([]byte(old), &rep); err != nil {
		t.Fatal(err)
	}
	rows := rep.Rows()
	if len(rows) != 1 || !rows[0].Pinned || rows[0].Ratio != 1.5 || rep.Cells[0].Pinned {
		t.Fatalf("rows %+v: want one, pinned, ratio 1.5, the cells themselves untouched", rows)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if s := md.String(); !strings.Contains(s, "2 CPUs, target on CPU 1, generator on CPU 0;") || strings.Contains(s, "Unpinned") ||
		!strings.Contains(s, "| 1500 | no | read | 16 | 1.50x |") {
		t.Errorf("markdown of an old pinned report:\n%s", s)
	}
	rep.Pinning = ""
	if rows := rep.Rows(); rows[0].Pinned {
		t.Errorf("an old unpinned report's row is pinned: %+v", rows[0])
	}
}

// TestCellSummary formats progress lines: pinning, round, CPU per
// request.
func TestCellSummary(t *testing.T) {
	c := Cell{Target: "ironblade", MTU: 9000, Sync: true, Op: "write", QueueDepth: 16, Pinned: true, Round: 1,
		IOPS: 100000, MBps: 870.4, TargetCPU: 0.5, GeneratorCPU: 0.8}
	want := "ironblade MTU 9000 -s write QD 16 pinned round 2:    870.4 MB/s   100000 IOPS  p50      0 µs  p99       0 µs  " +
		"0 retransmits  CPU/req target 5.00 µs, generator 8.00 µs"
	if got := c.summary(); got != want {
		t.Errorf("summary\n%q, want\n%q", got, want)
	}
}

// TestCompare runs a tiny comparison of the real ironblade and vblade and
// the responder's ceiling, pinned and unpinned where the machine can pin.
func TestCompare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bench: Compare needs root (network namespaces, raw sockets)")
	}
	vblade, err := exec.LookPath("vblade")
	if err != nil {
		if _, serr := os.Stat(DefaultVblade); serr != nil {
			t.Skip("bench: needs vblade (Debian package vblade) to compare with")
		}
		vblade = DefaultVblade
	}
	bin := testenv.BuildBinary(t, "./cmd/ironblade")
	responder := testenv.BuildBinary(t, "./cmd/ironbench")
	modes, _ := DefaultPinModes()
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Compare(ctx, CompareConfig{Ironblade: bin, Vblade: vblade, Responder: responder, Dir: t.TempDir(), Size: 16 << 20,
		Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, QueueDepths: []int{8}, MTUs: []int{9000},
		Ops: []Op{Write}, SyncModes: []bool{false, true}, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	// Each mode: three targets without -s, two with (the responder has no
	// disk).
	rows := rep.Rows()
	if len(rep.Cells) != 5*len(modes) || len(rows) != 2*len(modes) || !slices.Equal(rep.PinModes, modes) {
		t.Fatalf("%d cells, %d rows, modes %v; want %d, %d, %v\n%s", len(rep.Cells), len(rows), rep.PinModes,
			5*len(modes), 2*len(modes), modes, progress.String())
	}
	for _, c := range rep.Cells {
		if c.Error != "" || c.IOPS <= 0 || c.SectorsPerFrame != 17 || c.TargetCPU <= 0 || c.GeneratorCPU <= 0 {
			t.Errorf("%s: %+v", c.Target, c)
		}
		// A -s write cell carries the disk's ceiling measured beside it.
		if (c.DiskCeiling > 0) != c.Sync {
			t.Errorf("%s -s %v: disk ceiling beside it %v", c.Target, c.Sync, c.DiskCeiling)
		}
	}
	for _, row := range rows {
		if row.Ratio <= 0 || row.Ceiling == nil || row.IronbladeOfLink <= 0 || row.VbladeOfLink <= 0 {
			t.Errorf("row without a ratio or a link ceiling: %+v", row)
		}
		if !row.Sync && row.LinkFloor <= 0 {
			t.Errorf("row without the link's floor: %+v", row)
		}
		if row.Sync && (row.DiskCeiling <= 0 || row.IronbladeOfDisk <= 0) {
			t.Errorf("-s row without the disk's ceiling: %+v", row)
		}
	}
	var md bytes.Buffer
	_ = rep.WriteMarkdown(&md)
	t.Logf("\n%s\n%s", progress.String(), md.String())
}

// TestOverLinkRatio compares what the targets add to the link's cost: a
// target cheaper than the responder (noise) adds nothing, and there is no
// ratio without a link figure or with vblade adding nothing.
func TestOverLinkRatio(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  Row
		want float64
	}{
		{"both above", Row{LinkFloor: 0.6, IronbladeOverLink: 1, VbladeOverLink: 4}, 0.25},
		{"ironblade below the link", Row{LinkFloor: 0.6, IronbladeOverLink: -0.1, VbladeOverLink: 2}, 0},
		{"vblade at the link", Row{LinkFloor: 1, IronbladeOverLink: 1, VbladeOverLink: 0}, 0},
		{"no link figure", Row{IronbladeOverLink: 1, VbladeOverLink: 2}, 0},
	} {
		if got := tc.row.OverLinkRatio(); !near(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestShareOfDisk reads each round of a -s write cell against the disk's
// ceiling measured just before it, and an older report's cells, which
// have none, against the run's median.
func TestShareOfDisk(t *testing.T) {
	round := func(iops, ceiling float64, failed bool) *Cell {
		c := &Cell{IOPS: iops, DiskCeiling: ceiling}
		if failed {
			c.Error = "no response"
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		rounds []*Cell
		want   float64
	}{
		// By IOPS the median round is 16000, 80% of the median ceiling;
		// against their own ceilings the rounds are at 75%, 100%, 100%.
		{"own ceilings", []*Cell{round(15000, 20000, false), round(18000, 18000, false), round(16000, 16000, false)}, 1},
		{"even count", []*Cell{round(15000, 20000, false), round(16000, 16000, false)}, 0.875},
		// A round can fail after its figures were taken (stopping the
		// target failed): left out all the same.
		{"failed round left out", []*Cell{round(15000, 20000, false), round(20000, 10000, true)}, 0.75},
		{"older report", []*Cell{round(10000, 0, false), round(15000, 0, false), round(20000, 0, false)}, 0.75},
		{"all failed", []*Cell{round(0, 20000, true)}, 0},
		{"no rounds", nil, 0},
	} {
		if got := shareOfDisk(tc.rounds, 20000); !near(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestNoLinkFloorAtDepthOne leaves the link's floor out at queue depth 1,
// where the wake-up of an idle CPU, not the frame, sets the cost.
func TestNoLinkFloorAtDepthOne(t *testing.T) {
	rep := pinnedReport()
	for i := range rep.Cells {
		rep.Cells[i].QueueDepth = 1
	}
	for _, row := range rep.Rows() {
		if row.Ceiling == nil || row.LinkFloor != 0 || row.IronbladeOverLink != 0 || row.OverLinkRatio() != 0 {
			t.Errorf("queue depth 1: %+v", row)
		}
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(md.String(), "above link") {
		t.Errorf("a table of the cost above the link at queue depth 1:\n%s", md.String())
	}
}

// TestReportReadCache says in the conditions how read cells found their
// files: read through first, out of the page cache, or, in a report from
// before the choice, out of it.
func TestReportReadCache(t *testing.T) {
	for _, tc := range []struct{ cache, want string }{
		{"warm", "a read cell's file is read through once before its target starts"},
		{"cold", "reads hit unwritten blocks, not in the page cache"},
		{"", "reads hit unwritten blocks, not in the page cache"},
	} {
		rep := pinnedReport()
		rep.ReadCache = tc.cache
		var md bytes.Buffer
		if err := rep.WriteMarkdown(&md); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(md.String(), tc.want) {
			t.Errorf("read cache %q: conditions lack %q:\n%s", tc.cache, tc.want, md.String())
		}
	}
	if readCache(true) != "cold" || readCache(false) != "warm" {
		t.Errorf("readCache: %q cold, %q warm", readCache(true), readCache(false))
	}
}
