package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
)

// batchPort is an in-memory link that moves frames through the batched
// calls, one frame a call, so that tests reach the responder's batch path.
type batchPort struct{ *aoetest.Port }

func (p batchPort) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	n, err := p.ReadFrame(bufs[0])
	if err != nil {
		return 0, err
	}
	lens[0] = n
	return 1, nil
}

func (p batchPort) WriteFrames(frames [][]byte) (int, error) {
	for i, f := range frames {
		if err := p.WriteFrame(f); err != nil {
			return i, err
		}
	}
	return len(frames), nil
}

var (
	responderMAC       = aoe.MAC{0x02, 0, 0, 0, 0, 0x01}
	responderClientMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x02}
)

// TestRespond runs the responder on an in-memory segment, one frame a
// call and in batches, and drives it with a test client: discovery,
// IDENTIFY, writes and reads, and the errors a disk would give.
func TestRespond(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(map[bool]string{false: "frames", true: "batches"}[batched], func(t *testing.T) {
			hub := aoetest.NewHub()
			port := hub.Port(responderMAC, 9000)
			var link aoe.Link = port
			if batched {
				link = batchPort{port}
			}
			cfg := ResponderConfig{Shelf: 3, Slot: 4, Sectors: 4096, BufferCount: 32}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				st  ResponderStats
				err error
			}
			done := make(chan result, 1)
			go func() {
				st, err := Respond(ctx, link, cfg)
				done <- result{st, err}
			}()
			client := aoetest.NewClient(hub.Port(responderClientMAC, 9000), aoetest.ClientOptions{Timeout: time.Second})
			defer client.Close()
			checkResponder(t, client, cfg)
			cancel()
			if res := <-done; res.err != nil || res.st.Answered < 8 {
				t.Errorf("Respond: %+v, %v; want nil once its context ended, and answers counted", res.st, res.err)
			}
		})
	}
}

// checkResponder drives the responder configured with cfg through client.
func checkResponder(t *testing.T, client *aoetest.Client, cfg ResponderConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	devs, err := client.Discover(ctx, 200*time.Millisecond)
	if err != nil || len(devs) != 1 {
		t.Fatalf("discover: %v, %v; want one device", devs, err)
	}
	d := devs[0]
	if d.Shelf != cfg.Shelf || d.Slot != cfg.Slot || d.Config.BufferCount != uint16(cfg.BufferCount) || d.SectorsPerFrame != 17 {
		t.Errorf("device %v: %+v; want e3.4, 32 buffers, 17 sectors per frame", d, d)
	}
	id, err := client.Identify(ctx, &d)
	if err != nil || d.Sectors != cfg.Sectors || ataString(id[54:94]) != "ironbench responder" {
		t.Fatalf("identify: %v, %d sectors, model %q", err, d.Sectors, ataString(id[54:94]))
	}
	data := bytes.Repeat([]byte{0xa5}, 4*17*aoe.SectorSize)
	if err := client.WriteAt(ctx, d, data, 0, 4); err != nil {
		t.Errorf("write: %v", err)
	}
	got := make([]byte, 17*aoe.SectorSize)
	if err := client.ReadAt(ctx, d, got, 17*aoe.SectorSize, 1); err != nil {
		t.Errorf("read: %v", err)
	}
	want := newResponder(responderMAC, cfg).data[:len(got)]
	if !bytes.Equal(got, want) {
		t.Error("read: not the static buffer's data")
	}
	// Past the end: an ATA error, as a disk gives.
	var ataErr *aoetest.ATAError
	if err := client.ReadAt(ctx, d, got[:aoe.SectorSize], int64(cfg.Sectors)*aoe.SectorSize, 1); !errors.As(err, &ataErr) {
		t.Errorf("read past the end: %v, want an ATA error", err)
	}
	// More sectors than a frame takes, and a vendor command: AoE errors.
	_, err = client.ATA(ctx, d, aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 18, CmdStatus: aoe.ATAReadSectorsExt})
	if !errors.Is(err, aoe.ErrorBadArgument) {
		t.Errorf("read of 18 sectors: %v, want %v", err, aoe.ErrorBadArgument)
	}
	_, err = client.Do(ctx, d.MAC, aoe.Header{Major: d.Shelf, Minor: d.Slot, Command: aoe.CommandVendorFirst}, nil)
	if !errors.Is(err, aoe.ErrorUnrecognizedCommand) {
		t.Errorf("vendor command: %v, want %v", err, aoe.ErrorUnrecognizedCommand)
	}
	if err := client.Flush(ctx, d); err != nil {
		t.Errorf("flush: %v", err)
	}
}

