package target_test

// End-to-end tests of the ironblade command: the real binary serves a
// sparse file in one network namespace, and an initiator built on aoe/
// (aoetest.Client on a rawlink.Link) talks to it over a veth pair from another.
// They need root; without it they skip and say so.

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestE2E builds ironblade once and runs every end-to-end scenario against
// it, each in namespaces of its own.
// TestMain builds the commands the end-to-end tests run once, and keeps
// what they leave in a runtime directory of the test's own.
func TestMain(m *testing.M) { testenv.RunTests(m) }

func TestE2E(t *testing.T) {
	testenv.RequireRoot(t)
	bin := testenv.BuildBinary(t, "./cmd/ironblade")
	t.Run("IO", func(t *testing.T) { testE2EIO(t, bin) })
	t.Run("BadInput", func(t *testing.T) { testE2EBadInput(t, bin) })
	t.Run("ConfigString", func(t *testing.T) { testE2EConfigString(t, bin) })
	t.Run("MACMask", func(t *testing.T) { testE2EMACMask(t, bin) })
	t.Run("Reserve", func(t *testing.T) { testE2EReserve(t, bin) })
	t.Run("SyncDurability", func(t *testing.T) { testE2ESyncDurability(t, bin) })
	t.Run("FlushSyncs", func(t *testing.T) { testE2EFlushSyncs(t, bin) })
	t.Run("MTUChange", func(t *testing.T) { testE2EMTUChange(t, bin) })
	t.Run("Signals", func(t *testing.T) { testE2ESignals(t, bin) })
}

// rig is one test's network: a target namespace and a client namespace
// joined by a veth pair, with a test initiator on the client's end.
type rig struct {
	bin    string
	tgt    *netlab.Netns
	cli    *netlab.Netns
	veth   *netlab.Veth
	link   *rawlink.Link
	client *aoetest.Client
}

// newRig builds the network at the given MTU, waits for both ends to be up
// and opens the client. Everything is removed in t.Cleanup.
func newRig(t *testing.T, bin string, mtu int) *rig {
	t.Helper()
	r := &rig{bin: bin, tgt: testenv.NewNetns(t), cli: testenv.NewNetns(t)}
	// NewVeth waits until both ends can send: a veth end drops what is
	// sent on it until its carrier is seen up.
	r.veth = testenv.NewVeth(t, r.tgt, r.cli, mtu)
	r.link = testenv.ListenRawIn(t, r.cli, r.veth.IfB, rawlink.Config{ReadBuffer: 4 << 20, WriteBuffer: 4 << 20})
	r.client = aoetest.NewClient(r.link, aoetest.ClientOptions{Timeout: 300 * time.Millisecond, Retries: 5})
	t.Cleanup(func() { r.client.Close() })
	return r
}

// newDisk creates a sparse backing file of the given size in sectors.
func newDisk(t *testing.T, sectors int64) string {
	t.Helper()
	return aoetest.SparseFile(t, filepath.Join(t.TempDir(), "disk.img"), sectors*aoe.SectorSize)
}

// start runs ironblade with args in the target namespace. The process is
// killed in t.Cleanup if the test has not stopped it.
func (r *rig) start(t *testing.T, args ...string) *testenv.Process {
	t.Helper()
	// ip netns exec replaces itself with ironblade: the pid is ironblade's.
	return testenv.StartProcess(t, "ironblade "+strings.Join(args, " "), r.tgt.Command(context.Background(), r.bin, args...))
}

// stopBlade sends SIGTERM and fails the test unless ironblade exits 0
// within 2 s. It returns how long the exit took.
func stopBlade(t *testing.T, b *testenv.Process) time.Duration {
	t.Helper()
	return b.StopClean(t, syscall.SIGTERM, 2*time.Second)
}

// discover broadcasts Query Config until the target at shelf.slot
// answers, for up to 5 s.
func (r *rig) discover(t *testing.T, shelf uint16, slot uint8) aoetest.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		devs, err := r.client.Discover(ctx, 200*time.Millisecond)
		for _, d := range devs {
			if d.Shelf == shelf && d.Slot == slot {
				return d
			}
		}
		if err != nil {
			t.Fatalf("e2e: no answer from e%d.%d: %v (found %v)", shelf, slot, err, devs)
		}
	}
}

