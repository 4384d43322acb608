package target

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/ironblade/ironblade/aoe"
)

// access is an immutable snapshot of the lists that decide who is served.
// The hot path loads it atomically; edits publish a new one.
type access struct {
	mask    []aoe.MAC // MAC mask list: when not empty, only these are served
	reserve []aoe.MAC // reserve list: when not empty, only these may use ATA
}

// masked reports whether the mask list excludes src.
func (a *access) masked(src aoe.MAC) bool {
	return len(a.mask) > 0 && !slices.Contains(a.mask, src)
}

// reservedAgainst reports whether the reserve list excludes src.
func (a *access) reservedAgainst(src aoe.MAC) bool {
	return len(a.reserve) > 0 && !slices.Contains(a.reserve, src)
}

// persistedState is the JSON form of the state kept in Config.StateDir.
type persistedState struct {
	Shelf uint16 `json:"shelf"`
	Slot  uint8  `json:"slot"`
	// ConfigString is base64 in JSON: it may hold any bytes.
	ConfigString []byte   `json:"config_string"`
	MACMask      []string `json:"mac_mask"`
	Reserve      []string `json:"reserve"`
}

// statePath names the state file of a shelf.slot in dir.
func statePath(dir string, shelf uint16, slot uint8) string {
	return filepath.Join(dir, fmt.Sprintf("e%d.%d.json", shelf, slot))
}

// loadState reads a state file. A missing file is not an error: found is
// false.
func loadState(path string) (st persistedState, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("target: load state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("target: load state %s: %w", path, err)
	}
	if len(st.ConfigString) > aoe.MaxConfigStringLen {
		return st, false, fmt.Errorf("target: load state %s: %d-byte config string", path, len(st.ConfigString))
	}
	if len(st.MACMask) > MaxMACMask || len(st.Reserve) > 255 {
		return st, false, fmt.Errorf("target: load state %s: list too long", path)
	}
	return st, true, nil
}

// parseMACs parses the addresses of a state file.
func parseMACs(ss []string) ([]aoe.MAC, error) {
	var macs []aoe.MAC
	for _, s := range ss {
		m, err := aoe.ParseMAC(s)
		if err != nil {
			return nil, fmt.Errorf("target: load state: %w", err)
		}
		macs = append(macs, m)
	}
	return macs, nil
}

func formatMACs(macs []aoe.MAC) []string {
	ss := make([]string, 0, len(macs))
	for _, m := range macs {
		ss = append(ss, m.String())
	}
	return ss
}

// saveState writes st to path atomically and durably: a temporary file in
// the same directory is written and fsynced, renamed over path, and the
// directory fsynced, so a crash leaves either the old or the new state.
func saveState(path string, st persistedState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("target: save state: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("target: save state: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("target: save state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("target: save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("target: save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("target: save state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("target: save state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("target: save state: sync %s: %w", dir, err)
	}
	return nil
}

// loadInitialState fills the server's config string and lists from the
// state file, if there is one, else from Config.
func (s *Server) loadInitialState() error {
	acc := &access{mask: slices.Clone(s.cfg.AllowedMACs)}
	if s.statePath == "" {
		s.access.Store(acc)
		return nil
	}
	if err := os.MkdirAll(s.cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("target: state dir: %w", err)
	}
	st, found, err := loadState(s.statePath)
	if err != nil {
		return err
	}
	if !found {
		s.access.Store(acc)
		return s.saveLocked() // record the initial lists at once
	}
	mask, err := parseMACs(st.MACMask)
	if err != nil {
		return err
	}
	reserve, err := parseMACs(st.Reserve)
	if err != nil {
		return err
	}
	if len(s.cfg.AllowedMACs) > 0 && !slices.Equal(mask, s.cfg.AllowedMACs) {
		s.log.Warn("MAC mask list from the state dir replaces the configured one",
			"state", s.statePath, "mask", formatMACs(mask), "configured", formatMACs(s.cfg.AllowedMACs))
	}
	s.configString = st.ConfigString
	s.access.Store(&access{mask: mask, reserve: reserve})
	s.log.Info("loaded state", "path", s.statePath, "config", string(st.ConfigString),
		"mask", len(mask), "reserve", len(reserve))
	return nil
}

// saveLocked persists the current state, if there is a state dir. The
// caller holds s.stateMu (or is NewServer).
func (s *Server) saveLocked() error {
	if s.statePath == "" {
		return nil
	}
	acc := s.access.Load()
	return saveState(s.statePath, persistedState{
		Shelf:        s.cfg.Shelf,
		Slot:         s.cfg.Slot,
		ConfigString: s.configString,
		MACMask:      formatMACs(acc.mask),
		Reserve:      formatMACs(acc.reserve),
	})
}

// persistLocked saves the state after a change and logs a failure: the
// change stays in effect (the initiator was told so), but would not
// survive a restart.
func (s *Server) persistLocked() {
	s.saveErr = s.saveLocked()
	if s.saveErr != nil {
		s.log.Error("state change not saved", "err", s.saveErr)
	}
}

// setConfigString applies a Query Config set or force set and reports the
// string in effect and whether the request was refused because a
// different string is set.
func (s *Server) setConfigString(str []byte, force bool) (refused bool) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if bytes.Equal(s.configString, str) {
		return false
	}
	if !force && len(s.configString) > 0 {
		return true
	}
	s.configString = bytes.Clone(str)
	s.log.Info("config string set", "config", string(str), "force", force)
	s.persistLocked()
	return false
}
