package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ironblade/ironblade/bench"
	"github.com/ironblade/ironblade/internal/cliflag"
)

// nbdCommand is `ironbench nbd`.
func nbdCommand() *cli.Command {
	return &cli.Command{
		Name:  "nbd",
		Usage: "measure nbdcopy through ironaoe serve against raw AoE throughput (needs root)",
		Description: "Creates two network namespaces joined by a veth pair. For each MTU and target program it\n" +
			"serves a file of --size bytes in --dir and, from the other namespace, writes then reads the\n" +
			"whole export with the raw AoE load generator at each --qd, then copies a random file into it\n" +
			"(nbdcopy --flush) and the export out to null: through a fresh `ironaoe serve --unix` per\n" +
			"direction. Prints a table of raw and via-NBD MB/s and their ratio (the aim is at least 70%)\n" +
			"to stdout, or JSON, and a line per pass to stderr. Unless --warm, the page cache is dropped\n" +
			"before every pass, so reads come from the disk. --repeat runs rounds and reports medians.",
		Flags: []cli.Flag{
			mtuFlag(),
			&cli.StringFlag{Name: "size", Value: "256MiB", Usage: "export and copy `SIZE` (bytes, or with K, M, G, KiB, MiB, GiB)"},
			&cli.StringFlag{Name: "target", Value: "both", Usage: "target `PROGRAM`: ironblade, vblade or both"},
			&cli.StringFlag{Name: "qd", Value: "16,64", Usage: "queue depths of the raw passes, `LIST` of integers"},
			&cli.StringFlag{Name: "dir", Value: bench.DefaultDir, Usage: "put the target's file in `DIR` (on disk)"},
			&cli.StringFlag{Name: "source-dir", Value: "/dev/shm", Usage: "put the file nbdcopy copies in, in `DIR` (tmpfs keeps it off disk)"},
			&cli.BoolFlag{Name: "warm", Usage: "keep the page cache between passes instead of dropping it"},
			&cli.IntFlag{Name: "repeat", Value: 1, Usage: "run `N` rounds of every pass and report medians"},
			ironbladeFlag(),
			&cli.StringFlag{Name: "ironaoe", Usage: "ironaoe binary at `PATH` (default bin/ironaoe)"},
			vbladeFlag(),
			&cli.StringFlag{Name: "nbdcopy", Value: "nbdcopy", Usage: "nbdcopy binary at `PATH`"},
			&cli.DurationFlag{Name: "min-rto", Value: bench.DefaultMinTimeout,
				Usage: "raw passes: retransmit a request unanswered after at least `DUR`"},
			jsonFlag(),
		},
		Action: runNBD,
	}
}

// runNBD is the action of `ironbench nbd`.
func runNBD(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("nbd: unexpected argument %q", c.Args().First())
	}
	cfg := bench.NBDConfig{
		Vblade:     c.String("vblade"),
		Nbdcopy:    c.String("nbdcopy"),
		Dir:        c.String("dir"),
		SourceDir:  c.String("source-dir"),
		Warm:       c.Bool("warm"),
		Repeat:     c.Int("repeat"),
		MinTimeout: c.Duration("min-rto"),
		Progress:   c.App.ErrWriter,
	}
	var err error
	if cfg.MTUs, err = parseInts(c.String("mtu"), 68, 65535); err != nil {
		return cliflag.Usagef("nbd: --mtu: %w", err)
	}
	if cfg.QueueDepths, err = parseInts(c.String("qd"), 1, bench.MaxQueueDepth); err != nil {
		return cliflag.Usagef("nbd: --qd: %w", err)
	}
	if cfg.Targets, err = parseTargets(c.String("target")); err != nil {
		return cliflag.Usagef("nbd: --target: %w", err)
	}
	if cfg.Size, err = parseSize(c.String("size")); err != nil || cfg.Size < 1<<20 || cfg.Size%512 != 0 {
		return cliflag.Usagef("nbd: --size %q: want at least 1MiB, a multiple of 512 bytes", c.String("size"))
	}
	if cfg.MinTimeout <= 0 {
		return cliflag.Usagef("nbd: --min-rto %v: want a positive duration", cfg.MinTimeout)
	}
	if cfg.Repeat < 1 || cfg.Repeat > 100 {
		return cliflag.Usagef("nbd: --repeat %d: want 1 to 100", cfg.Repeat)
	}
	if os.Geteuid() != 0 {
		return errors.New("nbd: needs root to create network namespaces, open raw sockets and drop caches")
	}
	if cfg.Ironaoe, err = ironaoeBinary(c.String("ironaoe")); err != nil {
		return fmt.Errorf("nbd: %w", err)
	}
	for _, t := range cfg.Targets {
		if t == "ironblade" {
			if cfg.Ironblade, err = ironbladeBinary(c.Context, c.String("ironblade"), c.App.ErrWriter); err != nil {
				return fmt.Errorf("nbd: %w", err)
			}
		}
	}
	rep, err := bench.MeasureNBD(c.Context, cfg)
	if rep != nil && len(rep.Cells) > 0 {
		err = errors.Join(err, writeReport(c, rep))
	}
	if err != nil {
		return fmt.Errorf("nbd: %w", err)
	}
	return nil
}

// parseTargets reads --target: ironblade, vblade, both, or a
// comma-separated list of the first two.
func parseTargets(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		switch f = strings.ToLower(strings.TrimSpace(f)); f {
		case "both":
			out = append(out, "ironblade", "vblade")
		case "ironblade", "vblade":
			out = append(out, f)
		default:
			return nil, fmt.Errorf("%q: want ironblade, vblade or both", f)
		}
	}
	return out, nil
}

// ironaoeBinary returns path if set, else bin/ironaoe; the binary must
// exist (make build puts it there).
func ironaoeBinary(path string) (string, error) {
	flag := "--ironaoe"
	if path == "" {
		path, flag = filepath.Join("bin", "ironaoe"), "bin/ironaoe (run make build, or give --ironaoe)"
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	return path, nil
}
