// Command ironbench measures and checks AoE targets from the initiator's
// side.
//
//	ironbench compare [--duration 3s] [--qd 1,16,64] [--mtu 1500,9000] [--pin auto] [--json]
//
// runs ironblade and vblade one after the other on a veth pair between two
// network namespaces it creates, under the same load generator, then the
// same generator against a responder that answers without storage (the
// link's ceiling), each cell pinned (target and generator on CPUs of their
// own) and unpinned, and prints each one's throughput, IOPS, latency and
// CPU per request, their ratios and their shares of the ceiling as
// markdown tables (or JSON). It needs root.
//
//	ironbench verify --interface eth0 [--size 8MiB] [--qd 16]
//
// discovers a target on an interface, identifies it, writes random data,
// reads it back and compares: the quick start's check that a target works.
//
//	ironbench report run.json
//
// prints the table of a comparison saved with compare --json (or auth
// --json).
//
//	ironbench nbd [--mtu 1500,9000] [--size 256MiB] [--target ironblade|vblade|both] [--json]
//
// measures nbdcopy through `ironaoe serve` against the raw AoE throughput
// of the same target from the same namespace, and prints their ratio.
//
//	ironbench crash write -i eth0 --device e1.0 --journal J [--size 32MiB] [--flush-at 50]
//	ironbench crash check -i eth0 --device e1.0 --journal J --expect durable|flushed|report
//
// write a journaled pattern to a device, every acknowledgement noted, and
// after a fence read back what survived: the crash-consistency proof of
// scripts/cluster-test.sh (exit 3: the negative control did not show).
//
//	ironbench timeline --control-dir DIR [--device e1.0] --out samples.jsonl
//	ironbench plot --out DIR ROUND_DIR...
//
// are the failover demo's (scripts/demo.sh) sampler and report: the first
// records `ironaoe stat --json` every 100 ms, the second computes each
// event's stall and throughput and draws the timeline plot.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/bench"
	"github.com/ironblade/ironblade/internal/cliflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newApp(os.Stdout, os.Stderr).RunContext(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ironbench: %v\n", err)
		if errors.Is(err, cliflag.ErrUsage) {
			fmt.Fprintln(os.Stderr, "Try 'ironbench --help' for more information.")
			os.Exit(cliflag.ExitUsage)
		}
		// A status of its own: crash check's 3 (no negative control).
		var coder cli.ExitCoder
		if errors.As(err, &coder) {
			os.Exit(coder.ExitCode())
		}
		os.Exit(cliflag.ExitFailure)
	}
}

// newApp returns the command line application, writing results to stdout
// and progress to stderr.
func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:            "ironbench",
		Usage:           "benchmark and check ATA over Ethernet targets",
		Version:         version,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		// Errors go back to main, which prints them once.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   cliflag.OnUsageError,
		Commands: withUsageErrors(compareCommand(), authCommand(), nbdCommand(), reportCommand(), verifyCommand(),
			timelineCommand(), plotCommand(), responderCommand(), crashCommand()),
	}
}

// withUsageErrors has each command report a bad flag in one line, without
// the help.
func withUsageErrors(cmds ...*cli.Command) []*cli.Command {
	for _, c := range cmds {
		c.OnUsageError = cliflag.OnUsageError
	}
	return cmds
}

// Flags that compare and nbd share.
func mtuFlag() cli.Flag {
	return &cli.StringFlag{Name: "mtu", Value: "1500,9000", Usage: "MTUs of the veth pair, `LIST` of integers"}
}

func ironbladeFlag() cli.Flag {
	return &cli.StringFlag{Name: "ironblade", Usage: "ironblade binary at `PATH` (default bin/ironblade, built if missing)"}
}

func vbladeFlag() cli.Flag {
	return &cli.StringFlag{Name: "vblade", Value: bench.DefaultVblade, Usage: "vblade binary at `PATH`"}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a markdown table"}
}

