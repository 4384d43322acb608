package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// sdNotify sends state to the service manager (Type=notify) through
// $NOTIFY_SOCKET; it does nothing when that is unset. A failure is logged,
// not returned: a lost message is no reason to stop serving.
func sdNotify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("systemd notify failed", "state", state, "err", err)
	}
}

// sdReady tells the service manager the command is ready (serve: its NBD
// listeners accept; attach: /dev/nbdN is attached), with status for
// `systemctl status`, and arranges STOPPING=1 for when ctx ends (SIGTERM,
// SIGINT). The returned function cancels that arrangement.
func sdReady(ctx context.Context, log *slog.Logger, status string) (stop func() bool) {
	sdNotify(log, "READY=1\nSTATUS="+status)
	return context.AfterFunc(ctx, func() {
		sdNotify(log, "STOPPING=1\nSTATUS=stopping: finishing the requests in flight and flushing")
	})
}

// activatedListeners returns the listening sockets systemd passed
// (socket activation: LISTEN_FDS, for this process's LISTEN_PID) with
// their addresses for the log and stat, or none if it passed none. It
// fails if a passed socket is not a stream socket that listens.
func activatedListeners(log *slog.Logger) ([]net.Listener, []string, error) {
	files := activation.Files(true)
	var listeners []net.Listener
	var addrs []string
	for _, f := range files {
		l, err := net.FileListener(f)
		f.Close() // FileListener holds a duplicate
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, nil, fmt.Errorf("socket activation: %s: not a listening stream socket: %w", f.Name(), err)
		}
		listeners = append(listeners, l)
		addrs = append(addrs, l.Addr().Network()+":"+l.Addr().String())
	}
	if len(listeners) > 0 {
		log.Info("socket activation: serving on the sockets systemd passed, not on --unix or --tcp", "sockets", len(listeners))
	}
	return listeners, addrs, nil
}
