//go:build linux

package rawlink

import (
	"encoding/binary"
	"net"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readScratch is what one read call works with: the arguments of its
// recvfrom or recvmmsg, and what the kernel returned, or what it takes
// from the receive ring.
type readScratch struct {
	l                 *Link
	buf               []byte // recvfrom's buffer
	msgs              []unix.Mmsghdr
	iovs              []unix.Iovec // two per message: the buffer, then its spill
	count             int          // messages handed to recvmmsg
	n                 int
	errno             unix.Errno
	recvOne, recvMany func(fd uintptr) bool
	// A ring link's read takes frames into rbufs and their lengths into
	// rlens, in recvRing; err is a failure of the ring.
	recvRing func(fd uintptr) bool
	rbufs    [][]byte
	rlens    []int
	err      error
	sockErr  error // a socket error wait took, for the ring read to report
	// emptySince is when this read first found the ring empty (zero
	// before); watching says the frame being taken was found by watching.
	emptySince time.Time
	watching   bool
	takeFrames func(fd int) bool
	// On a VLAN link, each message also gets vlanTagLen bytes of spill,
	// so that a frame that still holds its tag fits a buffer sized for
	// the untagged frame, and auxSpace bytes of ctl for its auxdata.
	// ReadFrame reads through the batch path with one and oneLen.
	spill  []byte
	ctl    []byte
	one    [1][]byte
	oneLen [1]int
	// ppoll's arguments: the socket and the link's wake eventfd.
	pfds    [2]unix.PollFd
	timeout unix.Timespec
	drain   [8]byte
}

// newScratch makes a read scratch for initialBatch messages.
func (l *Link) newScratch() *readScratch {
	sc := &readScratch{l: l}
	sc.recvOne = sc.recvfrom
	sc.recvMany = sc.recvmmsg
	sc.recvRing = sc.ringRead
	sc.takeFrames = sc.takeRing
	sc.grow(initialBatch)
	return sc
}

// getScratch takes an idle read scratch, or makes one.
func (l *Link) getScratch() *readScratch {
	l.rfreeMu.Lock()
	if n := len(l.rfree); n > 0 {
		sc := l.rfree[n-1]
		l.rfree[n-1] = nil
		l.rfree = l.rfree[:n-1]
		l.rfreeMu.Unlock()
		return sc
	}
	l.rfreeMu.Unlock()
	return l.newScratch()
}

// putScratch returns a read scratch for the next read.
func (l *Link) putScratch(sc *readScratch) {
	l.rfreeMu.Lock()
	l.rfree = append(l.rfree, sc)
	l.rfreeMu.Unlock()
}

// recvfrom is the RawConn.Read callback of ReadFrame. MSG_TRUNC makes the
// kernel report a frame's real length, so truncation shows.
func (sc *readScratch) recvfrom(fd uintptr) bool {
	for {
		var done bool
		sc.n, sc.errno, done = callNonblocking(unix.SYS_RECVFROM, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(sc.buf))), uintptr(len(sc.buf)), unix.MSG_TRUNC)
		if done || !sc.wait(fd) {
			return done
		}
	}
}

// recvmmsg is the RawConn.Read callback of ReadFrames. The socket is
// non-blocking, so after the first frame the call returns whatever is
// already queued.
func (sc *readScratch) recvmmsg(fd uintptr) bool {
	for {
		var done bool
		sc.n, sc.errno, done = callNonblocking(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&sc.msgs[0])), uintptr(sc.count), unix.MSG_TRUNC)
		if done || !sc.wait(fd) {
			return done
		}
	}
}

// maxWait bounds one ppoll: a safety net, after which a reader looks at
// its deadline again.
const maxWait = time.Second

