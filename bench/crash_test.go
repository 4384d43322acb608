package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/initiator"
	ironblade "github.com/ironblade/ironblade/target"
)

// crashBlock returns block number block at off of run, n sectors long.
func crashBlock(run, block uint64, off int64, n int) []byte {
	b := make([]byte, n*aoe.SectorSize)
	CrashPattern{Run: run}.Fill(b, block, off)
	return b
}

// TestCrashClassify checks that the classifier tells the writes that are
// there from the lost and the torn ones, whatever broke them.
func TestCrashClassify(t *testing.T) {
	const run, block, off, n = 0x1234, 7, 7 * 4 * 512, 4
	sector := func(b []byte, i int) []byte { return b[i*aoe.SectorSize : (i+1)*aoe.SectorSize] }
	for _, tc := range []struct {
		name  string
		make  func() []byte
		state CrashState
		want  CrashSectors
	}{
		{"intact", func() []byte { return crashBlock(run, block, off, n) }, CrashIntact, CrashSectors{Intact: 4}},
		{"zeros", func() []byte { return make([]byte, n*512) }, CrashLost, CrashSectors{Zero: 4}},
		{"earlier run", func() []byte { return crashBlock(run+1, block, off, n) }, CrashLost, CrashSectors{OtherRun: 4}},
		{"foreign data", func() []byte { return bytes.Repeat([]byte("ext4 "), n*512/5+1)[:n*512] }, CrashLost, CrashSectors{Foreign: 4}},
		{"zeros and an earlier run", func() []byte {
			b := crashBlock(run+1, block, off, n)
			clear(b[:2*512])
			return b
		}, CrashLost, CrashSectors{Zero: 2, OtherRun: 2}},
		{"half written", func() []byte {
			b := crashBlock(run, block, off, n)
			clear(b[2*512:])
			return b
		}, CrashTorn, CrashSectors{Intact: 2, Zero: 2}},
		{"half over an earlier run", func() []byte {
			b := crashBlock(run, block, off, n)
			copy(b[512:], crashBlock(run+1, block, off, n)[512:])
			return b
		}, CrashTorn, CrashSectors{Intact: 1, OtherRun: 3}},
		{"filler bit flipped", func() []byte {
			b := crashBlock(run, block, off, n)
			b[3*512+300] ^= 0x10
			return b
		}, CrashTorn, CrashSectors{Intact: 3, Corrupt: 1}},
		{"header field changed", func() []byte {
			b := crashBlock(run, block, off, n)
			b[512+crashBlockAt]++
			return b
		}, CrashTorn, CrashSectors{Intact: 3, Corrupt: 1}},
		{"sectors swapped", func() []byte {
			b := crashBlock(run, block, off, n)
			s0 := bytes.Clone(sector(b, 0))
			copy(sector(b, 0), sector(b, 1))
			copy(sector(b, 1), s0)
			return b
		}, CrashTorn, CrashSectors{Intact: 2, Misplaced: 2}},
		{"misdirected write", func() []byte { return crashBlock(run, block+1, off+n*512, n) }, CrashTorn, CrashSectors{Misplaced: 4}},
		{"only the corrupt sector", func() []byte {
			b := make([]byte, n*512)
			copy(b, crashBlock(run, block, off, n)[:512])
			b[100] ^= 1
			return b
		}, CrashTorn, CrashSectors{Zero: 3, Corrupt: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CrashPattern{Run: run}.Classify(tc.make(), block, off)
			if got.State != tc.state || got.Sectors != tc.want {
				t.Errorf("Classify = %v %+v, want %v %+v", got.State, got.Sectors, tc.state, tc.want)
			}
		})
	}
}

