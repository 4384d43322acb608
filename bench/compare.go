package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/netlab"
)

// CompareConfig configures Compare. Zero fields get the defaults noted.
type CompareConfig struct {
	// Ironblade is the path of the ironblade binary. Required.
	Ironblade string
	// Vblade is the path of vblade; default /usr/sbin/vblade.
	Vblade string
	// Dir holds the backing files; default /var/tmp. Sync mode (-s) is
	// only meaningful on a disk filesystem: on tmpfs fdatasync is a no-op.
	Dir string
	// Size is each backing file's size in bytes; default 256 MiB.
	Size int64
	// Cold leaves the fresh sparse backing file of each read cell out of
	// the page cache, so that reads find unwritten blocks and the first
	// read of each page has the kernel allocate and zero a page cache
	// page. By default a read cell's file is read through once before its
	// target starts, so that the cells measure the targets rather than
	// the page cache filling up: on a virtual machine whose memory the
	// host backs lazily, filling a page can cost a host page fault, and
	// the kernel's read-ahead decides how many pages each target has it
	// fill (at QD 1 it filled about twice as many for ironblade). Write
	// cells start cold either way: a file read through is cached in large
	// folios, and a 1 KiB write then dirties a whole folio (9% and 7% of
	// the link's IOPS for ironblade and vblade at QD 16, MTU 1500).
	Cold bool
	// Duration is how long each cell is measured; default 3 s. Warmup
	// runs before it; default 300 ms.
	Duration, Warmup time.Duration
	// QueueDepths, MTUs, Ops and SyncModes span the cells; defaults
	// 1,16,64; 1500,9000; read,write; without and with -s.
	QueueDepths []int
	MTUs        []int
	Ops         []Op
	SyncModes   []bool
	// MinTimeout is the generator's least retransmission timeout; 0
	// means DefaultMinTimeout.
	MinTimeout time.Duration
	// Repeat is how many rounds of each cell are measured, the targets
	// taking turns (in the opposite order every other round, so that a
	// drift in the machine's load falls on both alike); the report takes
	// each target's median cell by IOPS. Default 1.
	Repeat int
	// PinModes are the ways each cell is measured: pinned (true), the
	// target on one CPU (the highest this process may use) and the
	// generator on the others, so that neither steals the other's CPU and
	// each target's own cost decides its throughput (it needs two CPUs and
	// taskset); and unpinned (false), both where the scheduler puts them.
	// Default unpinned only; Compare's default is DefaultPinModes.
	PinModes []bool
	// Responder, if set, is the ironbench binary, whose hidden responder
	// subcommand (Respond) answers at once without storage: Compare
	// measures it like a target in every cell without -s, as the ceiling
	// the link and the generator allow.
	Responder string
	// Encrypt, for CompareAuth only, has the sealed target require the
	// AES-256-GCM suite (ironblade --auth-encrypt) and the generator ask
	// for it, instead of HMAC-SHA256 alone.
	Encrypt bool
	// Progress, if set, gets a line per cell as it finishes.
	Progress io.Writer
}

// withDefaults returns c with its zero fields set to the defaults.
func (c CompareConfig) withDefaults() CompareConfig {
	c.Vblade = cmp.Or(c.Vblade, DefaultVblade)
	c.Dir = cmp.Or(c.Dir, DefaultDir)
	c.Size = cmp.Or(c.Size, defaultFileSize)
	c.Duration = cmp.Or(c.Duration, 3*time.Second)
	c.Warmup = cmp.Or(c.Warmup, 300*time.Millisecond)
	c.QueueDepths = orDefault(c.QueueDepths, []int{1, 16, 64})
	c.MTUs = orDefault(c.MTUs, defaultMTUs())
	c.Ops = orDefault(c.Ops, []Op{Read, Write})
	c.SyncModes = orDefault(c.SyncModes, []bool{false, true})
	c.PinModes = orDefault(c.PinModes, []bool{false})
	c.MinTimeout = cmp.Or(c.MinTimeout, DefaultMinTimeout)
	c.Repeat = max(c.Repeat, 1)
	return c
}

