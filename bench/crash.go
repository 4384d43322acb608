package bench

// The crash-consistency proof: CrashWrite writes a self-describing pattern
// to an AoE device and journals every write the moment it is acknowledged;
// the target is then fenced (killed with its page cache, by a harness), and
// CrashCheck reads every journaled block back from the survivor and tells
// apart the writes that are there, the ones that were lost and the ones that
// came back torn. The journal also records an acknowledged FLUSH, so the
// check can hold the writes before it to a stricter standard than the
// writes after it.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/initiator"
)

// Layout of a sector of the crash pattern, little endian. Every sector
// carries the whole header, so that a sector found anywhere says which
// write put it there, and a torn block is told from a lost one sector by
// sector.
const (
	crashMagic      = "ibCRASH1" // [0:8]
	crashRunAt      = 8          // [8:16] the write run's random id
	crashBlockAt    = 16         // [16:24] the block's index in the run
	crashOffsetAt   = 24         // [24:32] the block's byte offset on the device
	crashSectorAt   = 32         // [32:36] the sector's index in its block
	crashSectorsAt  = 36         // [36:40] sectors per block
	crashSumAt      = 40         // [40:44] CRC-32C of the sector without these 4 bytes
	crashPadAt      = 44         // [44:48] zero
	crashFillerAt   = 48         // [48:512] pseudo-random filler from run, block and sector
	crashHeaderSize = crashFillerAt
)

// crashCRC is the Castagnoli table, which the CPU computes in hardware on
// most machines; it is never written after initialization.
var crashCRC = crc32.MakeTable(crc32.Castagnoli)

// CrashPattern is the content CrashWrite writes and CrashCheck expects: in
// each 512-byte sector of a block, a header (a magic, the run id, the
// block's index and byte offset, the sector's index, the sectors per block
// and a checksum) and filler derived from the run id, the block and the
// sector. A block read back is therefore intact only if every byte of it is
// what this run wrote there; zeros or another run's sectors are old data
// (the write was lost); anything else (a mix, a sector failing its checksum,
// a sector of this run written for another place) is torn.
type CrashPattern struct {
	// Run identifies one write run; CrashWrite picks it at random, so
	// that the data of an earlier run on the same blocks reads as old.
	Run uint64
}

// Fill writes into b the pattern of block number block at byte offset off
// of the device; len(b) must be a multiple of aoe.SectorSize.
func (p CrashPattern) Fill(b []byte, block uint64, off int64) {
	n := uint32(len(b) / aoe.SectorSize)
	for i := uint32(0); i < n; i++ {
		s := b[int(i)*aoe.SectorSize : int(i+1)*aoe.SectorSize]
		copy(s, crashMagic)
		binary.LittleEndian.PutUint64(s[crashRunAt:], p.Run)
		binary.LittleEndian.PutUint64(s[crashBlockAt:], block)
		binary.LittleEndian.PutUint64(s[crashOffsetAt:], uint64(off))
		binary.LittleEndian.PutUint32(s[crashSectorAt:], i)
		binary.LittleEndian.PutUint32(s[crashSectorsAt:], n)
		binary.LittleEndian.PutUint32(s[crashPadAt:], 0)
		state := crashSeed(p.Run, block, i)
		for j := crashFillerAt; j < aoe.SectorSize; j += 8 {
			var x uint64
			state, x = crashNext(state)
			binary.LittleEndian.PutUint64(s[j:], x)
		}
		binary.LittleEndian.PutUint32(s[crashSumAt:], crashSum(s))
	}
}

// CrashState is what became of one acknowledged write, as read back.
type CrashState uint8

// Crash states of a block.
const (
	// CrashIntact blocks hold exactly what the run wrote.
	CrashIntact CrashState = iota
	// CrashLost blocks hold only old data: zeros, another run's sectors or
	// data that is no pattern at all; none of the write is there.
	CrashLost
	// CrashTorn blocks mix this write's sectors with old ones, or hold a
	// sector that fails its checksum, or one of this run's sectors that
	// belongs elsewhere (a misdirected write).
	CrashTorn
)

