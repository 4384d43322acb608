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

// RawLink is a Link on a network interface: an AF_PACKET socket moving
// whole Ethernet frames. It implements BatchLink with recvmmsg and
// sendmmsg, and allocates nothing per frame.
//
// An untagged link's socket is bound to EtherType, and its filter passes
// only untagged AoE frames the interface received. A VLAN link's socket
// is bound to every protocol: Linux takes the 802.1Q tag out of a received
// frame before it looks at the protocol, and without a VLAN device for the
// tag it hands sockets bound to the inner protocol the frame with the tag
// discarded. Its filter passes only AoE frames of its VLAN, whose tag the
// kernel reports as packet auxdata (or, behind a priority tag, leaves in
// the frame); the link removes the tag before handing a frame over, and
// inserts one into every frame it sends. A VLAN link thus sees frames
// before nftables' netdev ingress hook, while an untagged link sees them
// after it.
//
// Neither filter looks at a frame's destination, so a RawLink also sees
// frames addressed to other stations that reach the interface (flooded by
// a switch, or on a promiscuous interface) and leaves it to its user to
// drop them. Among those an untagged link may see tagged ones: the kernel
// hands its socket a tagged frame with the tag removed, marked as for
// another host, so its filter can drop those addressed to this station or
// to a group, but cannot tell one addressed to another station from an
// untagged one.
//
// A RawLink is safe for concurrent use by several readers and writers. The
// socket serves concurrent reads one at a time, each reader taking the
// frames queued when its turn comes, and serializes writes.
type RawLink struct {
	iface  string
	conn   *packet.Conn
	rc     syscall.RawConn
	mac    MAC
	vlan   uint16
	tag    [vlanTagLen]byte // the 802.1Q tag sent, on a VLAN link
	start  time.Time        // origin of mtuChecked: a monotonic clock
	closed atomic.Bool

	// The MTU is cached and re-read with an ioctl on the socket itself, so
	// it resolves the interface in the socket's network namespace.
	mtu        atomic.Int64
	mtuChecked atomic.Int64 // time.Since(start) at the last refresh
	mtuMu      sync.Mutex   // serializes refreshes; guards ifreq and mtuErr
	ifreq      *unix.Ifreq
	mtuErr     error
	mtuCtl     func(fd uintptr)

	// Read side. Each read call takes a readScratch from rfree (making
	// one when every one is in use), so several goroutines may read at
	// once; the socket then serves them one at a time, in turn. The
	// scratch holds the system call's arguments and the callbacks handed
	// to RawConn.Read, made once per scratch: a closure made per call
	// would allocate.
	rfreeMu sync.Mutex
	rfree   []*readScratch
	// A read that finds no frame queued waits for one in ppoll, inside
	// RawConn.Read, rather than parking in Go's poller: that saves the
	// thread wake-ups of the poller and of the runtime's monitor that
	// each frame would cost a target that is idle between requests. It
	// also waits for wake, an eventfd that Close and SetReadDeadline
	// write to, and goes back to Go's poller, which knows deadlines and
	// closing, when it fires or the deadline passes.
	wake     int          // -1 once closed
	wakeMu   sync.Mutex   // guards writing to wake against closing it
	deadline atomic.Int64 // the read deadline as UnixNano, or 0
	waiting  atomic.Int32 // readers in ppoll, or about to be

	// Write side, the same way; wmu serializes writers. Each message has
	// up to writeIovs iovecs: the frame (on a VLAN link split around the
	// tag) and, for a short frame, padding from pad.
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

// writeIovs is the most iovecs a sent frame needs: on a VLAN link, the
// addresses, the tag, the rest of the frame and padding.
const writeIovs = 4

// auxSpace is the control buffer room for the PACKET_AUXDATA message that
// comes with each frame a VLAN link reads.
var auxSpace = unix.CmsgSpace(sizeofAuxdata)

// ListenRaw opens a RawLink on the named interface. It needs CAP_NET_RAW.
// The interface is looked up in the calling thread's network namespace, and
// the link stays in that namespace. A VLAN above MaxVLAN gets an error
// wrapping ErrInvalidVLAN.
func ListenRaw(iface string, cfg RawConfig) (*RawLink, error) {
	fail := func(err error) (*RawLink, error) {
		return nil, fmt.Errorf("aoe: raw link %s: listen: %w", iface, err)
	}
	if cfg.VLAN > MaxVLAN {
		return fail(fmt.Errorf("VLAN %d: %w", cfg.VLAN, ErrInvalidVLAN))
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
	proto := EtherType
	var filter []bpf.RawInstruction
	if cfg.VLAN == 0 {
		filter, err = rawFilter(mac)
	} else {
		proto = unix.ETH_P_ALL
		filter, err = vlanFilter(cfg.VLAN)
	}
	if err != nil {
		return fail(err)
	}
	// The filter is attached before the socket is bound, so no frame
	// reaches it unfiltered.
	conn, err := packet.Listen(ifi, packet.Raw, proto, &packet.Config{Filter: filter})
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
		vlan:  cfg.VLAN,
		start: time.Now(),
		ifreq: ifreq,
	}
	if l.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	binary.BigEndian.PutUint16(l.tag[0:2], vlanTPID)
	binary.BigEndian.PutUint16(l.tag[2:4], cfg.VLAN) // priority 0
	l.putScratch(l.newScratch())
	l.growWriteLocked(initialBatch)
	l.mtuCtl = l.ioctlMTU
	l.writeMany = l.sendmmsg

	var optErr error
	err = rc.Control(func(fd uintptr) { optErr = setRawSockopts(int(fd), cfg) })
	if err == nil {
		err = optErr
	}
	if err == nil {
		l.mtuMu.Lock()
		err = l.refreshMTULocked()
		l.mtuMu.Unlock()
	}
	if err != nil {
		unix.Close(l.wake)
		return nil, err
	}
	return l, nil
}

// setRawSockopts asks the kernel not to hand the socket frames the host
// sends (the filter drops them too, on kernels without the option), on a
// VLAN link to report each frame's VLAN tag, and sizes its buffers.
func setRawSockopts(fd int, cfg RawConfig) error {
	err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		return os.NewSyscallError("setsockopt PACKET_IGNORE_OUTGOING", err)
	}
	if cfg.VLAN != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return os.NewSyscallError("setsockopt PACKET_AUXDATA", err)
		}
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

