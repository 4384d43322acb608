package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/initiator"
)

// flushTimeout bounds the flush of each device when a command stops.
const flushTimeout = 30 * time.Second

// engine is a running initiator on its links.
type engine struct {
	ini        *initiator.Initiator
	interfaces []string
	cancel     context.CancelFunc
	done       chan struct{}
	stopOnce   sync.Once
}

// startEngine opens a link on each interface (the default ones if none is
// named) and runs an initiator on them until stop. The initiator does not
// stop with ctx: the commands stop it themselves, once the I/O it carries
// has drained.
func startEngine(ctx context.Context, o engineOptions, env *environment) (*engine, error) {
	names := o.Interfaces
	if len(names) == 0 {
		var err error
		if names, err = env.DefaultInterfaces(); err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, errors.New("no network interface to use: none is up, Ethernet and not a loopback; name one with -i")
		}
	}
	names = slices.Compact(slices.Sorted(slices.Values(names)))
	var links []aoe.Link
	closeLinks := func() {
		for _, l := range links {
			l.Close()
		}
	}
	for _, name := range names {
		l, err := env.Listen(name, o.VLAN)
		if err != nil {
			closeLinks()
			return nil, fmt.Errorf("interface %s: %w", name, err)
		}
		links = append(links, l)
	}
	cfg := o.Config
	cfg.Links, cfg.Logger = links, env.Logger
	ini, err := initiator.New(cfg)
	if err != nil {
		closeLinks()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &engine{ini: ini, interfaces: names, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		if err := ini.Run(runCtx); err != nil {
			env.Logger.Error("initiator stopped", "err", err)
		}
	}()
	env.Logger.Debug("initiator running", "interfaces", strings.Join(names, ","))
	return e, nil
}

// stop stops the initiator and waits until it has closed its links. It may
// be called more than once.
func (e *engine) stop() {
	e.stopOnce.Do(e.cancel)
	<-e.done
}

// flush flushes every identified device, so that writes acknowledged to
// NBD clients are durable before the process exits, and logs failures.
func (e *engine) flush(env *environment) {
	var wg sync.WaitGroup
	for _, d := range e.ini.Devices() {
		if d.Size() == 0 {
			continue // never identified: nothing was written
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
			defer cancel()
			if err := d.Flush(ctx); err != nil {
				env.Logger.Error("flush failed", "device", d.Name(), "err", err)
			}
		})
	}
	wg.Wait()
}
