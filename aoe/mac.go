package aoe

import (
	"encoding/hex"
	"fmt"
	"net"
)

// MAC is an Ethernet hardware address. Unlike net.HardwareAddr it is
// comparable and fixed in size, so it can key a map and be copied without
// allocating.
type MAC [6]byte

// BroadcastMAC is the Ethernet broadcast address.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ParseMAC parses an address in any form net.ParseMAC accepts, or as 12 hex
// digits without separators (the form vblade's -m takes).
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) == 2*len(m) {
		// hex.Decode, unlike fmt.Sscanf, refuses spaces, signs and stray
		// characters anywhere in the string.
		if _, err := hex.Decode(m[:], []byte(s)); err != nil {
			return MAC{}, fmt.Errorf("aoe: parse MAC %q: %w", s, err)
		}
		return m, nil
	}
	hw, err := net.ParseMAC(s)
	if err != nil {
		return m, fmt.Errorf("aoe: parse MAC %q: %w", s, err)
	}
	if len(hw) != len(m) {
		return m, fmt.Errorf("aoe: parse MAC %q: not a 6-byte Ethernet address", s)
	}
	copy(m[:], hw)
	return m, nil
}

// MACFrom copies a 6-byte net.HardwareAddr into a MAC. Other lengths give
// the zero MAC.
func MACFrom(hw net.HardwareAddr) MAC {
	var m MAC
	if len(hw) == len(m) {
		copy(m[:], hw)
	}
	return m
}

// HardwareAddr returns m as a newly allocated net.HardwareAddr.
func (m MAC) HardwareAddr() net.HardwareAddr { return append(net.HardwareAddr(nil), m[:]...) }

// IsBroadcast reports whether m is the broadcast address.
func (m MAC) IsBroadcast() bool { return m == BroadcastMAC }

// IsMulticast reports whether m is a group address (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// IsZero reports whether m is all zeros.
func (m MAC) IsZero() bool { return m == MAC{} }

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}
