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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/internal/metricsrv"
	"github.com/ironblade/ironblade/target"
)

// socketOverhead approximates what the kernel charges a socket buffer for
// one frame beyond its bytes (sk_buff and shared info, alignment). The
// buffers must hold bufcnt whole frames, or the kernel drops the requests
// that the advertised window allows: vblade sizes them by bytes alone and
// loses frames under load.
const socketOverhead = 1024

// maxSocketBuffer caps the socket buffer asked for, whatever -b says.
const maxSocketBuffer = 256 << 20

// serveEnv is what serve needs from the outside world; tests replace the
// network with an in-memory one.
type serveEnv struct {
	Logger *slog.Logger
	// Listen opens the link on the network interface.
	Listen func(netif string, cfg rawlink.Config) (aoe.Link, error)
	// InterfaceMTU reports the interface's MTU, to size socket buffers.
	InterfaceMTU func(netif string) (int, error)
	// Announce delivers SIGUSR1: each value triggers an announcement.
	Announce <-chan os.Signal
	// Reload delivers SIGHUP: each value re-reads the --auth-key files.
	Reload <-chan os.Signal
	// Notify, if set, sends a state ("READY=1", "STATUS=...") to the
	// service manager (see supervisor).
	Notify func(state string)
	// Watchdog, if not zero, is the service manager's watchdog timeout:
	// Notify gets WATCHDOG=1 every half of it while the target is healthy.
	Watchdog time.Duration
	// PacketBacklog, if set, replaces packetBacklog for the watchdog.
	PacketBacklog func() (int, error)
	// ControlDir is where the control socket goes unless --control names
	// one; "" for none.
	ControlDir string
}

// interfaceMTU looks netif up, so that a missing interface gets a clear error.
func interfaceMTU(netif string) (int, error) {
	ifi, err := net.InterfaceByName(netif)
	if err != nil {
		return 0, fmt.Errorf("network interface %q: %w", netif, err)
	}
	return ifi.MTU, nil
}

// socketBufferSize is the socket buffer size for a window of buffers
// frames at mtu: room for each whole frame with the kernel's overhead,
// doubled so a burst arriving while a window is being answered still fits.
func socketBufferSize(buffers, mtu int) int {
	return min(buffers*(mtu+aoe.EthernetHeaderLen+socketOverhead)*2, maxSocketBuffer)
}

// listen opens the link a target serves o on: o's interface and VLAN,
// socket buffers for o's buffer count at the interface's MTU, and
// busyPoll (a process option, which an export from --config does not set).
// It returns the socket buffers' size too, for the start's log line.
func (env serveEnv) listen(o options, busyPoll time.Duration) (link aoe.Link, bufSize int, err error) {
	mtu, err := env.InterfaceMTU(o.Netif)
	if err != nil {
		return nil, 0, err
	}
	bufSize = socketBufferSize(o.Buffers, mtu)
	link, err = env.Listen(o.Netif, rawlink.Config{ReadBuffer: bufSize, WriteBuffer: bufSize, VLAN: o.VLAN, BusyPoll: busyPoll})
	if err != nil {
		return nil, 0, fmt.Errorf("listen on %s: %w", o.Netif, err)
	}
	return link, bufSize, nil
}

// fileOptions translates -o, -l, -d, -r and -s for the backend (sectors to bytes).
func (o *options) fileOptions() target.FileOptions {
	return target.FileOptions{
		Offset:     o.Offset * aoe.SectorSize,
		Length:     o.Length * aoe.SectorSize,
		Direct:     o.Direct,
		ReadOnly:   o.ReadOnly,
		SyncWrites: o.Sync,
	}
}

// targetConfig translates the options into a target configuration.
func (o *options) targetConfig(backend target.Backend, logger *slog.Logger) target.Config {
	return target.Config{
		Shelf:            o.Shelf,
		Slot:             o.Slot,
		Backend:          backend,
		BufferCount:      o.Buffers,
		ReadOnly:         o.ReadOnly,
		SyncWrites:       o.Sync,
		AllowedMACs:      o.MACs,
		StateDir:         o.StateDir,
		AnnounceInterval: o.AnnounceInterval,
		Workers:          o.Workers,
		Version:          releaseVersion(version),
		Logger:           logger,
	}
}

// releaseVersion returns v when it names a release ("v1.2.3", or "1.2-4-gabc"
// from git describe), for the firmware version targets report, and "" (the
// target's default) for a bare commit hash or "devel".
func releaseVersion(v string) string {
	digits := strings.TrimPrefix(v, "v")
	if digits != "" && digits[0] >= '0' && digits[0] <= '9' && strings.Contains(digits, ".") {
		return v
	}
	return ""
}

