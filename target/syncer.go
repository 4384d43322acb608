package target

import (
	"sync"

	"github.com/ironblade/ironblade/aoe"
)

// syncer runs the group commit: requests whose response must wait for a
// sync (writes in sync mode, WRITE FUA EXT, FLUSH CACHE) queue here after
// their WriteAt has returned. Each round takes the whole queue, runs one
// Backend.Sync (which so starts after every queued write completed), and
// then sends all their responses at once.
type syncer struct {
	c    *session
	wake chan struct{}

	mu      sync.Mutex
	pending []*request

	spare  []*request // the other half of the double buffer
	frames [][]byte   // responses of a round, reused
}

func newSyncer(c *session, capacity int) *syncer {
	return &syncer{
		c:       c,
		wake:    make(chan struct{}, 1),
		pending: make([]*request, 0, capacity),
		spare:   make([]*request, 0, capacity),
		frames:  make([][]byte, 0, capacity),
	}
}

// enqueue hands over requests whose responses are ready but for a sync.
// The syncer sends the responses and frees the requests' buffers.
func (y *syncer) enqueue(rs ...*request) {
	y.mu.Lock()
	y.pending = append(y.pending, rs...)
	y.mu.Unlock()
	select {
	case y.wake <- struct{}{}:
	default:
	}
}

// run serves rounds until stop is closed. The caller closes stop only when
// nothing more can be enqueued and the queue is empty.
func (y *syncer) run(stop <-chan struct{}) {
	for {
		select {
		case <-y.wake:
			y.round()
		case <-stop:
			y.round()
			return
		}
	}
}

// round syncs once for everything queued and answers it.
func (y *syncer) round() {
	y.mu.Lock()
	batch := y.pending
	y.pending = y.spare[:0]
	y.mu.Unlock()
	y.spare = batch
	if len(batch) == 0 {
		return
	}
	s := y.c.s
	err := s.cfg.Backend.Sync()
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
			ataFail(r.buf, aoe.ATAStatusDF, aoe.ATAErrorABRT)
			s.counters.errors[errATASync].Add(1)
		}
	} else {
		s.counters.syncedWrites.Add(uint64(writes))
	}
	frames := y.frames[:0]
	for _, r := range batch {
		frames = append(frames, r.buf[:r.resp])
	}
	y.c.sendAll(frames)
	clear(frames)
	for _, r := range batch {
		r.sync = false
		y.c.free <- r
	}
	clear(batch)
}
