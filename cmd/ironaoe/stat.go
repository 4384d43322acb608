package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ironblade/ironblade/initiator"
)

// statReport is what stat prints with --json.
type statReport struct {
	Processes []processStatus `json:"processes"`
}

// stat asks the running serve and attach processes for their status and
// prints it. Sockets in the control directory whose process is gone are
// removed; one named with --control must answer.
func stat(ctx context.Context, o statOptions, env *environment) error {
	paths := []string{o.Control}
	if o.Control == "" {
		var err error
		if paths, err = controlSockets(o.ControlDir); err != nil {
			return err
		}
	}
	report := statReport{Processes: []processStatus{}}
	for _, p := range paths {
		st, err := queryControl(ctx, p)
		switch {
		case err == nil:
			report.Processes = append(report.Processes, st)
		case o.Control != "":
			return err
		case errors.Is(err, errStaleSocket):
			env.Logger.Debug("removing stale control socket", "path", p)
			os.Remove(p)
		default:
			env.Logger.Warn("control socket did not answer", "err", err)
		}
	}
	if o.JSON {
		return writeJSON(env.Stdout, report)
	}
	if len(report.Processes) == 0 {
		fmt.Fprintf(env.Stdout, "no ironaoe serve or attach process is running (no control socket answered in %s)\n", o.ControlDir)
		return nil
	}
	return formatStatus(env.Stdout, report.Processes, time.Now())
}

// formatStatus prints each process, its devices and their targets; now is
// the time ages are computed from.
func formatStatus(w io.Writer, procs []processStatus, now time.Time) error {
	for n, p := range procs {
		if n > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "ironaoe %s (pid %d, version %s, up %s) on %s\n", p.Command, p.PID, p.Version,
			age(now, p.Started), listOrNone(p.Interfaces))
		if len(p.Listeners) > 0 {
			fmt.Fprintf(w, "  NBD: %s\n", strings.Join(p.Listeners, " "))
		}
		if p.Attached != "" {
			fmt.Fprintf(w, "  attached as %s\n", p.Attached)
		}
		if c := p.Stats.Config; c.ScornTimeout > 0 {
			dead := c.DeadTimeout.String()
			if c.DeadTimeout < 0 {
				dead = "never"
			}
			fmt.Fprintf(w, "  tunables: scorn timeout %s, RTO %s-%s, rediscover every %s, dead timeout %s, window %d, policy %s\n",
				c.ScornTimeout, c.RTOMin, c.RTOMax, c.DiscoverInterval, dead, c.MaxWindow, c.Policy)
		}
		if len(p.Stats.Devices) == 0 {
			fmt.Fprintln(w, "  no device found yet")
		}
		for _, d := range p.Stats.Devices {
			if err := formatDevice(w, d, now); err != nil {
				return err
			}
		}
		if err := formatAuth(w, p.Auth, now); err != nil {
			return err
		}
	}
	return nil
}

// formatDevice prints one device: a summary line and a table of targets.
func formatDevice(w io.Writer, d initiator.DeviceStats, now time.Time) error {
	size := "size unknown"
	if d.Size > 0 {
		size = formatBytes(d.Size)
	}
	fmt.Fprintf(w, "  %s: %s for %s, %s, %s, using %s\n", d.Name, d.State, age(now, d.Since), size, d.Policy, listOrNone(d.Active))
	fmt.Fprintf(w, "    reads %d (%s), writes %d (%s), flushes %d, I/O errors %d, queued %d\n",
		d.Reads, humanBytes(int64(d.BytesRead)), d.Writes, humanBytes(int64(d.BytesWritten)), d.Flushes, d.IOErrors, d.Queued)
	if d.Failovers > 0 || d.LateWrites > 0 {
		fmt.Fprintf(w, "    failovers %d, last stall %s, late writes %d\n", d.Failovers, formatRTT(d.LastStall), d.LateWrites)
	}
	if d.Stale+d.Duplicate+d.WrongSource+d.Fenced > 0 {
		fmt.Fprintf(w, "    ignored answers: stale %d, duplicate %d, wrong source %d; fenced writes %d\n",
			d.Stale, d.Duplicate, d.WrongSource, d.Fenced)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "    TARGET\tINTERFACE\tSTATE\tSINCE\tRTT\tRTTDEV\tRTO\tOUTSTANDING\tFRAMES\tRETRANSMITS\tERRORS\tSCORNS\tLAST HEARD")
	for _, t := range d.Targets {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%s\n",
			t.MAC, t.Interface, t.State, age(now, t.Since), formatRTT(t.RTT), formatRTT(t.RTTDev), formatRTT(t.RTO),
			t.Outstanding, t.Cwnd, t.Frames, t.Retransmits, t.Errors, t.Scorns, ago(now, t.LastHeard))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n := len(d.Events); n > 0 {
		fmt.Fprintln(w, "    recent events:")
		for _, e := range d.Events[max(n-recentEvents, 0):] {
			fmt.Fprintf(w, "      %s %s", e.Time.Format(time.DateTime), e.Kind)
			if e.Target != "" {
				fmt.Fprintf(w, " %s", e.Target)
			}
			if e.Previous != "" {
				fmt.Fprintf(w, " (was %s)", e.Previous)
			}
			if e.Stall > 0 {
				fmt.Fprintf(w, " after a %s stall", formatRTT(e.Stall))
			}
			if e.Detail != "" {
				fmt.Fprintf(w, ": %s", e.Detail)
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}

// recentEvents is how many of a device's latest events stat shows.
const recentEvents = 5

// age is how long ago t was, to the second; "-" for the zero time.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return max(now.Sub(t), 0).Round(time.Second).String()
}

// ago is age with " ago", or "never" for the zero time.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return age(now, t) + " ago"
}

// formatRTT rounds a round-trip time to three significant digits or so.
func formatRTT(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// listOrNone joins a list, or says "none".
func listOrNone(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, ", ")
}
