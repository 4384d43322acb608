package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ironblade/ironblade/crypto/seal"
)

// KindAuth is the Report.Kind of CompareAuth: ironblade sealed against
// ironblade plain.
const KindAuth = "auth"

// Targets of a CompareAuth run.
const (
	// TargetPlain is ironblade without a key, driven by the plain
	// generator.
	TargetPlain = "plain"
	// TargetSealed is ironblade --auth-key, driven by the same generator
	// through a seal.InitiatorLink holding the key.
	TargetSealed = "sealed"
)

// SealAim is the share of the plain IOPS the sealed target should keep at
// MTU 1500 and queue depth 16 (issue 9).
const SealAim = 0.90

// SealCounts are the counters of the generator's sealing layer over a
// sealed cell, from discovery to the end of the run.
type SealCounts struct {
	Handshakes   uint64            `json:"handshakes"`
	FramesSealed uint64            `json:"frames_sealed"`
	FramesOpened uint64            `json:"frames_opened"`
	Rejected     map[string]uint64 `json:"rejected,omitempty"`
}

// CompareAuth measures what sealing costs: ironblade plain and ironblade
// --auth-key (a fresh key, in a file it makes for the run and removes), one
// after the other in every cell, on the veth pair of Compare and with the
// same generator; for the sealed cells the generator's link is wrapped in
// a seal.InitiatorLink holding the key, so that it discovers the target
// through a handshake and seals and checks every frame (HMAC-SHA256, or
// AES-256-GCM with cfg.Encrypt). cfg.Vblade is not used; cfg.SyncModes
// defaults to without -s only. As in Compare, a read cell's file is read
// through first unless cfg.Cold (reports from before that choice measured
// reads cold). It needs root.
func CompareAuth(ctx context.Context, cfg CompareConfig) (*Report, error) {
	cfg.SyncModes = orDefault(cfg.SyncModes, []bool{false})
	cfg = cfg.withDefaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: auth: needs root (network namespaces, raw sockets)")
	}
	if _, err := os.Stat(cfg.Ironblade); err != nil {
		return nil, fmt.Errorf("bench: auth: ironblade: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: auth: %w", err)
	}
	keyDir, err := os.MkdirTemp("", "ironbench-auth-*")
	if err != nil {
		return nil, fmt.Errorf("bench: auth: %w", err)
	}
	defer os.RemoveAll(keyDir)
	keyFile := filepath.Join(keyDir, "key")
	key, err := newKeyFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("bench: auth: %w", err)
	}
	sealed, suite := sealedSpec(cfg, keyFile, key)
	specs := []targetSpec{ironbladeSpec(TargetPlain, cfg.Ironblade), sealed}

	rep := newReport(cfg)
	rep.Kind, rep.AuthKey, rep.AuthSuite = KindAuth, fmt.Sprintf("a fresh 32-byte key, id %08x", key.ID), suite.String()
	defer func() { rep.LoadAfter = loadAverage() }()
	if err := measureCeilings(cfg, rep); err != nil {
		return nil, err
	}
	return rep, runCells(ctx, cfg, specs, rep)
}

// sealedSpec is ironblade with the key in keyFile, driven through a
// seal.InitiatorLink holding the same key; suite is the suite both use.
// The cell fails unless the layer's counters show it was sealed.
func sealedSpec(cfg CompareConfig, keyFile string, key seal.Key) (targetSpec, seal.Suite) {
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	// The layer's warnings (a handshake that fails) go with the progress
	// lines; its news of each session established does not.
	logger := slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	flags, suite := []string{"--auth-key", keyFile}, seal.SuiteHMAC
	if cfg.Encrypt {
		flags, suite = append(flags, "--auth-encrypt"), seal.SuiteAESGCM
	}
	sealed := ironbladeSpec(TargetSealed, cfg.Ironblade, flags...)
	sealed.wrap = func(l Link) (Link, error) {
		il, err := seal.NewInitiatorLink(l, seal.InitiatorConfig{DefaultKey: key, Encrypt: cfg.Encrypt, Logger: logger})
		if err != nil {
			return nil, err
		}
		return il, nil
	}
	sealed.done = func(l Link, c *Cell) error {
		st := l.(*seal.InitiatorLink).Stats()
		c.Seal = &SealCounts{Handshakes: st.Handshakes, FramesSealed: st.FramesSealed, FramesOpened: st.FramesOpened}
		if len(st.Rejected) > 0 {
			c.Seal.Rejected = st.Rejected
		}
		if st.Handshakes == 0 || st.FramesOpened == 0 {
			return fmt.Errorf("the generator's sealing layer made %d handshakes and opened %d frames: the cell was not sealed",
				st.Handshakes, st.FramesOpened)
		}
		for _, p := range st.Peers {
			if p.State == "established" && p.Suite != suite.String() {
				return fmt.Errorf("the session with %s is of suite %s, not %s", p.MAC, p.Suite, suite)
			}
		}
		return nil
	}
	return sealed, suite
}

