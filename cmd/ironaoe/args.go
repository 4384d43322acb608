package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/initiator/nbdkernel"
	"github.com/ironblade/ironblade/internal/cliflag"
	"github.com/ironblade/ironblade/internal/clilog"
)

// Defaults of the command line that are not the initiator package's.
const (
	// defaultTCP is where serve listens when given no listener: the NBD
	// port, on the loopback interface only.
	defaultTCP = "127.0.0.1:10809"
	// defaultControlDir holds the control sockets of running serve and
	// attach processes, one per process, named <pid>.sock.
	defaultControlDir = "/run/ironaoe"
	// defaultDiscoverWait is how long discover listens for answers.
	defaultDiscoverWait = time.Second
	// defaultAttachWait is how long attach waits for its device to answer.
	defaultAttachWait = 30 * time.Second
)

// errHelpShown is returned by parseArgs when it printed the help or the
// version instead of producing options: the program should exit 0.
var errHelpShown = cliflag.ErrHelpShown

// globalOptions are the options every command takes.
type globalOptions struct {
	LogLevel slog.Level
	// LogLevelSet says --log-level was given: discover and stat, whose
	// output is their result, log only warnings by default.
	LogLevelSet bool
	LogFormat   string // "text" or "json"
}

// engineOptions configure the initiator: which interfaces, and its tunables.
type engineOptions struct {
	// Interfaces are the network interfaces to use; empty means
	// initiator.DefaultInterfaces.
	Interfaces []string
	// VLAN is the 802.1Q VLAN to speak AoE on (tagged in userspace, so
	// no 8021q module is needed); 0 means untagged.
	VLAN uint16
	// Config holds the tunables; its Links and Logger are filled in later.
	Config initiator.Config
	// AuthKeys are the --auth-key files (docs/auth.md).
	AuthKeys []authKeyArg
	// AuthEncrypt is --auth-encrypt: ask for the encrypting suite.
	AuthEncrypt bool
}

// discoverOptions are discover's.
type discoverOptions struct {
	Engine engineOptions
	JSON   bool
	// Wait is how long to listen for answers.
	Wait time.Duration
}

// serveOptions are serve's.
type serveOptions struct {
	Engine engineOptions
	// Unix and TCP are the listeners; at least one is set.
	Unix string
	TCP  string
	// Devices are the devices to export; empty means every device found,
	// now or later.
	Devices []deviceAddr
	// TCPAny allows a TCP listener on a non-loopback address, given or
	// passed by systemd: NBD has no authentication.
	TCPAny     bool
	ControlDir string // "" for no control socket
	// Metrics is where to serve Prometheus metrics, HOST:PORT; "" for
	// nowhere.
	Metrics string
}

// attachOptions are attach's.
type attachOptions struct {
	Engine engineOptions
	Device deviceAddr
	// Index is the N of /dev/nbdN, or nbdkernel.AnyIndex.
	Index       int
	BlockSize   int64
	Connections int
	// Wait bounds the wait for the device to answer; 0 waits forever.
	Wait       time.Duration
	ControlDir string // "" for no control socket
	// Metrics is where to serve Prometheus metrics, HOST:PORT; "" for
	// nowhere.
	Metrics string
	// JSON prints the attached device as a JSON object rather than its
	// path alone.
	JSON bool
}

// detachOptions are detach's.
type detachOptions struct {
	Index int
}

// statOptions are stat's.
type statOptions struct {
	JSON bool
	// Control is one control socket to ask; empty means every socket in
	// ControlDir.
	Control    string
	ControlDir string
}

// invocation is a parsed command line: the command and its options. Only
// the options of Command are filled in.
type invocation struct {
	Command  string
	Global   globalOptions
	Discover discoverOptions
	Serve    serveOptions
	Attach   attachOptions
	Detach   detachOptions
	Stat     statOptions
}

// globalFlags are the options of every command, given before it or after.
func globalFlags() []cli.Flag { return clilog.Flags() }

// durationTunable is one of the initiator's timing tunables on the command
// line.
type durationTunable struct {
	flag  string
	def   time.Duration
	usage string
	field func(*initiator.Config) *time.Duration
}

