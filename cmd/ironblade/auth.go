package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/crypto/seal"
)

// loadKeys reads the --auth-key files.
func loadKeys(files []string) ([]seal.Key, error) {
	var keys []seal.Key
	for _, f := range files {
		k, err := seal.LoadKeyFile(f)
		if err != nil {
			return nil, fmt.Errorf("--auth-key: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keyIDs names keys for the log.
func keyIDs(keys []seal.Key) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = fmt.Sprintf("%08x", k.ID)
	}
	return strings.Join(ids, ",")
}

// sealLink puts the authentication layer on link when the export is keyed,
// and returns the layer (nil when it is not) and the link to serve on.
func sealLink(link aoe.Link, o options, keys []seal.Key, logger *slog.Logger) (*seal.TargetLink, aoe.Link, error) {
	if len(keys) == 0 {
		return nil, link, nil
	}
	tl, err := seal.NewTargetLink(link, seal.TargetConfig{
		Exports: []seal.Export{o.export(keys)},
		Mode:    o.AuthMode,
		Logger:  logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("authentication: %w", err)
	}
	logger.Info("authentication on: initiators must prove the key", "mode", o.AuthMode, "keys", keyIDs(keys),
		"encryption_required", o.AuthEncrypt)
	if o.AuthMode == seal.ModeOptional {
		logger.Warn("--auth-mode optional: plain (unauthenticated) initiators may also read and write this export")
	}
	return tl, tl, nil
}

// reloadKeys re-reads the key files on SIGHUP: a key added is accepted at
// once, sessions made with a key removed end. A file that fails to load
// keeps the keys in force.
func reloadKeys(tl *seal.TargetLink, o options, logger *slog.Logger) {
	keys, err := loadKeys(o.AuthKeys)
	if err == nil {
		err = tl.SetExports([]seal.Export{o.export(keys)})
	}
	if err != nil {
		logger.Error("SIGHUP: keys not reloaded; the old ones stay in force", "err", err)
		return
	}
	logger.Info("SIGHUP: keys reloaded", "keys", keyIDs(keys))
}

// export is the keyed export the options describe.
func (o *options) export(keys []seal.Key) seal.Export {
	return seal.Export{Device: seal.DeviceAddr{Shelf: o.Shelf, Slot: o.Slot}, Keys: keys, RequireEncryption: o.AuthEncrypt}
}
