package main

// End-to-end tests of sealed AoE (docs/auth.md) with the real binaries:
// ironblade --auth-key and ironaoe {discover,serve} --auth-key over veth
// pairs and bridges between network namespaces, with nbdcopy moving the
// data. Every "nothing was written there" check reads the backing file.

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// authMetricsAddr is where a keyed ironblade serves its metrics, inside
// its own namespace.
const authMetricsAddr = "127.0.0.1:9192"

// writeAuthKey writes a fresh 32-byte key file, mode 0600, as
// `head -c 32 /dev/urandom > FILE && chmod 600 FILE` does, and returns its
// path and key id.
func writeAuthKey(t *testing.T, dir, name string) (string, uint32) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, aoetest.RandomBytes(32), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, authKeyID(t, path)
}

// authKeyID is the id of the key in a key file.
func authKeyID(t *testing.T, path string) uint32 {
	t.Helper()
	k, err := seal.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// copyKey copies a key file (for an initiator that must keep the key when
// the target's file is rewritten).
func copyKey(t *testing.T, from, to string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return to
}

// startBlade runs ironblade with opts (before the positional arguments)
// serving disk as e1.0 on iface in ns, and waits for its metrics to answer
// if opts has --metrics.
func (r *rig) startBlade(t *testing.T, ns *netlab.Netns, iface, disk string, opts ...string) *testenv.Process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	args := append(slices.Clone(opts), "1", "0", iface, disk)
	p := testenv.StartProcess(t, "ironblade "+strings.Join(args, " "), ns.Command(ctx, r.ironblade, args...))
	if slices.Contains(opts, "--metrics") {
		testenv.WaitFor(t, 5*time.Second, "ironblade's metrics", func() bool {
			if !p.Running() {
				t.Fatalf("ironblade exited: %v\n%s", p.Err(), p.Output())
			}
			_, err := testenv.ScrapeMetrics(ns, authMetricsAddr)
			return err == nil
		})
	}
	return p
}

// serveOn runs ironaoe serve on ifaces (comma-separated) with its control
// socket in ctl and args, and waits for its NBD socket.
func (r *rig) serveOn(t *testing.T, ifaces, ctl, sock string, args ...string) *testenv.Process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	full := append([]string{"serve", "-i", ifaces, "--control-dir", ctl, "--log-level", "debug", "--unix", sock}, args...)
	p := testenv.StartProcess(t, "ironaoe "+strings.Join(full, " "), r.initiator.Command(ctx, r.ironaoe, full...))
	testenv.WaitFor(t, 10*time.Second, "the NBD socket "+sock, func() bool {
		if !p.Running() {
			t.Fatalf("ironaoe serve exited: %v\n%s", p.Err(), p.Output())
		}
		_, err := os.Stat(sock)
		return err == nil
	})
	return p
}

// statIn runs ironaoe stat --json on the control directory ctl.
func (r *rig) statIn(t *testing.T, ctl string) statReport {
	t.Helper()
	out := runIn(t, r.initiator, r.ironaoe, "stat", "--json", "--control-dir", ctl)
	var report statReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("ironaoe stat --json: %v\n%s", err, out)
	}
	if len(report.Processes) != 1 {
		t.Fatalf("stat in %s: %d processes, want 1", ctl, len(report.Processes))
	}
	return report
}

// authPeer returns the sealing layer's view of the target mac in a stat
// report.
func authPeer(report statReport, mac string) (seal.PeerStats, bool) {
	for _, st := range report.Processes[0].Auth {
		for _, p := range st.Peers {
			if p.MAC == mac {
				return p, true
			}
		}
	}
	return seal.PeerStats{}, false
}

// deviceOf returns e1.0 of a stat report, or false.
func deviceOf(report statReport) (initiator.DeviceStats, bool) {
	for _, d := range report.Processes[0].Stats.Devices {
		if d.Name == "e1.0" {
			return d, true
		}
	}
	return initiator.DeviceStats{}, false
}

