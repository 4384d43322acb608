package seal_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/target"
)

// TestReplayOnOtherNode: a second node of the same device, holding the
// same key, has sessions of its own, so frames captured on the way to the
// first node are refused by the second, whatever address they are sent to.
func TestReplayOnOtherNode(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)

	if err := r.client.WriteAt(context.Background(), d, bytes.Repeat([]byte{0xAB}, 8192), 0, 4); err != nil {
		t.Fatal(err)
	}
	nodeB := aoe.MAC{0x02, 0, 0, 0, 0, 0x0b}
	diskB := aoetest.NewMemDisk(1 << 20)
	log := slog.New(slog.DiscardHandler)
	linkB, err := seal.NewTargetLink(r.hub.Port(nodeB, 1500), seal.TargetConfig{Exports: []seal.Export{{Device: dev, Keys: []seal.Key{key}}}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srvB, err := target.NewServer(target.Config{Shelf: dev.Shelf, Slot: dev.Slot, Backend: diskB, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srvB.Serve(ctx, linkB) }()
	t.Cleanup(func() { cancel(); <-done })

	writes := r.rec.sealed(aoe.CommandATA, true)
	if len(writes) == 0 {
		t.Fatal("no sealed write captured")
	}
	before := diskB.Sum512()
	// B announces itself as it starts, and the client's layer makes a
	// session with it and queries it: one frame B opens legitimately.
	waitFor(t, func() bool { return linkB.Stats().FramesOpened >= 1 })
	opened := linkB.Stats().FramesOpened
	for _, f := range writes {
		f = bytes.Clone(f)
		copy(f[0:6], nodeB[:]) // readdressed to the other node
		if err := r.attacker.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		st := linkB.Stats()
		return st.Rejected["no_session"]+st.Rejected["bad_tag"] >= uint64(len(writes))
	})
	if diskB.Sum512() != before {
		t.Fatal("frames replayed on the other node changed its disk")
	}
	if st := linkB.Stats(); st.FramesOpened != opened {
		t.Fatalf("the other node opened %d replayed frames", st.FramesOpened-opened)
	}
}
