package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator/nbdkernel"
	"github.com/ironblade/ironblade/internal/testenv"
)

// notifyEnv is the environment with NOTIFY_SOCKET set to path.
func notifyEnv(path string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "LISTEN_")
	})
	return append(env, "NOTIFY_SOCKET="+path)
}

// nbdGreeting connects to the NBD server at the Unix socket path and reads
// its first 8 bytes, which are "NBDMAGIC" when it serves.
func nbdGreeting(t *testing.T, path string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 8)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read the NBD greeting from %s: %v", path, err)
	}
	return string(buf)
}

// TestE2EServeNotify runs ironaoe serve as systemd runs a Type=notify
// service: READY=1 comes once the NBD socket accepts, with a status that
// names it, and SIGTERM sends STOPPING=1 before the exit.
func TestE2EServeNotify(t *testing.T) {
	r := newRig(t, 0)
	disk := r.newDisk(t, 1<<20)
	r.startTarget(t, "ironblade", disk)
	notify := testenv.NewNotifySocket(t, r.dir)
	sock := filepath.Join(r.dir, "nbd.sock")

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd := r.initiator.Command(ctx, r.ironaoe, "serve", "-i", r.veth.IfB, "--control-dir", r.controlDir(), "--unix", sock, "e1.0")
	cmd.Env = notifyEnv(notify.Path)
	p := testenv.StartProcess(t, "ironaoe serve", cmd)

	ready, before := notify.Expect(t, 10*time.Second, "READY=1")
	if len(before) > 0 {
		t.Errorf("messages before READY=1: %q", before)
	}
	if got := nbdGreeting(t, sock); got != "NBDMAGIC" {
		t.Errorf("READY=1 sent, but the NBD socket greets with %q", got)
	}
	if st, want := testenv.NotifyStatus(ready), "serving NBD on unix:"+sock+", devices e1.0"; st != want {
		t.Errorf("STATUS=%q, want %q", st, want)
	}
	runIn(t, r.initiator, "nbdinfo", "--size", "nbd+unix:///e1.0?socket="+sock)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.Expect(t, 5*time.Second, "STOPPING=1")
	testenv.WaitFor(t, 10*time.Second, "serve to exit", func() bool { return !p.Running() })
	if err := p.Err(); err != nil {
		t.Errorf("serve exited with %v", err)
	}
}

// TestE2EServeSocketActivation passes serve a listening Unix socket as
// systemd does (fd 3, LISTEN_FDS=1, LISTEN_PID = serve's pid, which a
// shell sets before it execs serve): serve must serve NBD on it, not on
// its --tcp, report READY=1 naming it, and leave the socket file, which is
// systemd's, in place when it stops.
func TestE2EServeSocketActivation(t *testing.T) {
	r := newRig(t, 0)
	disk := r.newDisk(t, 1<<20)
	r.startTarget(t, "ironblade", disk)
	notify := testenv.NewNotifySocket(t, r.dir)
	sock := filepath.Join(r.dir, "activated.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // f holds the socket
	t.Cleanup(func() { f.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// ip netns exec execs sh, which execs serve: one pid throughout.
	script := `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=nbd exec "$@"`
	cmd := r.initiator.Command(ctx, "sh", "-c", script, "sh", r.ironaoe, "serve", "-i", r.veth.IfB,
		"--control-dir", r.controlDir(), "--tcp", "127.0.0.1:0", "e1.0")
	cmd.Env = notifyEnv(notify.Path)
	cmd.ExtraFiles = []*os.File{f} // fd 3
	p := testenv.StartProcess(t, "ironaoe serve", cmd)
	f.Close() // the child holds it now

	ready, _ := notify.Expect(t, 10*time.Second, "READY=1")
	if st, want := testenv.NotifyStatus(ready), "serving NBD on unix:"+sock+", devices e1.0"; st != want {
		t.Errorf("STATUS=%q, want %q", st, want)
	}
	if got := nbdGreeting(t, sock); got != "NBDMAGIC" {
		t.Errorf("the passed socket greets with %q", got)
	}
	runIn(t, r.initiator, "nbdinfo", "--size", "nbd+unix:///e1.0?socket="+sock)
	if !strings.Contains(p.Stderr(), "socket activation") {
		t.Errorf("no log line about socket activation:\n%s", p.Stderr())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.Expect(t, 5*time.Second, "STOPPING=1")
	testenv.WaitFor(t, 10*time.Second, "serve to exit", func() bool { return !p.Running() })
	if err := p.Err(); err != nil {
		t.Errorf("serve exited with %v", err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the activated socket's file is gone after serve stopped: %v", err)
	}
}

// TestE2EAttachNotify runs ironaoe attach with NOTIFY_SOCKET: READY=1 once
// /dev/nbdN is attached, with a status naming it, and STOPPING=1 on
// SIGTERM. It needs the kernel's nbd module.
func TestE2EAttachNotify(t *testing.T) {
	if err := nbdkernel.Available(); err != nil {
		t.Skipf("kernel nbd module absent: %v", err)
	}
	r := newRig(t, 0)
	disk := r.newDisk(t, 1<<20)
	r.startTarget(t, "ironblade", disk)
	notify := testenv.NewNotifySocket(t, r.dir)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd := r.initiator.Command(ctx, r.ironaoe, "attach", "-i", r.veth.IfB, "--control-dir", r.controlDir(), "e1.0")
	cmd.Env = notifyEnv(notify.Path)
	p := testenv.StartProcess(t, "ironaoe attach", cmd)

	ready, _ := notify.Expect(t, 30*time.Second, "READY=1")
	dev, _, _ := strings.Cut(p.Stdout(), "\n")
	if !strings.HasPrefix(dev, "/dev/nbd") {
		t.Fatalf("READY=1 before attach printed the device (stdout %q)", p.Stdout())
	}
	if st, want := testenv.NotifyStatus(ready), "attached e1.0 as "+dev; st != want {
		t.Errorf("STATUS=%q, want %q", st, want)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.Expect(t, 5*time.Second, "STOPPING=1")
	testenv.WaitFor(t, 15*time.Second, "attach to exit", func() bool { return !p.Running() })
}

// TestCheckActivated checks that a TCP socket passed by systemd beyond
// loopback needs --tcp-any, as --tcp does, and is closed when refused.
func TestCheckActivated(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		tcpAny bool
		ok     bool
	}{
		{"127.0.0.1:0", false, true},
		{"0.0.0.0:0", false, false},
		{"0.0.0.0:0", true, true},
	} {
		l, err := net.Listen("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		err = checkActivated([]net.Listener{l}, tc.tcpAny)
		if (err == nil) != tc.ok {
			t.Errorf("%s, tcp-any %v: %v, want ok %v", tc.addr, tc.tcpAny, err, tc.ok)
		}
		if err != nil {
			if _, aerr := l.Accept(); aerr == nil {
				t.Errorf("%s: refused listener still open", tc.addr)
			}
			if !strings.Contains(err.Error(), "--tcp-any") {
				t.Errorf("error %q does not name --tcp-any", err)
			}
		}
		l.Close()
	}
}
