package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Labels that make each use of a key distinct; the role labels keep a
// target's proof from passing as an initiator's (no reflection).
const (
	labelTargetProof    = "ironblade-aoe target proof v1"
	labelInitiatorProof = "ironblade-aoe initiator proof v1"
	labelSession        = "ironblade-aoe session v1"
	labelCookie         = "ironblade-aoe cookie v1"
)

// transcript is what a handshake binds: both stations, the device, the key
// and both nonces.
type transcript struct {
	initiator, target aoe.MAC
	dev               DeviceAddr
	keyID             uint32
	suite             Suite
	nI, nT            [NonceLen]byte
}

// bytes encodes t after label into b's storage.
func (t *transcript) append(b []byte, label string) []byte {
	b = append(b, label...)
	b = append(b, 0)
	b = append(b, t.initiator[:]...)
	b = append(b, t.target[:]...)
	b = binary.BigEndian.AppendUint16(b, t.dev.Shelf)
	b = append(b, t.dev.Slot)
	b = binary.BigEndian.AppendUint32(b, t.keyID)
	b = append(b, uint8(t.suite))
	b = append(b, t.nI[:]...)
	return append(b, t.nT[:]...)
}

// proof is a side's proof that it holds the device key: an HMAC of the
// transcript under the device key, with the side's role label.
func (t *transcript) proof(devKey *[32]byte, label string) [ProofLen]byte {
	var buf [128]byte
	m := hmac.New(sha256.New, devKey[:])
	m.Write(t.append(buf[:0], label))
	return [ProofLen]byte(m.Sum(nil))
}

// cookie is the target's stateless memory of a challenge it issued: an
// HMAC under a secret only it knows, of the transcript and the time.
func (t *transcript) cookie(secret *[32]byte, ms uint64) [CookieLen]byte {
	var buf [136]byte
	m := hmac.New(sha256.New, secret[:])
	m.Write(binary.BigEndian.AppendUint64(t.append(buf[:0], labelCookie), ms))
	return [CookieLen]byte(m.Sum(nil))
}

// sessionKeys is what HKDF derives from the device key and both nonces:
// a key and a secret starting sequence number for each direction, and the
// session id.
type sessionKeys struct {
	toTarget, toInitiator [32]byte
	encToTarget, encToIni [32]byte // SuiteAESGCM's keys, apart from the HMAC keys
	seqToTarget, seqToIni uint64
	id                    uint32
}

func (t *transcript) sessionKeys(devKey *[32]byte) sessionKeys {
	var info [128]byte
	salt := append(append(make([]byte, 0, 2*NonceLen), t.nI[:]...), t.nT[:]...)
	out, err := hkdf.Key(sha256.New, devKey[:], salt, string(t.append(info[:0], labelSession)), 32+32+8+8+4+64)
	if err != nil {
		panic("seal: hkdf: " + err.Error())
	}
	var k sessionKeys
	copy(k.toTarget[:], out[0:32])
	copy(k.toInitiator[:], out[32:64])
	k.seqToTarget = binary.BigEndian.Uint64(out[64:72])
	k.seqToIni = binary.BigEndian.Uint64(out[72:80])
	k.id = binary.BigEndian.Uint32(out[80:84])
	copy(k.encToTarget[:], out[84:116])
	copy(k.encToIni[:], out[116:148])
	return k
}

// direction is one direction of a session: its HMAC state, reused for
// every frame (Reset, never New), and its sequence numbers.
type direction struct {
	mu    sync.Mutex
	mac   hash.Hash
	aead  cipher.AEAD // SuiteAESGCM: seals the frames; mac then tags only the accept
	nonce [12]byte
	sum   [sha256.Size]byte
	seq0  uint64 // secret start: a frame's number is seq0 plus its count
	sent  uint64 // sender: frames sealed so far
	win   Window // receiver: counts accepted
}

func (d *direction) init(key, encKey *[32]byte, seq0 uint64, suite Suite) {
	d.mac = hmac.New(sha256.New, key[:])
	d.seq0 = seq0
	if suite == SuiteAESGCM {
		block, err := aes.NewCipher(encKey[:])
		if err != nil {
			panic("seal: aes: " + err.Error()) // a 32-byte key never fails
		}
		if d.aead, err = cipher.NewGCM(block); err != nil {
			panic("seal: gcm: " + err.Error())
		}
	}
}

// nonceLocked is the AES-GCM nonce of the frame numbered seq: the number
// itself, unique in this direction of this session; d.mu must be held.
func (d *direction) nonceLocked(seq uint64) []byte {
	binary.BigEndian.PutUint64(d.nonce[4:], seq)
	return d.nonce[:]
}

