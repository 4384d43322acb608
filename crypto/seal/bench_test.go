package seal_test

// Micro-benchmarks of the sealing layer's hot paths, over in-memory links
// that do nothing: what a frame costs to seal and open, without a network.
//
//	go test -run '^$' -bench . -benchmem ./crypto/seal/
//
// Every name here starts with bench (or Benchmark, or TestHotPath) so that
// it cannot clash with the package's other test files.

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"testing"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/crypto/seal"
)

var (
	benchTargetMAC    = aoe.MAC{0x02, 0xbe, 0, 0, 0, 0x01}
	benchInitiatorMAC = aoe.MAC{0x02, 0xbe, 0, 0, 0, 0x02}
	benchDev          = seal.DeviceAddr{Shelf: 1, Slot: 0}
)

// benchLink is a trivial in-memory aoe.Link: ReadFrame returns the frame
// put in next, once, and then fails as a read past its deadline would;
// WriteFrame copies the frame into last, so that a test can hand it to the
// other side, or drops it when last is nil. It allocates nothing.
type benchLink struct {
	mac  aoe.MAC
	mtu  int
	next []byte // returned by the next ReadFrame; nil when there is none
	last []byte // the last frame written, in storage of its own
	buf  []byte
}

func newBenchLink(mac aoe.MAC, mtu int) *benchLink {
	return &benchLink{mac: mac, mtu: mtu, buf: make([]byte, 9216+64)}
}

func (l *benchLink) ReadFrame(b []byte) (int, error) {
	if l.next == nil {
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(b, l.next)
	l.next = nil
	return n, nil
}

func (l *benchLink) WriteFrame(b []byte) error {
	l.last = l.buf[:copy(l.buf, b)]
	return nil
}

func (l *benchLink) MTU() int              { return l.mtu }
func (l *benchLink) HardwareAddr() aoe.MAC { return l.mac }
func (l *benchLink) Close() error          { return nil }

// benchBatchLink is a benchLink that moves frames in batches (of one), as
// a rawlink.Link does: a layer on it takes its batch paths, the ones ironblade
// serves on.
type benchBatchLink struct{ *benchLink }

func (l benchBatchLink) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	n, err := l.ReadFrame(bufs[0])
	if err != nil {
		return 0, err
	}
	lens[0] = n
	return 1, nil
}

func (l benchBatchLink) WriteFrames(frames [][]byte) (int, error) {
	for _, f := range frames {
		_ = l.WriteFrame(f)
	}
	return len(frames), nil
}

// benchCase is one frame size: a request of one frame's sectors at an MTU.
type benchCase struct {
	name    string
	mtu     int
	sectors int
}

// benchCases are the frames of MTU 1500 (2 sectors, 1 KiB of data: a
// 1060-byte read response) and MTU 9000 (17 sectors, 8.5 KiB: 8740 bytes).
var benchCases = []benchCase{{"1KiB", 1500, 2}, {"8.7KiB", 9000, 17}}

// benchRig is a TargetLink and an InitiatorLink, each on a benchLink, with
// a session up between them and a request and its response ready.
type benchRig struct {
	tlink, ilink *benchLink
	target       *seal.TargetLink
	initiator    *seal.InitiatorLink
	req, resp    []byte // plain request and response
	tbuf, ibuf   []byte // read buffers of each side
	batch        bool   // the layers are on benchBatchLinks
	batchBufs    [][]byte
	batchLens    []int
	batchOut     [][]byte
}

// benchSuites are the suites measured: HMAC-SHA256 (the default) and
// AES-256-GCM (the initiator asks for it).
var benchSuites = []struct {
	name    string
	encrypt bool
}{{"hmac", false}, {"aesgcm", true}}

