package target

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestConcurrentReadWrite runs 64 clients at once, each reading and
// writing its own region, against a reference copy of what it wrote.
//
// Over a link that reads in batches, the backlogs of 64 clients wake the
// receive loop's helpers, which then share the link with it.
func TestConcurrentReadWrite(t *testing.T) {
	for _, batch := range []bool{false, true} {
		for _, kind := range backendKinds {
			for _, syncWrites := range []bool{false, true} {
				t.Run(fmt.Sprintf("batch=%v/%s/sync=%v", batch, kind.name, syncWrites), func(t *testing.T) {
					testConcurrentReadWrite(t, kind.wrap(newMemDisk(testSectors)), syncWrites, batch)
				})
			}
		}
	}
}

func testConcurrentReadWrite(t *testing.T, backend Backend, syncWrites, batch bool) {
	opts := []harnessOption{withConfig(func(c *Config) { c.Backend = backend; c.SyncWrites = syncWrites })}
	if batch {
		opts = append(opts, withLink(func(l aoe.Link) aoe.Link { return newBatchPort(l.(*aoetest.Port)) }))
	}
	h := newHarness(t, opts...)
	const depth, region = 64, 32 // sectors per client
	ops := 60
	if testing.Short() {
		ops = 15
	}
	var wg sync.WaitGroup
	for w := range depth {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			ref := make([]byte, region*512)
			base := uint64(w * region)
			for range ops {
				count := 1 + rng.IntN(2)
				at := rng.IntN(region - count + 1)
				lba := base + uint64(at)
				if rng.IntN(2) == 0 {
					data := make([]byte, count*512)
					for i := range data {
						data[i] = byte(rng.Uint32())
					}
					resp := h.client.roundTrip(t, writeReq(h.client, t, lba, data))
					if a := decodeATA(t, resp); a.CmdStatus != aoe.ATAStatusDRDY {
						t.Errorf("write: status %#x", a.CmdStatus)
						return
					}
					copy(ref[at*512:], data)
					continue
				}
				resp := h.client.roundTrip(t, readReq(h.client, t, lba, uint8(count)))
				a := decodeATA(t, resp)
				if a.CmdStatus != aoe.ATAStatusDRDY || !bytes.Equal(a.Data, ref[at*512:(at+count)*512]) {
					t.Errorf("client %d: read of %d sectors at %d differs from what it wrote", w, count, lba)
					return
				}
			}
			if !bytes.Equal(h.disk.bytes(int(base)*512, region*512), ref) {
				t.Errorf("client %d: disk differs from the reference", w)
			}
		})
	}
	wg.Wait()
}

// TestShutdownUnderLoad cancels Serve while 64 clients keep writing in
// sync mode: Serve returns within 2 s, every write it executed was
// answered, and the backend was synced at the end.
func TestShutdownUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name   string
		wrap   func(aoe.Link) aoe.Link
		inline bool
	}{
		{name: "closing link", wrap: nil},
		{name: "deadline link", wrap: func(l aoe.Link) aoe.Link { return newDeadlineLink(l.(*aoetest.Port)) }},
		{name: "closing link, inline", wrap: nil, inline: true},
		{name: "batch link, inline", wrap: func(l aoe.Link) aoe.Link { return newBatchPort(l.(*aoetest.Port)) }, inline: true},
		{name: "deadline link, inline", wrap: func(l aoe.Link) aoe.Link { return newDeadlineLink(l.(*aoetest.Port)) }, inline: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := newMemDisk(testSectors)
			disk.syncDelay = 500 * time.Microsecond
			counting := &countingBackend{memDisk: disk}
			var backend Backend = counting
			if tc.inline {
				backend = &countingCached{counting}
			}
			opts := []harnessOption{withConfig(func(c *Config) { c.Backend = backend; c.SyncWrites = true })}
			if tc.wrap != nil {
				opts = append(opts, withLink(tc.wrap))
			}
			h := newHarness(t, opts...)
			var acked atomic.Int64
			stopWriters := keepWriting(t, h.client, 64, &acked)
			// Shut down with the writers in full swing.
			testenv.WaitFor(t, 10*time.Second, "writes to be acknowledged under load", func() bool { return acked.Load() >= 256 })
			syncsBefore := disk.syncs.Load()
			start := time.Now()
			h.cancel()
			h.cancel = nil
			select {
			case err := <-h.done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Serve did not return within 2s")
			}
			t.Logf("Serve returned %v after cancellation; %d writes acked", time.Since(start), acked.Load())
			// Let the last answers reach the clients.
			waitFor(t, "every executed write to be acked", func() bool { return acked.Load() == counting.writes.Load() })
			stopWriters()
			if acked.Load() == 0 {
				t.Error("no write was acked")
			}
			if disk.syncs.Load() <= syncsBefore {
				t.Error("no sync at shutdown")
			}
		})
	}
}