// Cell is one measurement: one target, MTU, mode, operation and queue
// depth.
type Cell struct {
	Target     string `json:"target"`
	MTU        int    `json:"mtu"`
	Sync       bool   `json:"sync"`
	Op         string `json:"op"`
	QueueDepth int    `json:"queue_depth"`
	// Pinned says the target and the generator ran on CPUs of their own.
	Pinned bool `json:"pinned,omitempty"`
	// Round counts the cell's rounds from 0, when it has several.
	Round int `json:"round,omitempty"`
	// DiskCeiling is, for a -s write cell, the disk's rate with as many
	// writes per fdatasync as the queue depth, measured just before the
	// cell's round: what it is read against, since the disk's speed
	// drifts over a run.
	DiskCeiling float64 `json:"disk_ceiling_writes_per_s,omitempty"`
	// SectorsPerFrame and BufferCount are what the target advertised.
	SectorsPerFrame int     `json:"sectors_per_frame"`
	BufferCount     int     `json:"buffer_count"`
	MBps            float64 `json:"mb_per_s"`
	IOPS            float64 `json:"iops"`
	P50us           float64 `json:"p50_us"`
	P99us           float64 `json:"p99_us"`
	Retransmits     uint64  `json:"retransmits"`
	Abandoned       uint64  `json:"abandoned"`
	// TargetCPU and GeneratorCPU are the CPUs the target process and
	// the load generator kept busy in the measured window (1 is one CPU
	// throughout), and MachineBusy the busy share of all CPUs: a target
	// near 1 CPU with the machine not saturated is bound by its own CPU.
	TargetCPU    float64 `json:"target_cpus"`
	GeneratorCPU float64 `json:"generator_cpus"`
	MachineBusy  float64 `json:"machine_busy"`
	// Seal is the generator's sealing layer's counters, in sealed cells.
	Seal *SealCounts `json:"seal,omitempty"`
	// Error says why the cell has no figures.
	Error string `json:"error,omitempty"`
}

// Report is the outcome of Compare: the cells and the conditions they
// were measured in.
type Report struct {
	// Kind is what was compared: "" for ironblade against vblade,
	// KindAuth for ironblade sealed against plain (CompareAuth).
	Kind       string    `json:"kind,omitempty"`
	Started    time.Time `json:"started"`
	CellTime   string    `json:"cell_duration"`
	Warmup     string    `json:"warmup"`
	MinTimeout string    `json:"min_retransmit_timeout"`
	// Repeat is the rounds of each cell; the tables show the median.
	Repeat     int    `json:"repeat,omitempty"`
	Dir        string `json:"dir"`
	FileSystem string `json:"filesystem"`
	FileSize   int64  `json:"file_size"`
	// ReadCache is "warm" if each read cell's backing file was read
	// through before the cell, "cold" if not (CompareConfig.Cold); empty
	// in a report from before the choice, whose read cells were cold.
	ReadCache string `json:"read_cache,omitempty"`
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	Ironblade string `json:"ironblade"`
	Vblade    string `json:"vblade,omitempty"`
	// Pinning says which CPUs target and generator ran on in the pinned
	// cells, and PinModes which cells were pinned (true) or not (false),
	// in the order measured. A report without PinModes predates them: its
	// cells were all pinned if Pinning is set.
	Pinning  string `json:"pinning,omitempty"`
	PinModes []bool `json:"pin_modes,omitempty"`
	// Responder names the program that answered the ceiling cells.
	Responder string `json:"responder,omitempty"`
	// AuthKey names the key of a KindAuth run's sealed cells, and
	// AuthSuite their suite.
	AuthKey   string `json:"auth_key,omitempty"`
	AuthSuite string `json:"auth_suite,omitempty"`
	// LoadBefore and LoadAfter are /proc/loadavg at the start and the
	// end: other work on the machine skews the figures.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
	// Ceilings is what the disk allows sync-before-ack writes at each
	// MTU's frame size, when -s cells are measured.
	Ceilings []SyncCeiling `json:"disk_ceilings,omitempty"`
	Cells    []Cell        `json:"cells"`
}

// targetSpec is a target program and how to start it.
type targetSpec struct {
	name string
	path string
	args func(sync bool, iface, file string) []string
	// wrap, if set, puts a layer (sealing) on the generator's link for
	// this target's cells, from discovery on; done, if set, gets that
	// link and the cell after the run, to add the layer's figures.
	wrap func(Link) (Link, error)
	done func(Link, *Cell) error
	// diskless targets need no backing file and have no -s mode.
	diskless bool
}

