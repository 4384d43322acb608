package seal

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Mode is a target's policy for plain frames to a keyed device.
type Mode int

const (
	// ModeRequired refuses every plain frame that could change a keyed
	// device or read its data; only the read-only queries (Query Config
	// read and test, MAC Mask read, Reserve read) pass.
	ModeRequired Mode = iota
	// ModeOptional lets plain peers in beside sealed ones, for a
	// migration; plain frames are counted.
	ModeOptional
)

func (m Mode) String() string {
	if m == ModeOptional {
		return "optional"
	}
	return "required"
}

// ParseMode parses "required" or "optional".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "required", "":
		return ModeRequired, nil
	case "optional":
		return ModeOptional, nil
	}
	return 0, fmt.Errorf("seal: auth mode %q: want required or optional", s)
}

// Export is a keyed device and the keys it accepts.
type Export struct {
	Device DeviceAddr
	// Keys are accepted in handshakes; more than one while a new key
	// replaces an old one.
	Keys []Key
	// RequireEncryption refuses sessions of SuiteHMAC: only initiators
	// that encrypt (SuiteAESGCM) are served. Either suite is taken
	// otherwise.
	RequireEncryption bool
}

// TargetConfig configures a TargetLink.
type TargetConfig struct {
	// Exports are the keyed devices. Frames for other devices pass
	// untouched.
	Exports []Export
	Mode    Mode
	Limits  Limits
	Logger  *slog.Logger
}

// cookieLifetime is how long a challenge's cookie stays valid: the time an
// initiator has to answer it.
const cookieLifetime = 10 * time.Second

// sessionsPerPeer bounds the sessions a target keeps per initiator and
// device: the one in use, the one it replaces while requests drain, and a
// handshake in progress.
const sessionsPerPeer = 3

// refusalRate bounds the answers to refused frames (AoE errors to plain
// requests, Refuse hints), per second, so that a flood of spoofed frames
// reflects little.
const refusalRate = 1000

// A TargetLink is the target's side of sealed AoE on a Link. Frames read
// through it come out plain (sealed ones authenticated and opened, plain
// ones allowed by policy), each with an AoE tag of its own choosing; a
// response written through it with that tag goes out sealed if its request
// was, and with the request's tag. Handshakes are answered inside.
type TargetLink struct {
	layer
	mode  Mode
	lim   Limits
	log   *slog.Logger
	start time.Time

	exports atomic.Pointer[[]exportKeys]

	mu       sync.Mutex // guards writes of sessions, used
	sessions atomic.Pointer[map[uint32]*session]
	used     map[[NonceLen]byte]usedNonce // target nonces of finishes accepted, until their cookie expires
	sweptAt  atomic.Int64

	cookieMu   sync.Mutex
	cookieKeys [2][32]byte // current, previous
	cookieAt   time.Duration

	limit    limiter
	pending  pendingTable
	refusals struct {
		sync.Mutex
		b bucket
	}
	timeBase uint64 // random: a challenge's time says nothing of uptime

	rejected                             rejectCounters
	handshakes, sealed, opened, unsealed atomic.Uint64
	peers                                peerTable
}

type exportKeys struct {
	dev     DeviceAddr
	keys    []deviceKey
	encrypt bool // RequireEncryption
}

type deviceKey struct {
	id     uint32
	source string
	key    [32]byte
}

type usedNonce struct {
	expires time.Duration
	session uint32
	peer    aoe.MAC
}

