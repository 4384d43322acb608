package initiator

import (
	"context"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/testenv"
)

// fakeTarget is a small AoE target on an aoetest.Hub port, with knobs to
// misbehave. It answers like vblade does where this package cares.
type fakeTarget struct {
	tb    testing.TB
	port  *aoetest.Port
	mac   aoe.MAC
	shelf uint16
	slot  uint8
	disk  *aoetest.MemDisk

	bufferCount uint16
	lba48       bool
	fua         bool // IDENTIFY advertises WRITE FUA EXT
	flushExt    bool // IDENTIFY advertises FLUSH CACHE EXT (else it is aborted)

	silent    atomic.Bool // answer nothing
	duplicate atomic.Bool // send every answer twice
	replay    atomic.Bool // after each answer, resend the previous one

	// failLBA makes ATA commands touching these LBAs fail: with an AoE
	// error when aoeErr is set, else with the ATA status/error given.
	failMu  sync.Mutex
	failLBA map[uint64]failure
	// hook, if set, sees each ATA request and may handle it itself (it
	// returns false to stop normal processing).
	hook func(ft *fakeTarget, req []byte) bool

	filter func([]byte) bool // set as the port's Filter

	flushes, fuaWrites, writes, reads, requests atomic.Int64
	lastAnswer                                  []byte
}

type failure struct {
	aoeErr           aoe.Error
	status, ataError uint8
}

type fakeOpt func(*fakeTarget)

func withFUA(ft *fakeTarget)      { ft.fua = true }
func withFlushExt(ft *fakeTarget) { ft.flushExt = true }
func withLBA28(ft *fakeTarget)    { ft.lba48 = false }
func withBuffers(n uint16) fakeOpt {
	return func(ft *fakeTarget) { ft.bufferCount = n }
}

// withLoss drops about percent of the frames the target receives.
func withLoss(percent int, seed uint64) fakeOpt {
	return func(ft *fakeTarget) { ft.filter = lossy(percent, seed) }
}

// newFakeTarget attaches a target for shelf.slot to hub and serves until
// the test ends.
func newFakeTarget(tb testing.TB, hub *aoetest.Hub, mac aoe.MAC, mtu int, disk *aoetest.MemDisk, shelf uint16, slot uint8, opts ...fakeOpt) *fakeTarget {
	ft := &fakeTarget{tb: tb, mac: mac, shelf: shelf, slot: slot, disk: disk, bufferCount: 16, lba48: true, failLBA: map[uint64]failure{}}
	for _, o := range opts {
		o(ft)
	}
	ft.port = hub.Port(mac, mtu)
	ft.port.Filter = ft.filter
	tb.Cleanup(func() { ft.port.Close() })
	go ft.serve()
	return ft
}

func (ft *fakeTarget) fail(lba uint64, f failure) {
	ft.failMu.Lock()
	ft.failLBA[lba] = f
	ft.failMu.Unlock()
}

func (ft *fakeTarget) serve() {
	buf := make([]byte, 65536)
	for {
		n, err := ft.port.ReadFrame(buf)
		if err != nil {
			return
		}
		ft.handle(append([]byte(nil), buf[:n]...))
	}
}

func (ft *fakeTarget) sectorsPerFrame() int { return aoe.SectorsPerFrame(ft.port.MTU()) }

func (ft *fakeTarget) handle(b []byte) {
	var f aoe.Frame
	if f.UnmarshalBinary(b) != nil || f.IsResponse() || ft.silent.Load() {
		return
	}
	if (f.Major != ft.shelf && f.Major != aoe.BroadcastMajor) || (f.Minor != ft.slot && f.Minor != aoe.BroadcastMinor) {
		return
	}
	switch f.Command {
	case aoe.CommandQueryConfig:
		ft.send(ft.configFrame(f.Src, f.Tag))
	case aoe.CommandATA:
		ft.requests.Add(1)
		if ft.hook != nil && !ft.hook(ft, b) {
			return
		}
		ft.send(ft.answerATA(&f))
	}
}

