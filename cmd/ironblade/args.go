package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/internal/clilog"
	"github.com/ironblade/ironblade/target"
)

// Limits and defaults of the command line.
const (
	// defaultBuffers is the buffer count advertised without -b. vblade
	// advertises 16; ironblade serves requests concurrently and sizes its
	// socket buffers to match, so it can promise the Linux driver's whole
	// default window (aoe_maxout=64).
	defaultBuffers = 64
	// minBuffers is the smallest usable -b: the Linux aoe driver gives a
	// target that advertises fewer than 2 buffers a window of 0, after
	// which no I/O is ever sent to it.
	minBuffers = 2
	// maxBuffers is the most buffers the target holds; a larger -b, which
	// vblade would take, is lowered to it with a warning.
	maxBuffers = target.MaxBufferCount
	// defaultBusyPoll is --busy-poll's default: on this project's VMs a
	// request that wakes an idle CPU costs more than watching for it, and
	// one client's requests at queue depth 1 come 5-30 µs apart
	// (docs/performance.md, round 5). maxBusyPoll bounds it.
	defaultBusyPoll = 50 * time.Microsecond
	maxBusyPoll     = time.Millisecond
	// maxShelf and maxSlot exclude the broadcast addresses 0xffff and 0xff.
	maxShelf = aoe.BroadcastMajor - 1
	maxSlot  = aoe.BroadcastMinor - 1
)

// errHelpShown is returned by parseArgs when it printed the help or the
// version instead of producing options: the program should exit 0.
var errHelpShown = errors.New("help or version shown")

// options is the parsed command line: vblade's options and operands plus
// ironblade's own long options.
type options struct {
	Shelf    uint16
	Slot     uint8
	Netif    string
	Filename string

	// Buffers is -b, the advertised buffer count.
	Buffers int
	// Offset (-o) and Length (-l) select the exported part of the file, in
	// 512-byte sectors. Length 0 means up to the end of the file.
	Offset, Length int64
	Direct         bool // -d: O_DIRECT
	Sync           bool // -s: acknowledge writes once durable
	ReadOnly       bool // -r
	// MACs is -m: the only initiators served.
	MACs []aoe.MAC

	StateDir         string
	AnnounceInterval time.Duration
	MetricsAddr      string
	LogLevel         slog.Level
	LogFormat        string // "text" or "json"
	Workers          int
	// VLAN is --vlan: the 802.1Q VLAN ID to serve on, or 0 for untagged.
	VLAN uint16
	// BusyPoll is --busy-poll (rawlink.Config.BusyPoll), for every
	// export.
	BusyPoll time.Duration
	// AuthKeys are --auth-key files: with any, the export is keyed
	// (docs/auth.md); two while one key replaces another.
	AuthKeys []string
	// AuthMode is --auth-mode: whether plain initiators are refused.
	AuthMode seal.Mode
	// AuthEncrypt is --auth-encrypt: sealed initiators must encrypt too.
	AuthEncrypt bool

	// ConfigFile is --config: the exports come from this file
	// (internal/exportconf) instead of the operands and options.
	ConfigFile string
	// Control is --control: the control socket's path, "" for the
	// default (see controlPath) or controlOff for none.
	Control string

	// Warnings are about input that vblade takes and ironblade adjusts
	// (empty or group -m entries, a huge -b); they are logged once a
	// logger exists.
	Warnings []string
}

// usageText is vblade's synopsis, extended with the long options.
const usageText = `ironblade [-b bufcnt] [-o offset] [-l length] [-d] [-s] [-r] [-m mac[,mac...]]
          [long options] shelf slot netif filename
ironblade --config FILE [--metrics ADDR] [--control PATH] [--log-level LEVEL] [--log-format FORMAT] [--busy-poll DUR]

Exports filename (a regular file or block device) as AoE device e<shelf>.<slot>
on network interface netif. The command line is vblade's: options and operands
may come in any order, short options may be bundled (-rs) and "--" ends the
options. With --config, the exports come from FILE (docs/ironblade.conf.md).`

