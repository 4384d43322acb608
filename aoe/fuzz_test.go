package aoe_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// goldenFrames are the seeds every fuzz target starts from: whole frames
// for FuzzFrame, their arguments for the others.
func goldenFrames(f *testing.F) [][]byte {
	f.Helper()
	return [][]byte{
		unhex(f, goldenATARead),
		append(unhex(f, goldenATAWriteHead), bytes.Repeat([]byte{0xab}, 512)...),
		unhex(f, goldenError),
		unhex(f, goldenConfig),
		unhex(f, goldenMACMask),
		unhex(f, goldenReserve),
	}
}

func seedArgs(f *testing.F) {
	for _, b := range goldenFrames(f) {
		f.Add(b[aoe.FrameHeaderLen:])
	}
	f.Add([]byte{})
	f.Add(make([]byte, 12))
}

func FuzzFrame(f *testing.F) {
	for _, b := range goldenFrames(f) {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr aoe.Frame
		if err := fr.UnmarshalBinary(b); err != nil {
			return
		}
		enc, err := fr.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", fr, err)
		}
		// Whole frames come back byte for byte, padded if they were short.
		if !bytes.Equal(enc[:len(b)], b) || !allZero(enc[len(b):]) {
			t.Fatalf("re-encoded\n%x\nfrom\n%x", enc, b)
		}
		var again aoe.Frame
		if err := again.UnmarshalBinary(enc); err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if again.Dst != fr.Dst || again.Src != fr.Src || again.Header != fr.Header || !bytes.Equal(again.Arg[:len(fr.Arg)], fr.Arg) {
			t.Fatalf("round trip %+v -> %+v", fr, again)
		}
	})
}

// fuzzArg checks one argument type: decoding never panics, and a decoded
// value survives encoding and decoding again.
func fuzzArg[T any, P codec[T]](f *testing.F) {
	seedArgs(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var v T
		if err := P(&v).UnmarshalBinary(b); err != nil {
			return
		}
		enc, err := P(&v).MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode %+v: %v", v, err)
		}
		var again T
		if err := P(&again).UnmarshalBinary(enc); err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if !reflect.DeepEqual(again, v) {
			t.Fatalf("round trip %+v -> %+v", v, again)
		}
	})
}

func FuzzATA(f *testing.F)            { fuzzArg[aoe.ATA](f) }
func FuzzConfig(f *testing.F)         { fuzzArg[aoe.Config](f) }
func FuzzMACMask(f *testing.F)        { fuzzArg[aoe.MACMask](f) }
func FuzzReserveRelease(f *testing.F) { fuzzArg[aoe.ReserveRelease](f) }

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"00:11:22:33:44:55", "001122334455", "0011.2233.4455", "00-11-22-33-44-55", "", "00112233445g"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := aoe.ParseMAC(s)
		if err != nil {
			return
		}
		again, err := aoe.ParseMAC(m.String())
		if err != nil || again != m {
			t.Fatalf("ParseMAC(%q) = %v, but ParseMAC(%q) = %v, %v", s, m, m.String(), again, err)
		}
	})
}
