package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/ironblade/ironblade/internal/bladectl"
)

// result is what the processes asked answered.
type result struct {
	Exports []bladectl.Export `json:"exports"`
}

// execute sends the request to the control sockets, prints what they
// answer and returns an error if a change failed, the export named is
// nowhere, or no process answered.
func execute(ctx context.Context, inv invocation, stdout, stderr io.Writer) error {
	sockets, err := sockets(inv)
	if err != nil {
		return err
	}
	var (
		res      = result{Exports: []bladectl.Export{}}
		errs     []error
		answered int
	)
	for _, path := range sockets {
		resp, err := bladectl.Call(ctx, path, inv.Request)
		switch {
		case errors.Is(err, bladectl.ErrStale) && inv.Control == "":
			// A process that died without removing its socket: the
			// others still count.
			fmt.Fprintf(stderr, "ironbladectl: skipping %s: %v\n", path, bladectl.ErrStale)
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		}
		answered++
		res.Exports = append(res.Exports, resp.Exports...)
		if resp.Error != "" && resp.Code != bladectl.CodeNoExport {
			errs = append(errs, errors.New(resp.Error))
		}
	}
	if answered > 0 && len(res.Exports) == 0 && inv.Request.Target != "" {
		errs = append(errs, fmt.Errorf("no process serves %s (asked %s)", inv.Request.Target, strings.Join(sockets, ", ")))
	}
	if answered > 0 {
		if err := print(stdout, inv, res); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sockets lists the control sockets to ask: --control, or every socket
// in --control-dir.
func sockets(inv invocation) ([]string, error) {
	if inv.Control != "" {
		return []string{inv.Control}, nil
	}
	entries, err := os.ReadDir(inv.ControlDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("control directory: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 && filepath.Ext(e.Name()) == ".sock" {
			paths = append(paths, filepath.Join(inv.ControlDir, e.Name()))
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no control socket in %s: is ironblade running (without --control off)? Name a socket with --control", inv.ControlDir)
	}
	return paths, nil
}

// print writes the answer: JSON with --json, else the table of the verb.
func print(w io.Writer, inv invocation, res result) error {
	if inv.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fmt.Errorf("print: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	switch inv.Request.Verb {
	case bladectl.VerbList:
		listTable(tw, res.Exports)
	case bladectl.VerbStat:
		statTable(tw, res.Exports)
	default:
		pathTable(tw, inv.Request.Verb, res.Exports)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}

// listTable prints one line per export.
func listTable(w io.Writer, exports []bladectl.Export) {
	fmt.Fprintln(w, "TARGET\tNAME\tSTATE\tSIZE\tSYNC\tREAD-ONLY\tINTERFACES\tFILE")
	for _, e := range exports {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Target, orDash(e.Name), e.State, size(e.Size),
			yesNo(e.Sync), yesNo(e.ReadOnly), strings.Join(e.Interfaces, ","), e.File)
	}
}

// statTable prints one line per target (export and interface).
func statTable(w io.Writer, exports []bladectl.Export) {
	fmt.Fprintln(w, "TARGET\tNETIF\tSTATE\tFRAMES-IN\tFRAMES-OUT\tREAD\tWRITTEN\tSYNCS\tSYNCED-WRITES\tSEND-ERRORS\tDROPPED\tERRORS")
	for _, e := range exports {
		for _, p := range e.Paths {
			st := p.Stats
			if st == nil {
				st = &bladectl.Stats{}
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", e.Target, p.Netif, p.State,
				st.FramesIn, st.FramesOut, size(int64(st.BytesRead)), size(int64(st.BytesWritten)),
				st.Syncs, st.SyncedWrites, st.SendErrors, counts(st.Dropped), counts(st.Errors))
		}
	}
}

// pathTable prints the config string, MAC mask or reserve list of each
// target: one line per export and interface, since each interface's
// target keeps its own.
func pathTable(w io.Writer, verb string, exports []bladectl.Export) {
	head := map[string]string{bladectl.VerbConfig: "CONFIG", bladectl.VerbMask: "MAC-MASK", bladectl.VerbReserve: "RESERVE"}[verb]
	fmt.Fprintf(w, "TARGET\tNETIF\t%s\n", head)
	for _, e := range exports {
		for _, p := range e.Paths {
			var v string
			switch verb {
			case bladectl.VerbConfig:
				v = strconv.Quote(p.ConfigString)
			case bladectl.VerbMask:
				v = orDash(strings.Join(p.MACMask, ","))
			case bladectl.VerbReserve:
				v = orDash(strings.Join(p.Reserve, ","))
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", e.Target, p.Netif, v)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// size writes a byte count with a binary unit.
func size(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	f, u := float64(n)/1024, 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + string(units[u]) + "iB"
}

// counts writes a map of counters as reason=n,... sorted, or "-".
func counts(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return orDash(strings.Join(parts, ","))
}