// String returns the state's name: intact, lost or torn.
func (s CrashState) String() string {
	switch s {
	case CrashIntact:
		return "intact"
	case CrashLost:
		return "lost"
	case CrashTorn:
		return "torn"
	}
	return "CrashState(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText makes a CrashState readable in JSON.
func (s CrashState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a CrashState's name, so that reports decode from
// JSON.
func (s *CrashState) UnmarshalText(b []byte) error {
	for c := CrashIntact; c <= CrashTorn; c++ {
		if string(b) == c.String() {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("bench: crash state %q: want intact, lost or torn", b)
}

// CrashSectors counts the sectors of a block read back by what they hold.
type CrashSectors struct {
	// Intact sectors are this write's, unchanged.
	Intact int `json:"intact"`
	// Zero sectors hold only zeros; OtherRun sectors are intact sectors
	// of another run; Foreign sectors hold data that is no pattern and not
	// zeros (what the device held before any run).
	Zero     int `json:"zero"`
	OtherRun int `json:"other_run"`
	Foreign  int `json:"foreign"`
	// Corrupt sectors carry the magic but fail their checksum or filler;
	// Misplaced ones are intact sectors of this run written for another
	// block or sector.
	Corrupt   int `json:"corrupt"`
	Misplaced int `json:"misplaced"`
}

// CrashBlock is the classification of one block read back.
type CrashBlock struct {
	State   CrashState   `json:"state"`
	Sectors CrashSectors `json:"sectors"`
}

// Classify reads b as block number block at byte offset off of the
// device, as Fill would have written it, and says whether it is intact,
// lost or torn. It is intact exactly when b equals what Fill writes.
func (p CrashPattern) Classify(b []byte, block uint64, off int64) CrashBlock {
	var c CrashBlock
	n := uint32(len(b) / aoe.SectorSize)
	for i := uint32(0); i < n; i++ {
		s := b[int(i)*aoe.SectorSize : int(i+1)*aoe.SectorSize]
		switch p.classifySector(s, block, off, i, n) {
		case sectorIntact:
			c.Sectors.Intact++
		case sectorZero:
			c.Sectors.Zero++
		case sectorOtherRun:
			c.Sectors.OtherRun++
		case sectorForeign:
			c.Sectors.Foreign++
		case sectorCorrupt:
			c.Sectors.Corrupt++
		case sectorMisplaced:
			c.Sectors.Misplaced++
		}
	}
	switch s := c.Sectors; {
	case s.Intact == int(n):
		c.State = CrashIntact
	case s.Intact > 0 || s.Corrupt > 0 || s.Misplaced > 0:
		c.State = CrashTorn
	default:
		c.State = CrashLost
	}
	return c
}

// sectorState is what one sector read back holds.
type sectorState uint8

const (
	sectorIntact sectorState = iota
	sectorZero
	sectorOtherRun
	sectorForeign
	sectorCorrupt
	sectorMisplaced
)

// classifySector classifies sector s, expected to be sector idx of n of
// block at off.
func (p CrashPattern) classifySector(s []byte, block uint64, off int64, idx, n uint32) sectorState {
	if string(s[:len(crashMagic)]) != crashMagic {
		if isZero(s) {
			return sectorZero
		}
		return sectorForeign
	}
	run := binary.LittleEndian.Uint64(s[crashRunAt:])
	hdrBlock := binary.LittleEndian.Uint64(s[crashBlockAt:])
	hdrIdx := binary.LittleEndian.Uint32(s[crashSectorAt:])
	if binary.LittleEndian.Uint32(s[crashSumAt:]) != crashSum(s) ||
		binary.LittleEndian.Uint32(s[crashPadAt:]) != 0 || !crashFillerMatches(s, run, hdrBlock, hdrIdx) {
		return sectorCorrupt
	}
	switch {
	case run != p.Run:
		return sectorOtherRun
	case hdrBlock != block || hdrIdx != idx || binary.LittleEndian.Uint64(s[crashOffsetAt:]) != uint64(off) ||
		binary.LittleEndian.Uint32(s[crashSectorsAt:]) != n:
		return sectorMisplaced
	}
	return sectorIntact
}

// crashSum is the checksum of a pattern sector: CRC-32C of everything but
// the checksum field.
func crashSum(s []byte) uint32 {
	return crc32.Update(crc32.Update(0, crashCRC, s[:crashSumAt]), crashCRC, s[crashSumAt+4:aoe.SectorSize])
}

// crashFillerMatches reports whether the filler of s is the one of run,
// block and sector.
func crashFillerMatches(s []byte, run, block uint64, sector uint32) bool {
	state := crashSeed(run, block, sector)
	for j := crashFillerAt; j < aoe.SectorSize; j += 8 {
		var x uint64
		state, x = crashNext(state)
		if binary.LittleEndian.Uint64(s[j:]) != x {
			return false
		}
	}
	return true
}

// crashSeed derives the filler's generator state from run, block and
// sector, so that every sector of every run has filler of its own.
func crashSeed(run, block uint64, sector uint32) uint64 {
	return mix64(run ^ mix64(block^mix64(uint64(sector)^0x6a09e667f3bcc909)))
}

// crashNext steps a splitmix64 generator: a fast generator whose output is
// well spread, enough for filler that must merely differ between sectors.
func crashNext(state uint64) (next, out uint64) {
	state += 0x9e3779b97f4a7c15
	return state, mix64(state)
}

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// isZero reports whether b holds only zeros.
func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// CrashDevice is what the crash test needs of a block device;
// *initiator.Device has it.
type CrashDevice interface {
	Name() string
	Size() int64
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	ReadAt(ctx context.Context, p []byte, off int64) error
	Flush(ctx context.Context) error
}

// OpenCrashDevice runs an initiator with cfg (its Links included, which it
// then owns) and waits up to wait for the device at shelf.slot to be found
// and identified. stop ends the initiator and waits until its links are
// closed; it must be called once the device is no longer used.
func OpenCrashDevice(ctx context.Context, cfg initiator.Config, shelf uint16, slot uint8, wait time.Duration) (dev *initiator.Device, stop func(), err error) {
	ini, err := initiator.New(cfg)
	if err != nil {
		for _, l := range cfg.Links {
			l.Close()
		}
		return nil, nil, fmt.Errorf("bench: crash: %w", err)
	}
	// The initiator outlives ctx so that stop, not a signal, ends it: the
	// I/O in flight then fails with ErrClosed rather than hanging.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ini.Run(runCtx); err != nil {
			cmp.Or(cfg.Logger, slog.Default()).Error("initiator stopped", "err", err)
		}
	}()
	stop = func() { cancel(); <-done }
	waitCtx, waitCancel := context.WithTimeout(ctx, wait)
	defer waitCancel()
	if dev, err = ini.Device(waitCtx, shelf, slot); err != nil {
		stop()
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, fmt.Errorf("bench: crash: no AoE target answered for e%d.%d within %v", shelf, slot, wait)
		}
		return nil, nil, fmt.Errorf("bench: crash: e%d.%d: %w", shelf, slot, err)
	}
	return dev, stop, nil
}

// CrashWriteOptions says what CrashWrite writes.
type CrashWriteOptions struct {
	// Offset and Size are the byte range written; Offset a multiple of
	// 512, Size of BlockSize. Size 0 means 32 MiB.
	Offset, Size int64
	// BlockSize is the size of each write, a multiple of 512 up to
	// MaxCrashBlock. 0 means 64 KiB.
	BlockSize int
	// QueueDepth is how many writes are in flight; 0 means 16.
	QueueDepth int
	// FlushAt, from 1 to 99, is the percentage of the blocks written and
	// acknowledged before the FLUSH; 0 sends none.
	FlushAt int
	// Run is the run id; 0 picks one at random.
	Run uint64
}

// MaxCrashBlock is the largest CrashWriteOptions.BlockSize.
const MaxCrashBlock = 16 << 20

// MaxCrashQueueDepth is the largest queue depth of CrashWrite and
// CrashCheck.
const MaxCrashQueueDepth = 1024

// withDefaults returns o with its zero fields set to the defaults.
func (o CrashWriteOptions) withDefaults() CrashWriteOptions {
	o.Size = cmp.Or(o.Size, 32<<20)
	o.BlockSize = cmp.Or(o.BlockSize, 64<<10)
	o.QueueDepth = cmp.Or(o.QueueDepth, 16)
	for o.Run == 0 {
		o.Run = rand.Uint64()
	}
	return o
}

// flushBlocks is how many blocks are written and acknowledged before the
// FLUSH: 0 for none.
func (o CrashWriteOptions) flushBlocks(blocks int) int {
	if o.FlushAt == 0 {
		return 0
	}
	return int(int64(blocks) * int64(o.FlushAt) / 100)
}

// Check reports whether CrashWrite can run with o (zero fields taking
// their defaults) on a device of size bytes; size 0 checks o alone, as a
// command line does before it finds the device.
func (o CrashWriteOptions) Check(size int64) error {
	o = o.withDefaults()
	switch {
	case o.BlockSize <= 0 || o.BlockSize%aoe.SectorSize != 0 || o.BlockSize > MaxCrashBlock:
		return fmt.Errorf("block size %d: want a multiple of %d up to %d", o.BlockSize, aoe.SectorSize, MaxCrashBlock)
	case o.Offset < 0 || o.Offset%aoe.SectorSize != 0:
		return fmt.Errorf("offset %d: want a multiple of %d", o.Offset, aoe.SectorSize)
	case o.Size <= 0 || o.Size%int64(o.BlockSize) != 0:
		return fmt.Errorf("size %d: want a positive multiple of the block size %d", o.Size, o.BlockSize)
	case o.QueueDepth < 1 || o.QueueDepth > MaxCrashQueueDepth:
		return fmt.Errorf("queue depth %d: want 1 to %d", o.QueueDepth, MaxCrashQueueDepth)
	case o.FlushAt < 0 || o.FlushAt > 99:
		return fmt.Errorf("flush at %d%%: want 0 (no flush) to 99", o.FlushAt)
	case size > 0 && (o.Offset > size || o.Size > size-o.Offset):
		return fmt.Errorf("%d bytes at %d do not fit in the device's %d bytes", o.Size, o.Offset, size)
	}
	blocks := o.Size / int64(o.BlockSize)
	if blocks > math.MaxInt32 {
		return fmt.Errorf("%d blocks: too many", blocks)
	}
	if n := o.flushBlocks(int(blocks)); o.FlushAt > 0 && (n < 1 || n >= int(blocks)) {
		return fmt.Errorf("flush at %d%% of %d blocks: leaves no block on one side of the FLUSH", o.FlushAt, blocks)
	}
	return nil
}

// CrashWriteResult reports a CrashWrite run.
type CrashWriteResult struct {
	Run    uint64
	Device string
	// Blocks is how many blocks the run was to write, Acked how many were
	// acknowledged (and journaled), Flushed how many of those a FLUSH
	// acknowledged later covers.
	Blocks, Acked, Flushed int
	// Bytes is the size of the acknowledged writes.
	Bytes int64
	// Elapsed is the whole run's time, FLUSH included; FlushTime the
	// FLUSH's.
	Elapsed, FlushTime time.Duration
}

// MBps reports the throughput of the acknowledged writes, in 10^6 bytes
// per second.
func (r *CrashWriteResult) MBps() float64 { return megabytesPerSecond(r.Bytes, r.Elapsed) }

// CrashWrite writes the crash pattern of a new run over a range of dev, in
// blocks of opts.BlockSize in a random order (a permutation drawn from the
// run id, so that whatever order a page cache writes back in, lost writes
// are scattered), opts.QueueDepth at once, and appends each write to
// journal the moment it is acknowledged. With opts.FlushAt, once that
// share of the blocks has been written and acknowledged it issues no more
// until the device has acknowledged a FLUSH, which it journals too. It
// never flushes at the end: the blocks after the FLUSH must stay as
// volatile as the target keeps them, so that fencing it right after can
// lose them. If journal has a Sync method (an *os.File), it is called
// after the FLUSH is journaled and at the end.
//
// The journal is JSON lines: a run record, then an ack record per
// acknowledged write (seq, block, offset, length, flush epoch), a flush
// record after an acknowledged FLUSH, and an end record (see
// ParseCrashJournal). On an error, what was acknowledged until then is
// journaled, without an end record.
func CrashWrite(ctx context.Context, dev CrashDevice, journal io.Writer, opts CrashWriteOptions) (*CrashWriteResult, error) {
	opts = opts.withDefaults()
	if err := opts.Check(dev.Size()); err != nil {
		return nil, fmt.Errorf("bench: crash write %s: %w", dev.Name(), err)
	}
	blocks := int(opts.Size / int64(opts.BlockSize))
	res := &CrashWriteResult{Run: opts.Run, Device: dev.Name(), Blocks: blocks}
	start := time.Now()
	jw := &crashJournalWriter{w: journal, run: opts.Run, start: start, buf: make([]byte, 0, 256)}
	if err := jw.header(CrashRun{Version: crashJournalVersion, Run: opts.Run, Device: dev.Name(), Offset: opts.Offset,
		Size: opts.Size, BlockSize: opts.BlockSize, Blocks: blocks, QueueDepth: opts.QueueDepth, FlushAt: opts.FlushAt,
		Start: start.UTC()}); err != nil {
		return res, fmt.Errorf("bench: crash write %s: journal: %w", dev.Name(), err)
	}
	pat := CrashPattern{Run: opts.Run}
	order := rand.New(rand.NewPCG(opts.Run, mix64(opts.Run))).Perm(blocks)
	flushAt := opts.flushBlocks(blocks)

	wctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	work := make(chan int)
	var inflight, workers sync.WaitGroup
	for range opts.QueueDepth {
		workers.Add(1)
		go func() {
			defer workers.Done()
			buf := make([]byte, opts.BlockSize)
			for blk := range work {
				if wctx.Err() == nil {
					off := opts.Offset + int64(blk)*int64(opts.BlockSize)
					pat.Fill(buf, uint64(blk), off)
					if err := dev.WriteAt(wctx, buf, off, false); err != nil {
						fail(fmt.Errorf("write block %d at %d: %w", blk, off, err))
					} else if err := jw.ack(blk, off, opts.BlockSize); err != nil {
						fail(fmt.Errorf("journal: %w", err))
					}
				}
				inflight.Done()
			}
		}()
	}
	for i, blk := range order {
		if i == flushAt && flushAt > 0 {
			// Everything issued so far is acknowledged once inflight
			// drains: the FLUSH covers exactly those writes.
			inflight.Wait()
			if wctx.Err() != nil {
				break
			}
			t := time.Now()
			if err := dev.Flush(wctx); err != nil {
				fail(fmt.Errorf("flush after %d blocks: %w", i, err))
				break
			}
			res.FlushTime = time.Since(t)
			if err := jw.flush(res.FlushTime); err != nil {
				fail(fmt.Errorf("journal: %w", err))
				break
			}
		}
		if wctx.Err() != nil {
			break
		}
		inflight.Add(1)
		work <- blk
	}
	close(work)
	workers.Wait()
	res.Elapsed = time.Since(start)
	res.Acked, res.Flushed = jw.acked()
	res.Bytes = int64(res.Acked) * int64(opts.BlockSize)
	if err := context.Cause(wctx); err != nil {
		// What was acknowledged stays journaled, durably, for a check of
		// a run cut short.
		_ = jw.sync()
		return res, fmt.Errorf("bench: crash write %s: %w", dev.Name(), err)
	}
	if err := jw.end(); err != nil {
		return res, fmt.Errorf("bench: crash write %s: journal: %w", dev.Name(), err)
	}
	return res, nil
}

// crashJournalVersion is the journal format CrashWrite writes and
// ParseCrashJournal reads.
const crashJournalVersion = 1

// Record types of the journal.
const (
	crashRecordRun   = "run"
	crashRecordAck   = "ack"
	crashRecordFlush = "flush"
	crashRecordEnd   = "end"
)

// crashJournalWriter appends records to a journal. Its methods are safe
// for concurrent use; each record is one Write, so a journal cut short
// ends at a record boundary or in its last line.
type crashJournalWriter struct {
	w     io.Writer
	run   uint64
	start time.Time

	mu      sync.Mutex
	buf     []byte // reused: an ack record allocates nothing
	seq     uint64 // acks journaled
	epoch   int    // flushes journaled
	flushed int    // acks covered by the last flush
}

// header writes the run record.
func (j *crashJournalWriter) header(r CrashRun) error {
	b, err := json.Marshal(crashRecord{Type: crashRecordRun, Version: r.Version, Run: crashRunText(r.Run),
		Device: r.Device, Offset: r.Offset, Size: r.Size, BlockSize: r.BlockSize, Blocks: r.Blocks,
		QueueDepth: r.QueueDepth, FlushAt: r.FlushAt, Start: &r.Start})
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	_, err = j.w.Write(append(b, '\n'))
	return err
}

// ack journals an acknowledged write of block blk.
func (j *crashJournalWriter) ack(blk int, off int64, length int) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	b := j.begin(crashRecordAck)
	b = appendField(b, "seq", int64(j.seq))
	b = appendField(b, "block", int64(blk))
	b = appendField(b, "offset", off)
	b = appendField(b, "length", int64(length))
	b = appendField(b, "epoch", int64(j.epoch))
	b = appendField(b, "ns", int64(time.Since(j.start)))
	return j.finish(b)
}

