package target

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
)

// The power-cut model: a disk with a volatile write cache under the real
// Server, many initiators writing through it, and power cuts at random
// points, after which what survived is compared with what the target
// acknowledged.
//
// A cut must see the same order of events as a real one: an
// acknowledgement the initiator got before the power went out is one whose
// sync had finished before. So the initiators and the disk share one
// clock, an atomic counter: an initiator reads it after each answer, and a
// cut reads it while it holds the disk's lock, which every change to the
// durable image holds too. An answer read before the cut's reading then
// followed a sync whose effect the cut's image holds.
//
// Most cuts are virtual: the durable image at that instant, taken while
// the run goes on. Nothing after a cut can change what it saw, so it is
// the image a real power failure at that instant would leave, and
// thousands of them cost little. Each round ends with a real cut: the disk
// stops persisting anything, and a new target serves the durable image to
// be read back, as a restarted node would.

// powerCutSeedEnv, when set to a number, is TestPowerCut's seed. The seed
// fixes every random choice (writers, sectors, cut points, delays), not
// the goroutines' interleaving, so a failure it reproduces may take a few
// runs to come back.
const powerCutSeedEnv = "IRONBLADE_POWERCUT_SEED"

const (
	// pcSectors is a round's disk size: small, so that writers overlap
	// and a cut copies little.
	pcSectors = 64
	// pcMaxCount is the most sectors a write carries: what a 1500-byte
	// MTU allows.
	pcMaxCount = 2
	// pcMaxCuts bounds the virtual cuts of one round.
	pcMaxCuts = 400
)

// volatileDisk is a Backend with a volatile write cache. A write goes to
// the cache, which reads see; only Sync copies it to the durable image,
// the one thing a power cut leaves. A sync covers what the cache held
// when it started (so not a write still in progress then), and persists
// it when it ends, after a random delay behind which writes gather.
//
// Every sector holds the number of the write that wrote it (sectorData),
// and the disk counts, per sector, the generations it was written:
// applied[s][g-1] is the write of generation g, durableGen[s] the
// generation the durable image holds. A write is durable when the durable
// generation of each of its sectors is at least its own.
type volatileDisk struct {
	clock *atomic.Int64 // shared with the initiators: orders answers and cuts

	mu         sync.Mutex
	cache      []byte   // every write that completed
	durable    []byte   // what survives a cut
	gen        []uint32 // per sector: generations written to the cache
	durableGen []uint32 // per sector: the generation durable holds
	applied    [][]uint32
	off        bool       // the power is cut: nothing becomes durable any more
	cuts       []cutPoint // the durable generations at each cut
	// lying makes the disk broken: a Sync persists only what the sync
	// before it covered, as a disk that acknowledges cache flushes early.
	lying bool
	prev  *staging // lying: what the last Sync covered

	rngMu sync.Mutex
	rng   *rand.Rand

	dead          atomic.Bool // off, for the initiators to stop
	durableWrites atomic.Int64
}

// staging is what a Sync covers: the cache and its generations at its
// start.
type staging struct {
	data []byte
	gen  []uint32
}

// cutPoint is a power cut: the clock reading inside it and the durable
// generation of each sector.
type cutPoint struct {
	at  int64
	gen []uint32
}

func newVolatileDisk(clock *atomic.Int64, seed uint64, lying bool) *volatileDisk {
	return &volatileDisk{
		clock:      clock,
		cache:      make([]byte, pcSectors*aoe.SectorSize),
		durable:    make([]byte, pcSectors*aoe.SectorSize),
		gen:        make([]uint32, pcSectors),
		durableGen: make([]uint32, pcSectors),
		applied:    make([][]uint32, pcSectors),
		lying:      lying,
		rng:        rand.New(rand.NewPCG(seed, 0)),
	}
}

func (d *volatileDisk) Size() int64 { return int64(len(d.cache)) }

func (d *volatileDisk) ReadAt(p []byte, off int64) (int, error) {
	if err := d.checkRange(p, off); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return copy(p, d.cache[off:]), nil
}

// WriteAt takes a random while before it lands in the cache: a sync that
// starts meanwhile need not cover it, and does not.
func (d *volatileDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := d.checkRange(p, off); err != nil {
		return 0, err
	}
	d.pause(4, 0)
	d.mu.Lock()
	d.apply(p, off, false)
	d.mu.Unlock()
	d.maybeCut(4)
	return len(p), nil
}

