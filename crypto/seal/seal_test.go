package seal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"slices"
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

// recorder keeps copies of the frames a port is about to receive. It can
// also drop frames on purpose (recording them all the same), so that a
// test holds sealed frames their receiver never saw, and stop recording,
// so that a flood does not count against a memory check.
type recorder struct {
	mu      sync.Mutex
	frames  [][]byte
	drop    func(f []byte) bool
	dropped [][]byte
	off     bool
}

func (r *recorder) filter(f []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off {
		return true
	}
	c := bytes.Clone(f)
	r.frames = append(r.frames, c)
	if r.drop != nil && r.drop(c) {
		r.dropped = append(r.dropped, c)
		return false
	}
	return true
}

// setDrop makes the port lose the frames drop returns true for; nil loses
// none.
func (r *recorder) setDrop(drop func(f []byte) bool) {
	r.mu.Lock()
	r.drop = drop
	r.mu.Unlock()
}

// takeDropped returns the frames lost so far and forgets them.
func (r *recorder) takeDropped() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.dropped
	r.dropped = nil
	return d
}

// pause stops (or restarts) recording.
func (r *recorder) pause(off bool) {
	r.mu.Lock()
	r.off = off
	r.mu.Unlock()
}

// all returns the frames recorded.
func (r *recorder) all() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.frames)
}

// handshakes returns the captured handshake frames of type typ.
func (r *recorder) handshakes(typ seal.MessageType) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	for _, f := range r.frames {
		if len(f) > 25 && aoe.Command(f[19]) == seal.CommandHandshake && seal.MessageType(f[25]) == typ {
			out = append(out, f)
		}
	}
	return out
}

// isSealedWrite reports whether f is a sealed ATA write request.
func isSealedWrite(f []byte) bool {
	return len(f) > 48 && aoe.Command(f[19]) == seal.CommandSealed && f[14]&uint8(aoe.FlagResponse) == 0 &&
		aoe.Command(f[25]) == aoe.CommandATA && f[48]&uint8(aoe.ATAFlagWrite) != 0
}

// tap is the target's hub port with a side door: frames given to inject
// are read as if received whatever their destination, as by a NIC in
// promiscuous mode, so that tests reach the checks a hub would spare.
type tap struct {
	*aoetest.Port
	in     chan []byte
	closed chan struct{}
	once   sync.Once
}

func newTap(p *aoetest.Port) *tap {
	t := &tap{Port: p, in: make(chan []byte, 64), closed: make(chan struct{})}
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := p.ReadFrame(buf)
			if err != nil {
				return
			}
			select {
			case t.in <- bytes.Clone(buf[:n]):
			case <-t.closed:
				return
			}
		}
	}()
	return t
}

// inject hands f to the reader as a received frame.
func (t *tap) inject(f []byte) {
	select {
	case t.in <- bytes.Clone(f):
	case <-t.closed:
	}
}

func (t *tap) ReadFrame(b []byte) (int, error) {
	select {
	case f := <-t.in:
		return copy(b, f), nil
	case <-t.closed:
		return 0, fmt.Errorf("tap: read: %w", net.ErrClosed)
	}
}

func (t *tap) Close() error {
	t.once.Do(func() { close(t.closed) })
	return t.Port.Close()
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
	rec      *recorder // frames the target's port receives
	irec     *recorder // frames the initiator's port receives
	tap      *tap      // the target's port
	attacker *aoetest.Port
	srv      *target.Server

	// spy is a plain client on the attacker's port: it reads what the
	// port receives, and sends the plain queries of barrier.
	spy *aoetest.Client
}

func newSealedRig(t *testing.T, tkeys []seal.Key, ikey seal.Key, mode seal.Mode, lim seal.Limits) *sealedRig {
	t.Helper()
	return newSealedRigConfig(t, seal.TargetConfig{Exports: []seal.Export{{Device: dev, Keys: tkeys}}, Mode: mode, Limits: lim},
		seal.InitiatorConfig{DefaultKey: ikey, Limits: lim})
}

