// Command ironaoe is a userspace ATA over Ethernet (AoE) initiator: it
// finds AoE targets (vblade, ironblade, hardware) on the local Ethernet
// segments and makes their devices usable through NBD or, with the
// kernel's nbd driver, as block devices /dev/nbdN.
//
//	ironaoe discover [-i IFACE]... [--json] [--wait DUR]
//	ironaoe serve [-i IFACE]... [--unix PATH] [--tcp HOST:PORT] [--metrics ADDR] [eSHELF.SLOT ...]
//	ironaoe attach [-i IFACE]... [--json] [--metrics ADDR] eSHELF.SLOT [/dev/nbdN]
//	ironaoe detach /dev/nbdN
//	ironaoe stat [--json] [--control PATH]
//
// serve and attach run until SIGTERM or SIGINT and then stop gracefully:
// they stop accepting connections, finish the NBD requests in flight,
// flush the devices and exit 0. Each answers `ironaoe stat` on a control
// socket, /run/ironaoe/<pid>.sock by default: HTTP over a Unix socket,
// GET /stats returning JSON; with --metrics they serve Prometheus metrics
// at http://ADDR/metrics. Logs go to stderr.
//
// The exit status is 0 on success, 1 on failure and 2 for a bad command
// line.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/internal/cliflag"
	"github.com/ironblade/ironblade/internal/clilog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

// Exit statuses, shared by the commands.
const (
	exitOK      = cliflag.ExitOK
	exitFailure = cliflag.ExitFailure
	exitUsage   = cliflag.ExitUsage
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// environment is what the commands need from the outside world; tests
// replace the network with an in-memory one.
type environment struct {
	Stdout io.Writer
	Logger *slog.Logger
	// Listen opens the link on a network interface.
	Listen func(iface string, cfg rawlink.Config) (aoe.Link, error)
	// DefaultInterfaces names the interfaces to use when none is given.
	DefaultInterfaces func() ([]string, error)
	// Reload delivers SIGHUP: each value re-reads the --auth-key files.
	Reload <-chan os.Signal
}

// run is the whole program but for the process exit: it parses args, runs
// the command until it is done or SIGTERM or SIGINT arrives, and returns
// the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	inv, err := parseArgs(args, stdout)
	if errors.Is(err, errHelpShown) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ironaoe: %v\nTry 'ironaoe --help' for more information.\n", err)
		return exitUsage
	}
	level := inv.Global.LogLevel
	if !inv.Global.LogLevelSet && (inv.Command == "discover" || inv.Command == "stat") {
		level = slog.LevelWarn
	}
	logger := clilog.New(stderr, level, inv.Global.LogFormat)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Once stopping, a second SIGTERM or SIGINT kills the process at once
	// (the default action), in case a target takes too long to answer.
	context.AfterFunc(ctx, stop)

	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)

	env := &environment{
		Reload:            reload,
		Stdout:            stdout,
		Logger:            logger,
		Listen:            rawlink.ListenLink,
		DefaultInterfaces: initiator.DefaultInterfaces,
	}
	if err := dispatch(ctx, inv, env); err != nil {
		fmt.Fprintf(stderr, "ironaoe %s: %v\n", inv.Command, err)
		return exitFailure
	}
	return exitOK
}

// dispatch runs the parsed command.
func dispatch(ctx context.Context, inv invocation, env *environment) error {
	switch inv.Command {
	case "discover":
		return discover(ctx, inv.Discover, env)
	case "serve":
		return serve(ctx, inv.Serve, env)
	case "attach":
		return attach(ctx, inv.Attach, env)
	case "detach":
		return detach(inv.Detach, env)
	case "stat":
		return stat(ctx, inv.Stat, env)
	}
	return fmt.Errorf("unknown command %q", inv.Command)
}