// Sync persists what the cache held when it started, once its random
// delay is over; a lying disk persists what the Sync before it covered.
func (d *volatileDisk) Sync() error {
	d.mu.Lock()
	st := &staging{data: bytes.Clone(d.cache), gen: slices.Clone(d.gen)}
	d.mu.Unlock()
	d.maybeCut(4) // amid the flush
	d.pause(2, 16)
	defer d.maybeCut(2) // flushed, not yet answered
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lying {
		st, d.prev = d.prev, st
	}
	if st != nil && !d.off {
		d.clock.Add(1) // the durable image changes: a cut from now on differs
		for s, g := range st.gen {
			// Syncs may overlap: a later one may have persisted newer
			// data already.
			if g > d.durableGen[s] {
				copy(d.durable[s*aoe.SectorSize:(s+1)*aoe.SectorSize], st.data[s*aoe.SectorSize:])
				d.durableGen[s] = g
			}
		}
	}
	return nil
}

// writeDurable writes p to the cache and the durable image at once, after
// a delay as long as a sync's: DurableWriter for the wrappers that are
// one.
func (d *volatileDisk) writeDurable(p []byte, off int64) (int, error) {
	if err := d.checkRange(p, off); err != nil {
		return 0, err
	}
	d.pause(2, 16)
	d.mu.Lock()
	d.apply(p, off, true)
	d.mu.Unlock()
	d.durableWrites.Add(1)
	d.maybeCut(2)
	return len(p), nil
}

// apply writes p to the cache, and to the durable image if durable and the
// power is on. The caller holds mu.
func (d *volatileDisk) apply(p []byte, off int64, durable bool) {
	copy(d.cache[off:], p)
	first := int(off / aoe.SectorSize)
	for k := range len(p) / aoe.SectorSize {
		s := first + k
		d.gen[s]++
		d.applied[s] = append(d.applied[s], binary.LittleEndian.Uint32(p[k*aoe.SectorSize:]))
		if durable && !d.off {
			d.clock.Add(1)
			copy(d.durable[s*aoe.SectorSize:(s+1)*aoe.SectorSize], p[k*aoe.SectorSize:])
			d.durableGen[s] = d.gen[s]
		}
	}
}

// checkRange refuses I/O that is not whole sectors within the disk: the
// target never asks for any.
func (d *volatileDisk) checkRange(p []byte, off int64) error {
	if off < 0 || off%aoe.SectorSize != 0 || len(p)%aoe.SectorSize != 0 || off+int64(len(p)) > d.Size() {
		return fmt.Errorf("volatile disk: I/O of %d bytes at %d", len(p), off)
	}
	return nil
}

// pause yields to the other goroutines for a random while: one time in
// yieldOf up to 63 times, and one time in sleepOf (if not 0) for a sleep
// besides. Sleeps are coarse here, so most delays only yield.
func (d *volatileDisk) pause(yieldOf, sleepOf int) {
	d.rngMu.Lock()
	yields := 0
	if d.rng.IntN(yieldOf) == 0 {
		yields = d.rng.IntN(64)
	}
	sleep := sleepOf > 0 && d.rng.IntN(sleepOf) == 0
	d.rngMu.Unlock()
	for range yields {
		runtime.Gosched()
	}
	if sleep {
		// A slow flush, for writes to gather behind: the delay is the
		// point, so the sleep stays.
		time.Sleep(50 * time.Microsecond)
	}
}

// maybeCut cuts the power (virtually) one time in of: so cuts fall
// inside the backend's calls too, where the target waits for them.
func (d *volatileDisk) maybeCut(of int) {
	d.rngMu.Lock()
	now := d.rng.IntN(of) == 0
	d.rngMu.Unlock()
	if now {
		d.cut(false)
	}
}

// cut records a power cut now. A final one turns the power off: nothing
// becomes durable after it, and no cut follows. A virtual one is skipped
// when the clock has not moved since the last cut (no request sent or
// answered, nor the durable image changed: it would check the same
// state), or beyond pcMaxCuts.
func (d *volatileDisk) cut(final bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off {
		return
	}
	if n := len(d.cuts); !final && (n >= pcMaxCuts || n > 0 && d.clock.Load() == d.cuts[n-1].at) {
		return
	}
	d.cuts = append(d.cuts, cutPoint{at: d.clock.Add(1), gen: slices.Clone(d.durableGen)})
	if final {
		d.off = true
		d.dead.Store(true)
	}
}