// newBenchRig sets up the two layers, shuttles the handshake between them
// and prepares a read or write request of c's size and its response. With
// encrypt the session's suite is AES-256-GCM, else HMAC-SHA256.
func newBenchRig(tb testing.TB, c benchCase, write, batch, encrypt bool) *benchRig {
	tb.Helper()
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i * 7)
	}
	key, err := seal.NewKey(secret, "bench")
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	r := &benchRig{tlink: newBenchLink(benchTargetMAC, c.mtu), ilink: newBenchLink(benchInitiatorMAC, c.mtu),
		tbuf: make([]byte, 9216+64), ibuf: make([]byte, 9216+64), batch: batch}
	var tl, il aoe.Link = r.tlink, r.ilink
	if batch {
		tl, il = benchBatchLink{r.tlink}, benchBatchLink{r.ilink}
	}
	if r.target, err = seal.NewTargetLink(tl, seal.TargetConfig{Exports: []seal.Export{{Device: benchDev, Keys: []seal.Key{key}}}, Logger: log}); err != nil {
		tb.Fatal(err)
	}
	if r.initiator, err = seal.NewInitiatorLink(il, seal.InitiatorConfig{DefaultKey: key, Encrypt: encrypt, Logger: log}); err != nil {
		tb.Fatal(err)
	}
	r.batchBufs, r.batchLens, r.batchOut = make([][]byte, 1), make([]int, 1), make([][]byte, 1)

	// A plain Query Config answer from the target starts the handshake;
	// each side's read takes the other's last frame.
	qc := aoe.Frame{Dst: benchInitiatorMAC, Src: benchTargetMAC, Header: aoe.Header{Version: aoe.Version,
		Flags: aoe.FlagResponse, Major: benchDev.Shelf, Minor: benchDev.Slot, Command: aoe.CommandQueryConfig, Tag: 1},
		Arg: make([]byte, aoe.ConfigHeaderLen)}
	b, err := qc.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	r.ilink.next = b
	r.readInitiator() // sends hello
	for step, name := range []string{"hello", "challenge", "finish", "accept"} {
		var from, to *benchLink
		var read func() int
		if step%2 == 0 {
			from, to, read = r.ilink, r.tlink, r.readTarget
		} else {
			from, to, read = r.tlink, r.ilink, r.readInitiator
		}
		if from.last == nil || aoe.Command(from.last[19]) != seal.CommandHandshake {
			tb.Fatalf("handshake: no %s sent", name)
		}
		to.next, from.last = from.last, nil
		if n := read(); n != 0 {
			tb.Fatalf("handshake: %s went up as a frame", name)
		}
	}
	if !r.initiator.Proven(benchTargetMAC, benchDev) {
		tb.Fatalf("handshake: no session; initiator %+v, target %+v", r.initiator.Stats(), r.target.Stats())
	}
	r.ilink.last = nil // the initiator's authenticated Query Config: not needed

	a := aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: uint8(c.sectors), CmdStatus: aoe.ATAReadSectorsExt, LBA: 4096}
	if write {
		a.Flags |= aoe.ATAFlagWrite
		a.CmdStatus = aoe.ATAWriteSectorsExt
		a.Data = make([]byte, c.sectors*aoe.SectorSize)
		for i := range a.Data {
			a.Data[i] = byte(i)
		}
	}
	arg, err := a.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	req := aoe.Frame{Dst: benchTargetMAC, Src: benchInitiatorMAC, Header: aoe.Header{Version: aoe.Version,
		Major: benchDev.Shelf, Minor: benchDev.Slot, Command: aoe.CommandATA, Tag: 0x80001234}, Arg: arg}
	if r.req, err = req.MarshalBinary(); err != nil {
		tb.Fatal(err)
	}
	ra := aoe.ATA{Flags: a.Flags, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}
	if !write {
		ra.Data = make([]byte, c.sectors*aoe.SectorSize)
		for i := range ra.Data {
			ra.Data[i] = byte(3 * i)
		}
	}
	if arg, err = ra.MarshalBinary(); err != nil {
		tb.Fatal(err)
	}
	resp := aoe.Frame{Dst: benchInitiatorMAC, Src: benchTargetMAC, Header: req.Header, Arg: arg}
	resp.Flags |= aoe.FlagResponse
	if r.resp, err = resp.MarshalBinary(); err != nil {
		tb.Fatal(err)
	}
	if len(r.req)+seal.Overhead > c.mtu+aoe.EthernetHeaderLen || len(r.resp)+seal.Overhead > c.mtu+aoe.EthernetHeaderLen {
		tb.Fatalf("%s: sealed frames of %d and %d bytes do not fit MTU %d", c.name, len(r.req), len(r.resp), c.mtu)
	}
	// One round trip, checked, before anything is measured.
	r.sendRequest()
	want := seal.SuiteHMAC
	if encrypt {
		want = seal.SuiteAESGCM
	}
	if len(r.ilink.last) < aoe.FrameHeaderLen+seal.HeaderLen || seal.Suite(r.ilink.last[aoe.FrameHeaderLen+2]) != want {
		tb.Fatalf("the request went out without the seal header of %v: % x", want, r.ilink.last)
	}
	if n := r.targetRound(); n != len(r.req) {
		tb.Fatalf("target opened %d bytes, want %d; stats %+v", n, len(r.req), r.target.Stats())
	}
	if n := r.initiatorRead(); n != len(r.resp) || string(r.ibuf[aoe.FrameHeaderLen:n]) != string(r.resp[aoe.FrameHeaderLen:]) {
		tb.Fatalf("initiator opened %d bytes, want %d, the response; stats %+v", n, len(r.resp), r.initiator.Stats())
	}
	return r
}

// readTarget and readInitiator read what their link holds through the
// layer: the length of the frame that went up, 0 if none did.
func (r *benchRig) readTarget() int {
	n, err := r.target.ReadFrame(r.tbuf)
	if err != nil {
		return 0
	}
	return n
}

