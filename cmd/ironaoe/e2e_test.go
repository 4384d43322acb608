package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/initiator/nbdkernel"
	"github.com/ironblade/ironblade/internal/testenv"
)

// The end-to-end tests run the built ironaoe against vblade and ironblade
// over veth pairs between network namespaces, with real NBD clients
// (libnbd's nbdinfo, nbdcopy and nbdfuse, qemu-io, qemu-img) in the
// initiator's namespace.

// nbdinfoExport is the part of `nbdinfo --json` the tests look at.
type nbdinfoExport struct {
	Name         string `json:"export-name"`
	Size         int64  `json:"export-size"`
	ReadOnly     bool   `json:"is_read_only"`
	CanFlush     bool   `json:"can_flush"`
	CanFUA       bool   `json:"can_fua"`
	CanMultiConn bool   `json:"can_multi_conn"`
	CanZero      bool   `json:"can_zero"`
	MinBlock     int64  `json:"block_size_minimum"`
}

// TestE2ENBDClients serves a vblade and an ironblade device with ironaoe
// and uses them with every NBD client at hand: discover and nbdinfo see
// the right size and flags, nbdcopy moves random data in and out intact,
// qemu-io writes and verifies a pattern over the Unix socket, qemu-img
// reads the size over TCP, stat shows the target, and SIGTERM stops serve
// with status 0.
func TestE2ENBDClients(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdinfo", "nbdcopy", "qemu-io", "qemu-img")
	for _, tc := range []struct {
		target  string
		mtu     int
		buffers uint16
	}{
		{"vblade", 1500, 16},
		{"ironblade", 9000, 64},
	} {
		t.Run(tc.target, func(t *testing.T) {
			if tc.target == "vblade" {
				testenv.RequireCommands(t, "vblade")
			}
			size := diskSize(64 << 20)
			r := newRig(t, tc.mtu)
			disk := r.newDisk(t, size)
			r.startTarget(t, tc.target, disk)

			// discover on the default interfaces: the veth end, not lo.
			out := runIn(t, r.initiator, r.ironaoe, "discover", "--json", "--wait", "1s")
			var found discovery
			if err := json.Unmarshal([]byte(out), &found); err != nil {
				t.Fatalf("discover --json: %v\n%s", err, out)
			}
			if len(found.Interfaces) != 1 || found.Interfaces[0] != r.veth.IfB {
				t.Errorf("discover used interfaces %q, want [%s]", found.Interfaces, r.veth.IfB)
			}
			if len(found.Devices) != 1 || found.Devices[0].Name != "e1.0" || found.Devices[0].Size != size {
				t.Fatalf("discover found %+v, want e1.0 of %d bytes", found.Devices, size)
			}
			wantSectors := (tc.mtu - 36) / 512
			if tg := found.Devices[0].Targets; len(tg) != 1 || tg[0].MAC != r.veth.MACA.String() ||
				tg[0].Interface != r.veth.IfB || tg[0].BufferCount != tc.buffers || tg[0].SectorsPerFrame != wantSectors {
				t.Errorf("discover targets %+v, want %v on %s with %d buffers, %d sectors per frame",
					tg, r.veth.MACA, r.veth.IfB, tc.buffers, wantSectors)
			}

			sock := filepath.Join(r.dir, "nbd.sock")
			serve := r.startServe(t, "--unix", sock, "--tcp", "127.0.0.1:10809")
			uri := "nbd+unix:///e1.0?socket=" + sock

			out = runIn(t, r.initiator, "nbdinfo", "--json", uri)
			var info struct{ Exports []nbdinfoExport }
			if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Exports) != 1 {
				t.Fatalf("nbdinfo --json: %v\n%s", err, out)
			}
			if x := info.Exports[0]; x.Name != "e1.0" || x.Size != size || x.ReadOnly || !x.CanFlush || !x.CanFUA ||
				!x.CanMultiConn || !x.CanZero || x.MinBlock != 512 {
				t.Errorf("nbdinfo: %+v; want e1.0, %d bytes, writable, flush, FUA, multi-conn, zero, 512-byte blocks", x, size)
			}

			r.copyInOut(t, uri, disk, size)

			out = runIn(t, r.initiator, "qemu-io", "-f", "raw",
				"-c", "write -P 0x5a 1M 1M", "-c", "read -P 0x5a 1M 1M", "-c", "flush", uri)
			if !strings.Contains(out, "read 1048576/1048576 bytes at offset 1048576") || strings.Contains(out, "verification failed") {
				t.Errorf("qemu-io:\n%s", out)
			}
			raw, err := os.ReadFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			for i, b := range raw[1<<20 : 2<<20] {
				if b != 0x5a {
					t.Fatalf("the disk holds %#x at %d after qemu-io wrote 0x5a there", b, 1<<20+i)
				}
			}

			out = runIn(t, r.initiator, "qemu-img", "info", "--output=json", "nbd://127.0.0.1:10809/e1.0")
			var img struct {
				VirtualSize int64 `json:"virtual-size"`
			}
			if err := json.Unmarshal([]byte(out), &img); err != nil || img.VirtualSize != size {
				t.Errorf("qemu-img info over TCP: %v, size %d, want %d\n%s", err, img.VirtualSize, size, out)
			}

			report := r.stat(t)
			if p := report.Processes[0]; p.Command != "serve" || p.PID != serve.Cmd.Process.Pid || len(p.Listeners) != 2 {
				t.Errorf("stat: process %+v", p)
			}
			d := findDevice(t, report, "e1.0")
			if d.State != initiator.DeviceUp || d.Size != size || len(d.Active) != 1 || d.Active[0] != r.veth.MACA.String() {
				t.Errorf("stat: device %+v", d)
			}
			if len(d.Targets) != 1 || d.Targets[0].MAC != r.veth.MACA.String() || d.Targets[0].State != initiator.TargetActive ||
				d.Targets[0].RTT <= 0 || d.Targets[0].Frames == 0 {
				t.Errorf("stat: targets %+v", d.Targets)
			}
			t.Logf("%s: rtt %v, frames %d, retransmits %d", tc.target, d.Targets[0].RTT, d.Targets[0].Frames, d.Targets[0].Retransmits)
			text := runIn(t, r.initiator, r.ironaoe, "stat", "--control-dir", r.controlDir())
			if !strings.Contains(text, "e1.0: up") || !strings.Contains(text, r.veth.MACA.String()) {
				t.Errorf("stat:\n%s", text)
			}

			start := time.Now()
			if err := serve.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
				t.Errorf("serve exited with %v after SIGTERM", err)
			}
			t.Logf("serve stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
			if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("serve left its socket behind: %v", err)
			}
		})
	}
}

