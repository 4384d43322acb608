package initiator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/testenv"
)

const testDiskSize = 4 << 20

// fastConfig has timeouts that keep tests short.
func fastConfig() Config {
	return Config{ScornTimeout: 300 * time.Millisecond, RTOMin: 5 * time.Millisecond, RTOMax: 100 * time.Millisecond}
}

func TestDiscoverIdentify(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mtu     int
		opts    []fakeOpt
		sectors int
		lba48   bool
	}{
		{"mtu1500", 1500, nil, 2, true},
		{"jumbo", 9000, []fakeOpt{withFUA}, 17, true},
		{"lba28", 1500, []fakeOpt{withLBA28}, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := aoetest.NewHub()
			disk := aoetest.NewMemDisk(testDiskSize)
			newFakeTarget(t, hub, targetMAC(1), tc.mtu, disk, 7, 3, tc.opts...)
			r := newRig(t, hub, tc.mtu, fastConfig(), nil)
			d := r.device(t, 7, 3)
			if d.Name() != "e7.3" || d.Shelf() != 7 || d.Slot() != 3 {
				t.Errorf("name %q shelf %d slot %d", d.Name(), d.Shelf(), d.Slot())
			}
			if d.Size() != testDiskSize {
				t.Errorf("Size = %d, want %d", d.Size(), testDiskSize)
			}
			if d.State() != DeviceUp {
				t.Errorf("State = %v", d.State())
			}
			st := r.ini.Stats()
			if len(st.Devices) != 1 || len(st.Devices[0].Targets) != 1 {
				t.Fatalf("Stats = %+v", st)
			}
			ds := st.Devices[0]
			ts := ds.Targets[0]
			if ts.MAC != targetMAC(1).String() || ts.SectorsPerFrame != tc.sectors || ts.Window != 16 || ts.State != TargetActive {
				t.Errorf("target stats %+v", ts)
			}
			if ds.LBA48 != tc.lba48 || ds.Model != "ironblade fake target" || len(ds.Active) != 1 {
				t.Errorf("device stats %+v", ds)
			}
			js, err := json.Marshal(st)
			if err != nil || !bytes.Contains(js, []byte(`"state":"up"`)) || !bytes.Contains(js, []byte(`"state":"active"`)) {
				t.Errorf("JSON %s (%v)", js, err)
			}
			// A quick round trip in the device's addressing mode.
			p := bytes.Repeat([]byte{0xA5}, 8*aoe.SectorSize)
			ctx := context.Background()
			if err := d.WriteAt(ctx, p, 1<<20, false); err != nil {
				t.Fatal(err)
			}
			q := make([]byte, len(p))
			if err := d.ReadAt(ctx, q, 1<<20); err != nil || !bytes.Equal(p, q) {
				t.Fatalf("read back: %v", err)
			}
		})
	}
}

func TestReadWriteQueueDepths(t *testing.T) {
	for _, qd := range []int{1, 16, 64} {
		t.Run("qd"+strconv.Itoa(qd), func(t *testing.T) {
			hub := aoetest.NewHub()
			disk := aoetest.NewMemDisk(testDiskSize)
			newFakeTarget(t, hub, targetMAC(1), 9000, disk, 1, 0, withBuffers(64), withFUA)
			r := newRig(t, hub, 9000, fastConfig(), nil)
			d := r.device(t, 1, 0)
			ops := 200
			if testing.Short() {
				ops = 50
			}
			want := exercise(t, d, qd, ops, 64, uint64(qd))
			if disk.Sum512() != want {
				t.Fatal("target's disk differs from what was written")
			}
		})
	}
}

func TestUnalignedAndOutOfRange(t *testing.T) {
	_, _, d := oneTarget(t, aoetest.NewMemDisk(testDiskSize), nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		n    int
		off  int64
		want error
	}{
		{"odd offset", 512, 100, ErrUnaligned},
		{"odd length", 100, 0, ErrUnaligned},
		{"negative", 512, -512, ErrUnaligned},
		{"past end", 1024, testDiskSize - 512, ErrOutOfRange},
		{"at end", 512, testDiskSize, ErrOutOfRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.ReadAt(ctx, make([]byte, tc.n), tc.off)
			if !errors.Is(err, tc.want) || !errors.Is(err, syscall.EINVAL) {
				t.Errorf("ReadAt: %v, want %v", err, tc.want)
			}
			err = d.WriteAt(ctx, make([]byte, tc.n), tc.off, false)
			if !errors.Is(err, tc.want) {
				t.Errorf("WriteAt: %v, want %v", err, tc.want)
			}
		})
	}
	if err := d.ReadAt(ctx, nil, 0); err != nil {
		t.Errorf("empty read: %v", err)
	}
}

