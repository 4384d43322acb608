package initiator

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/testenv"
)

// targetStats returns the stats of the target with the given MAC.
func targetStats(t *testing.T, d *Device, mac aoe.MAC) TargetStats {
	t.Helper()
	for _, ts := range d.Stats().Targets {
		if ts.MAC == mac.String() {
			return ts
		}
	}
	t.Fatalf("%s has no target %s", d.Name(), mac)
	return TargetStats{}
}

// pairOfTargets serves one disk through two fake targets and returns the
// device found through them (fastConfig, failover policy), the fake target
// it uses and the other one.
func pairOfTargets(t *testing.T) (d *Device, active, other *fakeTarget) {
	t.Helper()
	hub := aoetest.NewHub()
	disk := aoetest.NewMemDisk(testDiskSize)
	a := newFakeTarget(t, hub, targetMAC(1), 1500, disk, 1, 0)
	b := newFakeTarget(t, hub, targetMAC(2), 1500, disk, 1, 0)
	d = newRig(t, hub, 1500, fastConfig(), nil).device(t, 1, 0)
	waitTargets(t, d, 2)
	active, other = activeFake(t, d, a, b)
	return d, active, other
}

// activeFake returns the fake target that d uses, and the other one.
func activeFake(t *testing.T, d *Device, a, b *fakeTarget) (active, other *fakeTarget) {
	t.Helper()
	st := d.Stats()
	switch {
	case len(st.Active) != 1:
		t.Fatalf("active targets %v, want one", st.Active)
	case st.Active[0] == a.mac.String():
		return a, b
	}
	return b, a
}

