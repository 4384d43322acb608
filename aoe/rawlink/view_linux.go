//go:build linux

package rawlink

import (
	"encoding/binary"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// ViewFrames implements aoe.FrameViewer. On a link with a receive ring it
// shows handle the frames in their ring slots (on a VLAN link untagged in
// place) and hands the slots back to the kernel when handle returns, so a
// frame's bytes are copied once, by the kernel. Without a ring it reads
// into buffers of its own, each holding a jumbo frame at least, and shows
// those. No reader in this project uses it yet (docs/performance.md,
// round 5). The
// frames are counted in Stats as ReadFrames counts them, and filtered the
// same way.
func (l *Link) ViewFrames(max int, handle func(frames [][]byte)) (int, error) {
	count := min(max, maxBatch)
	if count <= 0 {
		return 0, nil
	}
	sc := l.getScratch()
	defer l.putScratch(sc)
	if cap(sc.views) < count {
		sc.views = make([][]byte, 0, count)
	}
	if l.ringMode.Load() {
		sc.viewMax, sc.handle, sc.n, sc.err = count, handle, 0, nil
		sc.emptySince, sc.watching = time.Time{}, false
		err := l.readOp(sc.recvView)
		sc.handle = nil
		if err != nil {
			return 0, l.ioError("read", err)
		}
		if sc.err != nil {
			return 0, l.errorf("read", sc.err)
		}
		if sc.n > 0 || l.ringMode.Load() {
			return sc.n, nil
		}
		// The ring is gone (regrowRing): on with recvmmsg.
	}
	return sc.viewCopies(count, handle)
}

// showRing shows sc.handle the frames waiting in the ring, up to
// sc.viewMax, where they lie, then hands their slots back. It sets sc.n and
// reports whether it showed any, or whether the ring is gone.
func (sc *readScratch) showRing(fd int) bool {
	l := sc.l
	sc.n = 0
	r := l.ring
	if r == nil {
		return true
	}
	looked := 0 // slots to hand back, shown or skipped
	var bytes uint64
	views := sc.views[:0]
	for len(views) < sc.viewMax && looked < r.slots {
		hdr, f, ok := r.peekAt(looked)
		if !ok {
			break
		}
		if len(f.data) < f.size {
			// The frame outgrew its slot (the MTU rose). The ring is
			// made anew for the new MTU, which needs no slot in use:
			// the frames before it are shown first, and those the
			// filter skipped handed back.
			if len(views) > 0 {
				break
			}
			for ; looked > 0; looked-- {
				h, _ := r.slot(r.next)
				r.release(h)
			}
			r.release(hdr)
			l.truncated.Add(1)
			l.regrowRing(fd)
			if r = l.ring; r == nil {
				return true
			}
			continue
		}
		looked++
		data := f.data
		if l.vlan != 0 {
			var keep bool
			if data, keep = untagInPlace(data, f, l.vlan); !keep {
				continue
			}
		}
		views = append(views, data[:len(data):len(data)])
		bytes += uint64(len(data))
	}
	if len(views) > 0 {
		l.framesIn.Add(uint64(len(views)))
		l.bytesIn.Add(bytes)
		sc.handle(views)
	}
	sc.n = len(views)
	clear(views)
	sc.views = views[:0]
	for range looked {
		hdr, _ := r.slot(r.next)
		r.release(hdr)
	}
	return sc.n > 0
}

// untagInPlace is untagFrameTagged for a frame held whole in a ring slot:
// a tag left in the frame is removed by moving the addresses ahead of it
// up over it (12 bytes) rather than the payload down.
func untagInPlace(b []byte, f ringFrame, vid uint16) ([]byte, bool) {
	if f.tagged && f.tci&vlanIDMask != 0 {
		n, ok := untagFrameTagged(b, nil, len(b), f.tci, f.tpid, true, vid)
		return b[:n], ok
	}
	if len(b) < vlanInnerET+2 ||
		binary.BigEndian.Uint16(b[vlanTagOff:]) != vlanTPID ||
		binary.BigEndian.Uint16(b[vlanTagOff+2:])&vlanIDMask != vid ||
		binary.BigEndian.Uint16(b[vlanInnerET:]) != aoe.EtherType {
		return nil, false
	}
	copy(b[vlanTagLen:vlanInnerET], b[:vlanTagOff])
	return b[vlanTagLen:], true
}

// jumboMTU is the largest MTU common switches take, which the buffers of
// a read without a ring hold at least.
const jumboMTU = 9216

// viewCopies is ViewFrames on a link without a ring: it reads into the
// scratch's own buffers and shows those. The buffers hold a jumbo frame
// whatever the MTU, as a reader's own would, so that a frame sent just
// before the MTU rose is not cut short.
func (sc *readScratch) viewCopies(count int, handle func(frames [][]byte)) (int, error) {
	size := aoe.EthernetHeaderLen + max(sc.l.MTU(), jumboMTU)
	if len(sc.vbufs) < count || len(sc.vbufs[0]) < size {
		sc.vbufs = make([][]byte, count)
		for i := range sc.vbufs {
			sc.vbufs[i] = make([]byte, size)
		}
		sc.vlens = make([]int, count)
	}
	n, err := sc.read(sc.vbufs[:count], sc.vlens)
	if err != nil {
		return 0, err
	}
	views := sc.views[:0]
	for i := range n {
		views = append(views, sc.vbufs[i][:sc.vlens[i]])
	}
	handle(views)
	clear(views)
	sc.views = views[:0]
	return n, nil
}

var _ aoe.FrameViewer = (*Link)(nil)
