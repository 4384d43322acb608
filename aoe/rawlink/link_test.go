//go:build linux

package rawlink_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/packet"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// rawPair is two RawLinks joined by a veth pair between two namespaces.
type rawPair struct {
	veth *netlab.Veth
	a, b *rawlink.Link
}

func newRawPair(t testing.TB, mtu int, cfg rawlink.Config) *rawPair {
	t.Helper()
	nsA, nsB := testenv.NewNetns(t), testenv.NewNetns(t)
	v := testenv.NewVeth(t, nsA, nsB, mtu)
	return &rawPair{
		veth: v,
		a:    testenv.ListenRawIn(t, nsA, v.IfA, cfg),
		b:    testenv.ListenRawIn(t, nsB, v.IfB, cfg),
	}
}

// rawTestFrame builds an AoE frame of exactly size bytes (at least
// FrameHeaderLen) whose argument is a pattern derived from tag.
func rawTestFrame(dst, src aoe.MAC, tag uint32, size int) []byte {
	f := aoe.Frame{
		Dst: dst, Src: src,
		Header: aoe.Header{Version: aoe.Version, Major: 7, Minor: 3, Command: aoe.CommandVendorFirst, Tag: tag},
		Arg:    make([]byte, max(size-aoe.FrameHeaderLen, 0)),
	}
	for i := range f.Arg {
		f.Arg[i] = byte(tag) + byte(i)
	}
	b, err := f.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b[:size]
}

// rawSameFrame reports whether got is want as a receiver sees it: padded with
// zeros to MinFrameLen.
func rawSameFrame(got, want []byte) bool {
	if len(want) >= aoe.MinFrameLen {
		return bytes.Equal(got, want)
	}
	return len(got) == aoe.MinFrameLen && bytes.Equal(got[:len(want)], want) &&
		bytes.Count(got[len(want):], []byte{0}) == aoe.MinFrameLen-len(want)
}

func rawFrameTag(b []byte) uint32 { return binary.BigEndian.Uint32(b[20:24]) }

// rawReadFrame reads one frame, failing the test if none comes within 2 s.
func rawReadFrame(t testing.TB, l *rawlink.Link, buf []byte) []byte {
	t.Helper()
	if err := l.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := l.ReadFrame(buf)
	if err != nil {
		t.Fatalf("ReadFrame on %s: %v", l.Interface(), err)
	}
	return buf[:n]
}

// rawExpectNoFrame fails the test if a frame arrives on l within d.
func rawExpectNoFrame(t testing.TB, l *rawlink.Link, d time.Duration) {
	t.Helper()
	if err := l.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10000)
	n, err := l.ReadFrame(buf)
	if err == nil {
		t.Fatalf("%s: unexpected %d-byte frame % x", l.Interface(), n, buf[:min(n, 32)])
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: ReadFrame: %v, want a deadline error", l.Interface(), err)
	}
}

func TestListenRawErrors(t *testing.T) {
	tests := []struct {
		name  string
		iface string
		cfg   rawlink.Config
		want  error
	}{
		{"reserved VLAN", "lo", rawlink.Config{VLAN: 4095}, rawlink.ErrInvalidVLAN},
		{"VLAN out of range", "lo", rawlink.Config{VLAN: 0xffff}, rawlink.ErrInvalidVLAN},
		{"no such interface", "ib-nonexistent0", rawlink.Config{}, nil},
		{"name too long", "an-interface-name-too-long", rawlink.Config{}, nil},
		{"negative buffer", "lo", rawlink.Config{ReadBuffer: -1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := rawlink.Listen(tt.iface, tt.cfg)
			if err == nil {
				l.Close()
				t.Fatal("Listen succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Listen: %v, want %v", err, tt.want)
			}
			t.Log(err)
		})
	}
}

// rawModes are the kinds of link the tests that apply to both run on.
// The busy-polling mode watches the ring for a while before each wait.
var rawModes = []struct {
	name     string
	vlan     uint16
	noRing   bool
	busyPoll time.Duration
}{
	{"untagged", 0, false, 0}, {"vlan42", 42, false, 0}, {"untagged/recvmmsg", 0, true, 0}, {"vlan42/recvmmsg", 42, true, 0},
	{"untagged/busypoll", 0, false, 200 * time.Microsecond}, {"vlan42/busypoll", 42, false, 200 * time.Microsecond},
}

func TestRawLinkFrames(t *testing.T) {
	for _, mode := range rawModes {
		for _, mtu := range []int{1500, 9000} {
			t.Run(mode.name+"/mtu"+strconv.Itoa(mtu), func(t *testing.T) {
				p := newRawPair(t, mtu, rawlink.Config{VLAN: mode.vlan, NoRing: mode.noRing, BusyPoll: mode.busyPoll})
				if got := p.a.Ring(); got == mode.noRing {
					t.Errorf("Ring = %v with NoRing %v", got, mode.noRing)
				}
				if got := p.a.VLAN(); got != mode.vlan {
					t.Errorf("VLAN = %d, want %d", got, mode.vlan)
				}
				// A VLAN tag does not count against the MTU.
				if got := p.a.MTU(); got != mtu {
					t.Errorf("MTU = %d, want %d", got, mtu)
				}
				if got := p.a.HardwareAddr(); got != p.veth.MACA {
					t.Errorf("HardwareAddr = %v, want %v", got, p.veth.MACA)
				}
				if got := p.b.Interface(); got != p.veth.IfB {
					t.Errorf("Interface = %q, want %q", got, p.veth.IfB)
				}
				buf := make([]byte, mtu+aoe.EthernetHeaderLen)
				tests := []struct {
					name     string
					from, to *rawlink.Link
					dst      aoe.MAC
					size     int
				}{
					{"header only, padded", p.a, p.b, p.veth.MACB, aoe.FrameHeaderLen},
					{"minimum", p.a, p.b, p.veth.MACB, aoe.MinFrameLen},
					{"two sectors", p.a, p.b, p.veth.MACB, aoe.FrameHeaderLen + aoe.ATAHeaderLen + 1024},
					{"full MTU", p.a, p.b, p.veth.MACB, mtu + aoe.EthernetHeaderLen},
					{"reply direction", p.b, p.a, p.veth.MACA, 1000},
					{"reply full MTU", p.b, p.a, p.veth.MACA, mtu + aoe.EthernetHeaderLen},
					{"broadcast", p.a, p.b, aoe.BroadcastMAC, 100},
					{"multicast", p.b, p.a, aoe.MAC{0x01, 0x80, 0xc2, 0, 0, 0x42}, 100},
				}
				for i, tt := range tests {
					want := rawTestFrame(tt.dst, tt.from.HardwareAddr(), uint32(i), tt.size)
					if err := tt.from.WriteFrame(want); err != nil {
						t.Fatalf("%s: WriteFrame: %v", tt.name, err)
					}
					if got := rawReadFrame(t, tt.to, buf); !rawSameFrame(got, want) {
						t.Fatalf("%s: got %d bytes % x..., want %d bytes % x...", tt.name, len(got), got[:min(len(got), 40)], len(want), want[:min(len(want), 40)])
					}
				}
				st := p.a.Stats()
				if st.FramesOut != 5 || st.FramesIn != 3 || st.SendErrors != 0 || st.Truncated != 0 {
					t.Errorf("Stats = %+v, want 5 frames out, 3 in", st)
				}
			})
		}
	}
}

