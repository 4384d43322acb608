//go:build linux

package aoe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// RawLink is a Link on a network interface: an AF_PACKET socket bound to
// EtherType, moving whole Ethernet frames. It implements BatchLink with
// recvmmsg and sendmmsg, and allocates nothing per frame.
//
// A socket filter passes only untagged AoE frames the interface received;
// it does not look at their destination, so on a promiscuous interface a
// RawLink also sees frames addressed to other stations and leaves it to its
// user to drop them.
//
// A RawLink is safe for one reader and several writers at once; writes are
// serialized.
type RawLink struct {
	iface  string
	conn   *packet.Conn
	rc     syscall.RawConn
	mac    MAC
	start  time.Time // origin of mtuChecked: a monotonic clock
	closed atomic.Bool

	// The MTU is cached and re-read with an ioctl on the socket itself, so
	// it resolves the interface in the socket's network namespace.
	mtu        atomic.Int64
	mtuChecked atomic.Int64 // time.Since(start) at the last refresh
	mtuMu      sync.Mutex   // serializes refreshes; guards ifreq and mtuErr
	ifreq      *unix.Ifreq
	mtuErr     error
	mtuCtl     func(fd uintptr)

	// Read side. The callbacks handed to RawConn.Read are made once, in
	// ListenRaw, and find their arguments in these fields: a closure made
	// per call would allocate.
	rmu      sync.Mutex
	rbuf     []byte
	rn       int
	rerrno   unix.Errno
	readOne  func(fd uintptr) bool
	rmsgs    []unix.Mmsghdr
	riovs    []unix.Iovec
	rcount   int
	readMany func(fd uintptr) bool

	// Write side, the same way; wmu serializes writers. Each message has
	// two iovecs: the frame and, for a short frame, padding from pad.
	wmu       sync.Mutex
	wmsgs     []unix.Mmsghdr
	wiovs     []unix.Iovec
	woff      int
	wcount    int
	wsent     int
	werrno    unix.Errno
	writeMany func(fd uintptr) bool
	pad       [MinFrameLen]byte

	framesIn, bytesIn   atomic.Uint64
	framesOut, bytesOut atomic.Uint64
	sendErrors          atomic.Uint64
	truncated           atomic.Uint64
	dropsMu             sync.Mutex // PACKET_STATISTICS resets on read: accumulate
	drops               uint64
}

// initialBatch is how many messages the scratch arrays hold at first; they
// grow, up to maxBatch, when a caller moves more frames per call.
const initialBatch = 64

// ListenRaw opens a RawLink on the named interface. It needs CAP_NET_RAW.
// The interface is looked up in the calling thread's network namespace, and
// the link stays in that namespace.
func ListenRaw(iface string, cfg RawConfig) (*RawLink, error) {
	fail := func(err error) (*RawLink, error) {
		return nil, fmt.Errorf("aoe: raw link %s: listen: %w", iface, err)
	}
	if cfg.VLAN != 0 {
		return fail(fmt.Errorf("VLAN %d: %w", cfg.VLAN, ErrVLANUnsupported))
	}
	if cfg.ReadBuffer < 0 || cfg.WriteBuffer < 0 {
		return fail(fmt.Errorf("negative socket buffer size (read %d, write %d)", cfg.ReadBuffer, cfg.WriteBuffer))
	}
	if len(iface) >= unix.IFNAMSIZ {
		return fail(fmt.Errorf("interface name longer than %d bytes", unix.IFNAMSIZ-1))
	}
	ifreq, err := unix.NewIfreq(iface)
	if err != nil {
		return fail(err)
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fail(err)
	}
	if len(ifi.HardwareAddr) != len(MAC{}) {
		return fail(fmt.Errorf("not an Ethernet interface (hardware address %q)", ifi.HardwareAddr))
	}
	mac := MACFrom(ifi.HardwareAddr)
	filter, err := rawFilter(mac)
	if err != nil {
		return fail(err)
	}
	conn, err := packet.Listen(ifi, packet.Raw, EtherType, &packet.Config{Filter: filter})
	if err != nil {
		return fail(err)
	}
	l, err := newRawLink(iface, conn, mac, ifreq, cfg)
	if err != nil {
		conn.Close()
		return fail(err)
	}
	return l, nil
}

