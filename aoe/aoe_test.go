package aoe_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// unhex decodes hex written with spaces and '|' between fields, so golden
// frames can be laid out along the spec's offsets.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "\n", "", "\t", "", "|", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad golden hex: %v", err)
	}
	return b
}

var (
	macA = aoe.MAC{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}
	macB = aoe.MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	macC = aoe.MAC{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
)

// Golden frames, written by hand from the AoE r11 offsets: Ethernet dst,
// src, type | ver/flags, error, major, minor, command, tag | argument.
const (
	// READ SECTORS EXT of 2 sectors at LBA 0x060504030201 to shelf 258
	// slot 3, tag 0x80000001: a 36-byte frame padded to 60.
	goldenATARead = `001122334455 020000000001 88a2 | 10 00 0102 03 00 80000001 |
		40 00 02 24 | 01 02 03 04 05 06 | 0000 |
		000000000000000000000000000000000000000000000000`
	// WRITE SECTORS EXT (async) of one sector of 0xab at LBA 7.
	goldenATAWriteHead = `001122334455 020000000001 88a2 | 10 00 0001 01 00 00000007 |
		43 00 01 34 | 07 00 00 00 00 00 | 0000`
	// A target's answer to an unrecognized command: R|E flags, error 1.
	goldenError = `020000000001 001122334455 88a2 | 1c 01 0001 02 f3 12345678 |
		000000000000000000000000000000000000000000000000000000000000000000000000`
	// Query Config response (an announce: tag 0, broadcast): buffer count
	// 16, firmware 0x4019, 2 sectors, AoE 1 / read, string "hello"; 37
	// bytes padded to 60.
	goldenConfig = `ffffffffffff 001122334455 88a2 | 18 00 0001 02 01 00000000 |
		0010 4019 02 10 0005 | 68656c6c6f |
		0000000000000000000000 0000000000000000000000 00`
	// MAC Mask List edit: add aa:bb:cc:dd:ee:ff, delete 00:11:22:33:44:55.
	goldenMACMask = `001122334455 020000000001 88a2 | 10 00 0001 02 02 00000002 |
		00 01 00 02 | 00 01 aabbccddeeff | 00 02 001122334455 |
		0000000000000000 0000000000000000`
	// Reserve/Release set to two addresses.
	goldenReserve = `001122334455 020000000001 88a2 | 10 00 0001 02 03 00000003 |
		01 02 | aabbccddeeff | 001122334455 |
		0000000000000000000000 0000000000000000000000`
)

func TestGoldenATARead(t *testing.T) {
	f := aoe.Frame{Dst: macA, Src: macB, Header: aoe.Header{Version: 1, Major: 258, Minor: 3, Command: aoe.CommandATA, Tag: 0x80000001}}
	g := checkFrame(t, goldenATARead, f, &aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: 0x060504030201})
	// Decoded, the argument has the padding as its data.
	var ga aoe.ATA
	if err := ga.UnmarshalBinary(g.Arg); err != nil {
		t.Fatal(err)
	}
	if ga.LBA != 0x060504030201 || ga.SectorCount != 2 || ga.CmdStatus != 0x24 || !ga.IsExtended() || ga.IsWrite() {
		t.Fatalf("decoded ATA %+v", ga)
	}
	if ga.DataLen() != 1024 || len(ga.Data) != 60-36 {
		t.Fatalf("DataLen %d, Data %d bytes (padding)", ga.DataLen(), len(ga.Data))
	}
}

func TestGoldenATAWrite(t *testing.T) {
	want := append(unhex(t, goldenATAWriteHead), bytes.Repeat([]byte{0xab}, 512)...)
	a := aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagAsync | aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 7,
		Data: bytes.Repeat([]byte{0xab}, 512)}
	f := aoe.Frame{Dst: macA, Src: macB, Header: aoe.Header{Version: 1, Major: 1, Minor: 1, Command: aoe.CommandATA, Tag: 7}}
	// Built in place, the way a target or client fills a reused buffer.
	buf := make([]byte, 2000)
	if _, err := f.MarshalHeaderTo(buf); err != nil {
		t.Fatal(err)
	}
	a.MarshalHeaderTo(buf[aoe.FrameHeaderLen:])
	n := aoe.FrameHeaderLen + aoe.ATAHeaderLen + copy(buf[aoe.FrameHeaderLen+aoe.ATAHeaderLen:], a.Data)
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("encoded\n%x\nwant\n%x", buf[:n], want)
	}
}

