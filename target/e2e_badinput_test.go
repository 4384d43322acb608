package target_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/netlab"
)

// outcome is what a target must do with a frame.
type outcome struct {
	drop   bool      // no answer at all
	aoeErr aoe.Error // an answer with the E flag and this code
	ataErr uint8     // an ATA answer with ERR status and these error bits
}

var (
	dropped = outcome{drop: true}
	aoeErr  = func(e aoe.Error) outcome { return outcome{aoeErr: e} }
	ataErr  = func(bits uint8) outcome { return outcome{ataErr: bits} }
)

func (o outcome) String() string {
	switch {
	case o.drop:
		return "no answer"
	case o.aoeErr != 0:
		return fmt.Sprintf("AoE error %d", o.aoeErr)
	}
	return fmt.Sprintf("ATA error %#02x", o.ataErr)
}

// rawSender sends frames exactly as given, without the padding to 60
// bytes that rawlink.Link adds, so that truncated frames reach the target.
type rawSender struct {
	conn *packet.Conn
}

// newRawSender opens an AF_PACKET socket on iface in ns.
func newRawSender(t *testing.T, ns *netlab.Netns, iface string) *rawSender {
	t.Helper()
	var s rawSender
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		s.conn, err = packet.Listen(ifi, packet.Raw, aoe.EtherType, nil)
		return err
	})
	if err != nil {
		t.Fatalf("e2e: raw socket on %s: %v", iface, err)
	}
	t.Cleanup(func() { s.conn.Close() })
	return &s
}

func (s *rawSender) send(frame []byte) error {
	_, err := s.conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])})
	return err
}

