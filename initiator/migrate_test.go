package initiator

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/testenv"
	ironblade "github.com/ironblade/ironblade/target"
)

// This file repeats the migration of a target, as a cluster manager does
// it (stop the target cleanly on one node, then start it on the other,
// or tell the one already serving there to announce itself), and checks
// that every time the announce moves the I/O at once: well under 200 ms,
// whatever the scorn timeout and however slow the storage is.

// migrateRounds is how many migrations a test makes.
const migrateRounds = 20

// migrateMaxStall is the longest I/O may stall in a migration with an
// announce here; with real processes (migrate_e2e_test.go) it bounds the
// median stall, and twice it the worst.
const migrateMaxStall = 200 * time.Millisecond

// slowSyncDisk is a MemDisk whose Sync takes as long as an fdatasync of a
// busy disk: between min and min+spread. A target in sync mode then
// answers writes in tens of milliseconds, with a large deviation, as the
// demo's targets do on a real disk.
type slowSyncDisk struct {
	*aoetest.MemDisk
	min, spread time.Duration
}

func (d *slowSyncDisk) Sync() error {
	time.Sleep(d.min + rand.N(d.spread)) // the storage's latency: the subject
	return d.MemDisk.Sync()
}

// hubNode is a node of an in-memory cluster: the target package serving
// the shared disk as e1.0 on a hub port, from start until stop.
type hubNode struct {
	hub  *aoetest.Hub
	mac  aoe.MAC
	mtu  int
	disk ironblade.Backend

	srv    *ironblade.Server
	port   *aoetest.Port
	cancel context.CancelFunc
	done   chan error
}

