package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/internal/netlab"
)

// Paths a byte can take in MeasureNBD.
const (
	// PathRaw is the load generator speaking AoE on the wire itself.
	PathRaw = "raw"
	// PathNBD is nbdcopy through `ironaoe serve --unix`.
	PathNBD = "nbd"
)

// NBDAim is the share of the raw AoE throughput that the initiator should
// reach through NBD.
const NBDAim = 0.70

// NBDConfig configures MeasureNBD. Zero fields get the defaults noted.
type NBDConfig struct {
	// Ironblade and Ironaoe are the paths of the binaries. Ironaoe is
	// always required; Ironblade when Targets includes it.
	Ironblade, Ironaoe string
	// Vblade is the path of vblade; default /usr/sbin/vblade.
	Vblade string
	// Nbdcopy and Nbdinfo are the libnbd tools; default: found in PATH.
	Nbdcopy, Nbdinfo string
	// Targets lists the target programs measured: "ironblade", "vblade";
	// default ironblade only.
	Targets []string
	// MTUs of the veth pair; default 1500, 9000.
	MTUs []int
	// QueueDepths of the raw passes; default 16, 64. The fastest one is
	// what the NBD path is held against.
	QueueDepths []int
	// Size is the export's size and the amount each pass moves; default
	// 256 MiB.
	Size int64
	// Repeat is how many rounds of every pass are run, raw and NBD
	// passes taking turns, so that load from elsewhere falls on both;
	// the report takes the median of each. Default 1.
	Repeat int
	// Dir holds the target's backing file; default /var/tmp, on disk.
	Dir string
	// SourceDir holds the random file nbdcopy copies in; default
	// /dev/shm, so that reading it costs no disk I/O.
	SourceDir string
	// Warm keeps the page cache between passes. By default every pass
	// starts with the target's file written back and the caches dropped
	// (echo 3 > /proc/sys/vm/drop_caches), so that each finds the file
	// on disk alone.
	Warm bool
	// MinTimeout is the raw generator's least retransmission timeout; 0
	// means DefaultMinTimeout.
	MinTimeout time.Duration
	// Progress, if set, gets a line per pass as it finishes.
	Progress io.Writer
}

// withDefaults returns c with its zero fields set to the defaults.
func (c NBDConfig) withDefaults() NBDConfig {
	c.Vblade = cmp.Or(c.Vblade, DefaultVblade)
	c.Nbdcopy = cmp.Or(c.Nbdcopy, "nbdcopy")
	c.Nbdinfo = cmp.Or(c.Nbdinfo, "nbdinfo")
	c.Targets = orDefault(c.Targets, []string{"ironblade"})
	c.MTUs = orDefault(c.MTUs, defaultMTUs())
	c.QueueDepths = orDefault(c.QueueDepths, []int{16, 64})
	c.Size = cmp.Or(c.Size, defaultFileSize)
	// Only 0 means the default: a negative Repeat is an error.
	c.Repeat = cmp.Or(c.Repeat, 1)
	c.Dir = cmp.Or(c.Dir, DefaultDir)
	c.SourceDir = cmp.Or(c.SourceDir, "/dev/shm")
	c.MinTimeout = cmp.Or(c.MinTimeout, DefaultMinTimeout)
	return c
}