// TestCrashPatternDistinct checks that no two sectors of the pattern are
// alike: across runs, blocks and sectors, every sector has filler of its
// own, so that none can pass for another.
func TestCrashPatternDistinct(t *testing.T) {
	seen := make(map[string]string)
	for run := uint64(1); run <= 2; run++ {
		for block := uint64(0); block < 8; block++ {
			b := crashBlock(run, block, int64(block)*4*512, 4)
			for i := range 4 {
				filler := string(b[i*512+crashFillerAt : (i+1)*512])
				what := fmt.Sprintf("run %d block %d sector %d", run, block, i)
				if prev, dup := seen[filler]; dup {
					t.Fatalf("%s has the filler of %s", what, prev)
				}
				seen[filler] = what
			}
		}
	}
	if got := (CrashState(9)).String(); got != "CrashState(9)" {
		t.Errorf("String of an unknown state: %q", got)
	}
}

// volatileDisk is a CrashDevice with a volatile write cache: writes land
// in what reads see, Flush makes them durable, and cut drops what was not
// flushed, as a target's page cache dies with its node.
type volatileDisk struct {
	mu        sync.Mutex
	current   []byte
	durable   []byte
	inflight  int
	maxFlight int
	flushes   []int // writes in flight at each Flush
	writes    int
	failAt    int // the write that fails, counting from 1; 0 for none
}

func newVolatileDisk(size int) *volatileDisk {
	return &volatileDisk{current: make([]byte, size), durable: make([]byte, size)}
}

func (d *volatileDisk) Name() string { return "e9.9" }
func (d *volatileDisk) Size() int64  { return int64(len(d.current)) }

func (d *volatileDisk) WriteAt(_ context.Context, p []byte, off int64, _ bool) error {
	d.mu.Lock()
	d.writes++
	if d.writes == d.failAt {
		d.mu.Unlock()
		return errors.New("injected write error")
	}
	d.inflight++
	d.maxFlight = max(d.maxFlight, d.inflight)
	d.mu.Unlock()
	time.Sleep(50 * time.Microsecond) // lets writes overlap
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.current[off:], p)
	d.inflight--
	return nil
}

func (d *volatileDisk) ReadAt(_ context.Context, p []byte, off int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(p, d.current[off:])
	return nil
}

func (d *volatileDisk) Flush(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.flushes = append(d.flushes, d.inflight)
	copy(d.durable, d.current)
	return nil
}

// cut loses every write not flushed.
func (d *volatileDisk) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.current, d.durable)
}

// syncBuffer is a journal that counts its syncs.
type syncBuffer struct {
	bytes.Buffer
	syncs int
}

func (b *syncBuffer) Sync() error { b.syncs++; return nil }

