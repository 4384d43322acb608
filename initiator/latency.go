package initiator

import "time"

// numTimedOps counts the operations whose latency is recorded: read,
// write and flush (the opcodes below opIdentify).
const numTimedOps = opIdentify

// latencyBounds are the upper bounds of the latency histogram's buckets,
// from a fast read on a quiet LAN to a request that rode out a failover;
// longer ones fall in the implicit +Inf bucket. Never modified.
var latencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// latencyHistogram counts request durations per bucket of latencyBounds
// (the last entry is +Inf). It is a fixed array, so recording allocates
// nothing; the device's mutex guards it.
type latencyHistogram struct {
	counts [len(latencyBounds) + 1]uint64
	sum    time.Duration
}

// observe records one request that took d.
func (h *latencyHistogram) observe(d time.Duration) {
	k := 0
	for k < len(latencyBounds) && d > latencyBounds[k] {
		k++
	}
	h.counts[k]++
	h.sum += d
}

// LatencyHistogram is the distribution of the durations of one kind of
// request that succeeded, from submission to completion, in the shape of a
// Prometheus histogram: cumulative buckets.
type LatencyHistogram struct {
	// Op is "read", "write" or "flush".
	Op    string        `json:"op"`
	Count uint64        `json:"count"`
	Sum   time.Duration `json:"sum"`
	// Buckets count the requests that took at most their UpperBound,
	// ascending; the Count includes those above the last.
	Buckets []LatencyBucket `json:"buckets"`
}

// LatencyBucket is one cumulative bucket of a LatencyHistogram.
type LatencyBucket struct {
	UpperBound time.Duration `json:"le"`
	Count      uint64        `json:"count"`
}

// snapshot returns h as a LatencyHistogram of requests op.
func (h *latencyHistogram) snapshot(op opcode) LatencyHistogram {
	s := LatencyHistogram{Op: op.String(), Sum: h.sum, Buckets: make([]LatencyBucket, len(latencyBounds))}
	for k, le := range latencyBounds {
		s.Count += h.counts[k]
		s.Buckets[k] = LatencyBucket{UpperBound: le, Count: s.Count}
	}
	s.Count += h.counts[len(latencyBounds)]
	return s
}
