package rawlink_test

import (
	"errors"
	"testing"

	"github.com/ironblade/ironblade/aoe/rawlink"
)

// TestListenLinkErrorIsUntypedNil checks that a failed ListenLink returns a nil
// interface, not a nil *rawlink.Link in one, which a caller testing the
// link against nil would take for a link.
func TestListenLinkErrorIsUntypedNil(t *testing.T) {
	link, err := rawlink.ListenLink("no-such-iface0", rawlink.Config{VLAN: rawlink.MaxVLAN + 1})
	if err == nil {
		t.Fatal("Listen with an invalid VLAN succeeded")
	}
	if !errors.Is(err, rawlink.ErrInvalidVLAN) {
		t.Errorf("Listen: %v, want it to wrap rawlink.ErrInvalidVLAN", err)
	}
	if link != nil {
		t.Errorf("Listen returned a non-nil link %#v with its error", link)
	}
}
