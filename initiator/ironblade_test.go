package initiator

import (
	"testing"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	ironblade "github.com/ironblade/ironblade/target"
)

// serveIronblade serves disk as e1.0 with the target package on link until
// the test ends.
func serveIronblade(t testing.TB, link aoe.Link, disk *aoetest.MemDisk) {
	t.Helper()
	srv, err := ironblade.NewServer(ironblade.Config{Shelf: 1, Slot: 0, Backend: disk, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	aoetest.ServeLink(t, link, srv.Serve)
}

// TestAgainstIronbladeTarget runs the initiator against the real target
// package on an in-memory hub: I/O at several queue depths, FLUSH reaching
// the backend, and 5% loss both ways.
func TestAgainstIronbladeTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		mtu  int
		loss int
	}{
		{"mtu1500", 1500, 0},
		{"jumbo", 9000, 0},
		{"loss5", 1500, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := aoetest.NewHub()
			disk := aoetest.NewMemDisk(testDiskSize)
			var filter func([]byte) bool
			if tc.loss > 0 {
				filter = lossy(tc.loss, 7)
			}
			// The initiator's port, with its Filter, exists before the
			// target announces itself to every port.
			r := newRig(t, hub, tc.mtu, fastConfig(), filter)
			serveIronblade(t, hub.Port(targetMAC(1), tc.mtu), disk)
			d := r.device(t, 1, 0)
			if d.Size() != testDiskSize {
				t.Fatalf("Size %d", d.Size())
			}
			ops := 60
			if testing.Short() || tc.loss > 0 {
				ops = 20 // see TestE2E
			}
			for _, qd := range []int{1, 16, 64} {
				syncs := disk.Syncs()
				want := exercise(t, d, qd, ops, 32, uint64(qd))
				if disk.Sum512() != want {
					st := d.Stats()
					t.Fatalf("qd %d: backend differs from what was written (late writes %d, fenced %d)", qd, st.LateWrites, st.Fenced)
				}
				if disk.Syncs() == syncs {
					t.Errorf("qd %d: Flush did not reach the backend", qd)
				}
			}
			st := d.Stats()
			t.Logf("%s: frames %d retransmits %d rtt %v fua %v", tc.name, st.Targets[0].Frames, st.Targets[0].Retransmits, st.Targets[0].RTT, st.FUA)
		})
	}
}