func TestGoldenError(t *testing.T) {
	var f aoe.Frame
	if err := f.UnmarshalBinary(unhex(t, goldenError)); err != nil {
		t.Fatal(err)
	}
	want := aoe.Header{Version: 1, Flags: aoe.FlagResponse | aoe.FlagError, Error: aoe.ErrorUnrecognizedCommand, Major: 1, Minor: 2, Command: 0xf3, Tag: 0x12345678}
	if f.Header != want {
		t.Fatalf("decoded %+v, want %+v", f.Header, want)
	}
	if !f.IsResponse() {
		t.Fatal("IsResponse false")
	}
	var err error = f.Error
	if !errors.Is(err, aoe.ErrorUnrecognizedCommand) || err.Error() != "aoe: unrecognized command code" {
		t.Fatalf("error %v", err)
	}
}

// codec is a pointer to one of the package's argument types.
type codec[T any] interface {
	*T
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

// checkGolden encodes arg into f and compares the frame with the golden
// hex, then decodes the golden argument and compares it with arg.
func checkGolden[T any, P codec[T]](t *testing.T, golden string, f aoe.Frame, arg P) {
	t.Helper()
	g := checkFrame(t, golden, f, arg)
	var ga T
	if err := P(&ga).UnmarshalBinary(g.Arg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ga, *arg) {
		t.Fatalf("decoded %+v, want %+v", ga, *arg)
	}
}

// checkFrame encodes arg into f and compares the frame with the golden
// hex, then decodes the golden frame, checks its headers and returns it.
func checkFrame(t *testing.T, golden string, f aoe.Frame, arg interface{ MarshalBinary() ([]byte, error) }) aoe.Frame {
	t.Helper()
	want := unhex(t, golden)
	var err error
	if f.Arg, err = arg.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	got, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded\n%x\nwant\n%x", got, want)
	}
	var g aoe.Frame
	if err := g.UnmarshalBinary(want); err != nil || g.Header != f.Header || g.Dst != f.Dst || g.Src != f.Src {
		t.Fatalf("decoded %+v, %v; want %+v", g, err, f)
	}
	return g
}

func TestGoldenConfig(t *testing.T) {
	checkGolden(t, goldenConfig,
		aoe.Frame{Dst: aoe.BroadcastMAC, Src: macA, Header: aoe.Header{Version: 1, Flags: aoe.FlagResponse, Major: 1, Minor: 2, Command: aoe.CommandQueryConfig}},
		&aoe.Config{BufferCount: 16, FirmwareVersion: 0x4019, SectorCount: 2, Version: 1, Command: aoe.ConfigRead, String: []byte("hello")})
}

func TestGoldenMACMask(t *testing.T) {
	checkGolden(t, goldenMACMask,
		aoe.Frame{Dst: macA, Src: macB, Header: aoe.Header{Version: 1, Major: 1, Minor: 2, Command: aoe.CommandMACMask, Tag: 2}},
		&aoe.MACMask{Command: aoe.MACMaskEdit, Directives: []aoe.Directive{{Command: aoe.DirectiveAdd, MAC: macC}, {Command: aoe.DirectiveDelete, MAC: macA}}})
}

func TestGoldenReserve(t *testing.T) {
	checkGolden(t, goldenReserve,
		aoe.Frame{Dst: macA, Src: macB, Header: aoe.Header{Version: 1, Major: 1, Minor: 2, Command: aoe.CommandReserveRelease, Tag: 3}},
		&aoe.ReserveRelease{Command: aoe.ReserveSet, MACs: []aoe.MAC{macC, macA}})
}