// TestRawLinkBatch moves 500 frames of all sizes each way with WriteFrames
// and ReadFrames.
func TestRawLinkBatch(t *testing.T) {
	const count = 500
	for _, mode := range rawModes {
		t.Run(mode.name, func(t *testing.T) {
			p := newRawPair(t, 9000, rawlink.Config{VLAN: mode.vlan, NoRing: mode.noRing, BusyPoll: mode.busyPoll, ReadBuffer: 8 << 20, WriteBuffer: 8 << 20})
			bufs := make([][]byte, 64)
			for i := range bufs {
				bufs[i] = make([]byte, 9014)
			}
			lens := make([]int, len(bufs))
			for _, dir := range []struct {
				name     string
				from, to *rawlink.Link
			}{{"a to b", p.a, p.b}, {"b to a", p.b, p.a}} {
				frames := make([][]byte, count)
				for i := range frames {
					frames[i] = rawTestFrame(dir.to.HardwareAddr(), dir.from.HardwareAddr(), uint32(i), aoe.FrameHeaderLen+(i*37)%(9014-aoe.FrameHeaderLen+1))
				}
				if n, err := dir.from.WriteFrames(frames); err != nil || n != count {
					t.Fatalf("%s: WriteFrames = %d, %v; want %d", dir.name, n, err, count)
				}
				got, calls := 0, 0
				for got < count {
					if err := dir.to.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
						t.Fatal(err)
					}
					n, err := dir.to.ReadFrames(bufs, lens)
					if err != nil {
						t.Fatalf("%s: ReadFrames after %d frames: %v", dir.name, got, err)
					}
					calls++
					for i := range n {
						if !rawSameFrame(bufs[i][:lens[i]], frames[got]) {
							t.Fatalf("%s: frame %d: got tag %d, %d bytes; want %d bytes", dir.name, got, rawFrameTag(bufs[i]), lens[i], len(frames[got]))
						}
						got++
					}
				}
				t.Logf("%s: %d frames in %d ReadFrames calls", dir.name, count, calls)
				if calls == count {
					t.Errorf("%s: ReadFrames never returned more than one frame", dir.name)
				}
				sf, st := dir.from.Stats(), dir.to.Stats()
				if sf.FramesOut != count || st.FramesIn != count || st.KernelDrops != 0 || st.Truncated != 0 {
					t.Errorf("%s: stats: sender %+v, receiver %+v", dir.name, sf, st)
				}
				// Sent bytes include the tags, received ones do not.
				tagBytes := uint64(0)
				if mode.vlan != 0 {
					tagBytes = 4 * count
				}
				if sf.BytesOut != st.BytesIn+tagBytes {
					t.Errorf("%s: %d bytes out, %d bytes in", dir.name, sf.BytesOut, st.BytesIn)
				}
			}
			if n, err := p.a.WriteFrames(nil); n != 0 || err != nil {
				t.Errorf("WriteFrames(nil) = %d, %v", n, err)
			}
			if n, err := p.b.ReadFrames(nil, nil); n != 0 || err != nil {
				t.Errorf("ReadFrames(nil) = %d, %v", n, err)
			}
		})
	}
}

func TestRawLinkOversize(t *testing.T) {
	p := newRawPair(t, 1500, rawlink.Config{})
	buf := make([]byte, 2000)
	big := rawTestFrame(p.veth.MACB, p.veth.MACA, 1, 1515)
	err := p.a.WriteFrame(big)
	if !errors.Is(err, aoe.ErrFrameTooLarge) || !errors.Is(err, syscall.EMSGSIZE) {
		t.Fatalf("WriteFrame(1515 bytes) = %v, want ErrFrameTooLarge and EMSGSIZE", err)
	}
	t.Log(err)
	if err := p.a.WriteFrame(make([]byte, 10)); !errors.Is(err, aoe.ErrShort) {
		t.Errorf("WriteFrame(10 bytes) = %v, want ErrShort", err)
	}
	// The link still works, and a batch stops at the oversize frame.
	frames := [][]byte{
		rawTestFrame(p.veth.MACB, p.veth.MACA, 2, 1514),
		rawTestFrame(p.veth.MACB, p.veth.MACA, 3, 100),
		big,
		rawTestFrame(p.veth.MACB, p.veth.MACA, 4, 100),
	}
	n, err := p.a.WriteFrames(frames)
	if n != 2 || !errors.Is(err, aoe.ErrFrameTooLarge) {
		t.Fatalf("WriteFrames = %d, %v; want 2, ErrFrameTooLarge", n, err)
	}
	for _, want := range frames[:2] {
		if got := rawReadFrame(t, p.b, buf); !rawSameFrame(got, want) {
			t.Fatalf("got tag %d, want %d", rawFrameTag(got), rawFrameTag(want))
		}
	}
	rawExpectNoFrame(t, p.b, 100*time.Millisecond)
	if st := p.a.Stats(); st.SendErrors != 3 || st.FramesOut != 2 {
		t.Errorf("Stats = %+v, want 3 send errors, 2 frames out", st)
	}
}

func TestRawLinkMTUChange(t *testing.T) {
	p := newRawPair(t, 9000, rawlink.Config{})
	buf := make([]byte, 9014)
	jumbo := rawTestFrame(p.veth.MACB, p.veth.MACA, 1, 9014)
	if err := p.a.WriteFrame(jumbo); err != nil {
		t.Fatal(err)
	}
	rawReadFrame(t, p.b, buf)

	// Right after the drop the link still believes in 9000; the kernel's
	// EMSGSIZE makes it re-read the MTU at once.
	testenv.SetMTU(t, p.veth, 1500)
	err := p.a.WriteFrame(jumbo)
	if !errors.Is(err, aoe.ErrFrameTooLarge) || !errors.Is(err, syscall.EMSGSIZE) {
		t.Fatalf("WriteFrame(9014 bytes) at MTU 1500 = %v, want ErrFrameTooLarge and EMSGSIZE", err)
	}
	if got := p.a.MTU(); got != 1500 {
		t.Fatalf("MTU after EMSGSIZE = %d, want 1500", got)
	}
	small := rawTestFrame(p.veth.MACB, p.veth.MACA, 2, 1514)
	if err := p.a.WriteFrame(small); err != nil {
		t.Fatal(err)
	}
	if got := rawReadFrame(t, p.b, buf); !rawSameFrame(got, small) {
		t.Fatal("wrong frame after MTU drop")
	}

	// A rise is picked up within the refresh interval.
	testenv.SetMTU(t, p.veth, 9000)
	testenv.WaitFor(t, time.Second, "the link to see MTU 9000", func() bool { return p.b.MTU() == 9000 })
	if err := p.b.WriteFrame(rawTestFrame(p.veth.MACA, p.veth.MACB, 3, 9014)); err != nil {
		t.Fatal(err)
	}
	rawReadFrame(t, p.a, buf)
}