// flags defines the command line. vblade's options are the one-letter
// aliases; getopt emulation (permuteArgs) reads the same definitions.
func flags() []cli.Flag {
	return slices.Concat([]cli.Flag{
		&cli.StringFlag{Name: "buffers", Aliases: []string{"b"}, Value: strconv.Itoa(defaultBuffers),
			Usage: "advertise `bufcnt` buffers: how many requests initiators may have outstanding (at least 2)"},
		&cli.StringFlag{Name: "offset", Aliases: []string{"o"}, Value: "0",
			Usage: "skip the first `offset` 512-byte sectors of filename (decimal, 0x hex or 0-prefixed octal)"},
		&cli.StringFlag{Name: "length", Aliases: []string{"l"}, DefaultText: "to the end of filename",
			Usage: "export `length` 512-byte sectors"},
		&cli.BoolFlag{Name: "direct", Aliases: []string{"d"}, Usage: "open filename with O_DIRECT"},
		&cli.BoolFlag{Name: "sync", Aliases: []string{"s"},
			Usage: "acknowledge a write only once it is durable (concurrent writes share one fdatasync)"},
		&cli.BoolFlag{Name: "read-only", Aliases: []string{"r"}, Usage: "refuse writes; open filename read-only"},
		&cli.GenericFlag{Name: "mac", Aliases: []string{"m"}, Value: &macArgs{},
			Usage: "serve only the initiators in `mac[,mac...]` (12 hex digits, colons optional); repeatable"},
		&cli.StringFlag{Name: "state-dir",
			Usage: "keep the config string, MAC mask and reserve lists in `DIR` across restarts"},
		&cli.DurationFlag{Name: "announce-interval", DefaultText: "only at start and on SIGUSR1",
			Usage: "repeat the announcement every `DUR` (e.g. 30s)"},
		&cli.StringFlag{Name: "metrics",
			Usage: "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9192)"},
	}, clilog.Flags(), []cli.Flag{
		&cli.IntFlag{Name: "workers", DefaultText: "bufcnt",
			Usage: "execute at most `N` requests at once"},
		&cli.StringSliceFlag{Name: "auth-key",
			Usage: "require initiators to prove the key in `FILE` (sealed AoE, docs/auth.md); repeat to accept a second key during a rotation; SIGHUP re-reads the files"},
		&cli.BoolFlag{Name: "auth-encrypt",
			Usage: "with --auth-key: serve only initiators that encrypt the payload too (AES-256-GCM suite)"},
		&cli.StringFlag{Name: "auth-mode", Value: "required",
			Usage: "with --auth-key: `MODE` required (refuse plain initiators) or optional (let them in too, for a migration)"},
		&cli.StringFlag{Name: "config",
			Usage: "serve the exports of the configuration `FILE` (docs/ironblade.conf.md) instead of shelf slot netif filename; SIGHUP reloads it"},
		&cli.StringFlag{Name: "control", DefaultText: defaultControlDir + "/eSHELF.SLOT.sock, or ctl.sock with --config",
			Usage: "answer ironbladectl on the Unix socket `PATH`; off for none"},
		&cli.StringFlag{Name: "vlan", DefaultText: "untagged",
			Usage: "serve on 802.1Q VLAN `VID` (1 to 4094): tag every frame and take only that VLAN's (no VLAN device needed)"},
		&cli.DurationFlag{Name: "busy-poll", Value: defaultBusyPoll,
			Usage: "when requests come close together, watch for the next one for up to `DUR` instead of sleeping (lower latency at low queue depths, for the CPU time spent watching); 0 to always sleep"},
	})
}

// newApp returns the urfave/cli application. action runs with the parsed
// options; it is not called when help or the version is shown.
func newApp(stdout, stderr io.Writer, action func(options) error) *cli.App {
	return &cli.App{
		Name:            "ironblade",
		Usage:           "export a file or block device over ATA over Ethernet (vblade-compatible)",
		UsageText:       usageText,
		Version:         version,
		Flags:           flags(),
		HideHelpCommand: true,
		// permuteArgs has already split bundles (-rs); this keeps the
		// library's own handling consistent with it.
		UseShortOptionHandling: true,
		Writer:                 stdout,
		ErrWriter:              stderr,
		// Errors go back to run, which prints them and picks the exit
		// status; the library must not exit the process itself.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return err
		},
		Action: func(c *cli.Context) error {
			opts, err := optionsFrom(c)
			if err != nil {
				return err
			}
			return action(opts)
		},
	}
}

