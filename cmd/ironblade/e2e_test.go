package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestMain builds the command once for the tests that run it, and removes
// it at the end.
func TestMain(m *testing.M) { testenv.RunTests(m) }

// buildBinary compiles the command (once) and returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	return testenv.BuildBinary(t, "./cmd/ironblade")
}

// TestBinaryOverVeth builds ironblade and runs it the way Debian's
// vblade@.service does (options after the operands) in a network namespace,
// with a test initiator in another namespace at the far end of a veth pair:
// it checks the start line, the unicast announcement to the -m initiator,
// I/O with -s, SIGUSR1 and a clean exit on SIGTERM within 2 s.
func TestBinaryOverVeth(t *testing.T) {
	testenv.RequireRoot(t)
	bin := buildBinary(t)
	disk := newDisk(t, 2048)

	nsTarget, nsClient := testenv.NewNetns(t), testenv.NewNetns(t)
	// NewVeth waits until both ends can send: a veth end drops what is
	// sent on it until the kernel has seen its carrier come up (link watch
	// events can lag up to a second), and the announcement at start would
	// be lost.
	veth := testenv.NewVeth(t, nsTarget, nsClient, 0)
	link := testenv.ListenRawIn(t, nsClient, veth.IfB, rawlink.Config{})
	client := aoetest.NewClient(link, aoetest.ClientOptions{Timeout: 250 * time.Millisecond})
	t.Cleanup(func() { client.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clientMAC := strings.ReplaceAll(veth.MACB.String(), ":", "") // vblade's -m form
	ib := testenv.StartProcess(t, "ironblade", nsTarget.Command(ctx, bin, "1", "2", veth.IfA, disk, "-s", "-b", "16", "-m", clientMAC))
	cmd := ib.Cmd

	step, stepDone := context.WithTimeout(ctx, 5*time.Second)
	defer stepDone()
	f, err := client.Expect(step, aoetest.IsAnnouncement(veth.MACA))
	if err != nil {
		t.Fatalf("no announcement: %v\nstderr:\n%s", err, ib.Stderr())
	}
	if f.Dst != veth.MACB {
		t.Errorf("announcement sent to %v, want the -m initiator %v", f.Dst, veth.MACB)
	}
	dev, err := client.DeviceFrom(&f)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Shelf != 1 || dev.Slot != 2 || dev.Config.BufferCount != 16 {
		t.Errorf("announced e%d.%d with %d buffers, want e1.2 with 16", dev.Shelf, dev.Slot, dev.Config.BufferCount)
	}
	// ip netns exec replaces itself with the command, so this is our pid.
	// The log reaches stderr through a pipe, maybe after the announcement.
	startLine := fmt.Sprintf("pid %d: e1.2, 2048 sectors O_RDWR", cmd.Process.Pid)
	testenv.WaitFor(t, 5*time.Second, "the start line "+startLine, func() bool { return strings.Contains(ib.Stderr(), startLine) })

	data := writeReadBack(t, ctx, client, dev, 100*aoe.SectorSize, 64*aoe.SectorSize, 8, ib.Stderr)

	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	step, stepDone = context.WithTimeout(ctx, 5*time.Second)
	defer stepDone()
	if _, err := client.Expect(step, aoetest.IsAnnouncement(veth.MACA)); err != nil {
		t.Fatalf("no announcement after SIGUSR1: %v\nstderr:\n%s", err, ib.Stderr())
	}

	took := ib.StopClean(t, syscall.SIGTERM, 2*time.Second)
	t.Logf("exited %v after SIGTERM", took.Round(time.Millisecond))

	raw, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw[100*aoe.SectorSize:100*aoe.SectorSize+len(data)], data) {
		t.Error("the file does not hold the written data")
	}
}

// TestBinaryUsage runs the built command with bad command lines: it must
// exit 2 (vblade exits 1; ironblade follows the convention of its sibling
// commands) and print the reason and vblade's usage line. A failure to
// serve exits 1 with one plain line that says what failed and what to do.
func TestBinaryUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := buildBinary(t)
	for _, args := range [][]string{{}, {"-b", "1", "1", "2", "lo", "x"}, {"-q", "1", "2", "lo", "x"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("ironblade %q: %v, want exit status 2", args, err)
		}
		if !strings.Contains(string(out), "usage: ironblade [-b bufcnt]") {
			t.Errorf("ironblade %q printed %q, want the usage line", args, out)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.img")
	out, err := exec.Command(bin, "1", "2", "lo", missing).CombinedOutput()
	var exit *exec.ExitError
	want := "ironblade: target: open " + missing + ": no such file or directory (check the path"
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasPrefix(string(out), want) || strings.Count(string(out), "\n") != 1 {
		t.Errorf("ironblade on a missing file: %v, printed %q; want exit status 1 and one line starting %q", err, out, want)
	}
	out, err = exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ironblade version "+testenv.BinaryVersion) {
		t.Errorf("ironblade --version: %v, %q", err, out)
	}
}