// TestCrashWriteAndCheck writes through a volatile cache with a FLUSH
// half way, then checks before and after a power cut: each expectation
// passes or fails as it must, and the journal says what was acknowledged
// and flushed.
func TestCrashWriteAndCheck(t *testing.T) {
	const blocks, bs = 64, 4096
	d := newVolatileDisk(1 << 20)
	var journal syncBuffer
	res, err := CrashWrite(context.Background(), d, &journal,
		CrashWriteOptions{Offset: 8192, Size: blocks * bs, BlockSize: bs, QueueDepth: 8, FlushAt: 50})
	if err != nil {
		t.Fatal(err)
	}
	if res.Acked != blocks || res.Flushed != blocks/2 || res.Bytes != blocks*bs || res.MBps() <= 0 {
		t.Fatalf("result %+v", res)
	}
	if !slices.Equal(d.flushes, []int{0}) {
		t.Errorf("writes in flight at each FLUSH: %v, want one FLUSH with none", d.flushes)
	}
	if d.maxFlight < 2 || d.maxFlight > 8 {
		t.Errorf("at most %d writes in flight at queue depth 8", d.maxFlight)
	}
	if journal.syncs != 2 {
		t.Errorf("journal synced %d times, want after the FLUSH and at the end", journal.syncs)
	}
	j, err := ParseCrashJournal(bytes.NewReader(journal.Bytes()))
	if err != nil {
		t.Fatalf("%v\n%s", err, journal.String())
	}
	if !j.Ended || j.Truncated || len(j.Acks) != blocks || len(j.Flushes) != 1 || j.Flushes[0].Seq != blocks/2 ||
		j.Run.Run != res.Run || j.Run.Device != "e9.9" || j.Run.Offset != 8192 || j.Run.FlushAt != 50 {
		t.Fatalf("journal: run %+v, %d acks, flushes %+v, ended %v", j.Run, len(j.Acks), j.Flushes, j.Ended)
	}
	order := make([]int, len(j.Acks))
	for i, a := range j.Acks {
		order[i] = a.Block
		if j.Flushed(a) != (i < blocks/2) {
			t.Errorf("ack %d (block %d): flushed %v", a.Seq, a.Block, j.Flushed(a))
		}
	}
	if slices.IsSorted(order) {
		t.Errorf("blocks written in order: %v", order)
	}

	check := func(what string) *CrashReport {
		t.Helper()
		rep, err := CrashCheck(context.Background(), d, j, CrashCheckOptions{QueueDepth: 4, MaxBad: 5})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %s", what, rep.Summary())
		return rep
	}
	rep := check("before the cut")
	if rep.Acked != blocks || rep.Intact != blocks || rep.Flushed != blocks/2 || rep.Unflushed != blocks/2 || rep.Bad != nil {
		t.Fatalf("before the cut: %+v", rep)
	}
	for _, tc := range []struct {
		expect CrashExpect
		want   error
	}{{CrashExpectDurable, nil}, {CrashExpectFlushed, ErrCrashNoNegativeControl}, {CrashExpectReport, nil}} {
		if err := rep.Judge(tc.expect); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("before the cut, %s: %v, want %v", tc.expect, err, tc.want)
		}
	}

	d.cut()
	rep = check("after the cut")
	if rep.Intact != blocks/2 || rep.LostUnflushed != blocks/2 || rep.BadFlushed() != 0 || rep.TornUnflushed != 0 || len(rep.Bad) != 5 {
		t.Fatalf("after the cut: %+v", rep)
	}
	for i, b := range rep.Bad {
		if b.Flushed || b.State != CrashLost || b.Sectors.Zero != bs/512 || (i > 0 && b.Seq <= rep.Bad[i-1].Seq) {
			t.Errorf("bad block %+v", b)
		}
	}
	for _, tc := range []struct {
		expect CrashExpect
		want   error
	}{{CrashExpectDurable, ErrCrashLoss}, {CrashExpectFlushed, nil}, {CrashExpectReport, nil}} {
		if err := rep.Judge(tc.expect); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("after the cut, %s: %v, want %v", tc.expect, err, tc.want)
		}
	}
	if err := rep.Judge("sometimes"); err == nil {
		t.Error("Judge of an unknown expectation succeeded")
	}
	// Losses with no FLUSH in the journal prove nothing about FLUSH.
	noFlush := *rep
	noFlush.Flushed, noFlush.Unflushed = 0, rep.Acked
	if err := noFlush.Judge(CrashExpectFlushed); err == nil {
		t.Error("expect flushed on a journal without a FLUSH passed")
	}
}

// TestCrashWriteFails checks that a failed write stops the run with its
// error and leaves a journal of what was acknowledged, without an end.
func TestCrashWriteFails(t *testing.T) {
	d := newVolatileDisk(1 << 20)
	d.failAt = 10
	var journal syncBuffer
	res, err := CrashWrite(context.Background(), d, &journal, CrashWriteOptions{Size: 64 << 10, BlockSize: 1024, QueueDepth: 2})
	if err == nil || !strings.Contains(err.Error(), "injected write error") {
		t.Fatalf("CrashWrite: %v, want the injected error", err)
	}
	j, perr := ParseCrashJournal(&journal.Buffer)
	if perr != nil {
		t.Fatal(perr)
	}
	// The writer stops once the failure is seen: the writes in flight
	// around it may still complete and be acknowledged, a few more when
	// the failing worker is descheduled before it reports (seen in CI:
	// 11 of 64); never the rest of the 64.
	if j.Ended || len(j.Acks) != res.Acked || res.Acked < 8 || res.Acked > 16 || journal.syncs != 1 {
		t.Errorf("after a failed write: %d acked, journal %d acks, ended %v, %d syncs", res.Acked, len(j.Acks), j.Ended, journal.syncs)
	}
	if _, err := CrashCheck(context.Background(), d, &CrashJournal{Run: j.Run}, CrashCheckOptions{}); err == nil {
		t.Error("CrashCheck of a journal without acks succeeded")
	}
}