// configFrame builds a Query Config response (an announce when tag is 0
// and dst is broadcast).
func (ft *fakeTarget) configFrame(dst aoe.MAC, tag uint32) []byte {
	c := aoe.Config{BufferCount: ft.bufferCount, FirmwareVersion: 0x4019, SectorCount: uint8(ft.sectorsPerFrame()), Version: aoe.Version}
	arg, _ := c.MarshalBinary()
	f := aoe.Frame{Dst: dst, Src: ft.mac, Header: aoe.Header{Version: aoe.Version, Flags: aoe.FlagResponse,
		Major: ft.shelf, Minor: ft.slot, Command: aoe.CommandQueryConfig, Tag: tag}, Arg: arg}
	out, _ := f.MarshalBinary()
	return out
}

// announce sends an unsolicited Query Config response to broadcast.
func (ft *fakeTarget) announce() { ft.send(ft.configFrame(aoe.BroadcastMAC, 0)) }

func (ft *fakeTarget) send(frame []byte) {
	_ = ft.port.WriteFrame(frame)
	if ft.duplicate.Load() {
		_ = ft.port.WriteFrame(frame)
	}
	if ft.replay.Load() && frame[19] == byte(aoe.CommandATA) {
		if ft.lastAnswer != nil {
			_ = ft.port.WriteFrame(ft.lastAnswer)
		}
		ft.lastAnswer = frame
	}
}

// answerATA executes an ATA request and returns the response frame.
func (ft *fakeTarget) answerATA(req *aoe.Frame) []byte {
	var a aoe.ATA
	resp := aoe.Frame{Dst: req.Src, Src: ft.mac, Header: req.Header}
	resp.Flags |= aoe.FlagResponse
	resp.Major, resp.Minor = ft.shelf, ft.slot
	if a.UnmarshalBinary(req.Arg) != nil {
		resp.Flags |= aoe.FlagError
		resp.Error = aoe.ErrorBadArgument
		out, _ := resp.MarshalBinary()
		return out
	}
	lba := a.LBA & aoe.MaxLBA
	if !a.IsExtended() {
		lba = a.LBA & aoe.MaxLBA28
	}
	ft.failMu.Lock()
	fl, failing := ft.failLBA[lba]
	ft.failMu.Unlock()
	reply := aoe.ATA{Flags: a.Flags, SectorCount: 0, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}
	abort := func() { reply.CmdStatus, reply.FeatureError = aoe.ATAStatusDRDY|aoe.ATAStatusError, aoe.ATAErrorABRT }
	n := int(a.SectorCount) * aoe.SectorSize
	switch {
	case failing && fl.aoeErr != 0:
		resp.Flags |= aoe.FlagError
		resp.Error = fl.aoeErr
	case failing:
		reply.CmdStatus, reply.FeatureError = fl.status, fl.ataError
	case a.CmdStatus == aoe.ATAIdentifyDevice:
		reply.Data = ft.identify()
	case a.CmdStatus == aoe.ATAFlushCache, a.CmdStatus == aoe.ATAFlushCacheExt && ft.flushExt:
		ft.flushes.Add(1)
	case a.CmdStatus == aoe.ATAReadSectorsExt || a.CmdStatus == aoe.ATAReadSectors:
		if int(a.SectorCount) > ft.sectorsPerFrame() {
			resp.Flags |= aoe.FlagError
			resp.Error = aoe.ErrorBadArgument
			break
		}
		if (a.CmdStatus == aoe.ATAReadSectorsExt) != ft.lba48 || int64(lba)*aoe.SectorSize+int64(n) > ft.disk.Size() {
			reply.CmdStatus, reply.FeatureError = aoe.ATAStatusDRDY|aoe.ATAStatusError, aoe.ATAErrorIDNF
			break
		}
		ft.reads.Add(1)
		reply.Data = make([]byte, n)
		_, _ = ft.disk.ReadAt(reply.Data, int64(lba)*aoe.SectorSize) // in range: checked above
	case a.CmdStatus == aoe.ATAWriteSectorsExt || a.CmdStatus == aoe.ATAWriteSectors || (a.CmdStatus == aoe.ATAWriteFUAExt && ft.fua):
		if int(a.SectorCount) > ft.sectorsPerFrame() || len(a.Data) < n || !a.IsWrite() {
			resp.Flags |= aoe.FlagError
			resp.Error = aoe.ErrorBadArgument
			break
		}
		if (a.CmdStatus != aoe.ATAWriteSectors) != ft.lba48 || int64(lba)*aoe.SectorSize+int64(n) > ft.disk.Size() {
			reply.CmdStatus, reply.FeatureError = aoe.ATAStatusDRDY|aoe.ATAStatusError, aoe.ATAErrorIDNF
			break
		}
		ft.writes.Add(1)
		if a.CmdStatus == aoe.ATAWriteFUAExt {
			ft.fuaWrites.Add(1)
		}
		_, _ = ft.disk.WriteAt(a.Data[:n], int64(lba)*aoe.SectorSize) // in range: checked above
	default:
		abort()
	}
	arg, _ := reply.MarshalBinary()
	resp.Arg = arg
	out, _ := resp.MarshalBinary()
	return out
}

