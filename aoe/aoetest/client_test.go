package aoetest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
)

var (
	clientMAC  = aoe.MAC{0x02, 0xc1, 0, 0, 0, 1}
	targetMAC  = aoe.MAC{0x02, 0x7a, 0, 0, 0, 1}
	targetMAC2 = aoe.MAC{0x02, 0x7a, 0, 0, 0, 2}
)

// fakeTarget is a minimal AoE target for the client's tests: an in-memory
// disk that answers Query Config, IDENTIFY, READ/WRITE SECTORS EXT and
// FLUSH CACHE EXT the way vblade does, and ABRT to other ATA commands.
type fakeTarget struct {
	port         *aoetest.Port
	shelf        uint16
	slot         uint8
	config       []byte
	noLBA48      bool // IDENTIFY reports only the LBA28 size (words 60-61)
	ataRequests  atomic.Int64
	flushes      atomic.Int64
	sectors      uint64 // the size IDENTIFY reports
	mu           sync.Mutex
	disk         []byte // the first sectors; the rest reads as zeros
	lastATAFlags aoe.ATAFlags
}

type targetOptions struct {
	mac     aoe.MAC
	shelf   uint16
	slot    uint8
	sectors int
	config  string
	noLBA48 bool
	// filter, if set, sees every frame the target is about to receive
	// and drops it by returning false.
	filter func(frame []byte) bool
}

func startTarget(t testing.TB, hub *aoetest.Hub, o targetOptions) *fakeTarget {
	t.Helper()
	ft := &fakeTarget{
		port:    hub.Port(o.mac, 1500),
		shelf:   o.shelf,
		slot:    o.slot,
		config:  []byte(o.config),
		noLBA48: o.noLBA48,
		sectors: uint64(o.sectors),
		disk:    make([]byte, min(o.sectors, 1<<16)*aoe.SectorSize),
	}
	ft.port.Filter = o.filter
	done := make(chan struct{})
	go func() {
		defer close(done)
		ft.serve()
	}()
	t.Cleanup(func() {
		ft.port.Close()
		<-done
	})
	return ft
}

// announce sends what vblade sends at start: a Config answer with tag 0 to
// the broadcast address.
func (ft *fakeTarget) announce() error {
	out := make([]byte, 2048)
	req := aoe.Frame{Src: aoe.BroadcastMAC, Header: aoe.Header{Version: 1, Command: aoe.CommandQueryConfig}}
	n := ft.answerConfig(&req, out)
	return ft.port.WriteFrame(out[:n])
}

func (ft *fakeTarget) serve() {
	in := make([]byte, 1<<16)
	out := make([]byte, 1<<16)
	for {
		n, err := ft.port.ReadFrame(in)
		if err != nil {
			return
		}
		var f aoe.Frame
		if f.UnmarshalBinary(in[:n]) != nil || f.IsResponse() ||
			(f.Major != ft.shelf && f.Major != aoe.BroadcastMajor) || (f.Minor != ft.slot && f.Minor != aoe.BroadcastMinor) {
			continue
		}
		switch f.Command {
		case aoe.CommandQueryConfig:
			n = ft.answerConfig(&f, out)
		case aoe.CommandATA:
			n = ft.answerATA(&f, out)
		default:
			n = ft.answerError(&f, aoe.ErrorUnrecognizedCommand, out)
		}
		if n > 0 {
			_ = ft.port.WriteFrame(out[:n])
		}
	}
}

func (ft *fakeTarget) header(req *aoe.Frame, out []byte) {
	resp := aoe.Frame{Dst: req.Src, Src: ft.port.HardwareAddr(), Header: req.Header}
	resp.Flags = aoe.FlagResponse
	resp.Major, resp.Minor = ft.shelf, ft.slot
	if _, err := resp.MarshalHeaderTo(out); err != nil {
		panic(err)
	}
}

func (ft *fakeTarget) answerError(req *aoe.Frame, code aoe.Error, out []byte) int {
	ft.header(req, out)
	out[aoe.EthernetHeaderLen] |= byte(aoe.FlagError)
	out[aoe.EthernetHeaderLen+1] = byte(code)
	return aoe.FrameHeaderLen + copy(out[aoe.FrameHeaderLen:], req.Arg)
}

