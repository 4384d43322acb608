package main

import (
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ironblade/ironblade/internal/testenv"
)

// TestE2EMetrics runs serve --metrics against ironblade over a veth pair,
// copies data in and out with nbdcopy, and scrapes /metrics with the
// Prometheus text parser: the I/O counters moved, agree with stat, and the
// latency histogram counts every request.
func TestE2EMetrics(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdcopy")
	const addr = "127.0.0.1:9193"
	size := diskSize(32 << 20)
	r := newRig(t, 0)
	disk := r.newDisk(t, size)
	r.startTarget(t, "ironblade", disk)
	sock := filepath.Join(r.dir, "nbd.sock")
	r.startServe(t, "--unix", sock, "--metrics", addr, "e1.0")

	r.copyInOut(t, "nbd+unix:///e1.0?socket="+sock, disk, size)

	fams, err := testenv.ScrapeMetrics(r.initiator, addr)
	if err != nil {
		t.Fatal(err)
	}
	dev := findDevice(t, r.stat(t), "e1.0")
	metric := func(name string, labels ...string) float64 {
		t.Helper()
		if fams[name] == nil {
			t.Errorf("no metric %s", name)
		}
		return testenv.MetricValue(fams, name, labels...)
	}
	requests := map[string]uint64{"read": dev.Reads, "write": dev.Writes, "flush": dev.Flushes}
	for op, want := range requests {
		got := metric("ironaoe_device_requests_total", "device", "e1.0", "op", op)
		if got != float64(want) || want == 0 {
			t.Errorf("ironaoe_device_requests_total{op=%q} = %v, stat says %d (want > 0 and equal)", op, got, want)
		}
		h := histogram(fams["ironaoe_device_request_duration_seconds"], "e1.0", op)
		if h == nil {
			t.Errorf("no ironaoe_device_request_duration_seconds{device=\"e1.0\",op=%q}", op)
			continue
		}
		if h.GetSampleCount() != want {
			t.Errorf("latency histogram of %s counts %d requests, want %d", op, h.GetSampleCount(), want)
		}
		if b := h.GetBucket(); len(b) == 0 || b[len(b)-1].GetCumulativeCount() > h.GetSampleCount() || h.GetSampleSum() <= 0 {
			t.Errorf("latency histogram of %s is inconsistent: %v", op, h)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"ironaoe_device_written_bytes_total", []string{"device", "e1.0"}, float64(size)},
		{"ironaoe_device_read_bytes_total", []string{"device", "e1.0"}, float64(size)},
		{"ironaoe_device_state", []string{"device", "e1.0", "state", "up"}, 1},
		{"ironaoe_device_size_bytes", []string{"device", "e1.0"}, float64(size)},
		{"ironaoe_target_state", []string{"device", "e1.0", "mac", r.veth.MACA.String(), "interface", r.veth.IfB, "state", "active"}, 1},
		{"ironaoe_target_frames_sent_total", []string{"device", "e1.0", "mac", r.veth.MACA.String()}, 1},
		{"ironaoe_build_info", []string{"version", testenv.BinaryVersion}, 1},
	} {
		if got := metric(c.name, c.labels...); got < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, got, c.min)
		}
	}
	if got := metric("ironaoe_target_rtt_seconds", "device", "e1.0"); got <= 0 || got > time.Second.Seconds() {
		t.Errorf("ironaoe_target_rtt_seconds = %v, want a positive round trip", got)
	}
	for _, name := range []string{"ironaoe_device_io_errors_total", "ironaoe_target_scorns_total",
		"ironaoe_target_failovers_from_total", "ironaoe_device_late_writes_total"} {
		if got := metric(name, "device", "e1.0"); got != 0 {
			t.Errorf("%s = %v on a clean link, want 0", name, got)
		}
	}
}

// histogram returns the sample of a histogram family for device and op.
func histogram(f *dto.MetricFamily, device, op string) *dto.Histogram {
	for _, m := range f.GetMetric() {
		var d, o string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "device":
				d = l.GetValue()
			case "op":
				o = l.GetValue()
			}
		}
		if d == device && o == op {
			return m.GetHistogram()
		}
	}
	return nil
}
