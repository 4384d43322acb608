package target

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// An event is one thing the durability tests watch, stamped from a global
// sequence: a backend WriteAt or Sync (start and end), or a frame received
// or sent by the target (at).
type event struct {
	op         string // "write", "sync", "recv", "send"
	off        int64  // write offset
	tag        uint32 // recv and send
	start, end int64
}

type recorder struct {
	seq    atomic.Int64
	mu     sync.Mutex
	events []event
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// recordingBackend logs WriteAt and Sync with their start and end.
type recordingBackend struct {
	*memDisk
	rec *recorder
}

func (b *recordingBackend) WriteAt(p []byte, off int64) (int, error) {
	start := b.rec.seq.Add(1)
	n, err := b.memDisk.WriteAt(p, off)
	b.rec.add(event{op: "write", off: off, start: start, end: b.rec.seq.Add(1)})
	return n, err
}

func (b *recordingBackend) Sync() error {
	start := b.rec.seq.Add(1)
	err := b.memDisk.Sync()
	b.rec.add(event{op: "sync", start: start, end: b.rec.seq.Add(1)})
	return err
}

// recordingCached is a recordingBackend whose I/O never waits for the
// device, so the receive loop executes it.
type recordingCached struct{ *recordingBackend }

func (b *recordingCached) TryReadAt(p []byte, off int64) (int, error)  { return b.ReadAt(p, off) }
func (b *recordingCached) TryWriteAt(p []byte, off int64) (int, error) { return b.WriteAt(p, off) }

// recordingLink logs the tag of every frame the target receives and of
// every response before it leaves. It is a BatchLink, so the syncer's
// batched sends are exercised too.
type recordingLink struct {
	aoe.Link
	rec *recorder
}

func (l *recordingLink) ReadFrame(b []byte) (int, error) {
	n, err := l.Link.ReadFrame(b)
	if err == nil && n >= aoe.FrameHeaderLen {
		l.rec.add(event{op: "recv", tag: frameTag(b[:n]), start: l.rec.seq.Add(1)})
	}
	return n, err
}

func (l *recordingLink) WriteFrame(b []byte) error {
	l.rec.add(event{op: "send", tag: frameTag(b), start: l.rec.seq.Add(1)})
	return l.Link.WriteFrame(b)
}

func (l *recordingLink) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	n, err := l.ReadFrame(bufs[0])
	if err != nil {
		return 0, err
	}
	lens[0] = n
	return 1, nil
}

func (l *recordingLink) WriteFrames(frames [][]byte) (int, error) {
	for i, f := range frames {
		if err := l.WriteFrame(f); err != nil {
			return i, err
		}
	}
	return len(frames), nil
}

// TestDurability checks the ordering guarantees with many concurrent
// writers: with SyncWrites every acknowledged write ended before a Sync
// that started after it and ended before the acknowledgement; in both
// modes a FLUSH is answered only after a Sync that started after the
// FLUSH arrived; without SyncWrites, writes do not sync but FLUSH does.
func TestDurability(t *testing.T) {
	for _, inline := range []bool{false, true} {
		for _, syncWrites := range []bool{true, false} {
			t.Run(fmt.Sprintf("inline=%v/sync=%v", inline, syncWrites), func(t *testing.T) {
				testDurability(t, inline, syncWrites)
			})
		}
	}
}

