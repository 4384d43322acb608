package seal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/target"
)

var (
	targetMAC    = aoe.MAC{0x02, 0, 0, 0, 0, 0x01}
	initiatorMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x02}
	attackerMAC  = aoe.MAC{0x02, 0, 0, 0, 0, 0x66}
	dev          = seal.DeviceAddr{Shelf: 7, Slot: 3}
)

func newKey(t *testing.T) seal.Key {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	k, err := seal.NewKey(b, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// recorder keeps copies of the frames a port is about to receive.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
}

func (r *recorder) filter(f []byte) bool {
	r.mu.Lock()
	r.frames = append(r.frames, bytes.Clone(f))
	r.mu.Unlock()
	return true
}

// sealed returns the captured sealed frames whose wrapped command is cmd
// and, for ATA, whose write flag is write.
func (r *recorder) sealed(cmd aoe.Command, write bool) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	for _, f := range r.frames {
		if len(f) > 48 && aoe.Command(f[19]) == seal.CommandSealed && aoe.Command(f[25]) == cmd &&
			(cmd != aoe.CommandATA || (f[48]&uint8(aoe.ATAFlagWrite) != 0) == write) {
			out = append(out, f)
		}
	}
	return out
}

// sealedRig is a target.Server on a MemDisk behind a TargetLink and an
// aoetest.Client behind an InitiatorLink, on one in-memory hub, with a
// recorder on the target's port and an attacker's port.
type sealedRig struct {
	hub      *aoetest.Hub
	disk     *aoetest.MemDisk
	tlink    *seal.TargetLink
	ilink    *seal.InitiatorLink
	client   *aoetest.Client
	rec      *recorder
	attacker *aoetest.Port
	srv      *target.Server
}

func newSealedRig(t *testing.T, tkeys []seal.Key, ikey seal.Key, mode seal.Mode, lim seal.Limits) *sealedRig {
	t.Helper()
	r := &sealedRig{hub: aoetest.NewHub(), disk: aoetest.NewMemDisk(1 << 20), rec: &recorder{}}
	tport := r.hub.Port(targetMAC, 1500)
	tport.Filter = r.rec.filter
	log := slog.New(slog.DiscardHandler)
	var err error
	r.tlink, err = seal.NewTargetLink(tport, seal.TargetConfig{Exports: []seal.Export{{Device: dev, Keys: tkeys}}, Mode: mode, Limits: lim, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r.srv, err = target.NewServer(target.Config{Shelf: dev.Shelf, Slot: dev.Slot, Backend: r.disk, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(ctx, r.tlink) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	r.ilink, err = seal.NewInitiatorLink(r.hub.Port(initiatorMAC, 1500), seal.InitiatorConfig{DefaultKey: ikey, Limits: lim, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r.client = aoetest.NewClient(r.ilink, aoetest.ClientOptions{Timeout: 50 * time.Millisecond, Retries: 10})
	t.Cleanup(func() { r.client.Close() })
	r.attacker = r.hub.Port(attackerMAC, 1500)
	return r
}

func (r *sealedRig) discover(t *testing.T) aoetest.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		devs, err := r.client.Discover(ctx, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) == 1 {
			return devs[0]
		}
	}
	t.Fatalf("no device discovered; initiator stats %+v", r.ilink.Stats())
	return aoetest.Device{}
}

func TestSealedIO(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	if d.SectorsPerFrame != 2 {
		t.Errorf("sectors per frame %d, want 2 at MTU 1500", d.SectorsPerFrame)
	}
	ctx := context.Background()
	data := aoetest.RandomBytes(256 << 10)
	if err := r.client.WriteAt(ctx, d, data, 4096, 16); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := r.client.ReadAt(ctx, d, got, 4096, 16); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) || !bytes.Equal(r.disk.Bytes()[4096:4096+len(data)], data) {
		t.Fatal("data read back differs from data written")
	}
	if n := len(r.rec.sealed(aoe.CommandATA, true)); n < len(data)/1024 {
		t.Errorf("%d sealed writes seen on the wire, want %d", n, len(data)/1024)
	}
	st := r.tlink.Stats()
	if st.Sessions != 1 || st.Handshakes != 1 || st.FramesOpened == 0 {
		t.Errorf("target stats %+v", st)
	}
}

// sum is the disk's checksum, to prove an attack changed nothing.
func sum(d *aoetest.MemDisk) [64]byte { return d.Sum512() }

func TestReplayedWriteRefused(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	ctx := context.Background()
	if err := r.client.WriteAt(ctx, d, bytes.Repeat([]byte{0xAA}, 1024), 0, 1); err != nil {
		t.Fatal(err)
	}
	writes := r.rec.sealed(aoe.CommandATA, true)
	if len(writes) == 0 {
		t.Fatal("no sealed write captured")
	}
	// Overwrite the sectors, then replay the old write: it must not bring
	// the old data back.
	if err := r.client.WriteAt(ctx, d, bytes.Repeat([]byte{0x55}, 1024), 0, 1); err != nil {
		t.Fatal(err)
	}
	before := sum(r.disk)
	replays := r.tlink.Stats().Rejected["replay"]
	for _, f := range writes {
		if err := r.attacker.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return r.tlink.Stats().Rejected["replay"] >= replays+uint64(len(writes)) })
	if sum(r.disk) != before {
		t.Fatal("a replayed write changed the disk")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