// TestCrashWriteOptions checks the options refused before any I/O.
func TestCrashWriteOptions(t *testing.T) {
	for _, tc := range []struct {
		opts CrashWriteOptions
		size int64
		want string
	}{
		{CrashWriteOptions{BlockSize: 1000}, 0, "block size"},
		{CrashWriteOptions{BlockSize: 32 << 20}, 0, "block size"},
		{CrashWriteOptions{Offset: 100}, 0, "offset"},
		{CrashWriteOptions{Size: 100 << 10, BlockSize: 64 << 10}, 0, "size"},
		{CrashWriteOptions{QueueDepth: MaxCrashQueueDepth + 1}, 0, "queue depth"},
		{CrashWriteOptions{FlushAt: 100}, 0, "flush at"},
		{CrashWriteOptions{FlushAt: -1}, 0, "flush at"},
		{CrashWriteOptions{Size: 64 << 10, FlushAt: 50}, 0, "no block on one side"},
		{CrashWriteOptions{Size: 2 << 20, FlushAt: 1}, 0, "no block on one side"},
		{CrashWriteOptions{Offset: 1 << 20}, 32 << 20, "do not fit"},
	} {
		if err := tc.opts.Check(tc.size); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v on %d bytes: %v, want an error about %s", tc.opts, tc.size, err, tc.want)
		}
	}
	if err := (CrashWriteOptions{FlushAt: 50}).Check(32 << 20); err != nil {
		t.Errorf("the defaults with a FLUSH: %v", err)
	}
	d := newVolatileDisk(64 << 10)
	if _, err := CrashWrite(context.Background(), d, io.Discard, CrashWriteOptions{}); err == nil || !strings.Contains(err.Error(), "do not fit") {
		t.Errorf("32 MiB on a 64 KiB device: %v", err)
	}
}

// crashJournalText builds a journal from records, the run record first.
func crashJournalText(lines ...string) string {
	return `{"type":"run","version":1,"run":"00000000000000ab","device":"e1.0","offset":0,"size":4096,"block_size":1024,"blocks":4,"flush_at":50}` +
		"\n" + strings.Join(lines, "\n")
}

