package main

import (
	"fmt"
	"math"

	"github.com/urfave/cli/v2"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/bench"
)

// responderBuffer sizes the responder's socket buffers: as the generator's,
// so that a burst of requests is not lost on the responder's side.
const responderBuffer = 16 << 20

// responderCommand is `ironbench responder`, hidden: the storage-less
// target compare starts to measure the link's ceiling.
func responderCommand() *cli.Command {
	return &cli.Command{
		Name:      "responder",
		Usage:     "answer AoE requests on an interface at once, without storage (compare's link ceiling)",
		ArgsUsage: "IFACE",
		Hidden:    true,
		Flags: []cli.Flag{
			&cli.UintFlag{Name: "shelf", Value: 1, Usage: "answer as shelf `N`"},
			&cli.UintFlag{Name: "slot", Value: 0, Usage: "answer as slot `N`"},
			&cli.Uint64Flag{Name: "sectors", Value: 256 << 11, Usage: "report a capacity of `N` sectors"},
		},
		Action: runResponder,
	}
}

// runResponder is the action of `ironbench responder`: it answers until
// SIGINT or SIGTERM.
func runResponder(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("responder: want one argument, the interface")
	}
	shelf, slot := c.Uint("shelf"), c.Uint("slot")
	if shelf >= aoe.BroadcastMajor || slot >= aoe.BroadcastMinor {
		return fmt.Errorf("responder: --shelf %d --slot %d: want below %d and %d", shelf, slot, aoe.BroadcastMajor, aoe.BroadcastMinor)
	}
	sectors := c.Uint64("sectors")
	if sectors == 0 || sectors > aoe.MaxLBA || sectors > math.MaxInt64 {
		return fmt.Errorf("responder: --sectors %d: want 1 to %d", sectors, uint64(aoe.MaxLBA))
	}
	iface := c.Args().First()
	link, err := rawlink.Listen(iface, rawlink.Config{ReadBuffer: responderBuffer, WriteBuffer: responderBuffer})
	if err != nil {
		return fmt.Errorf("responder: %w", err)
	}
	defer link.Close()
	_, err = bench.Respond(c.Context, link, bench.ResponderConfig{Shelf: uint16(shelf), Slot: uint8(slot), Sectors: sectors})
	if err != nil {
		return fmt.Errorf("responder on %s: %w", iface, err)
	}
	return nil
}
