package seal

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ironblade/ironblade/aoe"
)

// AoE commands of the extension, in the vendor-specific range, so that a
// plain target answers them "unrecognized command" instead of executing
// anything.
const (
	// CommandSealed carries a sealed AoE command.
	CommandSealed aoe.Command = 0xF0
	// CommandHandshake carries a handshake message.
	CommandHandshake aoe.Command = 0xF1
)

// Version is the version of the seal header and handshake messages.
const Version = 1

// Suite is the protection a session gives its frames, agreed in the
// handshake (and bound into both proofs, so no one can change it).
type Suite uint8

const (
	// SuiteHMAC authenticates every frame with HMAC-SHA256, truncated to
	// 128 bits; the payload travels in clear.
	SuiteHMAC Suite = 0
	// SuiteAESGCM also encrypts the wrapped argument: AES-256-GCM with a
	// 128-bit tag, the frame's headers as associated data, and the
	// sequence number as the nonce (never reused: keys are per session and
	// direction).
	SuiteAESGCM Suite = 1
)

func (s Suite) String() string {
	switch s {
	case SuiteHMAC:
		return "hmac-sha256"
	case SuiteAESGCM:
		return "aes-256-gcm"
	}
	return fmt.Sprintf("suite %d", uint8(s))
}

func (s Suite) valid() bool { return s <= SuiteAESGCM }

// Sizes of the sealed frame's parts, in bytes.
const (
	// HeaderLen is the seal header that follows the AoE header.
	HeaderLen = 24
	// TagLen is the truncated HMAC-SHA256 at the end of a sealed frame.
	TagLen = 16
	// Overhead is what sealing adds to a frame. At MTU 1500 and 9000 it
	// fits in the room that sectors per frame leave (440 and 260 bytes),
	// so no sector is lost.
	Overhead = HeaderLen + TagLen
	// sealOff is the offset of the seal header in a frame.
	sealOff = aoe.FrameHeaderLen
	// innerOff is the offset of the wrapped argument in a sealed frame.
	innerOff = sealOff + HeaderLen
)

// Header is the seal header of a sealed frame (command 0xF0), at offset 24.
type Header struct {
	// Version is the seal version, 1.
	Version uint8
	// Command is the AoE command the frame wraps.
	Command aoe.Command
	// Suite is the session's suite.
	Suite Suite
	// Session names the session whose keys sealed the frame.
	Session uint32
	// Seq is the frame's sequence number in its direction: the session's
	// secret starting number plus the frame's count, never reused.
	Seq uint64
	// Ack is, in a response, the sequence number of the request it
	// answers; zero in a request.
	Ack uint64
}

// MarshalTo writes h into b, which must hold HeaderLen bytes.
func (h *Header) MarshalTo(b []byte) (int, error) {
	if len(b) < HeaderLen {
		return 0, fmt.Errorf("seal: marshal header: %w", errShort)
	}
	b[0] = h.Version
	b[1] = uint8(h.Command)
	b[2], b[3] = uint8(h.Suite), 0
	binary.BigEndian.PutUint32(b[4:8], h.Session)
	binary.BigEndian.PutUint64(b[8:16], h.Seq)
	binary.BigEndian.PutUint64(b[16:24], h.Ack)
	return HeaderLen, nil
}

// UnmarshalBinary decodes a seal header from the start of b.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) < HeaderLen {
		return fmt.Errorf("seal: unmarshal header: %w", errShort)
	}
	if b[0] != Version {
		return fmt.Errorf("seal: unmarshal header: version %d: %w", b[0], errVersion)
	}
	if !Suite(b[2]).valid() || b[3] != 0 {
		return fmt.Errorf("seal: unmarshal header: unknown suite or reserved byte set: %w", errMalformed)
	}
	*h = Header{
		Version: b[0],
		Command: aoe.Command(b[1]),
		Suite:   Suite(b[2]),
		Session: binary.BigEndian.Uint32(b[4:8]),
		Seq:     binary.BigEndian.Uint64(b[8:16]),
		Ack:     binary.BigEndian.Uint64(b[16:24]),
	}
	return nil
}

// MessageType is the type of a handshake message.
type MessageType uint8

// Handshake messages. Hello and Finish go from initiator to target,
// Challenge, Accept and Refuse from target to initiator.
const (
	// MessageHello opens a handshake: the initiator's nonce and key id.
	MessageHello MessageType = 1
	// MessageChallenge is the target's nonce, a stateless cookie and the
	// target's proof of the key.
	MessageChallenge MessageType = 2
	// MessageFinish is the initiator's proof, with the cookie echoed.
	MessageFinish MessageType = 3
	// MessageAccept confirms the session, tagged with its new key.
	MessageAccept MessageType = 4
	// MessageRefuse is an unauthenticated hint: the key id is unknown or
	// the session is not (or no longer) known. Receivers treat it as a
	// reason to try a handshake, never as a verdict.
	MessageRefuse MessageType = 5
)

func (t MessageType) String() string {
	switch t {
	case MessageHello:
		return "hello"
	case MessageChallenge:
		return "challenge"
	case MessageFinish:
		return "finish"
	case MessageAccept:
		return "accept"
	case MessageRefuse:
		return "refuse"
	}
	return fmt.Sprintf("message %d", uint8(t))
}

// RefuseReason says why a target sent MessageRefuse.
type RefuseReason uint8

