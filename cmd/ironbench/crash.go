package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/bench"
	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/internal/cliflag"
)

// Exit statuses of `ironbench crash check` beyond cliflag's: a harness
// must tell a check too weak to see a loss from a loss.
const exitNoNegativeControl = 3

// crashCommand is `ironbench crash`.
func crashCommand() *cli.Command {
	return &cli.Command{
		Name:  "crash",
		Usage: "write a journaled pattern to an AoE device, then check what survived a fence",
		Description: "The crash-consistency proof of a failover cluster, in two steps around a fence:\n\n" +
			"  crash write: find the device on -i through a userspace initiator (as ironaoe), write --size\n" +
			"  bytes at --offset in --block writes, --qd at once, in a random order, each block a pattern\n" +
			"  that names its run, block and sector in every sector; journal each write to --journal the\n" +
			"  moment it is acknowledged. With --flush-at PCT, once PCT% of the blocks are written and\n" +
			"  acknowledged, send FLUSH CACHE and journal its acknowledgement. Exits as soon as every\n" +
			"  write is acknowledged, without a FLUSH at the end, so that the target can be fenced then.\n\n" +
			"  crash check: with a fresh initiator, read back every block the journal names (from the\n" +
			"  survivor) and count the intact, lost (old data) and torn ones, among the writes a FLUSH\n" +
			"  covers and the others. --expect durable demands every acknowledged write; flushed every\n" +
			"  flushed one, and a lost or torn unflushed one as the negative control (else exit 3);\n" +
			"  report demands nothing.\n\n" +
			"Exit status: 0 as expected, 1 a loss the expectation forbids or a failure, 2 a bad command\n" +
			"line, 3 (check --expect flushed) no unflushed write lost: the negative control did not show.",
		Subcommands: withUsageErrors(crashWriteCommand(), crashCheckCommand()),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return cliflag.Usagef("crash: unknown subcommand %q: want write or check", c.Args().First())
			}
			return cliflag.Usagef("crash: want a subcommand: write or check")
		},
	}
}

// crashFlags are the flags write and check share: the initiator's and the
// journal's.
func crashFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "interface", Aliases: []string{"i"},
			Usage: "find the device on network interface `IFACE` (required; repeatable, or comma-separated)"},
		&cli.UintFlag{Name: "vlan", DefaultText: "untagged",
			Usage: "speak AoE on 802.1Q VLAN `VID` (1-4094), tagged in userspace as ironaoe --vlan"},
		&cli.DurationFlag{Name: "scorn-timeout", Value: initiator.DefaultScornTimeout,
			Usage: "scorn a target that leaves a frame unanswered for `DUR`, and move its frames to another"},
		&cli.StringFlag{Name: "device", Usage: "the AoE device `eSHELF.SLOT`, such as e1.0 (required)"},
		&cli.StringFlag{Name: "journal", Usage: "the journal of acknowledged writes, `FILE` (required)"},
		&cli.IntFlag{Name: "qd", Value: 16, Usage: "keep `N` requests in flight"},
		&cli.DurationFlag{Name: "wait", Value: 30 * time.Second, Usage: "wait up to `DUR` for the device to answer discovery"},
	}
}

// crashTarget is what crashFlags say: where the device is and how to reach
// it.
type crashTarget struct {
	interfaces   []string
	vlan         uint16
	scornTimeout time.Duration
	shelf        uint16
	slot         uint8
	journal      string
	qd           int
	wait         time.Duration
}

// device names the device the Linux driver's way.
func (t crashTarget) device() string { return fmt.Sprintf("e%d.%d", t.shelf, t.slot) }

// crashTargetFrom reads crashFlags for command cmd ("crash write"); every
// error is a usage error.
func crashTargetFrom(c *cli.Context, cmd string) (crashTarget, error) {
	var t crashTarget
	if c.Args().Present() {
		return t, cliflag.Usagef("%s: unexpected argument %q", cmd, c.Args().First())
	}
	for _, s := range c.StringSlice("interface") {
		if s = strings.TrimSpace(s); s != "" {
			t.interfaces = append(t.interfaces, s)
		}
	}
	if len(t.interfaces) == 0 {
		return t, cliflag.Usagef("%s: --interface is required: name the network interface the device is on", cmd)
	}
	vlan := c.Uint("vlan")
	if vlan > rawlink.MaxVLAN {
		return t, cliflag.Usagef("%s: --vlan %d: want a VLAN ID from 1 to %d, or 0 for untagged", cmd, vlan, rawlink.MaxVLAN)
	}
	t.vlan = uint16(vlan)
	if t.scornTimeout = c.Duration("scorn-timeout"); t.scornTimeout <= 0 {
		return t, cliflag.Usagef("%s: --scorn-timeout %v: want a positive duration", cmd, t.scornTimeout)
	}
	if t.wait = c.Duration("wait"); t.wait <= 0 {
		return t, cliflag.Usagef("%s: --wait %v: want a positive duration", cmd, t.wait)
	}
	if t.qd = c.Int("qd"); t.qd < 1 || t.qd > bench.MaxCrashQueueDepth {
		return t, cliflag.Usagef("%s: --qd %d: want 1 to %d", cmd, t.qd, bench.MaxCrashQueueDepth)
	}
	name, err := cliflag.Required(c, "device", "name the AoE device, such as e1.0")
	if err != nil {
		return t, fmt.Errorf("%s: %w", cmd, err)
	}
	if t.shelf, t.slot, err = parseAoEName(name); err != nil {
		return t, cliflag.Usagef("%s: --device: %w", cmd, err)
	}
	if t.journal, err = cliflag.Required(c, "journal", "name the journal file"); err != nil {
		return t, fmt.Errorf("%s: %w", cmd, err)
	}
	return t, nil
}

