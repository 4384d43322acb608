package aoe

import (
	"errors"
	"time"
)

// RawConfig configures a RawLink. The zero value is a usable default.
type RawConfig struct {
	// ReadBuffer and WriteBuffer size the socket's receive and send
	// buffers (SO_RCVBUF and SO_SNDBUF) in bytes; 0 keeps the kernel's
	// default. When the process may (it is root), the sizes are forced past
	// net.core.rmem_max and wmem_max.
	ReadBuffer, WriteBuffer int
	// VLAN is the 802.1Q VLAN ID to tag frames with, or 0 for untagged
	// frames. Tagging is not implemented yet: a non-zero VLAN makes
	// ListenRaw fail with ErrVLANUnsupported.
	VLAN uint16
}

// RawStats counts what a RawLink has moved since it was opened.
type RawStats struct {
	// FramesIn and BytesIn count the frames read and their bytes (as
	// delivered to the caller, so at most the buffer's length).
	FramesIn, BytesIn uint64
	// FramesOut and BytesOut count the frames the kernel accepted for
	// sending and their bytes, padding included.
	FramesOut, BytesOut uint64
	// SendErrors counts frames the kernel refused (too large, no buffer
	// space, interface down). Frames refused before a send is attempted
	// because they are larger than the MTU allows are counted too.
	SendErrors uint64
	// KernelDrops counts frames the kernel dropped because the socket's
	// receive buffer was full (PACKET_STATISTICS tp_drops).
	KernelDrops uint64
	// Truncated counts frames longer than the buffer they were read into.
	Truncated uint64
}

// ErrVLANUnsupported is returned by ListenRaw for a RawConfig with a
// non-zero VLAN: 802.1Q tagging is not yet supported.
var ErrVLANUnsupported = errors.New("802.1Q VLAN tagging not yet supported")

// mtuRefreshInterval bounds how stale RawLink.MTU may be: the interface's
// MTU is re-read at most this often (and at once after the kernel refuses a
// frame as too large).
const mtuRefreshInterval = 250 * time.Millisecond

// maxBatch is the most frames one recvmmsg or sendmmsg call moves: the
// kernel's UIO_MAXIOV, which caps vlen.
const maxBatch = 1024