// tagLocked computes the tag of msg into d.sum; d.mu must be held.
func (d *direction) tagLocked(msg []byte) []byte {
	d.mac.Reset()
	d.mac.Write(msg)
	return d.mac.Sum(d.sum[:0])[:TagLen]
}

// seal numbers and tags a frame whose seal header (but its numbers) and
// argument are in place: frame is everything but the tag, which goes to
// tag. It returns the frame's sequence number.
func (d *direction) seal(frame []byte, ack uint64, tag []byte) uint64 {
	d.mu.Lock()
	d.sent++
	seq := d.seq0 + d.sent
	binary.BigEndian.PutUint64(frame[sealOff+8:], seq)
	binary.BigEndian.PutUint64(frame[sealOff+16:], ack)
	if d.aead != nil {
		// The argument is encrypted in place and the tag follows it:
		// frame's storage runs on into tag.
		d.aead.Seal(frame[innerOff:innerOff], d.nonceLocked(seq), frame[innerOff:], frame[:innerOff])
	} else {
		copy(tag, d.tagLocked(frame))
	}
	d.mu.Unlock()
	return seq
}

// open checks a received frame's tag and number and records the number.
// It returns the frame's count (its number less the secret start).
func (d *direction) open(frame []byte, seq uint64) (uint64, Reason) {
	n := seq - d.seq0
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.win.Check(n) {
		return n, RejectReplay // before the tag: a replay costs no HMAC
	}
	if !d.verifyLocked(frame, seq) {
		return n, RejectBadTag
	}
	d.win.Accept(n)
	return n, 0
}

// verifyLocked checks a sealed frame's tag and, with SuiteAESGCM, decrypts
// its argument in place; d.mu must be held.
func (d *direction) verifyLocked(frame []byte, seq uint64) bool {
	if d.aead != nil {
		_, err := d.aead.Open(frame[innerOff:innerOff], d.nonceLocked(seq), frame[innerOff:], frame[:innerOff])
		return err == nil
	}
	return hmac.Equal(d.tagLocked(frame[:len(frame)-TagLen]), frame[len(frame)-TagLen:])
}

// session is the state both sides keep for one session.
type session struct {
	id      uint32
	peer    aoe.MAC
	dev     DeviceAddr
	keyID   uint32
	suite   Suite
	created time.Duration // on the owner's monotonic clock
	nI, nT  [NonceLen]byte
	send    direction
	recv    direction
	peerSt  *peerStats
	used    atomic.Bool // target: a frame was opened in it
	// lastSent is the count of the newest request sealed (initiator), so
	// that a response can only answer a request that was sent.
	lastSent atomic.Uint64
	acks     Window // initiator: counts of the requests answered, under recv.mu
}

// newSession sets up a session from the handshake transcript; target says
// which side the caller is.
func newSession(t *transcript, devKey *[32]byte, now time.Duration, target bool) *session {
	k := t.sessionKeys(devKey)
	s := &session{id: k.id, dev: t.dev, keyID: t.keyID, suite: t.suite, created: now, nI: t.nI, nT: t.nT}
	if target {
		s.peer = t.initiator
		s.send.init(&k.toInitiator, &k.encToIni, k.seqToIni, t.suite)
		s.recv.init(&k.toTarget, &k.encToTarget, k.seqToTarget, t.suite)
	} else {
		s.peer = t.target
		s.send.init(&k.toTarget, &k.encToTarget, k.seqToTarget, t.suite)
		s.recv.init(&k.toInitiator, &k.encToIni, k.seqToIni, t.suite)
	}
	return s
}

// expired reports whether the session may no longer carry frames.
func (s *session) expired(now time.Duration, lim *Limits) bool {
	return now-s.created > lim.RejectAfterTime
}

// sealFrame writes the sealed form of the plain frame p into out (which
// must hold len(p)+Overhead bytes) with tag as its AoE tag and ack as the
// number it answers, and returns its length.
func (s *session) sealFrame(out, p []byte, tag uint32, ack uint64) int {
	copy(out[:aoe.FrameHeaderLen], p)
	out[19] = uint8(CommandSealed)
	binary.BigEndian.PutUint32(out[20:24], tag)
	h := out[sealOff:innerOff]
	h[0], h[1], h[2], h[3] = Version, p[19], uint8(s.suite), 0
	binary.BigEndian.PutUint32(h[4:8], s.id)
	n := innerOff + copy(out[innerOff:], p[aoe.FrameHeaderLen:])
	s.send.seal(out[:n], ack, out[n:n+TagLen])
	return n + TagLen
}

// unseal turns a verified sealed frame back into the plain frame it wraps,
// in place, and returns its length.
func unseal(b []byte, inner aoe.Command) int {
	b[19] = uint8(inner)
	return aoe.FrameHeaderLen + copy(b[aoe.FrameHeaderLen:], b[innerOff:len(b)-TagLen])
}
