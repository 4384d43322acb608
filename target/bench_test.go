package target

import (
	"context"
	"net"
	"os"
	"sync/atomic"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// benchLink is a BatchLink that replays one request frame as often as it
// is told to and counts the responses, allocating nothing, so that
// benchmarks measure the target's own path.
type benchLink struct {
	frame  []byte
	mtu    int
	left   atomic.Int64 // frames still to deliver
	want   atomic.Int64 // responses counted when deliver returns
	kick   chan struct{}
	closed chan struct{}
	sent   atomic.Int64
	done   chan struct{}
	// announced is closed by the first frame sent, the announcement.
	announced chan struct{}
}

func newBenchLink(frame []byte, mtu int) *benchLink {
	return &benchLink{frame: frame, mtu: mtu, kick: make(chan struct{}, 1), closed: make(chan struct{}),
		done: make(chan struct{}, 1), announced: make(chan struct{})}
}

// deliver makes the link hand out n more frames and returns once they
// have all been answered. The first call waits for the announcement, so
// that it is not counted as an answer.
func (l *benchLink) deliver(n int64) {
	<-l.announced
	l.want.Store(l.sent.Load() + n)
	l.left.Add(n)
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-l.done
}

func (l *benchLink) take(max int) int {
	for {
		left := l.left.Load()
		if left <= 0 {
			return 0
		}
		n := min(left, int64(max))
		if l.left.CompareAndSwap(left, left-n) {
			return int(n)
		}
	}
}

func (l *benchLink) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	for {
		if n := l.take(len(bufs)); n > 0 {
			for i := range n {
				lens[i] = copy(bufs[i], l.frame)
			}
			return n, nil
		}
		select {
		case <-l.kick:
		case <-l.closed:
			return 0, net.ErrClosed
		}
	}
}

func (l *benchLink) ReadFrame(b []byte) (int, error) {
	var lens [1]int
	bufs := [1][]byte{b}
	_, err := l.ReadFrames(bufs[:], lens[:])
	return lens[0], err
}

// count adds n responses and signals deliver when they reach its goal.
func (l *benchLink) count(n int64) {
	sent := l.sent.Add(n)
	if sent-n == 0 && n > 0 {
		close(l.announced)
	}
	if want := l.want.Load(); sent >= want && sent-n < want {
		l.done <- struct{}{}
	}
}

func (l *benchLink) WriteFrames(frames [][]byte) (int, error) {
	l.count(int64(len(frames)))
	return len(frames), nil
}

func (l *benchLink) WriteFrame(b []byte) error {
	l.count(1)
	return nil
}

func (l *benchLink) MTU() int              { return l.mtu }
func (l *benchLink) HardwareAddr() aoe.MAC { return targetMAC }
func (l *benchLink) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}

// nullDisk reads zeros and forgets writes: the cheapest backend. Its I/O
// never waits, so the receive loop executes it; slowNullDisk hides that,
// so that its I/O goes to the workers.
type nullDisk struct{ size int64 }

func (d nullDisk) ReadAt(p []byte, off int64) (int, error) { clear(p); return len(p), nil }
func (d nullDisk) WriteAt(p []byte, off int64) (int, error) {
	return len(p), nil
}
func (d nullDisk) TryReadAt(p []byte, off int64) (int, error)  { return d.ReadAt(p, off) }
func (d nullDisk) TryWriteAt(p []byte, off int64) (int, error) { return d.WriteAt(p, off) }
func (d nullDisk) Sync() error                                 { return nil }
func (d nullDisk) Size() int64                                 { return d.size }

type slowNullDisk struct{ Backend }

func benchRequests(tb testing.TB) map[string][]byte {
	cl := &client{mac: clientMAC}
	frames := map[string]*aoe.Frame{
		"read2":    readReq(cl, tb, 8, 2),
		"write2":   writeReq(cl, tb, 8, pattern(1024, 1)),
		"identify": cl.request(aoe.CommandATA, ataArg(tb, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})),
		"config":   cl.request(aoe.CommandQueryConfig, make([]byte, aoe.ConfigHeaderLen)),
	}
	out := map[string][]byte{}
	for name, f := range frames {
		b, err := f.MarshalBinary()
		if err != nil {
			tb.Fatal(err)
		}
		out[name] = b
	}
	return out
}

