//go:build linux

package rawlink

import (
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An rxRing is the socket's receive ring (PACKET_RX_RING, TPACKET_V2): a
// memory area shared with the kernel, cut into one slot per frame. The
// kernel copies each frame it delivers into the next free slot and marks
// it the reader's; the reader copies it out and hands the slot back. A
// read that finds frames waiting costs no system call, and the kernel's
// copy happens where the frame is delivered (with veth, in the sender's
// system call), not in the reader's.
//
// Slots are sized for the interface's MTU when the ring is made. A frame
// that outgrows its slot (the MTU rose) is dropped, counted as truncated,
// and the ring is made again for the new MTU.
type rxRing struct {
	mem       []byte
	blockSize int
	perBlock  int // slots per block
	slotSize  int
	slots     int
	next      int // the slot to look at next
	mtu       int // the MTU the slots were sized for
}

// Ring geometry.
const (
	// ringBlockSize is the unit the kernel allocates the ring in.
	ringBlockSize = 128 << 10
	// ringSlotOverhead is the room a slot keeps ahead of the frame's
	// bytes: the TPACKET_V2 header and the link address, aligned (the
	// kernel puts the network header at an aligned offset, so the frame
	// starts up to 80 bytes in), and a VLAN tag left in the frame.
	ringSlotOverhead = 96
	// defaultRingBytes is the ring's size when Config.ReadBuffer is 0.
	// A ring is best no larger than the frames it must hold: one larger
	// than the caches costs the sender a cache miss per frame (the load
	// generator of ironbench compare with a 16 MiB ring made the target's
	// CPU per request 20-25% higher than with 1 MiB; docs/performance.md).
	defaultRingBytes = 1 << 20
	maxRingBytes     = 64 << 20
	// ringPerBuffer is the ring's size for each byte of Config.ReadBuffer.
	// The kernel charges a socket buffer by what a frame takes, little
	// for a small one, while every slot of a ring holds a whole frame: a
	// ring of ReadBuffer bytes took 4-5 times fewer small frames than
	// the socket did, and a burst of them (ironblade's handshake-flood
	// test) overflowed it and dropped a live peer's frames.
	ringPerBuffer = 4
)

// tpacketHdrLen is the size of struct tpacket2_hdr, ahead of each slot's
// frame.
const tpacketHdrLen = int(unsafe.Sizeof(unix.Tpacket2Hdr{}))

// ringSlotSize is the slot that holds a whole frame of a link of MTU mtu,
// tag and headers included.
func ringSlotSize(mtu int) int {
	return (ringSlotOverhead + 14 + vlanTagLen + max(mtu, 1500) + 15) / 16 * 16
}

// newRxRing sets up a receive ring for frames of a link of MTU mtu on
// socket fd, ringPerBuffer times Config.ReadBuffer readBuffer (at least
// one block, at most maxRingBytes), and maps it.
func newRxRing(fd, readBuffer, mtu int) (*rxRing, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return nil, os.NewSyscallError("setsockopt PACKET_VERSION", err)
	}
	slot := ringSlotSize(mtu)
	block := max(ringBlockSize, (slot+os.Getpagesize()-1)/os.Getpagesize()*os.Getpagesize())
	bytes := defaultRingBytes
	if readBuffer > 0 {
		bytes = ringPerBuffer * readBuffer
	}
	blocks := min(max(bytes, block), maxRingBytes) / block
	perBlock := block / slot
	req := unix.TpacketReq{
		Block_size: uint32(block),
		Block_nr:   uint32(blocks),
		Frame_size: uint32(slot),
		Frame_nr:   uint32(blocks * perBlock),
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, os.NewSyscallError("setsockopt PACKET_RX_RING", err)
	}
	mem, err := unix.Mmap(fd, 0, block*blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		_ = unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &unix.TpacketReq{})
		return nil, os.NewSyscallError("mmap receive ring", err)
	}
	return &rxRing{mem: mem, blockSize: block, perBlock: perBlock, slotSize: slot, slots: blocks * perBlock, mtu: mtu}, nil
}

// close unmaps the ring and takes it down, so the socket queues frames
// again.
func (r *rxRing) close(fd int) error {
	err := unix.Munmap(r.mem)
	r.mem = nil
	if fd >= 0 {
		if e := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &unix.TpacketReq{}); e != nil && err == nil {
			err = os.NewSyscallError("setsockopt PACKET_RX_RING", e)
		}
	}
	return err
}

// slot returns the header of slot i and its offset. Slots do not cross
// blocks, and a block may end with room for no whole slot, so slots are
// found block by block.
func (r *rxRing) slot(i int) (*unix.Tpacket2Hdr, int) {
	off := i/r.perBlock*r.blockSize + i%r.perBlock*r.slotSize
	return (*unix.Tpacket2Hdr)(unsafe.Pointer(&r.mem[off])), off
}

