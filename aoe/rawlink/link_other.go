//go:build !linux

package rawlink

import (
	"errors"
	"fmt"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Link is a Link on a network interface. It needs Linux's AF_PACKET
// sockets: elsewhere Listen fails.
type Link struct{ iface string }

var errRawUnsupported = errors.New("raw Ethernet links need Linux")

// Listen opens a Link; on this system it always fails.
func Listen(iface string, cfg Config) (*Link, error) {
	return nil, fmt.Errorf("aoe: raw link %s: listen: %w", iface, errRawUnsupported)
}

// ReadFrame implements Link.
func (l *Link) ReadFrame(b []byte) (int, error) { return 0, errRawUnsupported }

// ReadFrames implements aoe.BatchLink.
func (l *Link) ReadFrames(bufs [][]byte, lens []int) (int, error) { return 0, errRawUnsupported }

// WriteFrame implements Link.
func (l *Link) WriteFrame(b []byte) error { return errRawUnsupported }

// WriteFrames implements aoe.BatchLink.
func (l *Link) WriteFrames(frames [][]byte) (int, error) { return 0, errRawUnsupported }

// MTU implements Link.
func (l *Link) MTU() int { return 0 }

// HardwareAddr implements Link.
func (l *Link) HardwareAddr() aoe.MAC { return aoe.MAC{} }

// VLAN reports the link's 802.1Q VLAN ID.
func (l *Link) VLAN() uint16 { return 0 }

// Waiting reports the frames waiting in the link's receive ring.
func (l *Link) Waiting() int { return 0 }

// Ring reports whether the link reads through a receive ring.
func (l *Link) Ring() bool { return false }

// Interface reports the name of the link's network interface.
func (l *Link) Interface() string { return l.iface }

// SetReadDeadline sets the read deadline.
func (l *Link) SetReadDeadline(t time.Time) error { return errRawUnsupported }

// Stats reports the link's counters.
func (l *Link) Stats() Stats { return Stats{} }

// Close implements Link.
func (l *Link) Close() error { return nil }

var _ aoe.BatchLink = (*Link)(nil)
