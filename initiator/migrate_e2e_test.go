//go:build linux

package initiator

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestFailoverE2EMigrateRepeated is TestMigrateStall with the real
// ironblade binary over veth namespaces: two nodes serve the shared file
// in sync mode (-s), and an initiator in the client namespace writes
// through them at queue depth 8 while the target is migrated
// migrateRounds times, as a cluster manager does it: SIGTERM to the active
// ironblade (it answers what it read, syncs and exits), then in "cold"
// mode ironblade started on the other node, which announces itself, and in
// "standby" mode SIGUSR1 to the one serving there all along, after which
// the stopped one is started again as the standby. Each migration's stall
// (from the SIGTERM to the first write completed on the other node, as the
// demo measures it) must stay under migrateMaxStall at the median and
// twice that at worst, and every acknowledged write must be found
// afterwards. The worst case gets room because a cold migration's stall
// includes starting a process, which a loaded 2-CPU machine now and then
// delays by tens of milliseconds (one of 20 took 247 ms in CI, its switch
// 43 ms after the announce); an initiator that missed the announce would
// still fail it, waiting for its scorn timeout. The shared file is in
// memory (/dev/shm) where there is one: the stalls are then the
// processes' and the initiator's, not those of a disk shared with
// whatever else the machine runs (TestMigrateStall covers slow storage).
func TestFailoverE2EMigrateRepeated(t *testing.T) {
	for _, mode := range []string{"cold", "standby"} {
		t.Run(mode, func(t *testing.T) {
			if testing.Short() {
				t.Skip("-short: skipping 20 migrations of ironblade processes")
			}
			c := newCluster(t) // skips unless root
			if dir, err := os.MkdirTemp("/dev/shm", "ironblade-migrate-"); err == nil {
				t.Cleanup(func() { os.RemoveAll(dir) })
				c.file = aoetest.SparseFile(t, filepath.Join(dir, "shared.img"), clusterDiskSize)
			}
			bin := testenv.BuildBinary(t, "./cmd/ironblade")
			r := c.startClient(t, Config{})
			var procs [2]*processTarget
			procs[0] = c.run(t, bin, c.nodes[0])
			d := r.device(t, 1, 0)
			if mode == "standby" {
				procs[1] = c.run(t, bin, c.nodes[1])
				waitTargets(t, d, 2)
			}
			l := startLoad(t, d, 8, 6)
			var worst, worstSwitch time.Duration
			stalls := make([]time.Duration, 0, migrateRounds)
			for k := range migrateRounds {
				from, to := k%2, (k+1)%2
				l.waitWrites(t, 200, 10*time.Second)
				failovers := d.Stats().Failovers
				ev := time.Now()
				procs[from].stop()
				stopped := time.Since(ev)
				if mode == "cold" {
					procs[to] = c.run(t, bin, c.nodes[to])
				} else if err := procs[to].proc.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
					t.Fatal(err)
				}
				waitSwitch(t, d, c.nodes[to].mac, failovers, ev)
				l.waitWrites(t, 100, 10*time.Second)
				events := eventsSince(d, ev)
				stall, sw := resumedAfter(events, ev), switchDelay(events, c.nodes[to].mac)
				acked, _ := l.stall(ev)
				worst, worstSwitch = max(worst, stall), max(worstSwitch, sw)
				stalls = append(stalls, stall)
				t.Logf("migration %2d to %s: stall %3dms (clean stop %3dms, switch %3dms after the announce; writes resumed after %3dms)",
					k+1, c.nodes[to].name, stall.Milliseconds(), stopped.Milliseconds(), sw.Milliseconds(), acked.Milliseconds())
				if stall < 0 || stall > 2*migrateMaxStall {
					t.Errorf("migration %d: I/O stalled %v, want under %v; events:", k+1, stall.Round(time.Millisecond), 2*migrateMaxStall)
					for _, e := range events {
						t.Logf("  +%v %s %s %s", e.Time.Sub(ev).Round(time.Millisecond), e.Kind, e.Target, e.Detail)
					}
				}
				if mode == "standby" {
					procs[from] = c.run(t, bin, c.nodes[from]) // back as the standby
				}
			}
			slices.Sort(stalls)
			median := stalls[len(stalls)/2]
			t.Logf("STALL %s: median of %d migrations %v, worst %v; switch at worst %v after the announce", t.Name(), migrateRounds,
				median.Round(time.Millisecond), worst.Round(time.Millisecond), worstSwitch.Round(time.Millisecond))
			if median > migrateMaxStall {
				t.Errorf("median stall %v, want under %v", median.Round(time.Millisecond), migrateMaxStall)
			}
			c.verify(t, l, r)
		})
	}
}
