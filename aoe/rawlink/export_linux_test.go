//go:build linux

package rawlink

import "time"

// NextArrival returns the kernel's arrival stamp of the frame waiting next
// in l's ring, or the zero time. No read of l may run meanwhile: the
// reader owns the ring's position.
func NextArrival(l *Link) time.Time {
	l.ringMu.RLock()
	defer l.ringMu.RUnlock()
	return l.ring.arrival()
}
