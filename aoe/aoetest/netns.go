//go:build linux

package aoetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
)

// netnsCommandTimeout bounds every command the helpers run, so a wedged ip or
// nft fails the test instead of hanging it.
const netnsCommandTimeout = 30 * time.Second

// RequireRoot skips the test unless it can build network namespaces and
// open raw sockets: the process must be root, iproute2's ip command must be
// installed and the kernel must have network namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("aoetest: needs root (to create network namespaces, veth pairs and raw sockets)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("aoetest: needs the ip command of iproute2: %v", err)
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		t.Skipf("aoetest: kernel without network namespaces: %v", err)
	}
}

// uniqueSuffix returns 8 hex digits to keep names unique across the test
// binaries that go test runs at once.
func uniqueSuffix() string { return fmt.Sprintf("%08x", rand.Uint32()) }

// randomLocalMAC returns a random locally administered unicast address.
func randomLocalMAC() aoe.MAC {
	var m aoe.MAC
	v := rand.Uint64()
	for i := range m {
		m[i] = byte(v >> (8 * i))
	}
	m[0] = m[0]&^0x01 | 0x02
	return m
}

// Netns is a named network namespace (as `ip netns add` makes them) that a
// test owns.
type Netns struct {
	// Name is the namespace's name for `ip netns` and `ip -n`.
	Name string
}

