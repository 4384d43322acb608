package initiator

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector of the initiator's Stats: per
// device (label device, "e1.0") ironaoe_device_* and per target (labels
// device, mac, interface) ironaoe_target_*. The figures are read at
// scrape time from the counters the I/O path keeps anyway, so serving
// metrics costs that path nothing.
func (i *Initiator) Collector() prometheus.Collector {
	dev := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("ironaoe_device_"+name, help, append([]string{"device"}, labels...), nil)
	}
	tgt := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("ironaoe_target_"+name, help, append([]string{"device", "mac", "interface"}, labels...), nil)
	}
	return &collector{
		ini: i,
		device: deviceDescs{
			state:        dev("state", "1 for the device's current state (found, up, down), 0 for the others.", "state"),
			size:         dev("size_bytes", "Capacity in bytes (0 before IDENTIFY)."),
			requests:     dev("requests_total", "Requests that succeeded, by op (read, write, flush).", "op"),
			bytesRead:    dev("read_bytes_total", "Bytes read by requests that succeeded."),
			bytesWritten: dev("written_bytes_total", "Bytes written by requests that succeeded."),
			ioErrors:     dev("io_errors_total", "Requests that failed."),
			latency:      dev("request_duration_seconds", "Durations of the requests that succeeded, from submission to completion, by op.", "op"),
			queued:       dev("queued_requests", "Requests waiting for room in a target's window."),
			ignored:      dev("answers_ignored_total", "Answers ignored, by reason (stale, duplicate, wrong_source).", "reason"),
			fenced:       dev("fenced_writes_total", "Writes that waited for an overlapping earlier write's stray copies."),
			lateWrites:   dev("late_writes_total", "Write copies answered after their fence expired: each may have overwritten newer data."),
			failovers:    dev("failovers_total", "Times I/O waiting on a target moved away from it."),
			lastStall:    dev("last_failover_stall_seconds", "How long I/O stalled in the latest failover (0 before any)."),
		},
		target: targetDescs{
			state:         tgt("state", "1 for the target's current state (active, standby, scorned), 0 for the others.", "state"),
			rtt:           tgt("rtt_seconds", "Smoothed round-trip time of its ATA commands (srtt)."),
			rttDev:        tgt("rtt_deviation_seconds", "Deviation of its round-trip time (rttvar)."),
			rto:           tgt("rto_seconds", "Retransmission timeout a new frame to it gets."),
			window:        tgt("window_frames", "Frames it may have outstanding (buffer count capped by --max-window)."),
			cwnd:          tgt("cwnd_frames", "Part of the window in use after losses."),
			outstanding:   tgt("outstanding_frames", "Frames sent to it and not yet answered."),
			frames:        tgt("frames_sent_total", "Transmissions to it, retransmissions included."),
			retransmits:   tgt("retransmits_total", "Retransmissions to it."),
			spurious:      tgt("spurious_retransmits_total", "Retransmissions to it found needless: the copy before was answered after all."),
			errors:        tgt("errors_total", "Error answers from it and failed sends to it."),
			scorns:        tgt("scorns_total", "Times it was scorned."),
			failoversFrom: tgt("failovers_from_total", "Failovers that moved I/O away from it."),
			failoversTo:   tgt("failovers_to_total", "Failovers after which I/O resumed on it."),
			lastStall:     tgt("last_failover_stall_seconds", "How long I/O stalled in the latest failover away from it (0 before any)."),
			lateWrites:    tgt("late_writes_total", "Its write copies answered after their fence expired."),
		},
	}
}

type deviceDescs struct {
	state, size, requests, bytesRead, bytesWritten, ioErrors, latency *prometheus.Desc
	queued, ignored, fenced, lateWrites, failovers, lastStall         *prometheus.Desc
}

type targetDescs struct {
	state, rtt, rttDev, rto, window, cwnd, outstanding, frames, retransmits, spurious *prometheus.Desc
	errors, scorns, failoversFrom, failoversTo, lastStall, lateWrites                 *prometheus.Desc
}

