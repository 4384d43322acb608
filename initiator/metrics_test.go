package initiator

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ironblade/ironblade/aoe/aoetest"
)

func TestLatencyHistogramBuckets(t *testing.T) {
	var h latencyHistogram
	for _, d := range []time.Duration{0, 50 * time.Microsecond, 51 * time.Microsecond, time.Millisecond, 10 * time.Second, time.Minute} {
		h.observe(d)
	}
	s := h.snapshot(opWrite)
	if s.Op != "write" || s.Count != 6 {
		t.Fatalf("op %q count %d, want write 6", s.Op, s.Count)
	}
	if want := 50*time.Microsecond + 51*time.Microsecond + time.Millisecond + 10*time.Second + time.Minute; s.Sum != want {
		t.Errorf("sum %v, want %v", s.Sum, want)
	}
	want := map[time.Duration]uint64{
		50 * time.Microsecond:  2, // 0 and 50 us: bounds are inclusive
		100 * time.Microsecond: 3,
		time.Millisecond:       4,
		5 * time.Second:        4,
		10 * time.Second:       5, // the minute is only in Count (+Inf)
	}
	prev := uint64(0)
	for _, b := range s.Buckets {
		if b.Count < prev {
			t.Errorf("bucket le=%v: %d below the previous %d: not cumulative", b.UpperBound, b.Count, prev)
		}
		prev = b.Count
		if n, ok := want[b.UpperBound]; ok && b.Count != n {
			t.Errorf("bucket le=%v: %d, want %d", b.UpperBound, b.Count, n)
		}
	}
}

// TestCollector does I/O and checks that the collector's metrics, through
// a pedantic registry (which checks them for consistency), count it.
func TestCollector(t *testing.T) {
	_, _, d := oneTarget(t, aoetest.NewMemDisk(testDiskSize), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	buf := make([]byte, 8192)
	for range 3 {
		if err := d.WriteAt(ctx, buf, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := d.ReadAt(ctx, buf, 4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(d.ini.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		var sum float64
		found := false
	next:
		for _, m := range byName[name].GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, lp := range m.GetLabel() {
					ok = ok || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !ok {
					continue next
				}
			}
			found = true
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
		if !found {
			t.Errorf("no %s%v", name, labels)
		}
		return sum
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ironaoe_device_requests_total", []string{"device", "e1.0", "op", "write"}, 3},
		{"ironaoe_device_requests_total", []string{"device", "e1.0", "op", "read"}, 2},
		{"ironaoe_device_requests_total", []string{"device", "e1.0", "op", "flush"}, 1},
		{"ironaoe_device_request_duration_seconds", []string{"device", "e1.0", "op", "write"}, 3},
		{"ironaoe_device_request_duration_seconds", []string{"device", "e1.0", "op", "read"}, 2},
		{"ironaoe_device_request_duration_seconds", []string{"device", "e1.0", "op", "flush"}, 1},
		{"ironaoe_device_written_bytes_total", []string{"device", "e1.0"}, 3 * 8192},
		{"ironaoe_device_read_bytes_total", []string{"device", "e1.0"}, 2 * 8192},
		{"ironaoe_device_state", []string{"device", "e1.0", "state", "up"}, 1},
		{"ironaoe_device_state", []string{"device", "e1.0", "state", "down"}, 0},
		{"ironaoe_device_size_bytes", []string{"device", "e1.0"}, testDiskSize},
		{"ironaoe_target_state", []string{"device", "e1.0", "mac", targetMAC(1).String(), "state", "active"}, 1},
		{"ironaoe_target_scorns_total", []string{"device", "e1.0", "mac", targetMAC(1).String()}, 0},
	} {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if v := value("ironaoe_target_rtt_seconds", "device", "e1.0"); v <= 0 {
		t.Errorf("ironaoe_target_rtt_seconds = %v, want > 0 after I/O", v)
	}
}