// identify returns IDENTIFY DEVICE data like vblade's, with the FUA and
// FLUSH CACHE EXT bits as configured.
func (ft *fakeTarget) identify() []byte {
	return identifyData(uint64(ft.disk.Size()/aoe.SectorSize), ft.lba48, ft.fua, ft.flushExt)
}

// identifyData builds IDENTIFY DEVICE data for a device of the given
// capacity and features.
func identifyData(sectors uint64, lba48, fua, flushExt bool) []byte {
	id := make([]byte, 512)
	put := func(w int, v uint16) { binary.LittleEndian.PutUint16(id[2*w:], v) }
	w83 := uint16(0x4000 | 1<<12)
	if lba48 {
		w83 |= 1 << 10
	}
	if flushExt {
		w83 |= 1 << 13
	}
	put(83, w83)
	w84 := uint16(0x4000)
	if fua {
		w84 |= 1 << 6
	}
	put(84, w84)
	put(87, w84)
	binary.LittleEndian.PutUint32(id[120:], uint32(min(sectors, aoe.MaxLBA28)))
	binary.LittleEndian.PutUint64(id[200:], sectors)
	model := "ironblade fake target                   "
	for k := 0; k < 40; k += 2 {
		id[54+k], id[54+k+1] = model[k+1], model[k]
	}
	return id
}

// rig is an initiator running until the test ends.
type rig struct {
	ini     *Initiator
	cancel  context.CancelFunc
	stopped chan struct{}
}

var initiatorMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x01}

func targetMAC(n byte) aoe.MAC { return aoe.MAC{0x02, 0, 0, 0, 1, n} }

// testLogger logs to stderr when IB_TEST_LOG is set, else nowhere.
func testLogger() *slog.Logger {
	if os.Getenv("IB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newRig starts an initiator on a new hub port, whose Filter is filter
// (nil keeps every frame). cfg.Links is filled in.
func newRig(tb testing.TB, hub *aoetest.Hub, mtu int, cfg Config, filter func([]byte) bool) *rig {
	port := hub.Port(initiatorMAC, mtu)
	port.Filter = filter
	cfg.Links = []aoe.Link{port}
	return startRig(tb, cfg)
}

// startRig starts an initiator with cfg and returns once Run is under way.
func startRig(tb testing.TB, cfg Config) *rig {
	r := &rig{stopped: make(chan struct{})}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	ini, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	r.ini = ini
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.stopped)
		if err := ini.Run(ctx); err != nil {
			tb.Errorf("Run: %v", err)
		}
	}()
	tb.Cleanup(r.stop)
	testenv.WaitFor(tb, 10*time.Second, "Run to start", func() bool {
		ini.mu.Lock()
		defer ini.mu.Unlock()
		return ini.running
	})
	return r
}

func (r *rig) stop() {
	r.cancel()
	<-r.stopped
}

