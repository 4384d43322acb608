package seal

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// InitiatorConfig configures an InitiatorLink.
type InitiatorConfig struct {
	// Keys are the keys of single devices.
	Keys map[DeviceAddr]Key
	// DefaultKey, if valid, is the key of every device not in Keys.
	DefaultKey Key
	// Encrypt asks for SuiteAESGCM: the payload is encrypted too. Without
	// it, SuiteHMAC; a target whose export requires encryption refuses
	// that.
	Encrypt bool
	Limits  Limits
	Logger  *slog.Logger
}

// Timing of the initiator's handshakes.
const (
	// handshakeRetry is how long a handshake step waits for its answer
	// before the next trigger starts over.
	handshakeRetry = 100 * time.Millisecond
	// maintainInterval is how often sessions are checked for a rekey
	// due, whether or not they carry I/O: standby targets keep a session
	// ready.
	maintainInterval = time.Second
	// probeInterval bounds the authenticated Query Configs one peer gets
	// for the plain ones it sends.
	probeInterval = 50 * time.Millisecond
	// probeTagBase marks the layer's own Query Config tags.
	probeTagBase = 0x7a000000
	// maxPeers bounds the stations the layer tracks.
	maxPeers = 1024
)

// An InitiatorLink is the initiator's side of sealed AoE on a Link. For
// a keyed device it seals every request, opens and checks every response,
// and drops every plain frame: the initiator above sees a target of such a
// device only once it has proved the key. A plain Query Config response
// (an announcement or an answer to a broadcast) from such a target starts
// a handshake, then an authenticated Query Config whose answer goes up in
// its place, with its tag. Devices without a key pass untouched.
type InitiatorLink struct {
	layer
	suite Suite
	lim   Limits
	log   *slog.Logger
	start time.Time

	keys       atomic.Pointer[keySet]
	rekeyEpoch atomic.Int64 // sessions made before this (monotonic) rekey

	mu       sync.Mutex // guards writes of peers and sessions
	peers    atomic.Pointer[map[peerKey]*ipeer]
	sessions atomic.Pointer[map[sessionKey]*session]
	probes   atomic.Uint32
	stop     chan struct{} // closed by Close: ends maintain
	stopOnce sync.Once
	// newHellos bounds the hellos to targets that never proved the key,
	// so forged announcements from many MACs cost little.
	newHellos struct {
		sync.Mutex
		b bucket
	}

	rejected               rejectCounters
	handshakes, sealed, op atomic.Uint64
}

type sessionKey struct {
	id   uint32
	peer aoe.MAC
}

// keySet is the initiator's keys, derived per device on first use.
type keySet struct {
	perDev map[DeviceAddr]Key
	def    Key
	mu     sync.Mutex
	cache  map[DeviceAddr]*deviceKey
}

func (ks *keySet) has(dev DeviceAddr) bool {
	if _, ok := ks.perDev[dev]; ok {
		return true
	}
	return ks.def.Valid()
}

func (ks *keySet) key(dev DeviceAddr) *deviceKey {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if k := ks.cache[dev]; k != nil {
		return k
	}
	k, ok := ks.perDev[dev]
	if !ok {
		k = ks.def
	}
	if !k.Valid() {
		return nil
	}
	dk := &deviceKey{id: k.ID, source: k.Source, key: k.deviceKey(dev.Shelf, dev.Slot)}
	ks.cache[dev] = dk
	return dk
}

// hsState is where a peer's handshake stands.
type hsState int

const (
	hsIdle hsState = iota
	hsHelloSent
	hsFinishSent
)

// ipeer is one target (a station, for one device) the layer talks to.
type ipeer struct {
	key peerKey
	st  *peerStats
	cur atomic.Pointer[session]

	mu        sync.Mutex
	prev      *session
	hs        hsState
	hsAt      time.Duration
	keyID     uint32
	nI, nT    [NonceLen]byte
	probeTag  uint32
	probeAt   time.Duration
	trigger   uint32 // tag to give the next authenticated Query Config
	triggered bool
	lastFail  string // the last handshake failure logged
}

