package aoe_test

import (
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// The hot path of a target: decode a request frame and its ATA argument,
// then build the read response in place, data first and headers around it.

func decodeRequest(b []byte, f *aoe.Frame, a *aoe.ATA) error {
	if err := f.UnmarshalBinary(b); err != nil {
		return err
	}
	return a.UnmarshalBinary(f.Arg)
}

func buildReadResponse(req *aoe.Frame, a *aoe.ATA, self aoe.MAC, out []byte) int {
	n := a.DataLen()
	// A real target would pread into out[36:36+n] here.
	a.MarshalResponseHeaderTo(out[aoe.FrameHeaderLen:], aoe.ATAStatusDRDY, 0)
	if _, err := req.MarshalResponseHeaderTo(out, self, req.Major, req.Minor, 0); err != nil {
		panic(err)
	}
	return aoe.FrameHeaderLen + aoe.ATAHeaderLen + n
}

func hotPathInputs(tb testing.TB) (req []byte, out []byte) {
	a := aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 17, CmdStatus: aoe.ATAReadSectorsExt, LBA: 123456789}
	arg, err := a.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	f := aoe.Frame{Dst: macA, Src: macB, Header: aoe.Header{Version: 1, Major: 1, Minor: 2, Tag: 0x80000042}, Arg: arg}
	req, err = f.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return req, make([]byte, 9014)
}

func TestHotPathAllocs(t *testing.T) {
	req, out := hotPathInputs(t)
	var f aoe.Frame
	var a aoe.ATA
	if n := testing.AllocsPerRun(1000, func() {
		if err := decodeRequest(req, &f, &a); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("decode frame + ATA: %v allocations per frame, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if buildReadResponse(&f, &a, macA, out) != 36+17*512 {
			t.Fatal("bad response length")
		}
	}); n != 0 {
		t.Errorf("build read response: %v allocations per frame, want 0", n)
	}
	var got aoe.Frame
	if err := got.UnmarshalBinary(out[:36+17*512]); err != nil || got.Tag != 0x80000042 || !got.IsResponse() || got.Dst != macB {
		t.Fatalf("response %+v, %v", got.Header, err)
	}
}

func BenchmarkDecodeATAFrame(b *testing.B) {
	req, _ := hotPathInputs(b)
	var f aoe.Frame
	var a aoe.ATA
	b.ReportAllocs()
	for b.Loop() {
		if err := decodeRequest(req, &f, &a); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildReadResponse(b *testing.B) {
	req, out := hotPathInputs(b)
	var f aoe.Frame
	var a aoe.ATA
	if err := decodeRequest(req, &f, &a); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		buildReadResponse(&f, &a, macA, out)
	}
}

func BenchmarkMarshalATARequest(b *testing.B) {
	f := aoe.Frame{Dst: macA, Src: macB, Header: aoe.Header{Version: 1, Major: 1, Minor: 2, Tag: 1}}
	a := aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 99}
	out := make([]byte, aoe.MinFrameLen)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.MarshalHeaderTo(out); err != nil {
			b.Fatal(err)
		}
		a.MarshalHeaderTo(out[aoe.FrameHeaderLen:])
	}
}
