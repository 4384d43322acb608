package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/internal/exportconf"
	"github.com/ironblade/ironblade/internal/metricsrv"
	"github.com/ironblade/ironblade/target"
)

// serveConfig serves the exports of the --config file until ctx ends, then
// stops each as serve does (requests in flight finish, the file is
// synced). SIGHUP reloads the file: exports added start, exports removed
// stop, exports changed restart, and the others are left alone but for
// re-reading their key files. A file that does not load changes nothing.
func serveConfig(ctx context.Context, o options, env serveEnv) error {
	conf, err := exportconf.Load(o.ConfigFile)
	if err != nil {
		return err
	}
	reg := metricsrv.NewRegistry("ironblade", version)
	stopMetrics := func() {}
	if o.MetricsAddr != "" {
		if _, stopMetrics, err = metricsrv.Serve(o.MetricsAddr, reg, env.Logger); err != nil {
			return err
		}
	}
	defer stopMetrics()

	set := &exportSet{env: env, reg: reg, file: o.ConfigFile, busyPoll: o.BusyPoll, running: make(map[string]*runningExport)}
	defer set.stopAll()
	for _, e := range conf.Exports {
		if err := set.start(e); err != nil {
			return err
		}
	}
	stopControl, err := startControl(o, env, set.controlExports)
	if err != nil {
		return err
	}
	defer stopControl()
	sup := newSupervisor(env, o)
	sup.waiting = set.waiting
	sup.setStatus(set.status())
	stopSupervisor := sup.run(ctx, set)
	defer stopSupervisor()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-env.Reload:
			sup.reload(func() {
				set.reload()
				sup.setStatus(set.status())
			})
		case <-env.Announce:
			set.announce()
		}
	}
}

// exportSet is the exports being served, by name.
type exportSet struct {
	env      serveEnv
	reg      *prometheus.Registry
	file     string
	busyPoll time.Duration // --busy-poll, for every link

	mu      sync.Mutex // guards running: the supervisor reads it
	running map[string]*runningExport
}

// runningExport is one export being served: one target.Server per
// interface, all on one backend.
type runningExport struct {
	conf    exportconf.Export
	backend *target.FileBackend
	servers []*target.Server
	sealed  []*seal.TargetLink // one per interface, or none without keys
	links   []aoe.Link         // the raw links, one per interface
	opts    []options          // per interface, for the key reloads and logs
	cancel  context.CancelFunc
	done    chan struct{} // closed once every Serve has returned
	failed  chan struct{} // closed if a Serve failed; the export then restarts on SIGHUP
	// cleanup undoes start, once the servers are done.
	cleanup []func()
}

// exportOptions are the command line's options equivalent to e on one of
// its interfaces, so that an export in the file is served as
// "ironblade ... shelf slot netif file" would serve it.
func exportOptions(e exportconf.Export, netif string) options {
	o := options{
		Shelf: e.Shelf, Slot: e.Slot, Netif: netif, Filename: e.File,
		Buffers: e.Buffers, Offset: e.Offset, Length: e.Length,
		Direct: e.Direct, Sync: e.Sync, ReadOnly: e.ReadOnly, MACs: e.AllowedMACs,
		StateDir: e.StateDir, AnnounceInterval: e.AnnounceInterval, Workers: e.Workers, VLAN: e.VLAN,
		AuthKeys: e.AuthKeys, AuthMode: e.AuthMode, AuthEncrypt: e.AuthEncrypt,
	}
	if len(e.Interfaces) > 1 && o.StateDir != "" {
		// One target per interface, each with its own state: they must
		// not overwrite each other's file.
		o.StateDir = filepath.Join(o.StateDir, netif)
	}
	return o
}