// parseArgs parses a full command line (args[0] is the program name)
// exactly as vblade 25 would, plus ironblade's long options. getenv is
// consulted for POSIXLY_CORRECT. It returns errHelpShown after printing
// the help or the version to stdout.
func parseArgs(args []string, getenv func(string) string, stdout io.Writer) (options, error) {
	var (
		parsed options
		ran    bool
	)
	app := newApp(stdout, io.Discard, func(o options) error {
		parsed, ran = o, true
		return nil
	})
	if len(args) == 0 {
		args = []string{app.Name}
	}
	table := newOptionTable(slices.Concat(app.Flags, []cli.Flag{cli.HelpFlag, cli.VersionFlag}))
	permuted, err := permuteArgs(table, args[1:], getenv("POSIXLY_CORRECT") != "")
	if err != nil {
		return options{}, err
	}
	// --help anywhere shows the help and ignores the rest, as GNU tools do;
	// the library would take the operands for a help topic.
	if wantsHelp(permuted) {
		permuted = []string{"--help"}
	}
	if err := app.Run(append([]string{args[0]}, permuted...)); err != nil {
		return options{}, err
	}
	if !ran {
		return options{}, errHelpShown
	}
	return parsed, nil
}

// wantsHelp reports whether a permuted command line asks for help.
func wantsHelp(permuted []string) bool {
	for _, a := range permuted {
		switch a {
		case "--":
			return false
		case "--" + cli.HelpFlag.Names()[0]:
			return true
		}
	}
	return false
}

// optionsFrom validates the parsed flags and operands: vblade's operands
// and options, then ironblade's long options. The first mistake found is
// the error.
func optionsFrom(c *cli.Context) (options, error) {
	var o options
	if c.IsSet("config") {
		return configOptions(c)
	}
	if err := o.setOperands(c.Args().Slice()); err != nil {
		return o, err
	}
	if err := o.setBuffers(c.String("buffers")); err != nil {
		return o, err
	}
	if err := o.setRange(c); err != nil {
		return o, err
	}
	o.Direct, o.Sync, o.ReadOnly = c.Bool("direct"), c.Bool("sync"), c.Bool("read-only")
	if err := o.setMACs(c); err != nil {
		return o, err
	}
	if err := o.setServiceOptions(c); err != nil {
		return o, err
	}
	if err := o.setAuth(c); err != nil {
		return o, err
	}
	return o, nil
}

// processFlags are the options that --config leaves on the command line:
// they are the process's, not an export's.
var processFlags = []string{"config", "metrics", "log-level", "log-format", "control", "busy-poll"}

// configOptions validates a --config command line: no operands, and no
// option that the file's exports set.
func configOptions(c *cli.Context) (options, error) {
	var o options
	if o.ConfigFile = c.String("config"); o.ConfigFile == "" {
		return o, errors.New("--config: empty file name")
	}
	if c.NArg() > 0 {
		return o, fmt.Errorf("--config: no operands with a configuration file, from %q on: the file lists the exports", c.Args().First())
	}
	for _, f := range c.App.Flags {
		name := f.Names()[0]
		if c.IsSet(name) && !slices.Contains(processFlags, name) {
			return o, fmt.Errorf("--%s: not with --config: set it in the configuration file", name)
		}
	}
	if err := o.setServiceOptions(c); err != nil {
		return o, err
	}
	return o, nil
}

// setBuffers checks and stores -b: at least minBuffers, and lowered to
// maxBuffers with a warning, since vblade would take a larger value.
func (o *options) setBuffers(arg string) error {
	var err error
	if o.Buffers, err = parseDecimal(arg); err != nil {
		return fmt.Errorf("-b %q: %w", arg, err)
	}
	if o.Buffers < minBuffers {
		return fmt.Errorf("-b %d: buffer count must be at least %d: the Linux aoe driver gives a target "+
			"advertising fewer than %d buffers a window of 0 and never sends it I/O", o.Buffers, minBuffers, minBuffers)
	}
	if o.Buffers > maxBuffers {
		o.Warnings = append(o.Warnings, fmt.Sprintf("-b %d: using %d buffers, the most ironblade holds", o.Buffers, maxBuffers))
		o.Buffers = maxBuffers
	}
	return nil
}

// setRange checks and stores -o and -l, the exported sectors of the file:
// the range must end within the largest file there can be.
func (o *options) setRange(c *cli.Context) error {
	var err error
	if o.Offset, err = parseSectors(c.String("offset")); err != nil || o.Offset < 0 {
		return fmt.Errorf("-o %q: offset must be a number of sectors, 0 or more (decimal, 0x hex or 0-prefixed octal)", c.String("offset"))
	}
	if c.IsSet("length") {
		if o.Length, err = parseSectors(c.String("length")); err != nil || o.Length < 1 {
			return fmt.Errorf("-l %q: length must be a number of sectors, 1 or more (decimal, 0x hex or 0-prefixed octal)", c.String("length"))
		}
	}
	const maxSectors = 1<<63/aoe.SectorSize - 1
	if o.Offset > maxSectors || o.Length > maxSectors || o.Offset+o.Length > maxSectors {
		return fmt.Errorf("-o %d -l %d: the exported range ends beyond the largest possible file", o.Offset, o.Length)
	}
	return nil
}

