package aoe

import (
	"encoding/binary"
	"fmt"
)

// ConfigHeaderLen is the length of the Query Config argument before its
// config string.
const ConfigHeaderLen = 8

// MaxConfigStringLen is the longest config string AoE allows.
const MaxConfigStringLen = 1024

// ConfigCommand is the ccmd of a Query Config message.
type ConfigCommand uint8

// Query Config commands.
const (
	// ConfigRead asks for the config string.
	ConfigRead ConfigCommand = 0
	// ConfigTest asks for a reply only if the string matches exactly.
	ConfigTest ConfigCommand = 1
	// ConfigTestPrefix asks for a reply only if the string starts with
	// the request's string.
	ConfigTestPrefix ConfigCommand = 2
	// ConfigSet sets the string if none is set (else ErrorConfigStringPresent).
	ConfigSet ConfigCommand = 3
	// ConfigForceSet sets the string unconditionally.
	ConfigForceSet ConfigCommand = 4
)

func (c ConfigCommand) String() string {
	switch c {
	case ConfigRead:
		return "read"
	case ConfigTest:
		return "test"
	case ConfigTestPrefix:
		return "test-prefix"
	case ConfigSet:
		return "set"
	case ConfigForceSet:
		return "force-set"
	}
	return fmt.Sprintf("ConfigCommand(%d)", uint8(c))
}

// Config is the argument of a Query Config message (CommandQueryConfig).
type Config struct {
	// BufferCount is how many messages the target can queue: an
	// initiator's window.
	BufferCount uint16
	// FirmwareVersion is the target's firmware version.
	FirmwareVersion uint16
	// SectorCount is the most sectors one ATA command may move (0 in a
	// request).
	SectorCount uint8
	// Version is the AoE version the target speaks (the high nibble of
	// byte 5); 0 in a request.
	Version uint8
	// Command is the ccmd (the low nibble of byte 5).
	Command ConfigCommand
	// String is the config string, at most MaxConfigStringLen bytes. After
	// UnmarshalBinary it aliases the input.
	String []byte
}

// Len reports the encoded length of c.
func (c *Config) Len() int { return ConfigHeaderLen + len(c.String) }

// MarshalTo encodes c into b.
func (c *Config) MarshalTo(b []byte) (int, error) {
	if len(c.String) > MaxConfigStringLen {
		return 0, fmt.Errorf("aoe: marshal config: %d-byte string: %w", len(c.String), ErrTooLong)
	}
	if c.Version > 0x0f || c.Command > 0x0f {
		return 0, fmt.Errorf("aoe: marshal config: version %d or command %d beyond a nibble: %w", c.Version, c.Command, ErrTooLong)
	}
	if len(b) < c.Len() {
		return 0, fmt.Errorf("aoe: marshal config: %w", ErrBufferTooSmall)
	}
	binary.BigEndian.PutUint16(b[0:2], c.BufferCount)
	binary.BigEndian.PutUint16(b[2:4], c.FirmwareVersion)
	b[4] = c.SectorCount
	b[5] = c.Version<<4 | uint8(c.Command)
	binary.BigEndian.PutUint16(b[6:8], uint16(len(c.String)))
	copy(b[ConfigHeaderLen:], c.String)
	return c.Len(), nil
}

// MarshalBinary encodes c into a new buffer.
func (c *Config) MarshalBinary() ([]byte, error) {
	b := make([]byte, c.Len())
	_, err := c.MarshalTo(b)
	return b, err
}

// UnmarshalBinary decodes a Query Config argument. c.String aliases b.
// A string length beyond MaxConfigStringLen or beyond the input is an
// error: a target answers it with ErrorBadArgument (UnmarshalHeader still
// reads the command to answer).
func (c *Config) UnmarshalBinary(b []byte) error {
	if len(b) < ConfigHeaderLen {
		return fmt.Errorf("aoe: unmarshal config: %d bytes: %w", len(b), ErrShort)
	}
	n := int(binary.BigEndian.Uint16(b[6:8]))
	if n > MaxConfigStringLen {
		return fmt.Errorf("aoe: unmarshal config: %d-byte string: %w", n, ErrTooLong)
	}
	if len(b) < ConfigHeaderLen+n {
		return fmt.Errorf("aoe: unmarshal config: %d-byte string in %d bytes: %w", n, len(b)-ConfigHeaderLen, ErrShort)
	}
	c.decodeHeader(b)
	c.String = b[ConfigHeaderLen : ConfigHeaderLen+n]
	return nil
}

// UnmarshalHeader decodes the fixed part of a Query Config argument: every
// field but String, which it sets to nil, without looking at the string's
// length. It fails only on input shorter than ConfigHeaderLen, so a target
// can read the command of a request whose string UnmarshalBinary refuses.
func (c *Config) UnmarshalHeader(b []byte) error {
	if len(b) < ConfigHeaderLen {
		return fmt.Errorf("aoe: unmarshal config header: %d bytes: %w", len(b), ErrShort)
	}
	c.decodeHeader(b)
	c.String = nil
	return nil
}

// decodeHeader decodes the fixed fields from b, which holds at least
// ConfigHeaderLen bytes.
func (c *Config) decodeHeader(b []byte) {
	c.BufferCount = binary.BigEndian.Uint16(b[0:2])
	c.FirmwareVersion = binary.BigEndian.Uint16(b[2:4])
	c.SectorCount = b[4]
	c.Version = b[5] >> 4
	c.Command = ConfigCommand(b[5] & 0x0f)
}
