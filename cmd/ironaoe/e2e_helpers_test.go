package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/initiator"
)

// binaries are ironaoe and ironblade, built once per test binary into
// binDir (which TestMain removes).
var binaries struct {
	once      sync.Once
	dir       string
	ironaoe   string
	ironblade string
	err       error
}

// TestMain removes the binaries built for the end-to-end tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// buildBinaries compiles ironaoe and ironblade, once, and fails the test if
// that fails.
func buildBinaries(t testing.TB) (ironaoe, ironblade string) {
	t.Helper()
	binaries.once.Do(func() {
		// go test runs with its own go first in PATH; sudo's secure_path
		// may leave it out, so fall back to the usual install location.
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = "/usr/local/go/bin/go"
		}
		if binaries.dir, binaries.err = os.MkdirTemp("", "ironaoe-e2e-bin"); binaries.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		binaries.ironaoe = filepath.Join(binaries.dir, "ironaoe")
		binaries.ironblade = filepath.Join(binaries.dir, "ironblade")
		for _, b := range []struct{ dst, pkg string }{
			{binaries.ironaoe, "."},
			{binaries.ironblade, "../ironblade"},
		} {
			out, err := exec.CommandContext(ctx, goTool, "build", "-buildvcs=false",
				"-ldflags", "-X main.version=v0.0.0-e2e", "-o", b.dst, b.pkg).CombinedOutput()
			if err != nil {
				binaries.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.ironaoe, binaries.ironblade
}

// requireCommands skips the test unless every named program is installed.
func requireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("needs %s: %v", n, err)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a process to write while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a long-running command started by a test.
type process struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	exited         chan struct{}
	err            error // valid once exited is closed
}

// startProcess starts cmd. In t.Cleanup it is killed if still running,
// and its output is logged if the test failed.
func startProcess(t testing.TB, name string, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{name: name, cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", name, p.stdout.String(), name, p.stderr.String())
		}
	})
	return p
}

// stop sends sig and waits up to timeout for the process to exit; it
// returns how it exited.
func (p *process) stop(t testing.TB, sig syscall.Signal, timeout time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s still running %v after %v\nstderr:\n%s", p.name, timeout, sig, p.stderr.String())
		return nil
	}
}

// commandTimeout bounds each client command a test runs.
const commandTimeout = 90 * time.Second