func TestFUA(t *testing.T) {
	for _, tc := range []struct {
		name               string
		opts               []fakeOpt
		fuaWrites, flushes int64
	}{
		{"write fua ext", []fakeOpt{withFUA}, 4, 0},
		{"write then flush", nil, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := aoetest.NewHub()
			ft := newFakeTarget(t, hub, targetMAC(1), 1500, aoetest.NewMemDisk(testDiskSize), 1, 0, tc.opts...)
			r := newRig(t, hub, 1500, fastConfig(), nil)
			d := r.device(t, 1, 0)
			ctx := context.Background()
			if err := d.WriteAt(ctx, make([]byte, 8*aoe.SectorSize), 0, true); err != nil {
				t.Fatal(err)
			}
			if ft.fuaWrites.Load() != tc.fuaWrites || ft.flushes.Load() != tc.flushes {
				t.Errorf("FUA writes %d flushes %d, want %d and %d", ft.fuaWrites.Load(), ft.flushes.Load(), tc.fuaWrites, tc.flushes)
			}
			// Nothing is left dirty by a FUA write: Flush sends nothing.
			if err := d.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if ft.flushes.Load() != tc.flushes {
				t.Errorf("flush after a FUA write sent %d flushes", ft.flushes.Load()-tc.flushes)
			}
		})
	}
}

func TestFlushReachesEveryTargetWithWrites(t *testing.T) {
	for _, tc := range []struct {
		policy Policy
		want   [2]int64 // flushes per target
	}{
		{PolicyMultipath, [2]int64{1, 1}},
		{PolicyFailover, [2]int64{1, 0}},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			hub := aoetest.NewHub()
			disk := aoetest.NewMemDisk(testDiskSize)
			a := newFakeTarget(t, hub, targetMAC(1), 1500, disk, 1, 0, withFlushExt)
			b := newFakeTarget(t, hub, targetMAC(2), 1500, disk, 1, 0)
			cfg := fastConfig()
			cfg.Policy = tc.policy
			r := newRig(t, hub, 1500, cfg, nil)
			d := r.device(t, 1, 0)
			waitTargets(t, d, 2)
			ctx := context.Background()
			// 64 frames at once: multipath spreads them over both.
			if err := d.WriteAt(ctx, make([]byte, 128*aoe.SectorSize), 0, false); err != nil {
				t.Fatal(err)
			}
			if err := d.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			got := [2]int64{a.flushes.Load(), b.flushes.Load()}
			if got[0] < got[1] {
				got[0], got[1] = got[1], got[0] // under failover, either may be the active one
			}
			if got != tc.want {
				t.Errorf("flushes per target %v, want %v (writes %d, %d)", got, tc.want, a.writes.Load(), b.writes.Load())
			}
			if tc.policy == PolicyFailover && (a.flushes.Load() == 1) != (d.Stats().Active[0] == targetMAC(1).String()) {
				t.Error("the flush did not go to the active target")
			}
			if err := d.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if n := a.flushes.Load() + b.flushes.Load(); n != tc.want[0]+tc.want[1] {
				t.Errorf("a flush with no writes since sent %d more flushes", n-tc.want[0]-tc.want[1])
			}
		})
	}
}

// waitTargets waits until d knows n targets.
func waitTargets(t *testing.T, d *Device, n int) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("%s to know %d targets", d.Name(), n), func() bool { return len(d.Stats().Targets) >= n })
}

