package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
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
		Ceilings: []SyncCeiling{{MTU: 1500, WriteBytes: 1024, OSync: 4000, Batches: []BatchRate{{1, 3000}, {16, 26000}}}},
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
		"| 1500 | no | write | 16 | 150.0 | 146484 | 100 | 300 | 0 | 0.50, 3.4 µs | 100.0 | 97656 | 150 | 400 | 7 |  | 1.50x |",
		"| 1500 | 1024 | 4000 | 16 | 26000 | 6.50x |",
		"| 9000 | yes | read | 1 | 10.0 |", "failed", "n/a |", "Failures:", "no response", "(ext4), on disk",
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

// TestCompare runs a tiny comparison of the real ironblade and vblade.
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
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Compare(ctx, CompareConfig{Ironblade: bin, Vblade: vblade, Dir: t.TempDir(), Size: 16 << 20,
		Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, QueueDepths: []int{8}, MTUs: []int{9000},
		Ops: []Op{Write}, SyncModes: []bool{true}, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	rows := rep.Rows()
	if len(rep.Cells) != 2 || len(rows) != 1 {
		t.Fatalf("%d cells, %d rows; want 2 and 1\n%s", len(rep.Cells), len(rows), progress.String())
	}
	for _, c := range rep.Cells {
		if c.Error != "" || c.IOPS <= 0 || c.SectorsPerFrame != 17 {
			t.Errorf("%s: %+v", c.Target, c)
		}
	}
	if rows[0].Ratio <= 0 {
		t.Errorf("no ratio: %+v", rows[0])
	}
	var md bytes.Buffer
	_ = rep.WriteMarkdown(&md)
	t.Logf("\n%s\n%s", progress.String(), md.String())
}