// TestE2EFrameLoss copies data through serve while both ends of the veth
// pair drop 5% of the frames they receive: retransmission must deliver it
// intact.
func TestE2EFrameLoss(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdcopy")
	size := diskSize(32 << 20)
	r := newRig(t, 9000)
	disk := r.newDisk(t, size)
	r.startTarget(t, "ironblade", disk)
	testenv.AddLoss(t, r.target, r.veth.IfA, 5)
	testenv.AddLoss(t, r.initiator, r.veth.IfB, 5)
	sock := filepath.Join(r.dir, "nbd.sock")
	serve := r.startServe(t, "--unix", sock, "e1.0")

	r.copyInOut(t, "nbd+unix:///e1.0?socket="+sock, disk, size)

	d := findDevice(t, r.stat(t), "e1.0")
	if len(d.Targets) != 1 || d.Targets[0].Retransmits == 0 {
		t.Errorf("no retransmissions with 5%% loss: %+v", d.Targets)
	}
	if d.IOErrors != 0 {
		t.Errorf("%d I/O errors", d.IOErrors)
	}
	tg := d.Targets[0]
	t.Logf("frames %d, retransmits %d (%.1f%%), cwnd %d/%d, rtt %v, rto %v", tg.Frames, tg.Retransmits,
		100*float64(tg.Retransmits)/float64(tg.Frames), tg.Cwnd, tg.Window, tg.RTT, tg.RTO)
	if err := serve.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("serve exited with %v after SIGTERM", err)
	}
}