// NBDCell is one timed pass over the whole export.
type NBDCell struct {
	Target string `json:"target"`
	MTU    int    `json:"mtu"`
	// Run counts the rounds from 0.
	Run int    `json:"run"`
	Op  string `json:"op"`
	// Path is PathRaw or PathNBD.
	Path string `json:"path"`
	// QueueDepth is the raw generator's; 0 for NBD passes.
	QueueDepth int     `json:"queue_depth,omitempty"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	MBps       float64 `json:"mb_per_s"`
	// FlushSeconds is the part of a raw write spent in its final FLUSH
	// CACHE (an NBD write's nbdcopy --flush is inside Seconds too).
	FlushSeconds float64 `json:"flush_seconds,omitempty"`
	// Retransmits counts the frames the raw generator, or ironaoe,
	// sent again.
	Retransmits uint64 `json:"retransmits,omitempty"`
	// TargetCPU, InitiatorCPU and NbdcopyCPU are the CPU seconds (user
	// and system) the pass cost the target, the initiator (the raw
	// generator, or ironaoe serve) and nbdcopy. The kernel charges the
	// veth pair's work to whichever of them is running, so they are
	// approximate; their sum against Seconds shows how busy the CPUs were.
	TargetCPU    float64 `json:"target_cpu_seconds"`
	InitiatorCPU float64 `json:"initiator_cpu_seconds"`
	NbdcopyCPU   float64 `json:"nbdcopy_cpu_seconds,omitempty"`
	// Error says why the pass has no figures.
	Error string `json:"error,omitempty"`
}

// NBDReport is the outcome of MeasureNBD.
type NBDReport struct {
	Started    time.Time `json:"started"`
	Size       int64     `json:"size"`
	Repeat     int       `json:"repeat"`
	Dir        string    `json:"dir"`
	FileSystem string    `json:"filesystem"`
	SourceDir  string    `json:"source_dir"`
	// Cache is "cold" (caches dropped before each pass) or "warm".
	Cache     string `json:"cache"`
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	Ironblade string `json:"ironblade,omitempty"`
	Ironaoe   string `json:"ironaoe"`
	Vblade    string `json:"vblade,omitempty"`
	Nbdcopy   string `json:"nbdcopy"`
	// LoadBefore and LoadAfter are /proc/loadavg at the start and the
	// end: other work on the machine skews the figures.
	LoadBefore string    `json:"load_before"`
	LoadAfter  string    `json:"load_after"`
	Cells      []NBDCell `json:"cells"`
}

// nbdTarget is a target program and its command line.
type nbdTarget struct {
	name, path string
	args       []string // before "1 0 IFACE FILE"
}

// nbdEnv is what every pass of a MeasureNBD shares.
type nbdEnv struct {
	cfg     NBDConfig
	rep     *NBDReport
	tgt     *netlab.Netns
	cli     *netlab.Netns
	veth    *netlab.Veth
	source  string // the random file nbdcopy copies in
	sockDir string // where ironaoe serve's socket goes
}

// MeasureNBD measures, for each MTU and target program, how fast the whole
// export moves over a veth pair between two network namespaces it creates
// (and removes): written then read by the raw load generator at each
// queue depth, then copied in (nbdcopy --flush FILE URI) and out (nbdcopy
// URI null:) through a fresh `ironaoe serve --unix` per direction. The
// target serves a file in Dir, written in full once, and is started afresh
// for every pass. It needs root. A pass that fails keeps its error and the
// run goes on; MeasureNBD fails only if it cannot set up or ctx ends.
func MeasureNBD(ctx context.Context, cfg NBDConfig) (*NBDReport, error) {
	cfg, targets, err := checkNBD(cfg.withDefaults())
	if err != nil {
		return nil, err
	}
	rep := newNBDReport(cfg, targets)
	defer func() { rep.LoadAfter = loadAverage() }()
	env := &nbdEnv{cfg: cfg, rep: rep}
	return env.run(ctx, targets)
}

// checkNBD checks cfg, with its defaults, before anything is set up: the
// limits, the programs (it returns cfg with the tools' full paths, and
// how to start the targets) and the directories (which it creates).
func checkNBD(cfg NBDConfig) (NBDConfig, []nbdTarget, error) {
	if os.Geteuid() != 0 {
		return cfg, nil, errors.New("bench: nbd: needs root (network namespaces, raw sockets, drop_caches)")
	}
	if cfg.Size < 1<<20 || cfg.Size%aoe.SectorSize != 0 {
		return cfg, nil, fmt.Errorf("bench: nbd: size %d: want at least 1 MiB of whole sectors", cfg.Size)
	}
	if cfg.Repeat < 1 {
		return cfg, nil, fmt.Errorf("bench: nbd: repeat %d: want at least 1", cfg.Repeat)
	}
	targets, err := nbdTargets(cfg)
	if err != nil {
		return cfg, nil, err
	}
	for _, tool := range []*string{&cfg.Nbdcopy, &cfg.Nbdinfo, &cfg.Ironaoe} {
		p, err := exec.LookPath(*tool)
		if err != nil {
			return cfg, nil, fmt.Errorf("bench: nbd: %w", err)
		}
		*tool = p
	}
	for _, d := range []string{cfg.Dir, cfg.SourceDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return cfg, nil, fmt.Errorf("bench: nbd: %w", err)
		}
	}
	return cfg, targets, nil
}

// newNBDReport starts the report of a MeasureNBD run: the conditions and
// the programs' versions.
func newNBDReport(cfg NBDConfig, targets []nbdTarget) *NBDReport {
	rep := &NBDReport{Started: time.Now().UTC(), Size: cfg.Size, Repeat: cfg.Repeat, Dir: cfg.Dir, FileSystem: fileSystem(cfg.Dir),
		SourceDir: cfg.SourceDir, Cache: "cold", Kernel: kernel(), CPUs: runtime.NumCPU(),
		Ironaoe: programVersion(cfg.Ironaoe, "--version"), Nbdcopy: programVersion(cfg.Nbdcopy, "--version"),
		LoadBefore: loadAverage()}
	if cfg.Warm {
		rep.Cache = "warm"
	}
	for _, t := range targets {
		switch t.name {
		case "ironblade":
			rep.Ironblade = programVersion(t.path, "--version")
		case "vblade":
			rep.Vblade = debianVersion("vblade", t.path)
		}
	}
	return rep
}

// run sets up the source file, the namespaces and the veth pair, then
// measures every target at every MTU into env.rep; it returns the report
// once the measuring has begun.
func (env *nbdEnv) run(ctx context.Context, targets []nbdTarget) (*NBDReport, error) {
	cfg := env.cfg
	var err error
	if env.source, err = randomFile(cfg.SourceDir, cfg.Size); err != nil {
		return nil, fmt.Errorf("bench: nbd: source file: %w", err)
	}
	defer os.Remove(env.source)
	if env.sockDir, err = os.MkdirTemp("", "ironbench-nbd-"); err != nil {
		return nil, fmt.Errorf("bench: nbd: %w", err)
	}
	defer os.RemoveAll(env.sockDir)
	if env.tgt, err = netlab.New("ibn-tgt"); err != nil {
		return nil, err
	}
	defer env.tgt.Close()
	if env.cli, err = netlab.New("ibn-cli"); err != nil {
		return nil, err
	}
	defer env.cli.Close()
	if env.veth, err = netlab.NewVeth(env.tgt, env.cli, 0); err != nil {
		return nil, err
	}
	for _, mtu := range cfg.MTUs {
		if err := env.veth.SetMTU(mtu); err != nil {
			return env.rep, err
		}
		if err := env.veth.WaitReady(5 * time.Second); err != nil {
			return env.rep, err
		}
		for _, t := range targets {
			env.measureTarget(ctx, t, mtu)
			if err := ctx.Err(); err != nil {
				return env.rep, fmt.Errorf("bench: nbd: %w", err)
			}
		}
	}
	return env.rep, nil
}

// nbdTargets checks cfg.Targets and returns how to start each.
func nbdTargets(cfg NBDConfig) ([]nbdTarget, error) {
	if len(cfg.Targets) == 0 {
		return nil, errors.New("bench: nbd: no target program to measure")
	}
	var out []nbdTarget
	for _, name := range cfg.Targets {
		var t nbdTarget
		switch name {
		case "ironblade":
			t = nbdTarget{name: name, path: cfg.Ironblade, args: []string{"--log-level", "warn"}}
		case "vblade":
			t = nbdTarget{name: name, path: cfg.Vblade}
		default:
			return nil, fmt.Errorf("bench: nbd: target %q: want ironblade or vblade", name)
		}
		if t.path == "" {
			return nil, fmt.Errorf("bench: nbd: no path for %s", name)
		}
		if _, err := os.Stat(t.path); err != nil {
			return nil, fmt.Errorf("bench: nbd: %s: %w", name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// measureTarget runs every round of passes of one target program at one
// MTU on a fresh backing file, and adds the cells to the report.
func (env *nbdEnv) measureTarget(ctx context.Context, t nbdTarget, mtu int) {
	cfg := env.cfg
	var rounds [][]NBDCell
	for run := range cfg.Repeat {
		var cells []NBDCell
		cell := func(op Op, path string, qd int) NBDCell {
			return NBDCell{Target: t.name, MTU: mtu, Run: run, Op: op.String(), Path: path, QueueDepth: qd}
		}
		for _, op := range []Op{Write, Read} {
			for _, qd := range cfg.QueueDepths {
				cells = append(cells, cell(op, PathRaw, qd))
			}
		}
		rounds = append(rounds, append(cells, cell(Write, PathNBD, 0), cell(Read, PathNBD, 0)))
	}

	file, err := filledFile(cfg.Dir, cfg.Size)
	if err != nil {
		for _, cells := range rounds {
			env.failAll(cells, fmt.Errorf("backing file: %w", err))
		}
		return
	}
	defer os.Remove(file)
	for _, cells := range rounds {
		for _, c := range cells {
			if ctx.Err() != nil {
				return
			}
			if err := env.pass(ctx, t, file, &c); err != nil {
				c.Error = err.Error()
			}
			env.add(c)
		}
	}
}

// pass measures one cell with a fresh target process: the kernel keeps a
// file's readahead state with the open file, so a target that had read the
// file through once would read it faster the next time, cache dropped or
// not.
func (env *nbdEnv) pass(ctx context.Context, t nbdTarget, file string, c *NBDCell) error {
	if err := env.prepare(); err != nil {
		return err
	}
	proc, err := startIn(env.tgt, t.name, t.path, slices.Concat(t.args, []string{"1", "0", env.veth.IfA, file})...)
	if err != nil {
		return err
	}
	defer proc.stop()
	op, err := ParseOp(c.Op)
	if err != nil {
		return err
	}
	if c.Path == PathRaw {
		err = env.rawPass(ctx, proc, op, c)
	} else {
		err = env.nbdPass(ctx, proc, op, c)
	}
	if err != nil {
		return err
	}
	return proc.stop()
}

// failAll records every cell as failed with err.
func (env *nbdEnv) failAll(cells []NBDCell, err error) {
	for _, c := range cells {
		c.Error = err.Error()
		env.add(c)
	}
}

// add records a finished cell and reports it.
func (env *nbdEnv) add(c NBDCell) {
	env.rep.Cells = append(env.rep.Cells, c)
	if env.cfg.Progress != nil {
		fmt.Fprintln(env.cfg.Progress, c.summary())
	}
}

// summary is the progress line of a cell.
func (c NBDCell) summary() string {
	how := "via NBD"
	if c.Path == PathRaw {
		how = fmt.Sprintf("raw QD %d", c.QueueDepth)
	}
	head := fmt.Sprintf("%-9s MTU %4d #%d %-5s %-9s:", c.Target, c.MTU, c.Run+1, c.Op, how)
	if c.Error != "" {
		return head + " FAILED: " + c.Error
	}
	s := fmt.Sprintf("%s %8.1f MB/s  %6.2f s", head, c.MBps, c.Seconds)
	if c.FlushSeconds > 0 {
		s += fmt.Sprintf(" (flush %.2f s)", c.FlushSeconds)
	}
	s += fmt.Sprintf("  CPU s: target %.2f, initiator %.2f", c.TargetCPU, c.InitiatorCPU)
	if c.Path == PathNBD {
		s += fmt.Sprintf(", nbdcopy %.2f", c.NbdcopyCPU)
	}
	return s + fmt.Sprintf("  %d retransmits", c.Retransmits)
}

// rawPass writes or reads the export with the raw generator and fills in
// c.
func (env *nbdEnv) rawPass(ctx context.Context, target *process, op Op, c *NBDCell) error {
	// The link is closed before any NBD pass: an open packet socket would
	// be handed a copy of every frame ironaoe moves, at a cost to it.
	link, err := env.cli.Listen(env.veth.IfB, generatorLink())
	if err != nil {
		return err
	}
	defer link.Close()
	dev, err := identifyTarget(ctx, link)
	if err != nil {
		return target.said(err)
	}
	tcpu, icpu := meterProcess(target.cmd.Process.Pid), meterSelf()
	res, err := Stream(ctx, link, dev, StreamOptions{Op: op, QueueDepth: c.QueueDepth, Bytes: env.cfg.Size,
		Flush: op == Write, MinTimeout: env.cfg.MinTimeout})
	c.TargetCPU, c.InitiatorCPU = tcpu.seconds(), icpu.seconds()
	if res != nil {
		c.Bytes, c.Seconds, c.MBps = res.Bytes, res.Elapsed.Seconds(), res.MBps()
		c.FlushSeconds, c.Retransmits = res.FlushTime.Seconds(), res.Retransmits
	}
	if err != nil {
		return target.said(err)
	}
	return nil
}

// nbdPass copies the export in or out with nbdcopy through a fresh
// `ironaoe serve` and fills in c.
func (env *nbdEnv) nbdPass(ctx context.Context, target *process, op Op, c *NBDCell) error {
	cfg := env.cfg
	sock := filepath.Join(env.sockDir, "nbd.sock")
	_ = os.Remove(sock)
	control := filepath.Join(env.sockDir, "control")
	serve, err := startIn(env.cli, "ironaoe serve", cfg.Ironaoe, "--log-level", "warn", "serve",
		"-i", env.veth.IfB, "--unix", sock, "--control-dir", control, "e1.0")
	if err != nil {
		return err
	}
	defer serve.stop()
	uri := "nbd+unix:///e1.0?socket=" + sock
	if err := env.waitExport(ctx, serve, uri); err != nil {
		return err
	}
	// Load nbdcopy's pages, which a dropped cache has to read from disk,
	// before the clock starts.
	_, _ = env.cli.Command(ctx, cfg.Nbdcopy, "--version").Output()

	args := []string{uri, "null:"}
	if op == Write {
		args = []string{"--flush", env.source, uri}
	}
	cmd := env.cli.Command(ctx, cfg.Nbdcopy, args...)
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	tcpu, icpu := meterProcess(target.cmd.Process.Pid), meterProcess(serve.cmd.Process.Pid)
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)
	c.TargetCPU, c.InitiatorCPU = tcpu.seconds(), icpu.seconds()
	if ps := cmd.ProcessState; ps != nil {
		c.NbdcopyCPU = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	if err != nil {
		return fmt.Errorf("nbdcopy %s: %w; it said: %s; ironaoe said: %s; %s said: %s",
			strings.Join(args, " "), err, out.String(), serve.out.String(), target.name, target.out.String())
	}
	c.Bytes, c.Seconds, c.MBps = cfg.Size, elapsed.Seconds(), megabytesPerSecond(cfg.Size, elapsed)
	// Only a figure for the report: a pass without it still counts.
	c.Retransmits, _ = env.initiatorRetransmits(ctx, control)
	if err := serve.stop(); err != nil {
		return fmt.Errorf("after the copy: %w", err)
	}
	return nil
}

// initiatorRetransmits asks the ironaoe process answering in the control
// directory how many frames it has sent again.
func (env *nbdEnv) initiatorRetransmits(ctx context.Context, control string) (uint64, error) {
	out, err := env.cli.Command(ctx, env.cfg.Ironaoe, "stat", "--json", "--control-dir", control).Output()
	if err != nil {
		return 0, fmt.Errorf("ironaoe stat: %w", err)
	}
	return parseRetransmits(out)
}

// exportWait bounds the wait for ironaoe serve to export the device.
const exportWait = 20 * time.Second

// waitExport waits until serve answers on uri with the export's size.
func (env *nbdEnv) waitExport(ctx context.Context, serve *process, uri string) error {
	deadline := time.Now().Add(exportWait)
	var last string
	for {
		out, err := env.cli.Command(ctx, env.cfg.Nbdinfo, "--size", uri).CombinedOutput()
		if err == nil {
			size, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if perr == nil && size == env.cfg.Size {
				return nil
			}
			return fmt.Errorf("export %s: size %q, want %d", uri, strings.TrimSpace(string(out)), env.cfg.Size)
		}
		last = strings.TrimSpace(string(out))
		select {
		case <-serve.exited:
			return fmt.Errorf("ironaoe serve exited: %s", serve.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no export at %s within %v: nbdinfo said %q; ironaoe said: %s", uri, exportWait, last, serve.out.String())
		}
	}
}

// prepare starts a pass: it writes the target's filesystem back and, unless
// the run is warm, drops the page cache, so that every pass finds the file
// where the last one left it: on disk.
func (env *nbdEnv) prepare() error {
	if err := syncFS(env.cfg.Dir); err != nil {
		return err
	}
	if env.cfg.Warm {
		return nil
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}
