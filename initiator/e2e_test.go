//go:build linux

package initiator

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// e2eDiskSize is the size of the end-to-end tests' disks; the tests under
// loss use a quarter of it, as they are slower.
const e2eDiskSize = 16 << 20

// socketBuffers sizes both raw links' socket buffers for a full window of
// jumbo frames (64 x 9 KB); the kernel's default (about 200 KB) drops
// frames under a burst.
var socketBuffers = rawlink.Config{ReadBuffer: 4 << 20, WriteBuffer: 4 << 20}

// e2eNet is an initiator namespace and a target namespace joined by a veth
// pair, with the initiator's raw link open.
type e2eNet struct {
	ini, tgt *netlab.Netns
	veth     *netlab.Veth
	link     *rawlink.Link
	diskSize int64
}

func newE2ENet(t testing.TB, mtu int) *e2eNet {
	t.Helper()
	n := &e2eNet{ini: testenv.NewNetns(t), tgt: testenv.NewNetns(t), diskSize: e2eDiskSize}
	n.veth = testenv.NewVeth(t, n.ini, n.tgt, mtu)
	n.link = testenv.ListenRawIn(t, n.ini, n.veth.IfA, socketBuffers)
	return n
}

// startInitiator runs an initiator on the net's link until the test ends
// and waits for device 1.0.
func (n *e2eNet) startInitiator(t testing.TB) (*Initiator, *Device) {
	t.Helper()
	r := startRig(t, Config{Links: []aoe.Link{n.link}, RTOMin: 5 * time.Millisecond, RTOMax: 200 * time.Millisecond, ScornTimeout: 300 * time.Millisecond})
	d := r.device(t, 1, 0)
	if d.Size() != n.diskSize {
		t.Fatalf("Size %d, want %d", d.Size(), n.diskSize)
	}
	return r.ini, d
}

// startVblade serves a sparse file with vblade in the target namespace
// and returns the file's path.
func (n *e2eNet) startVblade(t testing.TB) string {
	t.Helper()
	bin := testenv.RequireCommand(t, "vblade")
	file := aoetest.SparseFile(t, filepath.Join(t.TempDir(), "disk.img"), n.diskSize)
	testenv.StartProcess(t, "vblade", n.tgt.Command(context.Background(), bin, "1", "0", n.veth.IfB, file))
	return file
}

// startIronblade serves an in-memory disk with the target package on a raw
// link in the target namespace.
func (n *e2eNet) startIronblade(t testing.TB) *aoetest.MemDisk {
	t.Helper()
	disk := aoetest.NewMemDisk(int(n.diskSize))
	serveIronblade(t, testenv.ListenRawIn(t, n.tgt, n.veth.IfB, socketBuffers), disk)
	return disk
}

// TestE2E runs the initiator over veth pairs in network namespaces against
// vblade and against ironblade: discovery, IDENTIFY, random I/O at several
// queue depths checked with SHA-512, flush, and the same under 5% frame
// loss each way.
func TestE2E(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		name   string
		target string
		mtu    int
		loss   int
	}{
		{"vblade", "vblade", 1500, 0},
		{"vblade-jumbo", "vblade", 9000, 0},
		{"vblade-loss5", "vblade", 1500, 5},
		{"ironblade", "ironblade", 1500, 0},
		{"ironblade-jumbo", "ironblade", 9000, 0},
		{"ironblade-loss5", "ironblade", 1500, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newE2ENet(t, tc.mtu)
			if tc.loss > 0 {
				n.diskSize /= 4
			}
			var backendSum func() [64]byte
			switch tc.target {
			case "vblade":
				file := n.startVblade(t)
				backendSum = func() [64]byte { return aoetest.FileSum(t, file, 0, -1) }
			case "ironblade":
				backendSum = n.startIronblade(t).Sum512
			}
			_, d := n.startInitiator(t)
			if tc.loss > 0 {
				testenv.AddLoss(t, n.tgt, n.veth.IfB, tc.loss)
				testenv.AddLoss(t, n.ini, n.veth.IfA, tc.loss)
			}
			// Under loss, a rewrite of sectors whose write was
			// retransmitted waits for the stray copy (see the package
			// documentation): fewer operations keep the test short.
			ops := 60
			if testing.Short() || tc.loss > 0 {
				ops = 20
			}
			start := time.Now()
			for _, qd := range []int{1, 16, 64} {
				want := exercise(t, d, qd, ops, 32, uint64(qd)+100)
				if backendSum() != want {
					t.Fatalf("qd %d: the target's disk differs from what was written", qd)
				}
			}
			st := d.Stats()
			ts := st.Targets[0]
			t.Logf("%s: %v, %d bytes read, %d written, frames %d, retransmits %d, fenced %d, rtt %v",
				tc.name, time.Since(start).Round(time.Millisecond), st.BytesRead, st.BytesWritten, ts.Frames, ts.Retransmits, st.Fenced, ts.RTT)
			if tc.loss > 0 && ts.Retransmits == 0 {
				t.Error("no retransmissions under loss")
			}
		})
	}
}

// BenchmarkE2E measures sequential 1 MiB reads and writes, 16 at once,
// over a veth pair against vblade and ironblade.
func BenchmarkE2E(b *testing.B) {
	testenv.RequireRoot(b)
	for _, tgt := range []string{"vblade", "ironblade"} {
		for _, mtu := range []int{1500, 9000} {
			n := newE2ENet(b, mtu)
			if tgt == "vblade" {
				n.startVblade(b)
			} else {
				n.startIronblade(b)
			}
			_, d := n.startInitiator(b)
			for _, op := range []string{"read", "write"} {
				b.Run(fmt.Sprintf("%s/mtu%d/%s", tgt, mtu, op), func(b *testing.B) {
					const size, qd = 1 << 20, 16
					b.SetBytes(size)
					b.ReportAllocs()
					var next atomic.Int64
					var wg sync.WaitGroup
					b.ResetTimer()
					for w := 0; w < qd; w++ {
						wg.Go(func() {
							p := make([]byte, size)
							for {
								k := next.Add(1) - 1
								if k >= int64(b.N) {
									return
								}
								off := k * size % e2eDiskSize
								var err error
								if op == "read" {
									err = d.ReadAt(context.Background(), p, off)
								} else {
									err = d.WriteAt(context.Background(), p, off, false)
								}
								if err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
				})
			}
		}
	}
}