// oneTarget is the common set-up: a fake target for e1.0 (MTU 1500)
// serving disk on a new hub, prepared by prepare (if not nil) before an
// initiator with fastConfig starts and finds it.
func oneTarget(tb testing.TB, disk *aoetest.MemDisk, prepare func(*fakeTarget)) (*rig, *fakeTarget, *Device) {
	tb.Helper()
	hub := aoetest.NewHub()
	ft := newFakeTarget(tb, hub, targetMAC(1), 1500, disk, 1, 0)
	if prepare != nil {
		prepare(ft)
	}
	r := newRig(tb, hub, 1500, fastConfig(), nil)
	return r, ft, r.device(tb, 1, 0)
}

// device waits for shelf.slot to be identified.
func (r *rig) device(tb testing.TB, shelf uint16, slot uint8) *Device {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := r.ini.Device(ctx, shelf, slot)
	if err != nil {
		tb.Fatalf("Device: %v", err)
	}
	return d
}

// exercise writes random data at random, sector-aligned places with qd
// workers at once (each in its own stripe, so no writes overlap while in
// flight), then reads the whole device back and compares SHA-512 sums with
// a shadow copy. It returns the shadow's sum.
func exercise(tb testing.TB, d *Device, qd, opsPerWorker, maxSectors int, seed uint64) [64]byte {
	tb.Helper()
	size := int(d.Size())
	shadow := make([]byte, size)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Start from what is on the device.
	if err := readAll(ctx, d, shadow); err != nil {
		tb.Fatalf("initial read: %v", err)
	}
	stripe := size / qd / aoe.SectorSize * aoe.SectorSize
	if stripe < maxSectors*aoe.SectorSize {
		tb.Fatalf("device of %d bytes too small for qd %d", size, qd)
	}
	var wg sync.WaitGroup
	errs := make(chan error, qd)
	for w := 0; w < qd; w++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			base := w * stripe
			buf := make([]byte, maxSectors*aoe.SectorSize)
			for op := 0; op < opsPerWorker; op++ {
				n := (1 + rng.IntN(maxSectors)) * aoe.SectorSize
				off := base + rng.IntN((stripe-n)/aoe.SectorSize+1)*aoe.SectorSize
				p := buf[:n]
				if rng.IntN(3) == 0 {
					if err := d.ReadAt(ctx, p, int64(off)); err != nil {
						errs <- err
						return
					}
					if string(p) != string(shadow[off:off+n]) {
						errs <- errors.New("read back different data")
						return
					}
					continue
				}
				for k := range p {
					p[k] = byte(rng.Uint32())
				}
				if err := d.WriteAt(ctx, p, int64(off), rng.IntN(8) == 0); err != nil {
					errs <- err
					return
				}
				copy(shadow[off:], p)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("I/O at qd %d: %v", qd, err)
	}
	if err := d.Flush(ctx); err != nil {
		tb.Fatalf("flush: %v", err)
	}
	got := make([]byte, size)
	if err := readAll(ctx, d, got); err != nil {
		tb.Fatalf("final read: %v", err)
	}
	want := sha512.Sum512(shadow)
	if sha512.Sum512(got) != want {
		st := d.Stats()
		tb.Fatalf("qd %d: device content differs from what was written (late writes %d, fenced %d, failovers %d)", qd, st.LateWrites, st.Fenced, st.Failovers)
	}
	return want
}

// readAll reads the device into p in 1 MiB requests, 4 at once.
func readAll(ctx context.Context, d *Device, p []byte) error {
	const chunk = 1 << 20
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	var first atomic.Value
	for off := 0; off < len(p); off += chunk {
		end := min(off+chunk, len(p))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := d.ReadAt(ctx, p[off:end], int64(off)); err != nil {
				first.CompareAndSwap(nil, err)
			}
		})
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

// lossy returns a Port.Filter that drops about percent of frames.
func lossy(percent int, seed uint64) func([]byte) bool {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 99))
	return func([]byte) bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.IntN(100) >= percent
	}
}
