package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/target"
)

var (
	targetMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x01}
	clientMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x02}
)

// deadlineLink gives a hub port the read deadlines the generator needs: a
// goroutine reads the port into a channel.
type deadlineLink struct {
	*aoetest.Port
	frames chan []byte
	mu     sync.Mutex
	dl     time.Time
}

func newDeadlineLink(p *aoetest.Port) *deadlineLink {
	l := &deadlineLink{Port: p, frames: make(chan []byte, 1024)}
	go func() {
		for {
			b := make([]byte, 9100)
			n, err := p.ReadFrame(b)
			if err != nil {
				close(l.frames)
				return
			}
			l.frames <- b[:n]
		}
	}()
	return l
}

func (l *deadlineLink) SetReadDeadline(t time.Time) error {
	l.mu.Lock()
	l.dl = t
	l.mu.Unlock()
	return nil
}

func (l *deadlineLink) ReadFrame(b []byte) (int, error) {
	l.mu.Lock()
	dl := l.dl
	l.mu.Unlock()
	var timeout <-chan time.Time
	if !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case f, ok := <-l.frames:
		if !ok {
			return 0, fmt.Errorf("hub port: %w", os.ErrClosed)
		}
		return copy(b, f), nil
	case <-timeout:
		return 0, fmt.Errorf("hub port: %w", os.ErrDeadlineExceeded)
	}
}

// serveOnHub starts an in-memory target e1.0 of the given size and
// returns a generator link on the same hub. lossPercent of the frames the
// target receives are dropped.
func serveOnHub(t *testing.T, sectors int, mtu, lossPercent int) *deadlineLink {
	t.Helper()
	hub := aoetest.NewHub()
	tport := hub.Port(targetMAC, mtu)
	if lossPercent > 0 {
		rng := rand.New(rand.NewPCG(1, 2))
		var mu sync.Mutex
		tport.Filter = func([]byte) bool {
			mu.Lock()
			defer mu.Unlock()
			return rng.IntN(100) >= lossPercent
		}
	}
	srv, err := target.NewServer(target.Config{Shelf: 1, Backend: aoetest.NewMemDisk(sectors * aoe.SectorSize),
		Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, tport) }()
	link := newDeadlineLink(hub.Port(clientMAC, mtu))
	t.Cleanup(func() {
		cancel()
		<-done
		tport.Close()
		link.Close()
	})
	return link
}

