package target

import (
	"sync"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// maxGather bounds how long the syncer waits for more requests before a
// sync.
const maxGather = time.Millisecond

// syncer runs the group commit: requests whose response must wait for a
// sync (writes in sync mode, WRITE FUA EXT, FLUSH CACHE) queue here after
// their WriteAt has returned. Each round takes the whole queue, runs one
// Backend.Sync (which so starts after every queued write completed), and
// then sends all their responses at once.
//
// A round does not start as soon as a request is queued: an initiator
// that keeps a number of writes in flight sends new ones as soon as the
// last round answers some, and those would each wait for a whole sync
// more if the next round left without them. So after answering n requests
// a round waits for n more to be queued (or more on the way, as the queue
// grew during its sync), for at most half its sync's duration and
// maxGather. A lone writer never waits: its next write is the one
// expected. Syncs thus cover about all the writes in flight instead of
// half, and the cost is bounded by the sync time saved.
type syncer struct {
	c    *session
	wake chan struct{}

	mu      sync.Mutex
	pending []*request
	syncing bool // a round is under way
	// wakeAt is the queue length the syncer waits for: enqueue wakes it
	// only when the queue reaches it. Waking it for each request of a
	// group it gathers would cost a thread switch per request, on the
	// receive loop's CPU when the target is pinned to one.
	wakeAt int

	spare  []*request // the other half of the double buffer
	frames [][]byte   // responses of a round, reused
	// expect is the queue length the next round waits for, at most
	// gather after the last round ended.
	expect int
	gather time.Duration
	ended  time.Time // when the last round answered its requests
	timer  *time.Timer
}

func newSyncer(c *session, capacity int) *syncer {
	return &syncer{
		c:       c,
		wake:    make(chan struct{}, 1),
		pending: make([]*request, 0, capacity),
		spare:   make([]*request, 0, capacity),
		frames:  make([][]byte, 0, capacity),
		timer:   time.NewTimer(time.Hour),
	}
}

// enqueue hands over requests whose responses are ready but for a sync.
// The syncer sends the responses and frees the requests' buffers.
func (y *syncer) enqueue(rs ...*request) {
	y.mu.Lock()
	before := len(y.pending)
	y.pending = append(y.pending, rs...)
	reached := before < y.wakeAt && len(y.pending) >= y.wakeAt
	y.mu.Unlock()
	if reached {
		select {
		case y.wake <- struct{}{}:
		default:
		}
	}
}

// run serves rounds until stop is closed, then a last one. The caller
// closes stop only when nothing more can be enqueued.
func (y *syncer) run(stop <-chan struct{}) {
	y.timer.Stop()
	for {
		if !y.awaitQueued(1, 0, stop) || !y.gatherMore(stop) {
			y.round()
			return
		}
		y.round()
	}
}

// idleForOne reports whether a write may be made durable on its own
// rather than join a round: no round is under way or queued, and the last
// one answered at most one request, so no group is forming that it
// would leave.
func (y *syncer) idleForOne() bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	return !y.syncing && len(y.pending) == 0 && y.expect <= 1
}

// queued reports the length of the queue.
func (y *syncer) queued() int {
	y.mu.Lock()
	defer y.mu.Unlock()
	return len(y.pending)
}

// gatherMore waits for the queue to reach the length the last round
// expects, or for its time to run out. It reports false if stop closed
// meanwhile.
func (y *syncer) gatherMore(stop <-chan struct{}) bool {
	left := y.gather - time.Since(y.ended)
	if y.expect == 0 || left <= 0 {
		return true
	}
	return y.awaitQueued(y.expect, left, stop)
}

// awaitQueued waits until the queue holds n requests, or for at most
// timeout if it is positive. It reports false if stop closed meanwhile.
func (y *syncer) awaitQueued(n int, timeout time.Duration, stop <-chan struct{}) bool {
	y.mu.Lock()
	y.wakeAt = n
	ready := len(y.pending) >= n
	y.mu.Unlock()
	if ready {
		return true
	}
	var expired <-chan time.Time
	if timeout > 0 {
		y.timer.Reset(timeout)
		defer y.timer.Stop()
		expired = y.timer.C
	}
	for {
		select {
		case <-y.wake:
			// A wake-up left from an earlier, lower wakeAt may come first.
			if y.queued() >= n {
				return true
			}
		case <-expired:
			return true
		case <-stop:
			return false
		}
	}
}

// round syncs once for everything queued and answers it.
func (y *syncer) round() {
	y.mu.Lock()
	batch := y.pending
	y.pending = y.spare[:0]
	y.syncing = len(batch) > 0
	y.mu.Unlock()
	y.spare = batch
	if len(batch) == 0 {
		return
	}
	s := y.c.s
	start := time.Now()
	err := s.cfg.Backend.Sync()
	took := time.Since(start)
	s.counters.syncs.Add(1)
	writes := 0
	for _, r := range batch {
		if r.sync {
			writes++
		}
	}
	if err != nil {
		// The writes may be lost: say so to every request this sync
		// covered, as a device fault.
		s.errLog.Error("sync", "sync failed", "err", err, "requests", len(batch))
		for _, r := range batch {
			if err := r.failATA(aoe.ATAStatusDF, aoe.ATAErrorABRT); err != nil {
				s.errLog.Error("sync response", "failing a response failed", "err", err)
			}
			s.counters.errors[errATASync].Add(1)
		}
	} else {
		s.counters.syncedWrites.Add(uint64(writes))
	}
	// The requests about to be answered come back as new ones soon, if
	// their initiators keep as many in flight: expect them on top of
	// those queued before the answers leave.
	y.mu.Lock()
	y.expect = len(y.pending) + len(batch)
	y.syncing = false
	y.mu.Unlock()
	// The sync's end stands for the responses' hand-off, which follows
	// at once: no clock read of its own.
	now := int64(start.Add(took).Sub(y.c.clk.epoch))
	s.counters.syncDuration.observe(durationBounds[:], uint64(took))
	s.counters.syncBatch.observe(batchBounds[:], uint64(len(batch)))
	frames := y.frames[:0]
	for _, r := range batch {
		frames = append(frames, r.buf[:r.resp])
		s.counters.observeRequest(r.op, r.received, now)
	}
	y.c.sendAll(frames)
	s.counters.inFlight.Add(-int64(len(batch)))
	clear(frames)
	y.gather = min(took/2, maxGather)
	y.ended = time.Now()
	for _, r := range batch {
		r.sync = false
		y.c.free <- r
	}
	clear(batch)
}
