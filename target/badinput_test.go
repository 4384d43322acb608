package target

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// TestBadInput sends malformed or misdirected requests: each gets the
// stated AoE error, or is dropped and counted, and the target keeps
// serving.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	c := h.client
	sector := pattern(512, 42)
	ata := func(a aoe.ATA) []byte { return ataArg(t, a) }
	readExt := func(count uint8) aoe.ATA {
		return aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: count, CmdStatus: aoe.ATAReadSectorsExt, LBA: 1}
	}
	configArg := func(ccmd aoe.ConfigCommand, strLen uint16, str []byte) []byte {
		b := make([]byte, aoe.ConfigHeaderLen+len(str))
		b[5] = uint8(ccmd)
		binary.BigEndian.PutUint16(b[6:], strLen)
		copy(b[8:], str)
		return b
	}

	for _, tc := range []struct {
		name    string
		build   func() *aoe.Frame
		raw     func(b []byte) // edits the encoded frame
		wantErr aoe.Error      // 0 with wantDrop == "" means a clean answer
		drop    string         // Stats.Dropped key when the frame must be ignored
	}{
		{name: "response flag", drop: "response",
			build: func() *aoe.Frame {
				f := c.request(aoe.CommandATA, ata(readExt(1)))
				f.Flags = aoe.FlagResponse
				return f
			}},
		{name: "other shelf", drop: "other_target",
			build: func() *aoe.Frame { f := c.request(aoe.CommandATA, ata(readExt(1))); f.Major = 7; return f }},
		{name: "other slot", drop: "other_target",
			build: func() *aoe.Frame { f := c.request(aoe.CommandATA, ata(readExt(1))); f.Minor = 9; return f }},
		{name: "group source address", drop: "bad_source",
			build: func() *aoe.Frame { return c.request(aoe.CommandATA, ata(readExt(1))) },
			raw:   func(b []byte) { b[6] |= 1 }},
		{name: "not AoE", drop: "not_aoe",
			build: func() *aoe.Frame { return c.request(aoe.CommandATA, ata(readExt(1))) },
			raw:   func(b []byte) { b[12], b[13] = 0x08, 0x00 }},
		{name: "unknown AoE command", wantErr: aoe.ErrorUnrecognizedCommand,
			build: func() *aoe.Frame { return c.request(aoe.Command(4), nil) }},
		{name: "vendor command", wantErr: aoe.ErrorUnrecognizedCommand,
			build: func() *aoe.Frame { return c.request(aoe.Command(0xF0), []byte{1, 2, 3}) }},
		{name: "last vendor command", wantErr: aoe.ErrorUnrecognizedCommand,
			build: func() *aoe.Frame { return c.request(aoe.Command(0xFF), nil) }},
		{name: "AoE version 2", wantErr: aoe.ErrorUnsupportedVersion,
			build: func() *aoe.Frame { f := c.request(aoe.CommandATA, ata(readExt(1))); f.Version = 2; return f }},
		{name: "AoE version 0", wantErr: aoe.ErrorUnsupportedVersion,
			build: func() *aoe.Frame {
				f := c.request(aoe.CommandQueryConfig, configArg(0, 0, nil))
				f.Version = 0
				return f
			}},
		{name: "more sectors than a frame holds", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame { return c.request(aoe.CommandATA, ata(readExt(3))) }},
		{name: "255 sectors", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame { return c.request(aoe.CommandATA, ata(readExt(255))) }},
		{name: "write shorter than its count", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandATA, ata(aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 1, Data: sector}))
			}},
		{name: "write without data", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandATA, ata(aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 1}))
			}},
		{name: "identify count 0", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame { return c.request(aoe.CommandATA, ata(aoe.ATA{CmdStatus: aoe.ATAIdentifyDevice})) }},
		{name: "identify count 2", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandATA, ata(aoe.ATA{SectorCount: 2, CmdStatus: aoe.ATAIdentifyDevice}))
			}},
		{name: "W flag on a read", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				a := readExt(1)
				a.Flags |= aoe.ATAFlagWrite
				a.Data = sector
				return c.request(aoe.CommandATA, ata(a))
			}},
		{name: "W flag on identify", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandATA, ata(aoe.ATA{Flags: aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice, Data: sector}))
			}},
		{name: "W flag on flush", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandATA, ata(aoe.ATA{Flags: aoe.ATAFlagWrite, CmdStatus: aoe.ATAFlushCacheExt}))
			}},
		{name: "W flag on check power mode", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandATA, ata(aoe.ATA{Flags: aoe.ATAFlagWrite, CmdStatus: aoe.ATACheckPowerMode}))
			}},
		{name: "write without W flag", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandATA, ata(aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 1, Data: sector}))
			}},
		{name: "LBA28 with LBA byte 4 set", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandATA, ata(aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAReadSectors, LBA: 1<<32 | 1}))
			}},
		{name: "LBA28 write with LBA byte 5 set", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandATA, ata(aoe.ATA{Flags: aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectors, LBA: 1<<40 | 1, Data: sector}))
			}},
		{name: "config string beyond the frame", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandQueryConfig, configArg(aoe.ConfigSet, 200, []byte("abc")))
			}},
		{name: "config string over 1024 bytes", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandQueryConfig, configArg(aoe.ConfigForceSet, 1025, bytes.Repeat([]byte("x"), 1025)))
			}},
		{name: "unknown config command", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame { return c.request(aoe.CommandQueryConfig, configArg(7, 0, nil)) }},
		{name: "unknown MAC mask command", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame { return c.request(aoe.CommandMACMask, []byte{0, 5, 0, 0}) }},
		{name: "MAC mask directives beyond the frame", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandMACMask, append([]byte{0, 1, 0, 40}, make([]byte, 40)...))
			}},
		{name: "unknown reserve command", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame { return c.request(aoe.CommandReserveRelease, []byte{9, 0}) }},
		{name: "reserve addresses beyond the frame", wantErr: aoe.ErrorBadArgument,
			build: func() *aoe.Frame {
				return c.request(aoe.CommandReserveRelease, append([]byte{1, 30}, make([]byte, 60)...))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.srv.Stats()
			f := tc.build()
			b, err := f.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if tc.raw != nil {
				tc.raw(b)
			}
			ch := c.sendRaw(t, f.Tag, b)
			if tc.drop != "" {
				waitFor(t, "the drop to be counted", func() bool {
					return h.srv.Stats().Dropped[tc.drop] == before.Dropped[tc.drop]+1
				})
				checkResponse(t, c.roundTrip(t, readReq(c, t, 1, 1)), 0)
				select {
				case resp := <-ch:
					t.Fatalf("dropped frame answered: % x", resp[:40])
				default:
				}
				return
			}
			resp := awaitResponse(t, ch)
			checkResponse(t, resp, tc.wantErr)
			if resp.Command != f.Command || resp.Tag != f.Tag || resp.Dst != clientMAC {
				t.Errorf("response header %+v to %s", resp.Header, resp.Dst)
			}
			// Still serving.
			checkResponse(t, c.roundTrip(t, readReq(c, t, 1, 1)), 0)
		})
	}
}

