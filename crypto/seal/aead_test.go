package seal_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/crypto/seal"
)

// TestEncryptedSuite: with SuiteAESGCM the payload is not on the wire in
// clear, I/O works, and an export that requires encryption refuses an
// initiator that only authenticates.
func TestEncryptedSuite(t *testing.T) {
	key := newKey(t)
	r := newSealedRigConfig(t, seal.TargetConfig{Exports: []seal.Export{{Device: dev, Keys: []seal.Key{key}, RequireEncryption: true}}},
		seal.InitiatorConfig{DefaultKey: key, Encrypt: true})
	d := r.discover(t)
	pattern := bytes.Repeat([]byte("ironblade plaintext "), 64)[:1024]
	ctx := context.Background()
	if err := r.client.WriteAt(ctx, d, pattern, 0, 1); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(pattern))
	if err := r.client.ReadAt(ctx, d, got, 0, 1); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pattern) || !bytes.Equal(r.disk.Bytes()[:len(pattern)], pattern) {
		t.Fatal("data differs after an encrypted round trip")
	}
	// The ATA header is encrypted too: a write is a sealed ATA request
	// long enough to carry a sector.
	var writes [][]byte
	for _, f := range append(r.rec.sealed(aoe.CommandATA, true), r.rec.sealed(aoe.CommandATA, false)...) {
		if len(f) >= 48+aoe.ATAHeaderLen+aoe.SectorSize {
			writes = append(writes, f)
		}
	}
	if len(writes) == 0 {
		t.Fatal("no sealed write captured")
	}
	for _, f := range writes {
		if bytes.Contains(f, []byte("ironblade plaintext")) {
			t.Fatal("the payload crossed the wire in clear")
		}
	}
	if st := r.ilink.Stats(); len(st.Peers) != 1 || st.Peers[0].Suite != "aes-256-gcm" {
		t.Fatalf("initiator peers %+v, want one aes-256-gcm session", st.Peers)
	}

	// An initiator that does not encrypt gets nothing from this export.
	plain := newSealedRigConfig(t, seal.TargetConfig{Exports: []seal.Export{{Device: dev, Keys: []seal.Key{key}, RequireEncryption: true}}},
		seal.InitiatorConfig{DefaultKey: key})
	devs, err := plain.client.Discover(ctx, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 0 {
		t.Fatalf("an authenticating-only initiator found %v on an export that requires encryption", devs)
	}
	waitFor(t, func() bool {
		st := plain.ilink.Stats()
		return len(st.Peers) == 1 && st.Peers[0].LastError != ""
	})
	if st := plain.tlink.Stats(); st.Sessions != 0 {
		t.Fatalf("target made %d sessions with an initiator that does not encrypt", st.Sessions)
	}
	t.Logf("refused: %s", plain.ilink.Stats().Peers[0].LastError)
}
