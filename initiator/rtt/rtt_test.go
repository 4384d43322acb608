package rtt

import (
	"testing"
	"time"
)

func TestEstimator(t *testing.T) {
	const (
		ms      = time.Millisecond
		initial = 250 * ms
		lo, hi  = 10 * ms, time.Second
	)
	repeat := func(s time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for k := range out {
			out[k] = s
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		samples  []time.Duration
		avg, dev time.Duration // exact, unless negative
		rto      time.Duration
		rtoMax   time.Duration // when set, rto is a lower bound
	}{
		{name: "no samples: initial", rto: initial},
		{name: "first sample: dev is half", samples: []time.Duration{8 * ms}, avg: 8 * ms, dev: 4 * ms, rto: 48 * ms},
		// avg 8 + (16-8)/8 = 9; dev 4 + (8-4)/4 = 5; rto 18 + 40.
		{name: "gains 1/8 and 1/4", samples: []time.Duration{8 * ms, 16 * ms}, avg: 9 * ms, dev: 5 * ms, rto: 58 * ms},
		// avg 16 - 8/8 = 15; |diff| 8: dev 8 + (8-8)/4 = 8.
		{name: "a faster sample", samples: []time.Duration{16 * ms, 8 * ms}, avg: 15 * ms, dev: 8 * ms, rto: 94 * ms},
		{name: "steady: twice the rtt", samples: repeat(20*ms, 100), avg: 20 * ms, dev: -1, rto: 40 * ms, rtoMax: 41 * ms},
		{name: "tiny: floor", samples: repeat(time.Microsecond, 100), avg: time.Microsecond, dev: -1, rto: lo},
		{name: "huge: ceiling", samples: repeat(time.Minute, 3), avg: time.Minute, dev: -1, rto: hi},
		{name: "one slow sample", samples: append(repeat(ms, 50), 100*ms), avg: ms + 99*ms/8, dev: -1, rto: 200 * ms, rtoMax: 300 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Estimator
			for _, s := range tc.samples {
				e.Observe(s)
			}
			if e.Samples() != uint64(len(tc.samples)) {
				t.Errorf("Samples() = %d, want %d", e.Samples(), len(tc.samples))
			}
			if tc.avg >= 0 && e.Smoothed() != tc.avg {
				t.Errorf("Smoothed() = %v, want %v", e.Smoothed(), tc.avg)
			}
			if tc.dev >= 0 && e.Deviation() != tc.dev {
				t.Errorf("Deviation() = %v, want %v", e.Deviation(), tc.dev)
			}
			got := e.RTO(initial, lo, hi)
			switch {
			case tc.rtoMax == 0 && got != tc.rto:
				t.Errorf("RTO = %v, want %v", got, tc.rto)
			case tc.rtoMax != 0 && (got < tc.rto || got > tc.rtoMax):
				t.Errorf("RTO = %v, want %v to %v", got, tc.rto, tc.rtoMax)
			}
		})
	}
}