func testDurability(t *testing.T, inline, syncWrites bool) {
	rec := &recorder{}
	disk := newMemDisk(testSectors)
	disk.syncDelay = time.Millisecond // lets writes gather behind a sync
	var backend Backend = &recordingBackend{memDisk: disk, rec: rec}
	if inline {
		backend = &recordingCached{backend.(*recordingBackend)}
	}
	h := newHarness(t,
		withConfig(func(c *Config) {
			c.Backend = backend
			c.SyncWrites = syncWrites
		}),
		withLink(func(l aoe.Link) aoe.Link { return &recordingLink{Link: l, rec: rec} }))
	c := h.client

	const writers, perWriter = 16, 20
	writeTag := writeFromMany(t, c, writers, perWriter)
	syncsBeforeFlush := disk.syncs.Load()
	flush := c.request(aoe.CommandATA, ataArg(t, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}))
	checkResponse(t, c.roundTrip(t, flush), 0)

	tr := sortEvents(t, rec.snapshot())
	if len(tr.writes) != writers*perWriter {
		t.Fatalf("%d writes recorded", len(tr.writes))
	}
	if syncWrites {
		tr.checkSyncedAcks(t, writeTag)
		if n := int64(len(tr.syncs)); n >= writers*perWriter {
			t.Errorf("%d syncs for %d writes: no group commit", n, writers*perWriter)
		}
		t.Logf("%d writes, %d syncs before the flush", writers*perWriter, syncsBeforeFlush)
	} else {
		if syncsBeforeFlush != 0 {
			t.Errorf("%d syncs for writes without SyncWrites", syncsBeforeFlush)
		}
		// Every write was acked before the FLUSH was sent, so
		// the FLUSH's sync must cover all of them.
		for off, w := range tr.writes {
			if !tr.coveredBy(w.end, tr.sent[flush.Tag].start) {
				t.Errorf("write at %d not covered by the flush's sync", off)
			}
		}
	}
	r, ok1 := tr.recv[flush.Tag]
	a, ok2 := tr.sent[flush.Tag]
	if !ok1 || !ok2 {
		t.Fatal("flush not recorded")
	}
	if !tr.coveredBy(r.start, a.start) {
		t.Errorf("FLUSH received at %d answered at %d without a sync in between", r.start, a.start)
	}
	st := h.srv.Stats()
	if syncWrites && st.SyncedWrites != writers*perWriter {
		t.Errorf("SyncedWrites = %d", st.SyncedWrites)
	}
}

// writeFromMany runs writers goroutines that each write perWriter sectors
// of their own, each write waiting for its successful answer, and returns
// the write offset of every tag.
func writeFromMany(t *testing.T, c *client, writers, perWriter int) map[uint32]int64 {
	writeTag := map[uint32]int64{} // tag -> write offset
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				lba := uint64(w*perWriter + i)
				f := writeReq(c, t, lba, pattern(512, byte(lba)))
				mu.Lock()
				writeTag[f.Tag] = int64(lba) * 512
				mu.Unlock()
				resp := awaitResponse(t, c.send(t, f))
				if a := decodeATA(t, resp); a.CmdStatus != aoe.ATAStatusDRDY {
					t.Errorf("write %d: status %#x", lba, a.CmdStatus)
				}
			}
		})
	}
	wg.Wait()
	return writeTag
}

// trace is a recording's events by kind.
type trace struct {
	writes     map[int64]event // by offset
	syncs      []event
	recv, sent map[uint32]event // by tag
}

// sortEvents sorts events by kind. A tag answered twice is an error.
func sortEvents(t *testing.T, events []event) *trace {
	tr := &trace{writes: map[int64]event{}, recv: map[uint32]event{}, sent: map[uint32]event{}}
	for _, e := range events {
		switch e.op {
		case "write":
			tr.writes[e.off] = e
		case "sync":
			tr.syncs = append(tr.syncs, e)
		case "recv":
			tr.recv[e.tag] = e
		case "send":
			if _, dup := tr.sent[e.tag]; dup {
				t.Errorf("tag %#x answered twice", e.tag)
				continue
			}
			tr.sent[e.tag] = e
		}
	}
	return tr
}

// coveredBy reports whether a sync started after `after` and ended before
// `before`.
func (tr *trace) coveredBy(after, before int64) bool {
	for _, s := range tr.syncs {
		if s.start > after && s.end < before {
			return true
		}
	}
	return false
}

// checkSyncedAcks checks that every write (by tag, as writeFromMany
// returns them) was acknowledged after a sync that followed it.
func (tr *trace) checkSyncedAcks(t *testing.T, writeTag map[uint32]int64) {
	t.Helper()
	for tag, off := range writeTag {
		ack, ok := tr.sent[tag]
		if !ok {
			t.Fatalf("write at %d: no ack recorded", off)
		}
		if w := tr.writes[off]; !tr.coveredBy(w.end, ack.start) {
			t.Errorf("write at %d (ended %d) acked at %d without a sync in between", off, w.end, ack.start)
		}
	}
}
