//go:build linux

package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// nsLookup finds an interface inside ns.
func nsLookup(ns *netlab.Netns, name string) (*net.Interface, error) {
	var ifi *net.Interface
	err := ns.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(name)
		return err
	})
	return ifi, err
}

func TestVeth(t *testing.T) {
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	v := testenv.NewVeth(t, a, b, 9000)
	for _, end := range []struct {
		ns, other *netlab.Netns
		name      string
		mac       aoe.MAC
	}{{a, b, v.IfA, v.MACA}, {b, a, v.IfB, v.MACB}} {
		ifi, err := nsLookup(end.ns, end.name)
		if err != nil {
			t.Fatalf("%s in %s: %v", end.name, end.ns.Name, err)
		}
		if aoe.MACFrom(ifi.HardwareAddr) != end.mac || ifi.MTU != 9000 || ifi.Flags&net.FlagUp == 0 {
			t.Errorf("%s: %v, want address %v, MTU 9000, up", end.name, ifi, end.mac)
		}
		if !end.mac.IsZero() && (end.mac.IsMulticast() || end.mac[0]&0x02 == 0) {
			t.Errorf("%v is not a locally administered unicast address", end.mac)
		}
		if _, err := nsLookup(end.other, end.name); err == nil {
			t.Errorf("%s visible in the other namespace", end.name)
		}
		if _, err := net.InterfaceByName(end.name); err == nil {
			t.Errorf("%s visible in the test's own namespace", end.name)
		}
		if lo, err := nsLookup(end.ns, "lo"); err != nil || lo.Flags&net.FlagUp == 0 {
			t.Errorf("loopback in %s: %v, %v; want up", end.ns.Name, lo, err)
		}
	}
	testenv.SetMTU(t, v, 1500)
	if ifi, err := nsLookup(b, v.IfB); err != nil || ifi.MTU != 1500 {
		t.Errorf("after SetMTU(1500): %v, %v", ifi, err)
	}
	if out := testenv.Run(t, a, "ip", "link", "show", v.IfA); !strings.Contains(out, v.MACA.String()) {
		t.Errorf("ip link show in %s: %s", a.Name, out)
	}
}

func TestVethSameNamespace(t *testing.T) {
	ns := testenv.NewNetns(t)
	v := testenv.NewVeth(t, ns, ns, 0)
	la := testenv.ListenRawIn(t, ns, v.IfA, rawlink.Config{})
	lb := testenv.ListenRawIn(t, ns, v.IfB, rawlink.Config{})
	if la.MTU() != 1500 {
		t.Errorf("default MTU %d, want 1500", la.MTU())
	}
	nsSendAndExpect(t, la, lb, v.MACB, 1)
}

