package target

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ironblade/ironblade/aoe"
)

func TestStatsAndCollector(t *testing.T) {
	h := newHarness(t)
	c := h.client
	checkResponse(t, c.roundTrip(t, writeReq(c, t, 0, pattern(1024, 1))), 0)
	checkResponse(t, c.roundTrip(t, readReq(c, t, 0, 2)), 0)
	checkResponse(t, c.roundTrip(t, readReq(c, t, 0, 3)), aoe.ErrorBadArgument)
	f := readReq(c, t, 0, 1)
	f.Minor = 99
	c.expectNoResponse(t, f)
	checkResponse(t, c.roundTrip(t, c.request(aoe.CommandATA, ataArg(t, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}))), 0)

	// The last answer can reach the client before it is counted.
	waitFor(t, "the last answer to be counted", func() bool { return h.srv.Stats().FramesOut == 5 })
	st := h.srv.Stats()
	if st.FramesIn != 5 || st.FramesOut != 5 { // 4 answers and the announcement
		t.Errorf("frames in %d out %d", st.FramesIn, st.FramesOut)
	}
	if st.BytesRead != 1024 || st.BytesWritten != 1024 || st.Syncs != 1 {
		t.Errorf("stats %+v", st)
	}
	if st.Dropped["other_target"] != 1 || st.Errors["aoe_bad_argument"] != 1 {
		t.Errorf("dropped %v errors %v", st.Dropped, st.Errors)
	}

	// Two targets' collectors share one registry.
	other, err := NewServer(Config{Shelf: 1, Slot: 3, Backend: newMemDisk(8), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.srv.Collector(), other.Collector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["shelf"] != "1" || labels["slot"] != "2" {
				continue
			}
			key := fam.GetName()
			if r := labels["reason"] + labels["kind"]; r != "" {
				key += "/" + r
			}
			found[key] = m.GetCounter().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"ironblade_target_frames_received_total":                  5,
		"ironblade_target_written_bytes_total":                    1024,
		"ironblade_target_syncs_total":                            1,
		"ironblade_target_frames_dropped_total/other_target":      1,
		"ironblade_target_frames_dropped_total/mac_mask":          0,
		"ironblade_target_errors_total/aoe_bad_argument":          1,
		"ironblade_target_errors_total/aoe_unrecognized_command":  0,
		"ironblade_target_send_errors_total":                      0,
		"ironblade_target_synced_writes_total":                    0,
		"ironblade_target_read_bytes_total":                       1024,
		"ironblade_target_frames_sent_total":                      5,
		"ironblade_target_errors_total/aoe_config_string_present": 0,
	} {
		got, ok := found[key]
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
}

// TestSendErrors checks that a link refusing to send does not stop the
// target: the failures are counted and the next answers go out.
func TestSendErrors(t *testing.T) {
	h := newHarness(t, withMTU(9000))
	c := h.client
	// A 1024-byte config string makes a Query Config answer too large
	// for an MTU of 1000.
	checkResponse(t, c.roundTrip(t, configReq(t, c, aoe.ConfigSet, string(make([]byte, 1024)))), 0)
	h.port.SetMTU(1000)
	c.expectNoResponse(t, configReq(t, c, aoe.ConfigRead, ""))
	if n := h.srv.Stats().SendErrors; n != 1 {
		t.Errorf("SendErrors = %d", n)
	}
	checkResponse(t, c.roundTrip(t, readReq(c, t, 0, 1)), 0)
}

// TestCollectorLatency checks the request and sync duration histograms
// and the in-flight gauge: every request answered is counted once under
// its op, whether the receive loop, a worker or the syncer answered it,
// and nothing stays in flight once the answers are out.
func TestCollectorLatency(t *testing.T) {
	for _, kind := range backendKinds {
		t.Run(kind.name, func(t *testing.T) {
			h := newHarness(t, withConfig(func(cfg *Config) {
				cfg.Backend = kind.wrap(newMemDisk(testSectors))
				cfg.SyncWrites = true
			}))
			c := h.client
			for i := range 4 { // both kinds of block of everyOtherBlock
				checkResponse(t, c.roundTrip(t, writeReq(c, t, uint64(i*8), pattern(1024, byte(i)))), 0)
			}
			for i := range 3 {
				checkResponse(t, c.roundTrip(t, readReq(c, t, uint64(i*8), 2)), 0)
			}
			checkResponse(t, c.roundTrip(t, c.request(aoe.CommandATA, ataArg(t, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}))), 0)
			checkResponse(t, c.roundTrip(t, configReq(t, c, aoe.ConfigRead, "")), 0)
			f := readReq(c, t, 0, 1)
			f.Minor = 99 // dropped: neither timed nor left in flight
			c.expectNoResponse(t, f)

			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(h.srv.Collector())
			var fams []*dto.MetricFamily
			// A request leaves the count in flight just after its answer.
			waitFor(t, "no request in flight", func() bool {
				var err error
				if fams, err = reg.Gather(); err != nil {
					t.Fatal(err)
				}
				return metricValue(fams, "ironblade_target_requests_in_flight", "") == 0
			})
			for op, want := range map[string]uint64{"write": 4, "read": 3, "flush": 1, "other": 1} {
				m := findMetric(fams, "ironblade_target_request_duration_seconds", op)
				if m == nil {
					t.Fatalf("no request_duration_seconds{op=%q}", op)
				}
				hist := m.GetHistogram()
				if hist.GetSampleCount() != want {
					t.Errorf("request_duration_seconds{op=%q} count %d, want %d", op, hist.GetSampleCount(), want)
				}
				if n := len(hist.GetBucket()); n != len(durationBounds) {
					t.Errorf("request_duration_seconds{op=%q}: %d buckets", op, n)
				}
				if hist.GetSampleSum() <= 0 || hist.GetSampleSum() > 10 {
					t.Errorf("request_duration_seconds{op=%q} sum %vs", op, hist.GetSampleSum())
				}
			}
			// Every write and the flush waited for a group commit: as many
			// syncs timed as rounds, which together answered all five.
			syncs := findMetric(fams, "ironblade_target_sync_duration_seconds", "").GetHistogram()
			batch := findMetric(fams, "ironblade_target_sync_batch", "").GetHistogram()
			if syncs.GetSampleCount() == 0 || syncs.GetSampleCount() != batch.GetSampleCount() || syncs.GetSampleCount() != h.srv.Stats().Syncs {
				t.Errorf("sync_duration_seconds count %d, sync_batch count %d, syncs %d",
					syncs.GetSampleCount(), batch.GetSampleCount(), h.srv.Stats().Syncs)
			}
			if batch.GetSampleSum() != 5 {
				t.Errorf("sync_batch sum %v, want 5", batch.GetSampleSum())
			}
		})
	}
}

// findMetric returns the metric of the family name whose op label is op
// ("" for none), or nil.
func findMetric(fams []*dto.MetricFamily, name, op string) *dto.Metric {
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			got := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" {
					got = l.GetValue()
				}
			}
			if got == op {
				return m
			}
		}
	}
	return nil
}

// metricValue returns the value of a gauge found by findMetric, or -1.
func metricValue(fams []*dto.MetricFamily, name, op string) float64 {
	m := findMetric(fams, name, op)
	if m == nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