// newRawLink sets up a link around a bound socket.
func newRawLink(iface string, conn *packet.Conn, mac MAC, ifreq *unix.Ifreq, cfg RawConfig) (*RawLink, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	l := &RawLink{
		iface: iface,
		conn:  conn,
		rc:    rc,
		mac:   mac,
		start: time.Now(),
		ifreq: ifreq,
		rmsgs: make([]unix.Mmsghdr, initialBatch),
		riovs: make([]unix.Iovec, initialBatch),
		wmsgs: make([]unix.Mmsghdr, initialBatch),
		wiovs: make([]unix.Iovec, 2*initialBatch),
	}
	l.mtuCtl = l.ioctlMTU
	l.readOne = l.recvfrom
	l.readMany = l.recvmmsg
	l.writeMany = l.sendmmsg

	var optErr error
	err = rc.Control(func(fd uintptr) { optErr = setRawSockopts(int(fd), cfg) })
	if err == nil {
		err = optErr
	}
	if err != nil {
		return nil, err
	}
	l.mtuMu.Lock()
	err = l.refreshMTULocked()
	l.mtuMu.Unlock()
	if err != nil {
		return nil, err
	}
	return l, nil
}

// setRawSockopts asks the kernel not to hand the socket frames the host
// sends (the filter drops them too, on kernels without the option) and
// sizes its buffers.
func setRawSockopts(fd int, cfg RawConfig) error {
	err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		return os.NewSyscallError("setsockopt PACKET_IGNORE_OUTGOING", err)
	}
	sizes := []struct {
		size          int
		force, normal int
		name          string
	}{
		{cfg.ReadBuffer, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, "SO_RCVBUF"},
		{cfg.WriteBuffer, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, "SO_SNDBUF"},
	}
	for _, s := range sizes {
		if s.size == 0 {
			continue
		}
		// Passed as given; the kernel doubles it to allow for its own
		// bookkeeping.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, s.force, s.size); err != nil {
			if !errors.Is(err, unix.EPERM) {
				return os.NewSyscallError("setsockopt "+s.name, err)
			}
			// Unprivileged: capped at net.core.{r,w}mem_max.
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, s.normal, s.size); err != nil {
				return os.NewSyscallError("setsockopt "+s.name, err)
			}
		}
	}
	return nil
}

// The socket filter's verdicts: a snap length big enough for any frame, or
// zero to drop.
const (
	filterAccept = 0x40000
	filterDrop   = 0
)

// rawFilter assembles the classic BPF program the socket runs on every
// frame before queueing it. It keeps untagged AoE frames the interface
// received and drops the host's own outgoing frames and frames from other
// VLANs.
//
// Without a VLAN device for it, the kernel strips an 802.1Q tag before the
// filter runs and marks the frame PACKET_OTHERHOST: so a group-addressed
// frame, or one addressed to mac, that is marked so came from a VLAN. (One
// addressed to another station cannot be told from an untagged one seen in
// promiscuous mode; it is kept.)
func rawFilter(mac MAC) ([]bpf.RawInstruction, error) {
	const (
		eth    = 9  // index of the EtherType check
		accept = 16 // index of the accepting return
		drop   = 17 // index of the dropping return
	)
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: drop - 2},
		/* 2 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.PACKET_OTHERHOST, SkipTrue: eth - 3},
		/* 3 */ bpf.LoadAbsolute{Off: 0, Size: 1},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x01, SkipTrue: drop - 5},
		/* 5 */ bpf.LoadAbsolute{Off: 2, Size: 4},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(mac[2:6]), SkipTrue: eth - 7},
		/* 7 */ bpf.LoadAbsolute{Off: 0, Size: 2},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(binary.BigEndian.Uint16(mac[0:2])), SkipTrue: drop - 9},
		/* 9 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: EtherType, SkipTrue: drop - 11},
		// A tag the kernel kept aside: only VLAN 0 (priority only) is ours.
		/* 11 */ bpf.LoadExtension{Num: bpf.ExtVLANTagPresent},
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: accept - 13},
		/* 13 */ bpf.LoadExtension{Num: bpf.ExtVLANTag},
		/* 14 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0fff},
		/* 15 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: drop - 16},
		/* 16 */ bpf.RetConstant{Val: filterAccept},
		/* 17 */ bpf.RetConstant{Val: filterDrop},
	}
	return bpf.Assemble(prog)
}