// NewInitiatorLink puts the sealing layer on link. The InitiatorLink owns
// link.
func NewInitiatorLink(link aoe.Link, cfg InitiatorConfig) (*InitiatorLink, error) {
	t := &InitiatorLink{lim: cfg.Limits.withDefaults(), log: cfg.Logger, start: time.Now()}
	if cfg.Encrypt {
		t.suite = SuiteAESGCM
	}
	t.init(link, t)
	if t.log == nil {
		t.log = slog.Default()
	}
	t.newHellos.b.tokens = t.lim.GlobalHandshakeRate
	t.stop = make(chan struct{})
	go t.maintain()
	if err := t.SetKeys(cfg.Keys, cfg.DefaultKey); err != nil {
		return nil, err
	}
	t.peers.Store(&map[peerKey]*ipeer{})
	t.sessions.Store(&map[sessionKey]*session{})
	return t, nil
}

// SetKeys replaces the keys, for a rotation: every session made before
// starts a new handshake at its next frame, under the new keys, and keeps
// carrying I/O until that one is confirmed.
func (t *InitiatorLink) SetKeys(perDev map[DeviceAddr]Key, def Key) error {
	ks := &keySet{perDev: make(map[DeviceAddr]Key, len(perDev)), def: def, cache: make(map[DeviceAddr]*deviceKey)}
	for d, k := range perDev {
		if !k.Valid() {
			return fmt.Errorf("seal: key for %s: invalid", d)
		}
		ks.perDev[d] = k
	}
	if len(ks.perDev) == 0 && !def.Valid() {
		return errors.New("seal: initiator: no key")
	}
	t.keys.Store(ks)
	t.rekeyEpoch.Store(int64(t.now()))
	return nil
}

func (t *InitiatorLink) now() time.Duration { return time.Since(t.start) }

func (t *InitiatorLink) reject(r Reason, p *ipeer) {
	t.rejected[r].Add(1)
	if p != nil {
		p.st.rejected[r].Add(1)
	}
}

func (t *InitiatorLink) peer(k peerKey) *ipeer { return (*t.peers.Load())[k] }