// runIn runs a command in ns and returns its stdout; it fails the test,
// showing both outputs, if the command fails.
func runIn(t testing.TB, ns *aoetest.Netns, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := tryIn(ns, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// tryIn runs a command in ns and returns its outputs and error.
func tryIn(ns *aoetest.Netns, name string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := ns.Command(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// runHost runs a command outside any namespace and returns its combined
// output, failing the test if it fails.
func runHost(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// randomFile writes size random bytes to path and returns their SHA-512.
func randomFile(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fileSHA512 returns the SHA-512 of a file's first size bytes (all of it
// if size is negative).
func fileSHA512(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if size >= 0 {
		r = io.LimitReader(f, size)
	}
	h := sha512.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sparseFile creates a file of size bytes holding zeroes.
func sparseFile(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

// rig is the usual end-to-end set-up: a target namespace and an initiator
// namespace joined by a veth pair, and a directory for files and sockets.
type rig struct {
	ironaoe, ironblade string
	target, initiator  *aoetest.Netns
	veth               *aoetest.Veth
	dir                string
}

// newRig builds the binaries and the namespaces; mtu 0 means 1500.
func newRig(t *testing.T, mtu int) *rig {
	t.Helper()
	aoetest.RequireRoot(t)
	r := &rig{dir: shortTempDir(t)}
	r.ironaoe, r.ironblade = buildBinaries(t)
	r.target, r.initiator = aoetest.NewNetns(t), aoetest.NewNetns(t)
	r.veth = aoetest.NewVeth(t, r.target, r.initiator, mtu)
	// A veth end drops what it sends until the kernel has seen its carrier
	// come up, so wait for that before a target announces itself.
	for _, x := range []struct {
		ns    *aoetest.Netns
		iface string
	}{{r.target, r.veth.IfA}, {r.initiator, r.veth.IfB}} {
		waitFor(t, 5*time.Second, x.iface+" to be up", func() bool {
			out, _, _ := tryIn(x.ns, "cat", "/sys/class/net/"+x.iface+"/operstate")
			return strings.TrimSpace(out) == "up"
		})
	}
	return r
}

// startTarget serves disk as e1.0 on the target side with vblade or
// ironblade.
func (r *rig) startTarget(t *testing.T, kind, disk string) *process {
	t.Helper()
	prog := r.ironblade
	if kind == "vblade" {
		prog = "vblade"
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return startProcess(t, kind, r.target.Command(ctx, prog, "1", "0", r.veth.IfA, disk))
}

// startServe runs ironaoe serve in the initiator namespace with its
// control socket in r.dir/ctl, and waits until the unix socket (if any)
// exists.
func (r *rig) startServe(t *testing.T, args ...string) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	full := append([]string{"serve", "-i", r.veth.IfB, "--control-dir", r.controlDir(), "--log-level", "debug"}, args...)
	p := startProcess(t, "ironaoe serve", r.initiator.Command(ctx, r.ironaoe, full...))
	for n, a := range args {
		if a == "--unix" && n+1 < len(args) {
			waitFor(t, 10*time.Second, "the NBD socket "+args[n+1], func() bool {
				_, err := os.Stat(args[n+1])
				return err == nil
			})
		}
	}
	return p
}

// controlDir is where serve and attach put their control sockets.
func (r *rig) controlDir() string { return filepath.Join(r.dir, "ctl") }

// stat runs ironaoe stat --json and decodes its report.
func (r *rig) stat(t *testing.T) statReport {
	t.Helper()
	out := runIn(t, r.initiator, r.ironaoe, "stat", "--json", "--control-dir", r.controlDir())
	var report statReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("ironaoe stat --json: %v\n%s", err, out)
	}
	return report
}

// copyInOut copies a random file of size bytes into the export with
// nbdcopy and back out, and checks that what comes back and what the
// target's disk holds match what went in.
func (r *rig) copyInOut(t *testing.T, uri, disk string, size int64) {
	t.Helper()
	in, out := filepath.Join(r.dir, "in.bin"), filepath.Join(r.dir, "out.bin")
	want := randomFile(t, in, size)
	start := time.Now()
	runIn(t, r.initiator, "nbdcopy", "--flush", in, uri)
	mid := time.Now()
	runIn(t, r.initiator, "nbdcopy", uri, out)
	end := time.Now()
	t.Logf("nbdcopy %d MiB: in %v (%.0f MiB/s), out %v (%.0f MiB/s)", size>>20,
		mid.Sub(start).Round(time.Millisecond), float64(size>>20)/mid.Sub(start).Seconds(),
		end.Sub(mid).Round(time.Millisecond), float64(size>>20)/end.Sub(mid).Seconds())
	if got := fileSHA512(t, out, -1); got != want {
		t.Errorf("copied out data differs (SHA-512 %.16s..., want %.16s...)", got, want)
	}
	if got := fileSHA512(t, disk, size); got != want {
		t.Errorf("the target's disk differs from the copied data (SHA-512 %.16s..., want %.16s...)", got, want)
	}
	os.Remove(in)
	os.Remove(out)
}

// findDevice returns the named device of a stat report's first process.
func findDevice(t *testing.T, report statReport, name string) initiator.DeviceStats {
	t.Helper()
	if len(report.Processes) != 1 {
		t.Fatalf("stat reports %d processes, want 1: %+v", len(report.Processes), report)
	}
	for _, d := range report.Processes[0].Stats.Devices {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("stat reports no device %s: %+v", name, report.Processes[0])
	return initiator.DeviceStats{}
}