// eventsOf returns the device's events of one kind.
func eventsOf(d *Device, kind EventKind) []Event {
	var out []Event
	for _, e := range d.Stats().Events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// keepWriting writes 4 KiB blocks with qd workers until stop is closed,
// each worker moving on through its own part of the device, a block every
// millisecond or so (a write fenced by a stray copy of an earlier one
// comes only after a lap), and returns the latency of the slowest write.
// It fails the test on an error.
func keepWriting(t *testing.T, d *Device, qd int, stop <-chan struct{}) (slowest func() time.Duration, wait func()) {
	var wg sync.WaitGroup
	var worst atomic.Int64
	blocks := int(d.Size()) / 4096 / qd
	for w := range qd {
		wg.Go(func() {
			p := bytes.Repeat([]byte{byte(w)}, 4096)
			for k := 0; ; k++ {
				time.Sleep(time.Millisecond) // the pace of the load: it is the subject
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				start := time.Now()
				err := d.WriteAt(ctx, p, int64((w*blocks+k%blocks)*4096), false)
				cancel()
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
				if el := int64(time.Since(start)); el > worst.Load() {
					worst.Store(el)
				}
			}
		})
	}
	return func() time.Duration { return time.Duration(worst.Load()) }, wg.Wait
}

// TestFlappingTargetHeldOff checks the flap control: a target that answers
// Query Config but never ATA is readmitted at once the first time, then
// held off longer and longer, so it takes I/O less and less often.
func TestFlappingTargetHeldOff(t *testing.T) {
	hub := aoetest.NewHub()
	disk := aoetest.NewMemDisk(testDiskSize)
	var dropATA atomic.Bool
	bad := newFakeTarget(t, hub, targetMAC(1), 1500, disk, 1, 0)
	bad.hook = func(*fakeTarget, []byte) bool { return !dropATA.Load() }
	newFakeTarget(t, hub, targetMAC(2), 1500, disk, 1, 0)
	cfg := fastConfig()
	cfg.ScornTimeout = 100 * time.Millisecond
	cfg.Policy = PolicyMultipath // every readmitted target takes I/O at once
	r := newRig(t, hub, 1500, cfg, nil)
	d := r.device(t, 1, 0)
	waitTargets(t, d, 2)
	dropATA.Store(true)
	stop := make(chan struct{})
	slowest, wait := keepWriting(t, d, 4, stop)
	time.Sleep(2 * time.Second) // the span the scorns are counted over: the subject
	close(stop)
	wait()
	ts := targetStats(t, d, targetMAC(1))
	// Without hold-offs it would be scorned every ~150 ms (scorn timeout
	// plus a probe interval): about 13 times. With them: 0.1 s, then
	// after hold-offs of 0.2, 0.4 and 0.8 s, and probation halving the
	// scorn timeout.
	t.Logf("flapping target: %d scorns, strikes %d, held until %v; slowest write %v; held-off events %d",
		ts.Scorns, ts.Strikes, ts.HeldUntil.Format(time.StampMilli), slowest(), len(eventsOf(d, EventHeldOff)))
	if ts.Scorns < 3 || ts.Scorns > 6 {
		t.Errorf("flapping target scorned %d times in 2 s, want 3 to 6", ts.Scorns)
	}
	if ts.Strikes < 3 {
		t.Errorf("strikes %d, want at least 3", ts.Strikes)
	}
	if len(eventsOf(d, EventHeldOff)) == 0 {
		t.Error("no held_off event")
	}
	// Once it answers ATA again and stays healthy, it is readmitted (when
	// its hold-off ends) and used.
	dropATA.Store(false)
	testenv.WaitFor(t, 15*time.Second, "readmission", func() bool { return targetStats(t, d, targetMAC(1)).State == TargetActive })
}

// TestReadmittedTargetStaysStandby checks that under the failover policy
// a target that answers probes again comes back as a standby and does not
// take the I/O back from the target that took over.
func TestReadmittedTargetStaysStandby(t *testing.T) {
	d, a, b := pairOfTargets(t)
	a.silent.Store(true)
	stop := make(chan struct{})
	_, wait := keepWriting(t, d, 4, stop)
	testenv.WaitFor(t, 3*time.Second, "scorn", func() bool { return targetStats(t, d, a.mac).State == TargetScorned })
	a.silent.Store(false)
	testenv.WaitFor(t, 3*time.Second, "readmission", func() bool { return targetStats(t, d, a.mac).State == TargetStandby })
	before := a.writes.Load()
	time.Sleep(200 * time.Millisecond) // the standby must take no write meanwhile: the subject
	close(stop)
	wait()
	if n := a.writes.Load() - before; n != 0 {
		t.Errorf("the readmitted standby took %d writes", n)
	}
	st := d.Stats()
	if st.Failovers != 1 || st.LastStall <= 0 || st.LastStall > 2*time.Second {
		t.Errorf("failovers %d, last stall %v", st.Failovers, st.LastStall)
	}
	kinds := map[EventKind]int{}
	for _, e := range st.Events {
		kinds[e.Kind]++
	}
	for _, k := range []EventKind{EventTargetAdded, EventScorned, EventSwitched, EventResumed, EventReadmitted} {
		if kinds[k] == 0 {
			t.Errorf("no %s event in %+v", k, st.Events)
		}
	}
	sw := eventsOf(d, EventSwitched)[0]
	if sw.Previous != a.mac.String() || sw.Target != b.mac.String() {
		t.Errorf("switch event %+v", sw)
	}
}

// TestAnnounceSwitches checks that an announce from another target moves
// the I/O of a failing active target at once, long before the scorn
// timeout: when frames are overdue, and when the device is idle (the
// silent active target is probed first).
func TestAnnounceSwitches(t *testing.T) {
	for _, tc := range []struct {
		name     string
		busy     bool
		newcomer bool // the announcing target is new, not a known standby
	}{
		{"busy-standby", true, false},
		{"busy-new-target", true, true},
		{"idle-standby", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, a, other := announceSetup(t, tc.newcomer)
			retransmits := targetStats(t, d, a.mac).Retransmits
			a.silent.Store(true)
			stop := make(chan struct{})
			var wait func()
			if tc.busy {
				_, wait = keepWriting(t, d, 4, stop)
				testenv.WaitFor(t, 2*time.Second, "frames overdue on the silent target", func() bool {
					return targetStats(t, d, a.mac).Retransmits > retransmits
				})
			}
			start := time.Now()
			b := other()
			b.announce()
			if !tc.busy {
				// The silent active target gets a probe and its grace.
				testenv.WaitFor(t, 2*time.Second, "scorn of the silent target", func() bool { return targetStats(t, d, a.mac).State == TargetScorned })
				if err := d.WriteAt(context.Background(), make([]byte, 4096), 0, false); err != nil {
					t.Fatal(err)
				}
			} else {
				n := b.writes.Load()
				testenv.WaitFor(t, 2*time.Second, "writes on the announcing target", func() bool { return b.writes.Load() > n+10 })
			}
			el := time.Since(start)
			if tc.busy {
				close(stop)
				wait()
			}
			st := d.Stats()
			t.Logf("switched %v after the announce; engine's stall %v; events %d", el.Round(time.Millisecond), st.LastStall, len(st.Events))
			if el > time.Second {
				t.Errorf("switch took %v", el)
			}
			if len(st.Active) != 1 || st.Active[0] != b.mac.String() {
				t.Errorf("active %v, want %s", st.Active, b.mac)
			}
			if len(eventsOf(d, EventAnnounce)) == 0 {
				t.Error("no announce event")
			}
		})
	}
}