// compareCommand is `ironbench compare`.
func compareCommand() *cli.Command {
	return &cli.Command{
		Name:  "compare",
		Usage: "measure ironblade against vblade over a veth pair (needs root)",
		Description: "Creates two network namespaces joined by a veth pair, then for each MTU, mode (with and\n" +
			"without -s), operation, queue depth and pinning runs ironblade and then vblade on a fresh\n" +
			"sparse file (read through once first for read cells, so that reads find the page cache\n" +
			"filled; --cold leaves that out) and drives each with the same generator for --duration;\n" +
			"without -s, then the responder (this program, answering at once without storage: the ceiling\n" +
			"of the link and the generator; --ceiling=false leaves it out). Pinned cells run the target\n" +
			"on the last CPU and the generator on the others (taskset, sched_setaffinity); --pin auto,\n" +
			"the default, measures every cell pinned and then unpinned where there are two CPUs and\n" +
			"taskset, else unpinned. Each cell also gets the CPU the target and the generator used per\n" +
			"request. With -s cells, it first measures the disk's own ceiling for durable writes (O_SYNC\n" +
			"one at a time, as vblade -s, against N writes per fdatasync), which bounds the -s rate any\n" +
			"target can reach there; it measures N per fdatasync again before each round of the -s write\n" +
			"cells and reads each round against the figure taken just before it, since a shared disk's\n" +
			"speed drifts over a run.\n" +
			"Prints markdown tables (or JSON) to stdout and a line per cell to stderr. Backing files go\n" +
			"to --dir: keep it on a disk filesystem, since fdatasync on tmpfs is a no-op and -s would\n" +
			"measure nothing.",
		Flags: append(cellFlags("no,yes", "auto"), vbladeFlag(),
			&cli.BoolFlag{Name: "ceiling", Value: true, Usage: "measure the link's ceiling with the storage-less responder"}),
		Action: runCompare,
	}
}

// cellFlags are the flags of compare and auth: the cells, their length,
// the backing files and the output. sync and pin are the --sync and --pin
// defaults.
func cellFlags(sync, pin string) []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "duration", Value: 3 * time.Second, Usage: "measure each cell for `DUR`"},
		&cli.DurationFlag{Name: "warmup", Value: 300 * time.Millisecond, Usage: "run each cell `DUR` before measuring"},
		&cli.StringFlag{Name: "qd", Value: "1,16,64", Usage: "queue depths, `LIST` of integers"},
		mtuFlag(),
		&cli.StringFlag{Name: "ops", Value: "read,write", Usage: "operations, `LIST` of read and write"},
		&cli.StringFlag{Name: "sync", Value: sync, Usage: "modes, `LIST` of no (plain) and yes (-s)"},
		ironbladeFlag(),
		&cli.StringFlag{Name: "dir", Value: bench.DefaultDir, Usage: "put the backing files in `DIR` (on disk, not tmpfs)"},
		&cli.StringFlag{Name: "size", Value: "256MiB", Usage: "backing file `SIZE` (bytes, or with K, M, G, KiB, MiB, GiB)"},
		&cli.BoolFlag{Name: "cold", Usage: "leave the fresh sparse backing file of each read cell out of the page cache (by default it is read through once before the cell)"},
		&cli.DurationFlag{Name: "min-rto", Value: bench.DefaultMinTimeout,
			Usage: "retransmit a request unanswered after at least `DUR` (more if round trips are slower)"},
		&cli.IntFlag{Name: "repeat", Value: 1, Usage: "measure each cell `N` times, the targets taking turns, and report the medians"},
		&cli.StringFlag{Name: "pin", Value: pin, Usage: "`MODE`: on runs the target on the last CPU and the generator on the " +
			"others (needs 2 CPUs and taskset), off leaves them to the scheduler, both measures each cell both ways, " +
			"auto is both where the machine can pin, else off"},
		jsonFlag(),
	}
}

// cellConfig reads the flags of cellFlags into a configuration, for the
// command named cmd; the ironblade binary is looked up (or built) last.
func cellConfig(c *cli.Context, cmd string) (bench.CompareConfig, error) {
	if c.Args().Present() {
		return bench.CompareConfig{}, fmt.Errorf("%s: unexpected argument %q", cmd, c.Args().First())
	}
	cfg := bench.CompareConfig{
		Dir:        c.String("dir"),
		Duration:   c.Duration("duration"),
		Warmup:     c.Duration("warmup"),
		MinTimeout: c.Duration("min-rto"),
		Repeat:     c.Int("repeat"),
		Cold:       c.Bool("cold"),
		Progress:   c.App.ErrWriter,
	}
	if cfg.Repeat < 1 || cfg.Repeat > 100 {
		return cfg, fmt.Errorf("%s: --repeat %d: want 1 to 100", cmd, cfg.Repeat)
	}
	var err error
	if cfg.QueueDepths, err = parseInts(c.String("qd"), 1, bench.MaxQueueDepth); err != nil {
		return cfg, fmt.Errorf("%s: --qd: %w", cmd, err)
	}
	if cfg.MTUs, err = parseInts(c.String("mtu"), 68, 65535); err != nil {
		return cfg, fmt.Errorf("%s: --mtu: %w", cmd, err)
	}
	if cfg.Ops, err = parseOps(c.String("ops")); err != nil {
		return cfg, fmt.Errorf("%s: --ops: %w", cmd, err)
	}
	if cfg.SyncModes, err = parseModes(c.String("sync")); err != nil {
		return cfg, fmt.Errorf("%s: --sync: %w", cmd, err)
	}
	if cfg.PinModes, err = parsePin(c.String("pin"), c.App.ErrWriter); err != nil {
		return cfg, fmt.Errorf("%s: --pin: %w", cmd, err)
	}
	if cfg.Size, err = parseSize(c.String("size")); err != nil || cfg.Size < 1<<20 {
		return cfg, fmt.Errorf("%s: --size %q: want at least 1MiB", cmd, c.String("size"))
	}
	if cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.MinTimeout <= 0 {
		return cfg, fmt.Errorf("%s: --duration %v, --warmup %v, --min-rto %v: want positive durations", cmd, cfg.Duration, cfg.Warmup, cfg.MinTimeout)
	}
	if os.Geteuid() != 0 {
		return cfg, fmt.Errorf("%s: needs root to create network namespaces and open raw sockets", cmd)
	}
	if cfg.Ironblade, err = ironbladeBinary(c.Context, c.String("ironblade"), c.App.ErrWriter); err != nil {
		return cfg, fmt.Errorf("%s: %w", cmd, err)
	}
	return cfg, nil
}

