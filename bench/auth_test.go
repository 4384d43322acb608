package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/internal/testenv"
)

// authReport is a hand-made report of a sealed-against-plain run, with
// rounds whose medians make the rows, and failures.
func authReport() *Report {
	return &Report{Kind: KindAuth, CellTime: "3s", Warmup: "300ms", MinTimeout: "10ms", Repeat: 3, Dir: "/var/tmp",
		FileSystem: "ext4", FileSize: 256 << 20, Kernel: "6.1", CPUs: 2, Ironblade: "ironblade version v1",
		Pinning: "target on CPU 1, generator on CPU 0", AuthKey: "a fresh 32-byte key, id 01020304",
		Cells: []Cell{
			// MTU 1500 read QD 16: plain 100000 (median of 90000, 100000,
			// 110000), sealed 95000 (median of 80000, 95000 and a failure).
			{Target: TargetPlain, MTU: 1500, Op: "read", QueueDepth: 16, IOPS: 90000, MBps: 92.2, TargetCPU: 0.9, GeneratorCPU: 0.9},
			{Target: TargetSealed, MTU: 1500, Op: "read", QueueDepth: 16, IOPS: 80000, MBps: 81.9, TargetCPU: 0.9, GeneratorCPU: 0.9},
			{Target: TargetSealed, MTU: 1500, Op: "read", QueueDepth: 16, Round: 1, Error: "no response"},
			{Target: TargetPlain, MTU: 1500, Op: "read", QueueDepth: 16, Round: 1, IOPS: 110000, MBps: 112.6, TargetCPU: 0.9, GeneratorCPU: 0.9},
			{Target: TargetPlain, MTU: 1500, Op: "read", QueueDepth: 16, Round: 2, IOPS: 100000, MBps: 102.4, P50us: 150, P99us: 400,
				TargetCPU: 0.5, GeneratorCPU: 0.6},
			{Target: TargetSealed, MTU: 1500, Op: "read", QueueDepth: 16, Round: 2, IOPS: 95000, MBps: 97.3, P50us: 160, P99us: 420,
				Retransmits: 3, TargetCPU: 0.57, GeneratorCPU: 0.76, Seal: &SealCounts{Handshakes: 1, FramesSealed: 5, FramesOpened: 5}},
			// MTU 1500 write QD 16: sealed loses 20%.
			{Target: TargetPlain, MTU: 1500, Op: "write", QueueDepth: 16, IOPS: 100000, MBps: 102.4, TargetCPU: 0.5, GeneratorCPU: 0.5},
			{Target: TargetSealed, MTU: 1500, Op: "write", QueueDepth: 16, IOPS: 80000, MBps: 81.9, TargetCPU: 0.5, GeneratorCPU: 0.5},
			// MTU 9000: plain failed.
			{Target: TargetPlain, MTU: 9000, Op: "read", QueueDepth: 1, Error: "target exited"},
			{Target: TargetSealed, MTU: 9000, Op: "read", QueueDepth: 1, IOPS: 5000, MBps: 43.5},
		},
	}
}

// TestAuthRows pairs the hand-made cells: medians of rounds, ratios.
func TestAuthRows(t *testing.T) {
	rows := authReport().AuthRows()
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3: %+v", len(rows), rows)
	}
	r := rows[0]
	if r.Plain == nil || r.Plain.IOPS != 100000 || r.Sealed == nil || r.Sealed.IOPS != 95000 || r.IOPSRatio != 0.95 {
		t.Errorf("row 0: %+v, want the medians 100000 and 95000, ratio 0.95", r)
	}
	// Plain: 0.5 CPU / 100000 IOPS = 5 µs a request; sealed 0.57 / 95000 = 6 µs.
	if d := r.TargetCPURatio - 1.2; d > 1e-6 || d < -1e-6 {
		t.Errorf("target CPU ratio %v, want 1.2", r.TargetCPURatio)
	}
	if got := r.Sealed.GeneratorCPUPerOp(); got < 8*time.Microsecond-time.Nanosecond || got > 8*time.Microsecond+time.Nanosecond {
		t.Errorf("sealed generator CPU per request %v, want 8µs", got)
	}
	if rows[1].IOPSRatio != 0.8 || rows[2].IOPSRatio != 0 || rows[2].Plain == nil || rows[2].Plain.Error == "" {
		t.Errorf("rows 1 and 2: %+v, %+v", rows[1], rows[2])
	}
}