// flush journals an acknowledged FLUSH covering every ack so far.
func (j *crashJournalWriter) flush(took time.Duration) error {
	j.mu.Lock()
	b := j.begin(crashRecordFlush)
	b = appendField(b, "seq", int64(j.seq))
	b = appendField(b, "epoch", int64(j.epoch))
	b = appendField(b, "ns", int64(time.Since(j.start)))
	b = appendField(b, "flush_ns", int64(took))
	err := j.finish(b)
	if err == nil {
		j.epoch++
		j.flushed = int(j.seq)
	}
	j.mu.Unlock()
	if err != nil {
		return err
	}
	return j.sync()
}

// end journals the end of the run and syncs the journal.
func (j *crashJournalWriter) end() error {
	j.mu.Lock()
	b := j.begin(crashRecordEnd)
	b = appendField(b, "acked", int64(j.seq))
	b = appendField(b, "flushed", int64(j.flushed))
	b = appendField(b, "ns", int64(time.Since(j.start)))
	err := j.finish(b)
	j.mu.Unlock()
	if err != nil {
		return err
	}
	return j.sync()
}

// acked returns how many acks were journaled, and how many of them a
// journaled flush covers.
func (j *crashJournalWriter) acked() (acked, flushed int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return int(j.seq), j.flushed
}