// durationTunables lists the timing tunables that must be positive;
// --dead-timeout, which may be 0, is apart.
func durationTunables() []durationTunable {
	return []durationTunable{
		{"scorn-timeout", initiator.DefaultScornTimeout,
			"scorn a target that leaves a frame unanswered for `DUR`, and move its frames to another",
			func(c *initiator.Config) *time.Duration { return &c.ScornTimeout }},
		{"rto-min", initiator.DefaultRTOMin, "keep the adaptive retransmission timeout at least `DUR`",
			func(c *initiator.Config) *time.Duration { return &c.RTOMin }},
		{"rto-max", initiator.DefaultRTOMax, "keep the adaptive retransmission timeout at most `DUR`",
			func(c *initiator.Config) *time.Duration { return &c.RTOMax }},
		{"discover-interval", initiator.DefaultDiscoverInterval, "broadcast Query Config every `DUR`",
			func(c *initiator.Config) *time.Duration { return &c.DiscoverInterval }},
	}
}

// engineFlags are the initiator's interfaces and tunables, shared by
// discover, serve and attach.
func engineFlags() []cli.Flag {
	const cat = "initiator tunables"
	flags := []cli.Flag{
		&cli.StringSliceFlag{Name: "interface", Aliases: []string{"i"},
			DefaultText: "every up, non-loopback Ethernet interface",
			Usage:       "find and reach targets on `IFACE` (repeatable, or comma-separated)"},
		&cli.UintFlag{Name: "vlan", DefaultText: "untagged",
			Usage: "speak AoE on 802.1Q VLAN `VID` (1-4094), tagged in userspace: no 8021q module needed"},
		&cli.BoolFlag{Name: "auth-encrypt",
			Usage: "with --auth-key: encrypt the payload too (AES-256-GCM suite), not only authenticate it"},
		&cli.StringSliceFlag{Name: "auth-key",
			Usage: "use only targets that prove the key in `FILE` (sealed AoE, docs/auth.md): for every device, or eS.L=FILE for one (repeatable)"},
	}
	for _, d := range durationTunables() {
		flags = append(flags, &cli.DurationFlag{Name: d.flag, Value: d.def, Category: cat, Usage: d.usage})
	}
	return append(flags,
		&cli.DurationFlag{Name: "dead-timeout", Value: initiator.DefaultDeadTimeout, Category: cat,
			Usage: "fail I/O that no target answered for `DUR`; 0 retries forever"},
		&cli.IntFlag{Name: "max-window", Value: initiator.DefaultMaxWindow, Category: cat,
			Usage: "keep at most `N` frames outstanding on one target"},
		&cli.StringFlag{Name: "policy", Value: string(initiator.PolicyFailover), Category: cat,
			Usage: "use a device's targets by `POLICY`: failover (one at a time) or multipath (all at once)"},
	)
}

// metricsFlag is where serve and attach serve Prometheus metrics.
func metricsFlag() cli.Flag {
	return &cli.StringFlag{Name: "metrics",
		Usage: "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9193)"}
}

// metricsFrom reads --metrics: HOST:PORT, or "" when not given.
func metricsFrom(c *cli.Context) (string, error) {
	addr := c.String("metrics")
	if c.IsSet("metrics") {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", fmt.Errorf("--metrics %q: want host:port, such as 127.0.0.1:9193: %w", addr, err)
		}
	}
	return addr, nil
}

// controlDirFlag is where serve and attach put their control socket.
func controlDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "control-dir", Value: defaultControlDir,
		Usage: "answer ironaoe stat on a socket <pid>.sock in `DIR` (made mode 0700); empty for none"}
}

// commands defines the commands; action receives the parsed options of
// the one that runs.
func commands(action func(*cli.Context, invocation) error) []*cli.Command {
	run := func(name string) cli.ActionFunc {
		return func(c *cli.Context) error {
			inv, err := invocationFrom(c, name)
			if err != nil {
				return err
			}
			return action(c, inv)
		}
	}
	cmds := []*cli.Command{discoverCommand(), serveCommand(), attachCommand(), detachCommand(), statCommand()}
	for _, c := range cmds {
		c.Action = run(c.Name)
		c.OnUsageError = cliflag.OnUsageError
		c.HideHelpCommand = true
	}
	return cmds
}