// TestRawLinkRingRegrows raises the MTU above the one a link's receive
// ring was sized for: the first jumbo frame outgrows its slot and is
// dropped (counted as truncated), the ring is made anew, and the next ones
// arrive whole; on every read path and kind of link.
func TestRawLinkRingRegrows(t *testing.T) {
	for _, mode := range rawModes {
		t.Run(mode.name, func(t *testing.T) {
			p := newRawPair(t, 1500, rawlink.Config{VLAN: mode.vlan, NoRing: mode.noRing, BusyPoll: mode.busyPoll})
			testenv.SetMTU(t, p.veth, 9000)
			testenv.WaitFor(t, time.Second, "the link to see MTU 9000", func() bool { return p.a.MTU() == 9000 })
			buf := make([]byte, 9014)
			var got []byte
			for i := uint32(1); got == nil && i <= 3; i++ {
				want := rawTestFrame(p.veth.MACB, p.veth.MACA, i, 9014)
				if err := p.a.WriteFrame(want); err != nil {
					t.Fatal(err)
				}
				if err := p.b.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				n, err := p.b.ReadFrame(buf)
				switch {
				case errors.Is(err, os.ErrDeadlineExceeded):
					continue
				case err != nil:
					t.Fatal(err)
				case !rawSameFrame(buf[:n], want):
					t.Fatalf("frame %d: %d bytes, tag %d; want it whole", i, n, rawFrameTag(buf[:n]))
				}
				got = buf[:n]
			}
			if got == nil {
				t.Fatal("no jumbo frame arrived whole after the MTU rose")
			}
			st := p.b.Stats()
			if mode.noRing && st.Truncated != 0 {
				t.Errorf("recvmmsg link: %d frames truncated", st.Truncated)
			}
			t.Logf("read path ring=%v: %+v", p.b.Ring(), st)
		})
	}
}

func TestRawLinkTruncates(t *testing.T) {
	for _, mode := range rawModes {
		t.Run(mode.name, func(t *testing.T) {
			p := newRawPair(t, 1500, rawlink.Config{VLAN: mode.vlan, NoRing: mode.noRing, BusyPoll: mode.busyPoll})
			for i := range 3 {
				if err := p.a.WriteFrame(rawTestFrame(p.veth.MACB, p.veth.MACA, uint32(i), 1000)); err != nil {
					t.Fatal(err)
				}
			}
			small := make([]byte, 100)
			if got := rawReadFrame(t, p.b, small); len(got) != 100 || rawFrameTag(got) != 0 {
				t.Errorf("ReadFrame into 100 bytes: %d bytes, tag %d", len(got), rawFrameTag(got))
			}
			// 998 bytes: a VLAN link's room for a tag must not hide the
			// missing two.
			bufs := [][]byte{make([]byte, 998), make([]byte, 2000)}
			lens := make([]int, 2)
			got := 0
			for got < 2 {
				if err := p.b.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
					t.Fatal(err)
				}
				n, err := p.b.ReadFrames(bufs[got:], lens[got:])
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
			if lens[0] != 998 || lens[1] != 1000 || rawFrameTag(bufs[0]) != 1 || rawFrameTag(bufs[1]) != 2 {
				t.Errorf("ReadFrames lengths = %v, tags %d %d; want [998 1000], 1 2", lens, rawFrameTag(bufs[0]), rawFrameTag(bufs[1]))
			}
			if st := p.b.Stats(); st.Truncated != 2 || st.FramesIn != 3 || st.BytesIn != 2098 {
				t.Errorf("Stats = %+v, want 2 truncated, 3 frames, 2098 bytes in", st)
			}
		})
	}
}

func TestRawLinkIgnoresOutgoing(t *testing.T) {
	p := newRawPair(t, 1500, rawlink.Config{})
	// A second link on A's interface: it must not see what A sends either.
	other := testenv.ListenRawIn(t, p.veth.A, p.veth.IfA, rawlink.Config{})
	for i, dst := range []aoe.MAC{p.veth.MACB, aoe.BroadcastMAC} {
		if err := p.a.WriteFrame(rawTestFrame(dst, p.veth.MACA, uint32(i), 100)); err != nil {
			t.Fatal(err)
		}
		rawReadFrame(t, p.b, make([]byte, 1514))
	}
	rawExpectNoFrame(t, p.a, 100*time.Millisecond)
	rawExpectNoFrame(t, other, 10*time.Millisecond)
}

// TestRawLinkFilters sends, with a plain packet socket, frames an untagged
// Link must not deliver, then ones it must.
func TestRawLinkFilters(t *testing.T) {
	p := newRawPair(t, 1500, rawlink.Config{})
	testenv.Run(t, p.veth.B, "ip", "link", "set", p.veth.IfB, "promisc", "on")
	conn := rawSender(t, p.veth.A, p.veth.IfA)

	aoeFrame := func(dst aoe.MAC, tag uint32) []byte { return rawTestFrame(dst, p.veth.MACA, tag, 100) }
	withEtherType := func(b []byte, et uint16) []byte {
		binary.BigEndian.PutUint16(b[12:14], et)
		return b
	}
	other := aoe.MAC{0x02, 0, 0, 0, 0, 0x99}
	drop := []struct {
		name  string
		frame []byte
	}{
		{"ARP", withEtherType(aoeFrame(aoe.BroadcastMAC, 1), 0x0806)},
		{"IPv4", withEtherType(aoeFrame(p.veth.MACB, 2), 0x0800)},
		{"AoE in VLAN 5 to us", vlanTag(aoeFrame(p.veth.MACB, 3), 0x8100, 5)},
		{"AoE in VLAN 5 broadcast", vlanTag(aoeFrame(aoe.BroadcastMAC, 4), 0x8100, 5)},
	}
	for _, d := range drop {
		if _, err := conn.WriteTo(d.frame, &packet.Addr{HardwareAddr: d.frame[:6]}); err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
	}
	keep := []struct {
		name  string
		tag   uint32
		frame []byte
	}{
		{"AoE to another station", 100, aoeFrame(other, 100)},
		{"AoE priority-tagged (VLAN 0)", 101, vlanTag(aoeFrame(p.veth.MACB, 101), 0x8100, 0)},
		{"AoE", 102, aoeFrame(p.veth.MACB, 102)},
	}
	for _, k := range keep {
		if _, err := conn.WriteTo(k.frame, &packet.Addr{HardwareAddr: k.frame[:6]}); err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
	}
	buf := make([]byte, 1514)
	for _, k := range keep {
		got := rawReadFrame(t, p.b, buf)
		if rawFrameTag(got) != k.tag {
			t.Fatalf("got frame with tag %d (% x...), want %s", rawFrameTag(got), got[:24], k.name)
		}
	}
	rawExpectNoFrame(t, p.b, 100*time.Millisecond)
}