// identify runs IDENTIFY DEVICE and checks the capacity and model.
func (r *rig) identify(t *testing.T, dev *aoetest.Device, sectors uint64) {
	t.Helper()
	id, err := r.client.Identify(context.Background(), dev)
	if err != nil {
		t.Fatalf("e2e: identify: %v", err)
	}
	if dev.Sectors != sectors {
		t.Errorf("IDENTIFY capacity %d sectors, want %d", dev.Sectors, sectors)
	}
	if model := ataString(id[2*27 : 2*47]); !strings.Contains(model, "ironblade") {
		t.Errorf("IDENTIFY model %q does not name ironblade", model)
	}
}

// ataString decodes an ATA identify string: two characters a word, the
// first in the word's high byte, padded with spaces.
func ataString(b []byte) string {
	s := make([]byte, len(b))
	for i := 0; i+1 < len(b); i += 2 {
		s[i], s[i+1] = b[i+1], b[i]
	}
	return strings.TrimRight(string(s), " ")
}

// testE2EIO writes random data at queue depths 1, 16 and 64 and reads it
// back, at MTU 1500 and 9000, then stops the target and checks the file.
func testE2EIO(t *testing.T, bin string) {
	// With -d (O_DIRECT, as vblade -d) every read and write waits for the
	// device, so the receive loop hands them all to its workers: that
	// path carries all the I/O, at odd offsets that need bounce buffers.
	for _, mode := range []struct {
		name  string
		flags []string
	}{{"", nil}, {"/direct", []string{"-d"}}} {
		for _, mtu := range []int{1500, 9000} {
			t.Run(fmt.Sprintf("MTU%d%s", mtu, mode.name), func(t *testing.T) {
				testE2EIOMode(t, bin, mtu, mode.flags)
			})
		}
	}
}

func testE2EIOMode(t *testing.T, bin string, mtu int, flags []string) {
	const sectors = 16 << 11 // 16 MiB
	r := newRig(t, bin, mtu)
	disk := newDisk(t, sectors)
	if slices.Contains(flags, "-d") {
		f, err := os.OpenFile(disk, os.O_RDWR|syscall.O_DIRECT, 0)
		if err != nil {
			t.Skipf("O_DIRECT unsupported on the temp dir's file system: %v", err)
		}
		f.Close()
	}
	b := r.start(t, append(flags, "1", "0", r.veth.IfA, disk)...)
	dev := r.discover(t, 1, 0)
	if want := aoe.SectorsPerFrame(mtu); int(dev.Config.SectorCount) != want || dev.SectorsPerFrame != want {
		t.Errorf("Query Config: %d sectors per frame (client uses %d), want %d at MTU %d",
			dev.Config.SectorCount, dev.SectorsPerFrame, want, mtu)
	}
	if dev.Config.BufferCount != 64 || dev.Config.Version != aoe.Version {
		t.Errorf("Query Config: buffer count %d, version %d; want 64 and 1", dev.Config.BufferCount, dev.Config.Version)
	}
	r.identify(t, &dev, sectors)

	type region struct {
		qd   int
		off  int64
		data []byte
	}
	var regions []region
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, qd := range []int{1, 16, 64} {
		size := 2 << 20
		if qd == 1 {
			size = 256 << 10
		}
		// Odd sector offsets, so frames straddle pages and blocks.
		reg := region{qd: qd, off: int64(i)*(4<<20) + 3*aoe.SectorSize, data: aoetest.RandomBytes(size)}
		start := time.Now()
		if err := r.client.WriteAt(ctx, dev, reg.data, reg.off, qd); err != nil {
			t.Fatalf("write at qd %d: %v", qd, err)
		}
		wrote := time.Since(start)
		back := make([]byte, size)
		if err := r.client.ReadAt(ctx, dev, back, reg.off, qd); err != nil {
			t.Fatalf("read at qd %d: %v", qd, err)
		}
		if !bytes.Equal(back, reg.data) {
			t.Fatalf("qd %d: read back different data than written", qd)
		}
		t.Logf("qd %d: wrote and read back %d KiB (write %v)", qd, size>>10, wrote.Round(time.Millisecond))
		regions = append(regions, reg)
	}
	stopBlade(t, b)
	for _, reg := range regions {
		if aoetest.FileSum(t, disk, reg.off, int64(len(reg.data))) != sha512.Sum512(reg.data) {
			t.Errorf("qd %d: the file's SHA-512 at %d differs from the data written", reg.qd, reg.off)
		}
	}
}

