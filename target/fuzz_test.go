package target

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// FuzzHandle feeds arbitrary frames to the request handler: it must not
// panic, and whatever it answers must be a well-formed response that fits
// the buffer.
func FuzzHandle(f *testing.F) {
	cl := &client{mac: clientMAC}
	for _, fr := range []*aoe.Frame{
		readReq(cl, f, 1, 2),
		writeReq(cl, f, 1, pattern(1024, 1)),
		cl.request(aoe.CommandATA, ataArg(f, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})),
		cl.request(aoe.CommandATA, ataArg(f, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAReadSectors, LBA: 0xE0000010})),
		cl.request(aoe.CommandATA, ataArg(f, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt})),
		cl.request(aoe.CommandQueryConfig, []byte{0, 0, 0, 0, 0, 3, 0, 3, 'a', 'b', 'c'}),
		cl.request(aoe.CommandMACMask, []byte{0, 1, 0, 2, 0, 1, 2, 0, 0, 0, 0, 9, 0, 7, 2, 0, 0, 0, 0, 8}),
		cl.request(aoe.CommandReserveRelease, []byte{1, 1, 2, 0, 0, 0, 0, 2}),
		cl.request(aoe.Command(0xF3), nil),
	} {
		b, err := fr.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(make([]byte, 23))

	c, _ := newTestSession(f, Config{})
	r := <-c.free
	f.Fuzz(func(t *testing.T, frame []byte) {
		clear(r.buf)
		r.n = copy(r.buf, frame)
		d := c.handle(r)
		switch d {
		case drop:
			return
		case replyNow, replyAfterSync:
		default:
			t.Fatalf("disposition %d", d)
		}
		if r.resp < aoe.FrameHeaderLen || r.resp > len(r.buf) {
			t.Fatalf("response of %d bytes", r.resp)
		}
		resp := r.buf[:r.resp]
		var out aoe.Frame
		if err := out.UnmarshalBinary(resp); err != nil {
			t.Fatalf("response does not decode: %v", err)
		}
		// Answered, the request decodes.
		in, ok := decodeHeaders(frame)
		if !ok {
			t.Fatalf("answered a frame that does not decode: %x", frame)
		}
		if !out.IsResponse() || out.Src != targetMAC || out.Dst != in.Src || out.Version != aoe.Version {
			t.Fatalf("bad response header %+v from %s to %s", out.Header, out.Src, out.Dst)
		}
		if out.Major != testShelf || out.Minor != testSlot || out.Tag != in.Tag {
			t.Fatalf("response %d.%d tag %#x", out.Major, out.Minor, out.Tag)
		}
		if out.Command == aoe.CommandATA && out.Flags&aoe.FlagError == 0 && len(out.Arg) < aoe.ATAHeaderLen {
			t.Fatalf("ATA response of %d bytes", len(out.Arg))
		}
	})
}

// FuzzLoadState feeds arbitrary state files to NewServer: it must load or
// refuse them, never panic.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"shelf":1,"slot":2,"config_string":"YWJj","mac_mask":["02:00:00:00:00:02"],"reserve":[]}`))
	f.Add([]byte(`{"mac_mask":["zz"]}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`null`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		if err := os.WriteFile(filepath.Join(dir, "e1.2.json"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := NewServer(Config{Shelf: 1, Slot: 2, Backend: newMemDisk(8), StateDir: dir, Logger: testLogger(t)})
		if err != nil {
			return
		}
		acc := s.access.Load()
		if len(acc.mask) > MaxMACMask || len(s.configString) > aoe.MaxConfigStringLen {
			t.Fatalf("loaded state beyond limits: %d masks, %d-byte string", len(acc.mask), len(s.configString))
		}
	})
}