// testE2EBadInput sends every kind of bad frame to a running ironblade and
// checks each gets the stated answer and the target keeps serving.
func testE2EBadInput(t *testing.T, bin string) {
	const sectors = 2048
	r := newRig(t, bin, 1500)
	disk := newDisk(t, sectors)
	roDisk := newDisk(t, sectors)
	b := r.start(t, "1", "0", r.veth.IfA, disk)
	ro := r.start(t, "-r", "1", "1", r.veth.IfA, roDisk)
	dev := r.discover(t, 1, 0)
	r.discover(t, 1, 1)
	raw := newRawSender(t, r.cli, r.veth.IfB)

	me, tgt := r.veth.MACB, r.veth.MACA
	frame := func(dst aoe.MAC, h aoe.Header, arg []byte) []byte {
		if h.Version == 0 {
			h.Version = aoe.Version
		}
		f := aoe.Frame{Dst: dst, Src: me, Header: h, Arg: arg}
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
		return b
	}
	hdr := func(shelf uint16, slot uint8, cmd aoe.Command) aoe.Header {
		return aoe.Header{Major: shelf, Minor: slot, Command: cmd}
	}
	const ext = aoe.ATAFlagExtended
	read := func(count uint8, lba uint64) []byte {
		return ata(aoe.ATA{Flags: ext, SectorCount: count, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba})
	}
	write := func(count uint8, lba uint64, data []byte) []byte {
		return ata(aoe.ATA{Flags: ext | aoe.ATAFlagWrite, SectorCount: count, CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba, Data: data})
	}
	sector := bytes.Repeat([]byte{0xA5}, aoe.SectorSize)
	// wildcardLBA is written to through the wildcard addresses: it must
	// stay zero.
	const wildcardLBA = 1000

	cases := []struct {
		name  string
		frame []byte
		cut   int // if not 0, send only this many bytes, unpadded
		want  outcome
	}{
		{"response flag set", frame(tgt, aoe.Header{Flags: aoe.FlagResponse, Major: 1, Command: aoe.CommandQueryConfig}, make([]byte, 8)), 0, dropped},
		{"other shelf", frame(tgt, hdr(2, 0, aoe.CommandQueryConfig), make([]byte, 8)), 0, dropped},
		{"other slot", frame(tgt, hdr(1, 7, aoe.CommandQueryConfig), make([]byte, 8)), 0, dropped},
		{"unicast to another MAC", frame(aoe.MAC{0x02, 0xde, 0xad, 0, 0, 1}, hdr(1, 0, aoe.CommandQueryConfig), make([]byte, 8)), 0, dropped},
		{"truncated: Ethernet header only", frame(tgt, hdr(1, 0, aoe.CommandATA), nil), aoe.EthernetHeaderLen, dropped},
		{"truncated: half an AoE header", frame(tgt, hdr(1, 0, aoe.CommandATA), nil), aoe.EthernetHeaderLen + 5, dropped},
		{"truncated: half an ATA argument", frame(tgt, hdr(1, 0, aoe.CommandATA), read(1, 0)), aoe.FrameHeaderLen + 6, dropped},
		{"truncated: half a Query Config argument", frame(tgt, hdr(1, 0, aoe.CommandQueryConfig), make([]byte, 8)), aoe.FrameHeaderLen + 4, dropped},
		{"unknown AoE command", frame(tgt, hdr(1, 0, 5), nil), 0, aoeErr(aoe.ErrorUnrecognizedCommand)},
		{"vendor AoE command", frame(tgt, hdr(1, 0, 0xF0), nil), 0, aoeErr(aoe.ErrorUnrecognizedCommand)},
		{"too many sectors", frame(tgt, hdr(1, 0, aoe.CommandATA), read(3, 0)), 0, aoeErr(aoe.ErrorBadArgument)},
		{"short write payload", frame(tgt, hdr(1, 0, aoe.CommandATA), write(2, 0, sector)), 0, aoeErr(aoe.ErrorBadArgument)},
		{"IDENTIFY count 0", frame(tgt, hdr(1, 0, aoe.CommandATA), ata(aoe.ATA{CmdStatus: aoe.ATAIdentifyDevice})), 0, aoeErr(aoe.ErrorBadArgument)},
		{"IDENTIFY count 2", frame(tgt, hdr(1, 0, aoe.CommandATA), ata(aoe.ATA{SectorCount: 2, CmdStatus: aoe.ATAIdentifyDevice})), 0, aoeErr(aoe.ErrorBadArgument)},
		{"READ with the W flag", frame(tgt, hdr(1, 0, aoe.CommandATA),
			ata(aoe.ATA{Flags: ext | aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt, Data: sector})), 0, aoeErr(aoe.ErrorBadArgument)},
		{"WRITE without the W flag", frame(tgt, hdr(1, 0, aoe.CommandATA),
			ata(aoe.ATA{Flags: ext, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, Data: sector})), 0, aoeErr(aoe.ErrorBadArgument)},
		{"config string longer than the frame", frame(tgt, hdr(1, 0, aoe.CommandQueryConfig),
			[]byte{0, 0, 0, 0, 0, byte(aoe.ConfigSet), 0x01, 0x00, 'x'}), 0, aoeErr(aoe.ErrorBadArgument)},
		{"version 2", frame(tgt, aoe.Header{Version: 2, Major: 1, Command: aoe.CommandQueryConfig}, make([]byte, 8)), 0, aoeErr(aoe.ErrorUnsupportedVersion)},
		{"version 15 ATA", frame(tgt, aoe.Header{Version: 15, Major: 1, Command: aoe.CommandATA}, read(1, 0)), 0, aoeErr(aoe.ErrorUnsupportedVersion)},
		{"LBA28 with LBA bytes 4-5 set", frame(tgt, hdr(1, 0, aoe.CommandATA),
			ata(aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAReadSectors, LBA: 1<<40 | 0xE0<<24 | 5})), 0, aoeErr(aoe.ErrorBadArgument)},
		{"write to the wildcard shelf", frame(tgt, hdr(aoe.BroadcastMajor, 0, aoe.CommandATA), write(1, wildcardLBA, sector)), 0, dropped},
		{"write to the wildcard slot", frame(tgt, hdr(1, aoe.BroadcastMinor, aoe.CommandATA), write(1, wildcardLBA, sector)), 0, dropped},
		{"broadcast write to every target", frame(aoe.BroadcastMAC, hdr(aoe.BroadcastMajor, aoe.BroadcastMinor, aoe.CommandATA), write(1, wildcardLBA, sector)), 0, dropped},
		{"LBA past the end", frame(tgt, hdr(1, 0, aoe.CommandATA), read(2, sectors-1)), 0, ataErr(aoe.ATAErrorIDNF)},
		{"LBA far past the end", frame(tgt, hdr(1, 0, aoe.CommandATA), write(1, 1<<40, sector)), 0, ataErr(aoe.ATAErrorIDNF)},
		{"unknown ATA command", frame(tgt, hdr(1, 0, aoe.CommandATA), ata(aoe.ATA{SectorCount: 1, CmdStatus: 0x99})), 0, ataErr(aoe.ATAErrorABRT)},
		{"write to a read-only export", frame(tgt, hdr(1, 1, aoe.CommandATA), write(1, 0, sector)), 0, ataErr(aoe.ATAErrorABRT)},
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Forget the start-up announcements and anything else unclaimed.
	for {
		idle, done := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := r.client.Expect(idle, func(*aoe.Frame) bool { return true })
		done()
		if err != nil {
			break
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Tags without bit 31 reach Expect rather than the client's
			// own request matching.
			tag := uint32(0x0bad0000 + i)
			copy(c.frame[aoe.EthernetHeaderLen+6:], []byte{byte(tag >> 24), byte(tag >> 16), byte(tag >> 8), byte(tag)})
			var err error
			if c.cut > 0 {
				err = raw.send(c.frame[:c.cut])
			} else {
				err = r.client.SendRaw(c.frame)
			}
			if err != nil {
				t.Fatal(err)
			}
			wait := 2 * time.Second
			if c.want.drop {
				wait = 300 * time.Millisecond
			}
			step, done := context.WithTimeout(ctx, wait)
			defer done()
			// An answer to a frame cut before its tag would carry some
			// other tag: catch any answer to a tag not the client's.
			f, err := r.client.Expect(step, func(f *aoe.Frame) bool {
				return f.IsResponse() && (f.Tag == tag || c.cut > 0 && f.Tag&aoe.TagUserland == 0)
			})
			switch {
			case c.want.drop && err == nil:
				t.Errorf("got an answer from %v (flags %#x, error %d), want %v", f.Src, f.Flags, f.Error, c.want)
			case c.want.drop:
			case err != nil:
				t.Errorf("no answer, want %v: %v", c.want, err)
			default:
				checkOutcome(t, &f, c.want)
			}
			// The targets keep serving.
			for slot := uint8(0); slot < 2; slot++ {
				if _, err := r.client.Do(ctx, tgt, hdr(1, slot, aoe.CommandQueryConfig), make([]byte, 8)); err != nil {
					t.Fatalf("e1.%d stopped answering: %v", slot, err)
				}
			}
		})
	}

	// After the table, a normal read and write still work.
	data := aoetest.RandomBytes(64 * aoe.SectorSize)
	if err := r.client.WriteAt(ctx, dev, data, 0, 16); err != nil {
		t.Fatalf("write after the bad input: %v", err)
	}
	back := make([]byte, len(data))
	if err := r.client.ReadAt(ctx, dev, back, 0, 16); err != nil {
		t.Fatalf("read after the bad input: %v", err)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("read after the bad input returned different data")
	}
	if err := r.client.ReadAt(ctx, dev, back[:aoe.SectorSize], wildcardLBA*aoe.SectorSize, 1); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back[:aoe.SectorSize], make([]byte, aoe.SectorSize)) {
		t.Error("a write to the wildcard address was executed")
	}
	stopBlade(t, b)
	stopBlade(t, ro)
	zero := sha512.Sum512(make([]byte, aoe.SectorSize))
	if aoetest.FileSum(t, disk, wildcardLBA*aoe.SectorSize, aoe.SectorSize) != zero {
		t.Error("the file holds data written to the wildcard address")
	}
	if aoetest.FileSum(t, roDisk, 0, aoe.SectorSize) != zero {
		t.Error("the read-only export's file was written")
	}
}

// checkOutcome checks an answer against the expected error.
func checkOutcome(t *testing.T, f *aoe.Frame, want outcome) {
	t.Helper()
	if want.aoeErr != 0 {
		if f.Flags&aoe.FlagError == 0 || f.Error != want.aoeErr {
			t.Errorf("answer flags %#x, error %d; want the E flag and error %d", f.Flags, f.Error, want.aoeErr)
		}
		return
	}
	if f.Flags&aoe.FlagError != 0 {
		t.Errorf("answer has AoE error %d, want %v", f.Error, want)
		return
	}
	var a aoe.ATA
	if err := a.UnmarshalBinary(f.Arg); err != nil {
		t.Fatalf("ATA answer: %v", err)
	}
	if a.CmdStatus&aoe.ATAStatusError == 0 || a.FeatureError&want.ataErr != want.ataErr {
		t.Errorf("ATA status %#02x, error %#02x; want ERR and error bits %#02x", a.CmdStatus, a.FeatureError, want.ataErr)
	}
}

// errNoAnswer is how the access tests recognise a request that got no
// answer: the client gave up or the step's context ended.
func errNoAnswer(err error) bool {
	return errors.Is(err, aoe.ErrNoResponse) || errors.Is(err, context.DeadlineExceeded)
}
