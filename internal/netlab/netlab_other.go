//go:build !linux

package netlab

import (
	"context"
	"errors"
	"os/exec"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
)

// errNotLinux is what every constructor returns off Linux.
var errNotLinux = errors.New("netlab: network namespaces need Linux")

// ErrNotPermitted is wrapped by New's error when the system refuses to
// create network namespaces.
var ErrNotPermitted = errors.New("cannot create network namespaces here")

// CheckRoot reports that namespaces need Linux.
func CheckRoot() error { return errNotLinux }

// CheckNFT reports that nftables needs Linux.
func CheckNFT() error { return errNotLinux }

// RandomMAC returns the zero address off Linux.
func RandomMAC() aoe.MAC { return aoe.MAC{} }

// Netns is a named network namespace; none can be made off Linux.
type Netns struct{ Name string }

// New fails off Linux.
func New(prefix string) (*Netns, error) { return nil, errNotLinux }

// Close does nothing.
func (n *Netns) Close() error { return nil }

// Do fails off Linux.
func (n *Netns) Do(fn func() error) error { return errNotLinux }

// Command returns a command that fails.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "false")
}

// Run fails off Linux.
func (n *Netns) Run(name string, args ...string) (string, error) { return "", errNotLinux }

// Listen fails off Linux.
func (n *Netns) Listen(iface string, cfg rawlink.Config) (*rawlink.Link, error) {
	return nil, errNotLinux
}

// WaitReady fails off Linux.
func (n *Netns) WaitReady(iface string, timeout time.Duration, wants ...string) error {
	return errNotLinux
}

// Veth is a veth pair; none can be made off Linux.
type Veth struct {
	A, B       *Netns
	IfA, IfB   string
	MACA, MACB aoe.MAC
}

// NewVeth fails off Linux.
func NewVeth(a, b *Netns, mtu int) (*Veth, error) { return nil, errNotLinux }

// Close does nothing.
func (v *Veth) Close() error { return nil }

// WaitReady fails off Linux.
func (v *Veth) WaitReady(timeout time.Duration) error { return errNotLinux }

// SetMTU fails off Linux.
func (v *Veth) SetMTU(mtu int) error { return errNotLinux }

// Bridge is a Linux bridge; none can be made off Linux.
type Bridge struct {
	NS   *Netns
	Name string
	MTU  int
}

// NewBridge fails off Linux.
func NewBridge(prefix string, mtu int) (*Bridge, error) { return nil, errNotLinux }

// Close does nothing.
func (b *Bridge) Close() error { return nil }

// Attach fails off Linux.
func (b *Bridge) Attach(ns *Netns) (string, aoe.MAC, error) { return "", aoe.MAC{}, errNotLinux }

// AttachVLAN fails off Linux.
func (b *Bridge) AttachVLAN(ns *Netns, vids ...uint16) (string, aoe.MAC, error) {
	return "", aoe.MAC{}, errNotLinux
}

// AddLoss fails off Linux.
func AddLoss(ns *Netns, iface string, percent int) (func() error, error) { return nil, errNotLinux }
