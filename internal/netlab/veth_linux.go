//go:build linux

package netlab

import (
	"errors"
	"strconv"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Veth is a veth pair joining two namespaces: interface IfA in A and IfB
// in B, with addresses MACA and MACB.
type Veth struct {
	A, B       *Netns
	IfA, IfB   string
	MACA, MACB aoe.MAC
}

// NewVeth joins a and b (which may be the same namespace) with a veth pair
// with random names and locally administered addresses, sets both ends to
// mtu (0 keeps the default, 1500), brings them up and waits until both can
// send (see Netns.WaitReady). Close, or deleting either namespace, removes
// the pair.
func NewVeth(a, b *Netns, mtu int) (*Veth, error) {
	s := uniqueSuffix()
	v := &Veth{A: a, B: b, IfA: "ib" + s + "a", IfB: "ib" + s + "b", MACA: RandomMAC(), MACB: RandomMAC()}
	if err := addVethPair(a, v.IfA, v.MACA, b, v.IfB, v.MACB, mtu); err != nil {
		return nil, err
	}
	// Both ends go up before either is awaited: one end has no carrier
	// until its peer is up.
	_, err := a.Run("ip", "link", "set", v.IfA, "up")
	if err == nil {
		_, err = b.Run("ip", "link", "set", v.IfB, "up")
	}
	if err == nil {
		err = v.WaitReady(readyTimeout)
	}
	if err != nil {
		return nil, errors.Join(err, v.Close())
	}
	return v, nil
}

// Close deletes the pair. The namespaces may be gone already: then so is
// the pair, and Close reports nothing.
func (v *Veth) Close() error {
	// Deleting one end deletes both.
	_, _ = hostOutput("ip", "-n", v.A.Name, "link", "del", v.IfA)
	return nil
}

// WaitReady waits up to timeout until both ends can send (see
// Netns.WaitReady).
func (v *Veth) WaitReady(timeout time.Duration) error {
	if err := v.A.WaitReady(v.IfA, timeout); err != nil {
		return err
	}
	return v.B.WaitReady(v.IfB, timeout)
}

// SetMTU sets the MTU of both ends of the pair.
func (v *Veth) SetMTU(mtu int) error {
	if _, err := v.A.Run("ip", "link", "set", v.IfA, "mtu", strconv.Itoa(mtu)); err != nil {
		return err
	}
	_, err := v.B.Run("ip", "link", "set", v.IfB, "mtu", strconv.Itoa(mtu))
	return err
}

// addVethPair creates a pair straight inside its namespaces, so that its
// names never meet those of other segments in the root namespace.
func addVethPair(a *Netns, ifA string, macA aoe.MAC, b *Netns, ifB string, macB aoe.MAC, mtu int) error {
	args := []string{"link", "add", ifA, "netns", a.Name, "address", macA.String()}
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
	}
	args = append(args, "type", "veth", "peer", "name", ifB, "netns", b.Name, "address", macB.String())
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
	}
	return runHost("ip", args...)
}