func TestNetnsDo(t *testing.T) {
	ns := testenv.NewNetns(t)
	errTest := errors.New("from fn")
	if err := ns.Do(func() error { return errTest }); err != errTest {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	gone := &netlab.Netns{Name: "ib-doesnotexist"}
	if err := gone.Do(func() error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Do in a missing namespace: %v", err)
	}
	// The thread went back: the test's namespace still has no ib- interfaces
	// and this goroutine sees its own loopback again.
	own, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	if err := ns.Do(func() error {
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Readlink("/proc/thread-self/ns/net")
	if inside == own || after != own {
		t.Errorf("namespaces: own %s, inside Do %s, after %s", own, inside, after)
	}
}

func TestNetnsCleanupKillsProcesses(t *testing.T) {
	done := make(chan error, 1)
	t.Run("leave a process behind", func(t *testing.T) {
		ns := testenv.NewNetns(t)
		cmd := ns.Command(context.Background(), "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		// Wait until the process runs in the namespace (ip netns exec has
		// switched and exec'ed sleep).
		testenv.WaitFor(t, 5*time.Second, "sleep to show up in the namespace", func() bool { return nsHasPids(t, ns) })
	})
	select {
	case err := <-done:
		if err == nil {
			t.Error("sleep exited cleanly; want it killed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the namespace's cleanup left sleep running")
	}
}

// nsHasPids reports whether a process runs in ns.
func nsHasPids(t *testing.T, ns *netlab.Netns) bool {
	out, err := exec.Command("ip", "netns", "pids", ns.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns pids: %v\n%s", err, out)
	}
	return len(strings.Fields(string(out))) > 0
}

func TestAddLoss(t *testing.T) {
	const count = 1000
	for _, percent := range []int{0, 50, 100} {
		t.Run(fmt.Sprintf("%d%%", percent), func(t *testing.T) {
			a, b := testenv.NewNetns(t), testenv.NewNetns(t)
			v := testenv.NewVeth(t, a, b, 1500)
			la := testenv.ListenRawIn(t, a, v.IfA, rawlink.Config{})
			lb := testenv.ListenRawIn(t, b, v.IfB, rawlink.Config{ReadBuffer: 4 << 20})
			testenv.AddLoss(t, b, v.IfB, percent)
			frames := make([][]byte, count)
			for i := range frames {
				frames[i] = nsFrame(v.MACB, v.MACA, uint32(i))
			}
			if n, err := la.WriteFrames(frames); n != count || err != nil {
				t.Fatalf("WriteFrames = %d, %v", n, err)
			}
			got := nsCountFrames(lb, 200*time.Millisecond)
			want := count * (100 - percent) / 100
			t.Logf("%d of %d frames arrived with %d%% loss", got, count, percent)
			if got < want-150 || got > want+150 || (percent == 100 && got != 0) {
				t.Errorf("%d of %d frames arrived, want about %d", got, count, want)
			}
		})
	}
}

func TestBridge(t *testing.T) {
	br := testenv.NewBridge(t, 9000)
	type station struct {
		ns   *netlab.Netns
		mac  aoe.MAC
		link *rawlink.Link
	}
	var st [3]station
	for i := range st {
		st[i].ns = testenv.NewNetns(t)
		iface, mac := testenv.Attach(t, br, st[i].ns)
		st[i].mac = mac
		st[i].link = testenv.ListenRawIn(t, st[i].ns, iface, rawlink.Config{})
		if got := st[i].link.MTU(); got != 9000 {
			t.Errorf("station %d: MTU %d, want 9000", i, got)
		}
		if got := st[i].link.HardwareAddr(); got != mac {
			t.Errorf("station %d: address %v, Attach said %v", i, got, mac)
		}
	}
	// A broadcast reaches everyone else.
	if err := st[0].link.WriteFrame(nsFrame(aoe.BroadcastMAC, st[0].mac, 1)); err != nil {
		t.Fatal(err)
	}
	for _, s := range st[1:] {
		nsExpectTag(t, s.link, 1)
	}
	// Once the bridge has learnt where station 1 is, a frame to it reaches
	// it alone.
	nsSendAndExpect(t, st[1].link, st[0].link, st[0].mac, 2)
	nsSendAndExpect(t, st[0].link, st[1].link, st[1].mac, 3)
	if n := nsCountFrames(st[2].link, 100*time.Millisecond); n != 0 {
		t.Errorf("station 2 saw %d frames addressed to station 1", n)
	}
}

// nsFrame builds a 100-byte AoE frame with the given tag.
func nsFrame(dst, src aoe.MAC, tag uint32) []byte {
	f := aoe.Frame{Dst: dst, Src: src, Header: aoe.Header{Version: aoe.Version, Command: aoe.CommandQueryConfig, Tag: tag}, Arg: make([]byte, 76)}
	b, err := f.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

func nsSendAndExpect(t *testing.T, from, to *rawlink.Link, dst aoe.MAC, tag uint32) {
	t.Helper()
	if err := from.WriteFrame(nsFrame(dst, from.HardwareAddr(), tag)); err != nil {
		t.Fatal(err)
	}
	nsExpectTag(t, to, tag)
}

func nsExpectTag(t *testing.T, l *rawlink.Link, tag uint32) {
	t.Helper()
	if err := l.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 9014)
	n, err := l.ReadFrame(buf)
	if err != nil {
		t.Fatalf("%s: %v", l.Interface(), err)
	}
	var f aoe.Frame
	if err := f.UnmarshalBinary(buf[:n]); err != nil || f.Tag != tag {
		t.Fatalf("%s: got tag %d (%v), want %d", l.Interface(), f.Tag, err, tag)
	}
}

// nsCountFrames reads frames until none comes for quiet.
func nsCountFrames(l *rawlink.Link, quiet time.Duration) int {
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 9014)
	}
	lens := make([]int, len(bufs))
	got := 0
	for {
		_ = l.SetReadDeadline(time.Now().Add(quiet))
		n, err := l.ReadFrames(bufs, lens)
		if err != nil {
			return got
		}
		got += n
	}
}