// parseAoEName reads a device name, eSHELF.SLOT (or SHELF.SLOT); the
// broadcast shelf and slot name no device.
func parseAoEName(s string) (shelf uint16, slot uint8, err error) {
	shelfText, slotText, ok := strings.Cut(strings.TrimPrefix(s, "e"), ".")
	sh, err1 := strconv.ParseUint(shelfText, 10, 16)
	sl, err2 := strconv.ParseUint(slotText, 10, 8)
	if !ok || err1 != nil || err2 != nil || sh >= aoe.BroadcastMajor || sl >= aoe.BroadcastMinor {
		return 0, 0, fmt.Errorf("%q: want eSHELF.SLOT, shelf 0-%d and slot 0-%d, such as e1.0", s, aoe.BroadcastMajor-1, aoe.BroadcastMinor-1)
	}
	return uint16(sh), uint8(sl), nil
}

// open starts an initiator on the interfaces, as ironaoe does, and waits
// for the device. stop ends the initiator.
func (t crashTarget) open(c *cli.Context) (*initiator.Device, func(), error) {
	var links []aoe.Link
	cfg := rawlink.Config{ReadBuffer: 4 << 20, WriteBuffer: 4 << 20, VLAN: t.vlan}
	for _, name := range t.interfaces {
		l, err := rawlink.ListenLink(name, cfg)
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			return nil, nil, fmt.Errorf("interface %s: %w", name, err)
		}
		links = append(links, l)
	}
	// Scorns, failovers and late writes are worth seeing beside the
	// result; the initiator's routine logs are not.
	logger := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return bench.OpenCrashDevice(c.Context, initiator.Config{Links: links, ScornTimeout: t.scornTimeout, Logger: logger},
		t.shelf, t.slot, t.wait)
}

// crashWriteCommand is `ironbench crash write`.
func crashWriteCommand() *cli.Command {
	return &cli.Command{
		Name:  "write",
		Usage: "write the pattern to a device and journal every acknowledged write",
		Flags: append(crashFlags(),
			&cli.StringFlag{Name: "size", Value: "32MiB", Usage: "write `SIZE` bytes (a multiple of --block)"},
			&cli.StringFlag{Name: "offset", Value: "0", Usage: "from byte `OFFSET` of the device (a multiple of 512)"},
			&cli.StringFlag{Name: "block", Value: "64KiB", Usage: "in writes of `SIZE` bytes (a multiple of 512)"},
			&cli.IntFlag{Name: "flush-at", Usage: "send FLUSH once `PCT` percent of the blocks are acknowledged (1-99; 0 for none)"},
		),
		Action: runCrashWrite,
	}
}