// errorf wraps err with the link and the operation that failed.
func (l *RawLink) errorf(op string, err error) error {
	return fmt.Errorf("aoe: raw link %s: %s: %w", l.iface, op, err)
}

// ioError turns an error from RawConn.Read or Write into the link's: after
// Close it wraps net.ErrClosed, as the Link contract asks.
func (l *RawLink) ioError(op string, err error) error {
	if l.closed.Load() {
		return l.errorf(op, net.ErrClosed)
	}
	return l.errorf(op, err)
}

// callNonblocking makes a system call on the non-blocking socket,
// retrying it when a signal interrupts it. done is false when the call
// would block: the RawConn callback then returns false to wait for the
// poller. The pointers among the arguments point into the link's fields,
// which keep what they point to alive.
func callNonblocking(trap, a1, a2, a3, a4 uintptr) (n int, errno unix.Errno, done bool) {
	for {
		r, _, e := unix.Syscall6(trap, a1, a2, a3, a4, 0, 0)
		switch e {
		case 0:
			return int(r), 0, true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, 0, false
		default:
			return 0, e, true
		}
	}
}

// recvfrom is the RawConn.Read callback of ReadFrame. MSG_TRUNC makes the
// kernel report a frame's real length, so truncation shows.
func (l *RawLink) recvfrom(fd uintptr) bool {
	var done bool
	l.rn, l.rerrno, done = callNonblocking(unix.SYS_RECVFROM, fd,
		uintptr(unsafe.Pointer(unsafe.SliceData(l.rbuf))), uintptr(len(l.rbuf)), unix.MSG_TRUNC)
	return done
}

// recvmmsg is the RawConn.Read callback of ReadFrames. The socket is
// non-blocking, so after the first frame the call returns whatever is
// already queued.
func (l *RawLink) recvmmsg(fd uintptr) bool {
	var done bool
	l.rn, l.rerrno, done = callNonblocking(unix.SYS_RECVMMSG, fd,
		uintptr(unsafe.Pointer(&l.rmsgs[0])), uintptr(l.rcount), unix.MSG_TRUNC)
	return done
}

// sendmmsg is the RawConn.Write callback of WriteFrame and WriteFrames. The
// socket is bound to the interface and EtherType, so the messages need no
// destination address: the kernel sends each frame as it is. It waits for
// room when the send buffer is full.
func (l *RawLink) sendmmsg(fd uintptr) bool {
	var done bool
	l.wsent, l.werrno, done = callNonblocking(unix.SYS_SENDMMSG, fd,
		uintptr(unsafe.Pointer(&l.wmsgs[l.woff])), uintptr(l.wcount), 0)
	return done
}

// ReadFrame implements Link. A frame longer than b is truncated (and
// counted in RawStats.Truncated).
func (l *RawLink) ReadFrame(b []byte) (int, error) {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	l.rbuf = b
	err := l.rc.Read(l.readOne)
	l.rbuf = nil
	if err != nil {
		return 0, l.ioError("read", err)
	}
	if l.rerrno != 0 {
		return 0, l.ioError("read", os.NewSyscallError("recvfrom", l.rerrno))
	}
	n := l.rn
	if n > len(b) {
		n = len(b)
		l.truncated.Add(1)
	}
	l.framesIn.Add(1)
	l.bytesIn.Add(uint64(n))
	return n, nil
}