func (r *benchRig) readInitiator() int {
	n, err := r.initiator.ReadFrame(r.ibuf)
	if err != nil {
		return 0
	}
	return n
}

// sendRequest seals the request through the initiator layer.
func (r *benchRig) sendRequest() {
	_ = r.initiator.WriteFrame(r.req)
}

// targetRound opens the sealed request the initiator sent last through
// the target layer and seals the response to it; it returns the length of
// the opened request (0 if it was refused). With a batch link it takes the
// batch paths.
func (r *benchRig) targetRound() int {
	if r.tlink.next = r.ilink.last; r.tlink.next == nil {
		return 0
	}
	var n int
	if r.batch {
		r.batchBufs[0] = r.tbuf
		k, err := r.target.ReadFrames(r.batchBufs, r.batchLens)
		if err != nil || k != 1 {
			return 0
		}
		n = r.batchLens[0]
	} else if n = r.readTarget(); n == 0 {
		return 0
	}
	copy(r.resp[20:24], r.tbuf[20:24]) // the tag the layer gave the request
	if r.batch {
		r.batchOut[0] = r.resp
		_, _ = r.target.WriteFrames(r.batchOut)
	} else {
		_ = r.target.WriteFrame(r.resp)
	}
	return n
}

// initiatorRead opens the sealed response the target sent last through
// the initiator layer and returns its length (0 if it was refused).
func (r *benchRig) initiatorRead() int {
	r.ilink.next = r.tlink.last
	if r.ilink.next == nil {
		return 0
	}
	if r.batch {
		r.batchBufs[0] = r.ibuf
		k, err := r.initiator.ReadFrames(r.batchBufs, r.batchLens)
		if err != nil || k != 1 {
			return 0
		}
		return r.batchLens[0]
	}
	return r.readInitiator()
}

// benchBatchSize is how many sealed frames a benchmark prepares at a time,
// with its timer stopped: a sealed frame is good once (its number is
// recorded), so the side measured needs fresh ones from the other side.
const benchBatchSize = 1024

// benchPrepared runs b.N steps, each on the next of benchBatchSize frames
// of size bytes that next (called with the timer stopped) makes: a sealed
// frame is good once, so the side measured needs fresh ones.
func benchPrepared(b *testing.B, sectors, size int, next func() []byte, step func(frame []byte)) {
	frames := make([][]byte, benchBatchSize)
	for i := range frames {
		frames[i] = make([]byte, size)
	}
	b.SetBytes(int64(sectors * aoe.SectorSize))
	b.ReportAllocs()
	n := len(frames)
	b.ResetTimer()
	for range b.N {
		if n == len(frames) {
			b.StopTimer()
			for i := range frames {
				frames[i] = frames[i][:copy(frames[i][:cap(frames[i])], next())]
			}
			n = 0
			b.StartTimer()
		}
		step(frames[n])
		n++
	}
}

// benchTarget measures the target layer: opening a sealed request
// (ReadFrame) and sealing its response (WriteFrame).
func benchTarget(b *testing.B, c benchCase, write, batch, encrypt bool) {
	r := newBenchRig(b, c, write, batch, encrypt)
	benchPrepared(b, c.sectors, len(r.req)+seal.Overhead,
		func() []byte {
			r.sendRequest()
			return r.ilink.last
		},
		func(req []byte) {
			r.ilink.last = req
			if r.targetRound() == 0 {
				b.Fatalf("request refused: %+v", r.target.Stats())
			}
		})
}

// benchInitiator measures the initiator layer: sealing a request
// (WriteFrame) and opening a sealed response (ReadFrame).
func benchInitiator(b *testing.B, c benchCase, write, batch, encrypt bool) {
	r := newBenchRig(b, c, write, batch, encrypt)
	benchPrepared(b, c.sectors, len(r.resp)+seal.Overhead,
		func() []byte {
			r.sendRequest()
			if r.targetRound() == 0 {
				b.Fatalf("request refused: %+v", r.target.Stats())
			}
			return r.tlink.last
		},
		func(resp []byte) {
			if batch {
				r.batchOut[0] = r.req
				_, _ = r.initiator.WriteFrames(r.batchOut)
			} else {
				r.sendRequest()
			}
			r.tlink.last = resp
			if r.initiatorRead() == 0 {
				b.Fatalf("response refused: %+v", r.initiator.Stats())
			}
		})
}

func benchOps() []struct {
	name  string
	write bool
} {
	return []struct {
		name  string
		write bool
	}{{"read", false}, {"write", true}}
}

// benchAll runs fn for every suite, frame size and operation.
func benchAll(b *testing.B, fn func(b *testing.B, c benchCase, write, encrypt bool)) {
	for _, su := range benchSuites {
		for _, c := range benchCases {
			for _, op := range benchOps() {
				b.Run(fmt.Sprintf("%s/%s/%s", su.name, c.name, op.name), func(b *testing.B) { fn(b, c, op.write, su.encrypt) })
			}
		}
	}
}