// setMACs checks and stores the -m lists. Entries vblade would take but
// that name no initiator are dropped with a warning, unless that leaves
// the list empty, which would serve everyone.
func (o *options) setMACs(c *cli.Context) error {
	var (
		macItems []string
		ignored  int
	)
	if m, ok := c.Generic("mac").(*macArgs); ok {
		macItems = m.items
	}
	for _, item := range macItems {
		if item = strings.TrimSpace(item); item == "" {
			o.Warnings = append(o.Warnings, "-m: ignoring an empty MAC address in the list")
			continue
		}
		mac, err := parseMAC(item)
		if err != nil {
			return fmt.Errorf("-m: %w", err)
		}
		if mac.IsMulticast() || mac.IsZero() {
			// No initiator sends from such an address, so vblade would
			// never serve it; the target refuses it in its list.
			o.Warnings = append(o.Warnings, fmt.Sprintf("-m: ignoring %s: a group or zero address is never an initiator's", mac))
			ignored++
			continue
		}
		o.MACs = append(o.MACs, mac)
	}
	if ignored > 0 && len(o.MACs) == 0 {
		// An empty list serves everyone: the opposite of what was asked.
		return errors.New("-m: no initiator's address left in the list: a group or zero address is never an initiator's")
	}
	if len(o.MACs) > target.MaxMACMask {
		return fmt.Errorf("-m: %d MAC addresses; the MAC mask list holds at most %d", len(o.MACs), target.MaxMACMask)
	}
	return nil
}

// setServiceOptions checks and stores the long options vblade lacks,
// but for the --auth ones: --state-dir, --announce-interval, --control,
// --metrics, the logging options, --workers and --vlan.
func (o *options) setServiceOptions(c *cli.Context) error {
	o.StateDir = c.String("state-dir")
	if c.IsSet("state-dir") && o.StateDir == "" {
		return errors.New("--state-dir: empty directory name")
	}
	o.AnnounceInterval = c.Duration("announce-interval")
	if o.AnnounceInterval < 0 {
		return fmt.Errorf("--announce-interval %v: must not be negative", o.AnnounceInterval)
	}
	if c.IsSet("control") {
		// Given empty, it means none, as off does.
		if o.Control = c.String("control"); o.Control == "" {
			o.Control = controlOff
		}
	}
	if o.BusyPoll = c.Duration("busy-poll"); o.BusyPoll < 0 || o.BusyPoll > maxBusyPoll {
		return fmt.Errorf("--busy-poll %v: want 0 (off) to %v", o.BusyPoll, maxBusyPoll)
	}
	o.MetricsAddr = c.String("metrics")
	if o.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(o.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics %q: want host:port, such as 127.0.0.1:9192: %w", o.MetricsAddr, err)
		}
	}
	logOpts, err := clilog.OptionsFrom(c)
	if err != nil {
		return err
	}
	o.LogLevel, o.LogFormat = logOpts.Level, logOpts.Format
	if o.Workers = c.Int("workers"); o.Workers < 0 {
		return fmt.Errorf("--workers %d: must be 1 or more (or 0 for the default)", o.Workers)
	}
	if c.IsSet("vlan") {
		vid, err := parseDecimal(c.String("vlan"))
		if err != nil || vid < 1 || vid > rawlink.MaxVLAN {
			return fmt.Errorf("--vlan %q: want a decimal VLAN ID from 1 to %d", c.String("vlan"), rawlink.MaxVLAN)
		}
		o.VLAN = uint16(vid)
	}
	return nil
}

// setAuth checks and stores --auth-key, --auth-mode and --auth-encrypt;
// the last two mean nothing without a key.
func (o *options) setAuth(c *cli.Context) error {
	o.AuthKeys = c.StringSlice("auth-key")
	for _, f := range o.AuthKeys {
		if f == "" {
			return errors.New("--auth-key: empty file name")
		}
	}
	mode, err := seal.ParseMode(c.String("auth-mode"))
	if err != nil {
		return fmt.Errorf("--auth-mode %q: want required or optional", c.String("auth-mode"))
	}
	if c.IsSet("auth-mode") && len(o.AuthKeys) == 0 {
		return errors.New("--auth-mode: needs --auth-key")
	}
	if o.AuthEncrypt = c.Bool("auth-encrypt"); o.AuthEncrypt && len(o.AuthKeys) == 0 {
		return errors.New("--auth-encrypt: needs --auth-key")
	}
	o.AuthMode = mode
	return nil
}

