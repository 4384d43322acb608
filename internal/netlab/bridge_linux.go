//go:build linux

package netlab

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
)

// Bridge is an Ethernet segment: a Linux bridge in a namespace of its own,
// to which namespaces are attached with veth pairs. It stands for a switch
// with several hosts on it.
type Bridge struct {
	// NS is the namespace that holds the bridge.
	NS *Netns
	// Name is the bridge device's name in NS.
	Name string
	// MTU is the MTU of the bridge and of every attached interface.
	MTU int
}

// vlanTable is the nftables bridge-family table in which AttachVLAN keeps
// VLAN membership.
const vlanTable = "ibvlan"

// NewBridge creates a bridge with the given MTU (0 for 1500) in a new
// namespace named after prefix. Spanning tree is off, so attached ports
// forward at once. Close removes it with every port.
func NewBridge(prefix string, mtu int) (*Bridge, error) {
	if mtu <= 0 {
		mtu = 1500
	}
	ns, err := New(prefix)
	if err != nil {
		return nil, err
	}
	b := &Bridge{NS: ns, Name: "br0", MTU: mtu}
	_, err = ns.Run("ip", "link", "add", b.Name, "mtu", strconv.Itoa(mtu), "type", "bridge", "stp_state", "0")
	if err == nil {
		_, err = ns.Run("ip", "link", "set", b.Name, "up")
	}
	if err != nil {
		return nil, errors.Join(err, ns.Close())
	}
	return b, nil
}

// Close removes the bridge's namespace, and with it the bridge and the
// ports' ends of the veth pairs (and so the pairs).
func (b *Bridge) Close() error { return b.NS.Close() }

// Attach plugs ns into the bridge with a new veth pair and returns the name
// and address of the interface it gets in ns, which is up. Such a port is
// not VLAN-aware: it exchanges untagged frames with the other such ports
// and also hears the tagged frames of every VLAN (see AttachVLAN).
func (b *Bridge) Attach(ns *Netns) (iface string, mac aoe.MAC, err error) {
	return b.attach(ns, nil)
}

// AttachVLAN plugs ns into the bridge as a trunk port of the given 802.1Q
// VLANs (at least one, each 1 to rawlink.MaxVLAN) and returns the name and
// address of the interface it gets in ns, which is up. The bridge forwards
// to and from that interface only frames tagged with one of the VLANs:
// untagged frames and other VLANs' frames are dropped both ways, as a
// VLAN-aware switch does.
//
// Linux's own bridge VLAN filtering needs the 8021q code, which some of our
// kernels lack, so the membership is kept with nftables rules in the
// bridge's forward hook: it needs nft (see CheckNFT).
func (b *Bridge) AttachVLAN(ns *Netns, vids ...uint16) (iface string, mac aoe.MAC, err error) {
	if err := CheckNFT(); err != nil {
		return "", aoe.MAC{}, fmt.Errorf("netlab: attach VLAN port: %w", err)
	}
	if len(vids) == 0 {
		return "", aoe.MAC{}, errors.New("netlab: attach VLAN port: no VLAN given")
	}
	set := make([]string, len(vids))
	for i, vid := range vids {
		if vid == 0 || vid > rawlink.MaxVLAN {
			return "", aoe.MAC{}, fmt.Errorf("netlab: attach VLAN port: VLAN %d is not 1 to %d", vid, rawlink.MaxVLAN)
		}
		set[i] = strconv.Itoa(int(vid))
	}
	members := "{ " + strings.Join(set, ", ") + " }"
	// Both commands leave an existing table or chain alone.
	if _, err := b.NS.Run("nft", "add", "table", "bridge", vlanTable); err != nil {
		return "", aoe.MAC{}, err
	}
	if _, err := b.NS.Run("nft", "add", "chain", "bridge", vlanTable, "forward",
		"{ type filter hook forward priority 0 ; policy accept ; }"); err != nil {
		return "", aoe.MAC{}, err
	}
	return b.attach(ns, func(port string) error {
		for _, dir := range []string{"iifname", "oifname"} {
			if _, err := b.NS.Run("nft", "add", "rule", "bridge", vlanTable, "forward", dir, strconv.Quote(port), "ether", "type", "!=", "8021q", "drop"); err != nil {
				return err
			}
			if _, err := b.NS.Run("nft", "add", "rule", "bridge", vlanTable, "forward", dir, strconv.Quote(port), "vlan", "id", "!=", members, "drop"); err != nil {
				return err
			}
		}
		return nil
	})
}

// attach plugs ns into the bridge; setup, if not nil, configures the
// bridge's port once it is enslaved and before it comes up.
func (b *Bridge) attach(ns *Netns, setup func(port string) error) (iface string, mac aoe.MAC, err error) {
	s := uniqueSuffix()
	iface, port, mac := "ib"+s+"n", "ib"+s+"p", RandomMAC()
	if err := addVethPair(ns, iface, mac, b.NS, port, RandomMAC(), b.MTU); err != nil {
		return "", aoe.MAC{}, err
	}
	_, err = b.NS.Run("ip", "link", "set", port, "master", b.Name)
	if err == nil && setup != nil {
		err = setup(port)
	}
	if err == nil {
		_, err = b.NS.Run("ip", "link", "set", port, "up")
	}
	if err == nil {
		_, err = ns.Run("ip", "link", "set", iface, "up")
	}
	if err == nil {
		err = b.NS.WaitReady(port, readyTimeout, "bridge_slave state forwarding")
	}
	if err == nil {
		err = ns.WaitReady(iface, readyTimeout)
	}
	if err != nil {
		_, _ = hostOutput("ip", "-n", ns.Name, "link", "del", iface)
		return "", aoe.MAC{}, err
	}
	return iface, mac, nil
}