// cachedVolatile is a volatileDisk that is a NonblockingBackend: the
// receive loop does its I/O, but for the blocks blocks says (if set) would
// wait for the device.
type cachedVolatile struct {
	*volatileDisk
	blocks func(off int64) bool
}

func (d *cachedVolatile) TryReadAt(p []byte, off int64) (int, error) {
	return unlessBlocked(d.blocks, d.ReadAt, p, off)
}

func (d *cachedVolatile) TryWriteAt(p []byte, off int64) (int, error) {
	return unlessBlocked(d.blocks, d.WriteAt, p, off)
}

// durableVolatile is a cachedVolatile that is also a DurableWriter, as
// FileBackend is both: lone sync-mode writes skip the group commit.
type durableVolatile struct{ *cachedVolatile }

func (d *durableVolatile) WriteAtDurable(p []byte, off int64) (int, error) {
	return d.writeDurable(p, off)
}

// sectorData is the data of write id (numbered from 1) to count sectors
// from lba: each sector names the write and itself, and the rest follows
// from both, so that a torn or misplaced sector shows.
func sectorData(id, lba uint32, count int) []byte {
	b := make([]byte, count*aoe.SectorSize)
	for k := range count {
		fillSector(b[k*aoe.SectorSize:(k+1)*aoe.SectorSize], id, lba+uint32(k))
	}
	return b
}

func fillSector(b []byte, id, lba uint32) {
	binary.LittleEndian.PutUint32(b, id)
	binary.LittleEndian.PutUint32(b[4:], lba)
	for i := 8; i < len(b); i++ {
		b[i] = byte(id*31 + lba*7 + uint32(i))
	}
}

// pcOp is one request of a round: a write or a FLUSH CACHE EXT, with the
// clock read before it was sent and after its answer (0: none).
type pcOp struct {
	flush     bool
	lba       uint32
	count     int
	send, ack int64
	// gen is the generation the write made in each of its sectors,
	// filled in by checkCuts from the disk's log.
	gen [pcMaxCount]uint32
}

// cutVerdict is what checkCuts found: of its cuts, how many lost a write
// acknowledged before them (lost; none allowed in sync mode), and how many
// lost a write acknowledged before a FLUSH was sent that was acknowledged
// before them (flushLost; never allowed), with the first of each.
type cutVerdict struct {
	cuts, lost, flushLost     int
	firstLost, firstFlushLost string
}