func TestRetransmitOnLoss(t *testing.T) {
	hub := aoetest.NewHub()
	disk := aoetest.NewMemDisk(testDiskSize)
	newFakeTarget(t, hub, targetMAC(1), 1500, disk, 1, 0, withLoss(5, 1), withBuffers(64))
	r := newRig(t, hub, 1500, fastConfig(), lossy(5, 2))
	d := r.device(t, 1, 0)
	ops := 100
	if testing.Short() {
		ops = 30
	}
	want := exercise(t, d, 16, ops, 32, 3)
	if disk.Sum512() != want {
		t.Fatal("target's disk differs from what was written")
	}
	st := d.Stats()
	if st.Targets[0].Retransmits == 0 {
		t.Error("no retransmissions with 5% loss")
	}
	t.Logf("retransmits %d of %d frames, fenced %d, rtt %v rto %v", st.Targets[0].Retransmits, st.Targets[0].Frames, st.Fenced, st.Targets[0].RTT, st.Targets[0].RTO)
}

func TestDuplicateAndStaleAnswersIgnored(t *testing.T) {
	disk := aoetest.NewMemDisk(testDiskSize)
	_, ft, d := oneTarget(t, disk, nil)
	ft.duplicate.Store(true)
	ft.replay.Store(true)
	want := exercise(t, d, 4, 50, 16, 4)
	if disk.Sum512() != want {
		t.Fatal("target's disk differs from what was written")
	}
	st := d.Stats()
	// A repeated answer to a frame already done finds its entry free or
	// reused: it counts as stale. Only one to a frame still in the table
	// (lingering, or answered twice before completing) is a duplicate.
	if st.Duplicate+st.Stale == 0 {
		t.Errorf("duplicates %d stale %d, want them counted", st.Duplicate, st.Stale)
	}
}

func TestWrongSourceIgnored(t *testing.T) {
	hub := aoetest.NewHub()
	disk := aoetest.NewMemDisk(testDiskSize)
	pattern := make([]byte, testDiskSize)
	for k := range pattern {
		pattern[k] = byte(k)
	}
	if _, err := disk.WriteAt(pattern, 0); err != nil {
		t.Fatal(err)
	}
	ft := newFakeTarget(t, hub, targetMAC(1), 1500, disk, 1, 0)
	impostor := hub.Port(targetMAC(9), 1500)
	t.Cleanup(func() { impostor.Close() })
	// Before each real answer, the impostor answers with the right tag and
	// garbage data.
	ft.hook = func(ft *fakeTarget, req []byte) bool {
		var f aoe.Frame
		_ = f.UnmarshalBinary(req)
		resp := ft.answerATA(&f)
		copy(resp[6:12], impostor.HardwareAddr().HardwareAddr())
		for k := aoe.FrameHeaderLen + aoe.ATAHeaderLen; k < len(resp); k++ {
			resp[k] = 0xEE
		}
		_ = impostor.WriteFrame(resp)
		return true
	}
	r := newRig(t, hub, 1500, fastConfig(), nil)
	d := r.device(t, 1, 0)
	p := make([]byte, 64*aoe.SectorSize)
	if err := d.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, disk.Bytes()[:len(p)]) {
		t.Fatal("read took data from the impostor")
	}
	if st := d.Stats(); st.WrongSource == 0 {
		t.Error("no answer counted as from the wrong source")
	}
}

