package main

import (
	"bytes"
	"context"
	"crypto/rand"
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
)

// buildBinary compiles the command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	// go test runs with its own go first in PATH; sudo's secure_path may
	// leave it out, so fall back to the usual install location.
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(t.TempDir(), "ironblade")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "build", "-buildvcs=false", "-ldflags", "-X main.version=v0.0.0-e2e", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runningBinary is the built command running in a network namespace.
type runningBinary struct {
	cmd    *exec.Cmd
	stderr syncBuffer
	exited chan error
}

// startBinary runs bin with args in ns until ctx ends; t.Cleanup kills it.
func startBinary(t *testing.T, ctx context.Context, ns *aoetest.Netns, bin string, args ...string) *runningBinary {
	t.Helper()
	r := &runningBinary{cmd: ns.Command(ctx, bin, args...), exited: make(chan error, 1)}
	r.cmd.Stderr = &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.exited
	})
	return r
}

// stop sends SIGTERM and fails the test unless the process exits 0
// within limit.
func (r *runningBinary) stop(t *testing.T, limit time.Duration) {
	t.Helper()
	start := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.exited:
		r.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", err, r.stderr.String())
		}
	case <-time.After(limit):
		t.Fatalf("still running %v after SIGTERM\nstderr:\n%s", limit, r.stderr.String())
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// waitOperUp waits until iface in ns reports operstate "up".
func waitOperUp(t *testing.T, ns *aoetest.Netns, iface string) {
	t.Helper()
	waitFor(t, 5*time.Second, iface+" to be up", func() bool {
		return strings.TrimSpace(ns.Run(t, "cat", "/sys/class/net/"+iface+"/operstate")) == "up"
	})
}

// TestBinaryOverVeth builds ironblade and runs it the way Debian's
// vblade@.service does (options after the operands) in a network namespace,
// with a test initiator in another namespace at the far end of a veth pair:
// it checks the start line, the unicast announcement to the -m initiator,
// I/O with -s, SIGUSR1 and a clean exit on SIGTERM within 2 s.
func TestBinaryOverVeth(t *testing.T) {
	aoetest.RequireRoot(t)
	bin := buildBinary(t)
	disk := newDisk(t, 2048)

	nsTarget, nsClient := aoetest.NewNetns(t), aoetest.NewNetns(t)
	veth := aoetest.NewVeth(t, nsTarget, nsClient, 0)
	// A veth end drops what is sent on it until the kernel has seen its
	// carrier come up (link watch events can lag up to a second), and the
	// announcement at start would be lost.
	waitOperUp(t, nsTarget, veth.IfA)
	waitOperUp(t, nsClient, veth.IfB)
	link := aoetest.ListenRawIn(t, nsClient, veth.IfB, aoe.RawConfig{})
	client := aoetest.NewClient(link, aoetest.ClientOptions{Timeout: 250 * time.Millisecond})
	t.Cleanup(func() { client.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clientMAC := strings.ReplaceAll(veth.MACB.String(), ":", "") // vblade's -m form
	ib := startBinary(t, ctx, nsTarget, bin, "1", "2", veth.IfA, disk, "-s", "-b", "16", "-m", clientMAC)
	cmd, stderr := ib.cmd, &ib.stderr

	step, stepDone := context.WithTimeout(ctx, 5*time.Second)
	defer stepDone()
	f, err := client.Expect(step, isAnnouncement(veth.MACA))
	if err != nil {
		t.Fatalf("no announcement: %v\nstderr:\n%s", err, stderr.String())
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
	waitFor(t, 5*time.Second, "the start line "+startLine, func() bool { return strings.Contains(stderr.String(), startLine) })

	data := make([]byte, 64*aoe.SectorSize)
	rand.Read(data)
	if err := client.WriteAt(ctx, dev, data, 100*aoe.SectorSize, 8); err != nil {
		t.Fatalf("write: %v\nstderr:\n%s", err, stderr.String())
	}
	back := make([]byte, len(data))
	if err := client.ReadAt(ctx, dev, back, 100*aoe.SectorSize, 8); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("read back different data")
	}

	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	step, stepDone = context.WithTimeout(ctx, 5*time.Second)
	defer stepDone()
	if _, err := client.Expect(step, isAnnouncement(veth.MACA)); err != nil {
		t.Fatalf("no announcement after SIGUSR1: %v\nstderr:\n%s", err, stderr.String())
	}

	ib.stop(t, 2*time.Second)

	raw, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw[100*aoe.SectorSize:100*aoe.SectorSize+len(data)], data) {
		t.Error("the file does not hold the written data")
	}
}

// TestBinaryUsage runs the built command with bad command lines: it must
// exit 1 and print the reason and vblade's usage line, as vblade exits 1.
func TestBinaryUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := buildBinary(t)
	for _, args := range [][]string{{}, {"-b", "1", "1", "2", "lo", "x"}, {"-q", "1", "2", "lo", "x"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("ironblade %q: %v, want exit status 1", args, err)
		}
		if !strings.Contains(string(out), "usage: ironblade [-b bufcnt]") {
			t.Errorf("ironblade %q printed %q, want the usage line", args, out)
		}
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ironblade version v0.0.0-e2e") {
		t.Errorf("ironblade --version: %v, %q", err, out)
	}
}
