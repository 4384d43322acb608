// Package aoetest provides AoE test doubles, as net/http/httptest does for
// HTTP: an in-memory Ethernet segment of Links (Hub), a small scriptable AoE
// client (Client), test disks in memory (MemDisk) and in files (SparseFile,
// FileSum), and ServeLink to run a target on a link for a test's length.
//
// What a test needs of this machine (network namespaces, veth pairs,
// binaries built once, processes, waits on conditions) is in the internal
// package testenv.
package aoetest

import (
	"fmt"
	"net"
	"sync"

	"github.com/ironblade/ironblade/aoe"
)

// A Hub is an in-memory Ethernet segment: a frame written on one of its
// ports is delivered to the port it is addressed to, or to every other port
// when it is addressed to a group address. It is for unit tests; frames
// that find a full queue are dropped, as a real switch would.
type Hub struct {
	mu    sync.Mutex
	ports map[*Port]struct{}
}

// NewHub returns an empty segment.
func NewHub() *Hub { return &Hub{ports: make(map[*Port]struct{})} }

// Port is one station on a Hub. It implements aoe.Link.
type Port struct {
	hub   *Hub
	mac   aoe.MAC
	queue chan []byte

	mu     sync.Mutex
	mtu    int
	closed chan struct{}
	once   sync.Once
	// Filter, when set before the port is used, sees every frame the port
	// is about to receive and drops it by returning false. Tests use it to
	// lose frames on purpose.
	Filter func(frame []byte) bool
}

// Port attaches a new station with the given address and MTU. Its receive
// queue holds 1024 frames.
func (h *Hub) Port(mac aoe.MAC, mtu int) *Port {
	p := &Port{hub: h, mac: mac, mtu: mtu, queue: make(chan []byte, 1024), closed: make(chan struct{})}
	h.mu.Lock()
	h.ports[p] = struct{}{}
	h.mu.Unlock()
	return p
}

// ReadFrame implements aoe.Link.
func (p *Port) ReadFrame(b []byte) (int, error) {
	select {
	case f := <-p.queue:
		return copy(b, f), nil
	case <-p.closed:
		return 0, fmt.Errorf("aoetest: read: %w", net.ErrClosed)
	}
}

// WriteFrame implements aoe.Link.
func (p *Port) WriteFrame(b []byte) error {
	select {
	case <-p.closed:
		return fmt.Errorf("aoetest: write: %w", net.ErrClosed)
	default:
	}
	if len(b) < aoe.EthernetHeaderLen {
		return fmt.Errorf("aoetest: write: %d-byte frame", len(b))
	}
	if len(b)-aoe.EthernetHeaderLen > p.MTU() {
		return fmt.Errorf("aoetest: write: %d bytes: %w", len(b), aoe.ErrFrameTooLarge)
	}
	frame := make([]byte, max(len(b), aoe.MinFrameLen))
	copy(frame, b)
	var dst aoe.MAC
	copy(dst[:], b[:6])
	p.hub.mu.Lock()
	defer p.hub.mu.Unlock()
	for q := range p.hub.ports {
		if q == p || (!dst.IsMulticast() && q.mac != dst) {
			continue
		}
		q.deliver(frame)
	}
	return nil
}

func (p *Port) deliver(frame []byte) {
	if len(frame)-aoe.EthernetHeaderLen > p.MTU() {
		return // a real NIC drops what does not fit its MTU
	}
	if p.Filter != nil && !p.Filter(frame) {
		return
	}
	select {
	case p.queue <- frame:
	case <-p.closed:
	default:
	}
}

// MTU implements aoe.Link.
func (p *Port) MTU() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mtu
}

// SetMTU changes the port's MTU, as `ip link set mtu` would.
func (p *Port) SetMTU(mtu int) {
	p.mu.Lock()
	p.mtu = mtu
	p.mu.Unlock()
}

// HardwareAddr implements aoe.Link.
func (p *Port) HardwareAddr() aoe.MAC { return p.mac }

// Close implements aoe.Link; it detaches the port from the hub.
func (p *Port) Close() error {
	p.once.Do(func() {
		close(p.closed)
		p.hub.mu.Lock()
		delete(p.hub.ports, p)
		p.hub.mu.Unlock()
	})
	return nil
}

var _ aoe.Link = (*Port)(nil)