func TestErrorsBecomeIOErrors(t *testing.T) {
	_, _, d := oneTarget(t, aoetest.NewMemDisk(testDiskSize), func(ft *fakeTarget) {
		ft.fail(100, failure{aoeErr: aoe.ErrorBadArgument})
		ft.fail(200, failure{status: aoe.ATAStatusDRDY | aoe.ATAStatusError, ataError: aoe.ATAErrorIDNF})
		ft.fail(300, failure{status: aoe.ATAStatusDRDY | aoe.ATAStatusError, ataError: aoe.ATAErrorUNC})
	})
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		lba   int64
		is    error
		words []string
	}{
		{"aoe error", 100, aoe.ErrorBadArgument, []string{"e1.0", "read", "LBA 100", "refused", "bad argument"}},
		{"idnf", 200, nil, []string{"ATA status 0x41", "ERR", "IDNF address not found"}},
		{"unc", 300, nil, []string{"UNC uncorrectable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.ReadAt(ctx, make([]byte, 4*aoe.SectorSize), tc.lba*aoe.SectorSize)
			var ioe *IOError
			if !errors.As(err, &ioe) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("ReadAt: %v, want an IOError", err)
			}
			if ioe.Target != targetMAC(1) {
				t.Errorf("Target %v", ioe.Target)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
	// The device still works.
	if err := d.ReadAt(ctx, make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.IOErrors != 3 || st.Targets[0].Errors != 3 {
		t.Errorf("IOErrors %d target errors %d, want 3", st.IOErrors, st.Targets[0].Errors)
	}
}

func TestFailoverWhenTargetGoesSilent(t *testing.T) {
	for _, policy := range []Policy{PolicyFailover, PolicyMultipath} {
		t.Run(string(policy), func(t *testing.T) {
			hub := aoetest.NewHub()
			disk := aoetest.NewMemDisk(testDiskSize)
			fakes := map[string]*fakeTarget{}
			for n := byte(1); n <= 2; n++ {
				fakes[targetMAC(n).String()] = newFakeTarget(t, hub, targetMAC(n), 1500, disk, 1, 0)
			}
			cfg := fastConfig()
			cfg.Policy = policy
			r := newRig(t, hub, 1500, cfg, nil)
			d := r.device(t, 1, 0)
			waitTargets(t, d, 2)
			// An active target dies; the other must carry on.
			dead := d.Stats().Active[0]
			fakes[dead].silent.Store(true)
			byMAC := func(mac string, stay bool) TargetStats {
				for _, ts := range d.Stats().Targets {
					if (ts.MAC == mac) == stay {
						return ts
					}
				}
				t.Fatalf("no target %s", mac)
				return TargetStats{}
			}
			start := time.Now()
			want := exercise(t, d, 8, 20, 16, 5)
			if disk.Sum512() != want {
				t.Fatal("disk differs from what was written")
			}
			elapsed := time.Since(start)
			if s := byMAC(dead, true); s.State != TargetScorned || s.Scorns == 0 {
				t.Errorf("silent target %+v, want scorned", s)
			}
			alive := byMAC(dead, false)
			if alive.State != TargetActive {
				t.Errorf("other target %v, want active", alive.State)
			}
			if st := d.Stats(); len(st.Active) != 1 || st.Active[0] != alive.MAC {
				t.Errorf("active %v, want [%s]", st.Active, alive.MAC)
			}
			if elapsed > 5*time.Second {
				t.Errorf("failover took %v", elapsed)
			}
			// When it answers again (the initiator probes it), it is
			// healthy: standby under failover, active under multipath.
			fakes[dead].silent.Store(false)
			testenv.WaitFor(t, 3*time.Second, "the scorned target to be probed back to health", func() bool { return byMAC(dead, true).State != TargetScorned })
			wantState := TargetStandby
			if policy == PolicyMultipath {
				wantState = TargetActive
			}
			if s := byMAC(dead, true).State; s != wantState {
				t.Errorf("recovered target is %v, want %v", s, wantState)
			}
		})
	}
}

func TestLateAnnounceAddsTarget(t *testing.T) {
	hub := aoetest.NewHub()
	disk := aoetest.NewMemDisk(testDiskSize)
	newFakeTarget(t, hub, targetMAC(1), 1500, disk, 1, 0)
	r := newRig(t, hub, 1500, fastConfig(), nil)
	d := r.device(t, 1, 0)
	b := newFakeTarget(t, hub, targetMAC(2), 1500, disk, 1, 0)
	b.announce()
	waitTargets(t, d, 2)
	if s := d.Stats().Targets[1]; s.MAC != targetMAC(2).String() || s.State != TargetStandby {
		t.Errorf("announced target %+v", s)
	}
	// Another shelf.slot announced is a new device.
	newFakeTarget(t, hub, targetMAC(3), 1500, aoetest.NewMemDisk(1<<20), 2, 5).announce()
	d2 := r.device(t, 2, 5)
	if d2.Size() != 1<<20 || len(r.ini.Devices()) != 2 {
		t.Errorf("second device size %d, devices %d", d2.Size(), len(r.ini.Devices()))
	}
}

func TestDeadTimeoutAndRecovery(t *testing.T) {
	hub := aoetest.NewHub()
	ft := newFakeTarget(t, hub, targetMAC(1), 1500, aoetest.NewMemDisk(testDiskSize), 1, 0)
	cfg := fastConfig()
	cfg.DeadTimeout = 400 * time.Millisecond
	r := newRig(t, hub, 1500, cfg, nil)
	d := r.device(t, 1, 0)
	ft.silent.Store(true)
	ctx := context.Background()
	start := time.Now()
	err := d.ReadAt(ctx, make([]byte, 4096), 0)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("ReadAt on a dead target: %v", err)
	}
	if el := time.Since(start); el < cfg.DeadTimeout || el > 3*time.Second {
		t.Errorf("gave up after %v", el)
	}
	if d.State() != DeviceDown {
		t.Errorf("state %v", d.State())
	}
	if err := d.ReadAt(ctx, make([]byte, 512), 0); !errors.Is(err, ErrTimeout) {
		t.Errorf("I/O on a down device: %v", err)
	}
	ft.silent.Store(false)
	ft.announce()
	testenv.WaitFor(t, 3*time.Second, "the device to come back", func() bool { return d.State() == DeviceUp })
	if err := d.ReadAt(ctx, make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
}

func TestContextCancel(t *testing.T) {
	_, ft, d := oneTarget(t, aoetest.NewMemDisk(testDiskSize), nil)
	ft.silent.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p := make([]byte, 1<<20)
	if err := d.ReadAt(ctx, p, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadAt: %v", err)
	}
	ft.silent.Store(false)
	// Nothing more is written into p, and the device carries on: the
	// abandoned read's frames are retransmitted and answered.
	q := make([]byte, 4096)
	if err := d.ReadAt(context.Background(), q, 0); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 3*time.Second, "the abandoned frames to be answered", func() bool { return d.Stats().Targets[0].Outstanding == 0 })
	for _, c := range p {
		if c != 0 {
			t.Fatal("an abandoned read wrote into the caller's buffer")
		}
	}
	if st := d.Stats(); st.Queued != 0 {
		t.Errorf("%d requests still queued", st.Queued)
	}
}

// TestRetransmittedWriteFences checks that a retransmitted write's stray
// first copy cannot overwrite a later write to the same sectors.
func TestRetransmittedWriteFences(t *testing.T) {
	ctx := context.Background()
	// Hold back the first copy of the first write to LBA 8 for 200 ms,
	// then carry it out (stale data by then) and answer. The delay is the
	// subject: the copy is a stray that lands after its retransmission
	// was answered.
	var held bool
	landed := make(chan struct{})
	hold := func(ft *fakeTarget, req []byte) bool {
		var f aoe.Frame
		var a aoe.ATA
		_ = f.UnmarshalBinary(req)
		_ = a.UnmarshalBinary(f.Arg)
		if held || !a.IsWrite() || a.LBA != 8 {
			return true
		}
		held = true
		go func() {
			time.Sleep(200 * time.Millisecond) // the hold: see above
			ft.send(ft.answerATA(&f))
			close(landed)
		}()
		return false
	}
	_, _, d := oneTarget(t, aoetest.NewMemDisk(testDiskSize), func(ft *fakeTarget) { ft.hook = hold })
	old := bytes.Repeat([]byte{1}, 1024)
	if err := d.WriteAt(ctx, old, 8*aoe.SectorSize, false); err != nil {
		t.Fatal(err)
	}
	newer := bytes.Repeat([]byte{2}, 1024)
	if err := d.WriteAt(ctx, newer, 8*aoe.SectorSize, false); err != nil {
		t.Fatal(err)
	}
	select { // let the held copy land
	case <-landed:
	case <-time.After(10 * time.Second):
		t.Fatal("the held copy was never sent")
	}
	got := make([]byte, 1024)
	if err := d.ReadAt(ctx, got, 8*aoe.SectorSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, newer) {
		t.Fatalf("a stray retransmitted copy overwrote newer data: got %x...", got[:4])
	}
	if st := d.Stats(); st.Fenced == 0 || st.Lingering != 0 {
		t.Errorf("fenced %d lingering %d", st.Fenced, st.Lingering)
	}
}

func TestRunEndsIO(t *testing.T) {
	r, ft, d := oneTarget(t, aoetest.NewMemDisk(testDiskSize), nil)
	ft.silent.Store(true)
	errc := make(chan error, 1)
	go func() { errc <- d.ReadAt(context.Background(), make([]byte, 4096), 0) }()
	testenv.WaitFor(t, 3*time.Second, "the read to be in flight", func() bool { return d.Stats().Targets[0].Outstanding > 0 })
	r.stop()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("I/O in progress at the end of Run: %v", err)
	}
	if err := d.Flush(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Run: %v", err)
	}
	if err := r.ini.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestNewChecksConfig(t *testing.T) {
	hub := aoetest.NewHub()
	l := hub.Port(initiatorMAC, 1500)
	for _, cfg := range []Config{
		{},
		{Links: []aoe.Link{l}, RTOMin: time.Second, RTOMax: time.Millisecond},
		{Links: []aoe.Link{l}, MaxWindow: -1},
		{Links: []aoe.Link{l}, Policy: "roundrobin"},
		{Links: []aoe.Link{l}, ScornTimeout: -1},
		{Links: []aoe.Link{nil}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestDiscover(t *testing.T) {
	hub := aoetest.NewHub()
	ini, err := New(Config{Links: []aoe.Link{hub.Port(initiatorMAC, 1500)}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ini.Discover(context.Background(), 0); err == nil {
		t.Error("Discover before Run succeeded")
	}
	r := newRig(t, hub, 1500, fastConfig(), nil)
	newFakeTarget(t, hub, targetMAC(1), 1500, aoetest.NewMemDisk(1<<20), 3, 1)
	newFakeTarget(t, hub, targetMAC(2), 1500, aoetest.NewMemDisk(1<<20), 3, 2)
	if err := r.ini.Discover(context.Background(), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n := len(r.ini.Devices()); n != 2 {
		t.Errorf("%d devices after Discover, want 2", n)
	}
	names := []string{}
	for _, ds := range r.ini.Stats().Devices {
		names = append(names, ds.Name)
	}
	if strings.Join(names, " ") != "e3.1 e3.2" {
		t.Errorf("Stats devices %v", names)
	}
}

// TestSpuriousTimeoutUndone holds a read's first copy at the target until
// one or two retransmissions arrive. When the target then answers the first
// copy (a slow disk), the retransmissions were needless and the window cuts
// made for them are undone; when the first copy is never answered (a lost
// frame), the cut stays.
func TestSpuriousTimeoutUndone(t *testing.T) {
	for _, tc := range []struct {
		name         string
		answerHeld   bool
		copies       int // copies that arrive before the target answers
		wantSpurious uint64
	}{
		{"slow", true, 2, 1},
		{"slower", true, 3, 2},
		{"lost", false, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const lba = 40
			var held []byte
			var mu sync.Mutex
			copies := 0
			hook := func(ft *fakeTarget, req []byte) bool {
				var f aoe.Frame
				var a aoe.ATA
				_ = f.UnmarshalBinary(req)
				_ = a.UnmarshalBinary(f.Arg)
				if a.IsWrite() || a.LBA != lba {
					return true
				}
				mu.Lock()
				defer mu.Unlock()
				if copies++; held == nil {
					held = append([]byte(nil), req...)
				}
				if copies < tc.copies {
					return false
				}
				if tc.answerHeld && copies == tc.copies {
					var first aoe.Frame
					_ = first.UnmarshalBinary(held)
					ft.send(ft.answerATA(&first))
				}
				return true
			}
			_, ft, d := oneTarget(t, aoetest.NewMemDisk(testDiskSize), func(ft *fakeTarget) { ft.hook = hook })
			if err := d.ReadAt(context.Background(), make([]byte, 2*aoe.SectorSize), lba*aoe.SectorSize); err != nil {
				t.Fatal(err)
			}
			ts := targetStats(t, d, ft.mac)
			t.Logf("retransmits %d, spurious %d, cwnd %d of %d", ts.Retransmits, ts.Spurious, ts.Cwnd, ts.Window)
			if ts.Retransmits < uint64(tc.copies-1) {
				t.Fatalf("%d retransmissions, want at least %d", ts.Retransmits, tc.copies-1)
			}
			if ts.Spurious != tc.wantSpurious {
				t.Errorf("Spurious = %d, want %d", ts.Spurious, tc.wantSpurious)
			}
			if full := ts.Cwnd == ts.Window; full != tc.answerHeld {
				t.Errorf("cwnd %d of a window of %d after the read (first copy answered: %v)", ts.Cwnd, ts.Window, tc.answerHeld)
			}
		})
	}
}
