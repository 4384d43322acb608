package aoe

import "errors"

// A Link sends and receives whole, untagged Ethernet frames that carry AoE.
// rawlink.Link is the real one (AF_PACKET on a network interface); aoetest.Hub
// provides in-memory ones for tests.
//
// A Link is safe for concurrent use: several goroutines may read and
// write at once, and each frame read goes to one of the readers. Close
// unblocks pending reads, which then return an error that wraps
// net.ErrClosed.
type Link interface {
	// ReadFrame reads the next AoE frame into b and returns its length.
	// A frame longer than b is truncated to len(b).
	ReadFrame(b []byte) (int, error)
	// WriteFrame sends one frame; its destination is in its first six
	// bytes. A frame shorter than MinFrameLen is padded.
	WriteFrame(b []byte) error
	// MTU reports the link's current MTU: the most bytes a frame may carry
	// after its Ethernet header. It follows changes to the interface.
	MTU() int
	// HardwareAddr reports the link's own Ethernet address.
	HardwareAddr() MAC
	// Close releases the link.
	Close() error
}

// A BatchLink moves several frames per call; rawlink.Link uses recvmmsg and
// sendmmsg for it. Callers that serve many frames should prefer it when a
// Link implements it.
type BatchLink interface {
	Link
	// ReadFrames reads up to len(bufs) frames, at least one, into bufs and
	// stores their lengths in lens (which is at least as long as bufs). It
	// returns how many it read.
	ReadFrames(bufs [][]byte, lens []int) (int, error)
	// WriteFrames sends frames in order and returns how many were sent.
	WriteFrames(frames [][]byte) (int, error)
}

// ErrFrameTooLarge is wrapped by WriteFrame when a frame is larger than the
// link's MTU allows.
var ErrFrameTooLarge = errors.New("frame larger than the link MTU")

// A Wrapper is a Link built on another one, such as a layer that seals
// frames. Unwrap returns the Link beneath, so that callers can reach
// capabilities (statistics, the interface name, a VLAN) of the link at the
// bottom of a chain. Batching and deadlines are not reached this way: a
// wrapper that supports them implements BatchLink or SetReadDeadline
// itself, since frames must pass through it.
type Wrapper interface {
	Unwrap() Link
}

// LinkAs reports the first link in l's chain of wrappers, l included, that
// is a T, in the manner of errors.As.
func LinkAs[T any](l Link) (T, bool) {
	for l != nil {
		if t, ok := l.(T); ok {
			return t, true
		}
		w, ok := l.(Wrapper)
		if !ok {
			break
		}
		l = w.Unwrap()
	}
	var zero T
	return zero, false
}