func (ft *fakeTarget) answerConfig(req *aoe.Frame, out []byte) int {
	ft.header(req, out)
	c := aoe.Config{BufferCount: 16, FirmwareVersion: 0x4019, SectorCount: uint8(aoe.SectorsPerFrame(ft.port.MTU())), Version: 1, String: ft.config}
	n, err := c.MarshalTo(out[aoe.FrameHeaderLen:])
	if err != nil {
		panic(err)
	}
	return aoe.FrameHeaderLen + n
}

func (ft *fakeTarget) answerATA(req *aoe.Frame, out []byte) int {
	ft.ataRequests.Add(1)
	var a aoe.ATA
	if a.UnmarshalBinary(req.Arg) != nil {
		return ft.answerError(req, aoe.ErrorBadArgument, out)
	}
	ft.header(req, out)
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.lastATAFlags = a.Flags
	r := aoe.ATA{Flags: a.Flags, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}
	data := out[aoe.FrameHeaderLen+aoe.ATAHeaderLen:]
	n := 0
	sectors := ft.sectors
	switch a.CmdStatus {
	case aoe.ATAIdentifyDevice:
		if a.SectorCount != 1 {
			return ft.answerError(req, aoe.ErrorBadArgument, out)
		}
		n = aoe.SectorSize
		clear(data[:n])
		if !ft.noLBA48 {
			binary.LittleEndian.PutUint16(data[83*2:], 0x5400) // LBA48 supported
			binary.LittleEndian.PutUint64(data[100*2:], sectors)
		}
		binary.LittleEndian.PutUint32(data[60*2:], uint32(min(sectors, aoe.MaxLBA28)))
	case aoe.ATAReadSectorsExt, aoe.ATAWriteSectorsExt:
		count := int(a.SectorCount)
		if count > aoe.SectorsPerFrame(ft.port.MTU()) || (a.IsWrite() && len(a.Data) < count*aoe.SectorSize) {
			return ft.answerError(req, aoe.ErrorBadArgument, out)
		}
		if a.LBA+uint64(count) > sectors {
			r.CmdStatus |= aoe.ATAStatusError
			r.FeatureError = aoe.ATAErrorIDNF
			break
		}
		at := min(int(a.LBA)*aoe.SectorSize, len(ft.disk))
		end := min(at+count*aoe.SectorSize, len(ft.disk))
		if a.CmdStatus == aoe.ATAWriteSectorsExt {
			copy(ft.disk[at:end], a.Data)
		} else {
			n = count * aoe.SectorSize
			clear(data[copy(data, ft.disk[at:end]):n])
		}
	case aoe.ATAFlushCacheExt:
		ft.flushes.Add(1)
	default:
		r.CmdStatus |= aoe.ATAStatusError
		r.FeatureError = aoe.ATAErrorABRT
	}
	r.MarshalHeaderTo(out[aoe.FrameHeaderLen:])
	return aoe.FrameHeaderLen + aoe.ATAHeaderLen + n
}

