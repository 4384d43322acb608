package main

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/internal/bladectl"
	"github.com/ironblade/ironblade/target"
)

// defaultControlDir holds the control sockets (ironbladectl's default
// place to look).
const defaultControlDir = "/run/ironblade"

// controlDir is where the default control socket goes: the runtime
// directory systemd made for the service (RuntimeDirectory= sets
// $RUNTIME_DIRECTORY, the first of a colon-separated list), else
// defaultControlDir.
func controlDir(getenv func(string) string) string {
	if dir, _, _ := strings.Cut(getenv("RUNTIME_DIRECTORY"), ":"); dir != "" {
		return dir
	}
	return defaultControlDir
}

// controlOff is --control's value that turns the socket off.
const controlOff = "off"

// controlPath is the control socket of the process, or "" for none;
// explicit says --control named it, so failing to listen there is an
// error rather than a warning. The default is one socket per process:
// DIR/ctl.sock with --config, DIR/eSHELF.SLOT-NETIF.sock otherwise, so that
// the one-export-per-process services (ironblade@.service, the OCF agent)
// do not contend for one name, even when one device is served on two
// interfaces by two processes (multipath, as vblade is run).
func controlPath(o options, dir string) (path string, explicit bool) {
	switch {
	case o.Control == controlOff:
		return "", false
	case o.Control != "":
		return o.Control, true
	case dir == "":
		return "", false
	case o.ConfigFile != "":
		return filepath.Join(dir, "ctl.sock"), false
	}
	return filepath.Join(dir, bladectl.TargetName(o.Shelf, o.Slot)+"-"+o.Netif+".sock"), false
}

// controlExport is one export as the control socket sees it.
type controlExport struct {
	// info describes the export; its Paths are filled in per request.
	info    bladectl.Export
	servers []*target.Server // one per interface, in info.Interfaces' order
	// failed reports whether a server stopped on an error; nil for never.
	failed func() bool
}

// startControl answers ironbladectl on the process's control socket
// until the returned function is called. exports lists what the process
// serves at the moment of each request. A socket that cannot be opened is
// an error if --control named it, else a warning: the exports are served
// without it.
func startControl(o options, env serveEnv, exports func() []controlExport) (stop func(), err error) {
	path, explicit := controlPath(o, env.ControlDir)
	if path == "" {
		return func() {}, nil
	}
	logger := env.Logger
	srv, err := bladectl.Listen(path, controller{exports: exports, log: logger}.handle, logger)
	if err != nil {
		if explicit {
			return nil, fmt.Errorf("--control: %w", err)
		}
		logger.Warn("serving without a control socket (ironbladectl cannot reach this process; name another with --control)", "err", err)
		return func() {}, nil
	}
	logger.Info("control socket listening", "path", path)
	return func() {
		if err := srv.Close(); err != nil {
			logger.Warn("control socket", "err", err)
		}
	}, nil
}

// controller carries out control requests on the exports.
type controller struct {
	exports func() []controlExport
	log     *slog.Logger
}

// handle answers one checked request: the exports it addresses, after
// the change it asks for, if any, applied to each of their targets.
func (c controller) handle(req bladectl.Request) bladectl.Response {
	var chosen []controlExport
	for _, e := range c.exports() {
		if req.Target == "" || req.Target == e.info.Target {
			chosen = append(chosen, e)
		}
	}
	if req.Target != "" && len(chosen) == 0 {
		return bladectl.Response{Error: fmt.Sprintf("no export %s in this process", req.Target), Code: bladectl.CodeNoExport}
	}
	var errs []error
	if change := c.change(req); change != nil {
		c.log.Info("control: "+req.Verb+" "+req.Op, "target", req.Target, "macs", req.MACs, "force", req.Force)
		for _, e := range chosen {
			for i, srv := range e.servers {
				err := change(srv)
				if err == nil {
					if serr := srv.SaveError(); serr != nil {
						err = fmt.Errorf("applied, but not saved in the state directory (lost on restart): %w", serr)
					}
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s on %s: %w", e.info.Target, e.info.Interfaces[i], err))
				}
			}
		}
	}
	resp := bladectl.Response{Exports: make([]bladectl.Export, 0, len(chosen))}
	for _, e := range chosen {
		resp.Exports = append(resp.Exports, describe(e, req.Verb == bladectl.VerbStat))
	}
	if err := errors.Join(errs...); err != nil {
		resp.Error, resp.Code = err.Error(), bladectl.CodeFailed
	}
	return resp
}

