package testenv

import (
	"errors"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/netlab"
)

// RequireRoot skips the test unless it can build network namespaces and
// open raw sockets (see netlab.CheckRoot).
func RequireRoot(t testing.TB) {
	t.Helper()
	if err := netlab.CheckRoot(); err != nil {
		t.Skipf("testenv: %v", err)
	}
}

// requireNFT skips the test without nftables' nft command.
func requireNFT(t testing.TB) {
	t.Helper()
	if err := netlab.CheckNFT(); err != nil {
		t.Skipf("testenv: %v", err)
	}
}

// NewNetns creates a network namespace named ib-<random> (see netlab.New).
// It skips the test without root, and in t.Cleanup kills any process left
// in the namespace and deletes it.
func NewNetns(t testing.TB) *netlab.Netns {
	t.Helper()
	RequireRoot(t)
	n, err := netlab.New("ib")
	if errors.Is(err, netlab.ErrNotPermitted) {
		t.Skipf("testenv: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// Run runs name with args inside ns and returns its combined output. It
// fails the test, showing the output, if the command fails.
func Run(t testing.TB, ns *netlab.Netns, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// NewVeth joins a and b (which may be the same namespace) with a veth pair
// that can send (see netlab.NewVeth), deleted in t.Cleanup.
func NewVeth(t testing.TB, a, b *netlab.Netns, mtu int) *netlab.Veth {
	t.Helper()
	v, err := netlab.NewVeth(a, b, mtu)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// SetMTU sets the MTU of both ends of v, failing the test if it cannot.
func SetMTU(t testing.TB, v *netlab.Veth, mtu int) {
	t.Helper()
	if err := v.SetMTU(mtu); err != nil {
		t.Fatal(err)
	}
}

// linkReadyTimeout is how long WaitLinkReady waits.
const linkReadyTimeout = 5 * time.Second

// WaitLinkReady waits up to 5 s until iface in ns is up and can send, and
// fails the test if it cannot by then. NewVeth and Attach do it for the
// interfaces they make; a test that makes an interface of its own (a
// macvlan, say) calls it before sending on it: until then what is sent
// may be silently dropped (see netlab.Netns.WaitReady).
func WaitLinkReady(t testing.TB, ns *netlab.Netns, iface string) {
	t.Helper()
	if err := ns.WaitReady(iface, linkReadyTimeout); err != nil {
		t.Fatal(err)
	}
}

// ListenRawIn opens a rawlink.Link on iface inside ns and closes it in
// t.Cleanup. It fails the test if the link cannot be opened.
func ListenRawIn(t testing.TB, ns *netlab.Netns, iface string, cfg rawlink.Config) *rawlink.Link {
	t.Helper()
	l, err := ns.Listen(iface, cfg)
	if err != nil {
		t.Fatalf("testenv: netns %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// AddLoss makes iface in ns drop about percent of the frames it receives
// (see netlab.AddLoss) until the test ends. It skips the test without nft.
func AddLoss(t testing.TB, ns *netlab.Netns, iface string, percent int) {
	t.Helper()
	requireNFT(t)
	remove, err := netlab.AddLoss(ns, iface, percent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = remove() })
}

// NewBridge creates a bridge with the given MTU (0 for 1500) in a new
// namespace (see netlab.NewBridge), removed in t.Cleanup. It skips the test
// without root.
func NewBridge(t testing.TB, mtu int) *netlab.Bridge {
	t.Helper()
	RequireRoot(t)
	b, err := netlab.NewBridge("ib", mtu)
	if errors.Is(err, netlab.ErrNotPermitted) {
		t.Skipf("testenv: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// Attach plugs ns into b (see netlab.Bridge.Attach) and returns the name
// and address of the interface ns gets, failing the test if it cannot.
func Attach(t testing.TB, b *netlab.Bridge, ns *netlab.Netns) (iface string, mac aoe.MAC) {
	t.Helper()
	iface, mac, err := b.Attach(ns)
	if err != nil {
		t.Fatal(err)
	}
	return iface, mac
}

// AttachVLAN plugs ns into b as a trunk port of the given VLANs (see
// netlab.Bridge.AttachVLAN). It skips the test without nft and fails it if
// the port cannot be made.
func AttachVLAN(t testing.TB, b *netlab.Bridge, ns *netlab.Netns, vids ...uint16) (iface string, mac aoe.MAC) {
	t.Helper()
	requireNFT(t)
	iface, mac, err := b.AttachVLAN(ns, vids...)
	if err != nil {
		t.Fatal(err)
	}
	return iface, mac
}
