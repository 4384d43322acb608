package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestBinaryVLAN runs ironblade --vlan 42 on a trunk port of a bridge that
// carries VLANs 42 and 43. A client on VLAN 42 finds the target and does
// I/O; a client on VLAN 43, on the same interface, and an untagged client
// on a port that hears every VLAN find nothing.
func TestBinaryVLAN(t *testing.T) {
	testenv.RequireRoot(t)
	bin := buildBinary(t)
	disk := newDisk(t, 2048)

	br := testenv.NewBridge(t, 0)
	nsTarget, nsClient, nsPlain := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	ifTarget, macTarget := testenv.AttachVLAN(t, br, nsTarget, 42, 43)
	ifClient, _ := testenv.AttachVLAN(t, br, nsClient, 42, 43)
	ifPlain, _ := testenv.Attach(t, br, nsPlain)
	newClient := func(ns *netlab.Netns, iface string, vlan uint16) *aoetest.Client {
		link := testenv.ListenRawIn(t, ns, iface, rawlink.Config{VLAN: vlan})
		c := aoetest.NewClient(link, aoetest.ClientOptions{Timeout: 250 * time.Millisecond})
		t.Cleanup(func() { c.Close() })
		return c
	}
	client := newClient(nsClient, ifClient, 42)
	others := map[string]*aoetest.Client{
		"VLAN 43":  newClient(nsClient, ifClient, 43),
		"untagged": newClient(nsPlain, ifPlain, 0),
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ib := testenv.StartProcess(t, "ironblade", nsTarget.Command(ctx, bin, "--vlan", "42", "1", "2", ifTarget, disk))

	step, stepDone := context.WithTimeout(ctx, 5*time.Second)
	defer stepDone()
	if _, err := client.Expect(step, aoetest.IsAnnouncement(macTarget)); err != nil {
		t.Fatalf("no announcement on VLAN 42: %v\nstderr:\n%s", err, ib.Stderr())
	}
	testenv.WaitFor(t, 5*time.Second, "the start line with vlan=42", func() bool {
		return strings.Contains(ib.Stderr(), "vlan=42")
	})
	devs, err := client.Discover(ctx, 300*time.Millisecond)
	if err != nil || len(devs) != 1 || devs[0].Shelf != 1 || devs[0].Slot != 2 {
		t.Fatalf("Discover on VLAN 42 = %v, %v; want e1.2\nstderr:\n%s", devs, err, ib.Stderr())
	}
	dev := devs[0]
	if _, err := client.Identify(ctx, &dev); err != nil || dev.Sectors != 2048 {
		t.Fatalf("IDENTIFY: %v, %d sectors; want 2048", err, dev.Sectors)
	}
	writeReadBack(t, ctx, client, dev, 100*aoe.SectorSize, 64*aoe.SectorSize, 8, ib.Stderr)

	for name, c := range others {
		if devs, err := c.Discover(ctx, 300*time.Millisecond); err != nil || len(devs) != 0 {
			t.Errorf("%s client: Discover = %v, %v; want nothing", name, devs, err)
		}
	}
	// A second announcement, which the others must not hear either.
	if err := ib.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	step, stepDone = context.WithTimeout(ctx, 5*time.Second)
	defer stepDone()
	if _, err := client.Expect(step, aoetest.IsAnnouncement(macTarget)); err != nil {
		t.Fatalf("no announcement after SIGUSR1: %v", err)
	}
	for name, c := range others {
		quiet, done := context.WithTimeout(ctx, 200*time.Millisecond)
		f, err := c.Expect(quiet, func(*aoe.Frame) bool { return true })
		done()
		if err == nil {
			t.Errorf("%s client heard a frame from %v: %v", name, f.Src, f.Header)
		}
	}
	took := ib.StopClean(t, syscall.SIGTERM, 5*time.Second)
	t.Logf("exited %v after SIGTERM", took.Round(time.Millisecond))
}