func TestRawLinkCloseUnblocksRead(t *testing.T) {
	for _, mode := range rawModes {
		t.Run(mode.name, func(t *testing.T) {
			testRawLinkCloseUnblocksRead(t, rawlink.Config{VLAN: mode.vlan, NoRing: mode.noRing, BusyPoll: mode.busyPoll})
		})
	}
}

func testRawLinkCloseUnblocksRead(t *testing.T, cfg rawlink.Config) {
	p := newRawPair(t, 1500, cfg)
	reads := map[string]func() error{
		"ReadFrame": func() error {
			_, err := p.a.ReadFrame(make([]byte, 1514))
			return err
		},
		"ReadFrames": func() error {
			_, err := p.b.ReadFrames([][]byte{make([]byte, 1514)}, make([]int, 1))
			return err
		},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(reads))
	for _, read := range reads {
		wg.Go(func() { errs <- read() })
	}
	// The subject is a read already blocked when Close comes, and nothing
	// outside the link shows that a read has blocked: give them time to.
	time.Sleep(100 * time.Millisecond)
	p.a.Close()
	p.b.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock the reads")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after Close: %v, want net.ErrClosed", err)
		}
	}
	if err := p.a.WriteFrame(rawTestFrame(p.veth.MACB, p.veth.MACA, 1, 60)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteFrame after Close: %v, want net.ErrClosed", err)
	}
	if err := p.a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRawLinkDeadlineEndsWait sets a read deadline while reads wait for
// a frame: they end with a deadline error, and once it is cleared reads
// take frames again.
func TestRawLinkDeadlineEndsWait(t *testing.T) {
	for _, mode := range rawModes {
		t.Run(mode.name, func(t *testing.T) {
			p := newRawPair(t, 1500, rawlink.Config{VLAN: mode.vlan, NoRing: mode.noRing, BusyPoll: mode.busyPoll})
			reads := map[string]func() error{
				"ReadFrame": func() error {
					_, err := p.b.ReadFrame(make([]byte, 1514))
					return err
				},
				"ReadFrames": func() error {
					_, err := p.b.ReadFrames([][]byte{make([]byte, 1514)}, make([]int, 1))
					return err
				},
			}
			for name, read := range reads {
				errs := make(chan error, 1)
				go func() { errs <- read() }()
				// As above: the deadline must reach a read already blocked.
				time.Sleep(50 * time.Millisecond)
				start := time.Now()
				if err := p.b.SetReadDeadline(time.Now()); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-errs:
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Errorf("%s: %v, want a deadline error", name, err)
					}
					if d := time.Since(start); d > 500*time.Millisecond {
						t.Errorf("%s: ended %v after the deadline", name, d)
					}
				case <-time.After(2 * time.Second):
					t.Fatalf("%s: the deadline did not end the read", name)
				}
				if err := p.b.SetReadDeadline(time.Time{}); err != nil {
					t.Fatal(err)
				}
				frame := rawTestFrame(p.veth.MACB, p.veth.MACA, 7, 100)
				go func() {
					// Sent after the read has blocked, to wake it.
					time.Sleep(20 * time.Millisecond)
					_ = p.a.WriteFrame(frame)
				}()
				buf := make([]byte, 1514)
				n, err := p.b.ReadFrame(buf)
				if err != nil || !rawSameFrame(buf[:n], frame) {
					t.Fatalf("%s: read after clearing the deadline: %d bytes, %v", name, n, err)
				}
			}
		})
	}
}

