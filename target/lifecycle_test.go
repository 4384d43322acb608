package target

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
)

func TestStateDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	disk := newMemDisk(testSectors)
	withState := withConfig(func(c *Config) { c.StateDir = dir; c.Backend = disk })

	h := newHarness(t, withState)
	c := h.client
	checkResponse(t, c.roundTrip(t, configReq(t, c, aoe.ConfigSet, "cluster-1")), 0)
	checkResponse(t, c.roundTrip(t, maskReq(t, c, aoe.MACMaskEdit, add(clientMAC), add(otherMAC))), 0)
	checkResponse(t, c.roundTrip(t, reserveReq(t, c, aoe.ReserveSet, clientMAC)), 0)
	h.stop()

	path := filepath.Join(dir, "e1.2.json")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("state file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want just the state file", len(entries))
	}

	// A new server on the same directory starts with the saved state
	// (its mask list means it announces to the listed stations only).
	h2 := newHarness(t, withState)
	c2 := h2.client
	if err := h2.srv.Announce(); err != nil {
		t.Fatal(err)
	}
	if a := c2.expectAnnounce(t); string(decodeConfig(t, a).String) != "cluster-1" {
		t.Errorf("announcement carries %q", decodeConfig(t, a).String)
	}
	if got := decodeConfig(t, c2.roundTrip(t, configReq(t, c2, aoe.ConfigRead, ""))).String; string(got) != "cluster-1" {
		t.Errorf("config string after restart: %q", got)
	}
	if got := maskMACs(decodeMask(t, c2.roundTrip(t, maskReq(t, c2, aoe.MACMaskRead)))); !slices.Equal(got, []aoe.MAC{clientMAC, otherMAC}) {
		t.Errorf("mask after restart: %v", got)
	}
	if got := decodeReserve(t, c2.roundTrip(t, reserveReq(t, c2, aoe.ReserveRead))); !slices.Equal(got, []aoe.MAC{clientMAC}) {
		t.Errorf("reservation after restart: %v", got)
	}

	// Another slot in the same directory has its own file.
	other, err := NewServer(Config{Shelf: 1, Slot: 3, Backend: disk, StateDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(other.configString) != 0 || len(other.access.Load().mask) != 0 {
		t.Error("slot 3 inherited slot 2's state")
	}
	if _, err := os.Stat(filepath.Join(dir, "e1.3.json")); err != nil {
		t.Errorf("slot 3 state file: %v", err)
	}
}

func TestStateDirCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "e1.2.json")
	for _, content := range []string{"{not json", `{"mac_mask": ["zz"]}`, `{"config_string": "` + strings.Repeat("QUFB", 400) + `"}`} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := NewServer(Config{Shelf: 1, Slot: 2, Backend: newMemDisk(8), StateDir: dir, Logger: testLogger(t)})
		if err == nil {
			t.Errorf("state %q accepted", content)
		}
	}
}

func TestAnnounce(t *testing.T) {
	h := newHarness(t, withConfig(func(c *Config) { c.BufferCount = 16 }))
	// The start-up announcement was consumed by newHarness; check one.
	if err := h.srv.Announce(); err != nil {
		t.Fatal(err)
	}
	a := h.client.expectAnnounce(t)
	checkResponse(t, a, 0)
	cfg := decodeConfig(t, a)
	if a.Tag != 0 || a.Dst != aoe.BroadcastMAC || a.Command != aoe.CommandQueryConfig ||
		cfg.BufferCount != 16 || cfg.SectorCount != 2 || cfg.Version != aoe.Version {
		t.Errorf("announcement %+v to %s: %+v", a.Header, a.Dst, cfg)
	}

	h.stop()
	if err := h.srv.Announce(); err == nil {
		t.Error("Announce succeeded while not serving")
	}
}

func TestAnnounceInterval(t *testing.T) {
	h := newHarness(t, withConfig(func(c *Config) { c.AnnounceInterval = 20 * time.Millisecond }))
	for range 3 {
		h.client.expectAnnounce(t)
	}
}