// sync makes the journal durable if it can be synced.
func (j *crashJournalWriter) sync() error {
	if s, ok := j.w.(interface{ Sync() error }); ok {
		return s.Sync()
	}
	return nil
}

// begin starts a record of type typ in j.buf; j.mu is held.
func (j *crashJournalWriter) begin(typ string) []byte {
	b := append(j.buf[:0], `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","run":"`...)
	b = appendRunText(b, j.run)
	return append(b, '"')
}

// finish ends the record b and writes it; j.mu is held.
func (j *crashJournalWriter) finish(b []byte) error {
	b = append(b, "}\n"...)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

// appendField appends ,"name":v to a record.
func appendField(b []byte, name string, v int64) []byte {
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return strconv.AppendInt(b, v, 10)
}

// crashRunText writes a run id as the journal does: 16 hex digits, a
// string rather than a JSON number, which many readers hold in a float64.
func crashRunText(run uint64) string { return string(appendRunText(nil, run)) }

// appendRunText appends the 16 hex digits of run.
func appendRunText(b []byte, run uint64) []byte {
	const digits = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		b = append(b, digits[run>>uint(i)&0xf])
	}
	return b
}

// crashRecord is a journal line, any type: each type uses some fields.
type crashRecord struct {
	Type       string     `json:"type"`
	Version    int        `json:"version,omitempty"`
	Run        string     `json:"run"`
	Device     string     `json:"device,omitempty"`
	Offset     int64      `json:"offset"`
	Size       int64      `json:"size,omitempty"`
	BlockSize  int        `json:"block_size,omitempty"`
	Blocks     int        `json:"blocks,omitempty"`
	QueueDepth int        `json:"qd,omitempty"`
	FlushAt    int        `json:"flush_at"`
	Start      *time.Time `json:"start,omitempty"`
	Seq        uint64     `json:"seq,omitempty"`
	Block      int64      `json:"block,omitempty"`
	Length     int        `json:"length,omitempty"`
	Epoch      int        `json:"epoch,omitempty"`
	Acked      int        `json:"acked,omitempty"`
	Flushed    int        `json:"flushed,omitempty"`
}

