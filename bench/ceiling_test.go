package bench

import (
	"strings"
	"testing"
	"time"
)

// TestMeasureSyncCeiling measures a tiny ceiling in a temporary directory:
// every figure is there and positive, and the summary names them.
func TestMeasureSyncCeiling(t *testing.T) {
	c, err := MeasureSyncCeiling(t.TempDir(), 1<<20, 1500, 1024, []int{1, 4}, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if c.OSync <= 0 || len(c.Batches) != 2 || c.Best(1) <= 0 || c.Best(4) <= 0 || c.Best(16) != 0 {
		t.Fatalf("ceiling %+v: want positive rates for O_SYNC, 1 and 4 per sync only", c)
	}
	if s := c.summary(); !strings.Contains(s, "O_SYNC") || !strings.Contains(s, "4 per fdatasync") {
		t.Errorf("summary %q", s)
	}
	if _, err := MeasureSyncCeiling(t.TempDir(), 512, 1500, 1024, []int{1}, time.Millisecond); err == nil {
		t.Error("a file smaller than one write: no error")
	}
}

// TestMachineTimes reads /proc/stat: busy time never exceeds the total.
func TestMachineTimes(t *testing.T) {
	busy, total, err := machineTimes()
	if err != nil {
		t.Skipf("bench: no /proc/stat here: %v", err)
	}
	if total == 0 || busy > total {
		t.Errorf("busy %d of %d ticks", busy, total)
	}
}