// runCrashWrite is the action of `ironbench crash write`.
func runCrashWrite(c *cli.Context) error {
	const cmd = "crash write"
	t, err := crashTargetFrom(c, cmd)
	if err != nil {
		return err
	}
	opts := bench.CrashWriteOptions{QueueDepth: t.qd, FlushAt: c.Int("flush-at")}
	for _, f := range []struct {
		name string
		to   *int64
	}{{"size", &opts.Size}, {"offset", &opts.Offset}} {
		if *f.to, err = parseSize(c.String(f.name)); err != nil {
			return cliflag.Usagef("%s: --%s: %w", cmd, f.name, err)
		}
	}
	block, err := parseSize(c.String("block"))
	if err != nil || block <= 0 || block > bench.MaxCrashBlock {
		return cliflag.Usagef("%s: --block %q: want a multiple of 512 bytes up to %s", cmd, c.String("block"), humanBytes(bench.MaxCrashBlock))
	}
	opts.BlockSize = int(block)
	if opts.Size <= 0 {
		return cliflag.Usagef("%s: --size %q: want a positive size", cmd, c.String("size"))
	}
	if err := opts.Check(0); err != nil {
		return cliflag.Usagef("%s: %w", cmd, err)
	}

	journal, err := os.OpenFile(t.journal, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer journal.Close()
	dev, stop, err := t.open(c)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	res, err := bench.CrashWrite(c.Context, dev, journal, opts)
	stop()
	if cerr := journal.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("journal: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	flush := "no FLUSH"
	if res.Flushed > 0 {
		flush = fmt.Sprintf("FLUSH took %v", res.FlushTime.Round(time.Microsecond))
	}
	fmt.Fprintf(c.App.Writer, "crash write %s run %016x: %d of %d blocks acked, %d flushed (%s), %s in %v: %.1f MB/s\n",
		res.Device, res.Run, res.Acked, res.Blocks, res.Flushed, flush, humanBytes(res.Bytes),
		res.Elapsed.Round(time.Millisecond), res.MBps())
	return nil
}

// crashCheckCommand is `ironbench crash check`.
func crashCheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "read back the journaled writes and count the intact, lost and torn ones",
		Flags: append(crashFlags(),
			&cli.StringFlag{Name: "expect", Usage: "`MODE`: durable (every acked write intact), flushed (every flushed one, " +
				"and an unflushed one lost: else exit 3) or report (required)"},
			&cli.StringFlag{Name: "json", Usage: "also write every count as a JSON object to `FILE`"},
		),
		Action: runCrashCheck,
	}
}

// crashExitError is an error that ends ironbench with a status of its own
// (main exits with a cli.ExitCoder's code).
type crashExitError struct {
	code int
	err  error
}

// Error returns the cause's message.
func (e *crashExitError) Error() string { return e.err.Error() }

// Unwrap returns the cause.
func (e *crashExitError) Unwrap() error { return e.err }

// ExitCode returns the status, as cli.ExitCoder.
func (e *crashExitError) ExitCode() int { return e.code }

// crashCheckJSON is what check --json writes: the report and the verdict.
type crashCheckJSON struct {
	*bench.CrashReport
	Journal string            `json:"journal"`
	Expect  bench.CrashExpect `json:"expect"`
	Pass    bool              `json:"pass"`
	Exit    int               `json:"exit"`
	Verdict string            `json:"verdict"`
}

// runCrashCheck is the action of `ironbench crash check`.
func runCrashCheck(c *cli.Context) error {
	const cmd = "crash check"
	t, err := crashTargetFrom(c, cmd)
	if err != nil {
		return err
	}
	mode, err := cliflag.Required(c, "expect", "say what to expect: durable, flushed or report")
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	expect, err := bench.ParseCrashExpect(mode)
	if err != nil {
		return cliflag.Usagef("%s: --%w", cmd, err)
	}
	f, err := os.Open(t.journal)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	j, err := bench.ParseCrashJournal(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %s: %w", cmd, t.journal, err)
	}
	if j.Run.Device != "" && j.Run.Device != t.device() {
		return cliflag.Usagef("%s: --device %s, but %s is a journal of %s", cmd, t.device(), t.journal, j.Run.Device)
	}
	dev, stop, err := t.open(c)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	rep, err := bench.CrashCheck(c.Context, dev, j, bench.CrashCheckOptions{QueueDepth: t.qd})
	stop()
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}

	verdict := rep.Judge(expect)
	out := crashCheckJSON{CrashReport: rep, Journal: t.journal, Expect: expect, Pass: verdict == nil, Verdict: "pass"}
	switch {
	case errors.Is(verdict, bench.ErrCrashNoNegativeControl):
		out.Exit, out.Verdict = exitNoNegativeControl, verdict.Error()
	case verdict != nil:
		out.Exit, out.Verdict = cliflag.ExitFailure, verdict.Error()
	}
	notes := ""
	if !j.Ended {
		notes += " (the journal has no end record: the write run did not finish)"
	}
	if expect == bench.CrashExpectFlushed && rep.Flushes == 0 {
		notes += " (the journal has no FLUSH: every write is unflushed)"
	}
	result := "PASS"
	if verdict != nil {
		result = "FAIL: " + verdict.Error()
	}
	fmt.Fprintf(c.App.Writer, "crash check %s; expect %s: %s%s\n", rep.Summary(), expect, result, notes)
	if path := c.String("json"); path != "" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err == nil {
			err = os.WriteFile(path, append(b, '\n'), 0o644)
		}
		if err != nil {
			return fmt.Errorf("%s: --json: %w", cmd, err)
		}
	}
	switch {
	case out.Exit == exitNoNegativeControl:
		return &crashExitError{code: exitNoNegativeControl, err: fmt.Errorf("%s: %w", cmd, verdict)}
	case verdict != nil:
		return fmt.Errorf("%s: %w", cmd, verdict)
	}
	return nil
}
