package main

import (
	"context"
	"errors"
	"fmt"
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
// It prints the /dev/nbdN path once the device is usable.
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
	fmt.Fprintln(env.Stdout, kdev.Path())
	defer sdReady(ctx, log, "attached "+dev.Name()+" as "+kdev.Path())()

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
		Backend:         "ironaoe:" + dev.Name(),
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
