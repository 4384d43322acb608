package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ironblade/ironblade/bench"
	"github.com/ironblade/ironblade/bench/demoplot"
	"github.com/ironblade/ironblade/internal/cliflag"
)

// The failover demo's commands (scripts/demo.sh drives them):
//
//	ironbench timeline --control-dir DIR [--device e1.0] [--interval 100ms] [--out FILE] [--progress FILE]
//	ironbench plot [--window 2s] --out DIR ROUND_DIR...

// statTimeout bounds one `ironaoe stat` run.
const statTimeout = 2 * time.Second

// timelineCommand is `ironbench timeline`.
func timelineCommand() *cli.Command {
	return &cli.Command{
		Name:  "timeline",
		Usage: "sample a device's counters, targets and failover events from ironaoe stat until stopped",
		Description: "Runs `ironaoe stat --json --control-dir DIR` every --interval and writes one JSON line per\n" +
			"sample of --device (bytes written and read, targets and their states, failover events first\n" +
			"seen) to --out. Runs until SIGTERM or SIGINT. --progress names a file rewritten after each\n" +
			"sample with one line, BYTES_WRITTEN ACTIVE_MAC TARGETS, for scripts to watch.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "control-dir", Required: true, Usage: "ironaoe's control socket directory `DIR`"},
			&cli.StringFlag{Name: "device", Value: "e1.0", Usage: "follow device `eSHELF.SLOT`"},
			&cli.DurationFlag{Name: "interval", Value: 100 * time.Millisecond, Usage: "sample every `DUR`"},
			&cli.StringFlag{Name: "out", Value: "-", Usage: "write samples to `FILE` (- for stdout)"},
			&cli.StringFlag{Name: "progress", Usage: "rewrite `FILE` after each sample with a line: bytes written, active target's MAC, number of targets"},
			&cli.StringFlag{Name: "ironaoe", Usage: "ironaoe binary at `PATH` (default: next to ironbench, else in PATH)"},
		},
		Action: runTimeline,
	}
}

// runTimeline is the action of `ironbench timeline`.
func runTimeline(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("timeline: unexpected argument %q", c.Args().First())
	}
	if c.Duration("interval") <= 0 {
		return cliflag.Usagef("timeline: --interval %v: must be positive", c.Duration("interval"))
	}
	ironaoe, err := siblingBinary(c.String("ironaoe"), "ironaoe")
	if err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	var out io.Writer = c.App.Writer
	if path := c.String("out"); path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("timeline: %w", err)
		}
		defer f.Close()
		out = f
	}
	// Line-buffered: each sample reaches the file as it is taken, so a
	// reader (or a kill) never sees more than one partial line.
	w := bufio.NewWriter(out)
	lines := &flushingWriter{w: w}
	progress := c.String("progress")
	dir := c.String("control-dir")
	var lastErr string
	cfg := bench.TimelineConfig{
		Device:   c.String("device"),
		Interval: c.Duration("interval"),
		Out:      lines,
		Query: func(ctx context.Context) ([]byte, error) {
			ctx, cancel := context.WithTimeout(ctx, statTimeout)
			defer cancel()
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, ironaoe, "stat", "--json", "--control-dir", dir)
			cmd.Stderr = &stderr
			b, err := cmd.Output()
			if err != nil {
				return nil, fmt.Errorf("ironaoe stat: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
			}
			return b, nil
		},
		OnSample: func(s bench.TimelineSample) {
			if progress != "" {
				writeProgress(progress, s)
			}
		},
		OnError: func(err error) {
			// Say each new kind of failure once: the process may be
			// starting or restarting.
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				fmt.Fprintf(c.App.ErrWriter, "timeline: %v\n", err)
			}
		},
	}
	if err := bench.SampleTimeline(c.Context, cfg); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	return nil
}

// flushingWriter flushes its buffer after every write: SampleTimeline
// writes one line at a time.
type flushingWriter struct{ w *bufio.Writer }

