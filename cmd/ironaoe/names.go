package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ironblade/ironblade/aoe"
)

// deviceAddr is an AoE device address, shelf.slot. Its String form, the
// Linux driver's "e1.0", is also the NBD export name.
type deviceAddr struct {
	Shelf uint16
	Slot  uint8
}

// String returns the name in the Linux aoe driver's style, "e1.0".
func (a deviceAddr) String() string { return fmt.Sprintf("e%d.%d", a.Shelf, a.Slot) }

// parseDeviceName reads a device name: "e1.0" as the Linux driver and
// aoe-stat write it, or the "etherd/e1.0" and "1.0" forms. The shelf is
// 0-65534 and the slot 0-254: the largest values address every shelf or
// slot and name no device.
func parseDeviceName(s string) (deviceAddr, error) {
	bad := func(why string) (deviceAddr, error) {
		return deviceAddr{}, fmt.Errorf("device %q: %s (want eSHELF.SLOT, such as e1.0)", s, why)
	}
	name := strings.TrimPrefix(s, "etherd/")
	name = strings.TrimPrefix(name, "e")
	shelfText, slotText, ok := strings.Cut(name, ".")
	if !ok {
		return bad("no '.' between shelf and slot")
	}
	shelf, err := parseNumber(shelfText, aoe.BroadcastMajor-1)
	if err != nil {
		return bad("shelf " + err.Error())
	}
	slot, err := parseNumber(slotText, aoe.BroadcastMinor-1)
	if err != nil {
		return bad("slot " + err.Error())
	}
	return deviceAddr{Shelf: uint16(shelf), Slot: uint8(slot)}, nil
}

// parseNumber reads a plain decimal number from 0 to limit: digits only, no
// sign, no leading zeros (so that every device has one name).
func parseNumber(s string, limit int) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("is empty")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > limit {
		return 0, fmt.Errorf("%s is out of range 0-%d", s, limit)
	}
	return n, nil
}

// parseDeviceNames parses a list of device names, refusing duplicates.
func parseDeviceNames(args []string) ([]deviceAddr, error) {
	var addrs []deviceAddr
	seen := make(map[deviceAddr]bool)
	for _, s := range args {
		a, err := parseDeviceName(s)
		if err != nil {
			return nil, err
		}
		if seen[a] {
			return nil, fmt.Errorf("device %s named twice", a)
		}
		seen[a] = true
		addrs = append(addrs, a)
	}
	return addrs, nil
}
