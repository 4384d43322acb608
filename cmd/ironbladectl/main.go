// Command ironbladectl controls running ironblade processes through their
// control sockets, as ggaoectl does ggaoed and aoecfg the targets: it
// lists the exports and their state and counters, and reads, sets and
// clears their config strings, MAC mask lists and reservations, without
// a restart (a reservation left by an initiator that failed over, say).
//
//	ironbladectl [--control PATH | --control-dir DIR] COMMAND [--json] ...
//	ironbladectl list [eSHELF.SLOT]
//	ironbladectl stat [eSHELF.SLOT]
//	ironbladectl config get [eSHELF.SLOT] | set eSHELF.SLOT STRING [--force] | clear eSHELF.SLOT
//	ironbladectl mask list [eSHELF.SLOT] | add|remove eSHELF.SLOT MAC... | clear eSHELF.SLOT
//	ironbladectl reserve list [eSHELF.SLOT] | set eSHELF.SLOT MAC... | clear eSHELF.SLOT
//
// Without --control it asks every socket in /run/ironblade. Changes take
// the paths of the AoE requests that make them, so they are saved with
// ironblade's --state-dir as those are. Output is a table, or JSON with
// --json. The exit status is 0 on success, 1 on failure and 2 for a bad
// command line. See docs/ironbladectl.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ironblade/ironblade/internal/cliflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is the whole program but for the process exit; it returns the exit
// status.
func run(args []string, stdout, stderr io.Writer) int {
	inv, err := parseArgs(args, stdout)
	if errors.Is(err, errHelpShown) {
		return cliflag.ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ironbladectl: %v\nTry 'ironbladectl --help' for more information.\n", err)
		return cliflag.ExitUsage
	}
	ctx := context.Background()
	if err := execute(ctx, inv, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "ironbladectl %s: %v\n", inv.Request.Verb, err)
		return cliflag.ExitFailure
	}
	return cliflag.ExitOK
}