// vlanFilter assembles the socket filter of a link on VLAN vid, bound to
// every protocol. It keeps AoE frames the interface received with an
// 802.1Q tag of vid and drops the rest: the host's own frames, untagged
// frames and other VLANs'.
//
// The kernel has taken the outermost tag out of the frame and set it
// aside, where the filter reads it with the VLAN extensions. A tag with
// VLAN ID 0 only carries a priority: Linux then takes the next tag, still
// in the frame, for the VLAN, and so does the filter.
func vlanFilter(vid uint16) ([]bpf.RawInstruction, error) {
	const (
		inFrame = 10 // index of the in-frame tag checks
		inner   = 17 // index of the EtherType check of an untagged frame
		accept  = 19 // index of the accepting return
		drop    = 20 // index of the dropping return
	)
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: drop - 2},
		/* 2 */ bpf.LoadExtension{Num: bpf.ExtVLANTagPresent},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: inFrame - 4},
		/* 4 */ bpf.LoadExtension{Num: bpf.ExtVLANTag},
		/* 5 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlanIDMask},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: inFrame - 7},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(vid), SkipTrue: drop - 8},
		/* 8 */ bpf.LoadExtension{Num: bpf.ExtVLANProto},
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: vlanTPID, SkipTrue: inner - 10, SkipFalse: drop - 10},
		// The tag is still in the frame.
		/* 10 */ bpf.LoadAbsolute{Off: vlanTagOff, Size: 2},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: vlanTPID, SkipTrue: drop - 12},
		/* 12 */ bpf.LoadAbsolute{Off: vlanTagOff + 2, Size: 2},
		/* 13 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlanIDMask},
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(vid), SkipTrue: drop - 15},
		/* 15 */ bpf.LoadAbsolute{Off: vlanInnerET, Size: 2},
		/* 16 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: EtherType, SkipTrue: accept - 17, SkipFalse: drop - 17},
		// The tag was set aside.
		/* 17 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 18 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: EtherType, SkipTrue: accept - 19, SkipFalse: drop - 19},
		/* 19 */ bpf.RetConstant{Val: filterAccept},
		/* 20 */ bpf.RetConstant{Val: filterDrop},
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
// poller. The pointers among the arguments point into the fields of the
// link or of a read scratch, which keep what they point to alive.
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

