package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestMain builds the binaries of the end-to-end tests once and removes
// them at the end.
func TestMain(m *testing.M) { testenv.RunTests(m) }

// retryUntil calls cond every interval until it returns true, and reports
// whether it did so within timeout: a wait whose failure the caller
// handles itself (a clean-up that must go on, a test that checks more
// before it fails), where testenv.WaitFor would end the test.
func retryUntil(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
	return true
}

// buildBinaries compiles ironaoe and ironblade (once) and fails the test if
// that fails.
func buildBinaries(t testing.TB) (ironaoe, ironblade string) {
	t.Helper()
	return testenv.BuildBinary(t, "./cmd/ironaoe"), testenv.BuildBinary(t, "./cmd/ironblade")
}

// commandTimeout bounds each client command a test runs.
const commandTimeout = 90 * time.Second

// runIn runs a command in ns and returns its stdout; it fails the test,
// showing both outputs, if the command fails.
func runIn(t testing.TB, ns *netlab.Netns, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := ns.Command(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
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
func randomFile(t testing.TB, path string, size int64) [sha512.Size]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return aoetest.FileSum(t, path, 0, -1)
}

// rig is the usual end-to-end set-up: a target namespace and an initiator
// namespace joined by a veth pair, and a directory for files and sockets.
type rig struct {
	ironaoe, ironblade string
	target, initiator  *netlab.Netns
	veth               *netlab.Veth
	dir                string
}

// newRig builds the binaries and the namespaces; mtu 0 means 1500.
func newRig(t *testing.T, mtu int) *rig {
	t.Helper()
	testenv.RequireRoot(t)
	r := &rig{dir: shortTempDir(t)}
	r.ironaoe, r.ironblade = buildBinaries(t)
	r.target, r.initiator = testenv.NewNetns(t), testenv.NewNetns(t)
	// NewVeth waits until both ends can send, so that a target's
	// announcement at start is not lost.
	r.veth = testenv.NewVeth(t, r.target, r.initiator, mtu)
	return r
}

// diskSize is full, or a quarter of it with -short.
func diskSize(full int64) int64 {
	if testing.Short() {
		return full / 4
	}
	return full
}

// newDisk creates the target's disk, a sparse file of size bytes in r.dir.
func (r *rig) newDisk(t *testing.T, size int64) string {
	t.Helper()
	return aoetest.SparseFile(t, filepath.Join(r.dir, "disk.img"), size)
}

// startTarget serves disk as e1.0 on the target side with vblade or
// ironblade.
func (r *rig) startTarget(t *testing.T, kind, disk string) *testenv.Process {
	t.Helper()
	prog := r.ironblade
	if kind == "vblade" {
		prog = testenv.RequireCommand(t, "vblade")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return testenv.StartProcess(t, kind, r.target.Command(ctx, prog, "1", "0", r.veth.IfA, disk))
}

// startServe runs ironaoe serve in the initiator namespace with its
// control socket in r.dir/ctl, and waits until the unix socket (if any)
// exists.
func (r *rig) startServe(t *testing.T, args ...string) *testenv.Process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	full := append([]string{"serve", "-i", r.veth.IfB, "--control-dir", r.controlDir(), "--log-level", "debug"}, args...)
	p := testenv.StartProcess(t, "ironaoe serve", r.initiator.Command(ctx, r.ironaoe, full...))
	for n, a := range args {
		if a == "--unix" && n+1 < len(args) {
			testenv.WaitFor(t, 10*time.Second, "the NBD socket "+args[n+1], func() bool {
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
	if got := aoetest.FileSum(t, out, 0, -1); got != want {
		t.Errorf("copied out data differs (SHA-512 %.8x..., want %.8x...)", got, want)
	}
	if got := aoetest.FileSum(t, disk, 0, size); got != want {
		t.Errorf("the target's disk differs from the copied data (SHA-512 %.8x..., want %.8x...)", got, want)
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
