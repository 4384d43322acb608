// Package aoe implements the ATA over Ethernet (AoE) protocol, revision 11:
// the wire format of its frames (common header, ATA, Query Config, MAC Mask
// List and Reserve/Release arguments) and a raw Ethernet link to carry them.
//
// Decoders never allocate: a decoded value's byte slices alias the buffer it
// was decoded from, so a caller that keeps them past the buffer's reuse must
// copy them. Encoders write into a caller's buffer with MarshalTo, or
// allocate one with MarshalBinary. A target builds a response in place, in
// the request's buffer, with the MarshalResponseHeaderTo methods.
package aoe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// EtherType is the Ethernet type assigned to AoE.
const EtherType = 0x88A2

// Version is the AoE protocol version this package speaks.
const Version = 1

// Lengths of the fixed parts of a frame, in bytes.
const (
	// EthernetHeaderLen is the length of an untagged Ethernet header.
	EthernetHeaderLen = 14
	// HeaderLen is the length of the AoE common header.
	HeaderLen = 10
	// FrameHeaderLen is the length of the Ethernet and AoE headers together:
	// the offset of a command's argument in a frame.
	FrameHeaderLen = EthernetHeaderLen + HeaderLen
	// MinFrameLen is the smallest Ethernet frame (without FCS); shorter
	// frames are padded by senders.
	MinFrameLen = 60
)

// SectorSize is the size of an ATA sector as AoE carries it.
const SectorSize = 512

// Broadcast addresses for the major (shelf) and minor (slot) fields.
const (
	// BroadcastMajor addresses every shelf.
	BroadcastMajor = 0xffff
	// BroadcastMinor addresses every slot.
	BroadcastMinor = 0xff
)

// SectorsPerFrame reports how many 512-byte sectors of ATA data fit in one
// frame on a link with the given MTU. It counts the Ethernet header against
// the MTU as vblade does, so both give the same figure: 2 at MTU 1500 and 17
// at MTU 9000. The result is capped at 255, the largest sector count an ATA
// argument can carry.
func SectorsPerFrame(mtu int) int {
	n := (mtu - EthernetHeaderLen - HeaderLen - ATAHeaderLen) / SectorSize
	switch {
	case n < 0:
		return 0
	case n > 255:
		return 255
	}
	return n
}

// Flags are the flag bits of the AoE header (the low nibble of its first byte).
type Flags uint8

// Flag bits.
const (
	// FlagResponse marks a frame sent by a target.
	FlagResponse Flags = 0x08
	// FlagError marks a response that carries an error in Header.Error.
	FlagError Flags = 0x04
)

// Error is an AoE error code, carried in responses that have FlagError set.
type Error uint8

// AoE error codes.
const (
	ErrorUnrecognizedCommand Error = 1
	ErrorBadArgument         Error = 2
	ErrorDeviceUnavailable   Error = 3
	ErrorConfigStringPresent Error = 4
	ErrorUnsupportedVersion  Error = 5
	ErrorTargetReserved      Error = 6
)

var errorNames = [...]string{
	ErrorUnrecognizedCommand: "unrecognized command code",
	ErrorBadArgument:         "bad argument parameter",
	ErrorDeviceUnavailable:   "device unavailable",
	ErrorConfigStringPresent: "config string present",
	ErrorUnsupportedVersion:  "unsupported version",
	ErrorTargetReserved:      "target is reserved",
}

// Error implements the error interface, so a response's code can be
// returned and matched with errors.Is.
func (e Error) Error() string {
	if int(e) < len(errorNames) && errorNames[e] != "" {
		return "aoe: " + errorNames[e]
	}
	return fmt.Sprintf("aoe: error %d", uint8(e))
}

// Command is an AoE command code.
type Command uint8

// AoE commands.
const (
	CommandATA            Command = 0
	CommandQueryConfig    Command = 1
	CommandMACMask        Command = 2
	CommandReserveRelease Command = 3
	// CommandVendorFirst is the first of the vendor-specific commands
	// (0xF0 to 0xFF).
	CommandVendorFirst Command = 0xF0
)