// TestParseCrashJournal checks that the parser takes a journal cut short
// in its last line and refuses every inconsistent one.
func TestParseCrashJournal(t *testing.T) {
	ack := func(seq, block, epoch int) string {
		return fmt.Sprintf(`{"type":"ack","run":"00000000000000ab","seq":%d,"block":%d,"offset":%d,"length":1024,"epoch":%d}`,
			seq, block, block*1024, epoch)
	}
	flush := `{"type":"flush","run":"00000000000000ab","seq":2,"epoch":0}`
	good := crashJournalText(ack(1, 3, 0), ack(2, 0, 0), flush, ack(3, 1, 1), `{"type":"end","run":"00000000000000ab","acked":3,"flushed":2}`) + "\n"
	j, err := ParseCrashJournal(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if !j.Ended || j.Truncated || len(j.Acks) != 3 || !j.Flushed(j.Acks[1]) || j.Flushed(j.Acks[2]) || j.Run.Run != 0xab {
		t.Fatalf("parsed %+v", j)
	}
	cut := crashJournalText(ack(1, 3, 0), `{"type":"ack","run":"00000000000000ab","se`)
	if j, err := ParseCrashJournal(strings.NewReader(cut)); err != nil || !j.Truncated || len(j.Acks) != 1 || j.Ended {
		t.Errorf("journal cut in its last line: %+v, %v", j, err)
	}
	for _, tc := range []struct {
		name, text, want string
	}{
		{"empty", "", "no run record"},
		{"ack first", ack(1, 0, 0) + "\n", "before the run record"},
		{"cut header", `{"type":"run","vers`, "line 1"},
		{"bad version", strings.Replace(crashJournalText(), `"version":1`, `"version":2`, 1), "version"},
		{"bad block size", strings.Replace(crashJournalText(), `"block_size":1024`, `"block_size":1000`, 1), "block size"},
		{"size mismatch", strings.Replace(crashJournalText(), `"size":4096`, `"size":4000`, 1), "size"},
		{"bad run id", crashJournalText(strings.Replace(ack(1, 0, 0), "00000000000000ab", "xyz", 1)), "run id"},
		{"other run", crashJournalText(strings.Replace(ack(1, 0, 0), "00000000000000ab", "00000000000000ac", 1)), "run id"},
		{"second run", crashJournalText(crashJournalText()), "second run record"},
		{"seq gap", crashJournalText(ack(2, 0, 0)), "ack 2, want 1"},
		{"block out of range", crashJournalText(ack(1, 4, 0)), "block 4"},
		{"block twice", crashJournalText(ack(1, 0, 0), ack(2, 0, 0)), "twice"},
		{"wrong offset", crashJournalText(strings.Replace(ack(1, 1, 0), `"offset":1024`, `"offset":2048`, 1)), "block 1 at 2048"},
		{"wrong epoch", crashJournalText(ack(1, 0, 1)), "epoch"},
		{"flush count", crashJournalText(ack(1, 0, 0), flush), "flush covering 2"},
		{"flush epoch", crashJournalText(ack(1, 0, 0), ack(2, 1, 0), strings.Replace(flush, `"epoch":0`, `"epoch":1`, 1)), "epoch 1"},
		{"end count", crashJournalText(ack(1, 0, 0), `{"type":"end","run":"00000000000000ab","acked":2,"flushed":0}`), "end record"},
		{"after end", crashJournalText(`{"type":"end","run":"00000000000000ab","acked":0,"flushed":0}`, ack(1, 0, 0)), "after the end"},
		{"cut after end", crashJournalText(`{"type":"end","run":"00000000000000ab","acked":0,"flushed":0}`, `{"ty`), "line 3"},
		{"unknown type", crashJournalText(`{"type":"trim","run":"00000000000000ab"}`), "unknown record"},
		{"blank line", crashJournalText("", ack(1, 0, 0)), "line 2"},
		{"too long", crashJournalText(strings.Repeat(" ", maxCrashLine+1)), "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if j, err := ParseCrashJournal(strings.NewReader(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCrashJournal = %+v, %v; want an error about %s", j, err, tc.want)
			}
		})
	}
	if _, err := ParseCrashExpect("maybe"); err == nil {
		t.Error("ParseCrashExpect(maybe) succeeded")
	}
}