// responderRequests returns a request of each kind the generator sends
// to shelf 1 slot 0: Query Config, IDENTIFY, and a read and a write of 17
// sectors.
func responderRequests(t testing.TB) map[string][]byte {
	t.Helper()
	frame := func(cmd aoe.Command, arg []byte) []byte {
		f := aoe.Frame{Dst: responderMAC, Src: responderClientMAC, Header: aoe.Header{Version: aoe.Version, Major: 1, Minor: 0,
			Command: cmd, Tag: 0x80000001}, Arg: arg}
		b, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ata := func(a aoe.ATA) []byte {
		b, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return frame(aoe.CommandATA, b)
	}
	return map[string][]byte{
		"config":   frame(aoe.CommandQueryConfig, make([]byte, aoe.ConfigHeaderLen)),
		"identify": ata(aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice}),
		"read":     ata(aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 17, CmdStatus: aoe.ATAReadSectorsExt, LBA: 34}),
		"write": ata(aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 17, CmdStatus: aoe.ATAWriteSectorsExt,
			LBA: 34, Data: make([]byte, 17*aoe.SectorSize)}),
	}
}

// TestResponderAnswer checks each answer the codec path builds in place:
// headers, registers and lengths, and that it allocates nothing.
func TestResponderAnswer(t *testing.T) {
	r := newResponder(responderMAC, ResponderConfig{Shelf: 1, Sectors: 1 << 20})
	r.spf = 17
	buf := make([]byte, 9014)
	wantLen := map[string]int{
		"config":   aoe.FrameHeaderLen + aoe.ConfigHeaderLen,
		"identify": aoe.FrameHeaderLen + aoe.ATAHeaderLen + aoe.SectorSize,
		"read":     aoe.FrameHeaderLen + aoe.ATAHeaderLen + 17*aoe.SectorSize,
		"write":    aoe.FrameHeaderLen + aoe.ATAHeaderLen,
	}
	for name, req := range responderRequests(t) {
		n := r.answer(buf, copy(buf, req))
		if n != wantLen[name] {
			t.Errorf("%s: %d-byte answer, want %d", name, n, wantLen[name])
			continue
		}
		var f aoe.Frame
		if err := f.UnmarshalBinary(buf[:n]); err != nil || !f.IsResponse() || f.Dst != responderClientMAC || f.Src != responderMAC ||
			f.Tag != 0x80000001 || f.Major != 1 || f.Minor != 0 || f.Flags&aoe.FlagError != 0 {
			t.Errorf("%s: answer %+v, %v", name, f, err)
		}
		if name == "config" {
			var c aoe.Config
			if err := c.UnmarshalBinary(f.Arg); err != nil || c.SectorCount != 17 || c.BufferCount != 64 || c.Version != aoe.Version {
				t.Errorf("config answer %+v, %v", c, err)
			}
			continue
		}
		var a aoe.ATA
		if err := a.UnmarshalBinary(f.Arg); err != nil || a.CmdStatus != aoe.ATAStatusDRDY {
			t.Errorf("%s: ATA answer %+v, %v", name, a, err)
		}
		if name == "read" && (a.LBA != 34 || a.SectorCount != 17 || !bytes.Equal(a.Data, r.data[:17*aoe.SectorSize])) {
			t.Errorf("read answer: LBA %d, %d sectors, data from the static buffer: %v", a.LBA, a.SectorCount,
				bytes.Equal(a.Data, r.data[:17*aoe.SectorSize]))
		}
		if allocs := testing.AllocsPerRun(100, func() { r.answer(buf, copy(buf, req)) }); allocs != 0 {
			t.Errorf("%s: %.1f allocations an answer, want 0", name, allocs)
		}
	}
	// Not for this responder, or not a request: no answer.
	other := bytes.Clone(responderRequests(t)["read"])
	other[aoe.EthernetHeaderLen+4] = 9 // slot
	if n := r.answer(buf, copy(buf, other)); n != 0 {
		t.Errorf("request to slot 9 answered (%d bytes)", n)
	}
	answer := bytes.Clone(responderRequests(t)["read"])
	answer[aoe.EthernetHeaderLen] |= uint8(aoe.FlagResponse)
	if n := r.answer(buf, copy(buf, answer)); n != 0 {
		t.Errorf("an answer answered (%d bytes)", n)
	}
	if r.stats.Ignored != 2 {
		t.Errorf("%d frames ignored, want 2", r.stats.Ignored)
	}
}