// testE2ESignals checks that SIGUSR1 makes ironblade announce itself and
// that SIGTERM under a full write load makes it exit 0 within 2 s.
func testE2ESignals(t *testing.T, bin string) {
	r := newRig(t, bin, 9000)
	disk := newDisk(t, 64<<11)
	b := r.start(t, "1", "0", r.veth.IfA, disk)
	dev := r.discover(t, 1, 0)

	isAnnounce := aoetest.IsAnnouncement(r.veth.MACA)
	// Forget the start-up announcement, then ask for another.
	drain, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	for {
		if _, err := r.client.Expect(drain, isAnnounce); err != nil {
			break
		}
	}
	cancel()
	if err := b.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	f, err := r.client.Expect(ctx, isAnnounce)
	if err != nil {
		t.Fatalf("no announcement after SIGUSR1: %v", err)
	}
	if f.Dst != aoe.BroadcastMAC || f.Major != 1 || f.Minor != 0 {
		t.Errorf("announcement e%d.%d to %v, want e1.0 to broadcast", f.Major, f.Minor, f.Dst)
	}

	// Full load: writes at queue depth 64 until the target is gone.
	load, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var wrote sync.WaitGroup
	var bytesWritten int64
	started := make(chan struct{})
	wrote.Go(func() {
		data := aoetest.RandomBytes(8 << 20)
		for i := 0; ; i++ {
			if err := r.client.WriteAt(load, dev, data, int64(i%8)*int64(len(data)), 64); err != nil {
				return
			}
			bytesWritten += int64(len(data))
			if i == 0 {
				close(started)
			}
		}
	})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the write load made no progress")
	}
	took := stopBlade(t, b)
	stopLoad()
	wrote.Wait()
	t.Logf("exited %v after SIGTERM under load (%d MiB written)", took.Round(time.Millisecond), bytesWritten>>20)
}

// testE2EMTUChange raises and lowers the MTU under a running target: Query
// Config follows it, a read too large for the new MTU gets an error
// instead of killing the process (as it does vblade), and serving goes on.
func testE2EMTUChange(t *testing.T, bin string) {
	r := newRig(t, bin, 1500)
	disk := newDisk(t, 8<<11)
	b := r.start(t, "1", "0", r.veth.IfA, disk)
	r.discover(t, 1, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// waitSPF polls Query Config until it reports want sectors per frame.
	waitSPF := func(want int) aoetest.Device {
		t.Helper()
		var d aoetest.Device
		last := -1
		testenv.WaitFor(t, 3*time.Second, fmt.Sprintf("Query Config to report %d sectors per frame", want), func() bool {
			d = r.discover(t, 1, 0)
			if got := int(d.Config.SectorCount); got != want && got != last {
				t.Logf("Query Config reports %d sectors per frame, want %d", got, want)
				last = got
			}
			return int(d.Config.SectorCount) == want
		})
		return d
	}
	rw := func(d aoetest.Device, off int64) {
		t.Helper()
		data := aoetest.RandomBytes(256 << 10)
		if err := r.client.WriteAt(ctx, d, data, off, 16); err != nil {
			t.Fatalf("write at MTU %d: %v", r.link.MTU(), err)
		}
		back := make([]byte, len(data))
		if err := r.client.ReadAt(ctx, d, back, off, 16); err != nil {
			t.Fatalf("read at MTU %d: %v", r.link.MTU(), err)
		}
		if !bytes.Equal(back, data) {
			t.Fatalf("MTU %d: read back different data", r.link.MTU())
		}
	}

	rw(waitSPF(2), 0)
	testenv.SetMTU(t, r.veth, 9000)
	jumbo := waitSPF(17)
	rw(jumbo, 1<<20)

	testenv.SetMTU(t, r.veth, 1500)
	// At once, before the target may have noticed: a 17-sector read (a
	// small request asking for a jumbo answer).
	big := aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 17, CmdStatus: aoe.ATAReadSectorsExt}
	_, err := r.client.ATA(ctx, jumbo, big)
	if !errors.Is(err, aoe.ErrorBadArgument) {
		t.Errorf("17-sector read after the MTU drop: %v, want AoE error 2 (bad argument)", err)
	}
	if !b.Running() {
		t.Fatalf("ironblade exited after a read too large for the MTU\n%s", b.Output())
	}
	small := waitSPF(2)
	rw(small, 2<<20)
	stopBlade(t, b)
}
