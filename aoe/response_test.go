package aoe_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// goldenATAReadResponseHead is the headers of a target's answer to
// goldenATARead, built in the request's buffer: back to its sender from
// 00:11:22:33:44:55, R flag, the same shelf, slot, command and tag; DRDY
// status and the request's other registers. The two sectors follow.
const goldenATAReadResponseHead = `020000000001 001122334455 88a2 | 18 00 0102 03 00 80000001 |
	40 00 02 40 | 01 02 03 04 05 06 | 0000`

func TestMarshalResponseHeaderTo(t *testing.T) {
	buf := make([]byte, aoe.FrameHeaderLen+aoe.ATAHeaderLen+2*aoe.SectorSize)
	copy(buf, unhex(t, goldenATARead))
	var req aoe.Frame
	if err := req.UnmarshalBinary(buf); err != nil {
		t.Fatal(err)
	}
	var a aoe.ATA
	if err := a.UnmarshalBinary(req.Arg); err != nil {
		t.Fatal(err)
	}
	// In place: the data first, then the registers and headers around it.
	clear(buf[aoe.FrameHeaderLen+aoe.ATAHeaderLen:])
	a.MarshalResponseHeaderTo(buf[aoe.FrameHeaderLen:], aoe.ATAStatusDRDY, 0)
	if n, err := req.MarshalResponseHeaderTo(buf, macA, req.Major, req.Minor, 0); err != nil || n != aoe.FrameHeaderLen {
		t.Fatalf("MarshalResponseHeaderTo: %d, %v", n, err)
	}
	want := append(unhex(t, goldenATAReadResponseHead), make([]byte, 2*aoe.SectorSize)...)
	if !bytes.Equal(buf, want) {
		t.Fatalf("response\n%x\nwant\n%x", buf, want)
	}
}

func TestMarshalResponseHeaderToError(t *testing.T) {
	var req aoe.Frame
	req.Src, req.Command, req.Tag = macB, 0xf3, 0x12345678
	b := make([]byte, aoe.MinFrameLen)
	if _, err := req.MarshalResponseHeaderTo(b, macA, 1, 2, aoe.ErrorUnrecognizedCommand); err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, goldenError); !bytes.Equal(b, want) {
		t.Fatalf("error response\n%x\nwant\n%x", b, want)
	}
	if _, err := req.MarshalResponseHeaderTo(b[:aoe.FrameHeaderLen-1], macA, 1, 2, 0); !errors.Is(err, aoe.ErrBufferTooSmall) ||
		!strings.HasPrefix(err.Error(), "aoe: marshal ") {
		t.Errorf("short buffer: %v, want ErrBufferTooSmall", err)
	}
}

// A response says who answers, whatever address, version, flags and
// error the request had, and has only the R flag (and E, for an error).
func TestMarshalResponseHeaderToFields(t *testing.T) {
	req := aoe.Frame{Dst: aoe.BroadcastMAC, Src: macB, Header: aoe.Header{
		Version: 2, Flags: aoe.FlagError | 0x03, Error: 7, Major: aoe.BroadcastMajor, Minor: aoe.BroadcastMinor,
		Command: aoe.CommandQueryConfig, Tag: 0xdeadbeef,
	}, Arg: []byte{1, 2, 3}}
	for _, tc := range []struct {
		code  aoe.Error
		flags aoe.Flags
	}{{0, aoe.FlagResponse}, {aoe.ErrorBadArgument, aoe.FlagResponse | aoe.FlagError}} {
		b := make([]byte, aoe.FrameHeaderLen)
		if _, err := req.MarshalResponseHeaderTo(b, macA, 3, 4, tc.code); err != nil {
			t.Fatal(err)
		}
		var got aoe.Frame
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		want := aoe.Frame{Dst: macB, Src: macA, Header: aoe.Header{
			Version: aoe.Version, Flags: tc.flags, Error: tc.code, Major: 3, Minor: 4, Command: aoe.CommandQueryConfig, Tag: 0xdeadbeef,
		}, Arg: []byte{}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("code %d: response %+v, want %+v", tc.code, got, want)
		}
	}
}

func TestATAMarshalResponseHeaderTo(t *testing.T) {
	req := aoe.ATA{
		Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite | aoe.ATAFlagAsync, FeatureError: 0x5a, SectorCount: 3,
		CmdStatus: aoe.ATAWriteSectorsExt, LBA: 0x0000a0b0c0d0, Data: make([]byte, 3*aoe.SectorSize),
	}
	b := bytes.Repeat([]byte{0xee}, aoe.ATAHeaderLen+1)
	req.MarshalResponseHeaderTo(b, aoe.ATAStatusDRDY|aoe.ATAStatusError, aoe.ATAErrorIDNF)
	var got aoe.ATA
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	want := aoe.ATA{
		Flags: req.Flags, FeatureError: aoe.ATAErrorIDNF, SectorCount: 3,
		CmdStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError, LBA: 0x0000a0b0c0d0, Data: []byte{0xee},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("response %+v, want %+v", got, want)
	}
	if b[10] != 0 || b[11] != 0 {
		t.Errorf("reserved bytes %x, want zeros", b[10:12])
	}
}