// TestAuthReport formats the hand-made cells: the table, the aim,
// failures, and JSON that reads back to the same table.
func TestAuthReport(t *testing.T) {
	rep := authReport()
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| 1500 | read | 16 | 100000 | 95000 | 0.95x | 102.4 | 97.3 | 150 / 400 | 160 / 420 | 0 / 3 | 5.00 (0.50) | 6.00 (0.57) | +1.00, 1.20x | 6.00 (0.60) | 8.00 (0.76) | +2.00, 1.33x |\n",
		"| 9000 | read | 1 | n/a | 5000 | n/a |",
		"- read: sealed keeps 95.0% of the plain IOPS, costs 5.0%: met",
		"- write: sealed keeps 80.0% of the plain IOPS, costs 20.0%: MISSED",
		"3 rounds of each cell", "target on CPU 1, generator on CPU 0", "id 01020304",
		"Failures:", "round 2: FAILED: no response", "FAILED: target exited",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	if strings.Contains(md.String(), "vblade") || strings.Contains(md.String(), "| -s |") {
		t.Errorf("markdown of a run without vblade or -s mentions them:\n%s", md.String())
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Report
		Rows []AuthRow `json:"auth_rows"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Kind != KindAuth || len(back.Cells) != 10 ||
		len(back.Rows) != 3 || back.Rows[0].IOPSRatio != 0.95 || back.Cells[5].Seal == nil || back.Cells[5].Seal.FramesOpened != 5 {
		t.Errorf("JSON round trip: %v, %+v\n%s", err, back, js.String())
	}
	// What `ironbench report` does with the saved file: the same table.
	var again bytes.Buffer
	if err := back.Report.WriteMarkdown(&again); err != nil || again.String() != md.String() {
		t.Errorf("markdown of the JSON round trip differs (%v):\n%s", err, again.String())
	}
}

// TestNewKeyFile makes a key file ironblade accepts: private, 32 bytes.
func TestNewKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	k, err := newKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 || !k.Valid() {
		t.Fatalf("key file %v, %v; key %v", st.Mode(), err, k)
	}
	if again, err := seal.LoadKeyFile(path); err != nil || again.ID != k.ID {
		t.Errorf("reload: %v, %v", again, err)
	}
	if _, err := newKeyFile(path); err == nil {
		t.Error("newKeyFile overwrote a file")
	}
}

// TestCompareAuth runs a tiny sealed-against-plain comparison of the real
// ironblade.
func TestCompareAuth(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bench: CompareAuth needs root (network namespaces, raw sockets)")
	}
	bin := testenv.BuildBinary(t, "./cmd/ironblade")
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := CompareAuth(ctx, CompareConfig{Ironblade: bin, Dir: t.TempDir(), Size: 16 << 20,
		Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, QueueDepths: []int{8}, MTUs: []int{1500},
		Ops: []Op{Read}, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	rows := rep.AuthRows()
	if len(rep.Cells) != 2 || len(rows) != 1 || rep.Kind != KindAuth {
		t.Fatalf("%d cells, %d rows, kind %q; want 2, 1, auth\n%s", len(rep.Cells), len(rows), rep.Kind, progress.String())
	}
	for _, c := range rep.Cells {
		if c.Error != "" || c.IOPS <= 0 || c.SectorsPerFrame != 2 || c.Sync {
			t.Errorf("%s: %+v", c.Target, c)
		}
	}
	if s := rows[0].Sealed.Seal; s == nil || s.Handshakes == 0 || s.FramesOpened == 0 || rows[0].Plain.Seal != nil {
		t.Errorf("sealed cell's layer counters %+v, plain's %+v", s, rows[0].Plain.Seal)
	}
	if rows[0].IOPSRatio <= 0 {
		t.Errorf("no ratio: %+v", rows[0])
	}
	var md bytes.Buffer
	_ = rep.WriteMarkdown(&md)
	t.Logf("\n%s\n%s", progress.String(), md.String())
}
