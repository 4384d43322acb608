package aoe_test

import (
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// TestTagUserlandOutsideKernelTags pins the wire fact TagUserland rests on:
// the Linux aoe driver makes its tags as (tick & 0xffff) | (seq & 0x7fff) << 16
// (drivers/block/aoe/aoecmd.c, newtag), so none of them has the bit set.
func TestTagUserlandOutsideKernelTags(t *testing.T) {
	kernelTag := func(tick, seq uint32) uint32 { return tick&0xffff | (seq&0x7fff)<<16 }
	for _, tc := range []struct{ tick, seq uint32 }{
		{0, 0}, {0xffff, 0x7fff}, {0xffffffff, 0xffffffff}, {12345, 1 << 15},
	} {
		if tag := kernelTag(tc.tick, tc.seq); tag&aoe.TagUserland != 0 {
			t.Errorf("kernel tag %#x (tick %#x, seq %#x) has TagUserland set", tag, tc.tick, tc.seq)
		}
	}
}