// wait blocks until the socket fd has a frame queued and reports true, or
// reports false for the read to look at closing and its deadline: when the
// deadline has passed or changed, or the link is closing. It also reports
// true when the socket has an error pending (the interface went down):
// recvmmsg returns it, and for a ring link, which makes no receive call,
// wait takes it (SO_ERROR) into sockErr, since until it is taken ppoll
// reports it at once, again and again.
//
// Readers hold rmu, so one reader at most waits here.
func (sc *readScratch) wait(fd uintptr) bool {
	l := sc.l
	if l.closed.Load() {
		return false
	}
	timeout := maxWait
	if d := l.deadline.Load(); d != 0 {
		if timeout = min(timeout, time.Until(time.Unix(0, d))); timeout <= 0 {
			return false
		}
	}
	sc.timeout = unix.NsecToTimespec(int64(timeout))
	sc.pfds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	sc.pfds[1] = unix.PollFd{Fd: int32(l.wake), Events: unix.POLLIN}
	_, _, errno := unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&sc.pfds[0])), 2,
		uintptr(unsafe.Pointer(&sc.timeout)), 0, 0, 0)
	switch {
	case errno == unix.EINTR:
		return true // read again, then wait again
	case errno != 0:
		return false
	case sc.pfds[1].Revents != 0:
		// Written by Close or SetReadDeadline: take the wake-up.
		_, _, _ = unix.Syscall(unix.SYS_READ, uintptr(l.wake), uintptr(unsafe.Pointer(&sc.drain[0])), uintptr(len(sc.drain)))
		return false
	case l.ringMode.Load() && sc.pfds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0:
		e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			sc.sockErr = os.NewSyscallError("getsockopt SO_ERROR", err)
		case e != 0:
			sc.sockErr = unix.Errno(e)
		}
	}
	return true // a frame, an error, or the timeout: read again
}

// readOp runs the read callback read with the socket, one reader at a
// time, until it reports done; when it reports false, the link has closed
// (net.ErrClosed), the deadline passed (os.ErrDeadlineExceeded), or the
// deadline changed, and it runs again.
func (l *Link) readOp(read func(fd uintptr) bool) error {
	if !l.acquire() {
		return net.ErrClosed
	}
	defer l.release()
	l.rmu.Lock()
	defer l.rmu.Unlock()
	for {
		// The deadline comes first, as in Go's poller: a read past it
		// fails even with frames waiting.
		if d := l.deadline.Load(); d != 0 && time.Now().UnixNano() >= d {
			return os.ErrDeadlineExceeded
		}
		if read(uintptr(l.fd)) {
			return nil
		}
		if l.closed.Load() {
			return net.ErrClosed
		}
	}
}

// wakeReader makes a reader waiting in ppoll look at the deadline and at
// closing again.
func (l *Link) wakeReader() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	l.wakeMu.Lock()
	defer l.wakeMu.Unlock()
	if l.wake >= 0 {
		_, _ = unix.Write(l.wake, one[:])
	}
}

// ReadFrame implements Link. A frame longer than b is truncated (and
// counted in Stats.Truncated).
func (l *Link) ReadFrame(b []byte) (int, error) {
	sc := l.getScratch()
	defer l.putScratch(sc)
	if l.vlan != 0 || l.ringMode.Load() {
		// The tag's whereabouts come as a control message, which
		// recvfrom cannot read; a ring is read in batches.
		sc.one[0] = b
		_, err := sc.read(sc.one[:], sc.oneLen[:])
		sc.one[0] = nil
		if err != nil {
			return 0, err
		}
		return sc.oneLen[0], nil
	}
	sc.buf = b
	err := l.readOp(sc.recvOne)
	sc.buf = nil
	if err != nil {
		return 0, l.ioError("read", err)
	}
	if sc.errno != 0 {
		return 0, l.ioError("read", os.NewSyscallError("recvfrom", sc.errno))
	}
	n := sc.n
	if n > len(b) {
		n = len(b)
		l.truncated.Add(1)
	}
	l.framesIn.Add(1)
	l.bytesIn.Add(uint64(n))
	return n, nil
}

// ReadFrames implements aoe.BatchLink: it waits for a frame, then takes the
// ones already queued, up to len(bufs) (and at most 1024), from the
// receive ring or with one recvmmsg call. A frame longer than its buffer
// is truncated.
func (l *Link) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	count := min(len(bufs), len(lens), maxBatch)
	if count == 0 {
		return 0, nil
	}
	sc := l.getScratch()
	defer l.putScratch(sc)
	return sc.read(bufs[:count], lens)
}

