// Package rtt estimates a path's round-trip time and the retransmission
// timeout it gives. The initiator keeps one Estimator per target; the
// benchmark generator keeps one per run, so both time out alike.
package rtt

import "time"

// Estimator keeps a smoothed round-trip time and its mean deviation, with
// TCP's gains (RFC 6298: 1/8 and 1/4), and derives the retransmission
// timeout 2*avg + 8*dev, as the Linux aoe driver does. The zero value has
// no samples.
type Estimator struct {
	avg, dev time.Duration
	samples  uint64
}

// Observe folds in one round-trip sample. The caller keeps ambiguous
// samples out: the answer to a request sent twice under one tag may
// answer either transmission (Karn's rule).
func (e *Estimator) Observe(s time.Duration) {
	if e.samples == 0 {
		e.avg, e.dev = s, s/2
	} else {
		diff := s - e.avg
		e.avg += diff / 8
		if diff < 0 {
			diff = -diff
		}
		e.dev += (diff - e.dev) / 4
	}
	e.samples++
}

// Samples returns how many samples were observed.
func (e *Estimator) Samples() uint64 { return e.samples }

// Smoothed returns the smoothed round-trip time (0 before any sample).
func (e *Estimator) Smoothed() time.Duration { return e.avg }

// Deviation returns the round-trip time's smoothed mean deviation.
func (e *Estimator) Deviation() time.Duration { return e.dev }

// RTO returns the retransmission timeout, 2*avg + 8*dev, or initial
// before any sample, clamped to [lo, hi].
func (e *Estimator) RTO(initial, lo, hi time.Duration) time.Duration {
	r := initial
	if e.samples > 0 {
		r = 2*e.avg + 8*e.dev
	}
	return min(max(r, lo), hi)
}
