package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/initiator/nbd"
)

// Timings of serve.
const (
	// lookupWait is how long a client asking for a device that may yet
	// appear waits for it in the handshake, so that a client started
	// together with serve need not retry.
	lookupWait = 10 * time.Second
	// devicePoll is how often serve looks for new devices when it
	// exports every device.
	devicePoll = 250 * time.Millisecond
)

// exportSet is serve's nbd.Exports: the devices identified so far. A client
// asking for a device that is not there yet but may come (one named on the
// command line, or any device when none was) waits for it a while.
type exportSet struct {
	exports nbd.ExportMap
	// expected reports whether an export name may still appear.
	expected func(name string) bool
	wait     time.Duration
	stop     <-chan struct{}
	// asked, if set, hears of each expected name a client waits for, so
	// that the device can be looked for at once.
	asked func(name string)

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when an export is added
}

// newExportSet returns an empty set expecting the named devices, or any
// device if names is empty. Waits end when stop is closed.
func newExportSet(names []deviceAddr, wait time.Duration, stop <-chan struct{}) *exportSet {
	want := make(map[string]bool)
	for _, a := range names {
		want[a.String()] = true
	}
	expected := func(name string) bool {
		if len(want) > 0 {
			return want[name]
		}
		a, err := parseDeviceName(name)
		return err == nil && a.String() == name // the canonical name only
	}
	return &exportSet{expected: expected, wait: wait, stop: stop, changed: make(chan struct{})}
}

