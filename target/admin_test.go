package target

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// TestAdminConfigString: the administrator's config string is what Query
// Config reads, set refuses to replace another string unless forced, and
// an empty forced string clears it; each change is saved in the state dir.
func TestAdminConfigString(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, withConfig(func(c *Config) { c.StateDir = dir }))
	read := func() string {
		resp := h.client.roundTrip(t, h.client.request(aoe.CommandQueryConfig, mustConfigArg(t, aoe.Config{Command: aoe.ConfigRead})))
		checkResponse(t, resp, 0)
		return string(decodeConfig(t, resp).String)
	}
	if err := h.srv.SetConfigString([]byte("host-a"), false); err != nil {
		t.Fatalf("set: %v", err)
	}
	if got := read(); got != "host-a" {
		t.Fatalf("Query Config reads %q after set, want host-a", got)
	}
	if err := h.srv.SetConfigString([]byte("host-b"), false); !errors.Is(err, ErrConfigStringPresent) {
		t.Fatalf("set over another string: %v, want ErrConfigStringPresent", err)
	}
	if err := h.srv.SetConfigString([]byte("host-b"), true); err != nil {
		t.Fatalf("force set: %v", err)
	}
	if got := string(h.srv.ConfigString()); got != "host-b" {
		t.Fatalf("ConfigString = %q after force set", got)
	}
	st, _, err := loadState(statePath(dir, testShelf, testSlot))
	if err != nil || string(st.ConfigString) != "host-b" {
		t.Fatalf("state file holds %q (%v), want host-b", st.ConfigString, err)
	}
	if err := h.srv.SetConfigString(nil, true); err != nil {
		t.Fatalf("clear: %v", err)
	}
	if got := read(); got != "" {
		t.Fatalf("Query Config reads %q after clear", got)
	}
	if err := h.srv.SetConfigString(make([]byte, aoe.MaxConfigStringLen+1), true); err == nil {
		t.Fatal("an over-long string was accepted")
	}
}

// TestAdminMACMask: edits by the administrator take effect on the wire
// (a masked initiator gets no answer) and clear lets everyone in again.
func TestAdminMACMask(t *testing.T) {
	h := newHarness(t)
	if err := h.srv.EditMACMask([]aoe.Directive{add(otherMAC)}); err != nil {
		t.Fatalf("add: %v", err)
	}
	if got := h.srv.MACMask(); !slices.Equal(got, []aoe.MAC{otherMAC}) {
		t.Fatalf("MACMask = %v", got)
	}
	h.client.expectNoResponse(t, readReq(h.client, t, 0, 1))
	err := h.srv.EditMACMask([]aoe.Directive{add(clientMAC), add(aoe.BroadcastMAC)})
	if !errors.Is(err, aoe.MACMaskErrorBadDirective) {
		t.Fatalf("adding broadcast: %v, want a bad directive", err)
	}
	if got := h.srv.MACMask(); !slices.Equal(got, []aoe.MAC{otherMAC, clientMAC}) {
		t.Fatalf("MACMask = %v: the directive before the bad one takes effect", got)
	}
	checkResponse(t, h.client.roundTrip(t, readReq(h.client, t, 0, 1)), 0)
	if err := h.srv.EditMACMask([]aoe.Directive{del(clientMAC)}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	h.client.expectNoResponse(t, readReq(h.client, t, 0, 1))
	if err := h.srv.ClearMACMask(); err != nil {
		t.Fatalf("clear: %v", err)
	}
	if got := h.srv.MACMask(); len(got) != 0 {
		t.Fatalf("MACMask = %v after clear", got)
	}
	checkResponse(t, h.client.roundTrip(t, readReq(h.client, t, 0, 1)), 0)
}

// TestAdminReserve: a reservation held by another initiator (one that
// failed over, say) is cleared by the administrator without a restart.
func TestAdminReserve(t *testing.T) {
	h := newHarness(t)
	if !h.srv.Serving() {
		t.Fatal("Serving() = false while serving")
	}
	if shelf, slot := h.srv.Address(); shelf != testShelf || slot != testSlot {
		t.Fatalf("Address() = %d.%d", shelf, slot)
	}
	h.srv.SetReserve([]aoe.MAC{otherMAC, otherMAC})
	if got := h.srv.Reserve(); !slices.Equal(got, []aoe.MAC{otherMAC}) {
		t.Fatalf("Reserve = %v, want the one address once", got)
	}
	checkResponse(t, h.client.roundTrip(t, writeReq(h.client, t, 0, pattern(512, 1))), aoe.ErrorTargetReserved)
	h.srv.SetReserve(nil)
	if got := h.srv.Reserve(); len(got) != 0 {
		t.Fatalf("Reserve = %v after clear", got)
	}
	checkResponse(t, h.client.roundTrip(t, writeReq(h.client, t, 0, pattern(512, 1))), 0)
	h.stop()
	if h.srv.Serving() {
		t.Fatal("Serving() = true after Serve returned")
	}
}

func mustConfigArg(t testing.TB, c aoe.Config) []byte {
	t.Helper()
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal Query Config: %v", err)
	}
	return b
}

// TestAdminSaveError: a change that cannot be saved in the state dir is in
// effect, and SaveError says why it will not survive a restart, until a
// later change saves.
func TestAdminSaveError(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, withConfig(func(c *Config) { c.StateDir = dir }))
	if err := h.srv.SaveError(); err != nil {
		t.Fatalf("SaveError = %v before any change", err)
	}
	// A non-empty directory where the state file goes: the rename that
	// saves it fails, even for root.
	path := statePath(dir, testShelf, testSlot)
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.srv.SetReserve([]aoe.MAC{otherMAC})
	if got := h.srv.Reserve(); !slices.Equal(got, []aoe.MAC{otherMAC}) {
		t.Fatalf("Reserve = %v: the change must be in effect though not saved", got)
	}
	if err := h.srv.SaveError(); err == nil {
		t.Fatal("SaveError = nil after a change the state dir could not take")
	}
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	h.srv.SetReserve(nil)
	if err := h.srv.SaveError(); err != nil {
		t.Fatalf("SaveError = %v after a change that saved", err)
	}
}