// discoverCommand defines discover.
func discoverCommand() *cli.Command {
	return &cli.Command{
		Name:      "discover",
		Usage:     "list the AoE devices that answer on the network",
		ArgsUsage: " ",
		Description: "Broadcasts Query Config on the interfaces, waits for answers, identifies each device\n" +
			"and prints one line per target: shelf.slot, MAC, interface, buffer count, sectors per\n" +
			"frame, firmware version, capacity and config string.",
		Flags: append(engineFlags(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
			&cli.DurationFlag{Name: "wait", Value: defaultDiscoverWait, Usage: "listen for answers for `DUR`"},
		),
	}
}

// serveCommand defines serve.
func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve AoE devices over NBD",
		ArgsUsage: "[eSHELF.SLOT ...]",
		Description: "Serves the named devices (or every device found, now or later) as NBD exports named\n" +
			"eSHELF.SLOT, for nbd+unix:///e1.0?socket=PATH or nbd://127.0.0.1/e1.0. Without --unix\n" +
			"or --tcp it listens on " + defaultTCP + ". SIGTERM or SIGINT stops it gracefully.",
		Flags: append(engineFlags(),
			&cli.StringFlag{Name: "unix", Usage: "listen on the Unix socket `PATH`"},
			&cli.StringFlag{Name: "tcp", DefaultText: defaultTCP + " unless --unix is given",
				Usage: "listen on TCP `HOST:PORT`; only a loopback address unless --tcp-any"},
			&cli.BoolFlag{Name: "tcp-any", Usage: "allow --tcp on a non-loopback address: NBD has no authentication"},
			controlDirFlag(),
			metricsFlag(),
		),
	}
}

// attachCommand defines attach.
func attachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "attach an AoE device to the kernel as /dev/nbdN",
		ArgsUsage: "eSHELF.SLOT [/dev/nbdN]",
		Description: "Serves the device to the kernel's nbd driver (modprobe nbd) and prints the /dev/nbdN\n" +
			"path. Runs until SIGTERM or SIGINT, then detaches, or until the device is detached.",
		Flags: append(engineFlags(),
			&cli.Int64Flag{Name: "block-size", Value: nbdkernel.DefaultBlockSize,
				Usage: "expose `BYTES`-byte logical blocks: 512 (AoE's sector, as the aoe driver) or up to 4096"},
			&cli.IntFlag{Name: "connections", Value: 1, Usage: "hand the kernel `N` sockets (blk-mq queues)"},
			&cli.DurationFlag{Name: "wait", Value: defaultAttachWait,
				Usage: "wait `DUR` for the device to answer; 0 waits forever"},
			&cli.BoolFlag{Name: "json", Usage: "print the attached device as JSON instead of its path"},
			controlDirFlag(),
			metricsFlag(),
		),
	}
}

// detachCommand defines detach.
func detachCommand() *cli.Command {
	return &cli.Command{
		Name:      "detach",
		Usage:     "detach /dev/nbdN, whichever process attached it",
		ArgsUsage: "/dev/nbdN",
	}
}

// statCommand defines stat.
func statCommand() *cli.Command {
	return &cli.Command{
		Name:      "stat",
		Usage:     "show the devices and targets of running serve and attach processes",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of tables"},
			&cli.StringFlag{Name: "control", Usage: "ask only the control socket `PATH`"},
			&cli.StringFlag{Name: "control-dir", Value: defaultControlDir,
				Usage: "ask every control socket in `DIR`"},
		},
	}
}

// newApp returns the urfave/cli application. action runs with the parsed
// options of the command; it is not called when help or the version is
// shown.
func newApp(stdout, stderr io.Writer, action func(*cli.Context, invocation) error) *cli.App {
	return &cli.App{
		Name:      "ironaoe",
		Usage:     "userspace ATA over Ethernet initiator, exposing AoE devices through NBD and /dev/nbdN",
		Version:   version,
		Flags:     globalFlags(),
		Commands:  commands(action),
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors go back to run, which prints them and picks the exit
		// status; the library must not exit the process itself.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   cliflag.OnUsageError,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("unknown command %q", c.Args().First())
			}
			return errors.New("no command given: want discover, serve, attach, detach or stat")
		},
	}
}

// parseArgs parses a full command line (args[0] is the program name). It
// returns errHelpShown after printing the help or the version to stdout.
func parseArgs(args []string, stdout io.Writer) (invocation, error) {
	return cliflag.Parse(args, stdout, newApp)
}