// TestWildcard checks that discovery through the wildcard shelf and slot
// works, but that writes to the wildcards are never executed.
func TestWildcard(t *testing.T) {
	h := newHarness(t)
	c := h.client
	for _, addr := range []struct {
		major uint16
		minor uint8
	}{{aoe.BroadcastMajor, aoe.BroadcastMinor}, {aoe.BroadcastMajor, testSlot}, {testShelf, aoe.BroadcastMinor}} {
		wild := func(f *aoe.Frame) *aoe.Frame {
			f.Major, f.Minor = addr.major, addr.minor
			f.Dst = aoe.BroadcastMAC
			return f
		}
		// Reads, IDENTIFY and Query Config are answered, from our
		// own address.
		for _, f := range []*aoe.Frame{
			readReq(c, t, 0, 1),
			c.request(aoe.CommandATA, ataArg(t, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})),
			c.request(aoe.CommandQueryConfig, make([]byte, aoe.ConfigHeaderLen)),
		} {
			resp := c.roundTrip(t, wild(f))
			checkResponse(t, resp, 0)
		}
		// Writes are dropped.
		before := h.srv.Stats().Dropped["wildcard_write"]
		for _, f := range []*aoe.Frame{
			writeReq(c, t, 5, pattern(512, 1)),
			c.request(aoe.CommandATA, ataArg(t, aoe.ATA{Flags: aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectors, LBA: 5, Data: pattern(512, 1)})),
			c.request(aoe.CommandATA, ataArg(t, aoe.ATA{Flags: aoe.ATAFlagWrite | aoe.ATAFlagExtended, SectorCount: 1, CmdStatus: aoe.ATAWriteFUAExt, LBA: 5, Data: pattern(512, 1)})),
			// The W flag alone marks a write too.
			c.request(aoe.CommandATA, ataArg(t, aoe.ATA{Flags: aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: 0xCA, LBA: 5, Data: pattern(512, 1)})),
		} {
			c.expectNoResponse(t, wild(f))
		}
		if got := h.srv.Stats().Dropped["wildcard_write"]; got != before+4 {
			t.Errorf("%d.%d: wildcard_write = %d, was %d", addr.major, addr.minor, got, before)
		}
		if !bytes.Equal(h.disk.bytes(5*512, 512), make([]byte, 512)) {
			t.Fatalf("%d.%d: a wildcard write was executed", addr.major, addr.minor)
		}
	}
}