// CrashRun is a journal's run record: what CrashWrite was asked to write.
type CrashRun struct {
	Version int
	Run     uint64
	Device  string
	// Offset and Size are the byte range, written in Blocks blocks of
	// BlockSize bytes.
	Offset, Size int64
	BlockSize    int
	Blocks       int
	QueueDepth   int
	FlushAt      int
	Start        time.Time
}

// CrashAck is a journal's record of one acknowledged write.
type CrashAck struct {
	// Seq numbers the acknowledgements from 1, in the order they came.
	Seq uint64
	// Block is the block's index in the run; Offset and Length its bytes
	// on the device.
	Block  int
	Offset int64
	Length int
	// Epoch is how many FLUSHes were acknowledged before this write was.
	Epoch int
}

// CrashFlush is a journal's record of an acknowledged FLUSH.
type CrashFlush struct {
	// Epoch numbers the FLUSHes from 0; Seq is the last acknowledgement
	// it covers.
	Epoch int
	Seq   uint64
}

// CrashJournal is a parsed journal.
type CrashJournal struct {
	Run     CrashRun
	Acks    []CrashAck
	Flushes []CrashFlush
	// Ended says the run's end record is there: the writer got every
	// acknowledgement.
	Ended bool
	// Truncated says the last line was cut short (the writer died while
	// appending it) and was left out.
	Truncated bool
}