// start opens e's file and links and serves it on each interface. On an
// error nothing of e is left open.
func (s *exportSet) start(e exportconf.Export) (err error) {
	logger := s.env.Logger.With("export", e.Name)
	r := &runningExport{conf: e, done: make(chan struct{}), failed: make(chan struct{})}
	defer func() {
		if err != nil {
			r.undo()
			err = fmt.Errorf("export %s: %w", e.Name, err)
		}
	}()
	first := exportOptions(e, e.Interfaces[0])
	r.backend, err = target.OpenFile(e.File, first.fileOptions())
	if err != nil {
		return err
	}
	backend := r.backend
	r.cleanup = append(r.cleanup, func() {
		if err := backend.Close(); err != nil {
			logger.Error("close failed", "file", e.File, "err", err)
		}
	})
	keys, err := loadKeys(e.AuthKeys)
	if err != nil {
		return err
	}
	var links []aoe.Link
	for _, netif := range e.Interfaces {
		link, err := s.open(r, exportOptions(e, netif), keys, logger.With("netif", netif))
		if err != nil {
			return err
		}
		links = append(links, link)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	var wg sync.WaitGroup
	var failOnce sync.Once
	for i, srv := range r.servers {
		wg.Go(func() {
			err := srv.Serve(ctx, links[i])
			if err != nil && !errors.Is(err, context.Canceled) {
				logger.Error("export failed: it stays down until SIGHUP reloads the configuration",
					"netif", r.opts[i].Netif, "err", err)
				failOnce.Do(func() { close(r.failed) })
			}
		})
	}
	go func() { wg.Wait(); close(r.done) }()
	s.mu.Lock()
	s.running[e.Name] = r
	s.mu.Unlock()
	return nil
}

// open opens one interface's link for r, with its target and metrics,
// and returns the link to serve on.
func (s *exportSet) open(r *runningExport, o options, keys []seal.Key, logger *slog.Logger) (aoe.Link, error) {
	raw, bufSize, err := s.env.listen(o, s.busyPoll)
	if err != nil {
		return nil, err
	}
	r.cleanup = append(r.cleanup, func() { raw.Close() })
	r.links = append(r.links, raw)
	sealed, link, err := sealLink(raw, o, keys, logger)
	if err != nil {
		return nil, err
	}
	srv, err := target.NewServer(o.targetConfig(r.backend, logger))
	if err != nil {
		return nil, fmt.Errorf("configure target: %w", err)
	}
	// Each target's metrics carry its shelf and slot; the interface
	// tells apart the targets of one export, and the VLAN two exports of
	// one shelf.slot on one interface (the file allows that: they are two
	// devices).
	vlan := strconv.Itoa(int(o.VLAN))
	labels := prometheus.Labels{"netif": o.Netif, "vlan": vlan}
	if err := s.register(r, labels, srv.Collector()); err != nil {
		return nil, err
	}
	if sealed != nil {
		labels = prometheus.Labels{"netif": o.Netif, "vlan": vlan, "shelf": strconv.Itoa(int(o.Shelf)), "slot": strconv.Itoa(int(o.Slot))}
		if err := s.register(r, labels, seal.Collector("ironblade", sealed.Stats)); err != nil {
			return nil, err
		}
		r.sealed = append(r.sealed, sealed)
	}
	logStart(logger, o, r.backend.Size(), bufSize)
	r.servers = append(r.servers, srv)
	r.opts = append(r.opts, o)
	return link, nil
}

// register adds c, with labels, to the metrics until r stops.
func (s *exportSet) register(r *runningExport, labels prometheus.Labels, c prometheus.Collector) error {
	wrapped := prometheus.WrapRegistererWith(labels, s.reg)
	if err := wrapped.Register(c); err != nil {
		return fmt.Errorf("metrics: register collector: %w", err)
	}
	r.cleanup = append(r.cleanup, func() { wrapped.Unregister(c) })
	return nil
}

// undo runs r's cleanups, last first.
func (r *runningExport) undo() {
	for _, f := range slices.Backward(r.cleanup) {
		f()
	}
	r.cleanup = nil
}

// stop ends r's servers, which finish the requests in flight and sync,
// then closes what start opened.
func (r *runningExport) stop(logger *slog.Logger) {
	r.cancel()
	<-r.done
	for i, srv := range r.servers {
		var sealed *seal.TargetLink
		if len(r.sealed) > 0 {
			sealed = r.sealed[i]
		}
		logStopped(logger.With("export", r.conf.Name, "netif", r.opts[i].Netif), srv, sealed)
	}
	r.undo()
}

// stopAll stops every export.
func (s *exportSet) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range s.running {
		wg.Go(func() { r.stop(s.env.Logger) })
	}
	wg.Wait()
	clear(s.running)
}