// newSealedRigConfig is newSealedRig with the layers' whole configurations.
func newSealedRigConfig(t *testing.T, tcfg seal.TargetConfig, icfg seal.InitiatorConfig) *sealedRig {
	t.Helper()
	r := &sealedRig{hub: aoetest.NewHub(), disk: aoetest.NewMemDisk(1 << 20), rec: &recorder{}, irec: &recorder{}}
	// Every port and its filter before the target starts: it announces
	// itself to all of them at once.
	tport := r.hub.Port(targetMAC, 1500)
	tport.Filter = r.rec.filter
	r.tap = newTap(tport)
	iport := r.hub.Port(initiatorMAC, 1500)
	iport.Filter = r.irec.filter
	r.attacker = r.hub.Port(attackerMAC, 1500)
	log := slog.New(slog.DiscardHandler)
	var err error
	tcfg.Logger, icfg.Logger = log, log
	r.tlink, err = seal.NewTargetLink(r.tap, tcfg)
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
	r.ilink, err = seal.NewInitiatorLink(iport, icfg)
	if err != nil {
		t.Fatal(err)
	}
	r.client = aoetest.NewClient(r.ilink, aoetest.ClientOptions{Timeout: 50 * time.Millisecond, Retries: 10})
	t.Cleanup(func() { r.client.Close() })
	r.spy = aoetest.NewClient(r.attacker, aoetest.ClientOptions{Timeout: 200 * time.Millisecond, Retries: 25, TagBase: 1 << 24})
	t.Cleanup(func() { r.spy.Close() })
	return r
}

// roundTrip writes data at off through the sealed client at depth 16,
// reads it back, and fails the test unless both the answer and the disk
// hold it.
func (r *sealedRig) roundTrip(t *testing.T, d aoetest.Device, data []byte, off int64) {
	t.Helper()
	ctx := context.Background()
	if err := r.client.WriteAt(ctx, d, data, off, 16); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := r.client.ReadAt(ctx, d, got, off, 16); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) || !bytes.Equal(r.disk.Bytes()[off:off+int64(len(data))], data) {
		t.Fatal("data read back differs from data written")
	}
}

// barrier returns once the target has read every frame sent to it before
// the call: it reads its frames in order, one at a time, and a plain Query
// Config read (which a keyed target answers) from the attacker's port
// comes after them.
func (r *sealedRig) barrier(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.spy.Do(ctx, targetMAC, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: aoe.CommandQueryConfig},
		make([]byte, aoe.ConfigHeaderLen)); err != nil {
		t.Fatalf("barrier: %v", err)
	}
}

// counts merges the refusals of the target's sealing layer ("seal.REASON"),
// of the target beneath it ("dropped.WHY", "errors.KIND") and the frames
// the layer opened ("opened").
func (r *sealedRig) counts() map[string]uint64 {
	m := make(map[string]uint64)
	st := r.tlink.Stats()
	for k, v := range st.Rejected {
		m["seal."+k] = v
	}
	m["opened"] = st.FramesOpened
	ts := r.srv.Stats()
	for k, v := range ts.Dropped {
		m["dropped."+k] = v
	}
	for k, v := range ts.Errors {
		m["errors."+k] = v
	}
	return m
}

func (r *sealedRig) discover(t *testing.T) aoetest.Device {
	t.Helper()
	return discoverOn(t, r.client, r.ilink)
}

// discoverOn discovers the one device client (on ilink) finds.
func discoverOn(t *testing.T, client *aoetest.Client, ilink *seal.InitiatorLink) aoetest.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		devs, err := client.Discover(ctx, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) == 1 {
			return devs[0]
		}
	}
	t.Fatalf("no device discovered; initiator stats %+v", ilink.Stats())
	return aoetest.Device{}
}

func TestSealedIO(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	if d.SectorsPerFrame != 2 {
		t.Errorf("sectors per frame %d, want 2 at MTU 1500", d.SectorsPerFrame)
	}
	data := aoetest.RandomBytes(256 << 10)
	r.roundTrip(t, d, data, 4096)
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
	if !eventually(cond) {
		t.Fatal("condition not met in 5s")
	}
}

// eventually reports whether cond became true within 5s.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
