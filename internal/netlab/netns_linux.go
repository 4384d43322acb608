//go:build linux

package netlab

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
	"time"

	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
)

// commandTimeout bounds every command the package runs, so that a wedged ip
// or nft fails its caller instead of hanging it.
const commandTimeout = 30 * time.Second

// ErrNotPermitted is wrapped by New's error when the system refuses to
// create network namespaces (an unprivileged container, say).
var ErrNotPermitted = errors.New("cannot create network namespaces here")

// CheckRoot reports why namespaces, veth pairs and raw sockets cannot be
// made here, or nil when they can: the process must be root, iproute2's ip
// must be installed and the kernel must have network namespaces.
func CheckRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (to create network namespaces, veth pairs and raw sockets)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("needs the ip command of iproute2: %w", err)
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("kernel without network namespaces: %w", err)
	}
	return nil
}

// CheckNFT reports whether nftables' nft command, which loss and VLAN
// ports need, is missing.
func CheckNFT() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("needs the nft command of nftables: %w", err)
	}
	return nil
}

// uniqueSuffix returns 8 hex digits to keep names unique across the
// processes (test binaries, benchmarks) that build segments at once.
func uniqueSuffix() string { return fmt.Sprintf("%08x", rand.Uint32()) }

// RandomMAC returns a random locally administered unicast address.
func RandomMAC() aoe.MAC {
	var m aoe.MAC
	v := rand.Uint64()
	for i := range m {
		m[i] = byte(v >> (8 * i))
	}
	m[0] = m[0]&^0x01 | 0x02
	return m
}

// Netns is a named network namespace, as `ip netns add` makes them.
type Netns struct {
	// Name is the namespace's name for `ip netns` and `ip -n`.
	Name string
}

// New creates a network namespace named prefix-<8 random hex digits> with
// its loopback up and IPv6 off (so that no router solicitations or MLD
// reports show up as stray traffic). Close removes it.
func New(prefix string) (*Netns, error) {
	n := &Netns{Name: prefix + "-" + uniqueSuffix()}
	var out []byte
	var err error
	// Two `ip netns add` racing to set up the /run/netns mount for the
	// first time can fail; a retry settles it.
	for try := 0; try < 3; try++ {
		if out, err = hostOutput("ip", "netns", "add", n.Name); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "Operation not permitted") || strings.Contains(msg, "not supported") {
			return nil, fmt.Errorf("netlab: ip netns add %s: %w: %s", n.Name, ErrNotPermitted, msg)
		}
		return nil, fmt.Errorf("netlab: ip netns add %s: %w: %s", n.Name, err, msg)
	}
	err = n.Do(func() error {
		for _, conf := range []string{"all", "default"} {
			p := "/proc/sys/net/ipv6/conf/" + conf + "/disable_ipv6"
			if err := os.WriteFile(p, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("disable IPv6: %w", err)
			}
		}
		return nil
	})
	if err == nil {
		_, err = n.Run("ip", "link", "set", "lo", "up")
	}
	if err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

// Close kills every process left in the namespace and deletes it, and with
// it every interface it holds.
func (n *Netns) Close() error {
	if out, err := hostOutput("ip", "netns", "pids", n.Name); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := hostOutput("ip", "netns", "del", n.Name); err != nil {
		return fmt.Errorf("netlab: ip netns del %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Do runs fn on the calling goroutine's OS thread switched into the
// namespace, then switches the thread back. Sockets fn opens stay in the
// namespace; goroutines fn starts run elsewhere, outside it. If the thread
// cannot be switched back, it is left locked to the goroutine so that the
// Go runtime discards it when the goroutine ends.
func (n *Netns) Do(fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: netns %s: %w", n.Name, err)
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", n.Name))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: netns %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: netns %s: setns: %w", n.Name, err)
	}
	// Deferred so that the thread is restored when fn panics or calls
	// t.Fatal too.
	defer func() {
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			err = errors.Join(err, fmt.Errorf("netlab: netns %s: setns back: %w", n.Name, serr))
			return // keep the thread locked: it dies with the goroutine
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Command returns a command that runs name with args inside the namespace,
// through `ip netns exec`, which execs the command: its pid is the
// command's own. ctx kills it when done.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs name with args inside the namespace, with a timeout, and returns
// its combined output; its error includes that output.
func (n *Netns) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netlab: netns %s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Listen opens a rawlink.Link on iface inside the namespace.
func (n *Netns) Listen(iface string, cfg rawlink.Config) (*rawlink.Link, error) {
	var l *rawlink.Link
	err := n.Do(func() error {
		var err error
		l, err = rawlink.Listen(iface, cfg)
		return err
	})
	return l, err
}

// WaitReady waits up to timeout until iface in n is up and can send, and
// its `ip -d -o link show` line contains each of wants. The end of a veth
// pair brought up first has no carrier yet, so the kernel defers attaching
// its queueing discipline to the link-watch work that runs once the peer is
// up; until then the noop discipline drops every frame the interface sends
// while telling the sender all went well. A bridge port likewise forwards
// only once that work has seen its carrier.
func (n *Netns) WaitReady(iface string, timeout time.Duration, wants ...string) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := hostOutput("ip", "-n", n.Name, "-d", "-o", "link", "show", "dev", iface)
		if err != nil {
			return fmt.Errorf("netlab: netns %s: ip link show %s: %w: %s", n.Name, iface, err, out)
		}
		ready := strings.Contains(string(out), "state UP") && !strings.Contains(string(out), "qdisc noop")
		for _, w := range wants {
			ready = ready && strings.Contains(string(out), w)
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netlab: netns %s: %s not ready to send after %v: %s", n.Name, iface, timeout, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readyTimeout is how long the constructors wait for the interfaces they
// make to be able to send.
const readyTimeout = 5 * time.Second

// hostOutput runs a command (outside any namespace) with a timeout and
// returns its combined output.
func hostOutput(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// runHost runs a command (outside any namespace); its error includes the
// output.
func runHost(name string, args ...string) error {
	if out, err := hostOutput(name, args...); err != nil {
		return fmt.Errorf("netlab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