func (c Command) String() string {
	switch c {
	case CommandATA:
		return "ATA"
	case CommandQueryConfig:
		return "QueryConfig"
	case CommandMACMask:
		return "MACMask"
	case CommandReserveRelease:
		return "ReserveRelease"
	}
	return fmt.Sprintf("Command(%#x)", uint8(c))
}

// Decoding errors. They are wrapped with the name of the operation that
// failed, so test for them with errors.Is.
var (
	// ErrShort means the input ended before the structure did.
	ErrShort = io.ErrUnexpectedEOF
	// ErrNotAoE means an Ethernet frame's type is not EtherType.
	ErrNotAoE = errors.New("not an AoE frame")
	// ErrBufferTooSmall means a MarshalTo buffer cannot hold the encoding.
	ErrBufferTooSmall = errors.New("buffer too small")
	// ErrTooLong means a field holds more than the protocol allows.
	ErrTooLong = errors.New("value too long")
)

// Header is the AoE common header that starts every AoE message.
type Header struct {
	// Version is the protocol version (the high nibble of the first byte).
	// Decoding keeps whatever the sender used; targets answer a version
	// other than 1 with ErrorUnsupportedVersion.
	Version uint8
	Flags   Flags
	Error   Error
	// Major is the shelf address; BroadcastMajor addresses all shelves.
	Major uint16
	// Minor is the slot address; BroadcastMinor addresses all slots.
	Minor   uint8
	Command Command
	// Tag is chosen by the initiator and echoed by the target.
	Tag uint32
}

// IsResponse reports whether the header has FlagResponse set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// MarshalTo encodes h into the first HeaderLen bytes of b.
func (h *Header) MarshalTo(b []byte) (int, error) {
	if len(b) < HeaderLen {
		return 0, fmt.Errorf("aoe: marshal header: %w", ErrBufferTooSmall)
	}
	if h.Version > 0x0f || h.Flags > 0x0f {
		return 0, fmt.Errorf("aoe: marshal header: version %d or flags %#x beyond a nibble: %w", h.Version, h.Flags, ErrTooLong)
	}
	putHeader(b, h.Version<<4|uint8(h.Flags), h.Error, h.Major, h.Minor, h.Command, h.Tag)
	return HeaderLen, nil
}

// putHeader encodes a header's fields into b, which holds at least
// HeaderLen bytes.
func putHeader(b []byte, verFlags uint8, code Error, major uint16, minor uint8, cmd Command, tag uint32) {
	_ = b[HeaderLen-1]
	b[0] = verFlags
	b[1] = uint8(code)
	binary.BigEndian.PutUint16(b[2:4], major)
	b[4] = minor
	b[5] = uint8(cmd)
	binary.BigEndian.PutUint32(b[6:10], tag)
}

// MarshalBinary encodes h into a new buffer.
func (h *Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderLen)
	_, err := h.MarshalTo(b)
	return b, err
}

// UnmarshalBinary decodes h from the first HeaderLen bytes of b.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) < HeaderLen {
		return fmt.Errorf("aoe: unmarshal header: %d bytes: %w", len(b), ErrShort)
	}
	h.decode(b)
	return nil
}

// decode decodes h from b, which holds at least HeaderLen bytes.
func (h *Header) decode(b []byte) {
	_ = b[HeaderLen-1]
	h.Version = b[0] >> 4
	h.Flags = Flags(b[0] & 0x0f)
	h.Error = Error(b[1])
	h.Major = binary.BigEndian.Uint16(b[2:4])
	h.Minor = b[4]
	h.Command = Command(b[5])
	h.Tag = binary.BigEndian.Uint32(b[6:10])
}

// Frame is an AoE message in an untagged Ethernet frame: addresses, the
// common header and the command's argument, still encoded.
type Frame struct {
	Dst, Src MAC
	Header
	// Arg is the command's argument: decode it with the type that matches
	// Header.Command (ATA, Config, MACMask or ReserveRelease). After
	// UnmarshalBinary it aliases the decoded buffer and includes any
	// Ethernet padding.
	Arg []byte
}