// checkRoundTrip encodes each value, decodes it and wants it back.
func checkRoundTrip[T any, P codec[T]](t *testing.T, values ...T) {
	t.Helper()
	for _, v := range values {
		b, err := P(&v).MarshalBinary()
		if err != nil {
			t.Fatalf("%+v: %v", v, err)
		}
		var g T
		if err := P(&g).UnmarshalBinary(b); err != nil {
			t.Fatalf("%+v: %v", v, err)
		}
		if !reflect.DeepEqual(g, v) {
			t.Errorf("round trip %+v -> %x -> %+v", v, b, g)
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	checkRoundTrip(t,
		aoe.Header{},
		aoe.Header{Version: 1, Command: aoe.CommandATA, Tag: 1},
		aoe.Header{Version: 1, Flags: aoe.FlagResponse | aoe.FlagError, Error: aoe.ErrorTargetReserved, Major: 0xffff, Minor: 0xff, Command: aoe.CommandReserveRelease, Tag: 0xffffffff},
		aoe.Header{Version: 15, Flags: 0x0f, Error: 255, Major: 0x1234, Minor: 0x56, Command: 0xff, Tag: 0x80000000},
	)
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []aoe.Frame{
		{Dst: macA, Src: macB, Header: aoe.Header{Version: 1, Tag: 9}},
		{Dst: aoe.BroadcastMAC, Src: macC, Header: aoe.Header{Version: 1, Major: aoe.BroadcastMajor, Minor: aoe.BroadcastMinor, Command: aoe.CommandQueryConfig}, Arg: make([]byte, 8)},
		{Dst: macA, Src: macB, Header: aoe.Header{Version: 1, Flags: aoe.FlagResponse}, Arg: bytes.Repeat([]byte{1, 2, 3}, 500)},
	} {
		b, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != max(f.Len(), aoe.MinFrameLen) {
			t.Errorf("encoded %d bytes, want %d", len(b), max(f.Len(), aoe.MinFrameLen))
		}
		var g aoe.Frame
		if err := g.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		// Arg comes back with the Ethernet padding, which is zeros.
		if g.Dst != f.Dst || g.Src != f.Src || g.Header != f.Header ||
			!bytes.Equal(g.Arg[:len(f.Arg)], f.Arg) || !allZero(g.Arg[len(f.Arg):]) {
			t.Errorf("round trip %+v -> %+v", f, g)
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestATARoundTrip(t *testing.T) {
	checkRoundTrip(t,
		aoe.ATA{CmdStatus: aoe.ATAIdentifyDevice, SectorCount: 1, Data: []byte{}},
		aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 17, CmdStatus: aoe.ATAReadSectorsExt, LBA: aoe.MaxLBA, Data: []byte{}},
		aoe.ATA{Flags: aoe.ATAFlagDevice | aoe.ATAFlagWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectors, LBA: 0xe0000000 | 12345, Data: bytes.Repeat([]byte{0x5a}, 1024)},
		aoe.ATA{FeatureError: aoe.ATAErrorIDNF, CmdStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError, LBA: 1 << 40, Data: []byte{}},
	)
	if n := (&aoe.ATA{Data: make([]byte, 1024)}).Len(); n != 12+1024 {
		t.Errorf("Len %d", n)
	}
}

func TestATALBA28(t *testing.T) {
	for _, tc := range []struct {
		lba  uint64
		want uint64
		ok   bool
	}{
		{0, 0, true},
		{aoe.MaxLBA28, aoe.MaxLBA28, true},
		{0xe0000000 | 0x0abcdef, 0x0abcdef, true}, // Linux puts 0xE0 in the device bits
		{0xef000001, 0xf000001, true},
		{1 << 32, 0, false},
		{1<<40 | 5, 5, false},
	} {
		a := aoe.ATA{LBA: tc.lba}
		got, ok := a.LBA28()
		if got != tc.want || ok != tc.ok {
			t.Errorf("LBA %#x: LBA28() = %#x, %v; want %#x, %v", tc.lba, got, ok, tc.want, tc.ok)
		}
	}
}

func TestConfigRoundTrip(t *testing.T) {
	checkRoundTrip(t,
		aoe.Config{String: []byte{}},
		aoe.Config{Command: aoe.ConfigTestPrefix, String: []byte("prefix")},
		aoe.Config{BufferCount: 0xffff, FirmwareVersion: 0xffff, SectorCount: 255, Version: 15, Command: aoe.ConfigForceSet, String: bytes.Repeat([]byte{'x'}, aoe.MaxConfigStringLen)},
	)
}

func TestMACMaskRoundTrip(t *testing.T) {
	many := make([]aoe.Directive, 255)
	for i := range many {
		many[i] = aoe.Directive{Command: aoe.DirectiveAdd, MAC: aoe.MAC{0, 0, 0, 0, 0, byte(i)}}
	}
	checkRoundTrip(t,
		aoe.MACMask{Command: aoe.MACMaskRead}, // decodes to nil Directives
		aoe.MACMask{Command: aoe.MACMaskEdit, Error: aoe.MACMaskErrorListFull, Directives: []aoe.Directive{{Command: aoe.DirectiveNone, MAC: macA}}},
		aoe.MACMask{Command: aoe.MACMaskEdit, Directives: many},
	)
}

func TestReserveReleaseRoundTrip(t *testing.T) {
	many := make([]aoe.MAC, 255)
	for i := range many {
		many[i] = aoe.MAC{2, 0, 0, 0, 1, byte(i)}
	}
	checkRoundTrip(t,
		aoe.ReserveRelease{Command: aoe.ReserveRead}, // decodes to nil MACs
		aoe.ReserveRelease{Command: aoe.ReserveForceSet, MACs: []aoe.MAC{macA}},
		aoe.ReserveRelease{Command: aoe.ReserveSet, MACs: many},
	)
}

func TestDecodeReusesCapacity(t *testing.T) {
	m := aoe.MACMask{Command: aoe.MACMaskRead, Directives: []aoe.Directive{{Command: aoe.DirectiveAdd, MAC: macA}, {MAC: macB}}}
	mb, _ := m.MarshalBinary()
	r := aoe.ReserveRelease{MACs: []aoe.MAC{macA, macB, macC}}
	rb, _ := r.MarshalBinary()
	var gm aoe.MACMask
	var gr aoe.ReserveRelease
	_ = gm.UnmarshalBinary(mb)
	_ = gr.UnmarshalBinary(rb)
	if n := testing.AllocsPerRun(100, func() {
		_ = gm.UnmarshalBinary(mb)
		_ = gr.UnmarshalBinary(rb)
	}); n != 0 {
		t.Errorf("decoding into a used value: %v allocations, want 0", n)
	}
}

func TestParseMAC(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want aoe.MAC
		ok   bool
	}{
		{"00:11:22:33:44:55", macA, true},
		{"00-11-22-33-44-55", macA, true},
		{"0011.2233.4455", macA, true},
		{"001122334455", macA, true}, // vblade's -m form
		{"AABBCCDDEEFF", macC, true},
		{"aa:bb:cc:dd:ee:ff", macC, true},
		{"ff:ff:ff:ff:ff:ff", aoe.BroadcastMAC, true},
		{"", aoe.MAC{}, false},
		{"00112233445", aoe.MAC{}, false},
		{"0011223344556", aoe.MAC{}, false},
		{"00112233445g", aoe.MAC{}, false},
		{" 1 2 3 4 5 6", aoe.MAC{}, false},
		{"+1+2+3+4+5+6", aoe.MAC{}, false},
		{"00:11:22:33:44", aoe.MAC{}, false},
		{"00:11:22:33:44:55:66:77", aoe.MAC{}, false}, // EUI-64
		{"00:11:22:33:44:zz", aoe.MAC{}, false},
	} {
		got, err := aoe.ParseMAC(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseMAC(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "aoe: parse MAC") {
			t.Errorf("ParseMAC(%q) error %q does not say what failed", tc.in, err)
		}
	}
}

func TestMACMethods(t *testing.T) {
	if s := macC.String(); s != "aa:bb:cc:dd:ee:ff" {
		t.Errorf("String %q", s)
	}
	if got, err := aoe.ParseMAC(macB.String()); err != nil || got != macB {
		t.Errorf("ParseMAC(String()) = %v, %v", got, err)
	}
	if !aoe.BroadcastMAC.IsBroadcast() || !aoe.BroadcastMAC.IsMulticast() || macA.IsBroadcast() || macA.IsMulticast() {
		t.Error("IsBroadcast/IsMulticast wrong")
	}
	if !(aoe.MAC{0x01, 0x80, 0xc2, 0, 0, 0}).IsMulticast() {
		t.Error("group address not multicast")
	}
	if !(aoe.MAC{}).IsZero() || macA.IsZero() {
		t.Error("IsZero wrong")
	}
	hw := macA.HardwareAddr()
	if hw.String() != macA.String() {
		t.Errorf("HardwareAddr %v", hw)
	}
	hw[0] = 0xff // must be a copy
	if macA[0] != 0 {
		t.Error("HardwareAddr aliases the MAC")
	}
	if aoe.MACFrom(net.HardwareAddr{0, 0x11, 0x22, 0x33, 0x44, 0x55}) != macA {
		t.Error("MACFrom")
	}
	if !aoe.MACFrom(net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8}).IsZero() {
		t.Error("MACFrom of an 8-byte address is not zero")
	}
}

func TestSectorsPerFrame(t *testing.T) {
	for _, tc := range []struct{ mtu, want int }{
		{-1, 0},
		{0, 0},
		{36, 0},
		{547, 0},
		{548, 1},
		{1024, 1},
		{1500, 2},
		{4096, 7},
		{9000, 17},
		{9216, 17},
		{65535, 127},
		{1 << 20, 255},
	} {
		if got := aoe.SectorsPerFrame(tc.mtu); got != tc.want {
			t.Errorf("SectorsPerFrame(%d) = %d, want %d", tc.mtu, got, tc.want)
		}
	}
	// A frame of that many sectors fits the MTU (which excludes the
	// Ethernet header), and one more sector does not.
	for _, mtu := range []int{1500, 9000} {
		n := aoe.SectorsPerFrame(mtu)
		size := aoe.HeaderLen + aoe.ATAHeaderLen + n*aoe.SectorSize
		if size > mtu || size+aoe.SectorSize+aoe.EthernetHeaderLen <= mtu {
			t.Errorf("MTU %d: %d sectors is a %d-byte payload", mtu, n, size)
		}
	}
}

func TestStringers(t *testing.T) {
	for _, tc := range []struct {
		got  string
		want string
	}{
		{aoe.CommandATA.String(), "ATA"},
		{aoe.CommandQueryConfig.String(), "QueryConfig"},
		{aoe.CommandMACMask.String(), "MACMask"},
		{aoe.CommandReserveRelease.String(), "ReserveRelease"},
		{aoe.Command(0xf0).String(), "Command(0xf0)"},
		{aoe.ConfigRead.String(), "read"},
		{aoe.ConfigTest.String(), "test"},
		{aoe.ConfigTestPrefix.String(), "test-prefix"},
		{aoe.ConfigSet.String(), "set"},
		{aoe.ConfigForceSet.String(), "force-set"},
		{aoe.ConfigCommand(9).String(), "ConfigCommand(9)"},
		{aoe.ErrorBadArgument.Error(), "aoe: bad argument parameter"},
		{aoe.ErrorTargetReserved.Error(), "aoe: target is reserved"},
		{aoe.Error(0).Error(), "aoe: error 0"},
		{aoe.Error(99).Error(), "aoe: error 99"},
		{aoe.MACMaskErrorBadDirective.Error(), "aoe: MAC mask: bad directive"},
		{aoe.MACMaskErrorListFull.Error(), "aoe: MAC mask: list full"},
		{aoe.MACMaskErrorUnspecified.Error(), "aoe: MAC mask: unspecified error"},
		{aoe.MACMaskError(7).Error(), "aoe: MAC mask: error 7"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// marshaler is what every codec type implements.
type marshaler interface {
	MarshalTo([]byte) (int, error)
	MarshalBinary() ([]byte, error)
}

type unmarshaler interface{ UnmarshalBinary([]byte) error }

func TestMarshalErrors(t *testing.T) {
	long := make([]byte, aoe.MaxConfigStringLen+1)
	for _, tc := range []struct {
		name string
		v    marshaler
		buf  int
		want error
	}{
		{"header small", &aoe.Header{}, aoe.HeaderLen - 1, aoe.ErrBufferTooSmall},
		{"header version", &aoe.Header{Version: 16}, 64, aoe.ErrTooLong},
		{"header flags", &aoe.Header{Flags: 0x10}, 64, aoe.ErrTooLong},
		{"frame small", &aoe.Frame{Arg: make([]byte, 100)}, 123, aoe.ErrBufferTooSmall},
		{"frame under minimum", &aoe.Frame{}, aoe.MinFrameLen - 1, aoe.ErrBufferTooSmall},
		{"frame bad header", &aoe.Frame{Header: aoe.Header{Version: 16}}, 64, aoe.ErrTooLong},
		{"ATA small", &aoe.ATA{Data: make([]byte, 512)}, 523, aoe.ErrBufferTooSmall},
		{"ATA LBA", &aoe.ATA{LBA: aoe.MaxLBA + 1}, 64, aoe.ErrTooLong},
		{"config small", &aoe.Config{String: []byte("abc")}, 10, aoe.ErrBufferTooSmall},
		{"config string", &aoe.Config{String: long}, 2000, aoe.ErrTooLong},
		{"config version", &aoe.Config{Version: 16}, 64, aoe.ErrTooLong},
		{"config command", &aoe.Config{Command: 16}, 64, aoe.ErrTooLong},
		{"MAC mask small", &aoe.MACMask{Directives: make([]aoe.Directive, 2)}, 19, aoe.ErrBufferTooSmall},
		{"MAC mask count", &aoe.MACMask{Directives: make([]aoe.Directive, 256)}, 4096, aoe.ErrTooLong},
		{"reserve small", &aoe.ReserveRelease{MACs: make([]aoe.MAC, 2)}, 13, aoe.ErrBufferTooSmall},
		{"reserve count", &aoe.ReserveRelease{MACs: make([]aoe.MAC, 256)}, 4096, aoe.ErrTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.v.MarshalTo(make([]byte, tc.buf)); !errors.Is(err, tc.want) {
				t.Errorf("MarshalTo: %v, want %v", err, tc.want)
			}
			if tc.want == aoe.ErrTooLong {
				if _, err := tc.v.MarshalBinary(); !errors.Is(err, tc.want) {
					t.Errorf("MarshalBinary: %v, want %v", err, tc.want)
				}
			}
		})
	}
	if _, err := (&aoe.Frame{}).MarshalHeaderTo(make([]byte, aoe.FrameHeaderLen-1)); !errors.Is(err, aoe.ErrBufferTooSmall) {
		t.Errorf("MarshalHeaderTo: %v", err)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	configLen := func(n int, have int) []byte {
		b := make([]byte, aoe.ConfigHeaderLen+have)
		b[6], b[7] = byte(n>>8), byte(n)
		return b
	}
	notAoE := unhex(t, goldenATARead)
	notAoE[12], notAoE[13] = 0x08, 0x00
	for _, tc := range []struct {
		name string
		v    unmarshaler
		in   []byte
		want error
	}{
		{"header empty", &aoe.Header{}, nil, aoe.ErrShort},
		{"header short", &aoe.Header{}, make([]byte, aoe.HeaderLen-1), aoe.ErrShort},
		{"frame short", &aoe.Frame{}, unhex(t, goldenATARead)[:aoe.FrameHeaderLen-1], aoe.ErrShort},
		{"frame ethernet only", &aoe.Frame{}, unhex(t, goldenATARead)[:aoe.EthernetHeaderLen], aoe.ErrShort},
		{"frame IPv4", &aoe.Frame{}, notAoE, aoe.ErrNotAoE},
		{"ATA short", &aoe.ATA{}, make([]byte, aoe.ATAHeaderLen-1), aoe.ErrShort},
		{"config short", &aoe.Config{}, make([]byte, aoe.ConfigHeaderLen-1), aoe.ErrShort},
		{"config string past end", &aoe.Config{}, configLen(10, 9), aoe.ErrShort},
		{"config string too long", &aoe.Config{}, configLen(aoe.MaxConfigStringLen+1, aoe.MaxConfigStringLen+1), aoe.ErrTooLong},
		{"config length 0xffff", &aoe.Config{}, configLen(0xffff, 4), aoe.ErrTooLong},
		{"MAC mask short", &aoe.MACMask{}, make([]byte, 3), aoe.ErrShort},
		{"MAC mask directives past end", &aoe.MACMask{}, []byte{0, 0, 0, 2, 0, 1, 1, 2, 3, 4, 5, 6, 0, 1}, aoe.ErrShort},
		{"reserve short", &aoe.ReserveRelease{}, []byte{1}, aoe.ErrShort},
		{"reserve MACs past end", &aoe.ReserveRelease{}, []byte{1, 2, 1, 2, 3, 4, 5, 6, 7}, aoe.ErrShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.UnmarshalBinary(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "aoe: unmarshal ") {
				t.Errorf("error %q does not say which operation failed", err)
			}
		})
	}
	if aoe.ErrShort != io.ErrUnexpectedEOF {
		t.Error("ErrShort is not io.ErrUnexpectedEOF")
	}
}

// A frame from another protocol (or a truncated one) must leave the
// decoder's target usable: decoding a good frame afterwards works.
func TestFrameDecodeAfterError(t *testing.T) {
	var f aoe.Frame
	_ = f.UnmarshalBinary([]byte{1, 2, 3})
	if err := f.UnmarshalBinary(unhex(t, goldenConfig)); err != nil || f.Command != aoe.CommandQueryConfig {
		t.Fatalf("%v %+v", err, f)
	}
}