// Flushed reports whether an acknowledged FLUSH covers a.
func (j *CrashJournal) Flushed(a CrashAck) bool { return a.Epoch < len(j.Flushes) }

// maxCrashLine bounds a journal line; records are a few hundred bytes.
const maxCrashLine = 64 << 10

// ParseCrashJournal reads a journal written by CrashWrite and checks that
// it is consistent: a run record first; acks numbered 1, 2, ... for
// distinct blocks of the run at their offsets, each in the epoch of the
// flushes before it; each flush covering every ack before it; at most one
// end record, last, matching the counts. A last line without its newline
// that does not parse, before any end record, is a record cut short: it is
// left out and Truncated set.
func ParseCrashJournal(r io.Reader) (*CrashJournal, error) {
	br := bufio.NewReaderSize(r, maxCrashLine)
	j := &CrashJournal{}
	seen := make(map[int]bool)
	for line := 1; ; line++ {
		b, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, fmt.Errorf("bench: crash journal line %d: longer than %d bytes", line, maxCrashLine)
		case err != nil && !errors.Is(err, io.EOF):
			return nil, fmt.Errorf("bench: crash journal: %w", err)
		}
		last := err != nil
		if last && len(b) == 0 {
			break
		}
		if perr := j.parseLine(bytes.TrimSuffix(b, []byte("\n")), seen); perr != nil {
			var syntax *json.SyntaxError
			if last && line > 1 && !j.Ended && errors.As(perr, &syntax) {
				j.Truncated = true
				break
			}
			return nil, fmt.Errorf("bench: crash journal line %d: %w", line, perr)
		}
		if last {
			break
		}
	}
	if j.Run.Version == 0 {
		return nil, errors.New("bench: crash journal: empty, no run record")
	}
	return j, nil
}

// parseLine reads one record into j; seen holds the blocks acked so far.
func (j *CrashJournal) parseLine(b []byte, seen map[int]bool) error {
	var rec crashRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return err
	}
	run, err := strconv.ParseUint(rec.Run, 16, 64)
	if err != nil || len(rec.Run) != 16 {
		return fmt.Errorf("run id %q: want 16 hex digits", rec.Run)
	}
	if rec.Type != crashRecordRun {
		switch {
		case j.Run.Version == 0:
			return fmt.Errorf("a %q record before the run record", rec.Type)
		case run != j.Run.Run:
			return fmt.Errorf("run id %s, the journal's is %s", rec.Run, crashRunText(j.Run.Run))
		case j.Ended:
			return fmt.Errorf("a %q record after the end record", rec.Type)
		}
	}
	switch rec.Type {
	case crashRecordRun:
		if j.Run.Version != 0 {
			return errors.New("a second run record")
		}
		return j.parseRun(rec, run)
	case crashRecordAck:
		return j.parseAck(rec, seen)
	case crashRecordFlush:
		switch {
		case rec.Epoch != len(j.Flushes):
			return fmt.Errorf("flush of epoch %d, want %d", rec.Epoch, len(j.Flushes))
		case rec.Seq != uint64(len(j.Acks)):
			return fmt.Errorf("flush covering %d acks, %d came before it", rec.Seq, len(j.Acks))
		}
		j.Flushes = append(j.Flushes, CrashFlush{Epoch: rec.Epoch, Seq: rec.Seq})
	case crashRecordEnd:
		flushed := 0
		if n := len(j.Flushes); n > 0 {
			flushed = int(j.Flushes[n-1].Seq)
		}
		if rec.Acked != len(j.Acks) || rec.Flushed != flushed {
			return fmt.Errorf("end record counts %d acked and %d flushed, the journal %d and %d", rec.Acked, rec.Flushed, len(j.Acks), flushed)
		}
		j.Ended = true
	default:
		return fmt.Errorf("unknown record type %q", rec.Type)
	}
	return nil
}

// parseRun checks and keeps the run record.
func (j *CrashJournal) parseRun(rec crashRecord, run uint64) error {
	switch {
	case rec.Version != crashJournalVersion:
		return fmt.Errorf("version %d, want %d", rec.Version, crashJournalVersion)
	case rec.BlockSize <= 0 || rec.BlockSize%aoe.SectorSize != 0 || rec.BlockSize > MaxCrashBlock:
		return fmt.Errorf("block size %d: want a multiple of %d up to %d", rec.BlockSize, aoe.SectorSize, MaxCrashBlock)
	case rec.Blocks <= 0 || rec.Blocks > math.MaxInt32:
		return fmt.Errorf("%d blocks", rec.Blocks)
	case rec.Offset < 0 || rec.Offset%aoe.SectorSize != 0:
		return fmt.Errorf("offset %d", rec.Offset)
	case rec.Size != int64(rec.Blocks)*int64(rec.BlockSize) || rec.Offset > math.MaxInt64-rec.Size:
		return fmt.Errorf("size %d for %d blocks of %d bytes at %d", rec.Size, rec.Blocks, rec.BlockSize, rec.Offset)
	}
	j.Run = CrashRun{Version: rec.Version, Run: run, Device: rec.Device, Offset: rec.Offset, Size: rec.Size,
		BlockSize: rec.BlockSize, Blocks: rec.Blocks, QueueDepth: rec.QueueDepth, FlushAt: rec.FlushAt}
	if rec.Start != nil {
		j.Run.Start = *rec.Start
	}
	return nil
}

