package initiator

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// loopLink is an aoe.Link whose far end is a target answering inside
// WriteFrame from an in-memory disk, with every buffer reused: it allocates
// nothing per frame, so allocations measured over it are the initiator's.
type loopLink struct {
	mac, target aoe.MAC
	mtu         int
	disk        []byte
	ident       []byte
	mu          sync.Mutex
	ready       chan []byte // answers waiting to be read
	free        chan []byte
	closed      chan struct{}
	once        sync.Once
}

func newLoopLink(mtu, size int) *loopLink {
	l := &loopLink{
		mac: initiatorMAC, target: targetMAC(1), mtu: mtu, disk: make([]byte, size),
		ready: make(chan []byte, 256), free: make(chan []byte, 256), closed: make(chan struct{}),
	}
	l.ident = identifyData(uint64(size/aoe.SectorSize), true, true, true)
	for range cap(l.free) {
		l.free <- make([]byte, mtu+aoe.EthernetHeaderLen)
	}
	return l
}

func (l *loopLink) MTU() int              { return l.mtu }
func (l *loopLink) HardwareAddr() aoe.MAC { return l.mac }
func (l *loopLink) Close() error          { l.once.Do(func() { close(l.closed) }); return nil }
func (l *loopLink) ReadFrame(b []byte) (int, error) {
	select {
	case f := <-l.ready:
		n := copy(b, f)
		l.free <- f[:cap(f)]
		return n, nil
	case <-l.closed:
		return 0, fmt.Errorf("loop link: %w", net.ErrClosed)
	}
}

// WriteFrame answers the request in b at once.
func (l *loopLink) WriteFrame(b []byte) error {
	var req aoe.Frame
	if err := req.UnmarshalBinary(b); err != nil {
		return err
	}
	var out []byte
	select {
	case out = <-l.free:
	default:
		return nil // dropped, as a full queue would
	}
	resp := aoe.Frame{Dst: req.Src, Src: l.target, Header: req.Header}
	resp.Flags |= aoe.FlagResponse
	resp.Major, resp.Minor = 1, 0
	n := aoe.FrameHeaderLen
	switch req.Command {
	case aoe.CommandQueryConfig:
		c := aoe.Config{BufferCount: 64, SectorCount: uint8(aoe.SectorsPerFrame(l.mtu)), Version: aoe.Version}
		m, _ := c.MarshalTo(out[n:])
		n += m
	case aoe.CommandATA:
		var a aoe.ATA
		if err := a.UnmarshalBinary(req.Arg); err != nil {
			return err
		}
		reply := aoe.ATA{Flags: a.Flags, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}
		reply.MarshalHeaderTo(out[n:])
		n += aoe.ATAHeaderLen
		off, cnt := int(a.LBA)*aoe.SectorSize, int(a.SectorCount)*aoe.SectorSize
		l.mu.Lock()
		switch a.CmdStatus {
		case aoe.ATAIdentifyDevice:
			n += copy(out[n:], l.ident)
		case aoe.ATAReadSectorsExt:
			n += copy(out[n:], l.disk[off:off+cnt])
		case aoe.ATAWriteSectorsExt, aoe.ATAWriteFUAExt:
			copy(l.disk[off:off+cnt], a.Data[:cnt])
		}
		l.mu.Unlock()
	}
	_, _ = resp.MarshalHeaderTo(out)
	l.ready <- out[:max(n, aoe.MinFrameLen)]
	return nil
}

// announce queues an unsolicited Query Config response.
func (l *loopLink) announce() {
	req := aoe.Frame{Dst: l.target, Src: l.mac, Header: aoe.Header{Version: aoe.Version, Major: 1, Command: aoe.CommandQueryConfig}, Arg: make([]byte, 8)}
	b, _ := req.MarshalBinary()
	_ = l.WriteFrame(b)
}

// loopDevice runs an initiator over a loopLink and returns its device.
func loopDevice(tb testing.TB, mtu int) *Device {
	l := newLoopLink(mtu, 64<<20)
	r := startRig(tb, Config{Links: []aoe.Link{l}})
	l.announce()
	return r.device(tb, 1, 0)
}

// TestIOAllocatesNothing checks the hot path: once warm, a read or write
// allocates nothing, in the caller or in the initiator's goroutines.
func TestIOAllocatesNothing(t *testing.T) {
	d := loopDevice(t, 9000)
	ctx := context.Background()
	p := make([]byte, 64<<10)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"read", func() { _ = d.ReadAt(ctx, p, 4096) }},
		{"write", func() { _ = d.WriteAt(ctx, p, 4096, false) }},
		{"write fua", func() { _ = d.WriteAt(ctx, p, 4096, true) }},
		{"flush", func() { _ = d.WriteAt(ctx, p[:512], 0, false); _ = d.Flush(ctx) }},
	} {
		tc.fn() // warm the pools
		if n := testing.AllocsPerRun(200, tc.fn); n > 0.05 {
			t.Errorf("%s: %.2f allocations per call", tc.name, n)
		}
	}
}

func BenchmarkIO(b *testing.B) {
	for _, mtu := range []int{1500, 9000} {
		for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
			for _, op := range []string{"read", "write"} {
				for _, qd := range []int{1, 16} {
					b.Run(fmt.Sprintf("mtu%d/%s/%dk/qd%d", mtu, op, size>>10, qd), func(b *testing.B) {
						d := loopDevice(b, mtu)
						b.SetBytes(int64(size))
						b.ReportAllocs()
						b.SetParallelism(qd)
						var slot sync.Mutex
						next := 0
						b.ResetTimer()
						b.RunParallel(func(pb *testing.PB) {
							slot.Lock()
							base := int64(next*size) % (32 << 20)
							next++
							slot.Unlock()
							p := make([]byte, size)
							ctx := context.Background()
							for pb.Next() {
								var err error
								if op == "read" {
									err = d.ReadAt(ctx, p, base)
								} else {
									err = d.WriteAt(ctx, p, base, false)
								}
								if err != nil {
									b.Error(err)
									return
								}
							}
						})
					})
				}
			}
		}
	}
}