// Refuse reasons.
const (
	// RefuseUnknownKey: the target holds no key with the Hello's key id.
	RefuseUnknownKey RefuseReason = 1
	// RefuseNoSession: the target knows no live session with the sealed
	// frame's session id (it restarted, or the session expired).
	RefuseNoSession RefuseReason = 2
	// RefuseSuite: the export requires a suite the hello did not ask for
	// (encryption).
	RefuseSuite RefuseReason = 3
)

// NonceLen is the length of each side's handshake nonce.
const NonceLen = 16

// ProofLen is the length of a handshake proof (a full HMAC-SHA256).
const ProofLen = 32

// CookieLen is the length of the target's stateless cookie.
const CookieLen = 16

// Message is a handshake message (command 0xF1), at offset 24 of its
// frame. Which fields a message carries depends on its Type:
//
//	hello:     KeyID, InitiatorNonce
//	challenge: KeyID, InitiatorNonce, TargetNonce, Time, Cookie, Proof
//	finish:    KeyID, InitiatorNonce, TargetNonce, Time, Cookie, Proof
//	accept:    KeyID, InitiatorNonce, TargetNonce, Session, then a tag
//	refuse:    KeyID or Session, Reason
type Message struct {
	Type           MessageType
	Reason         RefuseReason
	Suite          Suite
	KeyID          uint32
	Session        uint32
	InitiatorNonce [NonceLen]byte
	TargetNonce    [NonceLen]byte
	// Time is the target's clock, in milliseconds of its own, when it
	// issued the cookie; only the target interprets it.
	Time   uint64
	Cookie [CookieLen]byte
	Proof  [ProofLen]byte
}

// Lengths of the handshake messages after the AoE header. An accept is
// followed by a TagLen tag, which Len includes.
const (
	msgFixedLen     = 12 // version, type, reason, reserved, key id, session
	helloLen        = msgFixedLen + NonceLen
	challengeLen    = msgFixedLen + 2*NonceLen + 8 + CookieLen + ProofLen
	acceptLen       = msgFixedLen + 2*NonceLen + TagLen
	refuseLen       = msgFixedLen
	maxHandshakeLen = challengeLen
)

// Len reports the encoded length of m.
func (m *Message) Len() int {
	switch m.Type {
	case MessageHello:
		return helloLen
	case MessageChallenge, MessageFinish:
		return challengeLen
	case MessageAccept:
		return acceptLen
	}
	return refuseLen
}

// MarshalTo encodes m into b. An accept's tag is left for the caller.
func (m *Message) MarshalTo(b []byte) (int, error) {
	n := m.Len()
	if len(b) < n {
		return 0, fmt.Errorf("seal: marshal %s: %w", m.Type, errShort)
	}
	b[0], b[1], b[2], b[3] = Version, uint8(m.Type), uint8(m.Reason), uint8(m.Suite)
	binary.BigEndian.PutUint32(b[4:8], m.KeyID)
	binary.BigEndian.PutUint32(b[8:12], m.Session)
	p := b[msgFixedLen:n]
	switch m.Type {
	case MessageHello:
		copy(p, m.InitiatorNonce[:])
	case MessageChallenge, MessageFinish:
		p = p[copy(p, m.InitiatorNonce[:]):]
		p = p[copy(p, m.TargetNonce[:]):]
		binary.BigEndian.PutUint64(p, m.Time)
		p = p[8+copy(p[8:], m.Cookie[:]):]
		copy(p, m.Proof[:])
	case MessageAccept:
		p = p[copy(p, m.InitiatorNonce[:]):]
		copy(p, m.TargetNonce[:])
	case MessageRefuse:
	default:
		return 0, fmt.Errorf("seal: marshal: %s: %w", m.Type, errMalformed)
	}
	return n, nil
}

// UnmarshalBinary decodes a handshake message from the start of b. Bytes
// beyond the message (Ethernet padding) are ignored.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) < msgFixedLen {
		return fmt.Errorf("seal: unmarshal handshake: %w", errShort)
	}
	if b[0] != Version {
		return fmt.Errorf("seal: unmarshal handshake: version %d: %w", b[0], errVersion)
	}
	*m = Message{
		Type:    MessageType(b[1]),
		Reason:  RefuseReason(b[2]),
		Suite:   Suite(b[3]),
		KeyID:   binary.BigEndian.Uint32(b[4:8]),
		Session: binary.BigEndian.Uint32(b[8:12]),
	}
	if m.Type < MessageHello || m.Type > MessageRefuse {
		return fmt.Errorf("seal: unmarshal handshake: %s: %w", m.Type, errMalformed)
	}
	if !m.Suite.valid() {
		return fmt.Errorf("seal: unmarshal handshake: %s: %w", m.Suite, errMalformed)
	}
	if len(b) < m.Len() {
		return fmt.Errorf("seal: unmarshal %s: %d bytes: %w", m.Type, len(b), errShort)
	}
	p := b[msgFixedLen:]
	switch m.Type {
	case MessageHello:
		copy(m.InitiatorNonce[:], p)
	case MessageChallenge, MessageFinish:
		p = p[copy(m.InitiatorNonce[:], p):]
		p = p[copy(m.TargetNonce[:], p):]
		m.Time = binary.BigEndian.Uint64(p)
		p = p[8+copy(m.Cookie[:], p[8:]):]
		copy(m.Proof[:], p)
	case MessageAccept:
		p = p[copy(m.InitiatorNonce[:], p):]
		copy(m.TargetNonce[:], p)
	}
	return nil
}

var (
	errShort     = errors.New("too short")
	errVersion   = errors.New("unsupported version")
	errMalformed = errors.New("malformed")
)