// checkCuts checks every cut against the requests. With the clock, per
// cut, the writes acknowledged before it, and those acknowledged before a
// FLUSH was sent that was acknowledged before it, each give the
// generation the durable image must have reached in their sectors. An
// error says the disk's log and the requests disagree.
func checkCuts(ops []pcOp, applied [][]uint32, cuts []cutPoint) (cutVerdict, error) {
	for s, ids := range applied {
		for g, id := range ids {
			if id == 0 || int(id) > len(ops) {
				return cutVerdict{}, fmt.Errorf("sector %d generation %d: unknown write %d", s, g+1, id)
			}
			op := &ops[id-1]
			k := s - int(op.lba)
			if op.flush || k < 0 || k >= op.count || op.gen[k] != 0 {
				return cutVerdict{}, fmt.Errorf("sector %d generation %d: write %d does not cover it, or twice", s, g+1, id)
			}
			op.gen[k] = uint32(g + 1)
		}
	}
	var writes, flushes []int // acknowledged, by acknowledgement
	for i := range ops {
		op := &ops[i]
		switch {
		case op.ack == 0:
		case op.flush:
			flushes = append(flushes, i)
		default:
			for k := range op.count {
				if op.gen[k] == 0 {
					return cutVerdict{}, fmt.Errorf("write %d to sector %d was acknowledged but never written", i+1, int(op.lba)+k)
				}
			}
			writes = append(writes, i)
		}
	}
	byAck := func(a, b int) int { return int(ops[a].ack - ops[b].ack) }
	slices.SortFunc(writes, byAck)
	slices.SortFunc(flushes, byAck)
	cuts = slices.SortedFunc(slices.Values(cuts), func(a, b cutPoint) int { return int(a.at - b.at) })

	// need and needFlush: per sector, the generation required and the
	// write that requires it; horizon: the latest send of a FLUSH
	// acknowledged before the cut.
	var need, needFlush [pcSectors]uint32
	var needBy, needFlushBy [pcSectors]int
	raise := func(need *[pcSectors]uint32, by *[pcSectors]int, i int) {
		op := &ops[i]
		for k := range op.count {
			if s := int(op.lba) + k; op.gen[k] > need[s] {
				need[s], by[s] = op.gen[k], i
			}
		}
	}
	var horizon int64
	horizonBy := -1
	wi, fi, hi := 0, 0, 0
	v := cutVerdict{cuts: len(cuts)}
	for _, c := range cuts {
		for ; wi < len(writes) && ops[writes[wi]].ack < c.at; wi++ {
			raise(&need, &needBy, writes[wi])
		}
		for ; fi < len(flushes) && ops[flushes[fi]].ack < c.at; fi++ {
			if f := ops[flushes[fi]]; f.send > horizon {
				horizon, horizonBy = f.send, flushes[fi]
			}
		}
		for ; hi < len(writes) && ops[writes[hi]].ack < horizon; hi++ {
			raise(&needFlush, &needFlushBy, writes[hi])
		}
		lost, flushLost := -1, -1
		for s, g := range c.gen {
			if g < need[s] && lost < 0 {
				lost = s
			}
			if g < needFlush[s] && flushLost < 0 {
				flushLost = s
			}
		}
		if lost >= 0 {
			if v.lost++; v.firstLost == "" {
				v.firstLost = describeLoss(ops, c, lost, needBy[lost], need[lost])
			}
		}
		if flushLost >= 0 {
			if v.flushLost++; v.firstFlushLost == "" {
				f := ops[horizonBy]
				v.firstFlushLost = describeLoss(ops, c, flushLost, needFlushBy[flushLost], needFlush[flushLost]) +
					fmt.Sprintf(", before FLUSH %d (sent t=%d, acknowledged t=%d)", horizonBy+1, f.send, f.ack)
			}
		}
	}
	return v, nil
}

func describeLoss(ops []pcOp, c cutPoint, s, by int, gen uint32) string {
	op := ops[by]
	return fmt.Sprintf("cut at t=%d: sector %d durable at generation %d, but write %d (sent t=%d, acknowledged t=%d) made generation %d",
		c.at, s, c.gen[s], by+1, op.send, op.ack, gen)
}

// pcVariant is one way to run the model: the backend's interfaces, the
// link, the target's mode, whether initiators send FLUSH, whether the
// disk is broken, and which losses must (or must not) show.
type pcVariant struct {
	name       string
	wrap       func(*volatileDisk) Backend
	batch      bool // a BatchLink: lone requests may take the durable path
	syncWrites bool
	flushes    bool
	lying      bool
	// wantLost: some cut must lose an acknowledged write; else none
	// may. wantFlushLost: the same for writes a FLUSH covered.
	wantLost, wantFlushLost bool
	// wantDurable: some lone writes must take the durable path.
	wantDurable bool
}

// The ways a volatileDisk is served: all I/O through the workers, all in
// the receive loop, some of each, and some of each with lone sync-mode
// writes made durable in one call (as FileBackend is served).
func pcWorkers(d *volatileDisk) Backend { return d }
func pcInline(d *volatileDisk) Backend  { return &cachedVolatile{volatileDisk: d} }
func pcMixed(d *volatileDisk) Backend {
	return &cachedVolatile{volatileDisk: d, blocks: everyOtherBlock}
}
func pcDurable(d *volatileDisk) Backend {
	return &durableVolatile{&cachedVolatile{volatileDisk: d, blocks: everyOtherBlock}}
}

// pcTotals sums a variant's rounds.
type pcTotals struct {
	rounds, cuts, lost, flushLost int
	writes, flushes               int
	syncs, syncedWrites, durable  int64
}