// NewNetns creates a network namespace named ib-<random> with its loopback
// up and IPv6 off (so that no router solicitations or MLD reports show up
// as stray traffic). It skips the test without root. In t.Cleanup it kills
// any process left in the namespace and deletes it.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	n := &Netns{Name: "ib-" + uniqueSuffix()}
	var out []byte
	var err error
	// Two `ip netns add` racing to set up the /run/netns mount for the first
	// time can fail; a retry settles it.
	for try := 0; try < 3; try++ {
		out, err = hostOutput("ip", "netns", "add", n.Name)
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		if msg := string(out); strings.Contains(msg, "Operation not permitted") || strings.Contains(msg, "not supported") {
			t.Skipf("aoetest: cannot create network namespaces here: %s", strings.TrimSpace(msg))
		}
		t.Fatalf("aoetest: ip netns add %s: %v\n%s", n.Name, err, out)
	}
	t.Cleanup(func() { n.remove(t) })
	err = n.Do(func() error {
		for _, conf := range []string{"all", "default"} {
			p := "/proc/sys/net/ipv6/conf/" + conf + "/disable_ipv6"
			if err := os.WriteFile(p, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("aoetest: netns %s: disable IPv6: %v", n.Name, err)
	}
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// remove kills what is left in the namespace and deletes it.
func (n *Netns) remove(t testing.TB) {
	out, err := hostOutput("ip", "netns", "pids", n.Name)
	if err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := hostOutput("ip", "netns", "del", n.Name); err != nil {
		t.Errorf("aoetest: ip netns del %s: %v\n%s", n.Name, err, out)
	}
}

// Do runs fn on the calling goroutine's OS thread switched into the
// namespace, then switches the thread back. Sockets fn opens stay in the
// namespace. Goroutines fn starts run elsewhere, outside the namespace.
// If the thread cannot be switched back, it is left locked to the
// goroutine so that the Go runtime discards it when the goroutine ends.
func (n *Netns) Do(fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("aoetest: netns %s: %w", n.Name, err)
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", n.Name))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("aoetest: netns %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("aoetest: netns %s: setns: %w", n.Name, err)
	}
	// Deferred so that the thread is restored when fn calls t.Fatal too.
	defer func() {
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			if err == nil {
				err = fmt.Errorf("aoetest: netns %s: setns back: %w", n.Name, serr)
			}
			return // keep the thread locked: it dies with the goroutine
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Command returns a command that runs name with args inside the namespace
// (through `ip netns exec`). ctx kills it when done.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs name with args inside the namespace and returns its combined
// output. It fails the test, showing the output, if the command fails.
func (n *Netns) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), netnsCommandTimeout)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("aoetest: netns %s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// hostOutput runs a command (outside any namespace) with a timeout and
// returns its combined output.
func hostOutput(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), netnsCommandTimeout)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// runHost runs a command (outside any namespace) and fails the test if it
// fails.
func runHost(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := hostOutput(name, args...); err != nil {
		t.Fatalf("aoetest: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Veth is a veth pair joining two namespaces: interface IfA in A and IfB
// in B, with addresses MACA and MACB.
type Veth struct {
	A, B       *Netns
	IfA, IfB   string
	MACA, MACB aoe.MAC
}

// NewVeth joins a and b (which may be the same namespace) with a veth pair
// with random names and locally administered addresses, sets both ends to
// mtu (0 keeps the default, 1500), brings them up and waits until both can
// send (see WaitLinkReady). The pair is deleted in t.Cleanup.
func NewVeth(t testing.TB, a, b *Netns, mtu int) *Veth {
	t.Helper()
	s := uniqueSuffix()
	v := &Veth{A: a, B: b, IfA: "ib" + s + "a", IfB: "ib" + s + "b", MACA: randomLocalMAC(), MACB: randomLocalMAC()}
	addVethPair(t, a, v.IfA, v.MACA, b, v.IfB, v.MACB, mtu)
	a.Run(t, "ip", "link", "set", v.IfA, "up")
	b.Run(t, "ip", "link", "set", v.IfB, "up")
	waitLinkReady(t, a, v.IfA)
	waitLinkReady(t, b, v.IfB)
	return v
}

// WaitLinkReady waits up to 5 s until iface in ns is up and can send,
// and fails the test if it cannot by then. NewVeth and the Bridge's
// Attach methods do it for the interfaces they make; a test that makes an
// interface of its own (a macvlan, say) calls it before sending on it:
// until then what is sent may be silently dropped (see waitLinkReady).
func WaitLinkReady(t testing.TB, ns *Netns, iface string) {
	t.Helper()
	waitLinkReady(t, ns, iface)
}

// waitLinkReady waits until iface in ns can send and its output contains
// each of wants (as `ip -d -o link show` prints it). The end of a veth pair
// brought up first has no carrier yet, so the kernel defers attaching its
// queueing discipline to the link-watch work that runs once the peer is
// up; until then the noop discipline drops every frame the interface
// sends, while telling the sender all went well. A bridge port likewise
// starts forwarding only once that work has seen its carrier.
func waitLinkReady(t testing.TB, ns *Netns, iface string, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := hostOutput("ip", "-n", ns.Name, "-d", "-o", "link", "show", "dev", iface)
		if err != nil {
			t.Fatalf("aoetest: netns %s: ip link show %s: %v\n%s", ns.Name, iface, err, out)
		}
		ready := strings.Contains(string(out), "state UP") && !strings.Contains(string(out), "qdisc noop")
		for _, w := range wants {
			ready = ready && strings.Contains(string(out), w)
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("aoetest: netns %s: %s not ready to send after 5 s: %s", ns.Name, iface, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// addVethPair creates the pair straight inside its namespaces, so that its
// names never meet those of other tests in the root namespace, and deletes
// it in t.Cleanup.
func addVethPair(t testing.TB, a *Netns, ifA string, macA aoe.MAC, b *Netns, ifB string, macB aoe.MAC, mtu int) {
	t.Helper()
	args := []string{"link", "add", ifA, "netns", a.Name, "address", macA.String()}
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
	}
	args = append(args, "type", "veth", "peer", "name", ifB, "netns", b.Name, "address", macB.String())
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
	}
	runHost(t, "ip", args...)
	t.Cleanup(func() {
		// Deleting one end deletes both; the namespace may be gone already.
		_, _ = hostOutput("ip", "-n", a.Name, "link", "del", ifA)
	})
}

// SetMTU sets the MTU of both ends of the pair.
func (v *Veth) SetMTU(t testing.TB, mtu int) {
	t.Helper()
	v.A.Run(t, "ip", "link", "set", v.IfA, "mtu", strconv.Itoa(mtu))
	v.B.Run(t, "ip", "link", "set", v.IfB, "mtu", strconv.Itoa(mtu))
}

// ListenRawIn opens a rawlink.Link on iface inside ns and closes it in
// t.Cleanup. It fails the test if the link cannot be opened.
func ListenRawIn(t testing.TB, ns *Netns, iface string, cfg rawlink.Config) *rawlink.Link {
	t.Helper()
	var l *rawlink.Link
	err := ns.Do(func() error {
		var err error
		l, err = rawlink.Listen(iface, cfg)
		return err
	})
	if err != nil {
		t.Fatalf("aoetest: netns %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// AddLoss makes iface in ns drop about percent of the frames it receives,
// at random, with an nftables netdev ingress rule (the kernel here has no
// netem). AF_PACKET sockets bound to the AoE EtherType, as an untagged
// rawlink.Link's is, see the frames after the rule; a VLAN rawlink.Link's socket,
// bound to every protocol, sees them before it, so the rule does not thin
// out what such a link reads. It skips the test without nft; the rule is
// removed in t.Cleanup.
func AddLoss(t testing.TB, ns *Netns, iface string, percent int) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("aoetest: needs the nft command of nftables: %v", err)
	}
	if percent < 0 || percent > 100 {
		t.Fatalf("aoetest: AddLoss: %d%% is not a percentage", percent)
	}
	table := "ibloss_" + uniqueSuffix()
	ns.Run(t, "nft", "add", "table", "netdev", table)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), netnsCommandTimeout)
		defer cancel()
		_ = ns.Command(ctx, "nft", "delete", "table", "netdev", table).Run()
	})
	ns.Run(t, "nft", "add", "chain", "netdev", table, "c",
		"{ type filter hook ingress device "+strconv.Quote(iface)+" priority 0 ; }")
	rule := []string{"add", "rule", "netdev", table, "c"}
	if percent < 100 {
		// nft refuses "mod 100 < 100", so total loss is a plain drop.
		rule = append(rule, "numgen", "random", "mod", "100", "<", strconv.Itoa(percent))
	}
	ns.Run(t, "nft", append(rule, "drop")...)
}

// Bridge is an Ethernet segment: a Linux bridge in a namespace of its own,
// to which namespaces are attached with veth pairs. It stands for a switch
// with several hosts on it.
type Bridge struct {
	// NS is the namespace that holds the bridge.
	NS *Netns
	// Name is the bridge device's name in NS.
	Name string
	// MTU is the MTU of the bridge and of every attached interface.
	MTU int
}

// NewBridge creates a bridge with the given MTU (0 for 1500) in a new
// namespace. Spanning tree is off, so attached ports forward at once. It is
// removed in t.Cleanup.
func NewBridge(t testing.TB, mtu int) *Bridge {
	t.Helper()
	if mtu <= 0 {
		mtu = 1500
	}
	b := &Bridge{NS: NewNetns(t), Name: "br0", MTU: mtu}
	b.NS.Run(t, "ip", "link", "add", b.Name, "mtu", strconv.Itoa(mtu), "type", "bridge", "stp_state", "0")
	b.NS.Run(t, "ip", "link", "set", b.Name, "up")
	return b
}

// Attach plugs ns into the bridge with a new veth pair and returns the name
// and address of the interface it gets in ns, which is up. Such a port is
// not VLAN-aware: it exchanges untagged frames with the other such ports
// and also hears the tagged frames of every VLAN (see AttachVLAN).
func (b *Bridge) Attach(t testing.TB, ns *Netns) (iface string, mac aoe.MAC) {
	t.Helper()
	return b.attach(t, ns, nil)
}

// vlanTable is the nftables bridge-family table in which AttachVLAN keeps
// VLAN membership.
const vlanTable = "ibvlan"

// AttachVLAN plugs ns into the bridge as a trunk port of the given 802.1Q
// VLANs (at least one, each 1 to 4094) and returns the name and address of
// the interface it gets in ns, which is up. The bridge forwards to and from
// that interface only frames tagged with one of the VLANs: untagged frames
// and other VLANs' frames are dropped both ways, as a VLAN-aware switch
// does.
//
// Linux's own bridge VLAN filtering needs the 8021q code, which our kernels
// lack, so the membership is kept with nftables rules in the bridge's
// forward hook. It skips the test without nft.
func (b *Bridge) AttachVLAN(t testing.TB, ns *Netns, vids ...uint16) (iface string, mac aoe.MAC) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("aoetest: needs the nft command of nftables: %v", err)
	}
	if len(vids) == 0 {
		t.Fatal("aoetest: AttachVLAN: no VLAN given")
	}
	set := make([]string, len(vids))
	for i, vid := range vids {
		if vid == 0 || vid > rawlink.MaxVLAN {
			t.Fatalf("aoetest: AttachVLAN: VLAN %d is not 1 to %d", vid, rawlink.MaxVLAN)
		}
		set[i] = strconv.Itoa(int(vid))
	}
	members := "{ " + strings.Join(set, ", ") + " }"
	// Both commands leave an existing table or chain alone.
	b.NS.Run(t, "nft", "add", "table", "bridge", vlanTable)
	b.NS.Run(t, "nft", "add", "chain", "bridge", vlanTable, "forward",
		"{ type filter hook forward priority 0 ; policy accept ; }")
	return b.attach(t, ns, func(port string) {
		for _, dir := range []string{"iifname", "oifname"} {
			b.NS.Run(t, "nft", "add", "rule", "bridge", vlanTable, "forward", dir, strconv.Quote(port), "ether", "type", "!=", "8021q", "drop")
			b.NS.Run(t, "nft", "add", "rule", "bridge", vlanTable, "forward", dir, strconv.Quote(port), "vlan", "id", "!=", members, "drop")
		}
	})
}

// attach plugs ns into the bridge; setup, if not nil, configures the
// bridge's port once it is enslaved and before it comes up.
func (b *Bridge) attach(t testing.TB, ns *Netns, setup func(port string)) (iface string, mac aoe.MAC) {
	t.Helper()
	s := uniqueSuffix()
	iface, port, mac := "ib"+s+"n", "ib"+s+"p", randomLocalMAC()
	addVethPair(t, ns, iface, mac, b.NS, port, randomLocalMAC(), b.MTU)
	b.NS.Run(t, "ip", "link", "set", port, "master", b.Name)
	if setup != nil {
		setup(port)
	}
	b.NS.Run(t, "ip", "link", "set", port, "up")
	ns.Run(t, "ip", "link", "set", iface, "up")
	waitLinkReady(t, b.NS, port, "bridge_slave state forwarding")
	waitLinkReady(t, ns, iface)
	return iface, mac
}
