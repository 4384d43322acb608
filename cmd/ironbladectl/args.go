package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ironblade/ironblade/internal/bladectl"
	"github.com/ironblade/ironblade/internal/cliflag"
)

// defaultControlDir is where ironblade puts its control sockets.
const defaultControlDir = "/run/ironblade"

// errHelpShown is returned by parseArgs when it printed the help or the
// version: the program should exit 0.
var errHelpShown = cliflag.ErrHelpShown

// invocation is a parsed command line.
type invocation struct {
	Request bladectl.Request
	JSON    bool
	// Control is one socket to ask; empty means every socket in
	// ControlDir.
	Control    string
	ControlDir string
}

// globalFlags say which ironblade processes to ask.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "control", Usage: "ask only the control socket `PATH`"},
		&cli.StringFlag{Name: "control-dir", Value: defaultControlDir, Usage: "ask every control socket (*.sock) in `DIR`"},
	}
}

// jsonFlag is every command's --json.
func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"}
}

// commands defines one command per verb; the op is its first operand.
func commands(action func(*cli.Context, invocation) error) []*cli.Command {
	cmds := []*cli.Command{
		{Name: bladectl.VerbList, Usage: "list the exports and their state", ArgsUsage: "[eSHELF.SLOT]"},
		{Name: bladectl.VerbStat, Usage: "show the counters of each export's targets", ArgsUsage: "[eSHELF.SLOT]"},
		{Name: bladectl.VerbConfig, Usage: "get, set or clear the config string",
			ArgsUsage: "get [eSHELF.SLOT] | set eSHELF.SLOT STRING [--force] | clear eSHELF.SLOT",
			Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "set: replace a different string (Config force set)"}}},
		{Name: bladectl.VerbMask, Usage: "list or edit the MAC mask list (the initiators served)",
			ArgsUsage: "list [eSHELF.SLOT] | add eSHELF.SLOT MAC... | remove eSHELF.SLOT MAC... | clear eSHELF.SLOT"},
		{Name: bladectl.VerbReserve, Usage: "list, set or clear the reservation (the initiators allowed ATA commands)",
			ArgsUsage: "list [eSHELF.SLOT] | set eSHELF.SLOT MAC... | clear eSHELF.SLOT"},
	}
	for _, c := range cmds {
		c.Flags = append(c.Flags, jsonFlag())
		c.OnUsageError = cliflag.OnUsageError
		c.HideHelpCommand = true
		c.Action = func(ctx *cli.Context) error {
			inv, err := invocationFrom(ctx, ctx.Command.Name)
			if err != nil {
				return err
			}
			return action(ctx, inv)
		}
	}
	return cmds
}

// newApp returns the urfave/cli application; action runs with the parsed
// invocation, and is not called when the help or the version is shown.
func newApp(stdout, stderr io.Writer, action func(*cli.Context, invocation) error) *cli.App {
	return &cli.App{
		Name:     "ironbladectl",
		Usage:    "list and control the exports of running ironblade processes",
		Version:  version,
		Flags:    globalFlags(),
		Commands: commands(action),
		// Each command's --help is the way to its help.
		HideHelpCommand: true,
		Writer:          stdout,
		ErrWriter:       stderr,
		// Errors go back to run, which prints them and picks the exit
		// status; the library must not exit the process itself.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   cliflag.OnUsageError,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("unknown command %q: want list, stat, config, mask or reserve", c.Args().First())
			}
			return errors.New("no command given: want list, stat, config, mask or reserve")
		},
	}
}

// parseArgs parses a full command line (args[0] is the program name). It
// returns errHelpShown after printing the help or the version to stdout.
func parseArgs(args []string, stdout io.Writer) (invocation, error) {
	inv, err := cliflag.Parse(args, stdout, newApp)
	if err != nil && !errors.Is(err, errHelpShown) {
		return invocation{}, cliflag.UsageError(err)
	}
	return inv, err
}

// invocationFrom builds the request of verb from its operands and flags
// and checks it as ironblade will.
func invocationFrom(c *cli.Context, verb string) (invocation, error) {
	inv := invocation{JSON: c.Bool("json"), Control: c.String("control"), ControlDir: c.String("control-dir")}
	if inv.Control == "" && inv.ControlDir == "" {
		return inv, errors.New("--control-dir: empty directory name")
	}
	req := bladectl.Request{V: bladectl.Version, Verb: verb}
	args := c.Args().Slice()
	if ops := bladectl.Ops(verb); ops[0] != "" {
		if len(args) == 0 {
			return inv, fmt.Errorf("%s: which operation? want %s", verb, strings.Join(ops, ", "))
		}
		req.Op, args = args[0], args[1:]
		if !slices.Contains(ops, req.Op) {
			return inv, fmt.Errorf("%s: unknown operation %q: want %s", verb, req.Op, strings.Join(ops, ", "))
		}
	}
	if len(args) > 0 {
		req.Target, args = args[0], args[1:]
	}
	switch {
	case verb == bladectl.VerbConfig && req.Op == "set":
		if len(args) != 1 {
			return inv, errors.New("config set: want eSHELF.SLOT STRING (quote a string with spaces)")
		}
		req.String, args = args[0], nil
		req.Force = c.Bool("force")
	case c.Bool("force"):
		return inv, fmt.Errorf("--force: only with config set")
	}
	takesMACs := req.Op == "add" || req.Op == "remove" || (verb == bladectl.VerbReserve && req.Op == "set")
	if len(args) > 0 && !takesMACs {
		return inv, fmt.Errorf("%s: too many operands, from %q on", strings.TrimSpace(verb+" "+req.Op), args[0])
	}
	if len(args) > 0 {
		req.MACs = args
	}
	if err := req.Check(); err != nil {
		return inv, err
	}
	inv.Request = req
	return inv, nil
}