// teardown is a clean-up step that runs once: inline on the happy path,
// where its failure fails the test, or from t.Cleanup otherwise.
type teardown struct {
	done bool
	fn   func() error
}

// addTeardown registers fn to run in t.Cleanup unless run sooner.
func addTeardown(t testing.TB, what string, fn func() error) *teardown {
	td := &teardown{fn: fn}
	t.Cleanup(func() {
		if err := td.run(); err != nil {
			t.Logf("clean-up: %s: %v", what, err)
		}
	})
	return td
}

func (td *teardown) run() error {
	if td.done {
		return nil
	}
	td.done = true
	return td.fn()
}

// hostCommand runs a command outside any namespace, returning an error
// with its output.
func hostCommand(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// attachLoop sets up a loop device on file and detaches it at clean-up
// (only if this test still holds it: the number may be reused at once).
func attachLoop(t *testing.T, file string) (string, *teardown) {
	t.Helper()
	dev := strings.TrimSpace(runHost(t, "losetup", "-f", "--show", file))
	return dev, addTeardown(t, "detach "+dev, func() error { return hostCommand("losetup", "-d", dev) })
}

// mountFS mounts dev on dir, with mount's options if any, and unmounts it
// at clean-up.
func mountFS(t *testing.T, dev, dir string, options ...string) *teardown {
	t.Helper()
	runHost(t, "mount", append(options, dev, dir)...)
	return addTeardown(t, "unmount "+dir, func() error { return hostCommand("umount", dir) })
}

// TestE2EFilesystemOverNBDFuse puts an ext4 file system on an AoE device:
// ironaoe serve -> nbdfuse (a file) -> loop device -> mkfs.ext4 -> mount.
// It writes a set of random files, unmounts, mounts again through a fresh
// loop device and checks every file's SHA-512.
func TestE2EFilesystemOverNBDFuse(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "mount", "umount", "sha512sum", "nsenter")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs FUSE: %v", err)
	}
	if err := hostCommand("losetup", "-f"); err != nil {
		t.Skipf("needs a free loop device: %v", err)
	}
	r := newRig(t, 9000)
	disk := r.newDisk(t, 64<<20)
	r.startTarget(t, "ironblade", disk)
	sock := filepath.Join(r.dir, "nbd.sock")
	serve := r.startServe(t, "--unix", sock, "e1.0")

	fuseDir, mnt := filepath.Join(r.dir, "fuse"), filepath.Join(r.dir, "mnt")
	for _, d := range []string{fuseDir, mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// nsenter joins the network namespace only: `ip netns exec` would also
	// give nbdfuse a mount namespace of its own, hiding its FUSE mount
	// from this process.
	pidFile := filepath.Join(r.dir, "nbdfuse.pid")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	fuse := testenv.StartProcess(t, "nbdfuse", exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+r.initiator.Name,
		"nbdfuse", "-P", pidFile, filepath.Join(fuseDir, "disk"), "nbd+unix:///e1.0?socket="+sock))
	unfuse := addTeardown(t, "unmount "+fuseDir, func() error {
		// A detached loop device lets go of the image only when its last
		// opener (udev probing it, say) closes it, maybe just after
		// losetup -d returned: until then the FUSE mount is busy.
		var err error
		retryUntil(5*time.Second, 50*time.Millisecond, func() bool {
			err = hostCommand("fusermount3", "-u", fuseDir)
			return err == nil || !strings.Contains(err.Error(), "busy")
		})
		select {
		case <-fuse.Exited():
		case <-time.After(10 * time.Second):
			return errors.Join(err, errors.New("nbdfuse still running 10 s after fusermount3 -u"))
		}
		return err
	})
	testenv.WaitFor(t, 10*time.Second, "nbdfuse to be ready", func() bool {
		select {
		case <-fuse.Exited():
			t.Fatalf("nbdfuse exited: %v\n%s", fuse.Err(), fuse.Stderr())
		default:
		}
		_, err := os.Stat(pidFile)
		return err == nil
	})
	image := filepath.Join(fuseDir, "disk")
	if fi, err := os.Stat(image); err != nil || fi.Size() != 64<<20 {
		t.Fatalf("nbdfuse file: %v, %v", fi, err)
	}

	start := time.Now()
	loop, unloop := attachLoop(t, image)
	runHost(t, "mkfs.ext4", "-q", loop)
	unmount := mountFS(t, loop, mnt)
	names := writeFileSet(t, mnt)
	sums := runHostIn(t, mnt, "sha512sum", names...)
	runHost(t, "sync", "-f", mnt)
	for _, td := range []*teardown{unmount, unloop} {
		if err := td.run(); err != nil {
			t.Fatal(err)
		}
	}
	written := time.Since(start)

	loop, unloop = attachLoop(t, image)
	unmount = mountFS(t, loop, mnt)
	sumFile := filepath.Join(r.dir, "SHA512SUMS")
	if err := os.WriteFile(sumFile, []byte(sums), 0o600); err != nil {
		t.Fatal(err)
	}
	runHostIn(t, mnt, "sha512sum", "--quiet", "-c", sumFile)
	for _, td := range []*teardown{unmount, unloop, unfuse} {
		if err := td.run(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("mkfs, %d files written and synced in %v; verified after a remount", len(names), written.Round(time.Millisecond))

	d := findDevice(t, r.stat(t), "e1.0")
	if d.Writes == 0 || d.Flushes == 0 || d.IOErrors != 0 {
		t.Errorf("stat: writes %d, flushes %d, I/O errors %d", d.Writes, d.Flushes, d.IOErrors)
	}
	if err := serve.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("serve exited with %v after SIGTERM", err)
	}
	checkExt4(t, disk)

	// The target's own file holds the file system: mount it read-only,
	// without AoE, and check the files once more.
	loop, unloop = attachLoop(t, disk)
	unmount = mountFS(t, loop, mnt, "-o", "ro")
	runHostIn(t, mnt, "sha512sum", "--quiet", "-c", sumFile)
	for _, td := range []*teardown{unmount, unloop} {
		if err := td.run(); err != nil {
			t.Fatal(err)
		}
	}
}

