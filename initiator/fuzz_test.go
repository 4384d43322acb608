package initiator

import (
	"context"
	"sync"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

func FuzzParseIdentify(f *testing.F) {
	f.Add(identifyData(8192, true, true, true))
	f.Add(identifyData(1<<28+5, false, false, false))
	f.Add(make([]byte, 512))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := parseIdentify(b)
		if err == nil && (id.sectors == 0 || id.sectors > aoe.MaxLBA) {
			t.Errorf("accepted capacity %d", id.sectors)
		}
		if id.fua && !id.lba48 {
			t.Error("FUA without LBA48")
		}
	})
}

// recordLink is a Link that keeps what is written to it and never
// delivers anything.
type recordLink struct {
	mu     sync.Mutex
	frames [][]byte
}

func (l *recordLink) ReadFrame([]byte) (int, error) { select {} }
func (l *recordLink) WriteFrame(b []byte) error {
	l.mu.Lock()
	l.frames = append(l.frames, append([]byte(nil), b...))
	l.mu.Unlock()
	return nil
}
func (l *recordLink) MTU() int              { return 1500 }
func (l *recordLink) HardwareAddr() aoe.MAC { return initiatorMAC }
func (l *recordLink) Close() error          { return nil }

// answerTo builds a response to request frame req, with the given data.
func answerTo(req []byte, flags aoe.Flags, data []byte) []byte {
	var f aoe.Frame
	_ = f.UnmarshalBinary(req)
	var a aoe.ATA
	_ = a.UnmarshalBinary(f.Arg)
	resp := aoe.Frame{Dst: f.Src, Src: f.Dst, Header: f.Header}
	resp.Flags |= aoe.FlagResponse | flags
	reply := aoe.ATA{Flags: a.Flags, CmdStatus: aoe.ATAStatusDRDY, LBA: a.LBA, Data: data}
	resp.Arg, _ = reply.MarshalBinary()
	out, _ := resp.MarshalBinary()
	return out
}

// FuzzHandleFrame feeds arbitrary frames to an initiator that has a read,
// a write and a flush in flight on a device with two targets.
func FuzzHandleFrame(f *testing.F) {
	setup := func() (*Initiator, *link, *recordLink) {
		rl := &recordLink{}
		ini, err := New(Config{Links: []aoe.Link{rl}, Logger: testLogger(), Policy: PolicyMultipath})
		if err != nil {
			f.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // identify of a device the fuzzer invents gives up at once
		ini.runCtx = ctx
		l := ini.links[0]
		d := ini.addDevice(1, 0)
		d.identifying = true
		for n := byte(1); n <= 2; n++ {
			d.configResponse(l, targetMAC(n), &aoe.Config{BufferCount: 8, SectorCount: 2}, false, -1)
		}
		d.mu.Lock()
		d.setIdentityLocked(identity{sectors: 1024, lba48: true, fua: true})
		d.state = DeviceUp
		first := d.failover.targets[0]
		first.dirty = true
		for _, op := range []opcode{opRead, opWrite, opFlush} {
			r := d.engine.newRequest(op, make([]byte, 8*aoe.SectorSize), 16, 8, false)
			if op == opFlush {
				r.buf, r.lba, r.total, r.flushTo = nil, 0, 1, append(r.flushTo, first)
			}
			d.engine.enqueue(r)
		}
		d.engine.pump(ini.now())
		d.mu.Unlock()
		return ini, l, rl
	}
	_, _, rl := setup()
	for k, req := range rl.frames {
		data := make([]byte, 2*aoe.SectorSize)
		f.Add(answerTo(req, 0, data))
		f.Add(answerTo(req, aoe.FlagError, nil))
		if k == 0 {
			f.Add(answerTo(req, 0, data[:100]))
		}
	}
	cfg, _ := (&aoe.Frame{Dst: aoe.BroadcastMAC, Src: targetMAC(3), Header: aoe.Header{Version: 1, Flags: aoe.FlagResponse, Major: 2, Minor: 1, Command: aoe.CommandQueryConfig},
		Arg: []byte{0, 16, 0, 1, 2, 0x10, 0, 0}}).MarshalBinary()
	f.Add(cfg)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ini, l, _ := setup()
		ini.handleFrame(l, b)
		for _, d := range ini.Devices() {
			d.scan(ini.now())
			_ = d.Stats()
		}
	})
}