// TestPowerCut drives the target's group commit with many writers over a
// disk with a volatile cache and checks the durable image at thousands of
// power cuts: with SyncWrites no acknowledged write is ever lost, on every
// way a write can go (workers, receive loop, both, lone durable writes);
// in both modes an acknowledged FLUSH CACHE EXT covers every write
// acknowledged before it was sent. The negative controls show the check
// can fail: without SyncWrites cuts do lose acknowledged writes, and a
// disk that acknowledges its flushes early is caught in both modes.
func TestPowerCut(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv(powerCutSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", powerCutSeedEnv, s, err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: rerun with %s=%d", seed, powerCutSeedEnv, seed)
		}
	})
	rounds := 24
	if testing.Short() || raceEnabled {
		rounds = 8
	}
	variants := []pcVariant{
		{name: "sync/workers", wrap: pcWorkers, syncWrites: true, flushes: true},
		{name: "sync/inline", wrap: pcInline, batch: true, syncWrites: true, flushes: true},
		{name: "sync/mixed", wrap: pcMixed, syncWrites: true, flushes: true},
		{name: "sync/durable", wrap: pcDurable, batch: true, syncWrites: true, flushes: true, wantDurable: true},
		{name: "async/workers", wrap: pcWorkers, flushes: true, wantLost: true},
		{name: "async/inline", wrap: pcInline, batch: true, flushes: true, wantLost: true},
		{name: "async/durable", wrap: pcDurable, batch: true, flushes: true, wantLost: true},
		{name: "async/noflush", wrap: pcMixed, wantLost: true},
		{name: "broken/sync", wrap: pcWorkers, syncWrites: true, lying: true, wantLost: true},
		{name: "broken/async", wrap: pcInline, batch: true, flushes: true, lying: true, wantLost: true, wantFlushLost: true},
	}
	cuts := 0
	start := time.Now()
	for vi, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(vi)))
			var tot pcTotals
			for round := range rounds {
				powerCutRound(t, v, round, rng.Uint64(), &tot)
				if t.Failed() {
					return
				}
			}
			cuts += tot.cuts
			t.Logf("%d rounds, %d cuts: %d lost acknowledged writes, %d lost flushed writes; %d writes and %d flushes acknowledged; %d syncs covering %d writes, %d durable writes",
				tot.rounds, tot.cuts, tot.lost, tot.flushLost, tot.writes, tot.flushes, tot.syncs, tot.syncedWrites, tot.durable)
			// The negative controls: where writes can be lost, the
			// check must have seen it.
			if v.wantLost && tot.lost == 0 {
				t.Errorf("no cut of %d lost an acknowledged write: the check cannot tell a lost write", tot.cuts)
			}
			if v.wantFlushLost && tot.flushLost == 0 {
				t.Errorf("no cut of %d lost a write a FLUSH covered: the check cannot tell a broken flush", tot.cuts)
			}
			if v.wantDurable && tot.durable == 0 {
				t.Errorf("no lone write took the durable path")
			}
		})
	}
	t.Logf("%d power cuts in %v", cuts, time.Since(start).Round(time.Millisecond))
}