// scriptedLink feeds the responder the same batch of requests over and
// over, taking the answers, and fails once it has fed batches batches.
type scriptedLink struct {
	reqs    [][]byte
	batches int
	fed     int
	// mallocs is the heap's allocation count after the first batch and
	// after the last.
	mallocs [2]uint64
}

func (l *scriptedLink) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	switch l.fed {
	case 1:
		l.mallocs[0] = mallocs()
	case l.batches:
		l.mallocs[1] = mallocs()
		return 0, io.EOF
	}
	l.fed++
	n := min(len(bufs), len(l.reqs))
	for i := range n {
		lens[i] = copy(bufs[i], l.reqs[i])
	}
	return n, nil
}

func (l *scriptedLink) WriteFrames(frames [][]byte) (int, error) { return len(frames), nil }
func (l *scriptedLink) ReadFrame(b []byte) (int, error)          { return 0, io.EOF }
func (l *scriptedLink) WriteFrame(b []byte) error                { return nil }
func (l *scriptedLink) MTU() int                                 { return 9000 }
func (l *scriptedLink) HardwareAddr() aoe.MAC                    { return responderMAC }
func (l *scriptedLink) Close() error                             { return nil }

func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// TestResponderServeAllocs runs the responder's loop over batches of
// requests: after the first batch, it allocates nothing.
func TestResponderServeAllocs(t *testing.T) {
	var reqs [][]byte
	for range 16 {
		for _, req := range responderRequests(t) {
			reqs = append(reqs, req)
		}
	}
	l := &scriptedLink{reqs: reqs, batches: 200} // 64 requests a batch
	r := newResponder(responderMAC, ResponderConfig{Shelf: 1, Sectors: 1 << 20})
	if err := r.serve(l); !errors.Is(err, io.EOF) {
		t.Fatalf("serve: %v, want the link's EOF", err)
	}
	if want := uint64(200 * 64); r.stats.Answered != want {
		t.Errorf("%d answers, want %d", r.stats.Answered, want)
	}
	// A few allocations may be the runtime's own (a GC cycle, a timer);
	// one per frame would be 12,736.
	if n := l.mallocs[1] - l.mallocs[0]; n > 10 {
		t.Errorf("%d allocations over %d frames", n, 199*64)
	}
}

// BenchmarkResponderAnswer measures the responder's codec path per
// request kind: decode, answer in place.
func BenchmarkResponderAnswer(b *testing.B) {
	r := newResponder(responderMAC, ResponderConfig{Shelf: 1, Sectors: 1 << 20})
	r.spf = 17
	buf := make([]byte, 9014)
	for _, name := range []string{"config", "identify", "read", "write"} {
		req := responderRequests(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.answer(buf, copy(buf, req))
			}
		})
	}
}