// TestShortFrames feeds every truncation of valid requests straight to
// the handler (a hub pads frames to 60 bytes, so they cannot arrive
// short there): frames shorter than their headers are dropped, and
// nothing panics.
func TestShortFrames(t *testing.T) {
	c, _ := newTestSession(t, Config{})
	cl := &client{mac: clientMAC}
	requests := []*aoe.Frame{
		readReq(cl, t, 1, 1),
		writeReq(cl, t, 1, pattern(512, 1)),
		cl.request(aoe.CommandQueryConfig, make([]byte, aoe.ConfigHeaderLen)),
		cl.request(aoe.CommandMACMask, []byte{0, 0, 0, 0}),
		cl.request(aoe.CommandReserveRelease, []byte{0, 0}),
	}
	headerLen := map[aoe.Command]int{
		aoe.CommandATA:            aoe.FrameHeaderLen + aoe.ATAHeaderLen,
		aoe.CommandQueryConfig:    aoe.FrameHeaderLen + aoe.ConfigHeaderLen,
		aoe.CommandMACMask:        aoe.FrameHeaderLen + aoe.MACMaskHeaderLen,
		aoe.CommandReserveRelease: aoe.FrameHeaderLen + aoe.ReserveReleaseHeaderLen,
	}
	for _, f := range requests {
		full, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < headerLen[f.Command]; n++ {
			before := c.s.counters.dropped[dropShort].Load()
			r := &request{buf: make([]byte, 9014)}
			r.n = copy(r.buf, full[:n])
			if d := c.handle(r); d != drop {
				t.Errorf("%v frame of %d bytes: disposition %d", f.Command, n, d)
			}
			if c.s.counters.dropped[dropShort].Load() != before+1 {
				t.Errorf("%v frame of %d bytes not counted as short", f.Command, n)
			}
		}
	}
}

// TestOtherHost feeds the handler a frame unicast to another station (a
// hub, like a switch, would not deliver it; a promiscuous interface or a
// flooding switch can): it is dropped, not answered.
func TestOtherHost(t *testing.T) {
	c, _ := newTestSession(t, Config{})
	cl := &client{mac: clientMAC}
	for _, tc := range []struct {
		dst  aoe.MAC
		want disposition
	}{
		{thirdMAC, drop},
		{targetMAC, replyNow},
		{aoe.BroadcastMAC, replyNow},
		{aoe.MAC{0x01, 0x00, 0x5e, 0, 0, 1}, replyNow}, // multicast
	} {
		f := readReq(cl, t, 1, 1)
		f.Dst = tc.dst
		b, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		r := &request{buf: make([]byte, 9014)}
		r.n = copy(r.buf, b)
		if got := c.handle(r); got != tc.want {
			t.Errorf("frame to %s: disposition %d, want %d", tc.dst, got, tc.want)
		}
	}
	if got := c.s.Stats().Dropped["other_host"]; got != 1 {
		t.Errorf("other_host = %d", got)
	}
}
