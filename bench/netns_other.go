//go:build !linux

package bench

import (
	"context"
	"errors"
	"os/exec"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
)

// errNoNetns is returned on systems without Linux network namespaces.
var errNoNetns = errors.New("bench: network namespaces need Linux")

// Netns is a named network namespace; only Linux has them.
type Netns struct {
	// Name is the namespace's name.
	Name string
}

// NewNetns fails: only Linux has network namespaces.
func NewNetns(prefix string) (*Netns, error) { return nil, errNoNetns }

// Close does nothing.
func (n *Netns) Close() error { return nil }

// Command returns a command that fails.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "false")
}

// Do fails.
func (n *Netns) Do(fn func() error) error { return errNoNetns }

// ListenRaw fails.
func (n *Netns) ListenRaw(iface string, cfg rawlink.Config) (*rawlink.Link, error) {
	return nil, errNoNetns
}

// Veth is a veth pair; only Linux has them.
type Veth struct {
	A, B       *Netns
	IfA, IfB   string
	MACA, MACB aoe.MAC
}

// NewVeth fails.
func NewVeth(a, b *Netns) (*Veth, error) { return nil, errNoNetns }

// SetMTU fails.
func (v *Veth) SetMTU(mtu int) error { return errNoNetns }

// WaitUp fails.
func (v *Veth) WaitUp(timeout time.Duration) error { return errNoNetns }
