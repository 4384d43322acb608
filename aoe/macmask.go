package aoe

import "fmt"

// MACMaskHeaderLen is the length of the MAC Mask List argument before its
// directives.
const MACMaskHeaderLen = 4

// DirectiveLen is the length of one MAC Mask List directive.
const DirectiveLen = 8

// MACMaskCommand is the mcmd of a MAC Mask List message.
type MACMaskCommand uint8

// MAC Mask List commands.
const (
	// MACMaskRead asks for the list.
	MACMaskRead MACMaskCommand = 0
	// MACMaskEdit applies the directives, then returns the list.
	MACMaskEdit MACMaskCommand = 1
)

// MACMaskError is the merror of a MAC Mask List response.
type MACMaskError uint8

// MAC Mask List errors.
const (
	MACMaskErrorNone         MACMaskError = 0
	MACMaskErrorUnspecified  MACMaskError = 1
	MACMaskErrorBadDirective MACMaskError = 2
	MACMaskErrorListFull     MACMaskError = 3
)

func (e MACMaskError) Error() string {
	switch e {
	case MACMaskErrorUnspecified:
		return "aoe: MAC mask: unspecified error"
	case MACMaskErrorBadDirective:
		return "aoe: MAC mask: bad directive"
	case MACMaskErrorListFull:
		return "aoe: MAC mask: list full"
	}
	return fmt.Sprintf("aoe: MAC mask: error %d", uint8(e))
}

// DirectiveCommand is the dcmd of a MAC Mask List directive.
type DirectiveCommand uint8

// Directive commands.
const (
	DirectiveNone   DirectiveCommand = 0
	DirectiveAdd    DirectiveCommand = 1
	DirectiveDelete DirectiveCommand = 2
)

// Directive is one entry of a MAC Mask List message: an edit in a request,
// a list entry in a response.
type Directive struct {
	Command DirectiveCommand
	MAC     MAC
}

// MACMask is the argument of a MAC Mask List message (CommandMACMask).
type MACMask struct {
	Command MACMaskCommand
	Error   MACMaskError
	// Directives are the edits (request) or the list (response). At most
	// 255: the count is one byte.
	Directives []Directive
}

// Len reports the encoded length of m.
func (m *MACMask) Len() int { return MACMaskHeaderLen + DirectiveLen*len(m.Directives) }

// MarshalTo encodes m into b.
func (m *MACMask) MarshalTo(b []byte) (int, error) {
	if len(m.Directives) > 255 {
		return 0, fmt.Errorf("aoe: marshal MAC mask: %d directives: %w", len(m.Directives), ErrTooLong)
	}
	if len(b) < m.Len() {
		return 0, fmt.Errorf("aoe: marshal MAC mask: %w", ErrBufferTooSmall)
	}
	b[0] = 0
	b[1] = uint8(m.Command)
	b[2] = uint8(m.Error)
	b[3] = uint8(len(m.Directives))
	for i, d := range m.Directives {
		p := b[MACMaskHeaderLen+DirectiveLen*i:]
		p[0] = 0
		p[1] = uint8(d.Command)
		copy(p[2:8], d.MAC[:])
	}
	return m.Len(), nil
}

// MarshalBinary encodes m into a new buffer.
func (m *MACMask) MarshalBinary() ([]byte, error) {
	b := make([]byte, m.Len())
	_, err := m.MarshalTo(b)
	return b, err
}

// UnmarshalBinary decodes a MAC Mask List argument. It reuses the capacity
// of m.Directives, so decoding into the same value again does not allocate.
func (m *MACMask) UnmarshalBinary(b []byte) error {
	if len(b) < MACMaskHeaderLen {
		return fmt.Errorf("aoe: unmarshal MAC mask: %d bytes: %w", len(b), ErrShort)
	}
	n := int(b[3])
	if len(b) < MACMaskHeaderLen+DirectiveLen*n {
		return fmt.Errorf("aoe: unmarshal MAC mask: %d directives in %d bytes: %w", n, len(b)-MACMaskHeaderLen, ErrShort)
	}
	m.decodeHeader(b)
	if cap(m.Directives) < n {
		m.Directives = make([]Directive, 0, n)
	}
	// Reslicing rather than appending lets the compiler see that the
	// directives stay where they were: a caller may keep them on its
	// stack.
	m.Directives = m.Directives[:n]
	for i := range m.Directives {
		p := b[MACMaskHeaderLen+DirectiveLen*i:]
		d := Directive{Command: DirectiveCommand(p[1])}
		copy(d.MAC[:], p[2:8])
		m.Directives[i] = d
	}
	return nil
}

// UnmarshalHeader decodes the fixed part of a MAC Mask List argument
// (Command and Error) and empties m.Directives, keeping its capacity,
// without looking at the directive count. It fails only on input shorter
// than MACMaskHeaderLen, so a target can read the command of a request
// whose directives UnmarshalBinary refuses, or that needs none.
func (m *MACMask) UnmarshalHeader(b []byte) error {
	if len(b) < MACMaskHeaderLen {
		return fmt.Errorf("aoe: unmarshal MAC mask header: %d bytes: %w", len(b), ErrShort)
	}
	m.decodeHeader(b)
	return nil
}

// decodeHeader decodes the fixed fields from b, which holds at least
// MACMaskHeaderLen bytes, and empties the directives.
func (m *MACMask) decodeHeader(b []byte) {
	m.Command = MACMaskCommand(b[1])
	m.Error = MACMaskError(b[2])
	m.Directives = m.Directives[:0]
}