// newKeyFile writes 32 random bytes to a new file at path, readable by its
// owner only (as ironblade requires of a key file), and loads it.
func newKeyFile(path string) (seal.Key, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return seal.Key{}, err
	}
	_, err = f.Write(secret)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return seal.Key{}, err
	}
	return seal.LoadKeyFile(path)
}

// AuthRow pairs the plain and sealed cells of one MTU, mode, operation
// and queue depth.
type AuthRow struct {
	CellKey
	Plain  *Cell `json:"plain,omitempty"`
	Sealed *Cell `json:"sealed,omitempty"`
	// IOPSRatio is sealed IOPS over plain IOPS; TargetCPURatio and
	// GeneratorCPURatio are sealed CPU time per request over plain. Each
	// is 0 when either cell failed or lacks the figure.
	IOPSRatio         float64 `json:"iops_ratio"`
	TargetCPURatio    float64 `json:"target_cpu_per_op_ratio"`
	GeneratorCPURatio float64 `json:"generator_cpu_per_op_ratio"`
}

// AuthRows pairs a KindAuth report's cells, in the order they were
// measured.
func (r *Report) AuthRows() []AuthRow {
	var rows []AuthRow
	for _, p := range pairCells(r.Cells, TargetPlain, TargetSealed) {
		row := AuthRow{CellKey: p.CellKey, Plain: p.a, Sealed: p.b}
		if pl, se := p.a, p.b; pl != nil && se != nil && pl.Error == "" && se.Error == "" {
			row.IOPSRatio = ratio(se.IOPS, pl.IOPS)
			row.TargetCPURatio = ratio(ratio(se.TargetCPU, se.IOPS), ratio(pl.TargetCPU, pl.IOPS))
			row.GeneratorCPURatio = ratio(ratio(se.GeneratorCPU, se.IOPS), ratio(pl.GeneratorCPU, pl.IOPS))
		}
		rows = append(rows, row)
	}
	return rows
}

// ratio is a/b, or 0 if either is not positive.
func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

// GeneratorCPUPerOp reports the load generator's CPU time per request in
// the measured window, or 0 if unknown.
func (c Cell) GeneratorCPUPerOp() time.Duration {
	if c.IOPS <= 0 || c.GeneratorCPU <= 0 {
		return 0
	}
	return time.Duration(c.GeneratorCPU / c.IOPS * float64(time.Second))
}

