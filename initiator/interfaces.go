package initiator

import (
	"fmt"
	"net"
)

// DefaultInterfaces returns the names of the interfaces an initiator uses
// when told none: every interface that is up, not a loopback and has an
// Ethernet (6-byte) hardware address.
func DefaultInterfaces() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("initiator: list interfaces: %w", err)
	}
	var names []string
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagLoopback == 0 && len(ifi.HardwareAddr) == 6 {
			names = append(names, ifi.Name)
		}
	}
	return names, nil
}