// findTarget discovers and identifies e1.0.
func findTarget(t *testing.T, link Link) Device {
	t.Helper()
	ctx := context.Background()
	d, err := WaitFor(ctx, link, 1, 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := Identify(ctx, link, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDiscoverIdentify(t *testing.T) {
	link := serveOnHub(t, 4096, 9000, 0)
	d := findTarget(t, link)
	if d.MAC != targetMAC || d.Shelf != 1 || d.Slot != 0 || d.SectorsPerFrame != 17 || d.Sectors != 4096 || d.BufferCount != 64 {
		t.Errorf("found %+v; want e1.0 at %v, 17 sectors per frame, 4096 sectors, 64 buffers", d, targetMAC)
	}
	if d.Model != "ironblade" {
		t.Errorf("model %q, want ironblade", d.Model)
	}
	devs, err := Discover(context.Background(), link, 50*time.Millisecond)
	if err != nil || len(devs) != 1 {
		t.Errorf("Discover: %v, %v; want one device", devs, err)
	}
}

func TestVerify(t *testing.T) {
	for _, c := range []struct {
		mtu, loss, qd int
	}{{1500, 0, 1}, {1500, 0, 16}, {9000, 0, 64}, {9000, 10, 16}, {1500, 20, 64}} {
		t.Run(fmt.Sprintf("MTU%d/loss%d/qd%d", c.mtu, c.loss, c.qd), func(t *testing.T) {
			link := serveOnHub(t, 8192, c.mtu, c.loss)
			d := findTarget(t, link)
			res, err := Verify(context.Background(), link, d, VerifyOptions{Offset: 5 * aoe.SectorSize, Size: 1 << 20, QueueDepth: c.qd})
			if err != nil {
				t.Fatal(err)
			}
			if c.loss > 0 && res.Retransmits == 0 {
				t.Errorf("%d%% loss but no retransmissions", c.loss)
			}
			t.Logf("%d bytes: write %v, read %v, %d retransmits", res.Bytes, res.WriteTime, res.ReadTime, res.Retransmits)
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	link := serveOnHub(t, 64, 1500, 0)
	d := findTarget(t, link)
	for _, o := range []VerifyOptions{{Offset: 1}, {Size: 100}, {Size: 65 * aoe.SectorSize}, {Offset: -512, Size: 512}} {
		if _, err := Verify(context.Background(), link, d, o); err == nil {
			t.Errorf("Verify(%+v) succeeded, want an error", o)
		}
	}
	// A device that does not answer: the run fails after its tries.
	ghost := d
	ghost.MAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x99}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := Verify(ctx, link, ghost, VerifyOptions{Size: 512}); err == nil {
		t.Error("Verify of a device nobody answers for succeeded")
	}
}

func TestRun(t *testing.T) {
	for _, op := range []Op{Read, Write} {
		t.Run(op.String(), func(t *testing.T) {
			link := serveOnHub(t, 8192, 9000, 5)
			d := findTarget(t, link)
			res, err := Run(context.Background(), link, d, Workload{Op: op, QueueDepth: 16, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops == 0 || res.Bytes != res.Ops*17*aoe.SectorSize || uint64(res.Latency.TotalCount()) != res.Ops {
				t.Errorf("%d ops, %d bytes, %d latencies: inconsistent", res.Ops, res.Bytes, res.Latency.TotalCount())
			}
			if res.IOPS() <= 0 || res.MBps() <= 0 || res.Percentile(50) <= 0 || res.Percentile(99) < res.Percentile(50) {
				t.Errorf("IOPS %.0f, MB/s %.1f, p50 %v, p99 %v", res.IOPS(), res.MBps(), res.Percentile(50), res.Percentile(99))
			}
			if res.Retransmits == 0 {
				t.Error("5% loss but no retransmissions")
			}
			t.Logf("%v: %.0f IOPS, %.1f MB/s, p50 %v, p99 %v, %d retransmits",
				op, res.IOPS(), res.MBps(), res.Percentile(50), res.Percentile(99), res.Retransmits)
		})
	}
}

func TestRunRejects(t *testing.T) {
	link := serveOnHub(t, 64, 1500, 0)
	d := findTarget(t, link)
	for _, w := range []Workload{{QueueDepth: 1}, {QueueDepth: 0, Duration: time.Second}, {QueueDepth: MaxQueueDepth + 1, Duration: time.Second}} {
		if _, err := Run(context.Background(), link, d, w); err == nil {
			t.Errorf("Run(%+v) succeeded, want an error", w)
		}
	}
}

// TestRetransmitTimer checks the generator's bounds around the shared
// estimator (initiator/rtt tests the estimator itself).
func TestRetransmitTimer(t *testing.T) {
	var r retransmitTimer
	if r.timeout() != initialRTO {
		t.Errorf("timeout before samples %v, want %v", r.timeout(), initialRTO)
	}
	for range 100 {
		r.sample(20 * time.Millisecond)
	}
	if to := r.timeout(); to < 40*time.Millisecond || to > 45*time.Millisecond {
		t.Errorf("steady 20 ms round trips: timeout %v, want about 40 ms", to)
	}
	for range 100 {
		r.sample(time.Microsecond)
	}
	if r.timeout() != DefaultMinTimeout {
		t.Errorf("tiny round trips: timeout %v, want the floor %v", r.timeout(), DefaultMinTimeout)
	}
	r.floor = time.Millisecond
	if r.timeout() != time.Millisecond {
		t.Errorf("tiny round trips: timeout %v, want the set floor 1ms", r.timeout())
	}
	for range 100 {
		r.sample(time.Minute)
	}
	if r.timeout() != maxRTO {
		t.Errorf("huge round trips: timeout %v, want the ceiling %v", r.timeout(), maxRTO)
	}
	r.floor = 2 * maxRTO
	if r.timeout() != 2*maxRTO {
		t.Errorf("floor above the ceiling: timeout %v, want the floor %v", r.timeout(), 2*maxRTO)
	}
}

func TestParseOp(t *testing.T) {
	for in, want := range map[string]Op{"read": Read, "Write": Write, " r ": Read, "w": Write} {
		if got, err := ParseOp(in); err != nil || got != want {
			t.Errorf("ParseOp(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseOp("trim"); err == nil {
		t.Error("ParseOp(trim) succeeded")
	}
}

// nullLink swallows what is sent and never has anything to read.
type nullLink struct{}

func (nullLink) ReadFrame([]byte) (int, error)           { return 0, os.ErrDeadlineExceeded }
func (nullLink) ReadFrames([][]byte, []int) (int, error) { return 0, os.ErrDeadlineExceeded }
func (nullLink) WriteFrame([]byte) error                 { return nil }
func (nullLink) WriteFrames(f [][]byte) (int, error)     { return len(f), nil }
func (nullLink) MTU() int                                { return 9000 }
func (nullLink) HardwareAddr() aoe.MAC                   { return clientMAC }
func (nullLink) Close() error                            { return nil }
func (nullLink) SetReadDeadline(time.Time) error         { return nil }
func (nullLink) SetWriteDeadline(time.Time) error        { return errors.ErrUnsupported }

// TestEngineAllocs checks that answering a request and issuing the next
// one allocates nothing.
func TestEngineAllocs(t *testing.T) {
	for _, write := range []bool{false, true} {
		dev := Device{MAC: targetMAC, Shelf: 1, SectorsPerFrame: 17, Sectors: 1 << 20}
		e, err := newEngine(nullLink{}, dev, 16, write)
		if err != nil {
			t.Fatal(err)
		}
		var lba uint64
		e.fill = func(s *slot, _ time.Time) bool { s.lba, s.sectors = lba, 17; lba += 17; return true }
		e.complete = func(*slot, *aoe.ATA, time.Time) error { return nil }
		now := time.Now()
		for i := range e.slots {
			e.fill(&e.slots[i], now)
			e.issue(&e.slots[i], now)
		}
		if err := e.flush(); err != nil {
			t.Fatal(err)
		}
		resp := make([]byte, aoe.FrameHeaderLen+aoe.ATAHeaderLen+17*aoe.SectorSize)
		i := 0
		allocs := testing.AllocsPerRun(1000, func() {
			s := &e.slots[i%len(e.slots)]
			i++
			copy(resp, s.frame[:aoe.FrameHeaderLen+aoe.ATAHeaderLen])
			copy(resp[0:6], clientMAC[:])
			copy(resp[6:12], targetMAC[:])
			resp[aoe.EthernetHeaderLen] |= uint8(aoe.FlagResponse)
			resp[aoe.FrameHeaderLen+3] = aoe.ATAStatusDRDY
			if err := e.receive(resp, now); err != nil {
				t.Fatal(err)
			}
			if err := e.flush(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("write %v: %.1f allocations per answered request, want 0", write, allocs)
		}
	}
}

// discardLogger keeps the in-memory target quiet.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