// keepWriting starts writers goroutines that write 16 sectors of their
// own over and over, each write waiting for its answer, and count the
// successful answers in acked. The function it returns stops them and
// waits for them.
func keepWriting(t *testing.T, c *client, writers int, acked *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				f := writeReq(c, t, uint64(w*16+i%16), pattern(512, byte(i)))
				select {
				case b := <-c.send(t, f):
					if ataStatus(b) == aoe.ATAStatusDRDY {
						acked.Add(1)
					}
				case <-done:
					return
				}
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// countingBackend counts completed writes.
type countingBackend struct {
	*memDisk
	writes atomic.Int64
}

func (b *countingBackend) WriteAt(p []byte, off int64) (int, error) {
	n, err := b.memDisk.WriteAt(p, off)
	if err == nil {
		b.writes.Add(1)
	}
	return n, err
}

// countingCached is a countingBackend whose I/O never waits for the
// device, so the receive loop executes it.
type countingCached struct{ *countingBackend }

func (b *countingCached) TryReadAt(p []byte, off int64) (int, error)  { return b.ReadAt(p, off) }
func (b *countingCached) TryWriteAt(p []byte, off int64) (int, error) { return b.WriteAt(p, off) }

// deadlineLink adds SetReadDeadline to a hub port, as a real socket has,
// so Serve can stop reading without closing the link.
type deadlineLink struct {
	*aoetest.Port
	mu       sync.Mutex
	deadline chan struct{} // closed when the deadline passes
	frames   chan []byte
	errs     chan error
}

func newDeadlineLink(p *aoetest.Port) *deadlineLink {
	l := &deadlineLink{Port: p, deadline: make(chan struct{}), frames: make(chan []byte), errs: make(chan error, 1)}
	go func() {
		for {
			buf := make([]byte, 70000)
			n, err := p.ReadFrame(buf)
			if err != nil {
				l.errs <- err
				return
			}
			l.frames <- buf[:n]
		}
	}()
	return l
}

func (l *deadlineLink) SetReadDeadline(t time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.IsZero() {
		l.deadline = make(chan struct{})
		return nil
	}
	d := l.deadline
	time.AfterFunc(time.Until(t), func() {
		select {
		case <-d:
		default:
			close(d)
		}
	})
	return nil
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (l *deadlineLink) ReadFrame(b []byte) (int, error) {
	l.mu.Lock()
	d := l.deadline
	l.mu.Unlock()
	select {
	case f := <-l.frames:
		return copy(b, f), nil
	case err := <-l.errs:
		return 0, err
	case <-d:
		return 0, timeoutError{}
	}
}

// TestServeAgainAfterStop checks that a link whose read can be interrupted
// is left open and usable by the next Serve.
func TestServeAgainAfterStop(t *testing.T) {
	h := newHarness(t, withLink(func(l aoe.Link) aoe.Link { return newDeadlineLink(l.(*aoetest.Port)) }))
	checkResponse(t, h.client.roundTrip(t, readReq(h.client, t, 0, 1)), 0)
	h.stop()
	h.start()
	h.client.expectAnnounce(t)
	checkResponse(t, h.client.roundTrip(t, readReq(h.client, t, 0, 1)), 0)
}