// addPeer returns the peer of k, creating it if there is room.
func (t *InitiatorLink) addPeer(k peerKey) *ipeer {
	if p := t.peer(k); p != nil {
		return p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.peers.Load()
	if p := old[k]; p != nil {
		return p
	}
	next := make(map[peerKey]*ipeer, len(old)+1)
	for pk, p := range old {
		next[pk] = p
	}
	if len(next) >= maxPeers {
		for pk, p := range next { // forget one that never proved the key
			if p.cur.Load() == nil {
				delete(next, pk)
				break
			}
		}
		if len(next) >= maxPeers {
			return nil
		}
	}
	p := &ipeer{key: k, st: &peerStats{key: k, state: "handshaking", since: time.Now()}}
	next[k] = p
	t.peers.Store(&next)
	return p
}

// inbound handles one received frame and reports whether (and how long) it
// goes up to the initiator.
func (t *InitiatorLink) inbound(b []byte) (int, bool) {
	if len(b) < aoe.FrameHeaderLen || b[14]&uint8(aoe.FlagResponse) == 0 {
		return len(b), true // not a response: the initiator ignores it
	}
	dev := DeviceAddr{binary.BigEndian.Uint16(b[16:18]), b[18]}
	cmd := aoe.Command(b[19])
	ks := t.keys.Load()
	// A plain target echoes what it does not know with an error, and no
	// more than the AoE header. A sealed response may carry an AoE error
	// too (its request's), after a seal header: that one is opened.
	echo := cmd == CommandHandshake || cmd == CommandSealed && (len(b) < innerOff+TagLen || b[sealOff] != Version)
	if echo && b[14]&uint8(aoe.FlagError) != 0 {
		if p := t.peer(peerKey{aoe.MAC(b[6:12]), dev}); p != nil {
			p.st.failed("plain AoE target: it answers sealed AoE \"unrecognized command\"", time.Now())
			t.reject(RejectHandshake, p)
		}
		return 0, false
	}
	switch {
	case cmd == CommandHandshake:
		t.handshakeResponse(b, dev, ks)
		return 0, false
	case cmd == CommandSealed:
		return t.open(b, dev)
	case !ks.has(dev) || dev.Shelf == aoe.BroadcastMajor || dev.Slot == aoe.BroadcastMinor:
		return len(b), true
	}
	src := aoe.MAC(b[6:12])
	p := t.peer(peerKey{src, dev})
	if cmd == aoe.CommandQueryConfig && b[14]&uint8(aoe.FlagError) == 0 && !src.IsMulticast() && !src.IsZero() {
		if p == nil {
			p = t.addPeer(peerKey{src, dev})
		}
		if p != nil {
			t.verify(p, binary.BigEndian.Uint32(b[20:24]))
		}
		return 0, false
	}
	t.reject(RejectUnsealed, p)
	return 0, false
}

// verify answers a plain Query Config response from a keyed device's
// target: an authenticated query if a session is up, else a handshake.
func (t *InitiatorLink) verify(p *ipeer, tag uint32) {
	now := t.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if tag == 0 || !p.triggered {
		p.trigger, p.triggered = tag, true
	}
	if s := p.cur.Load(); s != nil && t.usable(s, now) {
		if t.needsRekey(s, now) {
			t.startHandshakeLocked(p, now)
		}
		t.probeLocked(p, s, now)
		return
	}
	t.startHandshakeLocked(p, now)
}

func (t *InitiatorLink) usable(s *session, now time.Duration) bool {
	return !s.expired(now, &t.lim) && s.lastSent.Load() < t.lim.RejectAfterFrames
}

func (t *InitiatorLink) needsRekey(s *session, now time.Duration) bool {
	return now-s.created > t.lim.RekeyAfterTime || s.lastSent.Load() > t.lim.RekeyAfterFrames ||
		s.created < time.Duration(t.rekeyEpoch.Load())
}

// probeLocked sends an authenticated Query Config read to p, at most once
// per probeInterval; p.mu must be held.
func (t *InitiatorLink) probeLocked(p *ipeer, s *session, now time.Duration) {
	if p.probeTag != 0 && now-p.probeAt < probeInterval {
		return
	}
	p.probeTag = probeTagBase | t.probes.Add(1)&0xffffff
	p.probeAt = now
	var q [aoe.FrameHeaderLen + aoe.ConfigHeaderLen]byte
	f := aoe.Frame{Dst: p.key.mac, Src: t.mac, Header: aoe.Header{Version: aoe.Version,
		Major: p.key.dev.Shelf, Minor: p.key.dev.Slot, Command: aoe.CommandQueryConfig, Tag: p.probeTag}}
	f.MarshalHeaderTo(q[:])
	t.sendSealed(s, q[:])
}

// sendSealed seals and sends a plain request to s's peer.
func (t *InitiatorLink) sendSealed(s *session, b []byte) error {
	out, done := t.scratch()
	defer done()
	if len(out) < len(b)+Overhead {
		out = make([]byte, len(b)+Overhead)
	}
	n := t.seal(s, out, b)
	return t.link.WriteFrame(out[:n])
}

func (t *InitiatorLink) seal(s *session, out, b []byte) int {
	n := s.sealFrame(out, b, binary.BigEndian.Uint32(b[20:24]), 0)
	count := binary.BigEndian.Uint64(out[sealOff+8:]) - s.send.seq0
	for {
		last := s.lastSent.Load()
		if count <= last || s.lastSent.CompareAndSwap(last, count) {
			break
		}
	}
	t.sealed.Add(1)
	return n
}

// open authenticates a sealed response, checks that it answers a request
// outstanding, and opens it in place.
func (t *InitiatorLink) open(b []byte, dev DeviceAddr) (int, bool) {
	var h Header
	if len(b) < innerOff+TagLen || h.UnmarshalBinary(b[sealOff:]) != nil ||
		h.Command == CommandSealed || h.Command == CommandHandshake {
		t.reject(RejectMalformed, nil)
		return 0, false
	}
	src := aoe.MAC(b[6:12])
	s := (*t.sessions.Load())[sessionKey{h.Session, src}]
	if s == nil {
		t.reject(RejectNoSession, nil)
		return 0, false
	}
	p := t.peer(peerKey{src, s.dev})
	if s.dev != dev || h.Suite != s.suite || aoe.MAC(b[0:6]) != t.mac {
		t.reject(RejectBadTag, p)
		return 0, false
	}
	if s.expired(t.now(), &t.lim) {
		t.reject(RejectExpired, p)
		return 0, false
	}
	if r := s.openResponse(b, h.Seq, h.Ack); r != 0 {
		t.reject(r, p)
		return 0, false
	}
	t.op.Add(1)
	m := unseal(b, h.Command)
	if p != nil && h.Command == aoe.CommandQueryConfig {
		tag := binary.BigEndian.Uint32(b[20:24])
		p.mu.Lock()
		if tag == p.probeTag {
			p.probeTag = 0
			if p.triggered {
				binary.BigEndian.PutUint32(b[20:24], p.trigger)
				p.triggered = false
			}
		}
		p.mu.Unlock()
	}
	return m, true
}

// openResponse checks a response's tag and numbers: its own, new in the
// window, and the request's it answers, sent and not answered before.
func (s *session) openResponse(b []byte, seq, ack uint64) Reason {
	n := seq - s.recv.seq0
	a := ack - s.send.seq0
	d := &s.recv
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.win.Check(n) {
		return RejectReplay
	}
	if !d.verifyLocked(b, seq) {
		return RejectBadTag
	}
	d.win.Accept(n)
	if a == 0 || a > s.lastSent.Load() || !s.acks.Accept(a) {
		return RejectUnsolicited
	}
	return 0
}

// outbound turns a request from the initiator above into the frame to
// send, in out's storage.
func (t *InitiatorLink) outbound(out, b []byte) ([]byte, bool) {
	if len(b) < aoe.FrameHeaderLen || b[14]&uint8(aoe.FlagResponse) != 0 {
		return b, true
	}
	dev := DeviceAddr{binary.BigEndian.Uint16(b[16:18]), b[18]}
	if !t.keys.Load().has(dev) && dev.Shelf != aoe.BroadcastMajor && dev.Slot != aoe.BroadcastMinor {
		return b, true
	}
	dst := aoe.MAC(b[0:6])
	if dst.IsMulticast() || dev.Shelf == aoe.BroadcastMajor || dev.Slot == aoe.BroadcastMinor {
		if aoe.Command(b[19]) == aoe.CommandQueryConfig {
			return b, true // discovery: answers are verified when they come
		}
		return nil, false
	}
	p := t.addPeer(peerKey{dst, dev})
	if p == nil {
		return nil, false
	}
	now := t.now()
	s := p.cur.Load()
	if s == nil || !t.usable(s, now) {
		p.mu.Lock()
		t.startHandshakeLocked(p, now)
		p.mu.Unlock()
		return nil, false
	}
	if t.needsRekey(s, now) {
		p.mu.Lock()
		t.startHandshakeLocked(p, now)
		p.mu.Unlock()
	}
	if len(out) < len(b)+Overhead {
		out = make([]byte, len(b)+Overhead)
	}
	return out[:t.seal(s, out, b)], true
}

// startHandshakeLocked sends a hello to p unless one went less than
// handshakeRetry ago; p.mu must be held. A handshake that got no valid
// answer is simply started again: unauthenticated refusals and failed
// proofs never hold it back, as an attacker could forge them.
func (t *InitiatorLink) startHandshakeLocked(p *ipeer, now time.Duration) {
	if p.hs != hsIdle && now-p.hsAt < handshakeRetry {
		return
	}
	dk := t.keys.Load().key(p.key.dev)
	if dk == nil {
		return
	}
	if p.cur.Load() == nil {
		t.newHellos.Lock()
		ok := t.newHellos.b.take(now, t.lim.GlobalHandshakeRate, int(t.lim.GlobalHandshakeRate))
		t.newHellos.Unlock()
		if !ok {
			t.reject(RejectRateLimited, p)
			return
		}
	}
	rand.Read(p.nI[:])
	p.hs, p.hsAt, p.keyID = hsHelloSent, now, dk.id
	if p.cur.Load() == nil {
		p.st.setState("handshaking", time.Now())
	}
	t.sendHandshake(p, &Message{Type: MessageHello, KeyID: dk.id, Suite: t.suite, InitiatorNonce: p.nI})
}

func (t *InitiatorLink) sendHandshake(p *ipeer, m *Message) {
	buf, done := t.scratch()
	defer done()
	out := buf[:max(aoe.FrameHeaderLen+m.Len(), aoe.MinFrameLen)]
	clear(out)
	f := aoe.Frame{Dst: p.key.mac, Src: t.mac, Header: aoe.Header{Version: aoe.Version,
		Major: p.key.dev.Shelf, Minor: p.key.dev.Slot, Command: CommandHandshake}}
	f.MarshalHeaderTo(out)
	m.MarshalTo(out[aoe.FrameHeaderLen:])
	_ = t.link.WriteFrame(out)
}

// handshakeResponse takes a target's handshake message.
func (t *InitiatorLink) handshakeResponse(b []byte, dev DeviceAddr, ks *keySet) {
	var m Message
	src := aoe.MAC(b[6:12])
	if m.UnmarshalBinary(b[aoe.FrameHeaderLen:]) != nil || aoe.MAC(b[0:6]) != t.mac {
		t.reject(RejectMalformed, nil)
		return
	}
	p := t.peer(peerKey{src, dev})
	if p == nil || !ks.has(dev) {
		t.reject(RejectHandshake, nil)
		return
	}
	dk := ks.key(dev)
	now := t.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	// A message that fails is dropped, and the handshake stays where it
	// is: unauthenticated, it may be an attacker's, and must not abort the
	// target's real answer.
	fail := func(why string) {
		t.reject(RejectHandshake, p)
		if p.lastFail != why {
			p.lastFail = why
			t.log.Warn("seal: handshake failed", "target", src, "device", dev, "why", why)
		}
		p.st.failed(why, time.Now())
	}
	tr := transcript{initiator: t.mac, target: src, dev: dev, keyID: p.keyID, suite: t.suite, nI: p.nI, nT: m.TargetNonce}
	switch m.Type {
	case MessageChallenge:
		if p.hs != hsHelloSent || m.InitiatorNonce != p.nI || m.KeyID != p.keyID || m.Suite != t.suite || dk == nil || dk.id != p.keyID {
			t.reject(RejectHandshake, p)
			return
		}
		if m.TargetNonce == p.nI {
			fail("challenge reflects our own nonce")
			return
		}
		want := tr.proof(&dk.key, labelTargetProof)
		if !hmac.Equal(want[:], m.Proof[:]) {
			fail(fmt.Sprintf("target failed to prove key %08x", p.keyID))
			return
		}
		p.nT, p.hs, p.hsAt = m.TargetNonce, hsFinishSent, now
		t.sendHandshake(p, &Message{Type: MessageFinish, KeyID: p.keyID, Suite: t.suite, InitiatorNonce: p.nI, TargetNonce: p.nT,
			Time: m.Time, Cookie: m.Cookie, Proof: tr.proof(&dk.key, labelInitiatorProof)})
	case MessageAccept:
		if p.hs != hsFinishSent || m.InitiatorNonce != p.nI || m.TargetNonce != p.nT || dk == nil || dk.id != p.keyID ||
			len(b) < aoe.FrameHeaderLen+acceptLen {
			t.reject(RejectHandshake, p)
			return
		}
		s := newSession(&tr, &dk.key, now, false)
		end := aoe.FrameHeaderLen + acceptLen
		s.recv.mu.Lock()
		ok := hmac.Equal(s.recv.tagLocked(b[:end-TagLen]), b[end-TagLen:end]) && m.Session == s.id
		s.recv.mu.Unlock()
		if !ok {
			fail("accept does not verify")
			return
		}
		t.install(p, s)
		p.hs = hsIdle
		p.probeTag = 0 // a query under an older session is void: ask again now
		t.handshakes.Add(1)
		p.st.established(s, time.Now())
		t.log.Info("seal: target proved the key; session established", "target", src, "device", dev,
			"session", fmt.Sprintf("%08x", s.id), "key", fmt.Sprintf("%08x", s.keyID), "suite", s.suite)
		t.probeLocked(p, s, now)
	case MessageRefuse:
		switch {
		case m.Reason == RefuseUnknownKey && p.hs == hsHelloSent && m.KeyID == p.keyID:
			fail(fmt.Sprintf("target holds no key with id %08x (a wrong key?)", p.keyID))
		case m.Reason == RefuseSuite && p.hs == hsHelloSent && m.KeyID == p.keyID:
			fail(fmt.Sprintf("target requires %s; this initiator asks for %s", SuiteAESGCM, t.suite))
		case m.Reason == RefuseNoSession:
			if s := p.cur.Load(); s != nil && s.id == m.Session {
				// Unauthenticated: only a reason to try a new session;
				// the current one stays until that one is confirmed. A
				// query sent under it will get no answer.
				p.probeTag = 0
				p.st.setState("handshaking", time.Now())
				t.startHandshakeLocked(p, now)
			}
		default:
			t.reject(RejectHandshake, p)
		}
	default:
		t.reject(RejectHandshake, p)
	}
}

// install makes s p's current session, keeping the one before it for the
// responses still on their way, and forgetting older ones.
func (t *InitiatorLink) install(p *ipeer, s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.sessions.Load()
	next := make(map[sessionKey]*session, len(old)+1)
	for k, x := range old {
		if x.peer != p.key.mac || x.dev != p.key.dev || x == p.cur.Load() {
			next[k] = x
		}
	}
	next[sessionKey{s.id, s.peer}] = s
	p.prev = p.cur.Load()
	p.cur.Store(s)
	t.sessions.Store(&next)
}

// Proven reports whether the target mac of device dev has proved the key:
// a session with it is up.
func (t *InitiatorLink) Proven(mac aoe.MAC, dev DeviceAddr) bool {
	p := t.peer(peerKey{mac, dev})
	if p == nil {
		return false
	}
	s := p.cur.Load()
	return s != nil && t.usable(s, t.now())
}

// Keyed reports whether the layer holds a key for dev.
func (t *InitiatorLink) Keyed(dev DeviceAddr) bool { return t.keys.Load().has(dev) }

// Stats reports the layer's counters and peers.
func (t *InitiatorLink) Stats() Stats {
	st := Stats{Role: "initiator", Handshakes: t.handshakes.Load(), FramesSealed: t.sealed.Load(),
		FramesOpened: t.op.Load(), Rejected: t.rejected.snapshot()}
	now := t.now()
	for _, p := range *t.peers.Load() {
		if s := p.cur.Load(); s != nil && t.usable(s, now) {
			st.Sessions++
		} else if s != nil {
			p.st.setState("expired", time.Now())
		}
		st.Peers = append(st.Peers, p.st.snapshot())
	}
	return st
}

// maintain rekeys the sessions that are due, every maintainInterval, until
// the link closes: a session with a standby target is kept fresh although
// no I/O uses it, so a failover never waits for a handshake.
func (t *InitiatorLink) maintain() {
	tick := time.NewTicker(maintainInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		now := t.now()
		for _, p := range *t.peers.Load() {
			s := p.cur.Load()
			if s == nil {
				continue
			}
			p.mu.Lock()
			if !t.usable(s, now) || t.needsRekey(s, now) {
				t.startHandshakeLocked(p, now)
			}
			p.mu.Unlock()
		}
	}
}

// Close stops the layer's maintenance and closes the link beneath.
func (t *InitiatorLink) Close() error {
	t.stopOnce.Do(func() { close(t.stop) })
	return t.link.Close()
}