// ironbladeSpec is ironblade as the target named name, exporting shelf 1
// slot 0, with extra flags before its arguments.
func ironbladeSpec(name, path string, extra ...string) targetSpec {
	return targetSpec{name: name, path: path, args: func(sync bool, iface, file string) []string {
		a := append([]string{"--log-level", "warn"}, extra...)
		if sync {
			a = append(a, "-s")
		}
		return append(a, "1", "0", iface, file)
	}}
}

// responderSpec is `ironbench responder` at path as the target named
// TargetCeiling, answering as shelf 1 slot 0 with the capacity of a
// size-byte file.
func responderSpec(path string, size int64) targetSpec {
	sectors := strconv.FormatInt(size/aoe.SectorSize, 10)
	return targetSpec{name: TargetCeiling, path: path, diskless: true, args: func(_ bool, iface, _ string) []string {
		return []string{"responder", "--shelf", "1", "--slot", "0", "--sectors", sectors, iface}
	}}
}

// generatorLink configures the load generator's link on a bench's veth
// pair: buffers large enough that no burst of answers overflows, and a
// receive ring no larger than that (2 MiB, from a 512 KiB ReadBuffer: 224
// jumbo frames, for queue depths up to 64), since the target's CPU pays a
// cache miss per answer it delivers into a ring larger than the caches (16
// MiB made its CPU per request 20-25% higher; docs/performance.md).
func generatorLink() rawlink.Config {
	return rawlink.Config{ReadBuffer: 512 << 10, WriteBuffer: 16 << 20}
}

// compareEnv is what every cell of a Compare shares.
type compareEnv struct {
	cfg  CompareConfig
	tgt  *netlab.Netns
	veth *netlab.Veth
	link *rawlink.Link
	// pin splits the CPUs for the pinned cells; nil if none is.
	pin *pinning
	// pinned says the generator is pinned now.
	pinned bool
}

// Compare measures ironblade and vblade over a veth pair between two
// network namespaces it creates (and removes), with the same load
// generator, cell by cell: each on a fresh sparse file, the two targets
// one after the other, and then the responder if cfg.Responder is set. By
// default it measures each cell pinned and unpinned where it can pin
// (DefaultPinModes). It needs root. A cell that fails keeps its error and
// the run goes on; Compare fails only if it cannot set up or ctx ends.
func Compare(ctx context.Context, cfg CompareConfig) (*Report, error) {
	if cfg.PinModes == nil {
		var why error
		cfg.PinModes, why = DefaultPinModes()
		if why != nil && cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "not pinning: %v\n", why)
		}
	}
	cfg = cfg.withDefaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: compare: needs root (network namespaces, raw sockets)")
	}
	specs := []targetSpec{
		ironbladeSpec("ironblade", cfg.Ironblade),
		{name: "vblade", path: cfg.Vblade, args: func(sync bool, iface, file string) []string {
			var a []string
			if sync {
				a = append(a, "-s")
			}
			return append(a, "1", "0", iface, file)
		}},
	}
	if cfg.Responder != "" {
		specs = append(specs, responderSpec(cfg.Responder, cfg.Size))
	}
	for _, s := range specs {
		if _, err := os.Stat(s.path); err != nil {
			return nil, fmt.Errorf("bench: compare: %s: %w", s.name, err)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: compare: %w", err)
	}
	rep := newReport(cfg)
	rep.Vblade = debianVersion("vblade", cfg.Vblade)
	if cfg.Responder != "" {
		rep.Responder = programVersion(cfg.Responder, "--version")
	}
	defer func() { rep.LoadAfter = loadAverage() }()

	if err := measureCeilings(cfg, rep); err != nil {
		return nil, err
	}
	return rep, runCells(ctx, cfg, specs, rep)
}

// newReport starts the report of a run of cfg's cells: the conditions.
func newReport(cfg CompareConfig) *Report {
	return &Report{Started: time.Now().UTC(), CellTime: cfg.Duration.String(), Warmup: cfg.Warmup.String(),
		MinTimeout: cfg.MinTimeout.String(), Repeat: cfg.Repeat,
		Dir: cfg.Dir, FileSystem: fileSystem(cfg.Dir), FileSize: cfg.Size, ReadCache: readCache(cfg.Cold), Kernel: kernel(), CPUs: runtime.NumCPU(),
		Ironblade: programVersion(cfg.Ironblade, "--version"), LoadBefore: loadAverage()}
}

