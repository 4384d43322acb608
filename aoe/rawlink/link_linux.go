//go:build linux

package rawlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe"
)

// Link is a Link on a network interface: an AF_PACKET socket moving
// whole Ethernet frames. It implements aoe.BatchLink, reading through a
// receive ring shared with the kernel (or with recvmmsg) and sending with
// sendmmsg; it allocates nothing per frame.
//
// An untagged link's socket is bound to aoe.EtherType, and its filter passes
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
// Neither filter looks at a frame's destination, so a Link also sees
// frames addressed to other stations that reach the interface (flooded by
// a switch, or on a promiscuous interface) and leaves it to its user to
// drop them. Among those an untagged link may see tagged ones: the kernel
// hands its socket a tagged frame with the tag removed, marked as for
// another host, so its filter can drop those addressed to this station or
// to a group, but cannot tell one addressed to another station from an
// untagged one.
//
// A Link is safe for concurrent use by several readers and writers. The
// socket serves concurrent reads one at a time, each reader taking the
// frames queued when its turn comes, and serializes writes.
type Link struct {
	iface string
	// fd is the socket. It is not in Go's poller: with a descriptor in
	// the poller's epoll set, every frame the socket receives and every
	// sent frame the kernel frees runs an epoll wake-up, for nothing, as
	// the link waits in its own ppoll. users counts the operations using
	// fd; Close closes it once they are done.
	fd     int
	users  atomic.Int32
	rmu    sync.Mutex // serializes readers
	mac    aoe.MAC
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
	// once; rmu then serves them one at a time, in turn. The scratch
	// holds the system call's arguments and the callbacks that make it,
	// made once per scratch: a closure made per call would allocate.
	rfreeMu sync.Mutex
	rfree   []*readScratch
	// A read that finds no frame queued waits for one in ppoll, rather
	// than parking in Go's poller: that saves the thread wake-ups of the
	// poller and of the runtime's monitor that each frame would cost a
	// target that is idle between requests. It also waits for wake, an
	// eventfd that Close and SetReadDeadline write to, and then looks at
	// closing and the deadline again.
	// ringMode says reads take frames from ring, the socket's receive
	// ring (the reader holding rmu owns it); when a new ring for a larger
	// MTU cannot be made, reads go on with recvmmsg (Ring reports false).
	// Close unmaps the ring once no operation uses the socket. ringMu
	// guards replacing the ring against Waiting. ringLost counts the
	// frames lost with a ring taken down for a larger one.
	ringMode   atomic.Bool
	readBuffer int // Config.ReadBuffer, which sizes the ring
	ringMu     sync.RWMutex
	ring       *rxRing
	ringLost   atomic.Uint64
	// busyPoll is Config.BusyPoll; lastGap how long the ring stayed
	// empty before its latest frame, which says whether to watch it
	// (the reader holding rmu owns it).
	busyPoll time.Duration
	lastGap  time.Duration
	watched  atomic.Uint64

	wake     int          // -1 once closed
	wakeMu   sync.Mutex   // guards writing to wake against closing it
	deadline atomic.Int64 // the read deadline as UnixNano, or 0

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
	pad       [aoe.MinFrameLen]byte

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

// Listen opens a Link on the named interface. It needs CAP_NET_RAW.
// The interface is looked up in the calling thread's network namespace, and
// the link stays in that namespace. A VLAN above MaxVLAN gets an error
// wrapping ErrInvalidVLAN.
func Listen(iface string, cfg Config) (*Link, error) {
	fail := func(err error) (*Link, error) {
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
	if len(ifi.HardwareAddr) != len(aoe.MAC{}) {
		return fail(fmt.Errorf("not an Ethernet interface (hardware address %q)", ifi.HardwareAddr))
	}
	mac := aoe.MACFrom(ifi.HardwareAddr)
	proto := aoe.EtherType
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
	fd, err := takeSocket(conn)
	if err != nil {
		return fail(err)
	}
	l, err := newLink(iface, fd, mac, ifreq, cfg)
	if err != nil {
		unix.Close(fd)
		return fail(err)
	}
	return l, nil
}

// takeSocket takes conn's socket out of Go's poller: it returns a
// duplicate of its descriptor (non-blocking, as the original) and closes
// conn, which removes the original from the poller's epoll set.
func takeSocket(conn *packet.Conn) (int, error) {
	defer conn.Close()
	rc, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", dupErr)
	}
	return fd, nil
}

// newLink sets up a link around a bound, non-blocking socket.
func newLink(iface string, fd int, mac aoe.MAC, ifreq *unix.Ifreq, cfg Config) (*Link, error) {
	l := &Link{
		iface: iface,
		fd:    fd,
		mac:   mac,
		vlan:  cfg.VLAN,
		start: time.Now(),
		ifreq: ifreq,
	}
	var err error
	if l.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	binary.BigEndian.PutUint16(l.tag[0:2], vlanTPID)
	binary.BigEndian.PutUint16(l.tag[2:4], cfg.VLAN) // priority 0
	l.putScratch(l.newScratch())
	l.growWriteLocked(initialBatch)
	l.mtuCtl = l.ioctlMTU
	l.writeMany = l.sendmmsg

	err = setSockopts(fd, cfg)
	if err == nil {
		l.mtuMu.Lock()
		err = l.refreshMTULocked()
		l.mtuMu.Unlock()
	}
	if err == nil && !cfg.NoRing {
		// Without a ring (an old kernel, no memory for it) the link
		// reads with recvmmsg.
		l.readBuffer, l.busyPoll = cfg.ReadBuffer, cfg.BusyPoll
		l.ring, _ = newRxRing(fd, cfg.ReadBuffer, int(l.mtu.Load()))
		l.ringMode.Store(l.ring != nil)
	}
	if err != nil {
		unix.Close(l.wake)
		return nil, err
	}
	return l, nil
}

// setSockopts asks the kernel not to hand the socket frames the host
// sends (the filter drops them too, on kernels without the option), on a
// VLAN link to report each frame's VLAN tag, and sizes its buffers.
func setSockopts(fd int, cfg Config) error {
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

// errorf wraps err with the link and the operation that failed.
func (l *Link) errorf(op string, err error) error {
	return fmt.Errorf("aoe: raw link %s: %s: %w", l.iface, op, err)
}

// ioError turns an error from RawConn.Read or Write into the link's: after
// Close it wraps net.ErrClosed, as the Link contract asks.
func (l *Link) ioError(op string, err error) error {
	if l.closed.Load() {
		return l.errorf(op, net.ErrClosed)
	}
	return l.errorf(op, err)
}

// callNonblocking makes a system call on the non-blocking socket,
// retrying it when a signal interrupts it. done is false when the call
// would block. The pointers among the arguments point into the fields of
// the link or of a read scratch, which keep what they point to alive.
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

// ioctlMTU is the RawConn.Control callback that reads the interface's MTU.
func (l *Link) ioctlMTU(fd uintptr) {
	l.mtuErr = unix.IoctlIfreq(int(fd), unix.SIOCGIFMTU, l.ifreq)
}

// refreshMTULocked re-reads the MTU. The caller holds mtuMu. On failure
// the last known MTU stays.
func (l *Link) refreshMTULocked() error {
	l.mtuChecked.Store(int64(time.Since(l.start)))
	if !l.acquire() {
		return net.ErrClosed
	}
	l.mtuCtl(uintptr(l.fd))
	l.release()
	if err := l.mtuErr; err != nil {
		return os.NewSyscallError("ioctl SIOCGIFMTU", err)
	}
	l.mtu.Store(int64(l.ifreq.Uint32()))
	return nil
}

// MTU implements Link: the interface's MTU, re-read when the cached value
// is older than 250 ms and right after the kernel refuses a frame as too
// large.
func (l *Link) MTU() int {
	if time.Since(l.start)-time.Duration(l.mtuChecked.Load()) >= mtuRefreshInterval && l.mtuMu.TryLock() {
		_ = l.refreshMTULocked()
		l.mtuMu.Unlock()
	}
	return int(l.mtu.Load())
}

// HardwareAddr implements Link: the interface's address when the link was
// opened.
func (l *Link) HardwareAddr() aoe.MAC { return l.mac }

// VLAN reports the 802.1Q VLAN ID the link tags its frames with, or 0 for
// an untagged link.
func (l *Link) VLAN() uint16 { return l.vlan }

// Ring reports whether the link reads through a receive ring shared with
// the kernel (see Config.NoRing) rather than with recvmmsg.
func (l *Link) Ring() bool { return l.ringMode.Load() }

// Interface reports the name of the link's network interface.
func (l *Link) Interface() string { return l.iface }

// Stats reports the link's counters.
func (l *Link) Stats() Stats {
	l.dropsMu.Lock()
	if l.acquire() {
		l.drops += l.kernelDrops()
		l.release()
	}
	drops := l.drops + l.ringLost.Load()
	l.dropsMu.Unlock()
	return Stats{
		FramesIn:    l.framesIn.Load(),
		BytesIn:     l.bytesIn.Load(),
		FramesOut:   l.framesOut.Load(),
		BytesOut:    l.bytesOut.Load(),
		SendErrors:  l.sendErrors.Load(),
		KernelDrops: drops,
		Truncated:   l.truncated.Load(),
		Watched:     l.watched.Load(),
	}
}

// kernelDrops reads and resets the kernel's count of frames dropped for
// want of room (PACKET_STATISTICS). The caller has acquired the socket.
func (l *Link) kernelDrops() uint64 {
	st, err := unix.GetsockoptTpacketStats(l.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return uint64(st.Drops)
}

// acquire registers an operation on the socket, unless the link is
// closed: Close closes the socket only once every registered operation
// has released it, so none can reach a descriptor number reused since.
func (l *Link) acquire() bool {
	l.users.Add(1)
	if l.closed.Load() {
		l.users.Add(-1)
		return false
	}
	return true
}

// release ends an operation acquire registered.
func (l *Link) release() { l.users.Add(-1) }

// Close implements Link: it closes the socket, and a pending read returns
// an error wrapping net.ErrClosed. Closing twice is harmless.
func (l *Link) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	l.dropsMu.Lock()
	defer l.dropsMu.Unlock()
	// Operations under way see closed once woken: a reader in ppoll by
	// the eventfd, a writer waiting for room within writeWait.
	l.wakeReader()
	for l.users.Load() > 0 {
		time.Sleep(100 * time.Microsecond)
	}
	l.drops += l.kernelDrops() // keep the last count for Stats
	l.ringMu.Lock()
	if l.ring != nil {
		_ = l.ring.close(-1) // the socket goes next: only unmap
		l.ring = nil
	}
	l.ringMu.Unlock()
	err := unix.Close(l.fd)
	l.wakeMu.Lock()
	unix.Close(l.wake)
	l.wake = -1
	l.wakeMu.Unlock()
	if err != nil {
		return l.errorf("close", os.NewSyscallError("close", err))
	}
	return nil
}

var _ aoe.BatchLink = (*Link)(nil)