func TestResponseAllocs(t *testing.T) {
	req, out := hotPathInputs(t)
	var f aoe.Frame
	var a aoe.ATA
	if err := decodeRequest(req, &f, &a); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		a.MarshalResponseHeaderTo(out[aoe.FrameHeaderLen:], aoe.ATAStatusDRDY|aoe.ATAStatusError, aoe.ATAErrorABRT)
		if _, err := f.MarshalResponseHeaderTo(out, macA, 1, 2, aoe.ErrorBadArgument); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("build an error response: %v allocations, want 0", n)
	}
}

// headerCodec is a pointer to an argument type that can decode its fixed
// part alone.
type headerCodec[T any] interface {
	codec[T]
	UnmarshalHeader([]byte) error
}

// checkUnmarshalHeader checks UnmarshalHeader on in, which UnmarshalBinary
// refuses: it decodes want all the same; and on every input shorter than
// headerLen, which it refuses as ErrShort.
func checkUnmarshalHeader[T any, P headerCodec[T]](t *testing.T, in []byte, headerLen int, want T) {
	t.Helper()
	var v T
	if err := P(&v).UnmarshalBinary(in); err == nil {
		t.Fatalf("UnmarshalBinary(%x) accepted: a bad test", in)
	}
	if err := P(&v).UnmarshalHeader(in); err != nil {
		t.Fatalf("UnmarshalHeader(%x): %v", in, err)
	}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("UnmarshalHeader(%x) = %+v, want %+v", in, v, want)
	}
	for n := range headerLen {
		err := P(&v).UnmarshalHeader(in[:n])
		if !errors.Is(err, aoe.ErrShort) || !strings.HasPrefix(err.Error(), "aoe: unmarshal ") {
			t.Errorf("UnmarshalHeader of %d bytes: %v, want ErrShort", n, err)
		}
	}
}

func TestUnmarshalHeader(t *testing.T) {
	// A set with a 1025-byte string: too long.
	config := []byte{0x00, 0x10, 0x40, 0x19, 2, 0x13, 0x04, 0x01}
	checkUnmarshalHeader(t, config, aoe.ConfigHeaderLen,
		aoe.Config{BufferCount: 16, FirmwareVersion: 0x4019, SectorCount: 2, Version: 1, Command: aoe.ConfigSet})
	// An edit announcing 40 directives and carrying one.
	mask := []byte{0, 1, 3, 40, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	checkUnmarshalHeader(t, mask, aoe.MACMaskHeaderLen,
		aoe.MACMask{Command: aoe.MACMaskEdit, Error: aoe.MACMaskErrorListFull})
	// A force set announcing 3 addresses and carrying 1.
	reserve := []byte{2, 3, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	checkUnmarshalHeader(t, reserve, aoe.ReserveReleaseHeaderLen,
		aoe.ReserveRelease{Command: aoe.ReserveForceSet})
}

// UnmarshalHeader empties the lists a value held, keeping their capacity,
// and a decode after it reuses that capacity.
func TestUnmarshalHeaderReusesCapacity(t *testing.T) {
	m := aoe.MACMask{Directives: make([]aoe.Directive, 3, 8)}
	r := aoe.ReserveRelease{MACs: make([]aoe.MAC, 2, 8)}
	mb := []byte{0, 1, 0, 1, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	rb := []byte{1, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	if n := testing.AllocsPerRun(100, func() {
		if m.UnmarshalHeader(mb) != nil || len(m.Directives) != 0 || cap(m.Directives) != 8 {
			t.Fatalf("MAC mask after UnmarshalHeader: %+v", m)
		}
		if r.UnmarshalHeader(rb) != nil || len(r.MACs) != 0 || cap(r.MACs) != 8 {
			t.Fatalf("reserve after UnmarshalHeader: %+v", r)
		}
		if m.UnmarshalBinary(mb) != nil || r.UnmarshalBinary(rb) != nil || cap(m.Directives) != 8 || cap(r.MACs) != 8 {
			t.Fatalf("decode after UnmarshalHeader: %+v %+v", m, r)
		}
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
	c := aoe.Config{String: []byte("old")}
	if err := c.UnmarshalHeader(make([]byte, aoe.ConfigHeaderLen)); err != nil || !reflect.DeepEqual(c, aoe.Config{}) {
		t.Errorf("config after UnmarshalHeader: %+v, %v", c, err)
	}
}

// A caller may keep the lists it decodes into on its stack: decoding does
// not make them escape.
func TestDecodeOnStack(t *testing.T) {
	mb := []byte{0, 1, 0, 2, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 2, 1, 2, 3, 4, 5, 6}
	rb := []byte{1, 2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 1, 2, 3, 4, 5, 6}
	if n := testing.AllocsPerRun(100, func() {
		var dirs [255]aoe.Directive
		m := aoe.MACMask{Directives: dirs[:0]}
		var macs [255]aoe.MAC
		r := aoe.ReserveRelease{MACs: macs[:0]}
		if m.UnmarshalBinary(mb) != nil || len(m.Directives) != 2 || r.UnmarshalBinary(rb) != nil || len(r.MACs) != 2 {
			t.Fatal("decoding failed") // without m and r, which would escape
		}
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}