// read reads up to len(bufs) frames, from the ring or with recvmmsg.
func (sc *readScratch) read(bufs [][]byte, lens []int) (int, error) {
	if sc.l.ringMode.Load() {
		return sc.readRing(bufs, lens)
	}
	return sc.readFrames(bufs, lens)
}

// grow makes the scratch hold at least count messages (count is at most
// maxBatch).
func (sc *readScratch) grow(count int) {
	if len(sc.msgs) >= count {
		return
	}
	size := min(max(count, 2*len(sc.msgs)), maxBatch)
	sc.msgs = make([]unix.Mmsghdr, size)
	sc.iovs = make([]unix.Iovec, 2*size)
	if sc.l.vlan != 0 {
		sc.spill = make([]byte, size*vlanTagLen)
		// Control messages must be aligned as their header is.
		words := make([]uint64, (size*auxSpace+7)/8)
		sc.ctl = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), size*auxSpace)
	}
}

// readFrames reads up to len(bufs) frames (at most maxBatch, at least
// one) with recvmmsg. On a VLAN link it removes each frame's tag, and
// reads again if the kernel delivered only frames the link must not take.
func (sc *readScratch) readFrames(bufs [][]byte, lens []int) (int, error) {
	l := sc.l
	count := len(bufs)
	sc.grow(count)
	for {
		for i, b := range bufs {
			iov := sc.iovs[2*i : 2*i+2]
			iov[0].Base = unsafe.SliceData(b)
			iov[0].SetLen(len(b))
			m := &sc.msgs[i]
			m.Hdr.Iov = &iov[0]
			m.Hdr.SetIovlen(1)
			if l.vlan != 0 {
				iov[1].Base = &sc.spill[i*vlanTagLen]
				iov[1].SetLen(vlanTagLen)
				m.Hdr.SetIovlen(2)
				m.Hdr.Control = &sc.ctl[i*auxSpace]
				m.Hdr.SetControllen(auxSpace)
			}
			m.Hdr.Flags = 0
			m.Len = 0
		}
		sc.count = count
		err := l.readOp(sc.recvMany)
		for i := range count {
			sc.iovs[2*i].Base = nil // do not keep the caller's buffers alive
		}
		if err != nil {
			return 0, l.ioError("read", err)
		}
		if sc.errno != 0 {
			return 0, l.ioError("read", os.NewSyscallError("recvmmsg", sc.errno))
		}
		got := 0
		var bytes uint64
		for i := range sc.n {
			m := &sc.msgs[i]
			size := int(m.Len) // the whole frame's length: MSG_TRUNC
			if l.vlan != 0 {
				ctl := sc.ctl[i*auxSpace : i*auxSpace+min(int(m.Hdr.Controllen), auxSpace)]
				var ok bool
				if size, ok = untagFrame(bufs[i], sc.spill[i*vlanTagLen:(i+1)*vlanTagLen], size, ctl, l.vlan); !ok {
					continue
				}
			}
			n := min(size, len(bufs[i]))
			if got != i {
				// An earlier frame was dropped: close the gap.
				n = copy(bufs[got], bufs[i][:n])
			}
			if n < size || m.Hdr.Flags&unix.MSG_TRUNC != 0 {
				l.truncated.Add(1)
			}
			lens[got] = n
			bytes += uint64(n)
			got++
		}
		if got > 0 {
			l.framesIn.Add(uint64(got))
			l.bytesIn.Add(bytes)
			return got, nil
		}
	}
}

// SetReadDeadline makes a pending and future reads fail with an error
// wrapping os.ErrDeadlineExceeded once t passes; the zero time clears it.
func (l *Link) SetReadDeadline(t time.Time) error {
	if l.closed.Load() {
		return l.errorf("set read deadline", net.ErrClosed)
	}
	var d int64
	if !t.IsZero() {
		d = max(t.UnixNano(), 1)
	}
	l.deadline.Store(d)
	l.wakeReader()
	return nil
}
