package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/initiator/nbd"
	"github.com/ironblade/ironblade/initiator/nbdkernel"
)

// deadConnTimeout is how long the kernel holds I/O while it has no live
// connection: the nbdkernel.Device hands it a new one within moments, so
// a few seconds keep a reconnect from failing I/O.
const deadConnTimeout = 10 * time.Second

// attach serves one AoE device to the kernel's nbd driver until ctx is done
// (then it detaches the device) or the device is detached by someone else.
// It prints the /dev/nbdN path once the device is usable, or with --json
// an attachResult.
func attach(ctx context.Context, o attachOptions, env *environment) error {
	log := env.Logger
	started := time.Now()
	// Check before anything else, so a missing module fails at once.
	if err := nbdkernel.Available(); err != nil {
		return err
	}
	eng, err := startEngine(ctx, o.Engine, env)
	if err != nil {
		return err
	}
	defer eng.stop()
	metricsURL, stopMetrics, err := startMetrics(o.Metrics, eng, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	waitCtx := ctx
	if o.Wait > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, o.Wait)
		defer cancel()
	}
	log.Info("waiting for device", "device", o.Device.String(), "interfaces", strings.Join(eng.interfaces, ","))
	dev, err := eng.ini.Device(waitCtx, o.Device.Shelf, o.Device.Slot)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting: nothing to undo
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("device %s did not answer within %v on %s", o.Device, o.Wait, strings.Join(eng.interfaces, ","))
		}
		return err
	}

	kdev, err := attachKernel(ctx, o, dev, log)
	if err != nil {
		return err
	}
	status := func() processStatus {
		return processStatus{
			PID: os.Getpid(), Command: "attach", Version: version, Started: started,
			Interfaces: eng.interfaces, Exports: []string{dev.Name()}, Attached: kdev.Path(), Stats: eng.ini.Stats(), Auth: eng.authStats(),
		}
	}
	ctl, err := startControl(o.ControlDir, status, log)
	if err != nil {
		log.Warn("no control socket: ironaoe stat will not see this process", "err", err)
	}
	defer ctl.Close()
	if err := printAttached(env.Stdout, o, newAttachResult(o, dev, kdev, ctl, metricsURL)); err != nil {
		return err
	}
	defer sdReady(ctx, log, "attached "+dev.Name()+" as "+kdev.Path())()

	if kdev.Wait(ctx) == nil {
		log.Info("device detached", "device", kdev.Path())
	} else {
		log.Info("stopping: detaching", "device", kdev.Path())
		if err := kdev.Detach(); err != nil {
			return err
		}
	}
	eng.flush(env)
	return nil
}

// attachKernel hands dev to the kernel's nbd driver as /dev/nbdN, served
// over NBD sockets in this process until ctx is done or the device is
// detached.
func attachKernel(ctx context.Context, o attachOptions, dev *initiator.Device, log *slog.Logger) (*nbdkernel.Device, error) {
	srv := &nbd.Server{Logger: log}
	return nbdkernel.Attach(ctx, nbdkernel.Config{
		Index:           o.Index,
		Size:            dev.Size(),
		BlockSize:       o.BlockSize,
		DeadConnTimeout: deadConnTimeout,
		ServerFlags:     uint64(nbd.TransmissionFlags(dev)),
		Connections:     o.Connections,
		Backend:         backendID(dev.Name()),
		Serve: func(ctx context.Context, c net.Conn) error {
			return srv.ServeTransmission(ctx, c, dev)
		},
		Logger: log,
	})
}

// detach disconnects /dev/nbdN, whichever process attached it; that
// process then sees its device detached and exits.
func detach(o detachOptions, env *environment) error {
	if err := nbdkernel.Available(); err != nil {
		return err
	}
	if err := nbdkernel.Detach(o.Index); err != nil {
		return err
	}
	env.Logger.Debug("detached", "device", fmt.Sprintf("/dev/nbd%d", o.Index))
	return nil
}

// attachResult is what attach --json prints once the device is usable.
type attachResult struct {
	// Device is the AoE device, eSHELF.SLOT.
	Device string `json:"device"`
	Shelf  uint16 `json:"shelf"`
	Slot   uint8  `json:"slot"`
	// Path is the block device, /dev/nbdN, and Index its N.
	Path  string `json:"path"`
	Index int    `json:"index"`
	// Backend is the nbd driver's backend identifier, which the udev
	// rule (scripts/udev) names /dev/aoe/eSHELF.SLOT after.
	Backend     string `json:"backend"`
	Size        int64  `json:"size"`
	BlockSize   int64  `json:"block_size"`
	Connections int    `json:"connections"`
	PID         int    `json:"pid"`
	// Control is the control socket for ironaoe stat ("" without one);
	// Metrics the metrics URL ("" without --metrics).
	Control string `json:"control,omitempty"`
	Metrics string `json:"metrics,omitempty"`
}

// backendID is the nbd backend identifier attach gives a device: the
// udev rule matches its prefix.
func backendID(device string) string { return "ironaoe:" + device }

// newAttachResult describes dev attached as kdev.
func newAttachResult(o attachOptions, dev *initiator.Device, kdev *nbdkernel.Device, ctl *controlServer, metricsURL string) attachResult {
	r := attachResult{
		Device: dev.Name(), Shelf: dev.Shelf(), Slot: dev.Slot(), Path: kdev.Path(), Index: kdev.Index(),
		Backend: backendID(dev.Name()), Size: dev.Size(), BlockSize: o.BlockSize, Connections: o.Connections,
		PID: os.Getpid(), Metrics: metricsURL,
	}
	if ctl != nil {
		r.Control = ctl.path
	}
	return r
}

// printAttached prints the attached device: its path alone, or with
// --json the whole attachResult.
func printAttached(w io.Writer, o attachOptions, r attachResult) error {
	if o.JSON {
		return writeJSON(w, r)
	}
	_, err := fmt.Fprintln(w, r.Path)
	return err
}
