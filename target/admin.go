package target

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/ironblade/ironblade/aoe"
)

// This file is the administrator's side of the state an initiator can
// change (ironblade's control socket, ironbladectl): each method goes
// through the code path of the matching AoE request, so the checks, the
// logs and the saving to Config.StateDir are the same as on the wire.

// ErrConfigStringPresent is returned by SetConfigString when another
// string is set and force is false, as AoE answers a Config set then.
var ErrConfigStringPresent = errors.New("target: a different config string is set")

// Address returns the shelf and slot the server answers to.
func (s *Server) Address() (shelf uint16, slot uint8) { return s.cfg.Shelf, s.cfg.Slot }

// Serving reports whether Serve is running.
func (s *Server) Serving() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active != nil
}

// ConfigString returns a copy of the config string (empty when none is
// set).
func (s *Server) ConfigString() []byte {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return bytes.Clone(s.configString)
}

// SetConfigString sets the config string as an AoE Config set (force
// false) or force set (force true) would: with force false it fails with
// ErrConfigStringPresent if a different string is set. A nil or empty
// str with force clears the string.
func (s *Server) SetConfigString(str []byte, force bool) error {
	if len(str) > aoe.MaxConfigStringLen {
		return fmt.Errorf("target: set config string: %d bytes, at most %d", len(str), aoe.MaxConfigStringLen)
	}
	if s.setConfigString(str, force) {
		return ErrConfigStringPresent
	}
	return nil
}

// MACMask returns a copy of the MAC mask list: when not empty, only these
// initiators are served.
func (s *Server) MACMask() []aoe.MAC { return slices.Clone(s.access.Load().mask) }

// EditMACMask applies MAC Mask List directives in order, as a MAC Mask
// List edit request would, and stops at the first that fails: the
// directives before it took effect. The error is an aoe.MACMaskError.
func (s *Server) EditMACMask(dirs []aoe.Directive) error {
	failed, merr := s.editMask(dirs)
	if merr != aoe.MACMaskErrorNone {
		return fmt.Errorf("target: edit MAC mask: %s: %w", dirs[failed].MAC, merr)
	}
	return nil
}

// ClearMACMask deletes every address of the MAC mask list, which then
// lets every initiator in. An address added by an initiator meanwhile
// stays.
func (s *Server) ClearMACMask() error {
	mask := s.MACMask()
	dirs := make([]aoe.Directive, len(mask))
	for i, m := range mask {
		dirs[i] = aoe.Directive{Command: aoe.DirectiveDelete, MAC: m}
	}
	return s.EditMACMask(dirs)
}

// SaveError reports why the last change of the config string, the MAC
// mask list or the reserve list could not be saved in the state
// directory, or nil when it was (or there is none). Such a change is in
// effect, as the AoE requests that make it are told, but would not
// survive a restart.
func (s *Server) SaveError() error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.saveErr
}

// Reserve returns a copy of the reserve list: when not empty, only these
// initiators may use ATA commands.
func (s *Server) Reserve() []aoe.MAC { return slices.Clone(s.access.Load().reserve) }

// SetReserve replaces the reserve list with macs, as a Reserve/Release
// force set does: whoever holds the reservation. An empty macs releases
// it, which is how a reservation left by an initiator that failed over
// is cleared.
func (s *Server) SetReserve(macs []aoe.MAC) {
	// The administrator has no MAC of its own: the zero address marks the
	// change as theirs in the log.
	s.setReserve(macs, aoe.MAC{}, true)
}