// readScratch is what one read call works with: the arguments of its
// recvfrom or recvmmsg, and what the kernel returned.
type readScratch struct {
	l                 *RawLink
	buf               []byte // recvfrom's buffer
	msgs              []unix.Mmsghdr
	iovs              []unix.Iovec // two per message: the buffer, then its spill
	count             int          // messages handed to recvmmsg
	n                 int
	errno             unix.Errno
	recvOne, recvMany func(fd uintptr) bool
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
func (l *RawLink) newScratch() *readScratch {
	sc := &readScratch{l: l}
	sc.recvOne = sc.recvfrom
	sc.recvMany = sc.recvmmsg
	sc.grow(initialBatch)
	return sc
}

// getScratch takes an idle read scratch, or makes one.
func (l *RawLink) getScratch() *readScratch {
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
func (l *RawLink) putScratch(sc *readScratch) {
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
// reports false for the read to wait in Go's poller instead: when the
// deadline has passed or changed, or the link is closing. Go's poller is
// the slow path; reaching it costs one read more wake-ups.
//
// Reads of a socket run their callbacks one at a time, so one reader at
// most waits here.
func (sc *readScratch) wait(fd uintptr) bool {
	l := sc.l
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
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
	}
	return true // a frame, or the timeout: read again
}

// wakeReader makes a reader waiting in ppoll look at the deadline and at
// closing again.
func (l *RawLink) wakeReader() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	l.wakeMu.Lock()
	defer l.wakeMu.Unlock()
	if l.wake >= 0 {
		_, _ = unix.Write(l.wake, one[:])
	}
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
	sc := l.getScratch()
	defer l.putScratch(sc)
	if l.vlan != 0 {
		// The tag's whereabouts come as a control message, which
		// recvfrom cannot read.
		sc.one[0] = b
		_, err := sc.readFrames(sc.one[:], sc.oneLen[:])
		sc.one[0] = nil
		if err != nil {
			return 0, err
		}
		return sc.oneLen[0], nil
	}
	sc.buf = b
	err := l.rc.Read(sc.recvOne)
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

// ReadFrames implements BatchLink with one recvmmsg call: it waits for a
// frame, then takes the ones already queued, up to len(bufs) (and at most
// 1024). A frame longer than its buffer is truncated.
func (l *RawLink) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	count := min(len(bufs), len(lens), maxBatch)
	if count == 0 {
		return 0, nil
	}
	sc := l.getScratch()
	defer l.putScratch(sc)
	return sc.readFrames(bufs[:count], lens)
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
		err := l.rc.Read(sc.recvMany)
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
		l.growWriteLocked(len(chunk))
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

// growWriteLocked makes the write scratch hold at least count messages
// (count is at most maxBatch). The caller holds wmu.
func (l *RawLink) growWriteLocked(count int) {
	if len(l.wmsgs) >= count {
		return
	}
	size := min(max(count, 2*len(l.wmsgs)), maxBatch)
	l.wmsgs = make([]unix.Mmsghdr, size)
	l.wiovs = make([]unix.Iovec, writeIovs*size)
}

// checkFrame refuses a frame the kernel would: shorter than an Ethernet
// header, or longer than the MTU allows. A VLAN tag does not count against
// the MTU: Linux lets a tagged frame carry MTU bytes after its tag.
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
// MinFrameLen; on a VLAN link, with the tag inserted after the addresses.
// The padding keeps the frame MinFrameLen long once a switch removes the
// tag.
func (l *RawLink) setWriteMsg(i int, frame []byte) {
	iov := l.wiovs[writeIovs*i : writeIovs*(i+1)]
	niov := 0
	add := func(p *byte, n int) {
		iov[niov].Base = p
		iov[niov].SetLen(n)
		niov++
	}
	if l.vlan == 0 {
		add(unsafe.SliceData(frame), len(frame))
	} else {
		add(&frame[0], vlanTagOff)
		add(&l.tag[0], vlanTagLen)
		add(&frame[vlanTagOff], len(frame)-vlanTagOff)
	}
	if len(frame) < MinFrameLen {
		add(&l.pad[0], MinFrameLen-len(frame))
	}
	m := &l.wmsgs[i]
	m.Hdr.Iov = &iov[0]
	m.Hdr.SetIovlen(niov)
	m.Len = 0
}

// sendLocked sends the first count messages of the write scratch, calling
// sendmmsg until all are sent or one fails. The caller holds wmu.
func (l *RawLink) sendLocked(count int) (int, error) {
	defer clear(l.wiovs[:writeIovs*count]) // do not keep the caller's frames alive
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

// VLAN reports the 802.1Q VLAN ID the link tags its frames with, or 0 for
// an untagged link.
func (l *RawLink) VLAN() uint16 { return l.vlan }

// Interface reports the name of the link's network interface.
func (l *RawLink) Interface() string { return l.iface }

// SetReadDeadline makes a pending and future reads fail with an error
// wrapping os.ErrDeadlineExceeded once t passes; the zero time clears it.
func (l *RawLink) SetReadDeadline(t time.Time) error {
	if err := l.conn.SetReadDeadline(t); err != nil {
		return l.ioError("set read deadline", err)
	}
	var d int64
	if !t.IsZero() {
		d = max(t.UnixNano(), 1)
	}
	l.deadline.Store(d)
	l.wakeReader()
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
	l.wakeReader()
	err := l.conn.Close()
	// The eventfd goes once no reader can be polling it: a reader in
	// ppoll has been woken, and one about to enter sees closed.
	for l.waiting.Load() > 0 {
		time.Sleep(100 * time.Microsecond)
	}
	l.wakeMu.Lock()
	unix.Close(l.wake)
	l.wake = -1
	l.wakeMu.Unlock()
	if err != nil {
		return l.errorf("close", err)
	}
	return nil
}

var _ BatchLink = (*RawLink)(nil)