// ringFrame is a frame waiting in the ring: where its bytes are, its whole
// length on the wire, and the VLAN tag the kernel set aside.
type ringFrame struct {
	data      []byte
	size      int
	tci, tpid uint16
	tagged    bool
}

// peek returns the next frame if the kernel has handed it over.
func (r *rxRing) peek() (hdr *unix.Tpacket2Hdr, f ringFrame, ok bool) {
	hdr, off := r.slot(r.next)
	// The kernel writes the frame, then its status: an atomic load orders
	// the reads of the frame after the status's.
	status := atomic.LoadUint32(&hdr.Status)
	if status&unix.TP_STATUS_USER == 0 {
		return nil, ringFrame{}, false
	}
	start := off + int(hdr.Mac)
	end := start + int(hdr.Snaplen)
	if int(hdr.Mac) < tpacketHdrLen || end > off+r.slotSize {
		// Not a layout the kernel makes: take nothing from it.
		end = start
	}
	f = ringFrame{data: r.mem[start:end], size: int(hdr.Len)}
	if status&unix.TP_STATUS_VLAN_VALID != 0 {
		f.tci, f.tpid, f.tagged = hdr.Vlan_tci, vlanTPID, true
		if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			f.tpid = hdr.Vlan_tpid
		}
	}
	return hdr, f, true
}

// arrival returns when the kernel received the next frame (its stamp, by
// the wall clock), or the zero time if none is waiting or there is no
// ring.
func (r *rxRing) arrival() time.Time {
	if r == nil {
		return time.Time{}
	}
	hdr, _, ok := r.peek()
	if !ok {
		return time.Time{}
	}
	return time.Unix(int64(hdr.Sec), int64(hdr.Nsec))
}

// emptyGap is how long the ring stayed empty: from since to arrived, the
// stamp of the frame that ended the wait, or to now without a stamp. The
// kernel stamps a frame just before it hands it over, so a stamp may fall
// a little before since: that counts as no gap. A stamp further before
// since, or after now, is not of this clock (a step of the wall clock, a
// driver's own time): the gap then ends now, as without one, so that a
// bad stamp cannot make every read watch.
func emptyGap(since, arrived time.Time) time.Duration {
	now := time.Since(since)
	if arrived.IsZero() {
		return now
	}
	gap := arrived.Sub(since)
	if gap < -stampSlack || gap > now+stampSlack {
		return now
	}
	return min(max(gap, 0), now)
}

// stampSlack is how far a frame's stamp may fall outside the wait it
// ended and still be taken for this clock's.
const stampSlack = time.Millisecond

// release hands the slot of hdr, the next one, back to the kernel.
func (r *rxRing) release(hdr *unix.Tpacket2Hdr) {
	atomic.StoreUint32(&hdr.Status, unix.TP_STATUS_KERNEL)
	if r.next++; r.next == r.slots {
		r.next = 0
	}
}

// ringRead is the read callback of a ring link's reads: it takes the
// frames waiting in the ring, and waits for one if there are none.
func (sc *readScratch) ringRead(fd uintptr) bool { return sc.untilRing(fd, sc.takeFrames) }

// untilRing calls take, waiting for a frame between calls, until it
// reports that it took frames (or the ring is gone), or the read must look
// at its deadline or at closing.
//
// With Config.BusyPoll, the first time in a read that the ring is empty it
// is watched (watchRing) if it stayed empty no longer than BusyPoll before
// the previous frame; how long it stays empty this time is measured for
// the next read, up to the kernel's arrival stamp of the frame that ends
// it, so that a reader's wake-up from sleep does not count.
func (sc *readScratch) untilRing(fd uintptr, take func(fd int) bool) bool {
	l := sc.l
	for {
		var arrived time.Time
		if !sc.emptySince.IsZero() {
			arrived = l.ring.arrival()
		}
		if take(int(fd)) {
			if sc.watching {
				l.watched.Add(1)
			}
			if !sc.emptySince.IsZero() {
				l.lastGap = emptyGap(sc.emptySince, arrived)
			}
			return true
		}
		sc.watching = false
		if l.busyPoll > 0 && sc.emptySince.IsZero() {
			sc.emptySince = time.Now()
			if l.lastGap <= l.busyPoll && sc.watchRing(sc.emptySince.Add(l.busyPoll)) {
				sc.watching = true
				continue
			}
		}
		if !sc.wait(fd) {
			return false
		}
		if sc.sockErr != nil {
			sc.err, sc.sockErr = sc.sockErr, nil
			return true
		}
	}
}

