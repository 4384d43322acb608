package target

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestGroupCommitGathers has writers keep writes in flight in sync mode:
// a sync covers about all of them, not the half that arrived during the
// sync before, since the syncer waits for the writes it answered to come
// back.
func TestGroupCommitGathers(t *testing.T) {
	const writers, perWriter = 16, 15
	// Without gathering, syncs alternate between about half the
	// writers each; with it, most syncs take nearly all of them.
	const minPerSync = writers * 2 / 3
	for _, kind := range backendKinds[:2] {
		t.Run(kind.name, func(t *testing.T) {
			// Gathering waits at most maxGather (1 ms) for the writers'
			// next requests; a host that stalls the test's threads longer
			// than that splits rounds. Without gathering every attempt
			// gives about half the writers per sync, so the best of three
			// attempts tells the two apart on a busy machine too.
			var best float64
			for attempt := 1; attempt <= 3 && best < minPerSync; attempt++ {
				disk := newMemDisk(testSectors)
				disk.syncDelay = 3 * time.Millisecond
				h := newHarness(t, withConfig(func(c *Config) { c.Backend = kind.wrap(disk); c.SyncWrites = true }))
				writeConcurrently(t, h, writers, perWriter)
				st := h.srv.Stats()
				perSync := float64(st.SyncedWrites) / float64(st.Syncs)
				t.Logf("attempt %d: %d writes, %d syncs: %.1f writes per sync", attempt, st.SyncedWrites, st.Syncs, perSync)
				best = max(best, perSync)
			}
			if best < minPerSync {
				t.Errorf("%.1f writes per sync at best with %d writers", best, writers)
			}
		})
	}
}

// TestSyncerGatherMore checks when a round waits for more requests: not
// when the queue holds what the last round expects, nor once the time to
// gather has passed since that round, and never past a stop. It runs on
// synctest's fake clock: the waits are the subject, and exact there.
func TestSyncerGatherMore(t *testing.T) {
	synctest.Test(t, testSyncerGatherMore)
}

func testSyncerGatherMore(t *testing.T) {
	c, _ := newTestSession(t, Config{SyncWrites: true})
	y := c.syncer
	y.timer.Stop()
	r := <-c.free

	// A lone writer: its next write is the one expected.
	y.expect, y.gather, y.ended = 1, time.Hour, time.Now()
	y.enqueue(r)
	start := time.Now()
	if !y.gatherMore(nil) || time.Since(start) > time.Second {
		t.Errorf("waited %v with the expected request queued", time.Since(start))
	}

	// Two expected, one queued: wait out the time left.
	y.expect, y.gather, y.ended = 2, 50*time.Millisecond, time.Now()
	start = time.Now()
	if !y.gatherMore(nil) {
		t.Error("gatherMore reported a stop")
	}
	if waited := time.Since(start); waited < 40*time.Millisecond || waited > 2*time.Second {
		t.Errorf("waited %v, want about 50ms", waited)
	}

	// The time to gather ran out long ago: no wait.
	y.expect, y.gather, y.ended = 2, 50*time.Millisecond, time.Now().Add(-time.Second)
	start = time.Now()
	y.gatherMore(nil)
	if waited := time.Since(start); waited > 30*time.Millisecond {
		t.Errorf("waited %v after the time to gather", waited)
	}

	// The second expected request arrives while waiting.
	y.expect, y.gather, y.ended = 2, time.Hour, time.Now()
	go func() {
		// On the fake clock, gatherMore is waiting when this wakes.
		time.Sleep(10 * time.Millisecond)
		y.enqueue(<-c.free)
	}()
	if !y.gatherMore(nil) {
		t.Error("gatherMore reported a stop")
	}

	// Stopping ends the wait.
	y.expect, y.gather, y.ended = 10, time.Hour, time.Now()
	stop := make(chan struct{})
	time.AfterFunc(10*time.Millisecond, func() { close(stop) })
	if y.gatherMore(stop) {
		t.Error("gatherMore did not report the stop")
	}
}

// TestSyncerWakesAtThreshold checks that enqueue wakes the syncer only
// when the queue reaches the length it waits for, not for every request
// of a group it gathers (a thread switch each, on the receive loop's CPU
// when the target is pinned to one), and that a wait finds requests
// queued before it began.
func TestSyncerWakesAtThreshold(t *testing.T) {
	c, _ := newTestSession(t, Config{SyncWrites: true})
	y := c.syncer
	y.timer.Stop()
	y.mu.Lock()
	y.wakeAt = 3
	y.mu.Unlock()
	for i, want := range []int{0, 0, 1, 1} {
		y.enqueue(<-c.free)
		if got := len(y.wake); got != want {
			t.Errorf("after request %d of a group of 3: %d wake-ups pending, want %d", i+1, got, want)
		}
	}
	<-y.wake
	if !y.awaitQueued(4, time.Millisecond, nil) {
		t.Error("awaitQueued reported a stop")
	}
	if got := len(y.wake); got != 0 {
		t.Errorf("a wait for 4 with 4 queued left %d wake-ups", got)
	}
}