// serve exports the file until ctx ends, then waits for the requests in
// flight and returns nil. Errors are wrapped with the step that failed.
func serve(ctx context.Context, o options, env serveEnv) (err error) {
	logger := env.Logger

	backend, err := target.OpenFile(o.Filename, o.fileOptions())
	if err != nil {
		return err
	}
	defer func() {
		if cerr := backend.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", o.Filename, cerr)
		}
	}()

	// The keys before the network: a bad key file is a configuration
	// mistake to report first.
	keys, err := loadKeys(o.AuthKeys)
	if err != nil {
		return err
	}

	link, bufSize, err := env.listen(o, o.BusyPoll)
	if err != nil {
		return err
	}
	defer link.Close()
	raw := link // the sealed link wraps it
	sealed, link, err := sealLink(link, o, keys, logger)
	if err != nil {
		return err
	}

	srv, err := target.NewServer(o.targetConfig(backend, logger))
	if err != nil {
		return fmt.Errorf("configure target: %w", err)
	}

	logStart(logger, o, backend.Size(), bufSize)

	collectors := []prometheus.Collector{srv.Collector()}
	if sealed != nil {
		collectors = append(collectors, seal.Collector("ironblade", sealed.Stats))
	}
	stopMetrics, err := startMetrics(o.MetricsAddr, logger, collectors...)
	if err != nil {
		return err
	}
	defer stopMetrics()

	stopControl, err := startControl(o, env, func() []controlExport { return commandLineExport(o, backend.Size(), srv) })
	if err != nil {
		return err
	}
	defer stopControl()

	// Deferred after the link's Close, so it runs before it: no
	// announcement is sent on a closed link.
	sup := newSupervisor(env, o)
	sup.waiting = func() int { return linkWaiting(raw) }
	stopSignals := handleSignals(ctx, env, srv, sealed, o, sup)
	defer stopSignals()

	stopSupervisor := sup.run(ctx, srv)
	serveErr := srv.Serve(ctx, link)
	stopSupervisor()
	logStopped(logger, srv, sealed)
	if serveErr != nil && !errors.Is(serveErr, context.Canceled) {
		return fmt.Errorf("serve e%d.%d on %s: %w", o.Shelf, o.Slot, o.Netif, serveErr)
	}
	return nil
}

// logStart logs vblade's start line, with the settings that vblade's does
// not show; the target logs the rest when it starts serving.
func logStart(logger *slog.Logger, o options, size int64, socketBuffer int) {
	mode := "O_RDWR"
	if o.ReadOnly {
		mode = "O_RDONLY"
	}
	logger.Info(fmt.Sprintf("pid %d: e%d.%d, %d sectors %s", os.Getpid(), o.Shelf, o.Slot, size/aoe.SectorSize, mode),
		"netif", o.Netif, "vlan", o.VLAN, "file", o.Filename, "offset", o.Offset, "direct", o.Direct,
		"allowed_macs", len(o.MACs), "socket_buffer", socketBuffer, "version", version)
}

// handleSignals answers SIGUSR1 by announcing the target and SIGHUP by
// re-reading the --auth-key files (sealed is nil without them) between
// sup's RELOADING=1 and READY=1, in a goroutine, until ctx ends or the
// returned function is called; that function returns once the goroutine
// is gone.
func handleSignals(ctx context.Context, env serveEnv, srv *target.Server, sealed *seal.TargetLink, o options, sup *supervisor) (stop func()) {
	logger := env.Logger
	sigCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-sigCtx.Done():
				return
			case <-env.Reload:
				sup.reload(func() {
					if sealed != nil {
						reloadKeys(sealed, o, logger)
					} else {
						logger.Info("SIGHUP: nothing to reload (no --auth-key)")
					}
				})
			case <-env.Announce:
				if err := srv.Announce(); err != nil {
					logger.Warn("announce failed", "err", err)
				} else {
					logger.Info("announced on SIGUSR1")
				}
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// logStopped logs what the target, and the authentication layer if any,
// did while serving.
func logStopped(logger *slog.Logger, srv *target.Server, sealed *seal.TargetLink) {
	st := srv.Stats()
	logger.Info("stopped", "frames_in", st.FramesIn, "frames_out", st.FramesOut,
		"bytes_read", st.BytesRead, "bytes_written", st.BytesWritten,
		"syncs", st.Syncs, "synced_writes", st.SyncedWrites)
	if sealed != nil {
		a := sealed.Stats()
		logger.Info("authentication", "handshakes", a.Handshakes, "frames_opened", a.FramesOpened,
			"frames_sealed", a.FramesSealed, "unsealed_accepted", a.UnsealedAccepted, "rejected", a.Rejected)
	}
}

// startMetrics serves the target's metrics, with the Go runtime's, the
// process's and ironblade_build_info, at http://addr/metrics. An empty addr
// serves nothing. The returned function shuts the server down.
func startMetrics(addr string, logger *slog.Logger, cs ...prometheus.Collector) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	reg := metricsrv.NewRegistry("ironblade", version)
	if err := metricsrv.Register(reg, cs...); err != nil {
		return nil, err
	}
	_, stop, err = metricsrv.Serve(addr, reg, logger)
	return stop, err
}

// linkWaiting is the number of frames waiting in link's receive ring, if it
// has one.
func linkWaiting(link aoe.Link) int {
	if w, ok := link.(interface{ Waiting() int }); ok {
		return w.Waiting()
	}
	return 0
}