// parseAck checks and keeps an ack record.
func (j *CrashJournal) parseAck(rec crashRecord, seen map[int]bool) error {
	switch {
	case rec.Seq != uint64(len(j.Acks))+1:
		return fmt.Errorf("ack %d, want %d", rec.Seq, len(j.Acks)+1)
	case rec.Block < 0 || rec.Block >= int64(j.Run.Blocks):
		return fmt.Errorf("block %d of a run of %d", rec.Block, j.Run.Blocks)
	case seen[int(rec.Block)]:
		return fmt.Errorf("block %d acknowledged twice", rec.Block)
	case rec.Offset != j.Run.Offset+rec.Block*int64(j.Run.BlockSize) || rec.Length != j.Run.BlockSize:
		return fmt.Errorf("block %d at %d, %d bytes: want %d, %d bytes", rec.Block, rec.Offset, rec.Length,
			j.Run.Offset+rec.Block*int64(j.Run.BlockSize), j.Run.BlockSize)
	case rec.Epoch != len(j.Flushes):
		return fmt.Errorf("ack %d in flush epoch %d, want %d", rec.Seq, rec.Epoch, len(j.Flushes))
	}
	seen[int(rec.Block)] = true
	j.Acks = append(j.Acks, CrashAck{Seq: rec.Seq, Block: int(rec.Block), Offset: rec.Offset, Length: rec.Length, Epoch: rec.Epoch})
	return nil
}

// CrashCheckOptions says how CrashCheck reads.
type CrashCheckOptions struct {
	// QueueDepth is how many reads are in flight; 0 means 16.
	QueueDepth int
	// MaxBad is how many lost or torn blocks the report lists; 0 means 64.
	MaxBad int
}

// CrashBadBlock is a block that is not intact.
type CrashBadBlock struct {
	Block   int          `json:"block"`
	Offset  int64        `json:"offset"`
	Seq     uint64       `json:"seq"`
	Flushed bool         `json:"flushed"`
	State   CrashState   `json:"state"`
	Sectors CrashSectors `json:"sectors"`
}