// BenchmarkTarget: one sealed request opened and its response sealed by
// the target layer. read: a small request, a response of the case's size;
// write: the other way round.
func BenchmarkTarget(b *testing.B) {
	benchAll(b, func(b *testing.B, c benchCase, write, encrypt bool) { benchTarget(b, c, write, false, encrypt) })
}

// BenchmarkTargetBatch is BenchmarkTarget through ReadFrames and
// WriteFrames, the paths ironblade serves on with a rawlink.Link beneath.
func BenchmarkTargetBatch(b *testing.B) {
	benchAll(b, func(b *testing.B, c benchCase, write, encrypt bool) { benchTarget(b, c, write, true, encrypt) })
}

// BenchmarkInitiator: one request sealed and a sealed response opened by
// the initiator layer.
func BenchmarkInitiator(b *testing.B) {
	benchAll(b, func(b *testing.B, c benchCase, write, encrypt bool) { benchInitiator(b, c, write, false, encrypt) })
}

// BenchmarkInitiatorBatch is BenchmarkInitiator through WriteFrames and
// ReadFrames, the paths ironbench's load generator uses.
func BenchmarkInitiatorBatch(b *testing.B) {
	benchAll(b, func(b *testing.B, c benchCase, write, encrypt bool) { benchInitiator(b, c, write, true, encrypt) })
}

// BenchmarkHMACSHA256 is the floor: the tag of a frame of each size
// computed with a reused HMAC state, as the layer does (Reset, Write,
// Sum), and nothing else.
func BenchmarkHMACSHA256(b *testing.B) {
	for _, size := range []int{aoe.MinFrameLen + seal.HeaderLen, 24 + 12 + 1024 + seal.HeaderLen, 24 + 12 + 8704 + seal.HeaderLen} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			msg := make([]byte, size)
			m := hmac.New(sha256.New, make([]byte, 32))
			var sum [sha256.Size]byte
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				m.Reset()
				m.Write(msg)
				m.Sum(sum[:0])
			}
		})
	}
}

// TestHotPathAllocs checks that sealing and opening allocate nothing per
// frame, on both sides, single and batch paths: TargetLink.ReadFrame of a
// sealed request and WriteFrame of its response; InitiatorLink.WriteFrame
// of a request and ReadFrame of a sealed response.
func TestHotPathAllocs(t *testing.T) {
	if benchRaceEnabled() {
		t.Skip("the race detector makes sync.Pool drop buffers at random, so the layers' pooled buffers are made again")
	}
	const runs = 200
	for _, su := range benchSuites {
		for _, c := range benchCases {
			for _, op := range benchOps() {
				for _, batch := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s/%s", su.name, c.name, op.name)
					if batch {
						name += "/batch"
					}
					t.Run(name, func(t *testing.T) { benchCheckAllocs(t, c, op.write, batch, su.encrypt, runs) })
				}
			}
		}
	}
}

// benchRaceEnabled reports whether the test binary was built with -race.
func benchRaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// benchCheckAllocs is one case of TestHotPathAllocs.
func benchCheckAllocs(t *testing.T, c benchCase, write, batch, encrypt bool, runs int) {
	r := newBenchRig(t, c, write, batch, encrypt)
	// The target's side: sealed requests made beforehand,
	// one per run (and one for AllocsPerRun's warm-up).
	reqs := make([][]byte, runs+1)
	for i := range reqs {
		r.sendRequest()
		reqs[i] = append([]byte(nil), r.ilink.last...)
	}
	i := 0
	if n := testing.AllocsPerRun(runs, func() {
		r.ilink.last = reqs[i]
		i++
		if r.targetRound() == 0 {
			t.Fatal("request refused")
		}
	}); n != 0 {
		t.Errorf("target: open a sealed request and seal its response: %v allocations per frame, want 0", n)
	}
	// The initiator's side: sealed responses to requests
	// sent beforehand.
	resps := make([][]byte, runs+1)
	for i := range resps {
		r.sendRequest()
		if r.targetRound() == 0 {
			t.Fatal("request refused")
		}
		resps[i] = append([]byte(nil), r.tlink.last...)
	}
	i = 0
	if n := testing.AllocsPerRun(runs, func() {
		if batch {
			r.batchOut[0] = r.req
			_, _ = r.initiator.WriteFrames(r.batchOut)
		} else {
			r.sendRequest()
		}
		r.tlink.last = resps[i]
		i++
		if r.initiatorRead() == 0 {
			t.Fatal("response refused")
		}
	}); n != 0 {
		t.Errorf("initiator: seal a request and open a sealed response: %v allocations per frame, want 0", n)
	}
}