// announceSetup serves one disk through a fake target and, unless
// newcomer, a second one, to an initiator whose scorn timeout (10 s) is so
// long that only an announce can explain a quick switch. It returns the
// device, the fake target it uses and a function that returns the other,
// making it at the first call when newcomer.
func announceSetup(t *testing.T, newcomer bool) (d *Device, active *fakeTarget, other func() *fakeTarget) {
	t.Helper()
	hub := aoetest.NewHub()
	disk := aoetest.NewMemDisk(testDiskSize)
	a := newFakeTarget(t, hub, targetMAC(1), 1500, disk, 1, 0)
	var b *fakeTarget
	if !newcomer {
		b = newFakeTarget(t, hub, targetMAC(2), 1500, disk, 1, 0)
	}
	cfg := fastConfig()
	cfg.ScornTimeout = 10 * time.Second
	d = newRig(t, hub, 1500, cfg, nil).device(t, 1, 0)
	if !newcomer {
		waitTargets(t, d, 2)
		a, b = activeFake(t, d, a, b)
	}
	return d, a, func() *fakeTarget {
		if b == nil {
			b = newFakeTarget(t, hub, targetMAC(2), 1500, disk, 1, 0)
		}
		return b
	}
}

// TestAnnounceFromStandbyKeepsHealthyActive checks that a standby's
// announce does not move the I/O of an active target that answers.
func TestAnnounceFromStandbyKeepsHealthyActive(t *testing.T) {
	d, a, b := pairOfTargets(t)
	stop := make(chan struct{})
	_, wait := keepWriting(t, d, 4, stop)
	for k := range 5 {
		b.announce()
		// Each announce's probe of the active target ends, answered,
		// before the next.
		testenv.WaitFor(t, 2*time.Second, "the announce check", func() bool {
			return len(eventsOf(d, EventAnnounce)) > k && d.ini.checks.Load() == 0
		})
	}
	close(stop)
	wait()
	if st := d.Stats(); st.Active[0] != a.mac.String() || targetStats(t, d, a.mac).Scorns != 0 {
		t.Errorf("active %v, scorns of the first target %d", st.Active, targetStats(t, d, a.mac).Scorns)
	}
}

// TestLateWriteDetected checks that a write copy answered after its fence
// expired is reported: a target broke the contract the fence relies on.
func TestLateWriteDetected(t *testing.T) {
	var held atomic.Bool
	release := make(chan struct{})
	hold := func(ft *fakeTarget, req []byte) bool {
		var f aoe.Frame
		var a aoe.ATA
		_ = f.UnmarshalBinary(req)
		_ = a.UnmarshalBinary(f.Arg)
		if !a.IsWrite() || a.LBA != 8 || !held.CompareAndSwap(false, true) {
			return true
		}
		go func() { // answer once the fence expired, without writing
			<-release
			resp := aoe.Frame{Dst: f.Src, Src: ft.mac, Header: f.Header}
			resp.Flags |= aoe.FlagResponse
			resp.Arg, _ = (&aoe.ATA{Flags: a.Flags, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}).MarshalBinary()
			out, _ := resp.MarshalBinary()
			ft.send(out)
		}()
		return false
	}
	_, _, d := oneTarget(t, aoetest.NewMemDisk(testDiskSize), func(ft *fakeTarget) { ft.hook = hold })
	if err := d.WriteAt(context.Background(), make([]byte, 1024), 8*aoe.SectorSize, false); err != nil {
		t.Fatal(err)
	}
	// The write completed through its retransmission, and its fence
	// guards the held copy until it expires.
	testenv.WaitFor(t, 3*time.Second, "the fence to expire", func() bool { return d.Stats().Lingering == 0 })
	close(release)
	testenv.WaitFor(t, 3*time.Second, "late write report", func() bool { return d.Stats().LateWrites == 1 })
	if ev := eventsOf(d, EventLateWrite); len(ev) != 1 {
		t.Errorf("late_write events %+v", ev)
	}
}