// TestRawLinkWaiting checks that a ring link reports the frames waiting
// unread in its ring (what a watchdog looks at), and none once read.
func TestRawLinkWaiting(t *testing.T) {
	p := newRawPair(t, 1500, rawlink.Config{})
	if !p.b.Ring() {
		t.Skip("the kernel gave the link no receive ring")
	}
	if n := p.b.Waiting(); n != 0 {
		t.Fatalf("Waiting = %d before any frame", n)
	}
	for i := range 3 {
		if err := p.a.WriteFrame(rawTestFrame(p.veth.MACB, p.veth.MACA, uint32(i), 100)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 2*time.Second, "3 frames waiting in the ring", func() bool { return p.b.Waiting() == 3 })
	buf := make([]byte, 1514)
	for range 3 {
		rawReadFrame(t, p.b, buf)
	}
	if n := p.b.Waiting(); n != 0 {
		t.Errorf("Waiting = %d after reading every frame", n)
	}
}

// TestRawLinkInterfaceDown sets the interface of a link with a read
// blocked on it down: the read must fail with the socket's error (ENETDOWN),
// once, and then wait without spinning (a ring read makes no receive call,
// so it must take the error itself, or ppoll reports it at once forever),
// and frames must flow again once the interface is back up.
func TestRawLinkInterfaceDown(t *testing.T) {
	for _, noRing := range []bool{false, true} {
		t.Run(fmt.Sprintf("ring=%v", !noRing), func(t *testing.T) {
			p := newRawPair(t, 1500, rawlink.Config{NoRing: noRing})
			errs := make(chan error, 1)
			go func() {
				_, err := p.b.ReadFrames([][]byte{make([]byte, 1514)}, make([]int, 1))
				errs <- err
			}()
			time.Sleep(50 * time.Millisecond)
			testenv.Run(t, p.veth.B, "ip", "link", "set", p.veth.IfB, "down")
			select {
			case err := <-errs:
				if !errors.Is(err, syscall.ENETDOWN) {
					t.Fatalf("read when the interface went down: %v, want ENETDOWN", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("the blocked read did not report the interface going down")
			}
			// A read while the interface is down waits, without
			// spinning, until its deadline.
			var before, after syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			if err := p.b.SetReadDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if _, err := p.b.ReadFrames([][]byte{make([]byte, 1514)}, make([]int, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("read while down: %v, want the deadline", err)
			}
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			if cpu > 200*time.Millisecond {
				t.Errorf("a read waiting 500 ms on a downed interface used %v of CPU: it spins", cpu)
			}
			testenv.Run(t, p.veth.B, "ip", "link", "set", p.veth.IfB, "up")
			want := rawTestFrame(p.veth.MACB, p.veth.MACA, 7, 100)
			buf := make([]byte, 1514)
			testenv.WaitFor(t, 3*time.Second, "a frame after the interface came back", func() bool {
				_ = p.a.WriteFrame(want)
				if err := p.b.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				n, err := p.b.ReadFrame(buf)
				return err == nil && rawSameFrame(buf[:n], want)
			})
		})
	}
}

func TestRawLinkKernelDrops(t *testing.T) {
	p := newRawPair(t, 1500, rawlink.Config{ReadBuffer: 1})
	frames := make([][]byte, 200)
	for i := range frames {
		frames[i] = rawTestFrame(p.veth.MACB, p.veth.MACA, uint32(i), 1514)
	}
	if _, err := p.a.WriteFrames(frames); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 2*time.Second, "kernel drops with a tiny receive buffer", func() bool { return p.b.Stats().KernelDrops > 0 })
}

func TestRawLinkAllocs(t *testing.T) {
	for _, mode := range rawModes {
		t.Run(mode.name, func(t *testing.T) {
			testRawLinkAllocs(t, rawlink.Config{VLAN: mode.vlan, NoRing: mode.noRing, BusyPoll: mode.busyPoll, ReadBuffer: 4 << 20})
		})
	}
}

func testRawLinkAllocs(t *testing.T, cfg rawlink.Config) {
	p := newRawPair(t, 1500, cfg)
	frame := rawTestFrame(p.veth.MACB, p.veth.MACA, 1, 1514)
	short := rawTestFrame(p.veth.MACB, p.veth.MACA, 2, 40)
	buf := make([]byte, 1514)
	const batch = 32
	frames := make([][]byte, batch)
	bufs := make([][]byte, batch)
	for i := range frames {
		frames[i] = rawTestFrame(p.veth.MACB, p.veth.MACA, uint32(i), 1000)
		bufs[i] = make([]byte, 1514)
	}
	lens := make([]int, batch)
	failLostFrames(t, p.b)
	var failed error
	tests := []struct {
		name string
		fn   func()
	}{
		{"WriteFrame+ReadFrame", func() {
			if err := p.a.WriteFrame(frame); err != nil {
				failed = err
			}
			if _, err := p.b.ReadFrame(buf); err != nil {
				failed = err
			}
		}},
		{"short WriteFrame+ReadFrame", func() {
			if err := p.a.WriteFrame(short); err != nil {
				failed = err
			}
			if _, err := p.b.ReadFrame(buf); err != nil {
				failed = err
			}
		}},
		{"WriteFrames+ReadFrames", func() {
			if _, err := p.a.WriteFrames(frames); err != nil {
				failed = err
			}
			for got := 0; got < batch; {
				n, err := p.b.ReadFrames(bufs[got:], lens[got:])
				if err != nil {
					failed = err
					return
				}
				got += n
			}
		}},
	}
	for _, tt := range tests {
		if allocs := testing.AllocsPerRun(500, tt.fn); allocs != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tt.name, allocs)
		}
		if failed != nil {
			t.Fatalf("%s: %v", tt.name, failed)
		}
	}
	if cfg.VLAN != 0 {
		return
	}
	// The MTU refresh (an ioctl every 250 ms) allocates nothing either.
	if allocs := testing.AllocsPerRun(2, func() {
		// Past the refresh interval, so that MTU re-reads it: the subject.
		time.Sleep(260 * time.Millisecond)
		p.a.MTU()
	}); allocs != 0 {
		t.Errorf("MTU refresh: %v allocations per run, want 0", allocs)
	}
}

// failLostFrames sets a distant read deadline on l, so that a lost frame
// fails a test that reads without deadlines instead of hanging it.
func failLostFrames(t testing.TB, l *rawlink.Link) {
	t.Helper()
	if err := l.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRawLinkWriteReadFrame sends frames one at a time across a veth
// pair and reads each before sending the next.
func BenchmarkRawLinkWriteReadFrame(b *testing.B) {
	for _, size := range []int{aoe.MinFrameLen, 1514} {
		b.Run("size"+strconv.Itoa(size), func(b *testing.B) {
			p := newRawPair(b, 1500, rawlink.Config{ReadBuffer: 4 << 20})
			frame := rawTestFrame(p.veth.MACB, p.veth.MACA, 1, size)
			buf := make([]byte, 1514)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			failLostFrames(b, p.b)
			b.ResetTimer()
			for range b.N {
				if err := p.a.WriteFrame(frame); err != nil {
					b.Fatal(err)
				}
				if _, err := p.b.ReadFrame(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkRawLinkBatch sends frames in batches of 32 with WriteFrames and
// reads them with ReadFrames, one batch in flight, untagged and on a VLAN.
func BenchmarkRawLinkBatch(b *testing.B) {
	const batch = 32
	for _, mode := range rawModes {
		for _, mtu := range []int{1500, 9000} {
			b.Run(mode.name+"/mtu"+strconv.Itoa(mtu), func(b *testing.B) {
				p := newRawPair(b, mtu, rawlink.Config{VLAN: mode.vlan, NoRing: mode.noRing, BusyPoll: mode.busyPoll, ReadBuffer: 16 << 20, WriteBuffer: 16 << 20})
				frames := make([][]byte, batch)
				bufs := make([][]byte, batch)
				for i := range frames {
					frames[i] = rawTestFrame(p.veth.MACB, p.veth.MACA, uint32(i), mtu+aoe.EthernetHeaderLen)
					bufs[i] = make([]byte, mtu+aoe.EthernetHeaderLen)
				}
				lens := make([]int, batch)
				failLostFrames(b, p.b)
				b.SetBytes(int64(batch * (mtu + aoe.EthernetHeaderLen)))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := p.a.WriteFrames(frames); err != nil {
						b.Fatal(err)
					}
					for got := 0; got < batch; {
						n, err := p.b.ReadFrames(bufs[got:], lens[got:])
						if err != nil {
							b.Fatal(err)
						}
						got += n
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "frames/s")
				if st := p.b.Stats(); st.KernelDrops != 0 {
					b.Errorf("%d kernel drops", st.KernelDrops)
				}
			})
		}
	}
}

// TestRawLinkConcurrentWriters has several goroutines write at once, with
// single frames and batches, while one reader reads.
func TestRawLinkConcurrentWriters(t *testing.T) {
	const writers, perWriter = 4, 200
	p := newRawPair(t, 1500, rawlink.Config{ReadBuffer: 8 << 20})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < perWriter; i += 2 {
				tag := uint32(w*perWriter + i)
				if err := p.a.WriteFrame(rawTestFrame(p.veth.MACB, p.veth.MACA, tag, 200)); err != nil {
					t.Error(err)
					return
				}
				batch := [][]byte{rawTestFrame(p.veth.MACB, p.veth.MACA, tag+1, 50)}
				if _, err := p.a.WriteFrames(batch); err != nil {
					t.Error(err)
					return
				}
				_ = p.a.MTU()
				_ = p.a.Stats()
			}
		})
	}
	seen := make(map[uint32]bool)
	buf := make([]byte, 1514)
	for len(seen) < writers*perWriter {
		seen[rawFrameTag(rawReadFrame(t, p.b, buf))] = true
	}
	wg.Wait()
}

// TestRawLinkConcurrentReaders has several goroutines read one link at
// once, some a frame at a time and some in batches: every frame sent
// reaches exactly one of them, whole.
func TestRawLinkConcurrentReaders(t *testing.T) {
	for _, mode := range rawModes {
		t.Run(mode.name, func(t *testing.T) {
			const readers, frames = 4, 2000
			p := newRawPair(t, 1500, rawlink.Config{VLAN: mode.vlan, NoRing: mode.noRing, BusyPoll: mode.busyPoll, ReadBuffer: 8 << 20})
			failLostFrames(t, p.b)
			var mu sync.Mutex
			seen := make(map[uint32]int)
			var wg sync.WaitGroup
			for r := range readers {
				wg.Go(func() {
					bufs := make([][]byte, 1+r*5) // 1, 6, 11 and 16 frames a call
					for i := range bufs {
						bufs[i] = make([]byte, 1514)
					}
					lens := make([]int, len(bufs))
					for {
						var n int
						var err error
						if len(bufs) == 1 {
							lens[0], err = p.b.ReadFrame(bufs[0])
							n = 1
						} else {
							n, err = p.b.ReadFrames(bufs, lens)
						}
						if err != nil {
							if !errors.Is(err, net.ErrClosed) {
								t.Errorf("reader %d: %v", r, err)
							}
							return
						}
						for i := range n {
							f := bufs[i][:lens[i]]
							tag := rawFrameTag(f)
							if want := rawTestFrame(p.veth.MACB, p.veth.MACA, tag, 100+int(tag%1000)); !rawSameFrame(f, want) {
								t.Errorf("reader %d: frame %d damaged", r, tag)
							}
							mu.Lock()
							seen[tag]++
							mu.Unlock()
						}
					}
				})
			}
			for i := range frames {
				if err := p.a.WriteFrame(rawTestFrame(p.veth.MACB, p.veth.MACA, uint32(i), 100+i%1000)); err != nil {
					t.Fatal(err)
				}
			}
			testenv.WaitFor(t, 5*time.Second, "every frame to be read", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(seen) == frames
			})
			p.b.Close()
			wg.Wait()
			if len(seen) != frames {
				t.Errorf("%d of %d frames read", len(seen), frames)
			}
			for tag, n := range seen {
				if n != 1 {
					t.Errorf("frame %d read %d times", tag, n)
				}
			}
		})
	}
}

// vlanTag inserts an 802.1Q tag with the given protocol identifier and tag
// control information after the addresses of frame.
func vlanTag(frame []byte, tpid, tci uint16) []byte {
	t := append([]byte(nil), frame[:12]...)
	t = binary.BigEndian.AppendUint16(t, tpid)
	t = binary.BigEndian.AppendUint16(t, tci)
	return append(t, frame[12:]...)
}

// rawSender opens a plain AF_PACKET socket on iface in ns, to send frames
// exactly as given, tags and all.
func rawSender(t testing.TB, ns *netlab.Netns, iface string) *packet.Conn {
	t.Helper()
	var conn *packet.Conn
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		// Bound to a protocol nobody sends, so it reads nothing.
		conn, err = packet.Listen(ifi, packet.Raw, 0x88b5, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestRawLinkVLANIsolation has links on VLANs 10 and 20 and an untagged
// link at each end of a veth pair: each receives only what its peer of the
// same kind sends.
func TestRawLinkVLANIsolation(t *testing.T) {
	nsA, nsB := testenv.NewNetns(t), testenv.NewNetns(t)
	v := testenv.NewVeth(t, nsA, nsB, 1500)
	// Promiscuous, so that nothing is held back by its destination.
	testenv.Run(t, nsB, "ip", "link", "set", v.IfB, "promisc", "on")
	vlans := []uint16{0, 10, 20}
	senders := make([]*rawlink.Link, len(vlans))
	receivers := make([]*rawlink.Link, len(vlans))
	for i, vid := range vlans {
		senders[i] = testenv.ListenRawIn(t, nsA, v.IfA, rawlink.Config{VLAN: vid})
		receivers[i] = testenv.ListenRawIn(t, nsB, v.IfB, rawlink.Config{VLAN: vid})
	}
	// Not to another station: an untagged link cannot tell a tagged frame
	// addressed so from an untagged one (see rawFilter).
	multicast := aoe.MAC{0x01, 0x80, 0xc2, 0, 0, 0x42}
	for i, s := range senders {
		for j, dst := range []aoe.MAC{v.MACB, aoe.BroadcastMAC, multicast} {
			tag := uint32(10*i + j)
			if err := s.WriteFrame(rawTestFrame(dst, v.MACA, tag, 100)); err != nil {
				t.Fatal(err)
			}
		}
	}
	buf := make([]byte, 1514)
	for i, r := range receivers {
		for j := range 3 {
			if got := rawFrameTag(rawReadFrame(t, r, buf)); got != uint32(10*i+j) {
				t.Errorf("VLAN %d link: got frame %d, want %d", vlans[i], got, 10*i+j)
			}
		}
	}
	for _, r := range receivers {
		rawExpectNoFrame(t, r, 50*time.Millisecond)
	}
}

// TestRawLinkVLANKernelFrames sends hand-made frames, tags in them, to a
// link on VLAN 42: Linux takes the outer tag out of the frame whether the
// interface offloads VLAN reception or not, and a VLAN tag behind a
// priority tag stays in the frame.
func TestRawLinkVLANKernelFrames(t *testing.T) {
	for _, tc := range []struct {
		offload bool
		noRing  bool
	}{{true, false}, {false, false}, {false, true}} {
		name := fmt.Sprintf("rxvlan=%v/ring=%v", tc.offload, !tc.noRing)
		offload := tc.offload
		t.Run(name, func(t *testing.T) {
			p := newRawPair(t, 1500, rawlink.Config{VLAN: 42, NoRing: tc.noRing})
			if !offload {
				if _, err := exec.LookPath("ethtool"); err != nil {
					t.Skipf("needs ethtool to turn VLAN reception offload off: %v", err)
				}
				testenv.Run(t, p.veth.B, "ethtool", "-K", p.veth.IfB, "rxvlan", "off")
				if out := testenv.Run(t, p.veth.B, "ethtool", "-k", p.veth.IfB); !strings.Contains(out, "rx-vlan-offload: off") {
					t.Skipf("ethtool could not turn rx-vlan-offload off:\n%s", out)
				}
			}
			testenv.Run(t, p.veth.B, "ip", "link", "set", p.veth.IfB, "promisc", "on")
			conn := rawSender(t, p.veth.A, p.veth.IfA)
			aoeFrame := func(tag uint32, size int) []byte { return rawTestFrame(p.veth.MACB, p.veth.MACA, tag, size) }
			withEtherType := func(b []byte, et uint16) []byte {
				binary.BigEndian.PutUint16(b[12:14], et)
				return b
			}
			drop := []struct {
				name  string
				frame []byte
			}{
				{"untagged", aoeFrame(1, 100)},
				{"VLAN 43", vlanTag(aoeFrame(2, 100), 0x8100, 43)},
				{"VLAN 42 ARP", vlanTag(withEtherType(aoeFrame(3, 100), 0x0806), 0x8100, 42)},
				{"802.1ad S-VLAN 42", vlanTag(aoeFrame(4, 100), 0x88a8, 42)},
				{"priority tag only", vlanTag(aoeFrame(5, 100), 0x8100, 0)},
				{"VLAN 42 inside VLAN 43", vlanTag(vlanTag(aoeFrame(6, 100), 0x8100, 42), 0x8100, 43)},
				{"VLAN 43 inside VLAN 42", vlanTag(vlanTag(aoeFrame(7, 100), 0x8100, 43), 0x8100, 42)},
				{"VLAN 43 behind a priority tag", vlanTag(vlanTag(aoeFrame(8, 100), 0x8100, 43), 0x8100, 0)},
			}
			tagged := func(tcis ...uint16) func([]byte) []byte {
				return func(f []byte) []byte {
					for _, tci := range tcis {
						f = vlanTag(f, 0x8100, tci)
					}
					return f
				}
			}
			keep := []struct {
				name string
				want []byte
				tag  func([]byte) []byte
			}{
				{"VLAN 42", aoeFrame(100, 100), tagged(42)},
				{"VLAN 42, priority 5", aoeFrame(101, 100), tagged(5<<13 | 42)},
				{"VLAN 42 broadcast", rawTestFrame(aoe.BroadcastMAC, p.veth.MACA, 102, 100), tagged(42)},
				{"VLAN 42 to another station", rawTestFrame(aoe.MAC{2, 0, 0, 0, 0, 9}, p.veth.MACA, 103, 100), tagged(42)},
				{"VLAN 42 full MTU", aoeFrame(104, 1514), tagged(42)},
				// The kernel sets the outer, priority tag aside and leaves
				// the VLAN tag in the frame.
				{"VLAN 42 behind a priority tag", aoeFrame(105, 200), tagged(42, 6<<13)},
				{"VLAN 42, priority 3, behind a priority tag", aoeFrame(106, 1000), tagged(3<<13|42, 0)},
			}
			send := func(name string, frame []byte) {
				if _, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: frame[:6]}); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			for _, d := range drop {
				send(d.name, d.frame)
			}
			for _, k := range keep {
				send(k.name, k.tag(k.want))
			}
			buf := make([]byte, 1514)
			for _, k := range keep[:5] {
				if got := rawReadFrame(t, p.b, buf); !rawSameFrame(got, k.want) {
					t.Fatalf("%s: got %d bytes % x..., want %d bytes % x...", k.name, len(got), got[:min(len(got), 24)], len(k.want), k.want[:24])
				}
			}
			// The tag left in the frame takes 4 bytes more than the buffer
			// sized for the untagged frame: the link keeps them aside and
			// delivers the whole frame.
			for _, k := range keep[5:] {
				exact := make([]byte, len(k.want))
				if got := rawReadFrame(t, p.b, exact); !bytes.Equal(got, k.want) {
					t.Fatalf("%s: got %d bytes % x..., want %d bytes % x...", k.name, len(got), got[:min(len(got), 24)], len(k.want), k.want[:24])
				}
			}
			rawExpectNoFrame(t, p.b, 100*time.Millisecond)
			if st := p.b.Stats(); st.Truncated != 0 || st.FramesIn != uint64(len(keep)) {
				t.Errorf("Stats = %+v, want %d frames in, none truncated", st, len(keep))
			}
		})
	}
}

// TestRawLinkVLANUntaggedIgnoresTags checks that an untagged link hears
// nothing from a VLAN link, nor from a VLAN link on another interface of
// the same segment.
func TestRawLinkVLANUntaggedIgnoresTags(t *testing.T) {
	p := newRawPair(t, 1500, rawlink.Config{})
	tagged := testenv.ListenRawIn(t, p.veth.A, p.veth.IfA, rawlink.Config{VLAN: 5})
	for i, dst := range []aoe.MAC{p.veth.MACB, aoe.BroadcastMAC} {
		if err := tagged.WriteFrame(rawTestFrame(dst, p.veth.MACA, uint32(i), 100)); err != nil {
			t.Fatal(err)
		}
	}
	rawExpectNoFrame(t, p.b, 100*time.Millisecond)
	// The frames did go out: an untagged frame still gets through.
	want := rawTestFrame(p.veth.MACB, p.veth.MACA, 9, 100)
	if err := p.a.WriteFrame(want); err != nil {
		t.Fatal(err)
	}
	if got := rawReadFrame(t, p.b, make([]byte, 1514)); !rawSameFrame(got, want) {
		t.Fatalf("got tag %d, want 9", rawFrameTag(got))
	}
}

// TestRawLinkVLANBridge runs VLAN links through a bridge with VLAN trunk
// ports, as through a switch: full-MTU tagged frames pass, and hosts
// outside the VLAN hear nothing.
func TestRawLinkVLANBridge(t *testing.T) {
	br := testenv.NewBridge(t, 1500)
	nsA, nsB, nsC, nsD := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	ifA, macA := testenv.AttachVLAN(t, br, nsA, 42)
	ifB, macB := testenv.AttachVLAN(t, br, nsB, 42, 43)
	ifC, _ := testenv.AttachVLAN(t, br, nsC, 43) // outside VLAN 42
	ifD, _ := testenv.Attach(t, br, nsD)         // hears every VLAN
	a := testenv.ListenRawIn(t, nsA, ifA, rawlink.Config{VLAN: 42})
	b := testenv.ListenRawIn(t, nsB, ifB, rawlink.Config{VLAN: 42})
	b43 := testenv.ListenRawIn(t, nsB, ifB, rawlink.Config{VLAN: 43})
	c := testenv.ListenRawIn(t, nsC, ifC, rawlink.Config{VLAN: 43})
	d := testenv.ListenRawIn(t, nsD, ifD, rawlink.Config{})
	d42 := testenv.ListenRawIn(t, nsD, ifD, rawlink.Config{VLAN: 42})
	buf := make([]byte, 1514)
	// B speaks first, so that the bridge does not flood frames to it: an
	// untagged link would take a tagged one addressed to another station
	// for its own (see rawFilter).
	broadcast := rawTestFrame(aoe.BroadcastMAC, macB, 1, 100)
	if err := b.WriteFrame(broadcast); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*rawlink.Link{a, d42} {
		if got := rawReadFrame(t, l, buf); !rawSameFrame(got, broadcast) {
			t.Fatalf("broadcast on %s: got %d bytes, tag %d", l.Interface(), len(got), rawFrameTag(got))
		}
	}
	for i, dir := range []struct {
		from, to *rawlink.Link
		dst, src aoe.MAC
	}{{a, b, macB, macA}, {b, a, macA, macB}} {
		unicast := rawTestFrame(dir.dst, dir.src, uint32(2+i), 1514)
		if err := dir.from.WriteFrame(unicast); err != nil {
			t.Fatal(err)
		}
		if got := rawReadFrame(t, dir.to, buf); !rawSameFrame(got, unicast) {
			t.Fatalf("full-MTU unicast %d: got %d bytes, tag %d", i, len(got), rawFrameTag(got))
		}
	}
	hello := rawTestFrame(aoe.BroadcastMAC, c.HardwareAddr(), 4, 60)
	if err := c.WriteFrame(hello); err != nil {
		t.Fatal(err)
	}
	if got := rawReadFrame(t, b43, buf); rawFrameTag(got) != 4 {
		t.Fatalf("VLAN 43: got tag %d, want 4", rawFrameTag(got))
	}
	// Untagged frames do not reach the trunks.
	if err := d.WriteFrame(rawTestFrame(aoe.BroadcastMAC, d.HardwareAddr(), 5, 60)); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*rawlink.Link{a, b, b43, c, d, d42} {
		rawExpectNoFrame(t, l, 50*time.Millisecond)
	}
}

// TestRawLinkBusyPoll plays ping-pong across a veth pair, one frame at a
// time, as one initiator at queue depth 1 does with a target: with
// BusyPoll, reads find the next frame by watching the ring, not by
// sleeping; without, never.
func TestRawLinkBusyPoll(t *testing.T) {
	for _, tc := range []struct {
		name     string
		busyPoll time.Duration
	}{{"off", 0}, {"1ms", time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			if runtime.GOMAXPROCS(0) < 2 {
				t.Skip("needs 2 Ps: a watching reader keeps its P, so with one the other side cannot answer")
			}
			p := newRawPair(t, 1500, rawlink.Config{BusyPoll: tc.busyPoll})
			if !p.b.Ring() {
				t.Skip("the kernel gave the link no receive ring")
			}
			const rounds = 500
			ping := rawTestFrame(p.veth.MACB, p.veth.MACA, 1, 100)
			pong := rawTestFrame(p.veth.MACA, p.veth.MACB, 2, 100)
			failLostFrames(t, p.a)
			failLostFrames(t, p.b)
			errs := make(chan error, 1)
			go func() {
				buf := make([]byte, 1514)
				for range rounds {
					if _, err := p.b.ReadFrame(buf); err != nil {
						errs <- err
						return
					}
					if err := p.b.WriteFrame(pong); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
			buf := make([]byte, 1514)
			for range rounds {
				if err := p.a.WriteFrame(ping); err != nil {
					t.Fatal(err)
				}
				if _, err := p.a.ReadFrame(buf); err != nil {
					t.Fatal(err)
				}
			}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			st := p.b.Stats()
			t.Logf("%d of %d reads found their frame by watching", st.Watched, rounds)
			switch {
			case tc.busyPoll == 0 && st.Watched != 0:
				t.Errorf("Watched = %d without BusyPoll", st.Watched)
			case tc.busyPoll > 0 && st.Watched == 0:
				t.Error("no read found its frame by watching the ring")
			}
		})
	}
}

// TestRawLinkArrivalStamp checks that a frame waiting in the ring carries
// the kernel's arrival stamp, which a busy-polling read measures the gap
// between frames by: about when it was sent.
func TestRawLinkArrivalStamp(t *testing.T) {
	p := newRawPair(t, 1500, rawlink.Config{})
	if !p.b.Ring() {
		t.Skip("the link has no receive ring")
	}
	if !rawlink.NextArrival(p.b).IsZero() {
		t.Fatal("arrival stamp with no frame waiting")
	}
	sent := time.Now()
	if err := p.a.WriteFrame(rawTestFrame(p.veth.MACB, p.veth.MACA, 1, 100)); err != nil {
		t.Fatal(err)
	}
	var arrived time.Time
	testenv.WaitFor(t, time.Second, "the frame in the ring", func() bool {
		arrived = rawlink.NextArrival(p.b)
		return !arrived.IsZero()
	})
	// Looked at again well after it came, the frame keeps the time it
	// came: a stamp of the look would be 50 ms late.
	time.Sleep(50 * time.Millisecond)
	if again := rawlink.NextArrival(p.b); !again.Equal(arrived) {
		t.Errorf("stamp moved from %v to %v", arrived, again)
	}
	if d := arrived.Sub(sent); d < -time.Millisecond || d > 20*time.Millisecond {
		t.Errorf("frame sent at %v stamped %v (%v after)", sent, arrived, d)
	}
	rawReadFrame(t, p.b, make([]byte, 1514))
}

// TestRawLinkBusyPollDeadline checks that a read watching the ring still
// ends at its deadline, and when the deadline is moved, rather than at the
// end of a long watch. The first read of a link watches: no gap was
// measured yet.
func TestRawLinkBusyPollDeadline(t *testing.T) {
	const watch = 2 * time.Second
	for _, tc := range []struct {
		name string
		set  func(l *rawlink.Link)
	}{
		{"deadline", func(l *rawlink.Link) { l.SetReadDeadline(time.Now().Add(20 * time.Millisecond)) }},
		{"deadline moved", func(l *rawlink.Link) {
			go func() {
				time.Sleep(20 * time.Millisecond)
				l.SetReadDeadline(time.Now())
			}()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newRawPair(t, 1500, rawlink.Config{BusyPoll: watch})
			if !p.b.Ring() {
				t.Skip("the kernel gave the link no receive ring")
			}
			tc.set(p.b)
			start := time.Now()
			_, err := p.b.ReadFrame(make([]byte, 1514))
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadFrame: %v, want a deadline error", err)
			}
			if d := time.Since(start); d > watch/4 {
				t.Errorf("the read ended %v after it began, watching past its deadline", d)
			}
		})
	}
}
