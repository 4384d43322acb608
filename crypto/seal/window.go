package seal

// windowWords is the replay window's bitmap in 64-bit words. One word is
// the slack of RFC 6479: the window slides a word at a time and never
// shifts bits.
const windowWords = 128

// WindowSize is how far behind the newest accepted number a number may
// come and still be accepted once: 8128 frames.
const WindowSize = (windowWords - 1) * 64

// A Window accepts each number at most once, within WindowSize of the
// newest it accepted: the anti-replay window of RFC 6479, which tolerates
// loss and reordering. Number 0 is never accepted. The zero Window is ready
// to use; it is not safe for concurrent use.
type Window struct {
	top  uint64 // newest number accepted
	bits [windowWords]uint64
}

// Check reports whether n would be accepted, without recording it. It lets
// a receiver drop a replay before it spends a tag check on it.
func (w *Window) Check(n uint64) bool {
	switch {
	case n == 0:
		return false
	case n > w.top:
		return true
	case w.top-n >= WindowSize:
		return false
	}
	return w.bits[(n/64)%windowWords]&(1<<(n%64)) == 0
}

// Accept records n and reports whether it was new and inside the window.
// Call it only once the frame carrying n has been authenticated.
func (w *Window) Accept(n uint64) bool {
	if !w.Check(n) {
		return false
	}
	if n > w.top {
		cur, next := w.top/64, n/64
		for i := uint64(1); i <= min(next-cur, windowWords); i++ {
			w.bits[(cur+i)%windowWords] = 0
		}
		w.top = n
	}
	w.bits[(n/64)%windowWords] |= 1 << (n % 64)
	return true
}

// Top reports the newest number accepted.
func (w *Window) Top() uint64 { return w.top }