// invocationFrom validates the parsed flags and operands of command name.
func invocationFrom(c *cli.Context, name string) (invocation, error) {
	inv := invocation{Command: name}
	var err error
	if inv.Global, err = globalOptionsFrom(c); err != nil {
		return inv, err
	}
	args := c.Args().Slice()
	switch name {
	case "discover":
		inv.Discover, err = discoverOptionsFrom(c, args)
	case "serve":
		inv.Serve, err = serveOptionsFrom(c, args)
	case "attach":
		inv.Attach, err = attachOptionsFrom(c, args)
	case "detach":
		inv.Detach, err = detachOptionsFrom(args)
	case "stat":
		inv.Stat, err = statOptionsFrom(c, args)
	}
	return inv, err
}

// discoverOptionsFrom validates discover's flags; it takes no operand.
func discoverOptionsFrom(c *cli.Context, args []string) (discoverOptions, error) {
	var o discoverOptions
	if err := noOperands(args); err != nil {
		return o, err
	}
	var err error
	if o.Engine, err = engineOptionsFrom(c); err != nil {
		return o, err
	}
	o.JSON = c.Bool("json")
	if o.Wait = c.Duration("wait"); o.Wait <= 0 {
		return o, fmt.Errorf("--wait %v: must be positive", o.Wait)
	}
	return o, nil
}

// serveOptionsFrom validates serve's flags and device operands. Without
// --unix or --tcp it listens on defaultTCP.
func serveOptionsFrom(c *cli.Context, args []string) (serveOptions, error) {
	var o serveOptions
	var err error
	if o.Engine, err = engineOptionsFrom(c); err != nil {
		return o, err
	}
	if o.Devices, err = parseDeviceNames(args); err != nil {
		return o, err
	}
	o.Unix, o.TCP = c.String("unix"), c.String("tcp")
	if c.IsSet("unix") && o.Unix == "" {
		return o, errors.New("--unix: empty socket path")
	}
	if c.IsSet("tcp") && o.TCP == "" {
		return o, errors.New("--tcp: empty address")
	}
	if o.Unix == "" && o.TCP == "" {
		o.TCP = defaultTCP
	}
	o.TCPAny = c.Bool("tcp-any")
	if o.TCP != "" {
		if err := checkTCPAddress(o.TCP, o.TCPAny); err != nil {
			return o, err
		}
	}
	o.ControlDir = c.String("control-dir")
	o.Metrics, err = metricsFrom(c)
	return o, err
}

// attachOptionsFrom validates attach's flags and its operands: a device
// and, optionally, the /dev/nbdN to attach it as.
func attachOptionsFrom(c *cli.Context, args []string) (attachOptions, error) {
	var o attachOptions
	var err error
	if o.Engine, err = engineOptionsFrom(c); err != nil {
		return o, err
	}
	if len(args) < 1 || len(args) > 2 {
		return o, errors.New("want a device and optionally /dev/nbdN: attach eSHELF.SLOT [/dev/nbdN]")
	}
	if o.Device, err = parseDeviceName(args[0]); err != nil {
		return o, err
	}
	o.Index = nbdkernel.AnyIndex
	if len(args) == 2 {
		if o.Index, err = nbdkernel.ParseDevice(args[1]); err != nil {
			return o, err
		}
	}
	switch o.BlockSize = c.Int64("block-size"); o.BlockSize {
	case 512, 1024, 2048, 4096:
	default:
		return o, fmt.Errorf("--block-size %d: want 512, 1024, 2048 or 4096", o.BlockSize)
	}
	if o.Connections = c.Int("connections"); o.Connections < 1 || o.Connections > nbdkernel.MaxConnections {
		return o, fmt.Errorf("--connections %d: want 1 to %d", o.Connections, nbdkernel.MaxConnections)
	}
	if o.Wait = c.Duration("wait"); o.Wait < 0 {
		return o, fmt.Errorf("--wait %v: must not be negative", o.Wait)
	}
	o.ControlDir = c.String("control-dir")
	o.JSON = c.Bool("json")
	o.Metrics, err = metricsFrom(c)
	return o, err
}

