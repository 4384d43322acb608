package bench

import (
	"slices"
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

// TestBatchRateSamples checks that a ceiling measured again beside the
// cells reports the median of every measurement, not the first one.
func TestBatchRateSamples(t *testing.T) {
	c := SyncCeiling{Batches: []BatchRate{{Writes: 1}, {Writes: 16}}}
	if c.batch(64) != nil {
		t.Error("found a batch size never measured")
	}
	b := c.batch(16)
	for _, tc := range []struct{ add, want float64 }{{21000, 21000}, {11500, 16250}, {19000, 19000}} {
		b.add(tc.add)
		if b.PerSecond != tc.want {
			t.Errorf("after %v: %v writes/s, want the median %v", b.Samples, b.PerSecond, tc.want)
		}
	}
	if got := c.Best(16); got != 19000 {
		t.Errorf("Best(16) = %v, want 19000", got)
	}
	if !slices.Equal(b.Samples, []float64{21000, 11500, 19000}) {
		t.Errorf("samples reordered: %v", b.Samples)
	}
}