// start serves the disk on a new port; the target announces itself.
func (n *hubNode) start(t *testing.T) {
	t.Helper()
	srv, err := ironblade.NewServer(ironblade.Config{Shelf: 1, Slot: 0, Backend: n.disk, SyncWrites: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.srv, n.port, n.cancel, n.done = srv, n.hub.Port(n.mac, n.mtu), cancel, make(chan error, 1)
	go func(port *aoetest.Port, done chan<- error) { done <- srv.Serve(ctx, port) }(n.port, n.done)
}

// stop stops the target cleanly, as SIGTERM stops ironblade: it answers
// what it has read, syncs, and its port goes away with what is queued.
func (n *hubNode) stop(t *testing.T) {
	t.Helper()
	if n.srv == nil {
		return
	}
	n.cancel()
	testenv.WaitReturn(t, "Serve of "+n.mac.String(), n.done, 10*time.Second)
	n.port.Close()
	n.srv = nil
}

// ackLoad keeps qd workers writing through a device, in chunks, each in
// its own region, and notes when each write is acknowledged.
type ackLoad struct {
	stopc chan struct{}
	wg    sync.WaitGroup

	mu   sync.Mutex
	acks []time.Time
}

func startAckLoad(t *testing.T, d *Device, qd, chunk int) *ackLoad {
	l := &ackLoad{stopc: make(chan struct{})}
	region := int(d.Size()) / qd / chunk * chunk
	for w := range qd {
		l.wg.Go(func() {
			p := make([]byte, chunk)
			for k := range p {
				p[k] = byte(w + k)
			}
			base := w * region
			for {
				select {
				case <-l.stopc:
					return
				default:
				}
				off := base + rand.IntN(region/chunk)*chunk
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := d.WriteAt(ctx, p, int64(off), false)
				cancel()
				if err != nil {
					t.Errorf("worker %d: write: %v", w, err)
					return
				}
				l.mu.Lock()
				l.acks = append(l.acks, time.Now())
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

func (l *ackLoad) stop() {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	l.wg.Wait()
}

func (l *ackLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// waitAcks waits for n more acknowledged writes.
func (l *ackLoad) waitAcks(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	want := l.count() + n
	testenv.WaitFor(t, timeout, "acknowledged writes", func() bool { return l.count() >= want })
}

// gap returns the longest time after ev, up to the last write
// acknowledged so far, during which no write was acknowledged.
func (l *ackLoad) gap(ev time.Time) time.Duration {
	l.mu.Lock()
	acks := slices.Clone(l.acks)
	l.mu.Unlock()
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	prev, worst := ev, time.Duration(0)
	for _, a := range acks {
		if a.Before(ev) {
			continue
		}
		worst = max(worst, a.Sub(prev))
		prev = a
	}
	return worst
}

// TestMigrateStall migrates the target back and forth between two nodes
// migrateRounds times during writes, with the default timeouts, on a
// storage whose syncs take 5 to 25 ms: the targets run in sync mode, so
// a write's round trip includes a sync and the retransmission timeout
// learnt from them (2*rtt+8*rttdev) is tens of milliseconds, more while
// the stopping target drains. In "cold" mode the node the target leaves
// stops it and the other starts it, which announces itself; in "standby"
// mode (the demo's default) the other node serves all along and is told
// to announce itself, and the stopped one comes back as the standby.
// Every time, I/O must resume within migrateMaxStall of the stop: the
// announce, not the scorn timeout nor the storage's latency, decides.
// The migrations follow each other within the flap control's memory, so
// from the third or so the announcing target is held off (it was scorned
// twice in a row): its announce must still move the I/O.
func TestMigrateStall(t *testing.T) {
	for _, mode := range []string{"cold", "standby"} {
		t.Run(mode, func(t *testing.T) {
			const mtu = 9000
			hub := aoetest.NewHub()
			disk := &slowSyncDisk{MemDisk: aoetest.NewMemDisk(64 << 20), min: 5 * time.Millisecond, spread: 20 * time.Millisecond}
			nodes := [2]*hubNode{
				{hub: hub, mac: targetMAC(1), mtu: mtu, disk: disk},
				{hub: hub, mac: targetMAC(2), mtu: mtu, disk: disk},
			}
			r := newRig(t, hub, mtu, Config{}, nil)
			for _, n := range nodes {
				t.Cleanup(func() { n.stop(t) })
			}
			nodes[0].start(t)
			d := r.device(t, 1, 0)
			if mode == "standby" {
				nodes[1].start(t)
				waitTargets(t, d, 2)
			}
			l := startAckLoad(t, d, 8, 128<<10)
			var worst, worstGap, worstSwitch time.Duration
			for k := range migrateRounds {
				from, to := nodes[k%2], nodes[(k+1)%2]
				l.waitAcks(t, 40, 10*time.Second)
				failovers := d.Stats().Failovers
				ev := time.Now()
				from.stop(t)
				stopped := time.Since(ev)
				if mode == "cold" {
					to.start(t)
				} else if err := to.srv.Announce(); err != nil {
					t.Fatal(err)
				}
				waitSwitch(t, d, to.mac, failovers, ev)
				l.waitAcks(t, 20, 10*time.Second)
				events := eventsSince(d, ev)
				stall, sw, gap := resumedAfter(events, ev), switchDelay(events, to.mac), l.gap(ev)
				worst, worstGap, worstSwitch = max(worst, stall), max(worstGap, gap), max(worstSwitch, sw)
				t.Logf("migration %2d to %s: stall %3dms (clean stop %2dms, switch %3dms after the announce); no write acknowledged for %3dms",
					k+1, to.mac, stall.Milliseconds(), stopped.Milliseconds(), sw.Milliseconds(), gap.Milliseconds())
				if stall < 0 || stall > migrateMaxStall || gap > migrateMaxStall {
					t.Errorf("migration %d: I/O stalled %v (no write acknowledged for %v), want under %v; events:",
						k+1, stall.Round(time.Millisecond), gap.Round(time.Millisecond), migrateMaxStall)
					for _, e := range events {
						t.Logf("  +%v %s %s %s", e.Time.Sub(ev).Round(time.Millisecond), e.Kind, e.Target, e.Detail)
					}
				}
				if mode == "standby" {
					from.start(t) // back as the standby
				}
			}
			t.Logf("STALL %s: worst of %d migrations %v (no write acknowledged for %v at worst); switch at worst %v after the announce",
				t.Name(), migrateRounds, worst.Round(time.Millisecond), worstGap.Round(time.Millisecond), worstSwitch.Round(time.Millisecond))
		})
	}
}

// waitSwitch waits until the I/O moved to the target to, with a failover
// counted since failovers; it fails the test, showing the events from 3 s
// before ev on and the targets' state, if that takes 10 s.
func waitSwitch(t *testing.T, d *Device, to aoe.MAC, failovers uint64, ev time.Time) {
	t.Helper()
	var st DeviceStats
	switched := false
	defer func() { // WaitFor fails the test: say why
		if switched {
			return
		}
		for _, e := range eventsSince(d, ev.Add(-3*time.Second)) {
			t.Logf("  %+v %s %s %s", e.Time.Sub(ev).Round(time.Millisecond), e.Kind, e.Target, e.Detail)
		}
		for _, ts := range st.Targets {
			t.Logf("  target %s: %s, strikes %d, outstanding %d, cwnd %d", ts.MAC, ts.State, ts.Strikes, ts.Outstanding, ts.Cwnd)
		}
		t.Logf("I/O not on %s (active %v, failovers %d)", to, st.Active, st.Failovers)
	}()
	testenv.WaitFor(t, 10*time.Second, "I/O on "+to.String(), func() bool {
		st = d.Stats()
		switched = len(st.Active) == 1 && st.Active[0] == to.String() && st.Failovers > failovers
		return switched
	})
}

// eventsSince returns the device's events after ev.
func eventsSince(d *Device, ev time.Time) []Event {
	var out []Event
	for _, e := range d.Stats().Events {
		if e.Time.After(ev) {
			out = append(out, e)
		}
	}
	return out
}

// resumedAfter returns the stall as the demo measures it: from ev to the
// first read or write completed after the failover (EventResumed), or -1
// if there is none.
func resumedAfter(events []Event, ev time.Time) time.Duration {
	for _, e := range events {
		if e.Kind == EventResumed {
			return e.Time.Sub(ev)
		}
	}
	return -1
}

// switchDelay returns how long after the latest announce from to the I/O
// switched to it, or -1 if it did not.
func switchDelay(events []Event, to aoe.MAC) time.Duration {
	var announced time.Time
	for _, e := range events {
		switch {
		case e.Kind == EventAnnounce && e.Target == to.String():
			announced = e.Time
		case e.Kind == EventSwitched && e.Target == to.String() && !announced.IsZero():
			return e.Time.Sub(announced)
		}
	}
	return -1
}
