package aoe

import "fmt"

// ReserveReleaseHeaderLen is the length of the Reserve/Release argument
// before its addresses.
const ReserveReleaseHeaderLen = 2

// ReserveCommand is the rcmd of a Reserve/Release message.
type ReserveCommand uint8

// Reserve/Release commands.
const (
	// ReserveRead asks for the reserve list.
	ReserveRead ReserveCommand = 0
	// ReserveSet sets the list, if the sender may (the list is empty or
	// holds the sender); an empty list releases the target.
	ReserveSet ReserveCommand = 1
	// ReserveForceSet sets the list unconditionally.
	ReserveForceSet ReserveCommand = 2
)

// ReserveRelease is the argument of a Reserve/Release message
// (CommandReserveRelease).
type ReserveRelease struct {
	Command ReserveCommand
	// MACs is the list to set (request) or the current list (response).
	// At most 255: the count is one byte.
	MACs []MAC
}

// Len reports the encoded length of r.
func (r *ReserveRelease) Len() int { return ReserveReleaseHeaderLen + 6*len(r.MACs) }

// MarshalTo encodes r into b.
func (r *ReserveRelease) MarshalTo(b []byte) (int, error) {
	if len(r.MACs) > 255 {
		return 0, fmt.Errorf("aoe: marshal reserve/release: %d addresses: %w", len(r.MACs), ErrTooLong)
	}
	if len(b) < r.Len() {
		return 0, fmt.Errorf("aoe: marshal reserve/release: %w", ErrBufferTooSmall)
	}
	b[0] = uint8(r.Command)
	b[1] = uint8(len(r.MACs))
	for i, m := range r.MACs {
		copy(b[ReserveReleaseHeaderLen+6*i:], m[:])
	}
	return r.Len(), nil
}

// MarshalBinary encodes r into a new buffer.
func (r *ReserveRelease) MarshalBinary() ([]byte, error) {
	b := make([]byte, r.Len())
	_, err := r.MarshalTo(b)
	return b, err
}

// UnmarshalBinary decodes a Reserve/Release argument. It reuses the
// capacity of r.MACs.
func (r *ReserveRelease) UnmarshalBinary(b []byte) error {
	if len(b) < ReserveReleaseHeaderLen {
		return fmt.Errorf("aoe: unmarshal reserve/release: %d bytes: %w", len(b), ErrShort)
	}
	n := int(b[1])
	if len(b) < ReserveReleaseHeaderLen+6*n {
		return fmt.Errorf("aoe: unmarshal reserve/release: %d addresses in %d bytes: %w", n, len(b)-ReserveReleaseHeaderLen, ErrShort)
	}
	r.decodeHeader(b)
	if cap(r.MACs) < n {
		r.MACs = make([]MAC, 0, n)
	}
	// Reslicing rather than appending lets the compiler see that the
	// addresses stay where they were: a caller may keep them on its
	// stack.
	r.MACs = r.MACs[:n]
	for i := range r.MACs {
		copy(r.MACs[i][:], b[ReserveReleaseHeaderLen+6*i:])
	}
	return nil
}

// UnmarshalHeader decodes the fixed part of a Reserve/Release argument
// (Command) and empties r.MACs, keeping its capacity, without looking at
// the address count. It fails only on input shorter than
// ReserveReleaseHeaderLen, so a target can read the command of a request
// whose addresses UnmarshalBinary refuses, or that needs none.
func (r *ReserveRelease) UnmarshalHeader(b []byte) error {
	if len(b) < ReserveReleaseHeaderLen {
		return fmt.Errorf("aoe: unmarshal reserve/release header: %d bytes: %w", len(b), ErrShort)
	}
	r.decodeHeader(b)
	return nil
}

// decodeHeader decodes the fixed fields from b, which holds at least
// ReserveReleaseHeaderLen bytes, and empties the addresses.
func (r *ReserveRelease) decodeHeader(b []byte) {
	r.Command = ReserveCommand(b[0])
	r.MACs = r.MACs[:0]
}