// detachOptionsFrom validates detach's one operand, /dev/nbdN.
func detachOptionsFrom(args []string) (detachOptions, error) {
	var o detachOptions
	if len(args) != 1 {
		return o, errors.New("want one device: detach /dev/nbdN")
	}
	var err error
	o.Index, err = nbdkernel.ParseDevice(args[0])
	return o, err
}

// statOptionsFrom validates stat's flags; it takes no operand.
func statOptionsFrom(c *cli.Context, args []string) (statOptions, error) {
	var o statOptions
	if err := noOperands(args); err != nil {
		return o, err
	}
	o.JSON = c.Bool("json")
	o.Control, o.ControlDir = c.String("control"), c.String("control-dir")
	if o.Control == "" && o.ControlDir == "" {
		return o, errors.New("--control-dir: empty directory name (or give --control PATH)")
	}
	return o, nil
}

// noOperands refuses operands for a command that takes none.
func noOperands(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected operand %q", args[0])
	}
	return nil
}

// globalOptionsFrom reads --log-level and --log-format.
func globalOptionsFrom(c *cli.Context) (globalOptions, error) {
	logOpts, err := clilog.OptionsFrom(c)
	if err != nil {
		return globalOptions{}, err
	}
	return globalOptions{LogLevel: logOpts.Level, LogLevelSet: c.IsSet(clilog.LevelFlag), LogFormat: logOpts.Format}, nil
}

// engineOptionsFrom reads the interfaces and the initiator's tunables.
func engineOptionsFrom(c *cli.Context) (engineOptions, error) {
	var e engineOptions
	for _, name := range c.StringSlice("interface") {
		if name = strings.TrimSpace(name); name == "" {
			return e, errors.New("--interface: empty interface name")
		}
		e.Interfaces = append(e.Interfaces, name)
	}
	vlan := c.Uint("vlan")
	if vlan > rawlink.MaxVLAN {
		return e, fmt.Errorf("--vlan %d: want a VLAN ID from 1 to %d, or 0 for untagged: %w", vlan, rawlink.MaxVLAN, rawlink.ErrInvalidVLAN)
	}
	e.VLAN = uint16(vlan)
	keys, err := parseAuthKeys(c.StringSlice("auth-key"))
	if err != nil {
		return e, err
	}
	e.AuthKeys = keys
	if e.AuthEncrypt = c.Bool("auth-encrypt"); e.AuthEncrypt && len(keys) == 0 {
		return e, errors.New("--auth-encrypt: needs --auth-key")
	}
	cfg := &e.Config
	for _, d := range durationTunables() {
		dst := d.field(cfg)
		if *dst = c.Duration(d.flag); *dst <= 0 {
			return e, fmt.Errorf("--%s %v: must be positive", d.flag, *dst)
		}
	}
	if cfg.RTOMin > cfg.RTOMax {
		return e, fmt.Errorf("--rto-min %v is above --rto-max %v", cfg.RTOMin, cfg.RTOMax)
	}
	switch cfg.DeadTimeout = c.Duration("dead-timeout"); {
	case cfg.DeadTimeout < 0:
		return e, fmt.Errorf("--dead-timeout %v: must not be negative (0 retries forever)", cfg.DeadTimeout)
	case cfg.DeadTimeout == 0:
		cfg.DeadTimeout = -1 // the initiator's "forever"
	}
	if cfg.MaxWindow = c.Int("max-window"); cfg.MaxWindow < 1 {
		return e, fmt.Errorf("--max-window %d: must be 1 or more", cfg.MaxWindow)
	}
	switch p := initiator.Policy(c.String("policy")); p {
	case initiator.PolicyFailover, initiator.PolicyMultipath:
		cfg.Policy = p
	default:
		return e, fmt.Errorf("--policy %q: want failover or multipath", p)
	}
	return e, nil
}

// checkTCPAddress refuses a TCP listening address that is malformed, or
// that is not on a loopback interface unless allowAny is set: NBD has neither
// authentication nor encryption here, so exposing a disk to the network
// must be asked for explicitly.
func checkTCPAddress(addr string, allowAny bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--tcp %q: want HOST:PORT, such as %s: %w", addr, defaultTCP, err)
	}
	if allowAny {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--tcp %q: not a loopback address; NBD has no authentication, so anyone who can "+
		"reach it could read and overwrite the disks: add --tcp-any to listen there anyway", addr)
}