// macArgs collects -m values: each is a comma-separated list, and
// repeated -m options add to the list, as in vblade.
type macArgs struct{ items []string }

// aliasCopy is what Serialize returns. After parsing, urfave/cli copies a
// flag's value to its other names through Serialize; --mac and -m share
// this one value, so that copy must change nothing. No command-line
// argument can contain the NUL byte, so no -m value is mistaken for it.
const aliasCopy = "\x00alias copy"

// Set implements flag.Value.
func (m *macArgs) Set(s string) error {
	if s != aliasCopy {
		m.items = append(m.items, strings.Split(s, ",")...)
	}
	return nil
}

// Serialize implements cli.Serializer.
func (m *macArgs) Serialize() string { return aliasCopy }

// String implements flag.Value.
func (m *macArgs) String() string { return strings.Join(m.items, ",") }

// operandNames are vblade's operands, in order.
var operandNames = [...]string{"shelf", "slot", "netif", "filename"}

// setOperands checks and stores shelf, slot, netif and filename.
func (o *options) setOperands(args []string) error {
	if len(args) < len(operandNames) {
		missing := operandNames[len(args):]
		return fmt.Errorf("missing %s: want shelf slot netif filename", strings.Join(missing[:], ", "))
	}
	if len(args) > len(operandNames) {
		return fmt.Errorf("too many operands, from %q on: want shelf slot netif filename", args[len(operandNames)])
	}
	shelf, err := parseDecimal(args[0])
	if err != nil || shelf < 0 || shelf > maxShelf {
		return fmt.Errorf("shelf %q: want a decimal number from 0 to %d (%d addresses every shelf)", args[0], maxShelf, aoe.BroadcastMajor)
	}
	slot, err := parseDecimal(args[1])
	if err != nil || slot < 0 || slot > maxSlot {
		return fmt.Errorf("slot %q: want a decimal number from 0 to %d (%d addresses every slot)", args[1], maxSlot, aoe.BroadcastMinor)
	}
	if args[2] == "" {
		return errors.New("netif: empty network interface name")
	}
	if args[3] == "" {
		return errors.New("filename: empty file name")
	}
	o.Shelf, o.Slot, o.Netif, o.Filename = uint16(shelf), uint8(slot), args[2], args[3]
	return nil
}

// parseDecimal reads a decimal integer as vblade's atoi does for -b, shelf
// and slot (leading blanks, optional sign), but rejects trailing junk that
// atoi would silently drop.
func parseDecimal(s string) (int, error) {
	n, err := strconv.ParseInt(strings.TrimLeft(s, " \t\n\v\f\r"), 10, 32)
	if err != nil {
		return 0, errors.New("not a decimal number")
	}
	return int(n), nil
}

// parseSectors reads -o and -l as vblade's strtoll(s, &end, 0) does:
// decimal, 0x hexadecimal or 0-prefixed octal.
func parseSectors(s string) (int64, error) {
	return strconv.ParseInt(strings.TrimLeft(s, " \t\n\v\f\r"), 0, 64)
}

// parseMAC reads one -m address. vblade takes six pairs of hex digits,
// each optionally followed by a colon, so 001122334455, 00:11:22:33:44:55
// and 0011:2233:4455 are all one address; the other forms net.ParseMAC
// knows (00-11-22-33-44-55, 0011.2233.4455) are accepted too. Unlike
// vblade, a malformed address is an error rather than skipped: skipping
// the only one would open the target to every initiator.
func parseMAC(s string) (aoe.MAC, error) {
	var m aoe.MAC
	rest := s
	ok := true
	for i := range m {
		if len(rest) < 2 {
			ok = false
			break
		}
		b, err := strconv.ParseUint(rest[:2], 16, 8)
		if err != nil {
			ok = false
			break
		}
		m[i] = byte(b)
		rest = strings.TrimPrefix(rest[2:], ":")
	}
	if ok && rest == "" {
		return m, nil
	}
	if m, err := aoe.ParseMAC(s); err == nil {
		return m, nil
	}
	return aoe.MAC{}, fmt.Errorf("bad MAC address %q: want 12 hex digits, optionally separated by colons (00:11:22:33:44:55)", s)
}