// writeFileSet writes random files of assorted sizes, some in a
// subdirectory, under dir and returns their paths relative to it.
func writeFileSet(t *testing.T, dir string) []string {
	t.Helper()
	count, big := 16, 4<<20
	if testing.Short() {
		count, big = 8, 1<<20
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range count {
		name := fmt.Sprintf("f%02d.bin", i)
		if i%3 == 0 {
			name = filepath.Join("sub", name)
		}
		size := int64(1 + rand.IntN(512<<10))
		if i == 0 {
			size = int64(big)
		}
		randomFile(t, filepath.Join(dir, name), size)
		names = append(names, name)
	}
	return names
}

// runHostIn runs a command in directory dir and returns its output.
func runHostIn(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// checkExt4 checks that the target's disk holds an ext4 superblock: the
// file system went all the way through to it.
func checkExt4(t *testing.T, disk string) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 1024+0x38); err != nil {
		t.Fatal(err)
	}
	if m := binary.LittleEndian.Uint16(magic[:]); m != 0xef53 {
		t.Errorf("no ext4 superblock on the target's disk (magic %#x)", m)
	}
}

// TestE2EAttach attaches an AoE device as /dev/nbdN, makes a file system on
// it and detaches it with `ironaoe detach`. Without the kernel's nbd
// module it checks instead that attach and detach fail with a message
// saying to load it.
func TestE2EAttach(t *testing.T) {
	if err := nbdkernel.Available(); err != nil {
		ironaoe, _ := buildBinaries(t)
		for _, args := range [][]string{{"attach", "e1.0"}, {"detach", "/dev/nbd0"}} {
			out, err := exec.Command(ironaoe, args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != exitFailure {
				t.Errorf("ironaoe %q without the nbd module: %v, want exit status %d", args, err, exitFailure)
			}
			if !strings.Contains(string(out), "modprobe nbd") {
				t.Errorf("ironaoe %q without the nbd module printed %q; want it to say `modprobe nbd`", args, out)
			}
		}
		t.Logf("kernel nbd module absent (%v): checked the error path only", err)
		return
	}
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "mkfs.ext4", "mount", "umount")
	r := newRig(t, 9000)
	disk := r.newDisk(t, 64<<20)
	r.startTarget(t, "ironblade", disk)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	att := testenv.StartProcess(t, "ironaoe attach", r.initiator.Command(ctx, r.ironaoe, "attach", "-i", r.veth.IfB,
		"--control-dir", r.controlDir(), "e1.0"))
	var dev string
	testenv.WaitFor(t, 30*time.Second, "attach to print the device", func() bool {
		select {
		case <-att.Exited():
			t.Fatalf("attach exited: %v\n%s", att.Err(), att.Stderr())
		default:
		}
		dev, _, _ = strings.Cut(att.Stdout(), "\n")
		return strings.HasPrefix(dev, "/dev/nbd") && strings.Contains(att.Stdout(), "\n")
	})
	index, err := nbdkernel.ParseDevice(dev)
	if err != nil {
		t.Fatal(err)
	}
	addTeardown(t, "detach "+dev, func() error {
		if st, err := nbdkernel.Status(index); err != nil || !st.Connected {
			return nil
		}
		return nbdkernel.Detach(index)
	})

	mnt := filepath.Join(r.dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	runHost(t, "mkfs.ext4", "-q", dev)
	unmount := mountFS(t, dev, mnt)
	want := randomFile(t, filepath.Join(mnt, "data.bin"), 4<<20)
	runHost(t, "sync", "-f", mnt)
	if err := unmount.run(); err != nil {
		t.Fatal(err)
	}
	unmount = mountFS(t, dev, mnt)
	if got := aoetest.FileSum(t, filepath.Join(mnt, "data.bin"), 0, -1); got != want {
		t.Error("file read back through /dev/nbd differs")
	}
	if err := unmount.run(); err != nil {
		t.Fatal(err)
	}

	if p := r.stat(t).Processes; len(p) != 1 || p[0].Attached != dev {
		t.Errorf("stat: %+v, want one attach process with %s", p, dev)
	}
	runHost(t, r.ironaoe, "detach", dev)
	select {
	case <-att.Exited():
		if err := att.Err(); err != nil {
			t.Errorf("attach exited with %v after detach", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("attach still running 15 s after detach")
	}
	checkExt4(t, disk)
}

// TestE2EVLAN runs target and initiator on 802.1Q VLAN 42, tagged in
// userspace on both sides (this kernel has no 8021q module), and checks
// that data crosses intact and that an initiator on another VLAN finds
// nothing.
func TestE2EVLAN(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nbdcopy")
	size := diskSize(16 << 20)
	r := newRig(t, 1500)
	disk := r.newDisk(t, size)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	testenv.StartProcess(t, "ironblade --vlan 42", r.target.Command(ctx, r.ironblade, "--vlan", "42", "1", "0", r.veth.IfA, disk))

	out := runIn(t, r.initiator, r.ironaoe, "discover", "-i", r.veth.IfB, "--vlan", "42", "--json", "--wait", "1s")
	if !strings.Contains(out, r.veth.MACA.String()) {
		t.Fatalf("an initiator on VLAN 42 did not find the target %v:\n%s", r.veth.MACA, out)
	}
	out = runIn(t, r.initiator, r.ironaoe, "discover", "-i", r.veth.IfB, "--vlan", "43", "--json", "--wait", "1s")
	if strings.Contains(out, r.veth.MACA.String()) {
		t.Errorf("an initiator on VLAN 43 found the VLAN 42 target:\n%s", out)
	}

	sock := filepath.Join(r.dir, "nbd.sock")
	serve := r.startServe(t, "--unix", sock, "--vlan", "42", "e1.0")
	r.copyInOut(t, "nbd+unix:///e1.0?socket="+sock, disk, size)
	if err := serve.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("serve exited with %v after SIGTERM", err)
	}
}