func (f *flushingWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

// writeProgress replaces path's content with a line "BYTES_WRITTEN
// ACTIVE_MAC TARGETS" ("-" when no target is active) for scripts to read,
// atomically (rename), so that a reader never sees half a line.
func writeProgress(path string, s bench.TimelineSample) {
	active := "-"
	if len(s.Active) > 0 {
		active = s.Active[0]
	}
	line := fmt.Sprintf("%d %s %d\n", s.BytesWritten, active, len(s.Targets))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(line), 0o644); err == nil {
		_ = os.Rename(tmp, path)
	}
}

// siblingBinary returns path if set; else the named program next to this
// executable, else the one in PATH.
func siblingBinary(path, name string) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", err
		}
		return path, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found next to ironbench nor in PATH (give --%s): %w", name, name, err)
	}
	return p, nil
}

// plotCommand is `ironbench plot`.
func plotCommand() *cli.Command {
	return &cli.Command{
		Name:      "plot",
		Usage:     "report and plot the failover demo's rounds: target configurations compared, stall, throughput, files intact",
		ArgsUsage: "ROUND_DIR...",
		Description: "Reads each round directory written by scripts/demo.sh (round.env and timeline.jsonl),\n" +
			"computes the I/O stall (event to the first request completed by the survivor) and the write\n" +
			"throughput before the event and after I/O resumed, compares the target configurations (copy\n" +
			"time with no fault and with a fence, corrupt files per fence), prints the verdict and the tables\n" +
			"and writes report.md, report.json, compare.png, compare.svg, timeline.png and timeline.svg to\n" +
			"--out. Exits 1 if files were lost where nothing may be lost: a round of a target with -s, a\n" +
			"round with no fault or a migration with a corrupt file, or a round whose check did not count\n" +
			"every file. Files lost on fencing a target without -s are the expected result: reported, not failed.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, Usage: "write the report and plots to `DIR`"},
			&cli.DurationFlag{Name: "window", Value: 2 * time.Second,
				Usage: "average throughput over `DUR` before the event and after I/O resumed"},
			&cli.StringFlag{Name: "title", Value: "Failover demo", Usage: "report `TITLE`"},
			&cli.StringFlag{Name: "preamble", Usage: "put `FILE`'s text (markdown) between the title and the table"},
		},
		Action: runPlot,
	}
}

// runPlot is the action of `ironbench plot`.
func runPlot(c *cli.Context) error {
	if !c.Args().Present() {
		return errors.New("plot: want at least one round directory")
	}
	window := c.Duration("window")
	if window <= 0 {
		return cliflag.Usagef("plot: --window %v: must be positive", window)
	}
	rep := &bench.DemoReport{Window: window}
	for _, dir := range c.Args().Slice() {
		round, err := bench.LoadDemoRound(dir)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		rep.Rounds = append(rep.Rounds, bench.AnalyzeRound(round, window))
	}
	out := c.String("out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "# %s\n\n", c.String("title"))
	if p := c.String("preamble"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return cliflag.Usagef("plot: --preamble: %w", err)
		}
		md.Write(bytes.TrimSpace(b))
		md.WriteString("\n\n")
	}
	if err := rep.WriteMarkdown(&md); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	md.WriteString("\n![copy time and corrupt files per configuration](compare.png)\n")
	md.WriteString("\n![throughput timeline of each round](timeline.png)\n")
	if err := os.WriteFile(filepath.Join(out, "report.md"), md.Bytes(), 0o644); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "report.json"), js.Bytes(), 0o644); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := demoplot.WriteCompare(rep, filepath.Join(out, "compare.png"), filepath.Join(out, "compare.svg")); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := demoplot.Write(rep, filepath.Join(out, "timeline.png"), filepath.Join(out, "timeline.svg")); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := rep.WriteMarkdown(c.App.Writer); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if v := rep.Verdict(); !v.Pass {
		return fmt.Errorf("plot: files corrupt or missing where nothing may be lost (%d of %d rounds; see the verdict above)",
			len(v.Failures), len(rep.Rounds))
	}
	return nil
}