// reload applies the configuration file anew. It stops the exports
// removed or changed (and those whose serving failed) first, so that a
// shelf.slot may pass from one export to another, then starts the new
// ones; the exports left as they were only re-read their key files.
func (s *exportSet) reload() {
	logger := s.env.Logger
	conf, err := exportconf.Load(s.file)
	if err != nil {
		logger.Error("SIGHUP: configuration not reloaded; the exports keep running as they were", "err", err)
		return
	}
	want := make(map[string]exportconf.Export, len(conf.Exports))
	for _, e := range conf.Exports {
		want[e.Name] = e
	}
	s.mu.Lock()
	var stopping []*runningExport
	for _, name := range slices.Sorted(maps.Keys(s.running)) {
		r := s.running[name]
		if e, ok := want[name]; ok && e.Equal(r.conf) && !r.hasFailed() {
			continue
		}
		stopping = append(stopping, r)
		delete(s.running, name)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range stopping {
		wg.Go(func() { r.stop(logger) })
	}
	wg.Wait()
	var started, failed, kept, restored []string
	for _, e := range conf.Exports {
		s.mu.Lock()
		r, ok := s.running[e.Name]
		s.mu.Unlock()
		if ok {
			for i, tl := range r.sealed {
				reloadKeys(tl, r.opts[i], logger.With("export", e.Name))
			}
			kept = append(kept, e.Name)
			continue
		}
		if err := s.start(e); err != nil {
			logger.Error("SIGHUP: export not started", "err", err)
			failed = append(failed, e.Name)
			if s.restore(e.Name, stopping) {
				restored = append(restored, e.Name)
			}
			continue
		}
		started = append(started, e.Name)
	}
	var stopped []string
	for _, r := range stopping {
		stopped = append(stopped, r.conf.Name)
	}
	logger.Info("SIGHUP: configuration reloaded", "stopped", stopped, "started", started, "unchanged", kept,
		"failed", failed, "restored", restored)
}

// restore starts again, with its previous settings, the export name that
// reload stopped to change and could not start with the new ones (an
// interface or key file that is not there, say), so that a mistake in the
// file does not take a running export down. It does not when the export
// had failed before, or when another export now serves its device.
func (s *exportSet) restore(name string, stopped []*runningExport) bool {
	logger := s.env.Logger
	i := slices.IndexFunc(stopped, func(r *runningExport) bool { return r.conf.Name == name })
	if i < 0 || stopped[i].hasFailed() {
		return false
	}
	old := stopped[i].conf
	s.mu.Lock()
	taken := false
	for _, r := range s.running {
		taken = taken || r.conf.Shelf == old.Shelf && r.conf.Slot == old.Slot && r.conf.VLAN == old.VLAN
	}
	s.mu.Unlock()
	if taken {
		return false
	}
	if err := s.start(old); err != nil {
		logger.Error("SIGHUP: previous settings not restored either", "export", name, "err", err)
		return false
	}
	logger.Warn("SIGHUP: export keeps its previous settings until the file is fixed", "export", name)
	return true
}

// hasFailed reports whether one of r's servers stopped on an error.
func (r *runningExport) hasFailed() bool {
	select {
	case <-r.failed:
		return true
	default:
		return false
	}
}

// announce makes every export announce itself (SIGUSR1).
func (s *exportSet) announce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.running {
		for i, srv := range r.servers {
			if err := srv.Announce(); err != nil {
				s.env.Logger.Warn("announce failed", "export", r.conf.Name, "netif", r.opts[i].Netif, "err", err)
			}
		}
	}
	s.env.Logger.Info("announced on SIGUSR1", "exports", len(s.running))
}

// status is the STATUS= line for the service manager.
func (s *exportSet) status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("serving %d exports from %s", len(s.running), s.file)
}

// waiting sums the frames waiting in the receive rings of every target's
// link, for the supervisor.
func (s *exportSet) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.running {
		for _, l := range r.links {
			n += linkWaiting(l)
		}
	}
	return n
}

// Stats sums the counters of every target, for the supervisor: it is
// ready once one has announced itself, and healthy while they answer.
func (s *exportSet) Stats() target.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := target.Stats{Dropped: make(map[string]uint64)}
	for _, r := range s.running {
		for _, srv := range r.servers {
			st := srv.Stats()
			sum.FramesIn += st.FramesIn
			sum.FramesOut += st.FramesOut
			sum.SendErrors += st.SendErrors
			for k, n := range st.Dropped {
				sum.Dropped[k] += n
			}
		}
	}
	return sum
}
