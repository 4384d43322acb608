package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ironblade/ironblade/aoe"
)

// Workload is a timed run of random reads or writes, each one frame of
// the device's sectors per frame at an address aligned to that size.
type Workload struct {
	Op Op
	// QueueDepth is how many requests are kept in flight.
	QueueDepth int
	// Duration is how long the run is measured.
	Duration time.Duration
	// Warmup runs before the measurement and is not counted.
	Warmup time.Duration
	// Span limits the addresses to the first Span sectors; 0 means the
	// whole device.
	Span uint64
	// Seed seeds the address sequence, so runs can be repeated.
	Seed uint64
	// MinTimeout is the least time a request waits for its answer before
	// it is sent again; 0 means DefaultMinTimeout. Above it the timeout
	// follows the measured round trips.
	MinTimeout time.Duration
}

// Result is what a Workload measured.
type Result struct {
	Op         Op
	QueueDepth int
	// Ops and Bytes count the requests answered within the measured
	// window, and the data they moved.
	Ops, Bytes uint64
	// Elapsed is the measured window.
	Elapsed time.Duration
	// Retransmits counts requests sent again because their answer was
	// late (the target dropped them or was slow); Abandoned, requests
	// still unanswered when the run gave up waiting after the window.
	Retransmits, Abandoned uint64
	// Latency holds each measured request's time from its first
	// transmission to its answer, in microseconds.
	Latency *hdrhistogram.Histogram
}

// IOPS reports the requests answered per second.
func (r *Result) IOPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// MBps reports the data moved, in megabytes (10^6 bytes) per second.
func (r *Result) MBps() float64 { return megabytesPerSecond(int64(r.Bytes), r.Elapsed) }

// megabytesPerSecond is n bytes over d in 10^6 bytes per second; 0 if d is
// not positive.
func megabytesPerSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / 1e6 / d.Seconds()
}

// Percentile reports the latency at percentile p (0 to 100).
func (r *Result) Percentile(p float64) time.Duration {
	if r.Latency == nil || r.Latency.TotalCount() == 0 {
		return 0
	}
	return time.Duration(r.Latency.ValueAtQuantile(p)) * time.Microsecond
}

// maxLatency is the largest latency the histogram tracks, in µs.
const maxLatency = int64(60 * time.Second / time.Microsecond)

// drainTimeout bounds the wait for the answers still due after the
// measured window.
const drainTimeout = 3 * time.Second

// Run drives dev with w over link and returns what it measured. An AoE or
// ATA error in an answer, or a request that gets no answer at all, ends
// the run with an error.
func Run(ctx context.Context, link Link, dev Device, w Workload) (*Result, error) {
	if w.Duration <= 0 {
		return nil, fmt.Errorf("bench: run: duration %v", w.Duration)
	}
	span := w.Span
	if span == 0 || span > dev.Sectors {
		span = dev.Sectors
	}
	spf := uint64(dev.SectorsPerFrame)
	if spf == 0 || span < spf {
		return nil, fmt.Errorf("bench: run: %v: %d sectors is less than a frame of %d", dev, span, spf)
	}
	e, err := newEngine(link, dev, w.QueueDepth, w.Op == Write)
	if err != nil {
		return nil, fmt.Errorf("bench: run: %w", err)
	}
	e.rtt.floor = w.MinTimeout
	if w.Op == Write {
		// Random data, so no layer can shortcut zeros.
		rng := rand.NewChaCha8([32]byte{1, 2, 3})
		for i := range e.slots {
			_, _ = rng.Read(e.slots[i].frame[aoe.FrameHeaderLen+aoe.ATAHeaderLen:])
		}
	}
	res := &Result{Op: w.Op, QueueDepth: w.QueueDepth, Latency: hdrhistogram.New(1, maxLatency, 3)}
	rng := rand.New(rand.NewPCG(w.Seed, w.Seed^0x9e3779b97f4a7c15))
	blocks := span / spf
	start := time.Now()
	measureFrom := start.Add(w.Warmup)
	stop := measureFrom.Add(w.Duration)
	e.giveUp = stop.Add(drainTimeout)
	e.fill = func(s *slot, now time.Time) bool {
		if !now.Before(stop) {
			return false
		}
		s.lba, s.sectors = rng.Uint64N(blocks)*spf, int(spf)
		return true
	}
	frameBytes := spf * aoe.SectorSize
	e.complete = func(s *slot, _ *aoe.ATA, now time.Time) error {
		if now.Before(measureFrom) || now.After(stop) {
			return nil
		}
		res.Ops++
		res.Bytes += frameBytes
		_ = res.Latency.RecordValue(max(now.Sub(s.first).Microseconds(), 1))
		return nil
	}
	err = e.run(ctx)
	res.Elapsed = w.Duration
	res.Retransmits, res.Abandoned = e.retransmits, e.abandoned
	if err != nil {
		return res, fmt.Errorf("bench: %v %v at queue depth %d: %w", dev, w.Op, w.QueueDepth, err)
	}
	return res, nil
}
