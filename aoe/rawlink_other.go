//go:build !linux

package aoe

import (
	"errors"
	"fmt"
	"time"
)

// RawLink is a Link on a network interface. It needs Linux's AF_PACKET
// sockets: elsewhere ListenRaw fails.
type RawLink struct{ iface string }

var errRawUnsupported = errors.New("raw Ethernet links need Linux")

// ListenRaw opens a RawLink; on this system it always fails.
func ListenRaw(iface string, cfg RawConfig) (*RawLink, error) {
	return nil, fmt.Errorf("aoe: raw link %s: listen: %w", iface, errRawUnsupported)
}

// ReadFrame implements Link.
func (l *RawLink) ReadFrame(b []byte) (int, error) { return 0, errRawUnsupported }

// ReadFrames implements BatchLink.
func (l *RawLink) ReadFrames(bufs [][]byte, lens []int) (int, error) { return 0, errRawUnsupported }

// WriteFrame implements Link.
func (l *RawLink) WriteFrame(b []byte) error { return errRawUnsupported }

// WriteFrames implements BatchLink.
func (l *RawLink) WriteFrames(frames [][]byte) (int, error) { return 0, errRawUnsupported }

// MTU implements Link.
func (l *RawLink) MTU() int { return 0 }

// HardwareAddr implements Link.
func (l *RawLink) HardwareAddr() MAC { return MAC{} }

// VLAN reports the link's 802.1Q VLAN ID.
func (l *RawLink) VLAN() uint16 { return 0 }

// Interface reports the name of the link's network interface.
func (l *RawLink) Interface() string { return l.iface }

// SetReadDeadline sets the read deadline.
func (l *RawLink) SetReadDeadline(t time.Time) error { return errRawUnsupported }

// Stats reports the link's counters.
func (l *RawLink) Stats() RawStats { return RawStats{} }

// Close implements Link.
func (l *RawLink) Close() error { return nil }

var _ BatchLink = (*RawLink)(nil)