// writeAuthMarkdown is WriteMarkdown for a KindAuth report: plain and
// sealed side by side for each figure, the ratios, whether the aim at
// MTU 1500 and queue depth 16 is met, and any failures.
func (r *Report) writeAuthMarkdown(w io.Writer) error {
	var b strings.Builder
	suite := "HMAC-SHA256 per frame"
	if r.AuthSuite != "" && r.AuthSuite != seal.SuiteHMAC.String() {
		suite = "suite " + r.AuthSuite
	}
	fmt.Fprintf(&b, "ironblade sealed (--auth-key, %s) vs plain, same load generator (wrapped in a "+
		"seal.InitiatorLink with the key for the sealed cells), one veth pair between two network namespaces.\n\n", suite)
	r.writeConditions(&b, "target and generator")
	if r.AuthKey != "" {
		fmt.Fprintf(&b, "- Key: %s, in a file of mode 0600 made for the run.\n", r.AuthKey)
	}
	b.WriteString("- MB/s is 10^6 bytes/s; latency is from a request's first transmission to its answer, " +
		"retransmissions included; retx counts requests sent again. CPU columns: CPU time per request in µs, " +
		"and in parentheses the CPUs kept busy in the measured window (1.00 is one CPU throughout), of the target " +
		"process and of the load generator (ironbench, its sealing included). Δ is sealed less plain, x sealed over plain.\n\n")
	rows := r.AuthRows()
	withSync := false
	for _, row := range rows {
		withSync = withSync || row.Sync
	}
	head, rule := "| MTU |", "|---:|"
	if withSync {
		head, rule = head+" -s |", rule+":--:|"
	}
	b.WriteString(head + " op | QD | IOPS plain | IOPS sealed | sealed/plain | MB/s plain | MB/s sealed | p50/p99 µs plain | " +
		"p50/p99 µs sealed | retx plain/sealed | target CPU plain | target CPU sealed | target Δ, x | " +
		"generator CPU plain | generator CPU sealed | generator Δ, x |\n")
	b.WriteString(rule + ":--|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %d |", row.MTU)
		if withSync {
			fmt.Fprintf(&b, " %s |", yesNo(row.Sync))
		}
		fmt.Fprintf(&b, " %s | %d |", row.Op, row.QueueDepth)
		pl, se := okCell(row.Plain), okCell(row.Sealed)
		fmt.Fprintf(&b, " %s | %s | %s |", fig(pl, "%.0f", func(c *Cell) float64 { return c.IOPS }),
			fig(se, "%.0f", func(c *Cell) float64 { return c.IOPS }), times(row.IOPSRatio))
		fmt.Fprintf(&b, " %s | %s |", fig(pl, "%.1f", func(c *Cell) float64 { return c.MBps }),
			fig(se, "%.1f", func(c *Cell) float64 { return c.MBps }))
		fmt.Fprintf(&b, " %s | %s | %s |", latencies(pl), latencies(se), retx(pl, se))
		fmt.Fprintf(&b, " %s | %s | %s |", cpuPerOp(pl, (*Cell).CPUPerOp, func(c *Cell) float64 { return c.TargetCPU }),
			cpuPerOp(se, (*Cell).CPUPerOp, func(c *Cell) float64 { return c.TargetCPU }),
			cpuDelta(pl, se, (*Cell).CPUPerOp, row.TargetCPURatio))
		fmt.Fprintf(&b, " %s | %s | %s |\n", cpuPerOp(pl, (*Cell).GeneratorCPUPerOp, func(c *Cell) float64 { return c.GeneratorCPU }),
			cpuPerOp(se, (*Cell).GeneratorCPUPerOp, func(c *Cell) float64 { return c.GeneratorCPU }),
			cpuDelta(pl, se, (*Cell).GeneratorCPUPerOp, row.GeneratorCPURatio))
	}
	writeSealAim(&b, rows)
	writeFailures(&b, r.failures(TargetPlain, TargetSealed))
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSealAim says, for each operation measured at MTU 1500 and queue
// depth 16 without -s, whether sealed kept SealAim of the plain IOPS.
func writeSealAim(b *strings.Builder, rows []AuthRow) {
	var lines []string
	for _, row := range rows {
		if row.MTU != 1500 || row.QueueDepth != 16 || row.Sync {
			continue
		}
		verdict := "not measured (a cell failed)"
		if row.IOPSRatio > 0 {
			verdict = fmt.Sprintf("sealed keeps %.1f%% of the plain IOPS, costs %.1f%%: ", 100*row.IOPSRatio, 100*(1-row.IOPSRatio))
			if row.IOPSRatio >= SealAim {
				verdict += "met"
			} else {
				verdict += "MISSED"
			}
		}
		lines = append(lines, fmt.Sprintf("- %s: %s", row.Op, verdict))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "\nAim: at MTU 1500 and QD 16, sealed costs at most %.0f%% of the plain IOPS.\n\n", 100*(1-SealAim))
	b.WriteString(strings.Join(lines, "\n") + "\n")
}

// okCell returns c if it has figures, else nil.
func okCell(c *Cell) *Cell {
	if c == nil || c.Error != "" {
		return nil
	}
	return c
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

// fig formats a figure of c, or says the cell failed (or is missing).
func fig(c *Cell, format string, get func(*Cell) float64) string {
	if c == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, get(c))
}

// times formats a ratio, or n/a.
func times(r float64) string {
	if r <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", r)
}

func latencies(c *Cell) string {
	if c == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.0f / %.0f", c.P50us, c.P99us)
}

func retx(pl, se *Cell) string {
	n := func(c *Cell) string {
		if c == nil {
			return "n/a"
		}
		return fmt.Sprint(c.Retransmits)
	}
	return n(pl) + " / " + n(se)
}

// cpuPerOp formats CPU time per request in µs and the CPUs kept busy.
func cpuPerOp(c *Cell, perOp func(*Cell) time.Duration, cpus func(*Cell) float64) string {
	if c == nil || perOp(c) <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f (%.2f)", float64(perOp(c).Nanoseconds())/1e3, cpus(c))
}

// cpuDelta formats the CPU time per request sealing adds, in µs, and the
// ratio.
func cpuDelta(pl, se *Cell, perOp func(*Cell) time.Duration, r float64) string {
	if pl == nil || se == nil || r <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%+.2f, %.2fx", float64((perOp(se)-perOp(pl)).Nanoseconds())/1e3, r)
}