// runInOut runs a command in ns with a timeout and returns its stdout,
// stderr and error, without judging them.
func runInOut(ns *netlab.Netns, timeout time.Duration, name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := ns.Command(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// discoverAuth runs ironaoe discover --json on ifaces with args and
// returns the result and discover's standard error.
func (r *rig) discoverAuth(t *testing.T, ifaces string, args ...string) (discovery, string) {
	t.Helper()
	full := append([]string{"discover", "--json", "--wait", "1s", "-i", ifaces}, args...)
	stdout, stderr, err := runInOut(r.initiator, commandTimeout, r.ironaoe, full...)
	if err != nil {
		t.Fatalf("ironaoe %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(full, " "), err, stdout, stderr)
	}
	var d discovery
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatalf("discover --json: %v\n%s", err, stdout)
	}
	return d, stderr
}

// authOf returns the auth field discover gave the target mac of e1.0, and
// whether discover listed it.
func authOf(d discovery, mac string) (string, bool) {
	for _, dev := range d.Devices {
		for _, tg := range dev.Targets {
			if dev.Name == "e1.0" && tg.MAC == mac {
				return tg.Auth, true
			}
		}
	}
	return "", false
}

// bladeMetric scrapes ironblade's metrics in ns and sums the samples of
// name whose labels include the given name, value pairs.
func bladeMetric(t *testing.T, ns *netlab.Netns, name string, labels ...string) float64 {
	t.Helper()
	fams, err := testenv.ScrapeMetrics(ns, authMetricsAddr)
	if err != nil {
		t.Fatalf("scrape ironblade's metrics: %v", err)
	}
	return testenv.MetricValue(fams, name, labels...)
}

// allZero reports whether the file holds only zeros.
func allZero(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
}

// TestE2EAuthServe copies a random file in and out through ironaoe serve
// --auth-key and a keyed ironblade with nbdcopy; stat shows the session
// and ironblade's metrics the sealed frames.
func TestE2EAuthServe(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdcopy")
	size := diskSize(32 << 20)
	r := newRig(t, 9000)
	disk := r.newDisk(t, size)
	key, id := writeAuthKey(t, r.dir, "auth.key")
	r.startBlade(t, r.target, r.veth.IfA, disk, "--metrics", authMetricsAddr, "--auth-key", key)
	sock := filepath.Join(r.dir, "nbd.sock")
	r.serveOn(t, r.veth.IfB, r.controlDir(), sock, "--auth-key", key, "e1.0")

	r.copyInOut(t, "nbd+unix:///e1.0?socket="+sock, disk, size)

	report := r.statIn(t, r.controlDir())
	auth := report.Processes[0].Auth
	if len(auth) != 1 || auth[0].Role != "initiator" || auth[0].Sessions != 1 || auth[0].FramesSealed == 0 || auth[0].FramesOpened == 0 {
		t.Errorf("stat: auth %+v, want one initiator layer with one session that carried frames", auth)
	}
	p, ok := authPeer(report, r.veth.MACA.String())
	if !ok || p.State != "established" || p.Device != "e1.0" || p.KeyID != id || p.Session == 0 {
		t.Errorf("stat: auth peer %+v (found %v), want an established session with key %08x", p, ok, id)
	}
	d := findDevice(t, report, "e1.0")
	if d.State != initiator.DeviceUp || len(d.Active) != 1 || d.Active[0] != r.veth.MACA.String() || d.IOErrors != 0 {
		t.Errorf("stat: device %+v", d)
	}
	sessions := bladeMetric(t, r.target, "ironblade_auth_sessions")
	opened := bladeMetric(t, r.target, "ironblade_auth_frames_opened_total")
	unsealed := bladeMetric(t, r.target, "ironblade_auth_rejected_total", "reason", "unsealed")
	if sessions != 1 || opened < float64(2*size/(17*512)) || unsealed != 0 {
		t.Errorf("ironblade: %v sessions, %v frames opened, %v plain frames refused", sessions, opened, unsealed)
	}
	t.Logf("session %08x with key %08x; initiator sealed %d frames, opened %d; ironblade opened %v",
		p.Session, p.KeyID, auth[0].FramesSealed, auth[0].FramesOpened, opened)
}

// TestE2EAuthRogueTargets puts three rogue targets for e1.0 on a second
// segment beside the keyed ironblade: an ironblade with another key, a
// plain ironblade and vblade, each on a file of its own. ironaoe serve
// --auth-key --policy multipath (which would spread writes over every
// target it used) on both segments copies data through e1.0: none of the
// rogues' files gets a byte, discover marks each NOT PROVEN and the real
// one proven.
func TestE2EAuthRogueTargets(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdcopy", "vblade")
	size := diskSize(16 << 20)
	r := newRig(t, 1500)
	disk := r.newDisk(t, size)
	key, _ := writeAuthKey(t, r.dir, "auth.key")
	other, otherID := writeAuthKey(t, r.dir, "other.key")
	r.startBlade(t, r.target, r.veth.IfA, disk, "--auth-key", key)

	br := testenv.NewBridge(t, 1500)
	lan, _ := testenv.Attach(t, br, r.initiator)
	type rogue struct {
		name string
		mac  string
		file string
	}
	var rogues []rogue
	for _, kind := range []string{"ironblade-other-key", "ironblade-plain", "vblade"} {
		ns := testenv.NewNetns(t)
		iface, mac := testenv.Attach(t, br, ns)
		file := aoetest.SparseFile(t, filepath.Join(r.dir, kind+".img"), size)
		switch kind {
		case "ironblade-other-key":
			r.startBlade(t, ns, iface, file, "--auth-key", other)
		case "ironblade-plain":
			r.startBlade(t, ns, iface, file)
		case "vblade":
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			testenv.StartProcess(t, "vblade", ns.Command(ctx, testenv.RequireCommand(t, "vblade"), "1", "0", iface, file))
		}
		rogues = append(rogues, rogue{kind, mac.String(), file})
	}
	ifaces := r.veth.IfB + "," + lan

	// Without a key every one of them is e1.0.
	found, _ := r.discoverAuth(t, ifaces)
	for _, rg := range append(rogues, rogue{"keyed ironblade", r.veth.MACA.String(), disk}) {
		if _, ok := authOf(found, rg.mac); !ok {
			t.Fatalf("plain discover does not list %s (%s): %+v", rg.name, rg.mac, found)
		}
	}

	sock := filepath.Join(r.dir, "nbd.sock")
	uri := "nbd+unix:///e1.0?socket=" + sock
	// Multipath would spread the writes over every target it knew of.
	r.serveOn(t, ifaces, r.controlDir(), sock, "--auth-key", key, "--policy", "multipath", "e1.0")
	in := filepath.Join(r.dir, "in.bin")
	want := randomFile(t, in, size)
	stdout, stderr, copyErr := runInOut(r.initiator, commandTimeout, "nbdcopy", "--flush", in, uri)
	// The rogues first: whatever became of the copy, none got a byte.
	for _, rg := range rogues {
		if !allZero(t, rg.file) {
			t.Errorf("%s (%s): ironaoe wrote to its file", rg.name, rg.mac)
		}
	}
	if copyErr != nil {
		t.Fatalf("nbdcopy in: %v\n%s%s", copyErr, stdout, stderr)
	}
	if aoetest.FileSum(t, disk, 0, size) != want {
		t.Error("the keyed ironblade's disk does not hold the data copied in")
	}
	out := filepath.Join(r.dir, "out.bin")
	runIn(t, r.initiator, "nbdcopy", uri, out)
	if aoetest.FileSum(t, out, 0, -1) != want {
		t.Error("the data copied out differs from the data copied in")
	}
	report := r.statIn(t, r.controlDir())
	d := findDevice(t, report, "e1.0")
	if len(d.Targets) != 1 || d.Targets[0].MAC != r.veth.MACA.String() {
		t.Errorf("serve used targets %+v, want only the keyed ironblade %v", d.Targets, r.veth.MACA)
	}
	for _, rg := range rogues {
		if p, ok := authPeer(report, rg.mac); ok && p.State == "established" {
			t.Errorf("%s: serve holds a session with it: %+v", rg.name, p)
		}
	}

	found, _ = r.discoverAuth(t, ifaces, "--auth-key", key)
	if auth, _ := authOf(found, r.veth.MACA.String()); auth != "proven" {
		t.Errorf("discover --auth-key: the keyed ironblade is %q, want proven", auth)
	}
	for _, rg := range rogues {
		auth, ok := authOf(found, rg.mac)
		if !ok || !strings.HasPrefix(auth, "NOT PROVEN") {
			t.Errorf("discover --auth-key: %s (%s) is %q (listed %v), want NOT PROVEN", rg.name, rg.mac, auth, ok)
		}
		if rg.name == "ironblade-other-key" && !strings.Contains(auth, "no key with id") {
			t.Errorf("discover --auth-key: the ironblade with key %08x is %q; want it to say it holds no key with our id", otherID, auth)
		}
		t.Logf("%s: %s", rg.name, auth)
	}
}

// TestE2EAuthWrongKey runs discover with a key the target does not hold:
// it names the key id in a clear refusal and ironblade keeps no session.
// The right key then proves the target and leaves one.
func TestE2EAuthWrongKey(t *testing.T) {
	testenv.RequireRoot(t)
	r := newRig(t, 1500)
	disk := r.newDisk(t, 8<<20)
	key, _ := writeAuthKey(t, r.dir, "auth.key")
	wrong, wrongID := writeAuthKey(t, r.dir, "wrong.key")
	r.startBlade(t, r.target, r.veth.IfA, disk, "--metrics", authMetricsAddr, "--auth-key", key)

	found, stderr := r.discoverAuth(t, r.veth.IfB, "--auth-key", wrong)
	auth, _ := authOf(found, r.veth.MACA.String())
	idText := fmt.Sprintf("%08x", wrongID)
	if !strings.HasPrefix(auth, "NOT PROVEN") || !strings.Contains(auth, idText) {
		t.Errorf("discover --auth-key WRONG: the target is %q; want NOT PROVEN naming key id %s", auth, idText)
	}
	if !strings.Contains(stderr, "handshake failed") || !strings.Contains(stderr, idText) {
		t.Errorf("discover --auth-key WRONG logged:\n%s\nwant a failed handshake naming key id %s", stderr, idText)
	}
	for _, dev := range found.Devices {
		if dev.Size != 0 {
			t.Errorf("discover --auth-key WRONG identified %s (%d bytes)", dev.Name, dev.Size)
		}
	}
	if s := bladeMetric(t, r.target, "ironblade_auth_sessions"); s != 0 {
		t.Errorf("ironblade_auth_sessions %v after a wrong key, want 0", s)
	}
	if f := bladeMetric(t, r.target, "ironblade_auth_rejected_total", "reason", "handshake_failed"); f == 0 {
		t.Error("ironblade counted no failed handshake")
	}
	t.Logf("wrong key %s: %q", idText, auth)

	found, _ = r.discoverAuth(t, r.veth.IfB, "--auth-key", key)
	if auth, _ := authOf(found, r.veth.MACA.String()); auth != "proven" || len(found.Devices) != 1 || found.Devices[0].Size != 8<<20 {
		t.Errorf("discover with the right key: %q, %+v", auth, found.Devices)
	}
	if s := bladeMetric(t, r.target, "ironblade_auth_sessions"); s != 1 {
		t.Errorf("ironblade_auth_sessions %v after the right key, want 1", s)
	}
}

// nbdcopyLoop copies a random file into the export again and again, and
// records when each copy completed and whether the file then held it.
type nbdcopyLoop struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	ends  []time.Time
	err   error
}

func startCopyLoop(t *testing.T, r *rig, uri, disk string, size int64) *nbdcopyLoop {
	l := &nbdcopyLoop{stopc: make(chan struct{}), done: make(chan struct{})}
	in := filepath.Join(r.dir, "loop.bin")
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stopc:
				return
			default:
			}
			f, err := os.Create(in)
			if err == nil {
				_, err = f.Write(aoetest.RandomBytes(int(size)))
				f.Close()
			}
			var out, stderr string
			if err == nil {
				out, stderr, err = runInOut(r.initiator, 30*time.Second, "nbdcopy", "--flush", in, uri)
			}
			if err == nil {
				var want, got [sha512.Size]byte
				if want, err = fileSum(in, 0, size); err == nil {
					if got, err = fileSum(disk, 0, size); err == nil && got != want {
						err = fmt.Errorf("copy %d: the disk does not hold the data", i)
					}
				}
			} else {
				err = fmt.Errorf("copy %d: nbdcopy: %v\n%s%s", i, err, out, stderr)
			}
			l.mu.Lock()
			if err != nil {
				l.err = err
				l.mu.Unlock()
				return
			}
			l.ends = append(l.ends, time.Now())
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *nbdcopyLoop) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ends)
}

