package target

import (
	"sync/atomic"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/prometheus/client_golang/prometheus"
)

// timedOp is the kind of request whose duration is recorded: the op label
// of ironblade_target_request_duration_seconds. Few kinds, so that a
// process serving many exports keeps its series few.
type timedOp uint8

const (
	// opOther is everything but the three below: IDENTIFY, CHECK POWER
	// MODE, Query Config, MAC Mask, Reserve/Release, and the requests
	// refused before their command was known.
	opOther timedOp = iota
	opRead
	opWrite
	opFlush
	numTimedOps
)

var timedOpNames = [numTimedOps]string{opOther: "other", opRead: "read", opWrite: "write", opFlush: "flush"}

// ataOp returns the timed op of an ATA command.
func ataOp(cmd uint8) timedOp {
	switch cmd {
	case aoe.ATAReadSectors, aoe.ATAReadSectorsExt:
		return opRead
	case aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt, aoe.ATAWriteFUAExt:
		return opWrite
	case aoe.ATAFlushCache, aoe.ATAFlushCacheExt:
		return opFlush
	}
	return opOther
}

// durationBounds are the upper bounds, in nanoseconds, of the buckets of
// the request and sync duration histograms: from a read answered from the
// page cache to a sync stuck behind a failing disk; longer ones fall in
// the +Inf bucket. Never modified.
var durationBounds = [...]uint64{
	uint64(10 * time.Microsecond), uint64(25 * time.Microsecond), uint64(50 * time.Microsecond),
	uint64(100 * time.Microsecond), uint64(250 * time.Microsecond), uint64(500 * time.Microsecond),
	uint64(time.Millisecond), uint64(2500 * time.Microsecond), uint64(5 * time.Millisecond),
	uint64(10 * time.Millisecond), uint64(25 * time.Millisecond), uint64(50 * time.Millisecond),
	uint64(100 * time.Millisecond), uint64(250 * time.Millisecond), uint64(500 * time.Millisecond),
	uint64(time.Second), uint64(2500 * time.Millisecond), uint64(5 * time.Second), uint64(10 * time.Second),
}

// batchBounds are the upper bounds of the buckets of the sync batch
// histogram (requests answered per group commit), up to MaxBufferCount.
// Never modified.
var batchBounds = [...]uint64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}

// histogram counts observations per bucket of a bounds array (the last
// count is +Inf) in atomics, so that the receive loop, the workers and the
// syncer record without a lock and without allocating. A scrape reads the
// counts one by one, so it may see an observation in a bucket and not yet
// in the sum: an error of one observation, which the next scrape fixes.
type histogram struct {
	counts [max(len(durationBounds), len(batchBounds)) + 1]atomic.Uint64
	sum    atomic.Uint64
}

// observe records v in the bucket of bounds it falls in.
func (h *histogram) observe(bounds []uint64, v uint64) { h.observeN(bounds, v, 1) }

// observeN records n observations of v.
func (h *histogram) observeN(bounds []uint64, v, n uint64) {
	k := 0
	for k < len(bounds) && v > bounds[k] {
		k++
	}
	h.counts[k].Add(n)
	h.sum.Add(v * n)
}

// metric returns h as a Prometheus histogram of bounds, with the bounds
// and the sum multiplied by scale (1e-9 for nanoseconds to seconds).
func (h *histogram) metric(d *prometheus.Desc, bounds []uint64, scale float64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(bounds))
	var n uint64
	for k, le := range bounds {
		n += h.counts[k].Load()
		buckets[float64(le)*scale] = n
	}
	n += h.counts[len(bounds)].Load()
	return prometheus.MustNewConstHistogram(d, n, float64(h.sum.Load())*scale, buckets, labels...)
}

// clock reads the monotonic clock as nanoseconds since the session began:
// time.Since of a time.Time that has a monotonic reading reads only that
// clock, one call cheaper than time.Now, and an int64 fits in a request
// without the weight of a time.Time.
type clock struct{ epoch time.Time }

func (k clock) now() int64 { return int64(time.Since(k.epoch)) }

// observeRequest records that a request of op received at received (a
// clock reading) had its response handed to the link at now.
func (n *counters) observeRequest(op timedOp, received, now int64) {
	n.requestDuration[op].observe(durationBounds[:], uint64(max(0, now-received)))
}

// observeBatch records the requests of ops, all received at received and
// answered at now: one update per op rather than per request.
func (n *counters) observeBatch(ops []timedOp, received, now int64) {
	var count [numTimedOps]uint64
	for _, op := range ops {
		count[op]++
	}
	d := uint64(max(0, now-received))
	for op, k := range count {
		if k > 0 {
			n.requestDuration[op].observeN(durationBounds[:], d, k)
		}
	}
}