// powerCutRound runs one round of v: a fresh target and disk, writers
// that each send their requests one after the other, virtual cuts right
// after about a third of the answers, inside the disk's calls and at
// random moments, and a real cut after a random number of answers. It
// checks the cuts, reads the survivor back, and adds the round to tot.
func powerCutRound(t *testing.T, v pcVariant, round int, seed uint64, tot *pcTotals) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	// Mostly many writers; every fourth round one to three, so that
	// lone writes come (the durable path).
	writers := 16 + rng.IntN(33)
	if round%4 == 1 {
		writers = 1 + round/4%3
	}
	perWriter := 12
	if writers < 4 {
		perWriter = 48
	}
	total := writers * perWriter
	cutAfter := int64(1 + rng.IntN(total))

	clock := &atomic.Int64{}
	disk := newVolatileDisk(clock, rng.Uint64(), v.lying)
	opts := []harnessOption{withConfig(func(c *Config) {
		c.Backend = v.wrap(disk)
		c.SyncWrites = v.syncWrites
	})}
	if v.batch {
		opts = append(opts, withLink(func(l aoe.Link) aoe.Link { return newBatchPort(l.(*aoetest.Port)) }))
	}
	h := newHarness(t, opts...)
	c := h.client
	ops := make([]pcOp, total)
	var acks atomic.Int64
	stop := make(chan struct{})
	var wg, cutter sync.WaitGroup
	cutter.Go(func() {
		r := rand.New(rand.NewPCG(seed, 1))
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Sleeps are coarse: about a millisecond.
			time.Sleep(time.Duration(r.IntN(100)) * time.Microsecond)
			disk.cut(false)
		}
	})
	for w := range writers {
		r := rand.New(rand.NewPCG(seed, uint64(w)+2))
		wg.Go(func() {
			for i := range perWriter {
				if disk.dead.Load() {
					// The power is off: a real initiator would get
					// no more answers.
					return
				}
				id := w*perWriter + i + 1
				op := &ops[id-1]
				var f *aoe.Frame
				if v.flushes && r.IntN(6) == 0 {
					op.flush = true
					f = c.request(aoe.CommandATA, ataArg(t, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}))
				} else {
					op.count = 1 + r.IntN(pcMaxCount)
					op.lba = uint32(r.IntN(pcSectors - op.count + 1))
					f = writeReq(c, t, uint64(op.lba), sectorData(uint32(id), op.lba, op.count))
				}
				op.send = clock.Add(1)
				resp := awaitResponse(t, c.send(t, f))
				ack := clock.Add(1)
				if a := decodeATA(t, resp); a.CmdStatus != aoe.ATAStatusDRDY {
					t.Errorf("round %d: request %d (flush %v): status %#x", round, id, op.flush, a.CmdStatus)
					return
				}
				op.ack = ack
				// Right after an answer is where a lost write
				// shows best.
				if acks.Add(1) == cutAfter {
					disk.cut(true)
				} else if r.IntN(3) == 0 {
					disk.cut(false)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	cutter.Wait()
	disk.cut(true) // if the writers finished first
	h.stop()
	if t.Failed() {
		return
	}

	disk.mu.Lock()
	applied, cuts := disk.applied, disk.cuts
	image, gens := bytes.Clone(disk.durable), slices.Clone(disk.durableGen)
	disk.mu.Unlock()
	verdict, err := checkCuts(ops, applied, cuts)
	if err != nil {
		t.Fatalf("round %d (seed %d): %v", round, seed, err)
	}
	if !v.wantLost && verdict.lost > 0 {
		t.Errorf("round %d (seed %d, %d writers): %d of %d cuts lost acknowledged writes; the first: %s",
			round, seed, writers, verdict.lost, verdict.cuts, verdict.firstLost)
	}
	if !v.wantFlushLost && verdict.flushLost > 0 {
		t.Errorf("round %d (seed %d, %d writers): %d of %d cuts lost writes a FLUSH covered; the first: %s",
			round, seed, writers, verdict.flushLost, verdict.cuts, verdict.firstFlushLost)
	}
	checkSurvivor(t, image, gens, applied)

	st := h.srv.Stats()
	tot.rounds++
	tot.cuts += verdict.cuts
	tot.lost += verdict.lost
	tot.flushLost += verdict.flushLost
	for _, op := range ops {
		switch {
		case op.ack == 0:
		case op.flush:
			tot.flushes++
		default:
			tot.writes++
		}
	}
	tot.syncs += int64(st.Syncs)
	tot.syncedWrites += int64(st.SyncedWrites)
	tot.durable += disk.durableWrites.Load()
}

// checkSurvivor serves the durable image left by the last cut from a new
// target, as a restarted node would, and reads it all back: each sector
// must hold, whole, the write of the generation the model says survived.
func checkSurvivor(t *testing.T, image []byte, gens []uint32, applied [][]uint32) {
	t.Helper()
	disk := newMemDisk(pcSectors)
	copy(disk.data, image)
	h := newHarness(t, withConfig(func(c *Config) { c.Backend = disk }))
	want := make([]byte, aoe.SectorSize)
	for lba := 0; lba < pcSectors; lba += pcMaxCount {
		resp := h.client.roundTrip(t, readReq(h.client, t, uint64(lba), pcMaxCount))
		a := decodeATA(t, resp)
		if a.CmdStatus != aoe.ATAStatusDRDY || len(a.Data) < pcMaxCount*aoe.SectorSize {
			t.Fatalf("survivor: read at %d: status %#x, %d bytes", lba, a.CmdStatus, len(a.Data))
		}
		for k := range pcMaxCount {
			s := lba + k
			clear(want)
			if g := gens[s]; g > 0 {
				fillSector(want, applied[s][g-1], uint32(s))
			}
			if got := a.Data[k*aoe.SectorSize : (k+1)*aoe.SectorSize]; !bytes.Equal(got, want) {
				t.Errorf("survivor: sector %d holds write %d, want generation %d (write %d)",
					s, binary.LittleEndian.Uint32(got), gens[s], binary.LittleEndian.Uint32(want))
			}
		}
	}
	h.stop()
}