// watchRing watches the ring until a frame arrives (it reports true), or
// until end, the read deadline, a change of the deadline or Close. Between
// looks it yields its CPU (sched_yield) to any other thread that wants it,
// so that it watches only with time no one else takes: a CPU-bound
// neighbour, such as a virtual machine's vCPU thread, loses nothing to it.
// It also lets other goroutines have its P now and then.
func (sc *readScratch) watchRing(end time.Time) bool {
	l := sc.l
	dl := l.deadline.Load()
	if dl != 0 {
		if d := time.Unix(0, dl); d.Before(end) {
			end = d
		}
	}
	for i := 1; ; i++ {
		r := l.ring
		if r == nil || l.closed.Load() || l.deadline.Load() != dl {
			return false
		}
		if _, _, ok := r.peek(); ok {
			return true
		}
		if !time.Now().Before(end) {
			return false
		}
		_, _, _ = unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		if i%32 == 0 {
			runtime.Gosched()
		}
	}
}

// takeRing copies the frames waiting in the ring into sc.rbufs, up to
// their number, untagging those of a VLAN link and skipping those it must
// not take, and sets sc.n. It reports whether it took any, or whether the
// ring is gone (a larger one could not be made): the read then goes on
// with recvmmsg.
func (sc *readScratch) takeRing(fd int) bool {
	l := sc.l
	sc.n = 0
	for sc.n < len(sc.rbufs) {
		r := l.ring
		if r == nil {
			return true
		}
		hdr, f, ok := r.peek()
		if !ok {
			break
		}
		b := sc.rbufs[sc.n]
		stored := copy(b, f.data)
		if len(f.data) < f.size && stored == len(f.data) {
			// The frame outgrew its slot: the MTU rose since the ring
			// was made. Drop it, and make the ring anew for the MTU.
			r.release(hdr)
			l.truncated.Add(1)
			l.regrowRing(fd)
			continue
		}
		size := f.size
		if l.vlan != 0 {
			spill := sc.spill[:vlanTagLen]
			copy(spill, f.data[stored:])
			var keep bool
			if size, keep = untagFrameTagged(b, spill, size, f.tci, f.tpid, f.tagged, l.vlan); !keep {
				r.release(hdr)
				continue
			}
		}
		r.release(hdr)
		n := min(size, len(b))
		if n < size {
			l.truncated.Add(1)
		}
		sc.rlens[sc.n] = n
		sc.n++
	}
	return sc.n > 0
}

// regrowRing makes the ring anew with slots for the interface's MTU now,
// if it is larger than the one the slots were sized for. Frames waiting in
// the old ring are lost (counted in ringLost). If the new ring cannot be
// made, the link reads with recvmmsg from then on (Ring reports false).
// The caller is the only reader (it holds rmu) and holds no slot.
func (l *Link) regrowRing(fd int) {
	l.mtuMu.Lock()
	_ = l.refreshMTULocked()
	l.mtuMu.Unlock()
	mtu := int(l.mtu.Load())
	if mtu <= l.ring.mtu {
		return
	}
	l.ringMu.Lock()
	defer l.ringMu.Unlock()
	l.ringLost.Add(uint64(l.ring.waiting()))
	err := l.ring.close(fd)
	l.ring = nil
	if err == nil {
		l.ring, err = newRxRing(fd, l.readBuffer, mtu)
	}
	if err != nil {
		l.ringMode.Store(false)
	}
}

// readRing reads up to len(bufs) frames from the receive ring.
func (sc *readScratch) readRing(bufs [][]byte, lens []int) (int, error) {
	l := sc.l
	sc.rbufs, sc.rlens, sc.err = bufs, lens, nil
	sc.emptySince, sc.watching = time.Time{}, false
	err := l.readOp(sc.recvRing)
	sc.rbufs, sc.rlens = nil, nil
	if err != nil {
		return 0, l.ioError("read", err)
	}
	if sc.err != nil {
		return 0, l.errorf("read", sc.err)
	}
	if sc.n == 0 && !l.ringMode.Load() {
		// The ring is gone (regrowRing): on with recvmmsg.
		return sc.readFrames(bufs, lens)
	}
	var bytes uint64
	for _, n := range lens[:sc.n] {
		bytes += uint64(n)
	}
	l.framesIn.Add(uint64(sc.n))
	l.bytesIn.Add(bytes)
	return sc.n, nil
}

// Waiting reports how many frames wait in the link's receive ring for a
// read (0 for a link without one, whose waiting frames the kernel counts
// in the socket's receive queue: /proc/net/packet). A watchdog tells a
// stuck reader from an idle one by it.
func (l *Link) Waiting() int {
	l.ringMu.RLock()
	defer l.ringMu.RUnlock()
	if l.ring == nil {
		return 0
	}
	return l.ring.waiting()
}

// waiting counts the slots the kernel has handed over and no read has
// taken yet.
func (r *rxRing) waiting() int {
	if r.mem == nil {
		return 0
	}
	n := 0
	for i := range r.slots {
		if hdr, _ := r.slot(i); atomic.LoadUint32(&hdr.Status)&unix.TP_STATUS_USER != 0 {
			n++
		}
	}
	return n
}
