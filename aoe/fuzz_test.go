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

// fuzzHeader checks an argument type's UnmarshalHeader: it never panics,
// refuses only what UnmarshalBinary refuses too, and decodes what
// UnmarshalBinary does but for the variable part, which strip empties.
func fuzzHeader[T any, P headerCodec[T]](f *testing.F, strip func(P)) {
	seedArgs(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h, v T
		herr := P(&h).UnmarshalHeader(b)
		verr := P(&v).UnmarshalBinary(b)
		switch {
		case herr != nil && verr == nil:
			t.Fatalf("UnmarshalHeader refused what UnmarshalBinary decoded: %v", herr)
		case herr != nil || verr != nil:
			return
		}
		strip(&v)
		if !reflect.DeepEqual(h, v) {
			t.Fatalf("UnmarshalHeader decoded %+v, UnmarshalBinary %+v", h, v)
		}
	})
}

func FuzzConfigHeader(f *testing.F) {
	fuzzHeader(f, func(c *aoe.Config) { c.String = nil })
}

func FuzzMACMaskHeader(f *testing.F) {
	fuzzHeader(f, func(m *aoe.MACMask) { m.Directives = nil })
}

func FuzzReserveReleaseHeader(f *testing.F) {
	fuzzHeader(f, func(r *aoe.ReserveRelease) { r.MACs = nil })
}

// FuzzResponseHeader answers arbitrary request frames in place: the
// response decodes, goes back to the sender with the request's command
// and tag, and leaves the argument alone.
func FuzzResponseHeader(f *testing.F) {
	for _, b := range goldenFrames(f) {
		f.Add(b, uint8(0))
	}
	f.Add(make([]byte, aoe.FrameHeaderLen), uint8(aoe.ErrorBadArgument))
	f.Fuzz(func(t *testing.T, b []byte, code uint8) {
		var req aoe.Frame
		if err := req.UnmarshalBinary(b); err != nil {
			return
		}
		arg := bytes.Clone(req.Arg)
		if _, err := req.MarshalResponseHeaderTo(b, macA, 7, 8, aoe.Error(code)); err != nil {
			t.Fatalf("MarshalResponseHeaderTo: %v", err)
		}
		var resp aoe.Frame
		if err := resp.UnmarshalBinary(b); err != nil {
			t.Fatalf("response does not decode: %v", err)
		}
		wantFlags := aoe.FlagResponse
		if code != 0 {
			wantFlags |= aoe.FlagError
		}
		want := aoe.Header{Version: aoe.Version, Flags: wantFlags, Error: aoe.Error(code), Major: 7, Minor: 8, Command: req.Command, Tag: req.Tag}
		if resp.Dst != req.Src || resp.Src != macA || resp.Header != want || !bytes.Equal(resp.Arg, arg) {
			t.Fatalf("response %+v to %+v", resp, req)
		}
	})
}