// NewTargetLink puts the sealing layer on link. The TargetLink owns link.
func NewTargetLink(link aoe.Link, cfg TargetConfig) (*TargetLink, error) {
	t := &TargetLink{
		mode:  cfg.Mode,
		lim:   cfg.Limits.withDefaults(),
		log:   cfg.Logger,
		start: time.Now(),
		used:  make(map[[NonceLen]byte]usedNonce),
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	t.init(link, t)
	t.limit.global.tokens = t.lim.GlobalHandshakeRate
	t.refusals.b.tokens = refusalRate
	var tb [8]byte
	rand.Read(tb[:])
	t.timeBase = binary.BigEndian.Uint64(tb[:]) >> 2
	t.sessions.Store(&map[uint32]*session{})
	if err := t.SetExports(cfg.Exports); err != nil {
		return nil, err
	}
	for i := range t.cookieKeys {
		rand.Read(t.cookieKeys[i][:])
	}
	return t, nil
}

// SetExports replaces the keyed devices and their keys, for a key rotation
// at run time: sessions made with a key no longer listed end at once.
func (t *TargetLink) SetExports(exports []Export) error {
	var ex []exportKeys
	for _, e := range exports {
		if len(e.Keys) == 0 {
			return fmt.Errorf("seal: export %s: no key", e.Device)
		}
		if e.Device.Shelf == aoe.BroadcastMajor || e.Device.Slot == aoe.BroadcastMinor {
			return fmt.Errorf("seal: export %s: broadcast address", e.Device)
		}
		k := exportKeys{dev: e.Device, encrypt: e.RequireEncryption}
		for _, key := range e.Keys {
			if !key.Valid() {
				return fmt.Errorf("seal: export %s: invalid key", e.Device)
			}
			k.keys = append(k.keys, deviceKey{id: key.ID, source: key.Source, key: key.deviceKey(e.Device.Shelf, e.Device.Slot)})
		}
		ex = append(ex, k)
	}
	t.exports.Store(&ex)
	t.mu.Lock()
	old := *t.sessions.Load()
	keep := make(map[uint32]*session, len(old))
	for id, s := range old {
		if t.deviceKey(s.dev, s.keyID) != nil {
			keep[id] = s
		}
	}
	t.replaceSessionsLocked(old, keep)
	t.mu.Unlock()
	return nil
}

func (t *TargetLink) now() time.Duration { return time.Since(t.start) }

// keyed returns the export a frame to shelf.slot reaches, if any is keyed.
func (t *TargetLink) keyed(shelf uint16, slot uint8) bool {
	for _, e := range *t.exports.Load() {
		if e.dev.matches(shelf, slot) {
			return true
		}
	}
	return false
}

// deviceKey returns the key with id of the export dev, or nil.
func (t *TargetLink) deviceKey(dev DeviceAddr, id uint32) *deviceKey {
	for _, e := range *t.exports.Load() {
		if e.dev == dev {
			for i := range e.keys {
				if e.keys[i].id == id {
					return &e.keys[i]
				}
			}
		}
	}
	return nil
}

func (t *TargetLink) exportOf(dev DeviceAddr) bool { return t.export(dev) != nil }

// export returns the keyed export dev, or nil.
func (t *TargetLink) export(dev DeviceAddr) *exportKeys {
	ex := *t.exports.Load()
	for i := range ex {
		if ex[i].dev == dev {
			return &ex[i]
		}
	}
	return nil
}

// inbound handles one received frame and reports whether (and how long) it
// goes up to the target.
func (t *TargetLink) inbound(b []byte) (int, bool) {
	if len(b) < aoe.FrameHeaderLen || b[14]&uint8(aoe.FlagResponse) != 0 {
		return len(b), true // the target drops these itself
	}
	if dst := aoe.MAC(b[0:6]); dst != t.mac && !dst.IsMulticast() {
		// Another station's (flooded, or a promiscuous interface): the
		// target drops it; neither refused nor counted here.
		return len(b), true
	}
	shelf, slot := binary.BigEndian.Uint16(b[16:18]), b[18]
	switch aoe.Command(b[19]) {
	case CommandSealed:
		if t.exportOf(DeviceAddr{shelf, slot}) {
			return t.open(b)
		}
	case CommandHandshake:
		if t.exportOf(DeviceAddr{shelf, slot}) {
			t.handshake(b)
			return 0, false
		}
	default:
		if t.keyed(shelf, slot) && !readOnlyQuery(b) {
			if t.mode == ModeRequired {
				t.reject(RejectUnsealed, t.peerOf(b))
				t.refusePlain(b)
				return 0, false
			}
			t.unsealed.Add(1)
		}
	}
	t.pending.claim(b, nil, 0)
	return len(b), true
}

// readOnlyQuery reports whether a plain request only reads what any
// station may know of a device: Query Config read, test and test prefix,
// MAC Mask List read, Reserve/Release read, and commands no target knows.
func readOnlyQuery(b []byte) bool {
	arg := b[aoe.FrameHeaderLen:]
	switch aoe.Command(b[19]) {
	case aoe.CommandATA:
		return false
	case aoe.CommandQueryConfig:
		if len(arg) < aoe.ConfigHeaderLen {
			return true // the target answers "bad argument"
		}
		ccmd := aoe.ConfigCommand(arg[5] & 0x0f)
		return ccmd == aoe.ConfigRead || ccmd == aoe.ConfigTest || ccmd == aoe.ConfigTestPrefix
	case aoe.CommandMACMask:
		return len(arg) >= 2 && arg[1] == 0
	case aoe.CommandReserveRelease:
		return len(arg) >= 1 && arg[0] == 0
	}
	return true
}

// refusePlain answers a refused plain request with AoE error 3 (device
// unavailable): the request's header, nothing else.
func (t *TargetLink) refusePlain(b []byte) {
	if !t.mayRefuse(b) {
		return
	}
	buf, done := t.scratch()
	defer done()
	out := buf[:aoe.MinFrameLen]
	clear(out)
	copy(out[0:6], b[6:12])
	copy(out[6:12], t.mac[:])
	copy(out[12:aoe.FrameHeaderLen], b[12:aoe.FrameHeaderLen])
	out[14] = b[14]&0xf0 | uint8(aoe.FlagResponse|aoe.FlagError)
	out[15] = uint8(aoe.ErrorDeviceUnavailable)
	_ = t.link.WriteFrame(out)
}

// peerOf returns the statistics of the peer that b claims to come from,
// for the device it names, if the peer has any.
func (t *TargetLink) peerOf(b []byte) *peerStats {
	return t.peers.get(peerKey{aoe.MAC(b[6:12]), DeviceAddr{binary.BigEndian.Uint16(b[16:18]), b[18]}}, false)
}

func (t *TargetLink) reject(r Reason, p *peerStats) {
	t.rejected[r].Add(1)
	if p != nil {
		p.rejected[r].Add(1)
	}
}

// open authenticates a sealed request and opens it in place.
func (t *TargetLink) open(b []byte) (int, bool) {
	var h Header
	if len(b) < innerOff+TagLen || h.UnmarshalBinary(b[sealOff:]) != nil ||
		h.Command == CommandSealed || h.Command == CommandHandshake {
		t.reject(RejectMalformed, t.peerOf(b))
		return 0, false
	}
	src := aoe.MAC(b[6:12])
	s := (*t.sessions.Load())[h.Session]
	if s == nil {
		t.reject(RejectNoSession, t.peerOf(b))
		t.refuse(b, RefuseNoSession, h.Session)
		return 0, false
	}
	if s.peer != src || s.dev.Shelf != binary.BigEndian.Uint16(b[16:18]) || s.dev.Slot != b[18] || h.Suite != s.suite || aoe.MAC(b[0:6]) != t.mac {
		t.reject(RejectBadTag, t.peerOf(b)) // not this session's: its tag cannot verify
		return 0, false
	}
	now := t.now()
	if s.expired(now, &t.lim) {
		t.reject(RejectExpired, s.peerSt)
		t.refuse(b, RefuseNoSession, h.Session)
		return 0, false
	}
	n, r := s.recv.open(b, h.Seq)
	if r != 0 {
		t.reject(r, s.peerSt)
		return 0, false
	}
	if n > t.lim.RejectAfterFrames {
		t.reject(RejectExpired, s.peerSt)
		return 0, false
	}
	t.opened.Add(1)
	if !s.used.Load() {
		s.used.Store(true)
	}
	m := unseal(b, h.Command)
	t.pending.claim(b, s, h.Seq)
	return m, true
}

// outbound turns a response from the target above into the frame to send,
// in out's storage.
func (t *TargetLink) outbound(out, b []byte) ([]byte, bool) {
	if len(b) < aoe.FrameHeaderLen {
		return b, true
	}
	tag := binary.BigEndian.Uint32(b[20:24])
	if tag == 0 && aoe.Command(b[19]) == aoe.CommandQueryConfig && b[14]&uint8(aoe.FlagResponse) != 0 {
		return b, true // an announcement: plain, as no session can seal a broadcast
	}
	p, ok := t.pending.take(tag)
	if !ok {
		t.reject(RejectUnsolicited, nil)
		return nil, false
	}
	if len(out) < len(b)+Overhead {
		out = make([]byte, len(b)+Overhead)
	}
	if p.sess == nil {
		out = out[:copy(out, b)]
		binary.BigEndian.PutUint32(out[20:24], p.tag)
		return out, true
	}
	n := p.sess.sealFrame(out, b, p.tag, p.seq)
	t.sealed.Add(1)
	return out[:n], true
}

// pendingSlots is the number of requests the layer can track between
// reading and answering: more than a target's buffers (at most 4096).
const pendingSlots = 1 << 13

// pendingTable maps the tags the layer gives requests to what their
// responses need: the request's own tag and, if sealed, its session and
// number. A tag is a slot index and the slot's generation, so a stale
// response (its slot reused) is recognised.
type pendingTable struct {
	mu    sync.Mutex
	next  uint32
	gen   uint32
	slots [pendingSlots]pendingSlot
}

type pendingSlot struct {
	gen  uint32
	tag  uint32
	sess *session
	seq  uint64
}

// claim records a request and writes its new tag into b.
func (pt *pendingTable) claim(b []byte, s *session, seq uint64) {
	pt.mu.Lock()
	idx := pt.next
	pt.next = (pt.next + 1) % pendingSlots
	if idx == 0 {
		pt.gen++
		if pt.gen >= 1<<19 {
			pt.gen = 1
		}
	}
	pt.slots[idx] = pendingSlot{gen: pt.gen, tag: binary.BigEndian.Uint32(b[20:24]), sess: s, seq: seq}
	pt.mu.Unlock()
	binary.BigEndian.PutUint32(b[20:24], pt.gen<<13|idx)
}

// take returns and forgets the request a response's tag names.
func (pt *pendingTable) take(tag uint32) (pendingSlot, bool) {
	idx, gen := tag%pendingSlots, tag>>13
	pt.mu.Lock()
	defer pt.mu.Unlock()
	sl := pt.slots[idx]
	if gen == 0 || sl.gen != gen {
		return pendingSlot{}, false
	}
	pt.slots[idx] = pendingSlot{}
	return sl, true
}

// send writes a handshake frame of the layer's own: a response to b's
// sender about b's device.
func (t *TargetLink) sendHandshake(b []byte, m *Message, tagKey *direction) {
	buf, done := t.scratch()
	defer done()
	out := buf[:max(aoe.FrameHeaderLen+m.Len(), aoe.MinFrameLen)]
	clear(out)
	copy(out[0:6], b[6:12])
	copy(out[6:12], t.mac[:])
	copy(out[12:24], b[12:24])
	out[14] = aoe.Version<<4 | uint8(aoe.FlagResponse)
	out[15] = 0
	out[19] = uint8(CommandHandshake)
	n, _ := m.MarshalTo(out[aoe.FrameHeaderLen:])
	if tagKey != nil { // an accept: tagged with the new session's key
		end := aoe.FrameHeaderLen + n
		tagKey.mu.Lock()
		copy(out[end-TagLen:end], tagKey.tagLocked(out[:end-TagLen]))
		tagKey.mu.Unlock()
	}
	_ = t.link.WriteFrame(out)
}

// mayRefuse reports whether the refused frame b may be answered: never to
// a group or zero address, and within refusalRate. Refusals draw on that
// budget of their own, not on the sender's handshake budget: frames spoofed
// with a peer's address must not starve that peer's own handshakes.
func (t *TargetLink) mayRefuse(b []byte) bool {
	src := aoe.MAC(b[6:12])
	if src.IsMulticast() || src.IsZero() {
		return false
	}
	t.refusals.Lock()
	defer t.refusals.Unlock()
	return t.refusals.b.take(t.now(), refusalRate, refusalRate)
}

// refuse sends an unauthenticated refusal, within the rate limit.
func (t *TargetLink) refuse(b []byte, why RefuseReason, id uint32) {
	if !t.mayRefuse(b) {
		return
	}
	m := Message{Type: MessageRefuse, Reason: why}
	if why == RefuseNoSession {
		m.Session = id
	} else {
		m.KeyID = id
	}
	t.sendHandshake(b, &m, nil)
}

// handshake answers a handshake message. It keeps no state before an
// initiator's proof verifies: the challenge's cookie carries it.
func (t *TargetLink) handshake(b []byte) {
	var m Message
	src := aoe.MAC(b[6:12])
	dev := DeviceAddr{binary.BigEndian.Uint16(b[16:18]), b[18]}
	if m.UnmarshalBinary(b[aoe.FrameHeaderLen:]) != nil || src.IsMulticast() || src.IsZero() ||
		aoe.MAC(b[0:6]) != t.mac {
		t.reject(RejectMalformed, nil)
		return
	}
	if m.Type != MessageHello && m.Type != MessageFinish {
		t.reject(RejectHandshake, nil)
		return
	}
	now := t.now()
	pk := peerKey{src, dev}
	p := t.peers.get(pk, false)
	if !t.limit.allow(src, p.live(), now, &t.lim) {
		t.reject(RejectRateLimited, p)
		return
	}
	key := t.deviceKey(dev, m.KeyID)
	if key == nil {
		t.reject(RejectHandshake, p)
		t.log.Debug("seal: handshake with an unknown key id", "peer", src, "device", dev, "key_id", fmt.Sprintf("%08x", m.KeyID))
		t.refuse(b, RefuseUnknownKey, m.KeyID)
		return
	}
	if m.Suite != SuiteAESGCM && t.export(dev).encrypt {
		t.reject(RejectHandshake, p)
		t.refuse(b, RefuseSuite, m.KeyID)
		return
	}
	tr := transcript{initiator: src, target: t.mac, dev: dev, keyID: m.KeyID, suite: m.Suite, nI: m.InitiatorNonce}
	if m.Type == MessageHello {
		rand.Read(tr.nT[:])
		ms := t.timeBase + uint64(now/time.Millisecond)
		reply := Message{Type: MessageChallenge, KeyID: m.KeyID, Suite: m.Suite, InitiatorNonce: tr.nI, TargetNonce: tr.nT, Time: ms}
		reply.Cookie = tr.cookie(t.cookieKey(now, 0), ms)
		reply.Proof = tr.proof(&key.key, labelTargetProof)
		t.sendHandshake(b, &reply, nil)
		return
	}
	t.finish(b, &m, &tr, key, now)
}

// cookieKey returns the current (which 0) or previous (1) cookie secret,
// rotating them every cookie lifetime.
func (t *TargetLink) cookieKey(now time.Duration, which int) *[32]byte {
	t.cookieMu.Lock()
	defer t.cookieMu.Unlock()
	if now-t.cookieAt >= cookieLifetime {
		t.cookieKeys[1] = t.cookieKeys[0]
		rand.Read(t.cookieKeys[0][:])
		t.cookieAt = now
	}
	k := t.cookieKeys[which]
	return &k
}

// finish checks an initiator's finish and, if it proves the key, makes the
// session and confirms it.
func (t *TargetLink) finish(b []byte, m *Message, tr *transcript, key *deviceKey, now time.Duration) {
	src := tr.initiator
	pk := peerKey{src, tr.dev}
	fail := func(why string) {
		p := t.peers.get(pk, false)
		t.reject(RejectHandshake, p)
		if p != nil {
			p.failed(why, time.Now())
		}
		t.log.Debug("seal: handshake refused", "peer", src, "device", tr.dev, "why", why)
	}
	tr.nT = m.TargetNonce
	issued := time.Duration(m.Time-t.timeBase) * time.Millisecond
	if m.Time < t.timeBase || issued > now || now-issued > cookieLifetime {
		fail("stale cookie")
		return
	}
	c0, c1 := tr.cookie(t.cookieKey(now, 0), m.Time), tr.cookie(t.cookieKey(now, 1), m.Time)
	if !hmac.Equal(c0[:], m.Cookie[:]) && !hmac.Equal(c1[:], m.Cookie[:]) {
		fail("bad cookie")
		return
	}
	want := tr.proof(&key.key, labelInitiatorProof)
	if !hmac.Equal(want[:], m.Proof[:]) {
		fail("initiator failed to prove the key")
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
	if u, ok := t.used[tr.nT]; ok {
		// A finish seen before: the accept was lost, or this is a replay.
		// Either way nothing changes; the accept is sent again.
		if s := (*t.sessions.Load())[u.session]; s != nil && u.peer == src && s.nI == tr.nI {
			t.sendAccept(b, s)
		} else {
			fail("replayed finish")
		}
		return
	}
	sessions := *t.sessions.Load()
	s := newSession(tr, &key.key, now, true)
	if sessions[s.id] != nil {
		fail("session id in use") // one in 2^32: the initiator tries again
		return
	}
	next := make(map[uint32]*session, len(sessions)+1)
	var same []*session
	for id, x := range sessions {
		next[id] = x
		if x.peer == src && x.dev == tr.dev {
			same = append(same, x)
		}
	}
	// A peer keeps the sessions its requests may still use while it moves
	// to the new one: sessionsPerPeer at most. Those that never carried a
	// frame (handshakes the initiator gave up on) go first, then the
	// oldest, so a retried handshake never ends the session in use.
	slices.SortFunc(same, func(a, b *session) int {
		if ua, ub := a.used.Load(), b.used.Load(); ua != ub {
			if ua {
				return -1
			}
			return 1
		}
		return int(b.created - a.created)
	})
	for _, x := range same[min(sessionsPerPeer-1, len(same)):] {
		delete(next, x.id)
	}
	if len(next) >= t.lim.MaxSessions {
		fail("no room for the session")
		return
	}
	p := t.peers.get(pk, true)
	s.peerSt = p
	next[s.id] = s
	t.sessions.Store(&next)
	t.used[tr.nT] = usedNonce{expires: now + 2*cookieLifetime, session: s.id, peer: src}
	t.handshakes.Add(1)
	if p != nil {
		p.established(s, time.Now())
	}
	t.log.Info("seal: session established", "peer", src, "device", tr.dev, "session", fmt.Sprintf("%08x", s.id),
		"key", fmt.Sprintf("%08x", key.id), "suite", s.suite)
	t.sendAccept(b, s)
}

func (t *TargetLink) sendAccept(b []byte, s *session) {
	a := Message{Type: MessageAccept, KeyID: s.keyID, Suite: s.suite, Session: s.id, InitiatorNonce: s.nI, TargetNonce: s.nT}
	t.sendHandshake(b, &a, &s.send)
}

// sweepLocked forgets expired sessions and used nonces, at most once a
// second; t.mu must be held.
func (t *TargetLink) sweepLocked(now time.Duration) {
	if time.Duration(t.sweptAt.Load()) > now-time.Second {
		return
	}
	t.sweptAt.Store(int64(now))
	for n, u := range t.used {
		if u.expires < now {
			delete(t.used, n)
		}
	}
	old := *t.sessions.Load()
	next := make(map[uint32]*session, len(old))
	for id, s := range old {
		if !s.expired(now, &t.lim) {
			next[id] = s
		}
	}
	t.replaceSessionsLocked(old, next)
}

// Stats reports the layer's counters, sessions and peers.
func (t *TargetLink) Stats() Stats {
	t.mu.Lock()
	t.sweepLocked(t.now())
	n := len(*t.sessions.Load())
	t.mu.Unlock()
	return Stats{
		Role: "target", Mode: t.mode.String(), Sessions: n,
		Handshakes: t.handshakes.Load(), FramesSealed: t.sealed.Load(), FramesOpened: t.opened.Load(),
		UnsealedAccepted: t.unsealed.Load(), Rejected: t.rejected.snapshot(), Peers: t.peers.snapshot(),
	}
}

// replaceSessionsLocked installs next in place of old and marks "expired"
// the peers left without a session; t.mu must be held.
func (t *TargetLink) replaceSessionsLocked(old, next map[uint32]*session) {
	t.sessions.Store(&next)
	left := make(map[*peerStats]bool)
	for _, s := range next {
		left[s.peerSt] = true
	}
	for id, s := range old {
		if next[id] == nil && s.peerSt != nil && !left[s.peerSt] {
			s.peerSt.setState("expired", time.Now())
		}
	}
}
