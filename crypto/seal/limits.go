package seal

import (
	"sync"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Limits bound a session's life and the handshake rate. The zero value of
// each field picks the default below; docs/auth.md explains the numbers.
type Limits struct {
	// RekeyAfterFrames and RekeyAfterTime: an initiator starts a new
	// handshake once its session has sealed this many frames or is this
	// old, and moves to the new session when it is confirmed.
	RekeyAfterFrames uint64
	RekeyAfterTime   time.Duration
	// RejectAfterFrames and RejectAfterTime: neither side sends or accepts
	// a frame of a session past these; they leave a rekey the time to
	// finish.
	RejectAfterFrames uint64
	RejectAfterTime   time.Duration
	// HandshakeRate and HandshakeBurst bound the handshake messages a
	// target answers from one MAC (per second, and at once);
	// GlobalHandshakeRate bounds them from MACs without a live session,
	// all together.
	HandshakeRate       float64
	HandshakeBurst      int
	GlobalHandshakeRate float64
	// MaxSessions bounds a target's live sessions.
	MaxSessions int
}

// Defaults for Limits.
const (
	DefaultRekeyAfterFrames    = 1 << 32
	DefaultRejectAfterFrames   = 1<<32 + 1<<30
	DefaultRekeyAfterTime      = 2 * time.Minute
	DefaultRejectAfterTime     = 3 * time.Minute
	DefaultHandshakeRate       = 20
	DefaultHandshakeBurst      = 20
	DefaultGlobalHandshakeRate = 1000
	DefaultMaxSessions         = 4096
)

// withDefaults fills the zero fields of l.
func (l Limits) withDefaults() Limits {
	set := func(p *uint64, v uint64) {
		if *p == 0 {
			*p = v
		}
	}
	set(&l.RekeyAfterFrames, DefaultRekeyAfterFrames)
	set(&l.RejectAfterFrames, DefaultRejectAfterFrames)
	if l.RejectAfterFrames <= l.RekeyAfterFrames {
		l.RejectAfterFrames = l.RekeyAfterFrames + l.RekeyAfterFrames/4 + 1
	}
	if l.RekeyAfterTime == 0 {
		l.RekeyAfterTime = DefaultRekeyAfterTime
	}
	if l.RejectAfterTime == 0 {
		l.RejectAfterTime = DefaultRejectAfterTime
	}
	if l.RejectAfterTime <= l.RekeyAfterTime {
		l.RejectAfterTime = l.RekeyAfterTime + l.RekeyAfterTime/2
	}
	if l.HandshakeRate == 0 {
		l.HandshakeRate = DefaultHandshakeRate
	}
	if l.HandshakeBurst == 0 {
		l.HandshakeBurst = DefaultHandshakeBurst
	}
	if l.GlobalHandshakeRate == 0 {
		l.GlobalHandshakeRate = DefaultGlobalHandshakeRate
	}
	if l.MaxSessions == 0 {
		l.MaxSessions = DefaultMaxSessions
	}
	return l
}

// bucket is a token bucket on a monotonic clock.
type bucket struct {
	tokens float64
	last   time.Duration
}

func (b *bucket) take(now time.Duration, rate float64, burst int) bool {
	b.tokens = min(float64(burst), b.tokens+rate*(now-b.last).Seconds())
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// maxLimited bounds the per-MAC buckets; past it the table starts over,
// which only a flood from many MACs causes (the global bucket holds then).
const maxLimited = 4096

// limiter rate-limits the handshake messages a target answers: per MAC,
// and, for MACs without a live session, all together, so that a flood
// from random MACs costs bounded CPU and no memory, and cannot starve the
// rekeys of live peers.
type limiter struct {
	mu     sync.Mutex
	perMAC map[aoe.MAC]*bucket
	global bucket
}

func (l *limiter) allow(mac aoe.MAC, live bool, now time.Duration, lim *Limits) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !live && !l.global.take(now, lim.GlobalHandshakeRate, int(lim.GlobalHandshakeRate)) {
		return false
	}
	b := l.perMAC[mac]
	if b == nil {
		if l.perMAC == nil || len(l.perMAC) >= maxLimited {
			l.perMAC = make(map[aoe.MAC]*bucket)
		}
		b = &bucket{tokens: float64(lim.HandshakeBurst), last: now}
		l.perMAC[mac] = b
	}
	return b.take(now, lim.HandshakeRate, lim.HandshakeBurst)
}