// add exports b as name.
func (e *exportSet) add(name, description string, b nbd.Backend) {
	e.exports.Add(name, description, b)
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// Lookup implements nbd.Exports.
func (e *exportSet) Lookup(name string) (nbd.Backend, bool) {
	var timeout <-chan time.Time
	for {
		e.mu.Lock()
		changed := e.changed
		e.mu.Unlock()
		if b, ok := e.exports.Lookup(name); ok {
			return b, true
		}
		if !e.expected(name) {
			return nil, false
		}
		if timeout == nil {
			t := time.NewTimer(e.wait)
			defer t.Stop()
			timeout = t.C
			if e.asked != nil {
				e.asked(name)
			}
		}
		select {
		case <-changed:
		case <-timeout:
			return nil, false
		case <-e.stop:
			return nil, false
		}
	}
}

// List implements nbd.Exports.
func (e *exportSet) List() []nbd.ExportInfo { return e.exports.List() }

// names lists the export names.
func (e *exportSet) names() []string {
	var names []string
	for _, x := range e.exports.List() {
		names = append(names, x.Name)
	}
	return names
}

// describe is an export's description: what IDENTIFY said of the device.
func describe(d *initiator.Device) string {
	st := d.Stats()
	s := "AoE device " + d.Name()
	if m := strings.TrimSpace(st.Model); m != "" {
		s += ", " + m
	}
	if sn := strings.TrimSpace(st.Serial); sn != "" {
		s += ", serial " + sn
	}
	return s
}

// serve exports AoE devices over NBD until ctx is done, then drains the
// connections, flushes the devices and returns.
func serve(ctx context.Context, o serveOptions, env *environment) error {
	log := env.Logger
	started := time.Now()
	eng, err := startEngine(ctx, o.Engine, env)
	if err != nil {
		return err
	}
	defer eng.stop()
	_, stopMetrics, err := startMetrics(o.Metrics, eng, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	// serveCtx also ends when a listener fails for good.
	serveCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	exports := newExportSet(o.Devices, lookupWait, serveCtx.Done())

	listeners, addrs, err := listenNBD(o, log)
	if err != nil {
		return err
	}

	status := func() processStatus {
		return processStatus{
			PID: os.Getpid(), Command: "serve", Version: version, Started: started,
			Interfaces: eng.interfaces, Listeners: addrs, Exports: exports.names(), Stats: eng.ini.Stats(), Auth: eng.authStats(),
		}
	}
	ctl, err := startControl(o.ControlDir, status, log)
	if err != nil {
		log.Warn("no control socket: ironaoe stat will not see this process", "err", err)
	}
	defer ctl.Close()

	x := newExporter(serveCtx, eng.ini, exports, log)
	exports.asked = x.watchName
	var wg sync.WaitGroup
	wg.Go(func() { x.run(o.Devices) })
	srv := &nbd.Server{Exports: exports, Logger: log}
	for n, l := range listeners {
		wg.Go(func() {
			if err := srv.Serve(serveCtx, l); err != nil {
				log.Error("NBD listener failed; stopping", "listener", addrs[n], "err", err)
				cancel(err)
			}
		})
	}
	log.Info("serving NBD", "listeners", strings.Join(addrs, " "), "interfaces", strings.Join(eng.interfaces, ","),
		"devices", devicesWanted(o.Devices))
	defer sdReady(ctx, log, "serving NBD on "+strings.Join(addrs, " ")+", devices "+devicesWanted(o.Devices))()
	<-serveCtx.Done()
	log.Info("stopping: finishing NBD requests in flight")
	wg.Wait()
	eng.flush(env)
	eng.stop()
	if err := context.Cause(serveCtx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

// listenNBD opens serve's NBD listeners, --unix and --tcp, and returns
// them with their addresses for the log and stat ("unix:PATH",
// "tcp:HOST:PORT"). The caller hands each to nbd.Server.Serve, which
// closes it. Under systemd socket activation it returns the sockets
// systemd passed instead.
func listenNBD(o serveOptions, log *slog.Logger) ([]net.Listener, []string, error) {
	if ls, addrs, err := activatedListeners(log); err != nil || len(ls) > 0 {
		if err == nil {
			err = checkActivated(ls, o.TCPAny)
		}
		return ls, addrs, err // systemd socket activation
	}
	var listeners []net.Listener
	var addrs []string
	if o.Unix != "" {
		l, err := nbd.ListenUnix(o.Unix)
		if err != nil {
			return nil, nil, err
		}
		listeners, addrs = append(listeners, l), append(addrs, "unix:"+o.Unix)
	}
	if o.TCP != "" {
		l, err := nbd.ListenTCP(o.TCP)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, nil, err
		}
		listeners, addrs = append(listeners, l), append(addrs, "tcp:"+l.Addr().String())
		if a, ok := l.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
			log.Warn("NBD listening beyond this host, without authentication: anyone who can reach it "+
				"can read and overwrite the devices", "address", a.String())
		}
	}
	return listeners, addrs, nil
}

// checkActivated holds sockets systemd passed to the rule --tcp holds:
// NBD has no authentication, so a TCP socket on a non-loopback address
// needs --tcp-any. On refusal it closes them all.
func checkActivated(ls []net.Listener, tcpAny bool) error {
	for _, l := range ls {
		if a, ok := l.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() && !tcpAny {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("socket activation passed NBD a TCP socket on %s, beyond this host: anyone who could "+
				"reach it could read and overwrite the disks: add --tcp-any to serve there anyway", a)
		}
	}
	return nil
}

// devicesWanted says which devices serve exports, for its start-up log.
func devicesWanted(names []deviceAddr) string {
	if len(names) == 0 {
		return "all"
	}
	s := make([]string, len(names))
	for n, a := range names {
		s[n] = a.String()
	}
	return strings.Join(s, ",")
}

// exporter adds each device to an exportSet once it is identified: the
// named ones, or every one the initiator finds, now or later, and any a
// client asks for, if none is named.
type exporter struct {
	ctx     context.Context
	ini     *initiator.Initiator
	exports *exportSet
	log     *slog.Logger

	mu       sync.Mutex
	watching map[deviceAddr]bool
	done     bool // run is returning: watch starts nothing more
	wg       sync.WaitGroup
}

// newExporter returns an exporter that watches devices until ctx is done.
func newExporter(ctx context.Context, ini *initiator.Initiator, exports *exportSet, log *slog.Logger) *exporter {
	return &exporter{ctx: ctx, ini: ini, exports: exports, log: log, watching: make(map[deviceAddr]bool)}
}

// watch waits, in a goroutine, for the device at a to be identified (asking
// for it meanwhile) and then exports it. It does nothing for a device
// already watched.
func (x *exporter) watch(a deviceAddr) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done || x.watching[a] {
		return
	}
	x.watching[a] = true
	x.wg.Go(func() {
		d, err := x.ini.Device(x.ctx, a.Shelf, a.Slot)
		if err != nil {
			return // ctx ended, or the initiator stopped
		}
		x.exports.add(a.String(), describe(d), d)
		x.log.Info("exporting device", "export", a.String(), "bytes", d.Size())
	})
}

// watchName is watch for an export name.
func (x *exporter) watchName(name string) {
	if a, err := parseDeviceName(name); err == nil {
		x.watch(a)
	}
}

// run watches the named devices, or every device the initiator finds if
// none is named, until ctx is done; then it waits for its goroutines.
func (x *exporter) run(names []deviceAddr) {
	defer func() {
		x.mu.Lock()
		x.done = true
		x.mu.Unlock()
		x.wg.Wait()
	}()
	for _, a := range names {
		x.log.Info("waiting for device", "device", a.String())
		x.watch(a)
	}
	if len(names) > 0 {
		<-x.ctx.Done()
		return
	}
	t := time.NewTicker(devicePoll)
	defer t.Stop()
	for {
		for _, d := range x.ini.Devices() {
			x.watch(deviceAddr{Shelf: d.Shelf(), Slot: d.Slot()})
		}
		select {
		case <-x.ctx.Done():
			return
		case <-t.C:
		}
	}
}