// BenchmarkServe measures a request's trip through the receive loop (and
// a worker, for a backend whose I/O may wait) and the send (and, for sync
// writes, the syncer), over a link and backend that cost nothing.
func BenchmarkServe(b *testing.B) {
	reqs := benchRequests(b)
	for _, bc := range []struct {
		name string
		req  string
		sync bool
		file bool // a FileBackend on a temporary file instead of nullDisk
		slow bool // I/O goes to the workers
	}{
		{"read2", "read2", false, false, false},
		{"write2", "write2", false, false, false},
		{"write2-sync", "write2", true, false, false},
		{"read2-workers", "read2", false, false, true},
		{"write2-workers", "write2", false, false, true},
		{"identify", "identify", false, false, false},
		{"config", "config", false, false, false},
		{"read2-file", "read2", false, true, false},
		{"write2-file", "write2", false, true, false},
		{"write2-sync-file", "write2", true, true, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			link := newBenchLink(reqs[bc.req], 1500)
			var backend Backend = nullDisk{1 << 30}
			if bc.slow {
				backend = slowNullDisk{backend}
			}
			if bc.file {
				path := b.TempDir() + "/disk.img"
				if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
					b.Fatal(err)
				}
				fb, err := OpenFile(path, FileOptions{})
				if err != nil {
					b.Fatal(err)
				}
				defer fb.Close()
				backend = fb
			}
			s, err := NewServer(Config{Shelf: testShelf, Slot: testSlot, Backend: backend,
				SyncWrites: bc.sync, Logger: testLogger(b)})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx, link) }()
			link.deliver(1000) // warm up: the announcement and the pools
			b.ReportAllocs()
			b.ResetTimer()
			link.deliver(int64(b.N))
			b.StopTimer()
			if st := s.Stats(); bc.sync && st.Syncs > 0 {
				b.ReportMetric(float64(st.SyncedWrites)/float64(st.Syncs), "writes/sync")
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestHandleAllocs checks that answering the common requests allocates
// nothing.
func TestHandleAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c, _ := newTestSession(t, Config{})
	r := <-c.free
	for name, frame := range benchRequests(t) {
		allocs := testing.AllocsPerRun(200, func() {
			r.n = copy(r.buf, frame)
			if d := c.handle(r); d != replyNow {
				t.Fatalf("%s: disposition %d", name, d)
			}
			c.send(r.buf[:r.resp])
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per request", name, allocs)
		}
	}
}

// TestServeAllocs runs requests through the whole server and checks that
// the steady state allocates (close to) nothing per frame.
func TestServeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	reqs := benchRequests(t)
	for _, tc := range []struct {
		sync    bool
		backend Backend
	}{
		{false, nullDisk{1 << 30}},
		{true, nullDisk{1 << 30}},
		{false, slowNullDisk{nullDisk{1 << 30}}},
		{true, slowNullDisk{nullDisk{1 << 30}}},
	} {
		sync := tc.sync
		link := newBenchLink(reqs["write2"], 1500)
		s, err := NewServer(Config{Shelf: testShelf, Slot: testSlot, Backend: tc.backend, SyncWrites: sync, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, link) }()
		link.deliver(1000)
		const frames = 20000
		allocs := testing.AllocsPerRun(1, func() { link.deliver(frames) })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if perFrame := allocs / frames; perFrame > 0.01 {
			t.Errorf("sync %v, %T: %.3f allocations per frame", sync, tc.backend, perFrame)
		}
	}
}

// BenchmarkHandle measures the handler alone on the common requests:
// decoding a request and encoding its response in place, and the backend
// call (a memDisk), without the loop, the link or other goroutines.
func BenchmarkHandle(b *testing.B) {
	reqs := benchRequests(b)
	for _, name := range []string{"read2", "write2", "identify", "config"} {
		b.Run(name, func(b *testing.B) {
			c, _ := newTestSession(b, Config{})
			r := <-c.free
			frame := reqs[name]
			b.ReportAllocs()
			for b.Loop() {
				r.n = copy(r.buf, frame)
				if d := c.handle(r); d != replyNow {
					b.Fatalf("disposition %d", d)
				}
			}
		})
	}
}