type collector struct {
	ini    *Initiator
	device deviceDescs
	target targetDescs
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d, t := &c.device, &c.target
	for _, x := range []*prometheus.Desc{d.state, d.size, d.requests, d.bytesRead, d.bytesWritten, d.ioErrors, d.latency,
		d.queued, d.ignored, d.fenced, d.lateWrites, d.failovers, d.lastStall,
		t.state, t.rtt, t.rttDev, t.rto, t.window, t.cwnd, t.outstanding, t.frames, t.retransmits, t.spurious,
		t.errors, t.scorns, t.failoversFrom, t.failoversTo, t.lastStall, t.lateWrites} {
		ch <- x
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, ds := range c.ini.Stats().Devices {
		c.collectDevice(ch, &ds)
		for _, ts := range ds.Targets {
			c.collectTarget(ch, ds.Name, &ts)
		}
	}
}

// collectDevice sends one device's metrics.
func (c *collector) collectDevice(ch chan<- prometheus.Metric, s *DeviceStats) {
	d := &c.device
	send := func(desc *prometheus.Desc, typ prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, typ, v, append([]string{s.Name}, labels...)...)
	}
	// Every state is exported, 0 but for the current one, so that a
	// change shows as such rather than as a series vanishing.
	for k, name := range deviceStateNames {
		send(d.state, prometheus.GaugeValue, oneIf(DeviceState(k) == s.State), name)
	}
	send(d.size, prometheus.GaugeValue, float64(s.Size))
	send(d.requests, prometheus.CounterValue, float64(s.Reads), opRead.String())
	send(d.requests, prometheus.CounterValue, float64(s.Writes), opWrite.String())
	send(d.requests, prometheus.CounterValue, float64(s.Flushes), opFlush.String())
	send(d.bytesRead, prometheus.CounterValue, float64(s.BytesRead))
	send(d.bytesWritten, prometheus.CounterValue, float64(s.BytesWritten))
	send(d.ioErrors, prometheus.CounterValue, float64(s.IOErrors))
	send(d.queued, prometheus.GaugeValue, float64(s.Queued))
	send(d.ignored, prometheus.CounterValue, float64(s.Stale), "stale")
	send(d.ignored, prometheus.CounterValue, float64(s.Duplicate), "duplicate")
	send(d.ignored, prometheus.CounterValue, float64(s.WrongSource), "wrong_source")
	send(d.fenced, prometheus.CounterValue, float64(s.Fenced))
	send(d.lateWrites, prometheus.CounterValue, float64(s.LateWrites))
	send(d.failovers, prometheus.CounterValue, float64(s.Failovers))
	send(d.lastStall, prometheus.GaugeValue, s.LastStall.Seconds())
	for _, h := range s.Latency {
		buckets := make(map[float64]uint64, len(h.Buckets))
		for _, b := range h.Buckets {
			buckets[b.UpperBound.Seconds()] = b.Count
		}
		ch <- prometheus.MustNewConstHistogram(d.latency, h.Count, h.Sum.Seconds(), buckets, s.Name, h.Op)
	}
}

// collectTarget sends the metrics of one target of device.
func (c *collector) collectTarget(ch chan<- prometheus.Metric, device string, s *TargetStats) {
	t := &c.target
	send := func(desc *prometheus.Desc, typ prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, typ, v, append([]string{device, s.MAC, s.Interface}, labels...)...)
	}
	for k, name := range targetStateNames {
		send(t.state, prometheus.GaugeValue, oneIf(TargetState(k) == s.State), name)
	}
	send(t.rtt, prometheus.GaugeValue, s.RTT.Seconds())
	send(t.rttDev, prometheus.GaugeValue, s.RTTDev.Seconds())
	send(t.rto, prometheus.GaugeValue, s.RTO.Seconds())
	send(t.window, prometheus.GaugeValue, float64(s.Window))
	send(t.cwnd, prometheus.GaugeValue, float64(s.Cwnd))
	send(t.outstanding, prometheus.GaugeValue, float64(s.Outstanding))
	send(t.frames, prometheus.CounterValue, float64(s.Frames))
	send(t.retransmits, prometheus.CounterValue, float64(s.Retransmits))
	send(t.spurious, prometheus.CounterValue, float64(s.Spurious))
	send(t.errors, prometheus.CounterValue, float64(s.Errors))
	send(t.scorns, prometheus.CounterValue, float64(s.Scorns))
	send(t.failoversFrom, prometheus.CounterValue, float64(s.FailoversFrom))
	send(t.failoversTo, prometheus.CounterValue, float64(s.FailoversTo))
	send(t.lastStall, prometheus.GaugeValue, s.LastStall.Seconds())
	send(t.lateWrites, prometheus.CounterValue, float64(s.LateWrites))
}

func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