// runCompare is the action of `ironbench compare`.
func runCompare(c *cli.Context) error {
	cfg, err := cellConfig(c, "compare")
	if err != nil {
		return err
	}
	cfg.Vblade = c.String("vblade")
	if c.Bool("ceiling") {
		// The responder is this program's hidden subcommand.
		if cfg.Responder, err = os.Executable(); err != nil {
			return fmt.Errorf("compare: the responder: %w", err)
		}
	}
	rep, err := bench.Compare(c.Context, cfg)
	if rep != nil && len(rep.Cells) > 0 {
		err = errors.Join(err, writeReport(c, rep))
	}
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	return nil
}

// authCommand is `ironbench auth`.
func authCommand() *cli.Command {
	return &cli.Command{
		Name:  "auth",
		Usage: "measure ironblade sealed (--auth-key) against plain over a veth pair (needs root)",
		Description: "Like compare, with ironblade twice instead of ironblade and vblade: plain, then with\n" +
			"--auth-key and a fresh key (a file of mode 0600 in a temporary directory, removed after the\n" +
			"run), in every cell, under the same generator; for the sealed cells the generator's link is\n" +
			"wrapped in the sealing layer (seal.InitiatorLink) holding the same key, so it discovers the\n" +
			"target through a handshake and seals and checks every frame. Prints IOPS, MB/s, latency and\n" +
			"the CPU time per request of target and generator for both, the ratios sealed/plain, and\n" +
			"whether sealed keeps 90% of the plain IOPS at MTU 1500 and QD 16, as a markdown table (or\n" +
			"JSON) to stdout, and a line per cell to stderr.",
		Flags: append(cellFlags("no", "off"), &cli.BoolFlag{Name: "encrypt",
			Usage: "seal with the AES-256-GCM suite (ironblade --auth-encrypt) instead of HMAC-SHA256 alone"}),
		Action: runAuth,
	}
}

// runAuth is the action of `ironbench auth`.
func runAuth(c *cli.Context) error {
	cfg, err := cellConfig(c, "auth")
	if err != nil {
		return err
	}
	cfg.Encrypt = c.Bool("encrypt")
	rep, err := bench.CompareAuth(c.Context, cfg)
	if rep != nil && len(rep.Cells) > 0 {
		err = errors.Join(err, writeReport(c, rep))
	}
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}

// report is a measurement that prints as a markdown table or as JSON.
type report interface {
	WriteJSON(io.Writer) error
	WriteMarkdown(io.Writer) error
}

// writeReport prints rep to the command's output, as JSON if --json.
func writeReport(c *cli.Context, rep report) error {
	if c.Bool("json") {
		return rep.WriteJSON(c.App.Writer)
	}
	return rep.WriteMarkdown(c.App.Writer)
}

// ironbladeBinary returns path if set, else bin/ironblade, which it builds
// with the go command when it is missing.
func ironbladeBinary(ctx context.Context, path string, progress io.Writer) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", cliflag.Usagef("--ironblade: %w", err)
		}
		return path, nil
	}
	path = filepath.Join("bin", "ironblade")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	fmt.Fprintf(progress, "building %s\n", path)
	out, err := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/ironblade").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build %s (run from the module root, or give --ironblade): %w\n%s", path, err, out)
	}
	return path, nil
}