// Len reports the encoded length of f, without padding.
func (f *Frame) Len() int { return FrameHeaderLen + len(f.Arg) }

// MarshalTo encodes f into b, padded with zeros to MinFrameLen, and
// returns the number of bytes written.
func (f *Frame) MarshalTo(b []byte) (int, error) {
	n := f.Len()
	if len(b) < n || len(b) < MinFrameLen {
		return 0, fmt.Errorf("aoe: marshal frame: %d bytes for %d: %w", len(b), n, ErrBufferTooSmall)
	}
	if _, err := f.MarshalHeaderTo(b); err != nil {
		return 0, err
	}
	copy(b[FrameHeaderLen:], f.Arg)
	for n < MinFrameLen {
		b[n] = 0
		n++
	}
	return n, nil
}

// MarshalHeaderTo encodes f's Ethernet and AoE headers into the first
// FrameHeaderLen bytes of b, leaving the argument to the caller. This lets a
// target build a response in place around data it already put at
// b[FrameHeaderLen:].
func (f *Frame) MarshalHeaderTo(b []byte) (int, error) {
	if len(b) < FrameHeaderLen {
		return 0, fmt.Errorf("aoe: marshal frame: %w", ErrBufferTooSmall)
	}
	copy(b[0:6], f.Dst[:])
	copy(b[6:12], f.Src[:])
	binary.BigEndian.PutUint16(b[12:14], EtherType)
	if _, err := f.Header.MarshalTo(b[EthernetHeaderLen:]); err != nil {
		return 0, err
	}
	return FrameHeaderLen, nil
}

// MarshalResponseHeaderTo encodes into the first FrameHeaderLen bytes of b
// the headers of a target's response to the request f: addressed back to
// f's sender from self, with FlagResponse, this package's Version, and
// f's command and tag. major and minor are the target's own address, since
// f may have used the broadcast ones. A code other than 0 is an AoE error:
// the headers carry it and FlagError. b may be the buffer f was decoded
// from, so that a target builds a response in place around the argument
// it put at b[FrameHeaderLen:]. It writes what MarshalHeaderTo would for
// a Frame of those values, without building one: on a target's hot path,
// copying that Frame costs more than encoding it.
func (f *Frame) MarshalResponseHeaderTo(b []byte, self MAC, major uint16, minor uint8, code Error) (int, error) {
	if len(b) < FrameHeaderLen {
		return 0, fmt.Errorf("aoe: marshal response header: %w", ErrBufferTooSmall)
	}
	flags := FlagResponse
	if code != 0 {
		flags |= FlagError
	}
	copy(b[0:6], f.Src[:])
	copy(b[6:12], self[:])
	binary.BigEndian.PutUint16(b[12:14], EtherType)
	putHeader(b[EthernetHeaderLen:], Version<<4|uint8(flags), code, major, minor, f.Command, f.Tag)
	return FrameHeaderLen, nil
}

// MarshalBinary encodes f into a new buffer.
func (f *Frame) MarshalBinary() ([]byte, error) {
	b := make([]byte, max(f.Len(), MinFrameLen))
	n, err := f.MarshalTo(b)
	return b[:n], err
}

// UnmarshalBinary decodes an untagged Ethernet frame. f.Arg aliases b.
func (f *Frame) UnmarshalBinary(b []byte) error {
	if len(b) < FrameHeaderLen {
		return fmt.Errorf("aoe: unmarshal frame: %d bytes: %w", len(b), ErrShort)
	}
	if et := binary.BigEndian.Uint16(b[12:14]); et != EtherType {
		return fmt.Errorf("aoe: unmarshal frame: ethertype %#04x: %w", et, ErrNotAoE)
	}
	f.Dst = MAC(b[0:6])
	f.Src = MAC(b[6:12])
	f.Header.decode(b[EthernetHeaderLen:])
	f.Arg = b[FrameHeaderLen:]
	return nil
}
