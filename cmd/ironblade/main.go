// Command ironblade exports a file or block device as an ATA over Ethernet
// (AoE) target. It takes vblade's command line unchanged:
//
//	ironblade [-b bufcnt] [-o offset] [-l length] [-d] [-s] [-r] [-m mac[,mac...]] shelf slot netif filename
//	ironblade --config FILE [--metrics ADDR] [--control PATH] [--log-level L] [--log-format F] [--busy-poll DUR]
//
// The second form serves every export of a configuration file
// (docs/ironblade.conf.md) from one process with one metrics endpoint;
// SIGHUP reloads the file, starting and stopping exports without
// disturbing the others.
//
// Beside vblade's options it has long options for what vblade lacks:
// --state-dir, --announce-interval, --metrics, --log-level, --log-format,
// --workers, --vlan, --control, --busy-poll, and --auth-key, --auth-mode and
// --auth-encrypt (docs/auth.md). Unlike vblade it serves many requests at once, makes FLUSH CACHE durable,
// and with -s acknowledges a write only once an fdatasync covers it, one
// sync serving every write in flight.
//
// A control socket (/run/ironblade/eSHELF.SLOT.sock, or ctl.sock with
// --config) lets ironbladectl list the exports and read and change their
// config strings, MAC masks and reservations (docs/ironbladectl.md).
//
// SIGTERM and SIGINT stop it gracefully: requests in flight finish and the
// file is synced before it exits 0. SIGUSR1 makes it announce itself again.
// Under systemd (Type=notify) it reports readiness once it has announced
// itself, its status, reloads and stop, and pings the watchdog while it
// serves. See docs/ironblade.md and docs/systemd.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/internal/cliflag"
	"github.com/ironblade/ironblade/internal/clilog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

func main() {
	// The receive loop blocks in system calls (ppoll; pwritev2 of a lone
	// durable write). With one P, the runtime's monitor takes the P from
	// a call blocked for 20 µs and the loop must win one back: on a
	// target pinned to one CPU that cost 25% more CPU per request for
	// -s at queue depth 1 (ironbench compare, docs/performance.md). An
	// idle second P lets the monitor leave the call alone. An operator's
	// GOMAXPROCS stands.
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
	os.Exit(run(os.Args, os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole program but for the process exit: it parses args,
// serves until SIGTERM or SIGINT, and returns the exit status: 2 for a bad
// command line (vblade says 1), 1 for a failure, as ironaoe and ironbench.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	opts, err := parseArgs(args, getenv, stdout)
	if errors.Is(err, errHelpShown) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ironblade: %v\nusage: ironblade [-b bufcnt] [-o offset] [-l length] [-d] [-s] [-r] "+
			"[-m mac[,mac...]] shelf slot netif filename\nTry 'ironblade --help' for more information.\n", err)
		return cliflag.ExitUsage
	}
	logger := clilog.New(stderr, opts.LogLevel, opts.LogFormat)
	for _, w := range opts.Warnings {
		logger.Warn(w)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Once stopping, a second SIGTERM or SIGINT kills the process at once
	// (the default action), in case the disk takes too long to sync.
	context.AfterFunc(ctx, stop)
	announce := make(chan os.Signal, 1)
	signal.Notify(announce, syscall.SIGUSR1)
	defer signal.Stop(announce)

	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)

	env := serveEnv{Logger: logger, Listen: rawlink.ListenLink, InterfaceMTU: interfaceMTU, Announce: announce, Reload: reload,
		Notify: systemdNotify(logger), Watchdog: systemdWatchdog(logger), ControlDir: controlDir(os.Getenv)}
	serveFunc := serve
	if opts.ConfigFile != "" {
		serveFunc = serveConfig
	}
	if err := serveFunc(ctx, opts, env); err != nil {
		// One plain line, not a log record: what failed, and what to do.
		fmt.Fprintf(stderr, "ironblade: %v%s\n", err, hint(err))
		return cliflag.ExitFailure
	}
	return cliflag.ExitOK
}

// hint says what to do about the failures an admin meets first.
func hint(err error) string {
	var nerr *net.OpError
	switch {
	case errors.Is(err, seal.ErrKeyExposed):
		return "" // its message says how to mend it
	case errors.Is(err, fs.ErrNotExist):
		return " (check the path: ironblade exports an existing file or block device)"
	case errors.Is(err, fs.ErrPermission), errors.Is(err, unix.EPERM):
		return " (run as root: serving needs CAP_NET_RAW, and the file must be readable and writable)"
	case strings.Contains(err.Error(), "no such network interface"), errors.As(err, &nerr) && nerr.Op == "route":
		return " (list the interfaces with: ip link)"
	}
	return ""
}