// testLogger logs warnings and errors to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// TestCrashOverHub runs the crash test end to end with the real initiator
// and the real target package on an in-memory segment: the write, a check
// from a fresh initiator, and checks after writes are made to vanish from
// the disk behind the target's back, which the expectations must catch
// or, for writes no FLUSH covered, excuse.
func TestCrashOverHub(t *testing.T) {
	const blocks, bs, base = 32, 64 << 10, 512 << 10
	hub := aoetest.NewHub()
	disk := aoetest.NewMemDisk(4 << 20)
	srv, err := ironblade.NewServer(ironblade.Config{Shelf: 1, Slot: 0, Backend: disk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	aoetest.ServeLink(t, hub.Port(aoe.MAC{0x02, 0, 0, 0, 0, 0x10}, 9000), srv.Serve)
	ctx := context.Background()
	initiatorMAC := byte(0x20)
	open := func() *initiator.Device {
		t.Helper()
		initiatorMAC++
		port := hub.Port(aoe.MAC{0x02, 0, 0, 0, 0, initiatorMAC}, 9000)
		dev, stop, err := OpenCrashDevice(ctx, initiator.Config{Links: []aoe.Link{port}, Logger: testLogger(t)}, 1, 0, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return dev
	}

	var journal bytes.Buffer
	res, err := CrashWrite(ctx, open(), &journal, CrashWriteOptions{Offset: base, Size: blocks * bs, BlockSize: bs, QueueDepth: 8, FlushAt: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d blocks in %v (%.1f MB/s), FLUSH %v", res.Acked, res.Elapsed, res.MBps(), res.FlushTime)
	j, err := ParseCrashJournal(&journal)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Acks) != blocks || j.Flushes[0].Seq != blocks/2 || j.Run.Device != "e1.0" {
		t.Fatalf("journal: %d acks, flushes %+v, device %s", len(j.Acks), j.Flushes, j.Run.Device)
	}
	var flushed, unflushed []CrashAck
	for _, a := range j.Acks {
		if j.Flushed(a) {
			flushed = append(flushed, a)
		} else {
			unflushed = append(unflushed, a)
		}
	}
	zero := func(a CrashAck, n int) {
		if _, err := disk.WriteAt(make([]byte, n), a.Offset); err != nil {
			t.Fatal(err)
		}
	}

	for _, step := range []struct {
		name   string
		lose   func()
		counts [4]int // lost and torn flushed, lost and torn unflushed
		judge  map[CrashExpect]error
	}{
		{"no loss", func() {}, [4]int{}, map[CrashExpect]error{
			CrashExpectDurable: nil, CrashExpectFlushed: ErrCrashNoNegativeControl, CrashExpectReport: nil}},
		{"unflushed writes lost", func() {
			zero(unflushed[0], bs)
			zero(unflushed[5], bs)
			zero(unflushed[9], bs/2) // torn: its second half is there
		}, [4]int{0, 0, 2, 1}, map[CrashExpect]error{
			CrashExpectDurable: ErrCrashLoss, CrashExpectFlushed: nil, CrashExpectReport: nil}},
		{"a flushed write lost", func() { zero(flushed[3], bs) }, [4]int{1, 0, 2, 1}, map[CrashExpect]error{
			CrashExpectDurable: ErrCrashLoss, CrashExpectFlushed: ErrCrashLoss, CrashExpectReport: nil}},
	} {
		step.lose()
		rep, err := CrashCheck(ctx, open(), j, CrashCheckOptions{})
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		t.Logf("%s: %s", step.name, rep.Summary())
		got := [4]int{rep.LostFlushed, rep.TornFlushed, rep.LostUnflushed, rep.TornUnflushed}
		if got != step.counts || rep.Acked != blocks || rep.Flushed != blocks/2 {
			t.Errorf("%s: counts %v, want %v", step.name, got, step.counts)
		}
		for expect, want := range step.judge {
			if err := rep.Judge(expect); !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Errorf("%s, expect %s: %v, want %v", step.name, expect, err, want)
			}
		}
	}
}

// FuzzCrashJournal feeds the parser any text: it must not panic, and a
// journal it accepts must be consistent and survive being written again
// by the journal writer and parsed back unchanged.
func FuzzCrashJournal(f *testing.F) {
	d := newVolatileDisk(64 << 10)
	var journal bytes.Buffer
	if _, err := CrashWrite(context.Background(), d, &journal, CrashWriteOptions{Size: 16 << 10, BlockSize: 2048, QueueDepth: 3, FlushAt: 25}); err != nil {
		f.Fatal(err)
	}
	f.Add(journal.Bytes())
	f.Add(journal.Bytes()[:journal.Len()-7])
	f.Add([]byte(crashJournalText(`{"type":"flush","run":"00000000000000ab","seq":0,"epoch":0}`)))
	f.Add([]byte(crashJournalText(`{"type":"ack","run":"00000000000000ab","seq":1,"block":2,"offset":2048,"length":1024}`, `{"ty`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := ParseCrashJournal(bytes.NewReader(data))
		if err != nil {
			return
		}
		seen := make(map[int]bool)
		for i, a := range j.Acks {
			if a.Seq != uint64(i+1) || seen[a.Block] || a.Block >= j.Run.Blocks || a.Epoch > len(j.Flushes) ||
				(i > 0 && a.Epoch < j.Acks[i-1].Epoch) || a.Offset != j.Run.Offset+int64(a.Block)*int64(j.Run.BlockSize) {
				t.Fatalf("accepted an inconsistent ack %d: %+v in run %+v", i, a, j.Run)
			}
			seen[a.Block] = true
		}
		for i, fl := range j.Flushes {
			covered := 0
			for _, a := range j.Acks {
				if a.Epoch <= i {
					covered++
				}
			}
			if fl.Epoch != i || fl.Seq != uint64(covered) {
				t.Fatalf("accepted flush %d %+v covering %d acks", i, fl, covered)
			}
		}

		var again bytes.Buffer
		w := &crashJournalWriter{w: &again, run: j.Run.Run, start: time.Now()}
		if err := w.header(j.Run); err != nil {
			t.Fatal(err)
		}
		next := 0
		for _, fl := range j.Flushes {
			for ; uint64(next) < fl.Seq; next++ {
				a := j.Acks[next]
				_ = w.ack(a.Block, a.Offset, a.Length)
			}
			_ = w.flush(0)
		}
		for ; next < len(j.Acks); next++ {
			a := j.Acks[next]
			_ = w.ack(a.Block, a.Offset, a.Length)
		}
		if j.Ended {
			_ = w.end()
		}
		k, err := ParseCrashJournal(&again)
		if err != nil {
			t.Fatalf("the journal written again does not parse: %v\n%s", err, again.String())
		}
		if !k.Run.Start.Equal(j.Run.Start) || k.Ended != j.Ended || !slices.Equal(k.Acks, j.Acks) || !slices.Equal(k.Flushes, j.Flushes) {
			t.Fatalf("written again, %+v became %+v", j, k)
		}
		k.Run.Start, j.Run.Start = time.Time{}, time.Time{}
		if k.Run != j.Run {
			t.Fatalf("run %+v became %+v", j.Run, k.Run)
		}
	})
}

// FuzzCrashClassify classifies any block: a block is intact exactly when
// it is what the pattern wrote, every sector is counted once, a lost block
// holds none of the write, and changing one byte of a written block makes
// it not intact.
func FuzzCrashClassify(f *testing.F) {
	f.Add([]byte{}, uint64(1), uint64(0), uint8(3), uint16(0), byte(0))
	f.Add(crashBlock(5, 2, 2048, 2), uint64(5), uint64(2), uint8(1), uint16(600), byte(1))
	f.Add(crashBlock(5, 2, 2048, 2), uint64(6), uint64(2), uint8(1), uint16(3), byte(0x80))
	f.Add(bytes.Repeat([]byte{0xff}, 512), uint64(0), uint64(1<<40), uint8(0), uint16(45), byte(2))
	f.Fuzz(func(t *testing.T, data []byte, run, block uint64, sectors uint8, flip uint16, xor byte) {
		n := int(sectors%8) + 1
		off := int64(block&(1<<40-1)) * aoe.SectorSize
		p := CrashPattern{Run: run}
		want := crashBlock(run, block, off, n)
		if c := p.Classify(want, block, off); c.State != CrashIntact || c.Sectors.Intact != n {
			t.Fatalf("the pattern itself: %+v", c)
		}

		b := make([]byte, n*aoe.SectorSize)
		copy(b, data)
		c := p.Classify(b, block, off)
		s := c.Sectors
		if s.Intact+s.Zero+s.OtherRun+s.Foreign+s.Corrupt+s.Misplaced != n {
			t.Fatalf("%d sectors counted as %+v", n, s)
		}
		if (c.State == CrashIntact) != bytes.Equal(b, want) {
			t.Fatalf("state %v, equal to the pattern %v", c.State, bytes.Equal(b, want))
		}
		if c.State == CrashLost && (s.Intact > 0 || s.Corrupt > 0 || s.Misplaced > 0) {
			t.Fatalf("lost, yet %+v", s)
		}

		if xor != 0 {
			m := bytes.Clone(want)
			m[int(flip)%len(m)] ^= xor
			c := p.Classify(m, block, off)
			if c.State == CrashIntact || (n > 1 && c.State != CrashTorn) {
				t.Fatalf("byte %d changed in %d sectors: %+v", int(flip)%len(m), n, c)
			}
		}
	})
}