// readCache names the state a read cell's backing file starts in.
func readCache(cold bool) string {
	if cold {
		return "cold"
	}
	return "warm"
}

// DefaultPinModes returns the pinning modes Compare uses by default:
// pinned then unpinned where this process may use two CPUs and taskset is
// installed, else unpinned only, with the reason it cannot pin.
func DefaultPinModes() ([]bool, error) {
	if _, err := newPinning(); err != nil {
		return []bool{false}, err
	}
	return []bool{true, false}, nil
}

// runCells sets up the namespaces, the veth pair and, for pinned cells,
// the CPUs, then measures every cell of cfg for each of specs, the specs
// one after the other in each cell, into rep.
func runCells(ctx context.Context, cfg CompareConfig, specs []targetSpec, rep *Report) error {
	env := &compareEnv{cfg: cfg}
	rep.PinModes = cfg.PinModes
	if slices.Contains(cfg.PinModes, true) {
		var err error
		if env.pin, err = newPinning(); err != nil {
			return fmt.Errorf("bench: pin: %w", err)
		}
		defer env.setPinned(false)
		rep.Pinning = fmt.Sprintf("target on CPU %d, generator on CPU %s", env.pin.target, env.pin.genList)
	}
	var err error
	if env.tgt, err = netlab.New("ibb-tgt"); err != nil {
		return err
	}
	defer env.tgt.Close()
	cli, err := netlab.New("ibb-cli")
	if err != nil {
		return err
	}
	defer cli.Close()
	if env.veth, err = netlab.NewVeth(env.tgt, cli, 0); err != nil {
		return err
	}
	for _, mtu := range cfg.MTUs {
		if err := env.measureMTU(ctx, cli, mtu, specs, rep); err != nil {
			return err
		}
	}
	return nil
}

// measureCeilings measures the disk's ceiling for sync-before-ack writes
// at each MTU's frame size, with as many writes per sync as each queue
// depth keeps in flight, if any cell runs with -s.
func measureCeilings(cfg CompareConfig, rep *Report) error {
	if !slices.Contains(cfg.SyncModes, true) {
		return nil
	}
	d := ceilingDuration(cfg)
	for _, mtu := range cfg.MTUs {
		c, err := MeasureSyncCeiling(cfg.Dir, cfg.Size, mtu, aoe.SectorsPerFrame(mtu)*aoe.SectorSize, cfg.QueueDepths, d)
		if err != nil {
			return err
		}
		rep.Ceilings = append(rep.Ceilings, c)
		if cfg.Progress != nil {
			fmt.Fprintln(cfg.Progress, c.summary())
		}
	}
	return nil
}

// ceilingDuration is how long each figure of the disk's ceiling is
// measured: long enough to average out the disk's hiccups; the cells, not
// this, are what the run is for.
func ceilingDuration(cfg CompareConfig) time.Duration {
	return min(max(cfg.Duration/2, 200*time.Millisecond), time.Second)
}

// remeasureCeiling measures the disk's rate with key's queue depth of
// writes per sync again, beside a round of key's -s write cells, into
// rep's ceiling for key's MTU, and returns it (0 if the run measured no
// such ceiling).
func (env *compareEnv) remeasureCeiling(key CellKey, rep *Report) (float64, error) {
	for i := range rep.Ceilings {
		c := &rep.Ceilings[i]
		if c.MTU != key.MTU {
			continue
		}
		b := c.batch(key.QueueDepth)
		if b == nil {
			return 0, nil
		}
		rate, err := syncRate(env.cfg.Dir, env.cfg.Size, c.WriteBytes, key.QueueDepth, false, ceilingDuration(env.cfg))
		if err != nil {
			return 0, fmt.Errorf("bench: disk ceiling in %s: %w", env.cfg.Dir, err)
		}
		b.add(rate)
		if env.cfg.Progress != nil {
			fmt.Fprintf(env.cfg.Progress, "disk      MTU %4d -s ceiling again, %d per fdatasync: %.0f/s\n", key.MTU, key.QueueDepth, rate)
		}
		return rate, nil
	}
	return 0, nil
}

