//go:build linux

package aoe_test

import (
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

func TestStressPingPong(t *testing.T) {
	for round := 0; round < 10; round++ {
		p := newRawPair(t, 1500, aoe.RawConfig{ReadBuffer: 4 << 20})
		frame := testFrame(p.veth.MACB, p.veth.MACA, 1, 60)
		buf := make([]byte, 1514)
		p.b.SetReadDeadline(time.Now().Add(30 * time.Second))
		start := time.Now()
		for i := 0; i < 400000; i++ {
			if err := p.a.WriteFrame(frame); err != nil {
				t.Fatal(err)
			}
			if _, err := p.b.ReadFrame(buf); err != nil {
				t.Logf("round %d frame %d after %v: %v", round, i, time.Since(start), err)
				t.Logf("A %+v B %+v", p.a.Stats(), p.b.Stats())
				t.Log(p.veth.B.Run(t, "cat", "/proc/net/packet"))
				t.Log(p.veth.A.Run(t, "ip", "-s", "link", "show", p.veth.IfA))
				t.Log(p.veth.B.Run(t, "ip", "-s", "link", "show", p.veth.IfB))
				buf2 := make([]byte, 1514)
				n, err := p.b.ReadFrame(buf2)
				t.Logf("read again: %d %v", n, err)
				t.FailNow()
			}
		}
		t.Logf("round %d ok in %v", round, time.Since(start))
	}
}