// setup makes a hub with one target of the given size and a client.
func setup(t testing.TB, o targetOptions, co aoetest.ClientOptions) (*aoetest.Client, *fakeTarget, *aoetest.Port) {
	t.Helper()
	hub := aoetest.NewHub()
	if o.mac.IsZero() {
		o.mac = targetMAC
	}
	ft := startTarget(t, hub, o)
	port := hub.Port(clientMAC, 1500)
	c := aoetest.NewClient(port, co)
	t.Cleanup(func() { c.Close() })
	return c, ft, port
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func discoverOne(t testing.TB, c *aoetest.Client) aoetest.Device {
	t.Helper()
	devs, err := c.Discover(ctxT(t), 50*time.Millisecond)
	if err != nil || len(devs) != 1 {
		t.Fatalf("Discover: %v, %v", devs, err)
	}
	d := devs[0]
	if _, err := c.Identify(ctxT(t), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDiscoverIdentify(t *testing.T) {
	hub := aoetest.NewHub()
	startTarget(t, hub, targetOptions{mac: targetMAC2, shelf: 7, slot: 1, sectors: 1000, config: "second"})
	startTarget(t, hub, targetOptions{mac: targetMAC, shelf: 3, slot: 9, sectors: 2048, config: "first"})
	startTarget(t, hub, targetOptions{mac: aoe.MAC{2, 0x7a, 0, 0, 0, 3}, shelf: 3, slot: 2, sectors: 1 << 29, noLBA48: true})
	c := aoetest.NewClient(hub.Port(clientMAC, 1500), aoetest.ClientOptions{})
	t.Cleanup(func() { c.Close() })

	devs, err := c.Discover(ctxT(t), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 3 {
		t.Fatalf("found %v", devs)
	}
	for i, want := range []struct {
		mac     aoe.MAC
		shelf   uint16
		slot    uint8
		config  string
		sectors uint64
	}{
		{aoe.MAC{2, 0x7a, 0, 0, 0, 3}, 3, 2, "", aoe.MaxLBA28}, // LBA28 caps the size
		{targetMAC, 3, 9, "first", 2048},
		{targetMAC2, 7, 1, "second", 1000},
	} {
		d := devs[i]
		if d.MAC != want.mac || d.Shelf != want.shelf || d.Slot != want.slot || string(d.Config.String) != want.config ||
			d.SectorsPerFrame != 2 || d.Config.BufferCount != 16 || d.Config.Version != 1 {
			t.Errorf("device %d: %+v, want %+v", i, d, want)
		}
		id, err := c.Identify(ctxT(t), &d)
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 512 || d.Sectors != want.sectors {
			t.Errorf("device %d: identify %d bytes, %d sectors, want %d", i, len(id), d.Sectors, want.sectors)
		}
	}
	if s := devs[1].String(); s != "e3.9@02:7a:00:00:00:01" {
		t.Errorf("String %q", s)
	}
}

func TestDiscoverSmallMTU(t *testing.T) {
	hub := aoetest.NewHub()
	startTarget(t, hub, targetOptions{mac: targetMAC, shelf: 1, slot: 1, sectors: 64})
	// The target offers 2 sectors a frame at MTU 1500, but the client's
	// link carries only one.
	c := aoetest.NewClient(hub.Port(clientMAC, 1024), aoetest.ClientOptions{})
	t.Cleanup(func() { c.Close() })
	d := discoverOne(t, c)
	if d.SectorsPerFrame != 1 {
		t.Fatalf("SectorsPerFrame %d, want 1", d.SectorsPerFrame)
	}
	p := bytes.Repeat([]byte{9}, 4096)
	if err := c.WriteAt(ctxT(t), d, p, 0, 4); err != nil {
		t.Fatal(err)
	}
}

func TestReadWrite(t *testing.T) {
	size := 2 << 20
	if testing.Short() {
		size = 512 << 10
	}
	for _, qd := range []int{1, 16, 64} {
		t.Run(fmt.Sprint("qd", qd), func(t *testing.T) {
			c, ft, _ := setup(t, targetOptions{shelf: 1, slot: 2, sectors: size / 512}, aoetest.ClientOptions{})
			d := discoverOne(t, c)
			want := make([]byte, size)
			rnd := rand.NewChaCha8([32]byte{byte(qd)})
			rnd.Read(want)
			if err := c.WriteAt(ctxT(t), d, want, 0, qd); err != nil {
				t.Fatal(err)
			}
			ft.mu.Lock()
			same := bytes.Equal(ft.disk, want)
			flags := ft.lastATAFlags
			ft.mu.Unlock()
			if !same {
				t.Fatal("disk differs from what was written")
			}
			if flags != aoe.ATAFlagExtended|aoe.ATAFlagWrite {
				t.Errorf("write flags %#x", flags)
			}
			got := make([]byte, size)
			if err := c.ReadAt(ctxT(t), d, got, 0, qd); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("read back differs")
			}
			// Odd pieces: 3 sectors (a frame and a half) at sector 5.
			part := make([]byte, 3*512)
			if err := c.ReadAt(ctxT(t), d, part, 5*512, qd); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(part, want[5*512:8*512]) {
				t.Fatal("partial read differs")
			}
			if err := c.ReadAt(ctxT(t), d, nil, 0, qd); err != nil {
				t.Fatalf("empty read: %v", err)
			}
		})
	}
}

func TestConcurrentTransfers(t *testing.T) {
	const each = 128 << 10
	c, _, _ := setup(t, targetOptions{shelf: 1, slot: 2, sectors: 8 * each / 512}, aoetest.ClientOptions{})
	d := discoverOne(t, c)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			want := bytes.Repeat([]byte{byte(g + 1)}, each)
			got := make([]byte, each)
			off := int64(g * each)
			if err := c.WriteAt(ctxT(t), d, want, off, 8); err != nil {
				errs <- err
				return
			}
			if err := c.ReadAt(ctxT(t), d, got, off, 8); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, want) {
				errs <- fmt.Errorf("goroutine %d read back other data", g)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestTransferArgs(t *testing.T) {
	c, _, _ := setup(t, targetOptions{shelf: 1, slot: 2, sectors: 64}, aoetest.ClientOptions{})
	d := discoverOne(t, c)
	bad := d
	bad.SectorsPerFrame = 0
	for _, tc := range []struct {
		name string
		d    aoetest.Device
		p    []byte
		off  int64
		qd   int
	}{
		{"odd length", d, make([]byte, 100), 0, 1},
		{"odd offset", d, make([]byte, 512), 7, 1},
		{"negative offset", d, make([]byte, 512), -512, 1},
		{"zero qd", d, make([]byte, 512), 0, 0},
		{"no sectors per frame", bad, make([]byte, 512), 0, 1},
		{"beyond LBA48", d, make([]byte, 1024), (aoe.MaxLBA) * 512, 1},
	} {
		if err := c.ReadAt(ctxT(t), tc.d, tc.p, tc.off, tc.qd); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// dropper returns a port filter that drops the first transmission of every
// third ATA request, and counts what it dropped.
func dropper(dropped *atomic.Int64) func([]byte) bool {
	var mu sync.Mutex
	seen := make(map[uint32]bool)
	n := 0
	return func(b []byte) bool {
		var f aoe.Frame
		if f.UnmarshalBinary(b) != nil || f.Command != aoe.CommandATA {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[f.Tag] {
			return true
		}
		seen[f.Tag] = true
		n++
		if n%3 == 0 {
			dropped.Add(1)
			return false
		}
		return true
	}
}

func TestRetransmit(t *testing.T) {
	for _, side := range []string{"request", "answer"} {
		t.Run(side, func(t *testing.T) {
			var dropped atomic.Int64
			hub := aoetest.NewHub()
			o := targetOptions{mac: targetMAC, shelf: 1, slot: 1, sectors: 256}
			if side == "request" {
				o.filter = dropper(&dropped)
			}
			ft := startTarget(t, hub, o)
			port := hub.Port(clientMAC, 1500)
			if side == "answer" {
				port.Filter = dropper(&dropped)
			}
			c := aoetest.NewClient(port, aoetest.ClientOptions{Timeout: 20 * time.Millisecond})
			t.Cleanup(func() { c.Close() })
			d := discoverOne(t, c)

			want := make([]byte, 128*512)
			rand.NewChaCha8([32]byte{1}).Read(want)
			if err := c.WriteAt(ctxT(t), d, want, 0, 16); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want))
			if err := c.ReadAt(ctxT(t), d, got, 0, 16); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("read back differs")
			}
			if dropped.Load() < 20 {
				t.Fatalf("only %d frames dropped", dropped.Load())
			}
			// A lost request is sent again and reaches the target once; a
			// lost answer costs the target one more request. A slow
			// machine may add a few needless retransmissions.
			requests := int64(1 + 2*64) // identify + 64 write + 64 read frames
			if side == "answer" {
				requests += dropped.Load()
			}
			if got := ft.ataRequests.Load(); got < requests || got > requests+10 {
				t.Errorf("target saw %d ATA requests, want %d", got, requests)
			}
		})
	}
}

func TestNoResponse(t *testing.T) {
	var sent atomic.Int64
	drop := false
	var dropMu sync.Mutex
	c, _, _ := setup(t, targetOptions{shelf: 1, slot: 1, sectors: 64, filter: func(b []byte) bool {
		dropMu.Lock()
		defer dropMu.Unlock()
		if drop {
			sent.Add(1)
		}
		return !drop
	}}, aoetest.ClientOptions{Timeout: 10 * time.Millisecond, Retries: 2})
	d := discoverOne(t, c)
	dropMu.Lock()
	drop = true
	dropMu.Unlock()

	start := time.Now()
	err := c.ReadAt(ctxT(t), d, make([]byte, 512), 0, 1)
	if !errors.Is(err, aoe.ErrNoResponse) {
		t.Fatalf("got %v, want ErrNoResponse", err)
	}
	if n := sent.Load(); n != 3 {
		t.Errorf("%d transmissions, want 3 (1 + 2 retries)", n)
	}
	if e := time.Since(start); e < 30*time.Millisecond || e > 2*time.Second {
		t.Errorf("gave up after %v", e)
	}
	t.Log(err)
}

func TestNoRetries(t *testing.T) {
	var sent atomic.Int64
	c, _, _ := setup(t, targetOptions{shelf: 1, slot: 1, sectors: 64, filter: func([]byte) bool { sent.Add(1); return false }},
		aoetest.ClientOptions{Timeout: 10 * time.Millisecond, Retries: -1})
	d := aoetest.Device{MAC: targetMAC, Shelf: 1, Slot: 1, SectorsPerFrame: 2}
	if err := c.WriteAt(ctxT(t), d, make([]byte, 4096), 0, 4); !errors.Is(err, aoe.ErrNoResponse) {
		t.Fatalf("got %v", err)
	}
	if n := sent.Load(); n != 4 {
		t.Errorf("%d transmissions, want 4 (one per frame)", n)
	}
}

func TestErrors(t *testing.T) {
	c, _, _ := setup(t, targetOptions{shelf: 1, slot: 1, sectors: 64}, aoetest.ClientOptions{})
	d := discoverOne(t, c)

	t.Run("read past the end", func(t *testing.T) {
		err := c.ReadAt(ctxT(t), d, make([]byte, 4*512), 62*512, 2)
		var ae *aoetest.ATAError
		if !errors.As(err, &ae) {
			t.Fatalf("got %v, want an ATAError", err)
		}
		if ae.Command != aoe.ATAReadSectorsExt || ae.Status&aoe.ATAStatusError == 0 || ae.Err != aoe.ATAErrorIDNF || ae.LBA != 64 {
			t.Errorf("%+v", ae)
		}
		t.Log(err)
	})
	t.Run("write past the end", func(t *testing.T) {
		var ae *aoetest.ATAError
		if err := c.WriteAt(ctxT(t), d, make([]byte, 512), 64*512, 1); !errors.As(err, &ae) || ae.Err != aoe.ATAErrorIDNF {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unknown ATA command", func(t *testing.T) {
		resp, err := c.ATA(ctxT(t), d, aoe.ATA{CmdStatus: 0x99})
		var ae *aoetest.ATAError
		if !errors.As(err, &ae) || ae.Err != aoe.ATAErrorABRT || ae.Command != 0x99 {
			t.Fatalf("got %v", err)
		}
		if resp.CmdStatus != aoe.ATAStatusDRDY|aoe.ATAStatusError {
			t.Errorf("registers %+v", resp)
		}
	})
	t.Run("too many sectors", func(t *testing.T) {
		big := d
		big.SectorsPerFrame = 4
		err := c.ReadAt(ctxT(t), big, make([]byte, 4*512), 0, 1)
		if !errors.Is(err, aoe.ErrorBadArgument) {
			t.Fatalf("got %v, want ErrorBadArgument", err)
		}
	})
	t.Run("unknown AoE command", func(t *testing.T) {
		resp, err := c.Do(ctxT(t), d.MAC, aoe.Header{Major: 1, Minor: 1, Command: 0xf5}, []byte("hi"))
		if !errors.Is(err, aoe.ErrorUnrecognizedCommand) {
			t.Fatalf("got %v", err)
		}
		if resp.Error != aoe.ErrorUnrecognizedCommand || resp.Command != 0xf5 || resp.Src != targetMAC {
			t.Errorf("answer %+v", resp)
		}
	})
	t.Run("flush", func(t *testing.T) {
		if err := c.Flush(ctxT(t), d); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFlush(t *testing.T) {
	c, ft, _ := setup(t, targetOptions{shelf: 1, slot: 1, sectors: 64}, aoetest.ClientOptions{})
	d := discoverOne(t, c)
	if err := c.Flush(ctxT(t), d); err != nil {
		t.Fatal(err)
	}
	if n := ft.flushes.Load(); n != 1 {
		t.Fatalf("%d flushes", n)
	}
}

func TestDoAnswerIsCopied(t *testing.T) {
	c, _, _ := setup(t, targetOptions{shelf: 1, slot: 1, sectors: 64, config: "keep me"}, aoetest.ClientOptions{})
	resp, err := c.Do(ctxT(t), aoe.BroadcastMAC, aoe.Header{Major: aoe.BroadcastMajor, Minor: aoe.BroadcastMinor, Command: aoe.CommandQueryConfig}, make([]byte, 8))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Tag&aoe.TagUserland == 0 || resp.Version != 1 || !resp.IsResponse() {
		t.Errorf("answer header %+v", resp.Header)
	}
	// Churn the client's buffers; the answer must not change.
	d := discoverOne(t, c)
	for range 10 {
		if err := c.ReadAt(ctxT(t), d, make([]byte, 8192), 0, 4); err != nil {
			t.Fatal(err)
		}
	}
	var cfg aoe.Config
	if err := cfg.UnmarshalBinary(resp.Arg); err != nil || string(cfg.String) != "keep me" {
		t.Fatalf("config %q, %v", cfg.String, err)
	}
}

func TestTags(t *testing.T) {
	var mu sync.Mutex
	var tags []uint32
	c, _, _ := setup(t, targetOptions{shelf: 1, slot: 1, sectors: 64, filter: func(b []byte) bool {
		mu.Lock()
		tags = append(tags, binary.BigEndian.Uint32(b[20:24]))
		mu.Unlock()
		return true
	}}, aoetest.ClientOptions{TagBase: 1000})
	d := discoverOne(t, c)
	if err := c.ReadAt(ctxT(t), d, make([]byte, 16*512), 0, 4); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	seen := make(map[uint32]bool)
	for _, tag := range tags {
		if tag&aoe.TagUserland == 0 || tag&^aoe.TagUserland <= 1000 || seen[tag] {
			t.Errorf("tag %#x: TagUserland clear, below TagBase or repeated", tag)
		}
		seen[tag] = true
	}
	if len(tags) != 1+1+8 {
		t.Errorf("%d requests", len(tags))
	}
}

func TestExpectAnnounce(t *testing.T) {
	c, ft, _ := setup(t, targetOptions{shelf: 4, slot: 5, sectors: 64, config: "hello"}, aoetest.ClientOptions{})
	isAnnounce := aoetest.IsAnnouncement(targetMAC)
	// Sent before anyone waits: Expect finds it in the backlog.
	if err := ft.announce(); err != nil {
		t.Fatal(err)
	}
	f, err := c.Expect(ctxT(t), isAnnounce)
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.DeviceFrom(&f)
	if err != nil || d.Shelf != 4 || d.Slot != 5 || d.MAC != targetMAC || string(d.Config.String) != "hello" || f.Dst != aoe.BroadcastMAC {
		t.Fatalf("announce %+v -> %+v, %v", f, d, err)
	}
	// Consumed: a second Expect waits, and sees the next one.
	short, cancel := context.WithTimeout(ctxT(t), 30*time.Millisecond)
	defer cancel()
	if _, err := c.Expect(short, isAnnounce); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Expect: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := c.Expect(ctxT(t), isAnnounce)
		got <- err
	}()
	// The subject is an Expect already waiting when the frame comes, and
	// nothing outside the client shows that it waits: give it the time.
	time.Sleep(20 * time.Millisecond)
	if err := ft.announce(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeviceFrom(&aoe.Frame{Header: aoe.Header{Command: aoe.CommandATA}}); err == nil {
		t.Error("DeviceFrom accepted an ATA frame")
	}
}

func TestIsAnnouncement(t *testing.T) {
	announce := aoe.Frame{Src: targetMAC, Dst: aoe.BroadcastMAC, Header: aoe.Header{Flags: aoe.FlagResponse, Command: aoe.CommandQueryConfig}}
	isAnnounce := aoetest.IsAnnouncement(targetMAC)
	if !isAnnounce(&announce) {
		t.Error("an announcement does not match")
	}
	for name, change := range map[string]func(*aoe.Frame){
		"other source": func(f *aoe.Frame) { f.Src = targetMAC2 },
		"a request":    func(f *aoe.Frame) { f.Flags = 0 },
		"an answer":    func(f *aoe.Frame) { f.Tag = 7 },
		"ATA":          func(f *aoe.Frame) { f.Command = aoe.CommandATA },
	} {
		f := announce
		change(&f)
		if isAnnounce(&f) {
			t.Errorf("%s matches", name)
		}
	}
}

func TestSendRaw(t *testing.T) {
	c, _, _ := setup(t, targetOptions{shelf: 1, slot: 1, sectors: 64}, aoetest.ClientOptions{})
	// An unknown command with a tag of our own choosing (bit 31 clear, so
	// the answer is kept for Expect).
	f := aoe.Frame{Dst: targetMAC, Src: clientMAC, Header: aoe.Header{Version: 1, Major: 1, Minor: 1, Command: 0x42, Tag: 77}}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendRaw(b); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Expect(ctxT(t), func(f *aoe.Frame) bool { return f.Tag == 77 })
	if err != nil {
		t.Fatal(err)
	}
	if resp.Flags != aoe.FlagResponse|aoe.FlagError || resp.Error != aoe.ErrorUnrecognizedCommand {
		t.Fatalf("answer %+v", resp.Header)
	}
	if err := c.SendRaw([]byte{1, 2}); err == nil {
		t.Error("a 2-byte frame was sent")
	}
}

func TestCloseAndCancel(t *testing.T) {
	c, _, _ := setup(t, targetOptions{shelf: 1, slot: 1, sectors: 64, filter: func([]byte) bool { return false }},
		aoetest.ClientOptions{Timeout: time.Hour})
	d := aoetest.Device{MAC: targetMAC, Shelf: 1, Slot: 1, SectorsPerFrame: 2}

	ctx, cancel := context.WithCancel(ctxT(t))
	go func() {
		// Cancelled while the read waits for answers: the subject.
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	if err := c.ReadAt(ctx, d, make([]byte, 64*512), 0, 8); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}

	errs := make(chan error, 3)
	go func() { errs <- c.WriteAt(ctxT(t), d, make([]byte, 64*512), 0, 8) }()
	go func() {
		_, err := c.Expect(ctxT(t), func(*aoe.Frame) bool { return false })
		errs <- err
	}()
	go func() {
		_, err := c.Discover(ctxT(t), time.Hour)
		errs <- err
	}()
	// Closed while both wait, which nothing outside the client shows.
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-errs; !errors.Is(err, net.ErrClosed) {
			t.Errorf("after Close: %v, want net.ErrClosed", err)
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.ReadAt(ctxT(t), d, make([]byte, 512), 0, 1); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
}

// loopLink is a Link whose far end is a trivial target that answers every
// ATA request at once with success, without allocating: the client's own
// cost can be measured on it.
type loopLink struct {
	mac, peer aoe.MAC
	mtu       int
	ready     chan []byte // answers to be read
	free      chan []byte // spare answer buffers
	closed    chan struct{}
	once      sync.Once
}

func newLoopLink(mtu int) *loopLink {
	l := &loopLink{mac: clientMAC, peer: targetMAC, mtu: mtu, ready: make(chan []byte, 512), free: make(chan []byte, 512), closed: make(chan struct{})}
	for range 512 {
		l.free <- make([]byte, mtu+aoe.EthernetHeaderLen)
	}
	return l
}

func (l *loopLink) WriteFrame(b []byte) error {
	var f aoe.Frame
	var a aoe.ATA
	if err := f.UnmarshalBinary(b); err != nil {
		return err
	}
	if err := a.UnmarshalBinary(f.Arg); err != nil {
		return err
	}
	var out []byte
	select {
	case out = <-l.free:
	case <-l.closed:
		return net.ErrClosed
	}
	resp := aoe.Frame{Dst: f.Src, Src: l.peer, Header: f.Header}
	resp.Flags |= aoe.FlagResponse
	if _, err := resp.MarshalHeaderTo(out); err != nil {
		return err
	}
	r := aoe.ATA{Flags: a.Flags, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA}
	r.MarshalHeaderTo(out[aoe.FrameHeaderLen:])
	n := aoe.FrameHeaderLen + aoe.ATAHeaderLen
	if !a.IsWrite() {
		n += a.DataLen()
	}
	l.ready <- out[:max(n, aoe.MinFrameLen)]
	return nil
}

func (l *loopLink) ReadFrame(b []byte) (int, error) {
	select {
	case r := <-l.ready:
		n := copy(b, r)
		l.free <- r[:cap(r)]
		return n, nil
	case <-l.closed:
		return 0, net.ErrClosed
	}
}

func (l *loopLink) MTU() int              { return l.mtu }
func (l *loopLink) HardwareAddr() aoe.MAC { return l.mac }
func (l *loopLink) Close() error          { l.once.Do(func() { close(l.closed) }); return nil }

// device is the loop's far end as a Device.
func (l *loopLink) device() aoetest.Device {
	return aoetest.Device{MAC: l.peer, Shelf: 1, Slot: 1, SectorsPerFrame: aoe.SectorsPerFrame(l.mtu)}
}

func TestTransferAllocs(t *testing.T) {
	l := newLoopLink(9000)
	c := aoetest.NewClient(l, aoetest.ClientOptions{})
	t.Cleanup(func() { c.Close() })
	d := l.device()
	ctx := ctxT(t)
	p := make([]byte, 1<<20)
	for _, qd := range []int{1, 16, 64} {
		for _, write := range []bool{false, true} {
			do := c.ReadAt
			if write {
				do = c.WriteAt
			}
			if n := testing.AllocsPerRun(20, func() {
				if err := do(ctx, d, p, 0, qd); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("qd %d write %v: %v allocations per 1 MiB (%d frames), want 0", qd, write, n, len(p)/(17*512)+1)
			}
		}
	}
}

func benchTransfer(b *testing.B, c *aoetest.Client, d aoetest.Device, size, qd int, write bool) {
	p := make([]byte, size)
	ctx := context.Background()
	do := c.ReadAt
	if write {
		do = c.WriteAt
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if err := do(ctx, d, p, 0, qd); err != nil {
			b.Fatal(err)
		}
	}
	frames := (size/512 + d.SectorsPerFrame - 1) / d.SectorsPerFrame
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}

// BenchmarkClientLoop measures the client alone, on a link that answers
// at once without allocating.
func BenchmarkClientLoop(b *testing.B) {
	for _, qd := range []int{1, 16, 64} {
		for _, write := range []bool{false, true} {
			b.Run(fmt.Sprintf("qd%d/write=%v", qd, write), func(b *testing.B) {
				l := newLoopLink(9000)
				c := aoetest.NewClient(l, aoetest.ClientOptions{})
				defer c.Close()
				benchTransfer(b, c, l.device(), 1<<20, qd, write)
			})
		}
	}
}

// BenchmarkClientHub measures the client against the fake target over an
// in-memory hub (which copies every frame it carries).
func BenchmarkClientHub(b *testing.B) {
	for _, qd := range []int{1, 16, 64} {
		for _, write := range []bool{false, true} {
			b.Run(fmt.Sprintf("qd%d/write=%v", qd, write), func(b *testing.B) {
				c, _, _ := setup(b, targetOptions{shelf: 1, slot: 1, sectors: 2048}, aoetest.ClientOptions{})
				d := discoverOne(b, c)
				benchTransfer(b, c, d, 1<<20, qd, write)
			})
		}
	}
}