// measureMTU sets the veth pair's MTU and measures every cell at it.
func (env *compareEnv) measureMTU(ctx context.Context, cli *netlab.Netns, mtu int, specs []targetSpec, rep *Report) error {
	cfg := env.cfg
	if err := env.veth.SetMTU(mtu); err != nil {
		return err
	}
	if err := env.veth.WaitReady(5 * time.Second); err != nil {
		return err
	}
	// A link opened now starts with the new MTU; an older one might go on
	// reporting the old one for a moment and size requests by it.
	var err error
	if env.link, err = cli.Listen(env.veth.IfB, generatorLink()); err != nil {
		return fmt.Errorf("bench: compare: %w", err)
	}
	defer env.link.Close()
	for _, sync := range cfg.SyncModes {
		for _, op := range cfg.Ops {
			for _, qd := range cfg.QueueDepths {
				for _, pinned := range cfg.PinModes {
					key := CellKey{MTU: mtu, Sync: sync, Op: op.String(), QueueDepth: qd, Pinned: pinned}
					if err := env.measureKey(ctx, key, op, specs, rep); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// measureKey measures each of specs under key, cfg.Repeat times, the
// specs taking turns (in the opposite order every other round).
func (env *compareEnv) measureKey(ctx context.Context, key CellKey, op Op, specs []targetSpec, rep *Report) error {
	if err := env.setPinned(key.Pinned); err != nil {
		return err
	}
	for round := range env.cfg.Repeat {
		var diskCeiling float64
		if key.Sync && op == Write {
			var err error
			if diskCeiling, err = env.remeasureCeiling(key, rep); err != nil {
				return err
			}
		}
		for i := range specs {
			spec := specs[i]
			if round%2 == 1 {
				spec = specs[len(specs)-1-i]
			}
			if spec.diskless && key.Sync {
				continue
			}
			cell := env.runCell(ctx, spec, key, op)
			cell.Round, cell.DiskCeiling = round, diskCeiling
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("bench: compare: %w", err)
			}
			rep.Cells = append(rep.Cells, cell)
			if env.cfg.Progress != nil {
				fmt.Fprintln(env.cfg.Progress, cell.summary())
			}
		}
	}
	return nil
}

// setPinned pins the generator to its CPUs, or gives it back all of them.
func (env *compareEnv) setPinned(pinned bool) error {
	if pinned == env.pinned {
		return nil
	}
	var err error
	if pinned {
		err = env.pin.pin()
	} else {
		err = env.pin.unpin()
	}
	if err != nil {
		return fmt.Errorf("bench: pin: %w", err)
	}
	env.pinned = pinned
	return nil
}

// summary is the progress line of a cell.
func (c Cell) summary() string {
	mode := ""
	if c.Sync {
		mode = " -s"
	}
	head := fmt.Sprintf("%-9s MTU %4d%-3s %-5s QD %2d", c.Target, c.MTU, mode, c.Op, c.QueueDepth)
	if c.Pinned {
		head += " pinned"
	}
	if c.Round > 0 {
		head += fmt.Sprintf(" round %d", c.Round+1)
	}
	head += ":"
	if c.Error != "" {
		return head + " FAILED: " + c.Error
	}
	return fmt.Sprintf("%s %8.1f MB/s %8.0f IOPS  p50 %6.0f µs  p99 %7.0f µs  %d retransmits  CPU/req target %.2f µs, generator %.2f µs",
		head, c.MBps, c.IOPS, c.P50us, c.P99us, c.Retransmits, micros(c.CPUPerOp()), micros(c.GeneratorCPUPerOp()))
}

// CPUPerOp reports the target's CPU time per request in the measured
// window, or 0 if unknown.
func (c Cell) CPUPerOp() time.Duration {
	if c.IOPS <= 0 || c.TargetCPU <= 0 {
		return 0
	}
	return time.Duration(c.TargetCPU / c.IOPS * float64(time.Second))
}

// micros is d in microseconds.
func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// runCell measures one cell on a fresh file and a fresh target process.
func (env *compareEnv) runCell(ctx context.Context, spec targetSpec, key CellKey, op Op) Cell {
	cell := Cell{Target: spec.name, MTU: key.MTU, Sync: key.Sync, Op: key.Op, QueueDepth: key.QueueDepth, Pinned: key.Pinned}
	if err := env.measure(ctx, spec, &cell, op); err != nil {
		cell.Error = err.Error()
	}
	return cell
}

// measure does runCell's work; the figures go into cell.
func (env *compareEnv) measure(ctx context.Context, spec targetSpec, cell *Cell, op Op) error {
	var file string
	if !spec.diskless {
		var err error
		if file, err = sparseFile(env.cfg.Dir, env.cfg.Size, op == Read && !env.cfg.Cold); err != nil {
			return err
		}
		defer os.Remove(file)
	}
	target, err := env.startTarget(spec, cell.Sync, cell.Pinned, file)
	if err != nil {
		return err
	}
	defer target.stop()
	link := Link(env.link)
	if spec.wrap != nil {
		if link, err = spec.wrap(env.link); err != nil {
			return err
		}
	}
	if err := env.drive(ctx, link, target, cell, op); err != nil {
		return target.said(err)
	}
	if spec.done != nil {
		if err := spec.done(link, cell); err != nil {
			return target.said(err)
		}
	}
	if err := target.stop(); err != nil {
		return err
	}
	if spec.diskless {
		return nil
	}
	// Start the next cell with the page cache written back.
	return syncFS(env.cfg.Dir)
}

// startTarget starts spec's program on file, on the target's CPU if
// pinned.
func (env *compareEnv) startTarget(spec targetSpec, sync, pinned bool, file string) (*process, error) {
	path, args := spec.path, spec.args(sync, env.veth.IfA, file)
	if pinned {
		// taskset runs the target in its place: the pid stays the target's.
		path, args = "taskset", append([]string{"--cpu-list", strconv.Itoa(env.pin.target), spec.path}, args...)
	}
	return startIn(env.tgt, spec.name, path, args...)
}

// drive finds the target through link and runs the cell's workload on
// it, metering the CPU that target and generator use; the figures go into
// cell.
func (env *compareEnv) drive(ctx context.Context, link Link, target *process, cell *Cell, op Op) error {
	cfg := env.cfg
	// Through a sealing layer, discovery's first answer starts a
	// handshake and the authenticated answer comes a few milliseconds
	// later: WaitFor asks again until it does.
	dev, err := identifyTarget(ctx, link)
	if err != nil {
		return err
	}
	cell.SectorsPerFrame, cell.BufferCount = dev.SectorsPerFrame, dev.BufferCount
	stopMeter := make(chan struct{})
	defer close(stopMeter)
	window := meterWindow(target.cmd.Process.Pid, cfg.Warmup, cfg.Duration, stopMeter)
	res, err := Run(ctx, link, dev, Workload{Op: op, QueueDepth: cell.QueueDepth, Duration: cfg.Duration,
		Warmup: cfg.Warmup, Seed: uint64(cell.QueueDepth), MinTimeout: cfg.MinTimeout})
	if res != nil {
		cell.MBps, cell.IOPS = res.MBps(), res.IOPS()
		cell.P50us = float64(res.Percentile(50).Microseconds())
		cell.P99us = float64(res.Percentile(99).Microseconds())
		cell.Retransmits, cell.Abandoned = res.Retransmits, res.Abandoned
	}
	if err != nil {
		return err
	}
	w := <-window
	cell.TargetCPU, cell.GeneratorCPU, cell.MachineBusy = w.Target, w.Generator, w.Machine
	return nil
}

// identifyTarget waits up to 5 s for the target at shelf 1 slot 0, the
// one every bench starts, to answer discovery on link, then identifies it.
func identifyTarget(ctx context.Context, link Link) (Device, error) {
	dev, err := WaitFor(ctx, link, 1, 0, 5*time.Second)
	if err == nil {
		err = Identify(ctx, link, &dev)
	}
	return dev, err
}

// syncFS writes back the filesystem holding dir.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// fileSystem names the type of the filesystem holding dir.
func fileSystem(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("fs type %#x", st.Type)
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// kernel returns the kernel's release.
func kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// programVersion runs path with a version flag and returns the first line.
func programVersion(path, flag string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, flag).Output()
	if err != nil {
		return path
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// debianVersion returns "pkg VERSION (path)" from dpkg, or just path.
func debianVersion(pkg, path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil || len(out) == 0 {
		return path
	}
	return fmt.Sprintf("%s %s (%s)", pkg, out, path)
}