func TestAnnounceToAllowedMACs(t *testing.T) {
	hub := aoetest.NewHub()
	a := newClient(t, hub, clientMAC, 1500)
	b := newClient(t, hub, otherMAC, 1500)
	outsider := newClient(t, hub, thirdMAC, 1500)
	port := hub.Port(targetMAC, 1500)
	srv, err := NewServer(Config{Shelf: testShelf, Slot: testSlot, Backend: newMemDisk(8),
		AllowedMACs: []aoe.MAC{clientMAC, otherMAC}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, port) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	for _, c := range []*client{a, b} {
		if f := c.expectAnnounce(t); f.Dst != c.mac {
			t.Errorf("announcement to %s, want unicast to %s", f.Dst, c.mac)
		}
	}
	select {
	case <-outsider.announces:
		t.Error("a station outside the mask got an announcement")
	case <-time.After(100 * time.Millisecond):
	}
}

func TestMTUChange(t *testing.T) {
	h := newHarness(t, withMTU(9000))
	c := h.client
	cfg := decodeConfig(t, c.roundTrip(t, configReq(t, c, aoe.ConfigRead, "")))
	if cfg.SectorCount != 17 {
		t.Fatalf("sectors per frame at MTU 9000: %d", cfg.SectorCount)
	}
	data := pattern(17*512, 5)
	checkResponse(t, c.roundTrip(t, writeReq(c, t, 100, data)), 0)
	resp := c.roundTrip(t, readReq(c, t, 100, 17))
	checkResponse(t, resp, 0)
	if got := decodeATA(t, resp).Data; string(got) != string(data) {
		t.Fatal("17-sector read returned other data")
	}

	// The MTU drops under the target: it follows.
	h.port.SetMTU(1500)
	c.port.SetMTU(1500)
	cfg = decodeConfig(t, c.roundTrip(t, configReq(t, c, aoe.ConfigRead, "")))
	if cfg.SectorCount != 2 {
		t.Fatalf("sectors per frame at MTU 1500: %d", cfg.SectorCount)
	}
	checkResponse(t, c.roundTrip(t, readReq(c, t, 100, 17)), aoe.ErrorBadArgument)
	checkResponse(t, c.roundTrip(t, readReq(c, t, 100, 2)), 0)

	// And rises again.
	h.port.SetMTU(9000)
	c.port.SetMTU(9000)
	checkResponse(t, c.roundTrip(t, readReq(c, t, 100, 17)), 0)
}

func TestNewServerValidation(t *testing.T) {
	disk := newMemDisk(8)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no backend", Config{}},
		{"broadcast shelf", Config{Backend: disk, Shelf: aoe.BroadcastMajor}},
		{"broadcast slot", Config{Backend: disk, Slot: aoe.BroadcastMinor}},
		{"empty backend", Config{Backend: newMemDisk(0)}},
		{"buffer count 1", Config{Backend: disk, BufferCount: 1}},
		{"negative buffer count", Config{Backend: disk, BufferCount: -4}},
		{"huge buffer count", Config{Backend: disk, BufferCount: MaxBufferCount + 1}},
		{"negative workers", Config{Backend: disk, Workers: -1}},
		{"group allowed MAC", Config{Backend: disk, AllowedMACs: []aoe.MAC{aoe.BroadcastMAC}}},
		{"zero allowed MAC", Config{Backend: disk, AllowedMACs: []aoe.MAC{{}}}},
		{"too many allowed MACs", Config{Backend: disk, AllowedMACs: make([]aoe.MAC, MaxMACMask+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = testLogger(t)
			if _, err := NewServer(tc.cfg); err == nil {
				t.Error("accepted")
			}
		})
	}
	s, err := NewServer(Config{Backend: disk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.BufferCount != DefaultBufferCount || s.cfg.Workers != DefaultBufferCount || s.cfg.Version != DefaultVersion {
		t.Errorf("defaults: %+v", s.cfg)
	}
}

func TestServeTwice(t *testing.T) {
	h := newHarness(t)
	if err := h.srv.Serve(context.Background(), h.port); err == nil {
		t.Error("second Serve accepted")
	}
}

// TestServeLinkClosed checks that Serve returns an error when its link is
// closed under it.
func TestServeLinkClosed(t *testing.T) {
	hub := aoetest.NewHub()
	port := hub.Port(targetMAC, 1500)
	srv, err := NewServer(Config{Shelf: 1, Backend: newMemDisk(8), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, hub, clientMAC, 1500)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), port) }()
	// Serve announces the target once its loop is running.
	cl.expectAnnounce(t)
	port.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Serve returned nil for a closed link")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after its link closed")
	}
}