// ReadFrames implements BatchLink with one recvmmsg call: it waits for a
// frame, then takes the ones already queued, up to len(bufs) (and at most
// 1024). A frame longer than its buffer is truncated.
func (l *RawLink) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	count := min(len(bufs), len(lens), maxBatch)
	if count == 0 {
		return 0, nil
	}
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if len(l.rmsgs) < count {
		size := min(max(count, 2*len(l.rmsgs)), maxBatch)
		l.rmsgs = make([]unix.Mmsghdr, size)
		l.riovs = make([]unix.Iovec, size)
	}
	for i, b := range bufs[:count] {
		iov := &l.riovs[i]
		iov.Base = unsafe.SliceData(b)
		iov.SetLen(len(b))
		m := &l.rmsgs[i]
		m.Hdr.Iov = iov
		m.Hdr.SetIovlen(1)
		m.Hdr.Flags = 0
		m.Len = 0
	}
	l.rcount = count
	err := l.rc.Read(l.readMany)
	for i := range count {
		l.riovs[i].Base = nil // do not keep the caller's buffers alive
	}
	if err != nil {
		return 0, l.ioError("read", err)
	}
	if l.rerrno != 0 {
		return 0, l.ioError("read", os.NewSyscallError("recvmmsg", l.rerrno))
	}
	got := l.rn
	var bytes uint64
	for i := range got {
		n := int(l.rmsgs[i].Len)
		if n > len(bufs[i]) || l.rmsgs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
			n = min(n, len(bufs[i]))
			l.truncated.Add(1)
		}
		lens[i] = n
		bytes += uint64(n)
	}
	l.framesIn.Add(uint64(got))
	l.bytesIn.Add(bytes)
	return got, nil
}

// WriteFrame implements Link. A frame larger than the MTU allows gets an
// error that wraps ErrFrameTooLarge and unix.EMSGSIZE.
func (l *RawLink) WriteFrame(b []byte) error {
	if err := l.checkFrame(b, l.MTU()); err != nil {
		l.sendErrors.Add(1)
		return err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.setWriteMsg(0, b)
	_, err := l.sendLocked(1)
	return err
}

// WriteFrames implements BatchLink with sendmmsg, up to 1024 frames per
// call. It stops at the first frame that cannot be sent and returns how
// many went before it, with the reason.
func (l *RawLink) WriteFrames(frames [][]byte) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	sent := 0
	for sent < len(frames) {
		chunk := frames[sent:min(len(frames), sent+maxBatch)]
		if len(l.wmsgs) < len(chunk) {
			size := min(max(len(chunk), 2*len(l.wmsgs)), maxBatch)
			l.wmsgs = make([]unix.Mmsghdr, size)
			l.wiovs = make([]unix.Iovec, 2*size)
		}
		mtu := l.MTU()
		var bad error
		count := len(chunk)
		for i, f := range chunk {
			if err := l.checkFrame(f, mtu); err != nil {
				count, bad = i, err
				break
			}
			l.setWriteMsg(i, f)
		}
		n, err := l.sendLocked(count)
		sent += n
		if err != nil {
			return sent, err
		}
		if bad != nil {
			l.sendErrors.Add(1)
			return sent, bad
		}
	}
	return sent, nil
}

// checkFrame refuses a frame the kernel would: shorter than an Ethernet
// header, or longer than the MTU allows.
func (l *RawLink) checkFrame(b []byte, mtu int) error {
	if len(b) < EthernetHeaderLen {
		return l.errorf("write", fmt.Errorf("%d-byte frame is shorter than an Ethernet header: %w", len(b), ErrShort))
	}
	if len(b)-EthernetHeaderLen > mtu {
		return l.errorf("write", fmt.Errorf("%d-byte frame, MTU %d: %w: %w", len(b), mtu, ErrFrameTooLarge, unix.EMSGSIZE))
	}
	return nil
}

// setWriteMsg points message i of the write scratch at frame, padded to
// MinFrameLen.
func (l *RawLink) setWriteMsg(i int, frame []byte) {
	iov := l.wiovs[2*i : 2*i+2]
	iov[0].Base = unsafe.SliceData(frame)
	iov[0].SetLen(len(frame))
	niov := 1
	if len(frame) < MinFrameLen {
		iov[1].Base = &l.pad[0]
		iov[1].SetLen(MinFrameLen - len(frame))
		niov = 2
	}
	m := &l.wmsgs[i]
	m.Hdr.Iov = &iov[0]
	m.Hdr.SetIovlen(niov)
	m.Len = 0
}