// stop ends the loop and returns the copies made, the longest time
// between the ends of two copies and the loop's error.
func (l *nbdcopyLoop) stop() (int, time.Duration, error) {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	var gap time.Duration
	for i := 1; i < len(l.ends); i++ {
		gap = max(gap, l.ends[i].Sub(l.ends[i-1]))
	}
	return len(l.ends), gap, l.err
}

// fileSum is the SHA-512 of n bytes at off in the file at path.
func fileSum(path string, off, n int64) ([sha512.Size]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [sha512.Size]byte{}, err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		return [sha512.Size]byte{}, err
	}
	return [sha512.Size]byte(h.Sum(nil)), nil
}

// TestE2EAuthKeyRotation rotates ironblade's key without a restart:
// ironblade runs with two key files (A and B); ironaoe #1 uses A, #2 (on
// an address of its own) uses B and copies data in a loop. File A is then
// overwritten with key B and ironblade gets SIGHUP: #2 goes on without a
// gap, #1's session ends and its I/O fails rather than reaching the disk,
// discover with A is refused and with B proven. Last, #1's own key file is
// rewritten with B and ironaoe #1 gets SIGHUP: it works again.
func TestE2EAuthKeyRotation(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdcopy", "qemu-io")
	size := int64(16 << 20)
	r := newRig(t, 9000)
	disk := r.newDisk(t, 64<<20)
	fileA, idA := writeAuthKey(t, r.dir, "a.key")
	fileB, idB := writeAuthKey(t, r.dir, "b.key")
	iniA := copyKey(t, fileA, filepath.Join(r.dir, "ini-a.key"))
	iniB := copyKey(t, fileB, filepath.Join(r.dir, "ini-b.key"))
	blade := r.startBlade(t, r.target, r.veth.IfA, disk, "--metrics", authMetricsAddr, "--auth-key", fileA, "--auth-key", fileB)

	// #2 gets an address of its own: a macvlan on the initiator's end.
	const mv = "ibmv0"
	testenv.Run(t, r.initiator, "ip", "link", "add", mv, "link", r.veth.IfB, "type", "macvlan", "mode", "bridge")
	testenv.Run(t, r.initiator, "ip", "link", "set", mv, "up")
	testenv.WaitLinkReady(t, r.initiator, mv)
	ctlA, ctlB := filepath.Join(r.dir, "ctl-a"), filepath.Join(r.dir, "ctl-b")
	sockA, sockB := filepath.Join(r.dir, "a.sock"), filepath.Join(r.dir, "b.sock")
	uriA, uriB := "nbd+unix:///e1.0?socket="+sockA, "nbd+unix:///e1.0?socket="+sockB
	serveA := r.serveOn(t, r.veth.IfB, ctlA, sockA, "--auth-key", iniA, "--dead-timeout", "2s", "e1.0")
	r.serveOn(t, mv, ctlB, sockB, "--auth-key", iniB, "e1.0")

	// #1 works with key A.
	in := filepath.Join(r.dir, "a.bin")
	want := randomFile(t, in, size)
	runIn(t, r.initiator, "nbdcopy", "--flush", in, uriA)
	if aoetest.FileSum(t, disk, 0, size) != want {
		t.Fatal("ironaoe #1 (key A): the disk does not hold the data copied")
	}
	if p, ok := authPeer(r.statIn(t, ctlA), r.veth.MACA.String()); !ok || p.KeyID != idA || p.State != "established" {
		t.Fatalf("ironaoe #1: auth peer %+v, want a session with key %08x", p, idA)
	}

	// #2 copies in a loop across the rotation.
	loop := startCopyLoop(t, r, uriB, disk, size)
	testenv.WaitFor(t, 20*time.Second, "ironaoe #2's first copies", func() bool { return loop.count() >= 2 })
	if err := os.WriteFile(fileA, mustRead(t, fileB), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := blade.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	testenv.WaitFor(t, 5*time.Second, "ironblade to log the reload", func() bool {
		return strings.Contains(blade.Output(), "keys reloaded")
	})
	copies := loop.count()
	testenv.WaitFor(t, 20*time.Second, "ironaoe #2's copies after the rotation", func() bool { return loop.count() >= copies+2 })
	n, gap, err := loop.stop()
	if err != nil {
		t.Fatalf("ironaoe #2 (key B) across the rotation: %v", err)
	}
	t.Logf("ironaoe #2 (key B): %d copies of %d MiB, longest time between two %v", n, size>>20, gap.Round(time.Millisecond))
	if gap > 5*time.Second {
		t.Errorf("ironaoe #2 (key B) stalled %v across the rotation", gap)
	}
	if p, ok := authPeer(r.statIn(t, ctlB), r.veth.MACA.String()); !ok || p.KeyID != idB || p.State != "established" {
		t.Errorf("ironaoe #2: auth peer %+v, want its session with key %08x", p, idB)
	}

	// #1's key is retired: its write must fail and not reach the disk.
	before := aoetest.FileSum(t, disk, 48<<20, 1<<20)
	out, stderr, qerr := runInOut(r.initiator, 20*time.Second, "qemu-io", "-f", "raw", "-c", "write -P 0xa1 48M 1M", "-c", "flush", uriA)
	if aoetest.FileSum(t, disk, 48<<20, 1<<20) != before {
		t.Error("ironaoe #1 (retired key A) wrote to the disk after the rotation")
	}
	if qerr == nil && !strings.Contains(out+stderr, "error") {
		t.Errorf("ironaoe #1 (retired key A): qemu-io write succeeded after the rotation:\n%s%s", out, stderr)
	}
	p, _ := authPeer(r.statIn(t, ctlA), r.veth.MACA.String())
	t.Logf("ironaoe #1 (key A) after the rotation: qemu-io %v; auth peer state %s, last error %q, rejected %v",
		qerr, p.State, p.LastError, p.Rejected)
	if !strings.Contains(p.LastError, fmt.Sprintf("%08x", idA)) {
		t.Errorf("ironaoe #1: last handshake error %q, want the target to refuse key %08x", p.LastError, idA)
	}

	found, _ := r.discoverAuth(t, r.veth.IfB, "--auth-key", iniA)
	if auth, _ := authOf(found, r.veth.MACA.String()); !strings.HasPrefix(auth, "NOT PROVEN") {
		t.Errorf("discover with the retired key A: %q, want NOT PROVEN", auth)
	}
	found, _ = r.discoverAuth(t, r.veth.IfB, "--auth-key", iniB)
	if auth, _ := authOf(found, r.veth.MACA.String()); auth != "proven" {
		t.Errorf("discover with key B: %q, want proven", auth)
	}
	t.Logf("rotation %v ago; ironblade: %v sessions, handshakes %v", time.Since(rotated).Round(time.Millisecond),
		bladeMetric(t, r.target, "ironblade_auth_sessions"), bladeMetric(t, r.target, "ironblade_auth_handshakes_total"))

	// docs/auth.md's step for the initiators: #1's key file rewritten
	// with key B and SIGHUP; nothing restarts, and #1 works again.
	if err := os.WriteFile(iniA, mustRead(t, fileB), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := serveA.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	hupped := time.Now()
	testenv.WaitFor(t, 10*time.Second, "ironaoe #1 to prove the target with key B", func() bool {
		p, ok := authPeer(r.statIn(t, ctlA), r.veth.MACA.String())
		return ok && p.KeyID == idB && p.State == "established"
	})
	proven := time.Since(hupped)
	// Its device went down (dead timeout) with the retired key: it comes
	// back once the target answers a Query Config again.
	testenv.WaitFor(t, 10*time.Second, "ironaoe #1's device to come back up", func() bool {
		d, ok := deviceOf(r.statIn(t, ctlA))
		return ok && d.State == initiator.DeviceUp
	})
	t.Logf("ironaoe #1 after its SIGHUP: key B proven in %v, device up in %v", proven.Round(time.Millisecond), time.Since(hupped).Round(time.Millisecond))
	out, stderr, qerr = runInOut(r.initiator, 20*time.Second, "qemu-io", "-f", "raw", "-c", "write -P 0xa2 48M 1M", "-c", "flush", uriA)
	if qerr != nil || strings.Contains(out+stderr, "error") {
		t.Fatalf("ironaoe #1 with key B after its SIGHUP: qemu-io write: %v\n%s%s", qerr, out, stderr)
	}
	if aoetest.FileSum(t, disk, 48<<20, 1<<20) != sha512.Sum512(bytes.Repeat([]byte{0xa2}, 1<<20)) {
		t.Error("ironaoe #1 with key B after its SIGHUP: the write did not reach the disk")
	}
	if !strings.Contains(serveA.Output(), "keys reloaded") {
		t.Error("ironaoe #1 did not log that it reloaded its keys")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestE2EAuthPlainInitiator: a plain ironaoe sees a keyed ironblade in
// discover but cannot identify it (nor so do any I/O); against a plain
// ironblade it still works.
func TestE2EAuthPlainInitiator(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdcopy")
	size := int64(8 << 20)
	r := newRig(t, 9000)
	disk := r.newDisk(t, size)
	key, _ := writeAuthKey(t, r.dir, "auth.key")
	blade := r.startBlade(t, r.target, r.veth.IfA, disk, "--metrics", authMetricsAddr, "--auth-key", key)

	found, stderr := r.discoverAuth(t, r.veth.IfB)
	if _, ok := authOf(found, r.veth.MACA.String()); !ok || len(found.Devices) != 1 {
		t.Fatalf("plain discover of the keyed ironblade: %+v, want e1.0 listed", found)
	}
	if dev := found.Devices[0]; dev.Size != 0 || dev.Model != "" {
		t.Errorf("plain discover identified the keyed device: %+v", dev)
	}
	if !strings.Contains(stderr, "not identified") {
		t.Errorf("plain discover logged:\n%s\nwant a warning that the device was not identified", stderr)
	}
	if n := bladeMetric(t, r.target, "ironblade_auth_rejected_total", "reason", "unsealed"); n == 0 {
		t.Error("ironblade refused no plain request: did IDENTIFY reach it?")
	}
	t.Logf("plain initiator vs keyed ironblade: listed, size unknown; ironblade refused %v plain requests",
		bladeMetric(t, r.target, "ironblade_auth_rejected_total", "reason", "unsealed"))

	// The regression: plain against plain.
	if err := blade.Stop(t, syscall.SIGTERM, 5*time.Second); err != nil {
		t.Fatalf("ironblade exited with %v", err)
	}
	r.startBlade(t, r.target, r.veth.IfA, disk)
	found, _ = r.discoverAuth(t, r.veth.IfB)
	if len(found.Devices) != 1 || found.Devices[0].Size != size || found.Devices[0].Targets[0].Auth != "" {
		t.Fatalf("plain discover of a plain ironblade: %+v", found.Devices)
	}
	sock := filepath.Join(r.dir, "nbd.sock")
	r.serveOn(t, r.veth.IfB, r.controlDir(), sock, "e1.0")
	r.copyInOut(t, "nbd+unix:///e1.0?socket="+sock, disk, size)
}

// TestE2EAuthFailover serves one shared file from two keyed ironblade
// processes on a bridge and copies data through ironaoe serve --auth-key;
// during the copy the active target is killed (SIGKILL), and the standby
// either announces itself at once (SIGUSR1) or is left to the scorn
// timeout. The copy must complete intact; the stall is logged and must
// stay under 2 s.
func TestE2EAuthFailover(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdcopy")
	for _, announce := range []bool{true, false} {
		name := "no-announce"
		if announce {
			name = "announce"
		}
		t.Run(name, func(t *testing.T) { testE2EAuthFailover(t, announce) })
	}
}

func testE2EAuthFailover(t *testing.T, announce bool) {
	size := int64(96 << 20)
	r := newRig(t, 9000)
	disk := r.newDisk(t, size)
	key, _ := writeAuthKey(t, r.dir, "auth.key")
	br := testenv.NewBridge(t, 9000)
	lan, _ := testenv.Attach(t, br, r.initiator)
	blades := map[string]*testenv.Process{}
	for range 2 {
		ns := testenv.NewNetns(t)
		iface, mac := testenv.Attach(t, br, ns)
		blades[mac.String()] = r.startBlade(t, ns, iface, disk, "--log-level", "warn", "--auth-key", key)
	}
	sock := filepath.Join(r.dir, "nbd.sock")
	r.serveOn(t, lan, r.controlDir(), sock, "--auth-key", key, "e1.0")
	testenv.WaitFor(t, 10*time.Second, "two proven targets", func() bool {
		report := r.statIn(t, r.controlDir())
		d, ok := deviceOf(report)
		if !ok || d.State != initiator.DeviceUp || len(d.Targets) != 2 || len(d.Active) != 1 {
			return false
		}
		for mac := range blades {
			if p, ok := authPeer(report, mac); !ok || p.State != "established" {
				return false
			}
		}
		return true
	})

	in := filepath.Join(r.dir, "in.bin")
	want := randomFile(t, in, size)
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	copyCmd := r.initiator.Command(ctx, "nbdcopy", "--flush", in, "nbd+unix:///e1.0?socket="+sock)
	var copyOut bytes.Buffer
	copyCmd.Stdout, copyCmd.Stderr = &copyOut, &copyOut
	copyStart := time.Now()
	if err := copyCmd.Start(); err != nil {
		t.Fatal(err)
	}
	copyDone := make(chan error, 1)
	go func() { copyDone <- copyCmd.Wait() }()

	var active string
	testenv.WaitFor(t, 20*time.Second, "the copy to get going", func() bool {
		d, _ := deviceOf(r.statIn(t, r.controlDir()))
		if len(d.Active) == 1 {
			active = d.Active[0]
		}
		return d.BytesWritten >= 8<<20
	})
	var standby string
	for mac := range blades {
		if mac != active {
			standby = mac
		}
	}
	killed := time.Now()
	if err := blades[active].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if announce {
		if err := blades[standby].Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-copyDone:
		if err != nil {
			t.Fatalf("nbdcopy across the failover: %v\n%s", err, copyOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("nbdcopy did not finish within 60 s of the failover")
	}
	copied := time.Since(copyStart)
	if got := aoetest.FileSum(t, disk, 0, size); got != want {
		t.Errorf("after the failover the disk differs from the copied file (SHA-512 %.8x..., want %.8x...)", got, want)
	}
	out := filepath.Join(r.dir, "out.bin")
	runIn(t, r.initiator, "nbdcopy", "nbd+unix:///e1.0?socket="+sock, out)
	if got := aoetest.FileSum(t, out, 0, -1); got != sha512.Sum512(mustRead(t, in)) {
		t.Error("the data copied out through the survivor differs")
	}

	d, _ := deviceOf(r.statIn(t, r.controlDir()))
	var resumed time.Time
	for _, e := range d.Events {
		if e.Kind == initiator.EventResumed && e.Time.After(killed) && resumed.IsZero() {
			resumed = e.Time
		}
	}
	if d.Failovers == 0 || resumed.IsZero() || len(d.Active) != 1 || d.Active[0] != standby {
		t.Fatalf("no failover to the standby %s seen: failovers %d, active %v, events %+v", standby, d.Failovers, d.Active, d.Events)
	}
	stall := resumed.Sub(killed)
	how := "scorn timeout"
	if announce {
		how = "announce"
	}
	t.Logf("STALL auth failover by %s: %v from SIGKILL to the first completion on the standby (engine's measure %v); "+
		"copy of %d MiB took %v; I/O errors %d", how, stall.Round(time.Millisecond), d.LastStall.Round(time.Millisecond),
		size>>20, copied.Round(time.Millisecond), d.IOErrors)
	if stall > 2*time.Second {
		t.Errorf("I/O stalled %v in the failover, want under 2 s", stall)
	}
	if d.IOErrors != 0 {
		t.Errorf("%d I/O errors across the failover", d.IOErrors)
	}
}

// TestE2EAuthTargetRestart restarts the target under an idle ironaoe
// serve: the restarted target announces itself, the initiator must see
// that announce (an "announce" event, the signal failover acts on), and
// I/O must work again at once. With a key, the announce reaches the
// initiator only as the answer of an authenticated Query Config sent
// under a session the new process does not know: the layer has to
// handshake and query again.
func TestE2EAuthTargetRestart(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdcopy")
	for _, keyed := range []bool{false, true} {
		name := "plain"
		if keyed {
			name = "keyed"
		}
		t.Run(name, func(t *testing.T) {
			size := int64(8 << 20)
			r := newRig(t, 9000)
			disk := r.newDisk(t, size)
			key, _ := writeAuthKey(t, r.dir, "auth.key")
			var bladeOpts, serveOpts []string
			if keyed {
				bladeOpts, serveOpts = []string{"--auth-key", key}, []string{"--auth-key", key}
			}
			blade := r.startBlade(t, r.target, r.veth.IfA, disk, bladeOpts...)
			sock := filepath.Join(r.dir, "nbd.sock")
			uri := "nbd+unix:///e1.0?socket=" + sock
			r.serveOn(t, r.veth.IfB, r.controlDir(), sock, append(serveOpts, "e1.0")...)
			in := filepath.Join(r.dir, "in.bin")
			want := randomFile(t, in, size)
			runIn(t, r.initiator, "nbdcopy", "--flush", in, uri)

			if err := blade.Stop(t, syscall.SIGTERM, 5*time.Second); err != nil {
				t.Fatalf("ironblade exited with %v", err)
			}
			restarted := time.Now()
			r.startBlade(t, r.target, r.veth.IfA, disk, bladeOpts...)
			// The event's own time is what is measured: polling only finds it.
			var announced time.Time
			retryUntil(3*time.Second, 20*time.Millisecond, func() bool {
				d, _ := deviceOf(r.statIn(t, r.controlDir()))
				for _, e := range d.Events {
					if e.Kind == initiator.EventAnnounce && e.Time.After(restarted) {
						announced = e.Time
					}
				}
				return !announced.IsZero()
			})
			// I/O works again: a copy out through the restarted target.
			out := filepath.Join(r.dir, "out.bin")
			start := time.Now()
			runIn(t, r.initiator, "nbdcopy", uri, out)
			if aoetest.FileSum(t, out, 0, -1) != want {
				t.Error("the data copied out after the restart differs")
			}
			seen := "never (3 s)"
			if !announced.IsZero() {
				seen = announced.Sub(restarted).Round(time.Millisecond).String() + " after it"
			}
			t.Logf("%s: restarted target: announce seen %s; then a copy out took %v", name, seen, time.Since(start).Round(time.Millisecond))
			if announced.IsZero() {
				t.Error("the initiator saw no announce from the restarted target within 3 s")
			}
		})
	}
}