// CrashReport counts what became of the journaled writes.
type CrashReport struct {
	Device string `json:"device"`
	Run    string `json:"run"`
	// Blocks is how many blocks the run was to write; JournalEnded says
	// the writer journaled the end of the run.
	Blocks       int  `json:"blocks"`
	JournalEnded bool `json:"journal_ended"`
	// Flushes counts the acknowledged FLUSHes journaled.
	Flushes int `json:"flushes"`
	// Acked counts the acknowledged writes; Flushed those an acknowledged
	// FLUSH covers, Unflushed the others; Intact those read back whole.
	Acked     int `json:"acked"`
	Flushed   int `json:"flushed"`
	Unflushed int `json:"unflushed"`
	Intact    int `json:"intact"`
	// Lost and torn writes, among the flushed and the unflushed ones.
	LostFlushed   int `json:"lost_flushed"`
	TornFlushed   int `json:"torn_flushed"`
	LostUnflushed int `json:"lost_unflushed"`
	TornUnflushed int `json:"torn_unflushed"`
	// Bad lists the first lost or torn blocks, in journal order.
	Bad []CrashBadBlock `json:"bad,omitempty"`
	// Elapsed is how long the read back took.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// BadFlushed counts the flushed writes lost or torn.
func (r *CrashReport) BadFlushed() int { return r.LostFlushed + r.TornFlushed }

// BadUnflushed counts the unflushed writes lost or torn.
func (r *CrashReport) BadUnflushed() int { return r.LostUnflushed + r.TornUnflushed }

// CrashCheck reads back every block j names from dev and classifies it
// (CrashPattern.Classify). An error means the check could not run: a read
// failed, or the journal does not fit the device.
func CrashCheck(ctx context.Context, dev CrashDevice, j *CrashJournal, opts CrashCheckOptions) (*CrashReport, error) {
	qd := cmp.Or(opts.QueueDepth, 16)
	maxBad := cmp.Or(opts.MaxBad, 64)
	switch {
	case qd < 1 || qd > MaxCrashQueueDepth:
		return nil, fmt.Errorf("bench: crash check: queue depth %d: want 1 to %d", qd, MaxCrashQueueDepth)
	case len(j.Acks) == 0:
		return nil, errors.New("bench: crash check: the journal holds no acknowledged write")
	case dev.Size() > 0 && (j.Run.Offset > dev.Size() || j.Run.Size > dev.Size()-j.Run.Offset):
		return nil, fmt.Errorf("bench: crash check: the journal's %d bytes at %d do not fit in %s's %d bytes",
			j.Run.Size, j.Run.Offset, dev.Name(), dev.Size())
	}
	rep := &CrashReport{Device: dev.Name(), Run: crashRunText(j.Run.Run), Blocks: j.Run.Blocks, JournalEnded: j.Ended,
		Flushes: len(j.Flushes), Acked: len(j.Acks)}
	pat := CrashPattern{Run: j.Run.Run}
	start := time.Now()
	var (
		mu   sync.Mutex
		bad  []CrashBadBlock
		next int
	)
	rctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	var wg sync.WaitGroup
	for range min(qd, len(j.Acks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, j.Run.BlockSize)
			for rctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(j.Acks) {
					return
				}
				a := j.Acks[i]
				if err := dev.ReadAt(rctx, buf, a.Offset); err != nil {
					fail(fmt.Errorf("read block %d at %d: %w", a.Block, a.Offset, err))
					return
				}
				c := pat.Classify(buf, uint64(a.Block), a.Offset)
				flushed := j.Flushed(a)
				mu.Lock()
				rep.count(c.State, flushed)
				if c.State != CrashIntact {
					bad = append(bad, CrashBadBlock{Block: a.Block, Offset: a.Offset, Seq: a.Seq, Flushed: flushed,
						State: c.State, Sectors: c.Sectors})
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	if err := context.Cause(rctx); err != nil {
		return nil, fmt.Errorf("bench: crash check %s: %w", dev.Name(), err)
	}
	// Reads complete in any order; a report lists its blocks in journal
	// order, so that it does not change from one check to the next.
	slices.SortFunc(bad, func(a, b CrashBadBlock) int { return cmp.Compare(a.Seq, b.Seq) })
	rep.Bad = bad[:min(len(bad), maxBad)]
	return rep, nil
}

// count adds one block's state to the report.
func (r *CrashReport) count(s CrashState, flushed bool) {
	if flushed {
		r.Flushed++
	} else {
		r.Unflushed++
	}
	switch {
	case s == CrashIntact:
		r.Intact++
	case s == CrashLost && flushed:
		r.LostFlushed++
	case s == CrashLost:
		r.LostUnflushed++
	case flushed:
		r.TornFlushed++
	default:
		r.TornUnflushed++
	}
}

// CrashExpect is what a check demands of the writes read back.
type CrashExpect string

// What a check can demand.
const (
	// CrashExpectDurable demands every acknowledged write (targets
	// that acknowledge durable writes: ironblade -s, vblade -s).
	CrashExpectDurable CrashExpect = "durable"
	// CrashExpectFlushed demands every write a FLUSH covers, and, as the
	// negative control, that some write no FLUSH covers was lost or torn
	// (asynchronous targets fenced with writes in their page cache).
	CrashExpectFlushed CrashExpect = "flushed"
	// CrashExpectReport demands nothing: the check only counts.
	CrashExpectReport CrashExpect = "report"
)

// ParseCrashExpect reads durable, flushed or report.
func ParseCrashExpect(s string) (CrashExpect, error) {
	switch e := CrashExpect(s); e {
	case CrashExpectDurable, CrashExpectFlushed, CrashExpectReport:
		return e, nil
	}
	return "", fmt.Errorf("expect %q: want durable, flushed or report", s)
}

// Errors of CrashReport.Judge.
var (
	// ErrCrashLoss: writes the expectation covers were lost or torn.
	ErrCrashLoss = errors.New("acknowledged writes were lost")
	// ErrCrashNoNegativeControl: under CrashExpectFlushed, no unflushed
	// write was lost, so the run does not show that the check can see a
	// loss (the fence came too late, or the check is too weak).
	ErrCrashNoNegativeControl = errors.New("the negative control did not show: no unflushed write was lost or torn")
)

// Judge says whether the report meets expect: nil if it does, else an
// error wrapping ErrCrashLoss or ErrCrashNoNegativeControl and saying how
// many writes were lost or torn.
func (r *CrashReport) Judge(expect CrashExpect) error {
	switch expect {
	case CrashExpectDurable:
		if n := r.BadFlushed() + r.BadUnflushed(); n > 0 {
			return fmt.Errorf("%w: %d of %d acknowledged writes lost or torn (%d of them covered by an acknowledged FLUSH)", ErrCrashLoss, n, r.Acked, r.BadFlushed())
		}
	case CrashExpectFlushed:
		switch {
		case r.Flushed == 0:
			// Nothing was covered by a FLUSH: the half of the check that
			// FLUSH must keep would pass without checking anything.
			return fmt.Errorf("bench: crash: expect %s: the journal has no write covered by an acknowledged FLUSH (write with --flush-at)", expect)
		case r.BadFlushed() > 0:
			return fmt.Errorf("%w: %d of %d writes covered by an acknowledged FLUSH lost or torn", ErrCrashLoss, r.BadFlushed(), r.Flushed)
		case r.BadUnflushed() == 0:
			return fmt.Errorf("%w (%d unflushed writes all intact)", ErrCrashNoNegativeControl, r.Unflushed)
		}
	case CrashExpectReport:
	default:
		return fmt.Errorf("bench: crash: expectation %q: want durable, flushed or report", expect)
	}
	return nil
}

// Summary is the report in one line.
func (r *CrashReport) Summary() string {
	return fmt.Sprintf("%s run %s: %d acked writes (%d flushed by %d FLUSH), %d intact; flushed: %d lost, %d torn; unflushed: %d lost, %d torn",
		r.Device, r.Run, r.Acked, r.Flushed, r.Flushes, r.Intact, r.LostFlushed, r.TornFlushed, r.LostUnflushed, r.TornUnflushed)
}