// TestEventLogRing checks that the log keeps the latest EventLogSize
// events, oldest first.
func TestEventLogRing(t *testing.T) {
	ini, err := New(Config{Links: []aoe.Link{aoetest.NewHub().Port(initiatorMAC, 1500)}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var l eventLog
	for k := range EventLogSize + 5 {
		l.add(event{at: time.Duration(k+1) * time.Millisecond, kind: EventAnnounce})
	}
	ev := l.events(ini)
	if len(ev) != EventLogSize {
		t.Fatalf("%d events", len(ev))
	}
	if got := ev[0].Time.Sub(ini.start); got != 6*time.Millisecond {
		t.Errorf("oldest event at %v, want 6ms", got)
	}
	for k := 1; k < len(ev); k++ {
		if !ev[k].Time.After(ev[k-1].Time) {
			t.Fatalf("events out of order at %d", k)
		}
	}
}

// TestStatsJSONNames pins the JSON names of the failover fields that
// `ironaoe stat` prints, and checks that Stats decode from their JSON.
func TestStatsJSONNames(t *testing.T) {
	_, _, d := oneTarget(t, aoetest.NewMemDisk(testDiskSize), nil)
	b, err := json.Marshal(d.ini.Stats())
	if err != nil {
		t.Fatal(err)
	}
	var back Stats
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Stats do not decode: %v", err)
	}
	if back.Devices[0].State != DeviceUp || back.Devices[0].Targets[0].State != TargetActive || back.Config.ScornTimeout != fastConfig().ScornTimeout {
		t.Errorf("decoded %+v", back.Devices[0])
	}
	var bad TargetState
	if err := bad.UnmarshalText([]byte("asleep")); err == nil {
		t.Error("UnmarshalText accepted an unknown state")
	}
	for _, name := range []string{`"config":`, `"scorn_timeout":`, `"rto_min":`, `"rto_max":`, `"discover_interval":`,
		`"dead_timeout":`, `"events":`, `"kind":"target_added"`, `"failovers":`, `"last_stall":`, `"late_writes":`,
		`"strikes":`, `"held_until":`, `"last_scorned":`, `"announces":`} {
		if !bytes.Contains(b, []byte(name)) {
			t.Errorf("Stats JSON lacks %s: %s", name, b)
		}
	}
}

// TestDevicePolicies checks the per-device policy: set in Config by device
// name, and changed at run time.
func TestDevicePolicies(t *testing.T) {
	hub := aoetest.NewHub()
	disk := aoetest.NewMemDisk(testDiskSize)
	for n := byte(1); n <= 2; n++ {
		newFakeTarget(t, hub, targetMAC(n), 1500, disk, 1, 0)
	}
	newFakeTarget(t, hub, targetMAC(3), 1500, aoetest.NewMemDisk(1<<20), 1, 1)
	cfg := fastConfig()
	cfg.Policy = PolicyMultipath
	cfg.DevicePolicies = map[string]Policy{"e1.0": PolicyFailover}
	r := newRig(t, hub, 1500, cfg, nil)
	d := r.device(t, 1, 0)
	waitTargets(t, d, 2)
	if p := r.device(t, 1, 1).Policy(); p != PolicyMultipath {
		t.Errorf("e1.1 policy %s, want the default multipath", p)
	}
	for _, step := range []struct {
		policy Policy
		active int
	}{{PolicyFailover, 1}, {PolicyMultipath, 2}, {PolicyFailover, 1}} {
		if err := d.SetPolicy(step.policy); err != nil {
			t.Fatal(err)
		}
		if st := d.Stats(); st.Policy != step.policy || len(st.Active) != step.active {
			t.Errorf("policy %s: stats say %s with active %v", step.policy, st.Policy, st.Active)
		}
		if err := d.WriteAt(context.Background(), make([]byte, 64<<10), 0, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.SetPolicy("roundrobin"); err == nil {
		t.Error("SetPolicy accepted an unknown policy")
	}
	for _, bad := range []map[string]Policy{{"e1": PolicyFailover}, {"e1.0x": PolicyFailover}, {"e1.255": PolicyFailover}, {"e1.0": "roundrobin"}} {
		if _, err := New(Config{Links: []aoe.Link{hub.Port(initiatorMAC, 1500)}, DevicePolicies: bad}); err == nil {
			t.Errorf("New accepted DevicePolicies %v", bad)
		}
	}
}
