package rawlink

import (
	"errors"
	"time"
)

// Config configures a Link. The zero value is a usable default.
type Config struct {
	// ReadBuffer and WriteBuffer size the socket's receive and send
	// buffers (SO_RCVBUF and SO_SNDBUF) in bytes; 0 keeps the kernel's
	// default. When the process may (it is root), the sizes are forced past
	// net.core.rmem_max and wmem_max.
	ReadBuffer, WriteBuffer int
	// VLAN is the 802.1Q VLAN ID, 1 to MaxVLAN, to tag frames with, or 0
	// for untagged frames. A VLAN link sends every frame with a tag (TPID
	// 0x8100, priority 0) and receives only AoE frames tagged with this
	// VLAN; the tag is added and removed in userspace, so no VLAN device
	// (and no 8021q kernel module) is needed, and the frames a caller
	// reads and writes stay untagged. An untagged link ignores tagged
	// frames.
	VLAN uint16
	// NoRing reads frames with recvmmsg instead of through a receive
	// ring shared with the kernel (PACKET_RX_RING), which a Link uses
	// when the kernel lets it: a read then costs no system call while
	// frames are waiting. ReadBuffer sizes the ring too: 4 times its
	// size (1 MiB if 0), since every slot of a ring holds a whole frame
	// while a socket buffer is charged a small frame's size.
	NoRing bool
	// BusyPoll, if positive, makes a read that finds the receive ring
	// empty watch it for up to this long before it sleeps, when the ring
	// stayed empty no longer than that before the frame read last. A
	// steady stream of requests (one client waiting for each answer) is
	// then served without waking the reader's CPU from idle for each,
	// which on a virtual machine costs more than the watching. Sparse
	// traffic costs at most one watch per burst of frames, an idle link
	// none. The gap ends at the kernel's arrival stamp of the frame, so a
	// reader's wake-up from sleep does not count in it.
	// Between looks the reader yields its CPU to any thread that wants it,
	// so a CPU-bound neighbour loses nothing. Only a link with a ring
	// watches; a watch ends at the read deadline.
	BusyPoll time.Duration
}

// Stats counts what a Link has moved since it was opened.
type Stats struct {
	// FramesIn and BytesIn count the frames read and their bytes (as
	// delivered to the caller, so at most the buffer's length).
	FramesIn, BytesIn uint64
	// FramesOut and BytesOut count the frames the kernel accepted for
	// sending and their bytes, padding and VLAN tag included.
	FramesOut, BytesOut uint64
	// SendErrors counts frames the kernel refused (too large, no buffer
	// space, interface down). Frames refused before a send is attempted
	// because they are larger than the MTU allows are counted too.
	SendErrors uint64
	// KernelDrops counts frames the kernel dropped because the socket's
	// receive buffer or ring was full (PACKET_STATISTICS tp_drops), and
	// frames lost with a receive ring taken down for a larger one.
	KernelDrops uint64
	// Truncated counts frames longer than the buffer they were read into,
	// and frames that outgrew their slot in a receive ring (the MTU rose),
	// which are dropped rather than delivered cut short.
	Truncated uint64
	// Watched counts the reads that found a frame by watching the
	// receive ring (Config.BusyPoll) instead of sleeping until one came.
	Watched uint64
}

// MaxVLAN is the largest 802.1Q VLAN ID a Link may use: 4095 is
// reserved, and 0 means untagged.
const MaxVLAN = 4094

// ErrInvalidVLAN is wrapped by Listen's error for a Config whose
// VLAN is above MaxVLAN.
var ErrInvalidVLAN = errors.New("802.1Q VLAN ID out of range: want 1 to 4094, or 0 for untagged")

// The 802.1Q tag a VLAN link inserts after the source address: the tag
// protocol identifier, then the tag control information (priority, drop
// eligibility and the 12-bit VLAN ID).
const (
	vlanTPID    = 0x8100
	vlanTagLen  = 4
	vlanIDMask  = 0x0fff
	vlanTagOff  = 12 // offset of the tag in a tagged frame
	vlanInnerET = vlanTagOff + vlanTagLen
)

// mtuRefreshInterval bounds how stale Link.MTU may be: the interface's
// MTU is re-read at most this often (and at once after the kernel refuses a
// frame as too large).
const mtuRefreshInterval = 250 * time.Millisecond

// maxBatch is the most frames one recvmmsg or sendmmsg call moves: the
// kernel's UIO_MAXIOV, which caps vlen.
const maxBatch = 1024
