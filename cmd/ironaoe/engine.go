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
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/initiator"
)

// socketBuffer sizes the initiator's socket buffers, read and write:
// generous, so that a burst of answers to a full window (64 jumbo frames
// for each of several targets) is never dropped by the kernel. A target
// sizes its own from its advertised buffer count instead.
const socketBuffer = 4 << 20

// flushTimeout bounds the flush of each device when a command stops.
const flushTimeout = 30 * time.Second

// engine is a running initiator on its links.
type engine struct {
	ini        *initiator.Initiator
	seals      []*seal.InitiatorLink // the sealing layers, with --auth-key
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
	names, err := engineInterfaces(o, env)
	if err != nil {
		return nil, err
	}
	var authCfg seal.InitiatorConfig
	if len(o.AuthKeys) > 0 {
		if authCfg, err = loadAuthConfig(o.AuthKeys); err != nil {
			return nil, err
		}
		authCfg.Logger, authCfg.Encrypt = env.Logger, o.AuthEncrypt
	}
	links, seals, err := openLinks(names, o, authCfg, env)
	if err != nil {
		return nil, err
	}
	cfg := o.Config
	cfg.Links, cfg.Logger = links, env.Logger
	ini, err := initiator.New(cfg)
	if err != nil {
		closeLinks(links)
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if len(seals) > 0 {
		env.Logger.Info("authentication on: only targets that prove the key are used", "keys", describeKeys(authCfg))
	}
	e := &engine{ini: ini, seals: seals, interfaces: names, cancel: cancel, done: make(chan struct{})}
	if len(seals) > 0 && env.Reload != nil {
		go e.reloadKeys(runCtx, o.AuthKeys, env)
	}
	go func() {
		defer close(e.done)
		if err := ini.Run(runCtx); err != nil {
			env.Logger.Error("initiator stopped", "err", err)
		}
	}()
	env.Logger.Debug("initiator running", "interfaces", strings.Join(names, ","))
	return e, nil
}

// engineInterfaces returns the interfaces named with -i, or else the
// default ones, sorted and without duplicates.
func engineInterfaces(o engineOptions, env *environment) ([]string, error) {
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
	return slices.Compact(slices.Sorted(slices.Values(names))), nil
}

// openLinks opens a link on each interface, under the sealing layer when
// there are --auth-key files, and returns the links for the initiator and
// the sealing layers. On an error it closes what it opened.
func openLinks(names []string, o engineOptions, authCfg seal.InitiatorConfig, env *environment) ([]aoe.Link, []*seal.InitiatorLink, error) {
	var links []aoe.Link
	var seals []*seal.InitiatorLink
	cfg := rawlink.Config{ReadBuffer: socketBuffer, WriteBuffer: socketBuffer, VLAN: o.VLAN}
	for _, name := range names {
		l, err := env.Listen(name, cfg)
		if err != nil {
			closeLinks(links)
			return nil, nil, fmt.Errorf("interface %s: %w", name, err)
		}
		if len(o.AuthKeys) > 0 {
			sl, err := seal.NewInitiatorLink(l, authCfg)
			if err != nil {
				l.Close()
				closeLinks(links)
				return nil, nil, fmt.Errorf("authentication: %w", err)
			}
			seals = append(seals, sl)
			l = sl
		}
		links = append(links, l)
	}
	return links, seals, nil
}

// closeLinks closes links, for a start-up that failed.
func closeLinks(links []aoe.Link) {
	for _, l := range links {
		l.Close()
	}
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

// authStats reports the sealing layers' state, one per link (nil without
// --auth-key).
func (e *engine) authStats() []seal.Stats {
	var out []seal.Stats
	for _, s := range e.seals {
		out = append(out, s.Stats())
	}
	return out
}

// describeKeys names the keys in force for the log.
func describeKeys(cfg seal.InitiatorConfig) string {
	var parts []string
	if cfg.DefaultKey.Valid() {
		parts = append(parts, fmt.Sprintf("every device: %08x", cfg.DefaultKey.ID))
	}
	for d, k := range cfg.Keys {
		parts = append(parts, fmt.Sprintf("%s: %08x", d, k.ID))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// reloadKeys re-reads the key files at each SIGHUP until ctx ends: every
// session then starts a new handshake under the keys read, and keeps
// carrying I/O until that one is confirmed. A file that fails to load
// keeps the keys in force.
func (e *engine) reloadKeys(ctx context.Context, args []authKeyArg, env *environment) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-env.Reload:
		}
		cfg, err := loadAuthConfig(args)
		for _, s := range e.seals {
			if err == nil {
				err = s.SetKeys(cfg.Keys, cfg.DefaultKey)
			}
		}
		if err != nil {
			env.Logger.Error("SIGHUP: keys not reloaded; the old ones stay in force", "err", err)
			continue
		}
		env.Logger.Info("SIGHUP: keys reloaded; sessions rekey", "keys", describeKeys(cfg))
	}
}