// change returns what req does to each target, or nil if it only reads.
// The changes take the paths of the AoE requests that make them (Config
// set, MAC Mask List edit, Reserve/Release force set), so they are saved
// with --state-dir as those are.
func (c controller) change(req bladectl.Request) func(*target.Server) error {
	macs, _ := bladectl.ParseMACs(req.MACs) // checked by bladectl
	edit := func(cmd aoe.DirectiveCommand) func(*target.Server) error {
		dirs := make([]aoe.Directive, len(macs))
		for i, m := range macs {
			dirs[i] = aoe.Directive{Command: cmd, MAC: m}
		}
		return func(s *target.Server) error { return s.EditMACMask(dirs) }
	}
	switch req.Verb + " " + req.Op {
	case "config set":
		return func(s *target.Server) error {
			err := s.SetConfigString([]byte(req.String), req.Force)
			if errors.Is(err, target.ErrConfigStringPresent) {
				return fmt.Errorf("config string %q is set: replace it with --force", s.ConfigString())
			}
			return err
		}
	case "config clear":
		return func(s *target.Server) error { return s.SetConfigString(nil, true) }
	case "mask add":
		return edit(aoe.DirectiveAdd)
	case "mask remove":
		return edit(aoe.DirectiveDelete)
	case "mask clear":
		return (*target.Server).ClearMACMask
	case "reserve set":
		return func(s *target.Server) error { s.SetReserve(macs); return nil }
	case "reserve clear":
		return func(s *target.Server) error { s.SetReserve(nil); return nil }
	}
	return nil
}

// describe reports an export and each of its targets, with their
// counters if stats is set.
func describe(e controlExport, stats bool) bladectl.Export {
	x := e.info
	failed := e.failed != nil && e.failed()
	x.Paths = make([]bladectl.Path, 0, len(e.servers))
	serving := 0
	for i, srv := range e.servers {
		p := bladectl.Path{
			Netif:        e.info.Interfaces[i],
			State:        "starting",
			ConfigString: string(srv.ConfigString()),
			MACMask:      bladectl.FormatMACs(srv.MACMask()),
			Reserve:      bladectl.FormatMACs(srv.Reserve()),
		}
		switch {
		case srv.Serving():
			p.State = "serving"
			serving++
		case failed:
			p.State = "failed"
		}
		if stats {
			st := srv.Stats()
			p.Stats = &bladectl.Stats{
				FramesIn: st.FramesIn, FramesOut: st.FramesOut, BytesRead: st.BytesRead, BytesWritten: st.BytesWritten,
				Syncs: st.Syncs, SyncedWrites: st.SyncedWrites, SendErrors: st.SendErrors, Dropped: st.Dropped, Errors: st.Errors,
			}
		}
		x.Paths = append(x.Paths, p)
	}
	switch {
	case serving == len(e.servers):
		x.State = "serving"
	case failed && serving > 0:
		x.State = "degraded"
	case failed:
		x.State = "failed"
	default:
		x.State = "starting"
	}
	return x
}

// commandLineExport is the export of vblade's command line.
func commandLineExport(o options, size int64, srv *target.Server) []controlExport {
	return []controlExport{{
		info: bladectl.Export{
			Target: bladectl.TargetName(o.Shelf, o.Slot), Shelf: o.Shelf, Slot: o.Slot,
			File: o.Filename, Interfaces: []string{o.Netif}, Sync: o.Sync, ReadOnly: o.ReadOnly, Size: size,
		},
		servers: []*target.Server{srv},
	}}
}

// controlExports lists the running exports, by shelf and slot.
func (s *exportSet) controlExports() []controlExport {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]controlExport, 0, len(s.running))
	for _, r := range s.running {
		e := r.conf
		out = append(out, controlExport{
			info: bladectl.Export{
				Target: bladectl.TargetName(e.Shelf, e.Slot), Shelf: e.Shelf, Slot: e.Slot, Name: e.Name,
				File: e.File, Interfaces: e.Interfaces, Sync: e.Sync, ReadOnly: e.ReadOnly, Size: r.backend.Size(),
			},
			servers: r.servers,
			failed:  r.hasFailed,
		})
	}
	slices.SortFunc(out, func(a, b controlExport) int {
		return cmp.Or(cmp.Compare(a.info.Shelf, b.info.Shelf), cmp.Compare(a.info.Slot, b.info.Slot))
	})
	return out
}
