//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
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

// commandTimeout bounds each ip command, so a wedged one fails the run
// instead of hanging it.
const commandTimeout = 30 * time.Second

// Netns is a named network namespace, as `ip netns add` makes them.
type Netns struct {
	// Name is the namespace's name for `ip netns` and `ip -n`.
	Name string
}

// NewNetns creates a namespace named prefix-<8 random hex digits> with its
// loopback up. Close removes it.
func NewNetns(prefix string) (*Netns, error) {
	n := &Netns{Name: fmt.Sprintf("%s-%08x", prefix, rand.Uint32())}
	var err error
	// Two `ip netns add` racing to mount /run/netns the first time can
	// fail; a retry settles it.
	for try := 0; try < 3; try++ {
		if err = run("ip", "netns", "add", n.Name); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: netns: %w", err)
	}
	if err := run("ip", "-n", n.Name, "link", "set", "lo", "up"); err != nil {
		n.Close()
		return nil, fmt.Errorf("bench: netns %s: %w", n.Name, err)
	}
	return n, nil
}

// Close kills every process left in the namespace and deletes it.
func (n *Netns) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", n.Name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := run("ip", "netns", "del", n.Name); err != nil {
		return fmt.Errorf("bench: netns %s: %w", n.Name, err)
	}
	return nil
}

// Command returns a command that runs name with args inside the namespace.
// `ip netns exec` replaces itself with the command, so the process's pid
// is the command's.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on the calling goroutine's thread switched into the
// namespace; sockets fn opens stay in it. If the thread cannot be switched
// back, it stays locked so that the runtime discards it.
func (n *Netns) Do(fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("bench: netns %s: %w", n.Name, err)
	}
	defer orig.Close()
	ns, err := os.Open(filepath.Join("/run/netns", n.Name))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("bench: netns %s: %w", n.Name, err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("bench: netns %s: setns: %w", n.Name, err)
	}
	defer func() {
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			err = errors.Join(err, fmt.Errorf("bench: netns %s: setns back: %w", n.Name, serr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// ListenRaw opens a rawlink.Link on iface inside the namespace.
func (n *Netns) ListenRaw(iface string, cfg rawlink.Config) (*rawlink.Link, error) {
	var l *rawlink.Link
	err := n.Do(func() error {
		var err error
		l, err = rawlink.Listen(iface, cfg)
		return err
	})
	return l, err
}

// Veth is a veth pair joining two namespaces: IfA in A, IfB in B.
type Veth struct {
	A, B       *Netns
	IfA, IfB   string
	MACA, MACB aoe.MAC
}

// NewVeth joins a and b with a veth pair with random names and locally
// administered addresses, and brings both ends up. Deleting either
// namespace deletes the pair.
func NewVeth(a, b *Netns) (*Veth, error) {
	s := fmt.Sprintf("%08x", rand.Uint32())
	v := &Veth{A: a, B: b, IfA: "ibb" + s + "a", IfB: "ibb" + s + "b", MACA: randomMAC(), MACB: randomMAC()}
	err := run("ip", "link", "add", v.IfA, "netns", a.Name, "address", v.MACA.String(),
		"type", "veth", "peer", "name", v.IfB, "netns", b.Name, "address", v.MACB.String())
	if err == nil {
		err = run("ip", "-n", a.Name, "link", "set", v.IfA, "up")
	}
	if err == nil {
		err = run("ip", "-n", b.Name, "link", "set", v.IfB, "up")
	}
	if err != nil {
		return nil, fmt.Errorf("bench: veth: %w", err)
	}
	return v, nil
}

// SetMTU sets the MTU of both ends.
func (v *Veth) SetMTU(mtu int) error {
	for _, end := range []struct {
		ns    *Netns
		iface string
	}{{v.A, v.IfA}, {v.B, v.IfB}} {
		if err := run("ip", "-n", end.ns.Name, "link", "set", end.iface, "mtu", strconv.Itoa(mtu)); err != nil {
			return fmt.Errorf("bench: veth MTU %d: %w", mtu, err)
		}
	}
	return nil
}

// WaitUp waits until both ends report operstate up: until then a veth end
// drops what is sent on it.
func (v *Veth) WaitUp(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, end := range []struct {
		ns    *Netns
		iface string
	}{{v.A, v.IfA}, {v.B, v.IfB}} {
		for {
			// IFF_RUNNING is set when the operational state is up.
			var flags net.Flags
			err := end.ns.Do(func() error {
				ifi, err := net.InterfaceByName(end.iface)
				if err == nil {
					flags = ifi.Flags
				}
				return err
			})
			if err == nil && flags&net.FlagRunning != 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bench: %s not up after %v (flags %v, %v)", end.iface, timeout, flags, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// randomMAC returns a random locally administered unicast address.
func randomMAC() aoe.MAC {
	var m aoe.MAC
	v := rand.Uint64()
	for i := range m {
		m[i] = byte(v >> (8 * i))
	}
	m[0] = m[0]&^0x01 | 0x02
	return m
}

// run runs a command with a timeout; its error includes the output.
func run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
