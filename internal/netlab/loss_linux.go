//go:build linux

package netlab

import (
	"fmt"
	"strconv"
)

// AddLoss makes iface in ns drop about percent of the frames it receives,
// at random, with an nftables netdev ingress rule (our kernels have no
// netem). AF_PACKET sockets bound to the AoE EtherType, as an untagged
// rawlink.Link's is, see the frames after the rule; a VLAN rawlink.Link's
// socket, bound to every protocol, sees them before it, so the rule does not
// thin out what such a link reads. It needs nft (see CheckNFT). remove takes
// the rule away again.
func AddLoss(ns *Netns, iface string, percent int) (remove func() error, err error) {
	if err := CheckNFT(); err != nil {
		return nil, fmt.Errorf("netlab: add loss: %w", err)
	}
	if percent < 0 || percent > 100 {
		return nil, fmt.Errorf("netlab: add loss: %d%% is not a percentage", percent)
	}
	table := "ibloss_" + uniqueSuffix()
	if _, err := ns.Run("nft", "add", "table", "netdev", table); err != nil {
		return nil, err
	}
	remove = func() error {
		_, err := ns.Run("nft", "delete", "table", "netdev", table)
		return err
	}
	rule := []string{"add", "rule", "netdev", table, "c"}
	if percent < 100 {
		// nft refuses "mod 100 < 100", so total loss is a plain drop.
		rule = append(rule, "numgen", "random", "mod", "100", "<", strconv.Itoa(percent))
	}
	_, err = ns.Run("nft", "add", "chain", "netdev", table, "c",
		"{ type filter hook ingress device "+strconv.Quote(iface)+" priority 0 ; }")
	if err == nil {
		_, err = ns.Run("nft", append(rule, "drop")...)
	}
	if err != nil {
		_ = remove()
		return nil, err
	}
	return remove, nil
}