// sendLocked sends the first count messages of the write scratch, calling
// sendmmsg until all are sent or one fails. The caller holds wmu.
func (l *RawLink) sendLocked(count int) (int, error) {
	defer func() {
		for i := range count {
			l.wiovs[2*i].Base = nil // do not keep the caller's frames alive
		}
	}()
	sent := 0
	for sent < count {
		l.woff, l.wcount = sent, count-sent
		if err := l.rc.Write(l.writeMany); err != nil {
			l.sendErrors.Add(1)
			return sent, l.ioError("write", err)
		}
		if l.werrno != 0 {
			l.sendErrors.Add(1)
			if l.werrno == unix.EMSGSIZE {
				// The MTU dropped since it was last read.
				l.mtuMu.Lock()
				_ = l.refreshMTULocked()
				l.mtuMu.Unlock()
				return sent, l.errorf("write", fmt.Errorf("MTU %d: %w: %w", l.mtu.Load(), ErrFrameTooLarge, os.NewSyscallError("sendmmsg", l.werrno)))
			}
			return sent, l.ioError("write", os.NewSyscallError("sendmmsg", l.werrno))
		}
		if l.wsent <= 0 {
			return sent, l.errorf("write", io.ErrShortWrite)
		}
		var bytes uint64
		for _, m := range l.wmsgs[sent : sent+l.wsent] {
			bytes += uint64(m.Len)
		}
		sent += l.wsent
		l.framesOut.Add(uint64(l.wsent))
		l.bytesOut.Add(bytes)
	}
	return sent, nil
}

// ioctlMTU is the RawConn.Control callback that reads the interface's MTU.
func (l *RawLink) ioctlMTU(fd uintptr) {
	l.mtuErr = unix.IoctlIfreq(int(fd), unix.SIOCGIFMTU, l.ifreq)
}

// refreshMTULocked re-reads the MTU. The caller holds mtuMu. On failure
// the last known MTU stays.
func (l *RawLink) refreshMTULocked() error {
	l.mtuChecked.Store(int64(time.Since(l.start)))
	err := l.rc.Control(l.mtuCtl)
	if err == nil {
		err = l.mtuErr
	}
	if err != nil {
		return os.NewSyscallError("ioctl SIOCGIFMTU", err)
	}
	l.mtu.Store(int64(l.ifreq.Uint32()))
	return nil
}

// MTU implements Link: the interface's MTU, re-read when the cached value
// is older than 250 ms and right after the kernel refuses a frame as too
// large.
func (l *RawLink) MTU() int {
	if time.Since(l.start)-time.Duration(l.mtuChecked.Load()) >= mtuRefreshInterval && l.mtuMu.TryLock() {
		_ = l.refreshMTULocked()
		l.mtuMu.Unlock()
	}
	return int(l.mtu.Load())
}

// HardwareAddr implements Link: the interface's address when the link was
// opened.
func (l *RawLink) HardwareAddr() MAC { return l.mac }

// Interface reports the name of the link's network interface.
func (l *RawLink) Interface() string { return l.iface }

// SetReadDeadline makes a pending and future reads fail with an error
// wrapping os.ErrDeadlineExceeded once t passes; the zero time clears it.
func (l *RawLink) SetReadDeadline(t time.Time) error {
	if err := l.conn.SetReadDeadline(t); err != nil {
		return l.ioError("set read deadline", err)
	}
	return nil
}

// Stats reports the link's counters.
func (l *RawLink) Stats() RawStats {
	l.dropsMu.Lock()
	if !l.closed.Load() {
		if st, err := l.conn.Stats(); err == nil {
			l.drops += uint64(st.Drops)
		}
	}
	drops := l.drops
	l.dropsMu.Unlock()
	return RawStats{
		FramesIn:    l.framesIn.Load(),
		BytesIn:     l.bytesIn.Load(),
		FramesOut:   l.framesOut.Load(),
		BytesOut:    l.bytesOut.Load(),
		SendErrors:  l.sendErrors.Load(),
		KernelDrops: drops,
		Truncated:   l.truncated.Load(),
	}
}

// Close implements Link: it closes the socket, and a pending read returns
// an error wrapping net.ErrClosed. Closing twice is harmless.
func (l *RawLink) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	l.dropsMu.Lock()
	defer l.dropsMu.Unlock()
	if st, err := l.conn.Stats(); err == nil {
		l.drops += uint64(st.Drops) // keep the last count for Stats
	}
	if err := l.conn.Close(); err != nil {
		return l.errorf("close", err)
	}
	return nil
}

var _ BatchLink = (*RawLink)(nil)
