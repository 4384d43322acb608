package seal

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Reason says why a frame was refused.
type Reason int

// Reasons for refusing a frame.
const (
	// RejectBadTag: the tag did not verify (forged or altered frame, or a
	// frame moved between sessions, devices or directions).
	RejectBadTag Reason = iota + 1
	// RejectReplay: the sequence number was seen before or is behind the
	// window.
	RejectReplay
	// RejectNoSession: the session id names no live session.
	RejectNoSession
	// RejectUnsealed: a plain frame for a keyed device, refused by policy.
	RejectUnsealed
	// RejectMalformed: a sealed or handshake frame that does not parse.
	RejectMalformed
	// RejectExpired: the session passed its time or frame limit.
	RejectExpired
	// RejectUnsolicited: an authentic response that answers no request
	// outstanding (initiator), or a reply the target had no request for.
	RejectUnsolicited
	// RejectHandshake: a handshake message that failed (unknown key, bad
	// proof or cookie, replayed finish, unexpected message).
	RejectHandshake
	// RejectRateLimited: a handshake message over the rate limit.
	RejectRateLimited
	numReasons
)

var reasonNames = [numReasons]string{
	RejectBadTag:      "bad_tag",
	RejectReplay:      "replay",
	RejectNoSession:   "no_session",
	RejectUnsealed:    "unsealed",
	RejectMalformed:   "malformed",
	RejectExpired:     "expired",
	RejectUnsolicited: "unsolicited",
	RejectHandshake:   "handshake_failed",
	RejectRateLimited: "rate_limited",
}

func (r Reason) String() string {
	if r > 0 && r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason %d", int(r))
}

// Reasons lists every Reason, in order, for exporters.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := Reason(1); r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

type rejectCounters [numReasons]atomic.Uint64

func (c *rejectCounters) snapshot() map[string]uint64 {
	m := make(map[string]uint64)
	for r := Reason(1); r < numReasons; r++ {
		if v := c[r].Load(); v > 0 {
			m[r.String()] = v
		}
	}
	return m
}

// Stats is a snapshot of a sealing link's state.
type Stats struct {
	// Role is "target" or "initiator".
	Role string `json:"role"`
	// Mode is "required" or "optional" (targets).
	Mode string `json:"mode,omitempty"`
	// Sessions is the number of live sessions.
	Sessions int `json:"sessions"`
	// Handshakes counts sessions established.
	Handshakes uint64 `json:"handshakes"`
	// FramesSealed and FramesOpened count sealed frames sent and received
	// (authenticated).
	FramesSealed uint64 `json:"frames_sealed"`
	FramesOpened uint64 `json:"frames_opened"`
	// UnsealedAccepted counts plain frames let through to a keyed device
	// in optional mode.
	UnsealedAccepted uint64 `json:"unsealed_accepted,omitempty"`
	// Rejected counts refused frames by reason (Reason.String).
	Rejected map[string]uint64 `json:"rejected"`
	// Peers are the stations a session was tried or held with.
	Peers []PeerStats `json:"peers"`
}

// PeerStats is what a sealing link knows of one peer for one device.
type PeerStats struct {
	MAC    string `json:"mac"`
	Device string `json:"device"`
	// State is "established", "handshaking", "failed" or "expired".
	State string `json:"state"`
	// Since is when State began.
	Since time.Time `json:"since"`
	// Session is the current session's id; KeyID the key it was made with.
	Session uint32 `json:"session,omitempty"`
	KeyID   uint32 `json:"key_id,omitempty"`
	// Suite is the current session's suite (hmac-sha256, aes-256-gcm).
	Suite string `json:"suite,omitempty"`
	// Rekeys counts sessions after the first.
	Rekeys uint64 `json:"rekeys"`
	// LastError says why the last handshake failed, if it did.
	LastError string            `json:"last_error,omitempty"`
	Rejected  map[string]uint64 `json:"rejected,omitempty"`
}

// peerKey names a peer: a station and a device.
type peerKey struct {
	mac aoe.MAC
	dev DeviceAddr
}

// peerStats is the per-peer part of the statistics.
type peerStats struct {
	key      peerKey
	rejected rejectCounters
	mu       sync.Mutex
	state    string
	since    time.Time
	session  uint32
	keyID    uint32
	suite    Suite
	sessions uint64
	lastErr  string
}

func (p *peerStats) setState(state string, at time.Time) {
	p.mu.Lock()
	if p.state != state {
		p.state, p.since = state, at
	}
	p.mu.Unlock()
}

func (p *peerStats) established(s *session, at time.Time) {
	p.mu.Lock()
	p.state, p.since, p.session, p.keyID, p.suite, p.lastErr = "established", at, s.id, s.keyID, s.suite, ""
	p.sessions++
	p.mu.Unlock()
}

// live reports whether the peer has held a session (nil-safe).
func (p *peerStats) live() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == "established"
}

func (p *peerStats) failed(msg string, at time.Time) {
	p.mu.Lock()
	if p.state != "established" {
		p.state, p.since = "failed", at
	}
	p.lastErr = msg
	p.mu.Unlock()
}

func (p *peerStats) snapshot() PeerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PeerStats{
		MAC: p.key.mac.String(), Device: p.key.dev.String(), State: p.state, Since: p.since,
		Session: p.session, KeyID: p.keyID, Suite: suiteName(p.session, p.suite), Rekeys: max(p.sessions, 1) - 1, LastError: p.lastErr,
		Rejected: p.rejected.snapshot(),
	}
}

// maxPeerStats bounds the per-peer table. A target makes an entry when a
// peer completes a handshake, an initiator when it starts one; when the
// table is full, an entry without a live session makes room.
const maxPeerStats = 1024

// peerTable holds per-peer statistics.
type peerTable struct {
	mu    sync.Mutex
	peers map[peerKey]*peerStats
}

// get returns the entry of k, creating it if create is set and the table
// has room.
func (t *peerTable) get(k peerKey, create bool) *peerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[k]; p != nil || !create {
		return p
	}
	if t.peers == nil {
		t.peers = make(map[peerKey]*peerStats)
	}
	if len(t.peers) >= maxPeerStats {
		for k, p := range t.peers { // forget one without a live session
			p.mu.Lock()
			idle := p.state != "established"
			p.mu.Unlock()
			if idle {
				delete(t.peers, k)
				break
			}
		}
		if len(t.peers) >= maxPeerStats {
			return nil
		}
	}
	p := &peerStats{key: k, state: "handshaking", since: time.Now()}
	t.peers[k] = p
	return p
}

func (t *peerTable) snapshot() []PeerStats {
	t.mu.Lock()
	ps := make([]*peerStats, 0, len(t.peers))
	for _, p := range t.peers {
		ps = append(ps, p)
	}
	t.mu.Unlock()
	out := make([]PeerStats, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.snapshot())
	}
	return out
}

func suiteName(session uint32, s Suite) string {
	if session == 0 {
		return ""
	}
	return s.String()
}