// reportCommand is `ironbench report`.
func reportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "print the markdown table of a comparison saved with compare --json or auth --json",
		ArgsUsage: "FILE.json",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("report: want one argument, a file written by compare --json or auth --json")
			}
			b, err := os.ReadFile(c.Args().First())
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			var rep bench.Report
			if err := json.Unmarshal(b, &rep); err != nil {
				return fmt.Errorf("report: %s: %w", c.Args().First(), err)
			}
			if len(rep.Cells) == 0 {
				return fmt.Errorf("report: %s holds no cells", c.Args().First())
			}
			return rep.WriteMarkdown(c.App.Writer)
		},
	}
}

// verifyCommand is `ironbench verify`.
func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "discover a target on an interface, write random data, read it back and compare",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "interface", Aliases: []string{"i"}, Usage: "network interface `NAME` to find the target on (required)"},
			&cli.IntFlag{Name: "shelf", Value: -1, DefaultText: "the only one found", Usage: "use the target at shelf `N`"},
			&cli.IntFlag{Name: "slot", Value: -1, DefaultText: "the only one found", Usage: "use the target at slot `N`"},
			&cli.StringFlag{Name: "size", Value: "8MiB", Usage: "write and read back `SIZE` bytes"},
			&cli.StringFlag{Name: "offset", Value: "0", Usage: "at byte `OFFSET` of the device (a multiple of 512)"},
			&cli.IntFlag{Name: "qd", Value: 16, Usage: "keep `N` requests in flight"},
			&cli.DurationFlag{Name: "wait", Value: 5 * time.Second, Usage: "wait up to `DUR` for the target to answer discovery"},
		},
		Action: runVerify,
	}
}

// runVerify is the action of `ironbench verify`.
func runVerify(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("verify: unexpected argument %q", c.Args().First())
	}
	size, err := parseSize(c.String("size"))
	if err != nil || size <= 0 || size%aoe.SectorSize != 0 {
		return cliflag.Usagef("verify: --size %q: want a positive multiple of 512 bytes", c.String("size"))
	}
	off, err := parseSize(c.String("offset"))
	if err != nil || off%aoe.SectorSize != 0 {
		return cliflag.Usagef("verify: --offset %q: want a multiple of 512 bytes", c.String("offset"))
	}
	qd := c.Int("qd")
	if qd < 1 || qd > bench.MaxQueueDepth {
		return cliflag.Usagef("verify: --qd %d: want 1 to %d", qd, bench.MaxQueueDepth)
	}
	iface, err := cliflag.Required(c, "interface", "name the network interface the target is on")
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	link, err := rawlink.Listen(iface, rawlink.Config{ReadBuffer: 4 << 20, WriteBuffer: 4 << 20})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer link.Close()

	dev, err := findDevice(c.Context, link, iface, c.Int("shelf"), c.Int("slot"), c.Duration("wait"))
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := bench.Identify(c.Context, link, &dev); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "found %v on %s: model %q, firmware %q, %d sectors (%s), %d sectors per frame, %d buffers\n",
		dev, iface, dev.Model, dev.Firmware, dev.Sectors, humanBytes(int64(dev.Sectors)*aoe.SectorSize),
		dev.SectorsPerFrame, dev.BufferCount)
	res, err := bench.Verify(c.Context, link, dev, bench.VerifyOptions{Offset: off, Size: size, QueueDepth: qd})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	fmt.Fprintf(w, "wrote %s at offset %d in %v (%.1f MB/s), read it back in %v (%.1f MB/s) at queue depth %d, %d retransmits\n",
		humanBytes(res.Bytes), off, res.WriteTime.Round(time.Millisecond), res.WriteMBps(),
		res.ReadTime.Round(time.Millisecond), res.ReadMBps(), qd, res.Retransmits)
	fmt.Fprintln(w, "OK: the data read back matches the data written")
	return nil
}

// findDevice discovers on iface until the wanted target answers: the one
// at shelf and slot (each -1 for any), which must be the only match.
func findDevice(ctx context.Context, link bench.Link, iface string, shelf, slot int, wait time.Duration) (bench.Device, error) {
	deadline := time.Now().Add(wait)
	var found []bench.Device
	for {
		devs, err := bench.Discover(ctx, link, 200*time.Millisecond)
		if err != nil {
			return bench.Device{}, err
		}
		found = found[:0]
		for _, d := range devs {
			if (shelf < 0 || int(d.Shelf) == shelf) && (slot < 0 || int(d.Slot) == slot) {
				found = append(found, d)
			}
		}
		switch {
		case len(found) == 1:
			return found[0], nil
		case len(found) > 1:
			names := make([]string, len(found))
			for i, d := range found {
				names[i] = d.String()
			}
			return bench.Device{}, fmt.Errorf("several targets answer (%s): choose one with --shelf and --slot", strings.Join(names, ", "))
		case time.Now().After(deadline):
			return bench.Device{}, fmt.Errorf("no AoE target answered on %s within %v", iface, wait)
		}
	}
}
