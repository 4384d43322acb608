package seal_test

// Attacks on sealed AoE, on the in-memory rig of seal_test.go: a station on
// the segment that records, alters, replays, reflects, forges and floods
// frames, or answers as a rogue target. Every check that nothing changed
// compares the target's state before and after, and counts the refusal
// the attack should have met, so that it fails if the attack got through.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/target"
)

var discardLog = slog.New(slog.DiscardHandler)

// Offsets in a sealed frame.
const (
	offSealVersion = aoe.FrameHeaderLen      // 24
	offInner       = aoe.FrameHeaderLen + 1  // 25: the wrapped command
	offSession     = aoe.FrameHeaderLen + 4  // 28
	offSeq         = aoe.FrameHeaderLen + 8  // 32
	offAck         = aoe.FrameHeaderLen + 16 // 40
	offSealed      = aoe.FrameHeaderLen + seal.HeaderLen
)

// sealHeader decodes the seal header of a sealed frame.
func sealHeader(t testing.TB, f []byte) seal.Header {
	t.Helper()
	var h seal.Header
	if err := h.UnmarshalBinary(f[aoe.FrameHeaderLen:]); err != nil {
		t.Fatalf("captured frame: %v", err)
	}
	return h
}

func swapMACs(f []byte) {
	var a [6]byte
	copy(a[:], f[0:6])
	copy(f[0:6], f[6:12])
	copy(f[6:12], a[:])
}

// undelivered has client seal a write of data (one frame's worth) at off
// that the target's port drops, and returns the sealed frame: one the
// target never saw, so that its number is still new to the target and a
// copy of it is refused for what was altered, not as a replay.
func (r *sealedRig) undelivered(t *testing.T, c *aoetest.Client, d aoetest.Device, data []byte, off int64) []byte {
	t.Helper()
	from := c.HardwareAddr()
	r.rec.setDrop(func(f []byte) bool { return isSealedWrite(f) && aoe.MAC(f[6:12]) == from })
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the write is sent once, and not waited for
	err := c.WriteAt(ctx, d, data, off, 1)
	r.rec.setDrop(nil)
	if err == nil {
		t.Fatal("a write the target never got was answered")
	}
	dropped := r.rec.takeDropped()
	if len(dropped) != 1 {
		t.Fatalf("%d sealed writes dropped, want 1", len(dropped))
	}
	return dropped[0]
}

// deliver sends f towards the target from the attacker's port, or, if the
// hub would not take it to the target (its destination is another
// station), straight into the target's port, as a NIC in promiscuous mode
// would receive it. It returns the frame as the target reads it (the hub
// pads short frames).
func (r *sealedRig) deliver(t *testing.T, f []byte) []byte {
	t.Helper()
	dst := aoe.MAC(f[0:6])
	if len(f) < aoe.EthernetHeaderLen || dst != targetMAC && !dst.IsMulticast() {
		r.tap.inject(f)
		return f
	}
	if err := r.attacker.WriteFrame(f); err != nil {
		t.Fatal(err)
	}
	if len(f) < aoe.MinFrameLen {
		return append(bytes.Clone(f), make([]byte, aoe.MinFrameLen-len(f))...)
	}
	return f
}

// refusal returns the counters (of sealedRig.counts) one of which a copy
// f of the sealed request orig, altered, shows in once the target reads it:
// the checks of TargetLink and of the target beneath, in their order. f
// differs from orig in one place (a byte, its length).
func refusal(f, orig []byte) []string {
	if len(f) < aoe.FrameHeaderLen {
		return []string{"dropped.short"}
	}
	if f[14]&uint8(aoe.FlagResponse) != 0 {
		return []string{"dropped.response"}
	}
	if dst := aoe.MAC(f[0:6]); dst != targetMAC && !dst.IsMulticast() {
		return []string{"dropped.other_host"} // another station's: the layer leaves it to the target
	}
	shelf, slot := binary.BigEndian.Uint16(f[16:18]), f[18]
	exported := shelf == dev.Shelf && slot == dev.Slot
	reaches := (shelf == dev.Shelf || shelf == aoe.BroadcastMajor) && (slot == dev.Slot || slot == aoe.BroadcastMinor)
	switch cmd := aoe.Command(f[19]); {
	case !reaches:
		return []string{"dropped.other_target"}
	case cmd == seal.CommandSealed && exported:
		switch {
		case len(f) < offSealed+seal.TagLen, f[offSealVersion] != seal.Version,
			aoe.Command(f[offInner]) == seal.CommandSealed, aoe.Command(f[offInner]) == seal.CommandHandshake:
			return []string{"seal.malformed"}
		case f[26] != orig[26]: // the suite (once reserved): unknown, or not the session's
			return []string{"seal.malformed", "seal.bad_tag"}
		case f[27] != orig[27]: // reserved
			return []string{"seal.malformed"}
		case !bytes.Equal(f[offSession:offSeq], orig[offSession:offSeq]):
			return []string{"seal.no_session"}
		case !bytes.Equal(f[offSeq:offAck], orig[offSeq:offAck]):
			// Another number: one the target accepted already, or a new
			// one whose tag cannot verify.
			return []string{"seal.bad_tag", "seal.replay"}
		}
		return []string{"seal.bad_tag"}
	case cmd == seal.CommandHandshake && exported:
		return []string{"seal.malformed"} // a seal header does not parse as a handshake message
	case cmd == seal.CommandSealed, cmd == seal.CommandHandshake:
		return []string{"errors.aoe_unrecognized_command"} // broadcast: not the layer's
	case cmd == aoe.CommandATA,
		cmd == aoe.CommandReserveRelease && f[aoe.FrameHeaderLen] != uint8(aoe.ReserveRead): // the seal version, 1: a set
		return []string{"seal.unsealed"}
	case f[14]>>4 != aoe.Version:
		return []string{"errors.aoe_unsupported_version"}
	}
	return []string{"errors.aoe_unrecognized_command"}
}

// variant is an altered copy of a captured frame.
type variant struct {
	name  string
	frame []byte
}

// refuseAll delivers every variant of the sealed request orig to the
// target and checks that each met the refusal refusal predicts, and that
// the target opened none of them.
func (r *sealedRig) refuseAll(t *testing.T, orig []byte, vs []variant) {
	t.Helper()
	before := r.counts()
	must, may := make(map[string]uint64), make(map[string]uint64)
	for i, v := range vs {
		keys := refusal(r.deliver(t, v.frame), orig)
		if len(keys) == 1 {
			must[keys[0]]++
		}
		for _, k := range keys {
			may[k]++
		}
		if i%200 == 199 {
			r.barrier(t) // the target's queue holds 1024 frames
		}
	}
	r.barrier(t)
	after := r.counts()
	got := make(map[string]uint64)
	var total uint64
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			got[k] = d
			if k != "opened" {
				total += d
			}
		}
	}
	// Each frame is refused once, or opened: the count of refusals says
	// none was opened. (The count of frames opened would not: a request
	// the initiator sent again may come in meanwhile.)
	ok := total == uint64(len(vs))
	if !ok {
		t.Errorf("%d refusals counted for %d altered frames: %v (want within %v..%v)", total, len(vs), got, must, may)
	}
	for k := range got {
		if k != "opened" && (got[k] < must[k] || got[k] > may[k]) {
			t.Errorf("%s: %d refusals, want %d..%d (all: %v)", k, got[k], must[k], may[k], got)
			ok = false
		}
	}
	for k := range must {
		if got[k] < must[k] {
			t.Errorf("%s: %d refusals, want at least %d (all: %v)", k, got[k], must[k], got)
			ok = false
		}
	}
	if !ok {
		r.diagnose(t, orig, vs)
	}
}

// diagnose delivers the variants one at a time and reports those whose
// refusal is not the one predicted. (A variant refused before is refused
// the same way again; one accepted before now shows as a replay.)
func (r *sealedRig) diagnose(t *testing.T, orig []byte, vs []variant) {
	t.Helper()
	bad := 0
	for _, v := range vs {
		c0 := r.counts()
		keys := refusal(r.deliver(t, v.frame), orig)
		r.barrier(t)
		c1 := r.counts()
		var shown []string
		for k, n := range c1 {
			if k != "opened" && n != c0[k] {
				shown = append(shown, k)
			}
		}
		if len(shown) != 1 || !slices.Contains(keys, shown[0]) {
			t.Errorf("%s: refused as %v, want one of %v", v.name, shown, keys)
			if bad++; bad == 20 {
				return
			}
		}
	}
}

// refuseAs delivers frames, altered copies of sealed requests, and checks
// that each is refused for reason (a key of sealedRig.counts), so none is
// opened, and that the disk does not change. (The count of frames opened
// proves nothing here: the initiator may be sending a query of its own.)
func (r *sealedRig) refuseAs(t *testing.T, reason string, frames ...[]byte) {
	t.Helper()
	before, c0 := sum(r.disk), r.counts()
	for _, f := range frames {
		r.deliver(t, f)
	}
	r.barrier(t)
	c1 := r.counts()
	if got := c1[reason] - c0[reason]; got != uint64(len(frames)) {
		t.Errorf("%d frames: %d refused as %s (counts %v, were %v)", len(frames), got, reason, c1, c0)
	}
	if sum(r.disk) != before {
		t.Fatal("disk changed")
	}
}

// acceptOriginal delivers the untampered orig, a write of data at off the
// target never saw, and checks that it is opened and written: the refusals
// before were the alterations', not the frame's.
func (r *sealedRig) acceptOriginal(t *testing.T, orig, data []byte, off int64) {
	t.Helper()
	c0 := r.counts()
	r.deliver(t, orig)
	r.barrier(t)
	if c1 := r.counts(); c1["opened"] == c0["opened"] {
		t.Fatalf("the untampered frame was not opened (counts %v, were %v)", c1, c0)
	}
	// Its data, which no other frame carries, reaches the disk.
	if !eventually(func() bool { return bytes.Equal(r.disk.Bytes()[off:off+int64(len(data))], data) }) {
		t.Fatal("the untampered write did not reach the disk")
	}
}

// TestTamperedWriteRefused alters a sealed write, byte by byte and in
// length, and sends each copy to the target: every one is refused for
// what was altered and the disk does not change, while the frame itself,
// sent last, is accepted.
func TestTamperedWriteRefused(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	ctx := context.Background()
	if err := r.client.WriteAt(ctx, d, aoetest.RandomBytes(8192), 0, 4); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0xC3}, 2*aoe.SectorSize)
	const off = 64 << 10
	orig := r.undelivered(t, r.client, d, data, off)
	if len(orig) != offSealed+aoe.ATAHeaderLen+len(data)+seal.TagLen {
		t.Fatalf("sealed write of %d bytes", len(orig))
	}

	var vs []variant
	for i := range orig {
		masks := []byte{0xff}
		if i < offSealed {
			masks = append(masks, 0x01, 0x80) // each end of the headers' bytes too
		}
		for _, m := range masks {
			f := bytes.Clone(orig)
			f[i] ^= m
			vs = append(vs, variant{fmt.Sprintf("byte %d ^ %#x", i, m), f})
		}
	}
	for _, cmd := range []aoe.Command{aoe.CommandATA, aoe.CommandReserveRelease, seal.CommandHandshake, 0x7f} {
		f := bytes.Clone(orig)
		f[19] = uint8(cmd)
		vs = append(vs, variant{fmt.Sprintf("command %v", cmd), f})
	}
	for n := 1; n <= len(orig)-aoe.FrameHeaderLen; n++ {
		vs = append(vs, variant{fmt.Sprintf("less %d bytes", n), bytes.Clone(orig[:len(orig)-n])})
	}
	for _, n := range []int{1, 13, 14, 23} { // shorter than the AoE header: only through the tap
		vs = append(vs, variant{fmt.Sprintf("%d bytes", n), bytes.Clone(orig[:n])})
	}
	vs = append(vs,
		variant{"one byte more", append(bytes.Clone(orig), 0)},
		variant{"16 random bytes more", append(bytes.Clone(orig), aoetest.RandomBytes(seal.TagLen)...)},
		variant{"tag repeated", append(bytes.Clone(orig), orig[len(orig)-seal.TagLen:]...)},
		variant{"tag cut off", bytes.Clone(orig[:len(orig)-seal.TagLen])},
		variant{"tag zeroed", append(bytes.Clone(orig[:len(orig)-seal.TagLen]), make([]byte, seal.TagLen)...)},
	)

	before := sum(r.disk)
	r.refuseAll(t, orig, vs)
	if sum(r.disk) != before {
		t.Fatal("an altered write changed the disk")
	}
	r.acceptOriginal(t, orig, data, off)
}

// TestReorderedWritesAcceptedOnce holds back several sealed writes, then
// delivers them in reverse order: the window takes each once, and a second
// delivery of each is refused as a replay and changes nothing.
func TestReorderedWritesAcceptedOnce(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	ctx := context.Background()
	const n = 8
	var held [][]byte
	var datas [][]byte
	for i := range n {
		data := bytes.Repeat([]byte{byte(0x10 + i)}, 2*aoe.SectorSize)
		held = append(held, r.undelivered(t, r.client, d, data, int64(i)*4096))
		datas = append(datas, data)
		// Frames the target does get, in between.
		if err := r.client.WriteAt(ctx, d, aoetest.RandomBytes(1024), 512<<10, 1); err != nil {
			t.Fatal(err)
		}
	}
	for i := n - 1; i >= 0; i-- {
		r.acceptOriginal(t, held[i], datas[i], int64(i)*4096)
	}
	// Overwrite what they wrote, then deliver them again.
	for i := range n {
		if err := r.client.WriteAt(ctx, d, bytes.Repeat([]byte{0xEE}, 4096), int64(i)*4096, 1); err != nil {
			t.Fatal(err)
		}
	}
	before := sum(r.disk)
	c0 := r.counts()
	for _, f := range held {
		r.deliver(t, f)
	}
	r.barrier(t)
	c1 := r.counts()
	if got := c1["seal.replay"] - c0["seal.replay"]; got != n {
		t.Errorf("%d replays counted, want %d (counts %v)", got, n, c1)
	}
	if sum(r.disk) != before {
		t.Fatal("replayed writes changed the disk")
	}
}

// TestOldFrameBehindWindowRefused holds back a sealed write, lets more than
// a window of frames through, then delivers it: too old to be told from a
// replay, it is refused as one.
func TestOldFrameBehindWindowRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("sends a window of frames")
	}
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	held := r.undelivered(t, r.client, d, bytes.Repeat([]byte{0x77}, 1024), 0)
	buf := make([]byte, 1<<20)
	for sent := 0; sent <= seal.WindowSize; sent += len(buf) / 1024 {
		if err := r.client.ReadAt(context.Background(), d, buf, 0, 32); err != nil {
			t.Fatal(err)
		}
	}
	before := sum(r.disk)
	c0 := r.counts()
	r.deliver(t, held)
	r.barrier(t)
	if got := r.counts()["seal.replay"] - c0["seal.replay"]; got != 1 {
		t.Errorf("%d replays counted for a frame behind the window, want 1", got)
	}
	if sum(r.disk) != before {
		t.Fatal("a frame behind the window was accepted")
	}
}

// TestReflectedAndMovedFramesRefused sends frames where they do not
// belong: a request back to the initiator as if it were a response, a
// response back to the target as a request, a target's challenge as an
// initiator's finish, a finish again or from another station, and sealed
// frames moved to another device or session.
func TestReflectedAndMovedFramesRefused(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	ctx := context.Background()
	if err := r.client.WriteAt(ctx, d, aoetest.RandomBytes(4096), 0, 2); err != nil {
		t.Fatal(err)
	}
	requests := r.rec.sealed(aoe.CommandATA, true)
	responses := r.irec.sealed(aoe.CommandATA, true)
	challenges := r.irec.handshakes(seal.MessageChallenge)
	finishes := r.rec.handshakes(seal.MessageFinish)
	if len(requests) == 0 || len(responses) == 0 || len(challenges) == 0 || len(finishes) == 0 {
		t.Fatalf("captured %d requests, %d responses, %d challenges, %d finishes",
			len(requests), len(responses), len(challenges), len(finishes))
	}

	t.Run("request reflected to the initiator", func(t *testing.T) {
		f := bytes.Clone(requests[len(requests)-1])
		swapMACs(f) // from the target, to the initiator
		f[14] |= uint8(aoe.FlagResponse)
		st0 := r.ilink.Stats()
		if err := r.attacker.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return r.ilink.Stats().Rejected["bad_tag"] > st0.Rejected["bad_tag"] })
		if st := r.ilink.Stats(); st.Rejected["bad_tag"] != st0.Rejected["bad_tag"]+1 {
			t.Fatalf("bad_tag %d, was %d", st.Rejected["bad_tag"], st0.Rejected["bad_tag"])
		}
	})

	t.Run("responses replayed to the initiator", func(t *testing.T) {
		st0 := r.ilink.Stats()
		for _, f := range responses {
			if err := r.attacker.WriteFrame(f); err != nil {
				t.Fatal(err)
			}
		}
		want := st0.Rejected["replay"] + uint64(len(responses))
		if !eventually(func() bool { return r.ilink.Stats().Rejected["replay"] >= want }) {
			t.Fatalf("replayed responses: initiator refusals %v, were %v", r.ilink.Stats().Rejected, st0.Rejected)
		}
		if got := r.ilink.Stats().Rejected["replay"]; got != want {
			t.Errorf("%d replays counted, want %d", got, want)
		}
	})

	t.Run("response reflected to the target", func(t *testing.T) {
		f := bytes.Clone(responses[len(responses)-1])
		swapMACs(f) // from the initiator, to the target
		f[14] &^= uint8(aoe.FlagResponse)
		r.refuseAs(t, "seal.bad_tag", f)
	})

	t.Run("challenge replayed as a finish", func(t *testing.T) {
		f := bytes.Clone(challenges[len(challenges)-1])
		swapMACs(f) // from the initiator, to the target
		f[14] &^= uint8(aoe.FlagResponse)
		f[offInner] = uint8(seal.MessageFinish) // the message type
		st0 := r.tlink.Stats()
		r.deliver(t, f)
		r.barrier(t)
		st := r.tlink.Stats()
		if st.Rejected["handshake_failed"] != st0.Rejected["handshake_failed"]+1 {
			t.Errorf("handshake_failed %d, was %d", st.Rejected["handshake_failed"], st0.Rejected["handshake_failed"])
		}
		if st.Handshakes != st0.Handshakes || st.Sessions != st0.Sessions {
			t.Errorf("a reflected challenge made a session: %+v", st)
		}
	})

	t.Run("finish replayed", func(t *testing.T) {
		// As it was: the target sends its accept again (the first may
		// have been lost) but makes no session.
		st0 := r.tlink.Stats()
		r.deliver(t, finishes[len(finishes)-1])
		r.barrier(t)
		if st := r.tlink.Stats(); st.Handshakes != st0.Handshakes || st.Sessions != st0.Sessions {
			t.Errorf("a replayed finish made a session: %+v", st)
		}
		// From another station: its cookie names the initiator.
		f := bytes.Clone(finishes[len(finishes)-1])
		copy(f[6:12], attackerMAC[:])
		r.deliver(t, f)
		// With its time moved on (which the proofs do not bind, the
		// cookie does): else an old finish could be made young again.
		f = bytes.Clone(finishes[len(finishes)-1])
		const offTime = aoe.FrameHeaderLen + 12 + 2*seal.NonceLen
		binary.BigEndian.PutUint64(f[offTime:], binary.BigEndian.Uint64(f[offTime:])+1)
		r.deliver(t, f)
		r.barrier(t)
		st := r.tlink.Stats()
		if st.Rejected["handshake_failed"] != st0.Rejected["handshake_failed"]+2 || st.Handshakes != st0.Handshakes {
			t.Errorf("finish from another station, and with another time: %+v", st)
		}
	})

	t.Run("moved to another device", func(t *testing.T) {
		other := []seal.DeviceAddr{{Shelf: dev.Shelf, Slot: dev.Slot + 1}, {Shelf: dev.Shelf + 1, Slot: dev.Slot}}
		exports := []seal.Export{{Device: dev, Keys: []seal.Key{key}}}
		for _, o := range other {
			exports = append(exports, seal.Export{Device: o, Keys: []seal.Key{key}})
		}
		if err := r.tlink.SetExports(exports); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.tlink.SetExports(exports[:1]) })
		data := bytes.Repeat([]byte{0x5A}, 1024)
		orig := r.undelivered(t, r.client, d, data, 128<<10)
		var moved [][]byte
		for _, o := range other {
			f := bytes.Clone(orig)
			binary.BigEndian.PutUint16(f[16:18], o.Shelf)
			f[18] = o.Slot
			moved = append(moved, f)
		}
		r.refuseAs(t, "seal.bad_tag", moved...)
		r.acceptOriginal(t, orig, data, 128<<10)
	})

	t.Run("moved to another initiator's session", func(t *testing.T) {
		otherMAC := aoe.MAC{0x02, 0, 0, 0, 0, 0x05}
		il2, c2 := r.newInitiator(t, otherMAC, key, seal.Limits{})
		d2 := discoverOn(t, c2, il2)
		if err := c2.WriteAt(ctx, d2, aoetest.RandomBytes(1024), 256<<10, 1); err != nil {
			t.Fatal(err)
		}
		s2 := r.targetSession(t, otherMAC)
		data := bytes.Repeat([]byte{0x6B}, 1024)
		orig := r.undelivered(t, r.client, d, data, 192<<10)
		if sealHeader(t, orig).Session == s2 {
			t.Fatal("both initiators have the same session")
		}
		moved := bytes.Clone(orig)
		binary.BigEndian.PutUint32(moved[offSession:], s2)
		movedAndSent := bytes.Clone(moved) // as if the other initiator sent it
		copy(movedAndSent[6:12], otherMAC[:])
		r.refuseAs(t, "seal.bad_tag", moved, movedAndSent)
		r.acceptOriginal(t, orig, data, 192<<10)
		// And the other way: the other initiator's frame in ours.
		data2 := bytes.Repeat([]byte{0x6C}, 1024)
		orig2 := r.undelivered(t, c2, d2, data2, 200<<10)
		moved2 := bytes.Clone(orig2)
		binary.BigEndian.PutUint32(moved2[offSession:], sealHeader(t, orig).Session)
		copy(moved2[6:12], initiatorMAC[:])
		r.refuseAs(t, "seal.bad_tag", moved2)
		r.acceptOriginal(t, orig2, data2, 200<<10)
	})

	t.Run("moved to the next session of the same initiator", func(t *testing.T) {
		data := bytes.Repeat([]byte{0x7C}, 1024)
		orig := r.undelivered(t, r.client, d, data, 320<<10)
		s1 := sealHeader(t, orig).Session
		// Same key: a rekey, a second handshake, a new session.
		if err := r.ilink.SetKeys(nil, key); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			if err := r.client.WriteAt(ctx, d, aoetest.RandomBytes(1024), 384<<10, 1); err != nil {
				t.Fatal(err)
			}
			return r.targetSession(t, initiatorMAC) != s1
		})
		moved := bytes.Clone(orig)
		binary.BigEndian.PutUint32(moved[offSession:], r.targetSession(t, initiatorMAC))
		r.refuseAs(t, "seal.bad_tag", moved)
		// The old session drains: its frame still counts.
		r.acceptOriginal(t, orig, data, 320<<10)
	})
}

// newInitiator attaches another initiator to the rig's segment: a client
// from mac behind an InitiatorLink with key.
func (r *sealedRig) newInitiator(t *testing.T, mac aoe.MAC, key seal.Key, lim seal.Limits) (*seal.InitiatorLink, *aoetest.Client) {
	t.Helper()
	il, err := seal.NewInitiatorLink(r.hub.Port(mac, 1500), seal.InitiatorConfig{DefaultKey: key, Limits: lim, Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	c := aoetest.NewClient(il, aoetest.ClientOptions{Timeout: 50 * time.Millisecond, Retries: 10, TagBase: uint32(mac[5]) << 20})
	t.Cleanup(func() { c.Close() })
	return il, c
}

// targetSession returns the session the target holds with the initiator
// mac.
func (r *sealedRig) targetSession(t *testing.T, mac aoe.MAC) uint32 {
	t.Helper()
	for _, p := range r.tlink.Stats().Peers {
		if p.MAC == mac.String() && p.State == "established" {
			return p.Session
		}
	}
	t.Fatalf("the target holds no session with %v: %+v", mac, r.tlink.Stats().Peers)
	return 0
}

// peerStats returns what l knows of the station mac for the rig's device.
func peerStats(l interface{ Stats() seal.Stats }, mac aoe.MAC) (seal.PeerStats, bool) {
	for _, p := range l.Stats().Peers {
		if p.MAC == mac.String() && p.Device == dev.String() {
			return p, true
		}
	}
	return seal.PeerStats{}, false
}

// deviceState is what a station can change of a target besides its data.
type deviceState struct {
	config  string
	mask    []aoe.MAC
	reserve []aoe.MAC
}

// readState reads the config string, MAC mask list and reserve list of
// the device at mac through c.
func readState(t *testing.T, c *aoetest.Client, mac aoe.MAC) deviceState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	do := func(cmd aoe.Command, arg []byte) []byte {
		f, err := c.Do(ctx, mac, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: cmd}, arg)
		if err != nil {
			t.Fatalf("read %v: %v", cmd, err)
		}
		return f.Arg
	}
	var st deviceState
	var cfg aoe.Config
	if err := cfg.UnmarshalBinary(do(aoe.CommandQueryConfig, make([]byte, aoe.ConfigHeaderLen))); err != nil {
		t.Fatal(err)
	}
	st.config = string(cfg.String)
	var mm aoe.MACMask
	if err := mm.UnmarshalBinary(do(aoe.CommandMACMask, make([]byte, aoe.MACMaskHeaderLen))); err != nil {
		t.Fatal(err)
	}
	for _, d := range mm.Directives {
		st.mask = append(st.mask, d.MAC)
	}
	var rr aoe.ReserveRelease
	if err := rr.UnmarshalBinary(do(aoe.CommandReserveRelease, make([]byte, aoe.ReserveReleaseHeaderLen))); err != nil {
		t.Fatal(err)
	}
	st.reserve = rr.MACs
	return st
}

func (s deviceState) equal(o deviceState) bool {
	return s.config == o.config && slices.Equal(s.mask, o.mask) && slices.Equal(s.reserve, o.reserve)
}

func marshal(t *testing.T, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// plainAttacks are requests that would change a device or read its data,
// sent plain.
func plainAttacks(t *testing.T) []struct {
	name string
	cmd  aoe.Command
	arg  []byte
} {
	return []struct {
		name string
		cmd  aoe.Command
		arg  []byte
	}{
		{"ATA write", aoe.CommandATA, marshal(t, &aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 1,
			CmdStatus: aoe.ATAWriteSectorsExt, LBA: 0, Data: bytes.Repeat([]byte{0xEE}, aoe.SectorSize)})},
		{"ATA write LBA28", aoe.CommandATA, marshal(t, &aoe.ATA{Flags: aoe.ATAFlagWrite, SectorCount: 1,
			CmdStatus: aoe.ATAWriteSectors, LBA: 8, Data: bytes.Repeat([]byte{0xEF}, aoe.SectorSize)})},
		{"ATA read", aoe.CommandATA, marshal(t, &aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt})},
		{"ATA identify", aoe.CommandATA, marshal(t, &aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})},
		{"config set", aoe.CommandQueryConfig, marshal(t, &aoe.Config{Command: aoe.ConfigSet, String: []byte("pwned")})},
		{"config force-set", aoe.CommandQueryConfig, marshal(t, &aoe.Config{Command: aoe.ConfigForceSet, String: []byte("pwned")})},
		{"config ccmd 15", aoe.CommandQueryConfig, marshal(t, &aoe.Config{Command: 15, String: []byte("pwned")})},
		{"MAC mask edit", aoe.CommandMACMask, marshal(t, &aoe.MACMask{Command: aoe.MACMaskEdit, Directives: []aoe.Directive{
			{Command: aoe.DirectiveAdd, MAC: attackerMAC}, {Command: aoe.DirectiveDelete, MAC: initiatorMAC}}})},
		{"reserve set", aoe.CommandReserveRelease, marshal(t, &aoe.ReserveRelease{Command: aoe.ReserveSet, MACs: []aoe.MAC{attackerMAC}})},
		{"reserve force-set", aoe.CommandReserveRelease, marshal(t, &aoe.ReserveRelease{Command: aoe.ReserveForceSet, MACs: []aoe.MAC{attackerMAC}})},
		{"release", aoe.CommandReserveRelease, marshal(t, &aoe.ReserveRelease{Command: aoe.ReserveSet})},
	}
}

// TestUnsealedRequestsRefused sends, plain, every request that changes a
// keyed device or reads its data: each is answered "device unavailable",
// counted as unsealed, and changes nothing; the read-only queries still
// pass.
func TestUnsealedRequestsRefused(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	ctx := context.Background()
	if err := r.client.WriteAt(ctx, d, aoetest.RandomBytes(64<<10), 0, 8); err != nil {
		t.Fatal(err)
	}
	// State worth changing, set sealed.
	setup := []struct {
		cmd aoe.Command
		arg []byte
	}{
		{aoe.CommandQueryConfig, marshal(t, &aoe.Config{Command: aoe.ConfigSet, String: []byte("legit-config")})},
		{aoe.CommandMACMask, marshal(t, &aoe.MACMask{Command: aoe.MACMaskEdit, Directives: []aoe.Directive{
			{Command: aoe.DirectiveAdd, MAC: initiatorMAC}, {Command: aoe.DirectiveAdd, MAC: attackerMAC}}})},
		{aoe.CommandReserveRelease, marshal(t, &aoe.ReserveRelease{Command: aoe.ReserveSet, MACs: []aoe.MAC{initiatorMAC, attackerMAC}})},
	}
	for _, s := range setup {
		if _, err := r.client.Do(ctx, d.MAC, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: s.cmd}, s.arg); err != nil {
			t.Fatalf("sealed %v: %v", s.cmd, err)
		}
	}
	want := deviceState{"legit-config", []aoe.MAC{initiatorMAC, attackerMAC}, []aoe.MAC{initiatorMAC, attackerMAC}}
	if st := readState(t, r.client, d.MAC); !st.equal(want) {
		t.Fatalf("state set sealed: %+v, want %+v", st, want)
	}
	diskBefore := sum(r.disk)

	for _, a := range plainAttacks(t) {
		t.Run(a.name, func(t *testing.T) {
			before := r.tlink.Stats().Rejected["unsealed"]
			f, err := r.spy.Do(ctx, targetMAC, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: a.cmd}, a.arg)
			if !errors.Is(err, aoe.ErrorDeviceUnavailable) {
				t.Errorf("plain %s: answer %v, %v; want AoE error 3 (device unavailable)", a.name, f.Header, err)
			}
			if len(f.Arg) > 0 && bytes.ContainsFunc(f.Arg, func(r rune) bool { return r != 0 }) {
				t.Errorf("the refusal carries data: % x", f.Arg)
			}
			if got := r.tlink.Stats().Rejected["unsealed"]; got != before+1 {
				t.Errorf("unsealed refusals %d, want %d", got, before+1)
			}
		})
	}
	// Broadcast shelf or slot reach the keyed device too.
	for _, addr := range [][2]uint16{{aoe.BroadcastMajor, uint16(dev.Slot)}, {dev.Shelf, aoe.BroadcastMinor}, {aoe.BroadcastMajor, aoe.BroadcastMinor}} {
		before := r.tlink.Stats().Rejected["unsealed"]
		arg := marshal(t, &aoe.Config{Command: aoe.ConfigForceSet, String: []byte("pwned")})
		if _, err := r.spy.Do(ctx, targetMAC, aoe.Header{Major: addr[0], Minor: uint8(addr[1]), Command: aoe.CommandQueryConfig}, arg); !errors.Is(err, aoe.ErrorDeviceUnavailable) {
			t.Errorf("config force-set to %d.%d: %v", addr[0], addr[1], err)
		}
		if got := r.tlink.Stats().Rejected["unsealed"]; got != before+1 {
			t.Errorf("config force-set to %d.%d: unsealed refusals %d, want %d", addr[0], addr[1], got, before+1)
		}
	}

	if st := readState(t, r.client, d.MAC); !st.equal(want) {
		t.Errorf("state after plain requests: %+v, want %+v", st, want)
	}
	if sum(r.disk) != diskBefore {
		t.Error("plain requests changed the disk")
	}
	// The read-only queries pass, plain, and are not counted.
	before := r.tlink.Stats().Rejected["unsealed"]
	if st := readState(t, r.spy, targetMAC); !st.equal(want) {
		t.Errorf("state read plain: %+v, want %+v", st, want)
	}
	if got := r.tlink.Stats().Rejected["unsealed"]; got != before {
		t.Errorf("read-only queries counted as unsealed: %d", got-before)
	}
}

// TestSealedErrorAnswerReachesInitiator: an AoE error the target answers a
// sealed request with (config string present, target reserved) reaches
// the initiator, sealed, like any answer.
func TestSealedErrorAnswerReachesInitiator(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: aoe.CommandQueryConfig}
	if _, err := r.client.Do(ctx, d.MAC, h, marshal(t, &aoe.Config{Command: aoe.ConfigSet, String: []byte("one")})); err != nil {
		t.Fatal(err)
	}
	f, err := r.client.Do(ctx, d.MAC, h, marshal(t, &aoe.Config{Command: aoe.ConfigSet, String: []byte("two")}))
	if !errors.Is(err, aoe.ErrorConfigStringPresent) {
		t.Fatalf("second config set: %v, want AoE error 4 (config string present)", err)
	}
	var cfg aoe.Config
	if err := cfg.UnmarshalBinary(f.Arg); err != nil || string(cfg.String) != "one" {
		t.Errorf("refused config set answered %q, %v; want the string in force", cfg.String, err)
	}
	if _, err := r.client.Do(ctx, d.MAC, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: 0x10}, nil); !errors.Is(err, aoe.ErrorUnrecognizedCommand) {
		t.Errorf("sealed vendor command: %v, want AoE error 1 (unrecognized command)", err)
	}
	if p, ok := peerStats(r.ilink, targetMAC); !ok || p.State != "established" || p.LastError != "" {
		t.Errorf("target after error answers: %+v", p)
	}
}

// TestOptionalModeLetsPlainIn: in optional mode a plain write reaches the
// disk, and is counted.
func TestOptionalModeLetsPlainIn(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeOptional, seal.Limits{})
	d := r.discover(t)
	ctx := context.Background()
	if err := r.client.WriteAt(ctx, d, aoetest.RandomBytes(4096), 4096, 2); err != nil {
		t.Fatal(err)
	}
	a := plainAttacks(t)[0]
	before := r.tlink.Stats()
	if _, err := r.spy.Do(ctx, targetMAC, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: a.cmd}, a.arg); err != nil {
		t.Fatalf("plain write in optional mode: %v", err)
	}
	if !bytes.Equal(r.disk.Bytes()[:aoe.SectorSize], bytes.Repeat([]byte{0xEE}, aoe.SectorSize)) {
		t.Error("the plain write did not reach the disk")
	}
	st := r.tlink.Stats()
	if st.UnsealedAccepted != before.UnsealedAccepted+1 || st.Rejected["unsealed"] != before.Rejected["unsealed"] {
		t.Errorf("unsealed accepted %d (was %d), refused %d (was %d)", st.UnsealedAccepted, before.UnsealedAccepted,
			st.Rejected["unsealed"], before.Rejected["unsealed"])
	}
	// Sealed I/O goes on beside it.
	data := aoetest.RandomBytes(8192)
	if err := r.client.WriteAt(ctx, d, data, 8192, 4); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.disk.Bytes()[8192:8192+len(data)], data) {
		t.Error("sealed write lost")
	}
}

// serveOn serves a MemDisk of the rig's device on link until the test
// ends.
func serveOn(t *testing.T, link aoe.Link, disk *aoetest.MemDisk) *target.Server {
	t.Helper()
	srv, err := target.NewServer(target.Config{Shelf: dev.Shelf, Slot: dev.Slot, Backend: disk, Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, link) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}

// forger is a rogue target's link: it answers hellos itself with a
// challenge whose proof is made up, as a station would that read the key
// id off the wire but does not hold the key.
type forger struct{ *aoetest.Port }

func (f forger) ReadFrame(b []byte) (int, error) {
	for {
		n, err := f.Port.ReadFrame(b)
		if err != nil {
			return 0, err
		}
		var m seal.Message
		if n < aoe.FrameHeaderLen || aoe.Command(b[19]) != seal.CommandHandshake ||
			m.UnmarshalBinary(b[aoe.FrameHeaderLen:n]) != nil || m.Type != seal.MessageHello {
			return n, nil
		}
		reply := seal.Message{Type: seal.MessageChallenge, KeyID: m.KeyID, InitiatorNonce: m.InitiatorNonce, Time: 12345}
		copy(reply.TargetNonce[:], aoetest.RandomBytes(seal.NonceLen))
		copy(reply.Cookie[:], aoetest.RandomBytes(seal.CookieLen))
		copy(reply.Proof[:], aoetest.RandomBytes(seal.ProofLen))
		out := make([]byte, aoe.FrameHeaderLen+reply.Len())
		copy(out[0:6], b[6:12])
		mac := f.HardwareAddr()
		copy(out[6:12], mac[:])
		copy(out[12:24], b[12:24])
		out[14] = aoe.Version<<4 | uint8(aoe.FlagResponse)
		if _, err := reply.MarshalTo(out[aoe.FrameHeaderLen:]); err != nil {
			panic(err)
		}
		_ = f.Port.WriteFrame(out)
	}
}

// TestRogueTargetIgnored puts a second target on the segment that answers
// to the same shelf.slot but cannot prove the key: the initiator never
// shows it, never writes to it, and says why; I/O goes to the real one.
func TestRogueTargetIgnored(t *testing.T) {
	rogueMAC := aoe.MAC{0x02, 0, 0, 0, 0, 0x07}
	tests := []struct {
		name string
		// start serves disk as the rogue on port.
		start   func(t *testing.T, port *aoetest.Port, disk *aoetest.MemDisk)
		lastErr string
	}{
		{"another key", func(t *testing.T, port *aoetest.Port, disk *aoetest.MemDisk) {
			tl, err := seal.NewTargetLink(port, seal.TargetConfig{Exports: []seal.Export{{Device: dev, Keys: []seal.Key{newKey(t)}}}, Logger: discardLog})
			if err != nil {
				t.Fatal(err)
			}
			serveOn(t, tl, disk)
		}, "holds no key with id"},
		{"plain target", func(t *testing.T, port *aoetest.Port, disk *aoetest.MemDisk) {
			serveOn(t, port, disk)
		}, "plain AoE target"},
		{"made-up proof", func(t *testing.T, port *aoetest.Port, disk *aoetest.MemDisk) {
			serveOn(t, forger{port}, disk)
		}, "target failed to prove key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := newKey(t)
			r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
			rogueDisk := aoetest.NewMemDisk(1 << 20)
			tc.start(t, r.hub.Port(rogueMAC, 1500), rogueDisk)
			empty := rogueDisk.Sum512()

			d := r.discover(t)
			if d.MAC != targetMAC {
				t.Fatalf("discovered %v, want the real target %v", d, targetMAC)
			}
			ctx := context.Background()
			data := aoetest.RandomBytes(64 << 10)
			for i := range 4 {
				// The real target shows when its answer to the query the
				// layer makes for a discovery comes in time; the rogue
				// never.
				devs, err := r.client.Discover(ctx, 50*time.Millisecond)
				if err != nil || slices.ContainsFunc(devs, func(d aoetest.Device) bool { return d.MAC != targetMAC }) {
					t.Fatalf("discovery %d: %v, %v", i, devs, err)
				}
				if err := r.client.WriteAt(ctx, d, data, int64(i*len(data)), 8); err != nil {
					t.Fatal(err)
				}
			}
			got := make([]byte, len(data))
			if err := r.client.ReadAt(ctx, d, got, 0, 8); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back: %v", err)
			}
			if rogueDisk.Sum512() != empty {
				t.Error("the rogue target's disk was written")
			}
			waitFor(t, func() bool {
				p, ok := peerStats(r.ilink, rogueMAC)
				return ok && strings.Contains(p.LastError, tc.lastErr)
			})
			p, _ := peerStats(r.ilink, rogueMAC)
			if p.State == "established" || p.Session != 0 {
				t.Errorf("rogue peer %+v", p)
			}
			if p, ok := peerStats(r.ilink, targetMAC); !ok || p.State != "established" {
				t.Errorf("real target %+v", p)
			}
		})
	}
}

// TestWrongInitiatorKey: an initiator with another key finds no device,
// says that the target holds no such key, never sends it a request in
// plain, and leaves it no session.
func TestWrongInitiatorKey(t *testing.T) {
	tkey, ikey := newKey(t), newKey(t)
	r := newSealedRig(t, []seal.Key{tkey}, ikey, seal.ModeRequired, seal.Limits{})
	ctx := context.Background()
	for range 3 {
		devs, err := r.client.Discover(ctx, 100*time.Millisecond)
		if err != nil || len(devs) != 0 {
			t.Fatalf("discovery with the wrong key: %v, %v", devs, err)
		}
	}
	waitFor(t, func() bool { p, ok := peerStats(r.ilink, targetMAC); return ok && p.LastError != "" })
	p, _ := peerStats(r.ilink, targetMAC)
	if !strings.Contains(p.LastError, fmt.Sprintf("%08x", ikey.ID)) || !strings.Contains(p.LastError, "wrong key") {
		t.Errorf("last error %q: want the key id %08x and \"wrong key\"", p.LastError, ikey.ID)
	}
	if p.State == "established" {
		t.Errorf("peer %+v", p)
	}
	// Writing anyway gets nowhere, and nothing goes plain.
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	d := aoetest.Device{MAC: targetMAC, Shelf: dev.Shelf, Slot: dev.Slot, SectorsPerFrame: 2}
	if err := r.client.WriteAt(wctx, d, bytes.Repeat([]byte{1}, 1024), 0, 1); err == nil {
		t.Error("a write with the wrong key was answered")
	}
	for _, f := range r.rec.all() {
		if aoe.MAC(f[6:12]) == initiatorMAC && aoe.Command(f[19]) == aoe.CommandATA {
			t.Fatal("the initiator sent an ATA request in plain")
		}
	}
	st := r.tlink.Stats()
	if st.Sessions != 0 || st.Handshakes != 0 || st.FramesOpened != 0 || st.Rejected["handshake_failed"] == 0 {
		t.Errorf("target stats %+v", st)
	}
	if sum(r.disk) != sum(aoetest.NewMemDisk(1<<20)) {
		t.Error("disk written")
	}
}

// helloFrame is a hello to the rig's device from src with key id keyID.
func helloFrame(src aoe.MAC, keyID uint32) []byte {
	m := seal.Message{Type: seal.MessageHello, KeyID: keyID}
	copy(m.InitiatorNonce[:], aoetest.RandomBytes(seal.NonceLen))
	f := make([]byte, max(aoe.FrameHeaderLen+m.Len(), aoe.MinFrameLen))
	h := aoe.Frame{Dst: targetMAC, Src: src, Header: aoe.Header{Version: aoe.Version, Major: dev.Shelf, Minor: dev.Slot, Command: seal.CommandHandshake}}
	if _, err := h.MarshalHeaderTo(f); err != nil {
		panic(err)
	}
	if _, err := m.MarshalTo(f[aoe.FrameHeaderLen:]); err != nil {
		panic(err)
	}
	return f
}

// ioLoop writes and reads back the region [off, off+size) of d through c
// until stop is closed, and reports how many rounds it did and the first
// error. The region holds the last round's data when it returns.
type ioLoop struct {
	rounds atomic.Int64
	done   chan struct{}
	err    error
	last   []byte
}

func startIO(c *aoetest.Client, d aoetest.Device, off int64, size int, stop <-chan struct{}) *ioLoop {
	l := &ioLoop{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		ctx := context.Background()
		got := make([]byte, size)
		for {
			select {
			case <-stop:
				return
			default:
			}
			data := aoetest.RandomBytes(size)
			if err := c.WriteAt(ctx, d, data, off, 8); err != nil {
				l.err = fmt.Errorf("round %d: write: %w", l.rounds.Load(), err)
				return
			}
			l.last = data
			if err := c.ReadAt(ctx, d, got, off, 8); err != nil {
				l.err = fmt.Errorf("round %d: read: %w", l.rounds.Load(), err)
				return
			}
			if !bytes.Equal(got, data) {
				l.err = fmt.Errorf("round %d: read back other data", l.rounds.Load())
				return
			}
			l.rounds.Add(1)
		}
	}()
	return l
}

// wait lets the loop do n more rounds (or fail).
func (l *ioLoop) wait(t *testing.T, n int64) {
	t.Helper()
	want := l.rounds.Load() + n
	waitFor(t, func() bool {
		select {
		case <-l.done:
			return true
		default:
		}
		return l.rounds.Load() >= want
	})
}

// stop ends the loop and fails the test if it failed.
func (l *ioLoop) stopAndCheck(t *testing.T, stop chan struct{}) {
	t.Helper()
	close(stop)
	<-l.done
	if l.err != nil {
		t.Fatalf("I/O: %v", l.err)
	}
}

// TestKeyRotationUnderIO rotates the key while I/O runs: the target takes
// keys A and B, the initiator moves from A to B, then the target drops A.
// No I/O fails; a hello with A is refused afterwards.
func TestKeyRotationUnderIO(t *testing.T) {
	keyA, keyB := newKey(t), newKey(t)
	r := newSealedRig(t, []seal.Key{keyA, keyB}, keyA, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	if p, _ := peerStats(r.ilink, targetMAC); p.KeyID != keyA.ID {
		t.Fatalf("session with key %08x, want A %08x", p.KeyID, keyA.ID)
	}
	// A frame of the session made with A, held back.
	heldData := bytes.Repeat([]byte{0xA0}, 1024)
	held := r.undelivered(t, r.client, d, heldData, 512<<10)
	stop := make(chan struct{})
	io := startIO(r.client, d, 0, 64<<10, stop)
	io.wait(t, 3)

	if err := r.ilink.SetKeys(nil, keyB); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		p, _ := peerStats(r.ilink, targetMAC)
		return p.KeyID == keyB.ID && p.State == "established"
	})
	io.wait(t, 3)
	if err := r.tlink.SetExports([]seal.Export{{Device: dev, Keys: []seal.Key{keyB}}}); err != nil {
		t.Fatal(err)
	}
	io.wait(t, 3)
	io.stopAndCheck(t, stop)
	if !bytes.Equal(r.disk.Bytes()[:64<<10], io.last) {
		t.Error("disk does not hold the last data written")
	}
	for _, p := range r.tlink.Stats().Peers {
		if p.State == "established" && p.KeyID != keyB.ID {
			t.Errorf("target keeps a session with key %08x: %+v", p.KeyID, p)
		}
	}
	// The sessions made with A are gone: their frames name none.
	r.refuseAs(t, "seal.no_session", held)

	// A hello with A: refused, "unknown key"; with B: challenged.
	for _, tc := range []struct {
		key  seal.Key
		want seal.MessageType
	}{{keyA, seal.MessageRefuse}, {keyB, seal.MessageChallenge}} {
		failed := r.tlink.Stats().Rejected["handshake_failed"]
		r.deliver(t, helloFrame(attackerMAC, tc.key.ID))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		f, err := r.spy.Expect(ctx, func(f *aoe.Frame) bool { return f.Command == seal.CommandHandshake })
		cancel()
		if err != nil {
			t.Fatalf("hello with %v: no answer: %v", tc.key, err)
		}
		var m seal.Message
		if err := m.UnmarshalBinary(f.Arg); err != nil || m.Type != tc.want {
			t.Errorf("hello with %v answered %v (%v), want %v", tc.key, m.Type, err, tc.want)
		}
		refused := r.tlink.Stats().Rejected["handshake_failed"] - failed
		if (tc.want == seal.MessageRefuse) != (refused == 1) {
			t.Errorf("hello with %v: %d handshake failures counted", tc.key, refused)
		}
		if tc.want == seal.MessageRefuse && (m.Reason != seal.RefuseUnknownKey || m.KeyID != keyA.ID) {
			t.Errorf("refusal %+v, want unknown key %08x", m, keyA.ID)
		}
	}
}

// TestSessionLimitsRekey runs long I/O with low limits: the sessions are
// replaced as they wear out, no I/O fails, and no sequence number is used
// twice in a session.
func TestSessionLimitsRekey(t *testing.T) {
	tests := []struct {
		name string
		lim  seal.Limits
		// run does the I/O.
		run func(t *testing.T, r *sealedRig, d aoetest.Device)
		min uint64 // handshakes at least
	}{
		{"frames", seal.Limits{RekeyAfterFrames: 100, RejectAfterFrames: 200, HandshakeRate: 1000, HandshakeBurst: 1000},
			func(t *testing.T, r *sealedRig, d aoetest.Device) {
				r.roundTrip(t, d, aoetest.RandomBytes(1<<20), 0)
			}, 10},
		{"time", seal.Limits{RekeyAfterTime: 100 * time.Millisecond, RejectAfterTime: 2 * time.Second, HandshakeRate: 1000, HandshakeBurst: 1000},
			func(t *testing.T, r *sealedRig, d aoetest.Device) {
				stop := make(chan struct{})
				io := startIO(r.client, d, 0, 32<<10, stop)
				waitFor(t, func() bool { return r.ilink.Stats().Handshakes >= 5 || io.err != nil })
				io.wait(t, 2)
				io.stopAndCheck(t, stop)
			}, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := newKey(t)
			r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, tc.lim)
			d := r.discover(t)
			tc.run(t, r, d)
			ist, tst := r.ilink.Stats(), r.tlink.Stats()
			if ist.Handshakes < tc.min || tst.Handshakes < tc.min {
				t.Errorf("%d handshakes (target %d), want at least %d", ist.Handshakes, tst.Handshakes, tc.min)
			}
			checkUnique := func(what string, frames [][]byte, response bool) {
				t.Helper()
				type key struct {
					session uint32
					seq     uint64
				}
				seen := make(map[key]bool)
				perSession := make(map[uint32]int)
				for _, f := range frames {
					if len(f) < offSealed || aoe.Command(f[19]) != seal.CommandSealed || (f[14]&uint8(aoe.FlagResponse) != 0) != response {
						continue
					}
					h := sealHeader(t, f)
					k := key{h.Session, h.Seq}
					if seen[k] {
						t.Errorf("%s: session %08x number %d used twice", what, h.Session, h.Seq)
					}
					seen[k] = true
					perSession[h.Session]++
				}
				if len(perSession) < int(tc.min) {
					t.Errorf("%s: %d sessions seen, want at least %d", what, len(perSession), tc.min)
				}
				if tc.lim.RejectAfterFrames > 0 {
					// A new session takes over before the old one is
					// worn out: I/O never waits for a handshake.
					most := 0
					for s, n := range perSession {
						if uint64(n) >= tc.lim.RejectAfterFrames {
							t.Errorf("%s: session %08x carried %d frames, up to the limit %d", what, s, n, tc.lim.RejectAfterFrames)
						}
						most = max(most, n)
					}
					t.Logf("%s: %d sessions, at most %d frames in one", what, len(perSession), most)
				}
			}
			checkUnique("requests", r.rec.all(), false)
			checkUnique("responses", r.irec.all(), true)
		})
	}
}

// sessionFrames counts the sealed requests from mac that the target's port
// received, by session.
func sessionFrames(t *testing.T, frames [][]byte, mac aoe.MAC) map[uint32]int {
	t.Helper()
	n := make(map[uint32]int)
	for _, f := range frames {
		if len(f) >= offSealed && aoe.Command(f[19]) == seal.CommandSealed && f[14]&uint8(aoe.FlagResponse) == 0 && aoe.MAC(f[6:12]) == mac {
			n[sealHeader(t, f).Session]++
		}
	}
	return n
}

// TestSessionFrameLimitHeld: a session that reaches its frame limit
// carries no more frames, on either side, even when no new session can
// be made.
func TestSessionFrameLimitHeld(t *testing.T) {
	lim := seal.Limits{RekeyAfterFrames: 100, RejectAfterFrames: 200, HandshakeRate: 1000, HandshakeBurst: 1000}
	t.Run("handshakes blocked", func(t *testing.T) {
		key := newKey(t)
		r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, lim)
		d := r.discover(t)
		r.rec.setDrop(func(f []byte) bool { return aoe.Command(f[19]) == seal.CommandHandshake })
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := r.client.WriteAt(ctx, d, aoetest.RandomBytes(300<<10), 0, 16)
		cancel()
		if err == nil {
			t.Fatal("300 frames written in a session good for 200, with no handshake getting through")
		}
		for s, n := range sessionFrames(t, r.rec.all(), initiatorMAC) {
			if n > int(lim.RejectAfterFrames) {
				t.Errorf("session %08x: the initiator sent %d frames, past the limit %d", s, n, lim.RejectAfterFrames)
			}
		}
		if st := r.tlink.Stats(); st.Rejected["expired"] != 0 {
			t.Errorf("the target refused %d frames past the limit", st.Rejected["expired"])
		}
		// Once handshakes get through, a new session carries the I/O.
		r.rec.setDrop(nil)
		data := aoetest.RandomBytes(300 << 10)
		if err := r.client.WriteAt(context.Background(), d, data, 0, 16); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.disk.Bytes()[:len(data)], data) {
			t.Error("disk does not hold the data")
		}
	})
	t.Run("initiator with higher limits", func(t *testing.T) {
		key := newKey(t)
		r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, lim)
		mac := aoe.MAC{0x02, 0, 0, 0, 0, 0x09}
		il, c := r.newInitiator(t, mac, key, seal.Limits{}) // rekeys after 2^32 frames
		d := discoverOn(t, c, il)
		st0 := r.tlink.Stats()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := c.WriteAt(ctx, d, aoetest.RandomBytes(300<<10), 0, 16)
		cancel()
		if err == nil {
			t.Fatal("300 frames accepted in a session good for 200")
		}
		st := r.tlink.Stats()
		if st.Rejected["expired"] == 0 {
			t.Error("no frame refused as past the limit")
		}
		if opened := st.FramesOpened - st0.FramesOpened; opened > lim.RejectAfterFrames {
			t.Errorf("the target opened %d frames of a session good for %d", opened, lim.RejectAfterFrames)
		}
	})
}

// TestHandshakeFlood floods the target with hellos from random stations
// while sealed I/O runs: the target answers a bounded number, keeps no
// state for them, and the I/O goes on.
func TestHandshakeFlood(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	stop := make(chan struct{})
	io := startIO(r.client, d, 0, 64<<10, stop)
	io.wait(t, 1)
	// The recorders would keep the flood, and the I/O's frames.
	r.rec.pause(true)
	r.irec.pause(true)

	// From one station: its own bucket holds it to a burst, though the
	// bucket of all stations without a session would let more through.
	st0 := r.tlink.Stats()
	start := time.Now()
	const one = 300
	for range one {
		r.deliver(t, helloFrame(attackerMAC, key.ID))
	}
	r.barrier(t)
	st1 := r.tlink.Stats()
	answered := one - (st1.Rejected["rate_limited"] - st0.Rejected["rate_limited"])
	if allowed := uint64(seal.DefaultHandshakeBurst + seal.DefaultHandshakeRate*time.Since(start).Seconds()); answered > allowed+5 {
		t.Errorf("%d of %d hellos from one station answered; its limit allows about %d", answered, one, allowed)
	}

	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	st0 = r.tlink.Stats()
	n := 20000
	if testing.Short() {
		n = 5000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	start = time.Now()
	for i := range n {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], rng.Uint64())
		src := aoe.MAC(b[:6])
		src[0] = src[0]&^1 | 2 // a station, locally administered
		keyID := key.ID        // read off the wire: each hello costs a challenge
		if i%4 == 0 {
			keyID = rng.Uint32()
		}
		r.deliver(t, helloFrame(src, keyID))
		if i%500 == 499 {
			r.barrier(t)
		}
	}
	r.barrier(t)
	elapsed := time.Since(start)
	during := r.tlink.Stats().FramesOpened - st0.FramesOpened
	io.wait(t, 2)
	io.stopAndCheck(t, stop)
	if during == 0 {
		t.Error("no sealed frame got through during the flood")
	}

	runtime.GC()
	runtime.ReadMemStats(&ms1)
	st := r.tlink.Stats()
	limited := st.Rejected["rate_limited"] - st0.Rejected["rate_limited"]
	// What the global bucket lets through: its burst and its rate.
	answered = uint64(n) - limited
	if allowed := uint64(seal.DefaultGlobalHandshakeRate * (1 + elapsed.Seconds())); answered > allowed+100 {
		t.Errorf("%d of %d hellos answered in %v; the limit allows about %d", answered, n, elapsed, allowed)
	}
	if limited == 0 {
		t.Error("no hello rate-limited")
	}
	if st.Sessions != 1 || st.Handshakes != st0.Handshakes || len(st.Peers) != len(st0.Peers) {
		t.Errorf("target state grew: %d sessions, %d handshakes, %d peers (were %d, %d, %d)",
			st.Sessions, st.Handshakes, len(st.Peers), st0.Sessions, st0.Handshakes, len(st0.Peers))
	}
	if grew := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc); grew > 4<<20 {
		t.Errorf("heap grew by %d bytes during the flood", grew)
	}
	t.Logf("%d hellos in %v: %d rate-limited, %d sealed frames opened meanwhile; heap %d -> %d bytes",
		n, elapsed, limited, during, ms0.HeapAlloc, ms1.HeapAlloc)
}

// randomAttack makes a frame for the rig's segment: plain requests that
// change a device, sealed and handshake frames made up or altered from
// captured ones, to the device or to broadcast, from the attacker, from
// the initiator's address or from anywhere.
func randomAttack(rng *rand.Rand, captured [][]byte, keyID, session uint32) []byte {
	pick := func(bs ...[]byte) []byte { return bs[rng.IntN(len(bs))] }
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	if len(captured) > 0 && rng.IntN(8) == 0 {
		f := bytes.Clone(captured[rng.IntN(len(captured))])
		for range rng.IntN(3) { // replayed as it was, or altered
			f[rng.IntN(len(f))] ^= byte(1 + rng.IntN(255))
		}
		return f
	}
	var src aoe.MAC
	switch rng.IntN(4) {
	case 0, 1:
		src = attackerMAC
	case 2:
		src = initiatorMAC
	default:
		copy(src[:], randBytes(6))
		src[0] = src[0]&^1 | 2
	}
	dst := targetMAC
	if rng.IntN(5) == 0 {
		dst = aoe.BroadcastMAC
	}
	shelf, slot := dev.Shelf, dev.Slot
	switch rng.IntN(8) {
	case 0:
		shelf = aoe.BroadcastMajor
	case 1:
		slot = aoe.BroadcastMinor
	case 2:
		shelf, slot = aoe.BroadcastMajor, aoe.BroadcastMinor
	case 3:
		shelf, slot = uint16(rng.Uint32()), uint8(rng.Uint32())
	}
	verFlags := byte(aoe.Version << 4)
	if rng.IntN(10) == 0 {
		verFlags = byte(rng.Uint32())
	}
	var cmd aoe.Command
	var arg []byte
	switch rng.IntN(10) {
	case 0, 1:
		cmd = aoe.CommandATA
		a := aoe.ATA{Flags: aoe.ATAFlags(pick([]byte{byte(aoe.ATAFlagExtended | aoe.ATAFlagWrite), byte(aoe.ATAFlagWrite), byte(rng.Uint32())})[0]),
			SectorCount: uint8(1 + rng.IntN(2)), CmdStatus: pick([]byte{aoe.ATAWriteSectorsExt, aoe.ATAWriteSectors, aoe.ATAWriteFUAExt, byte(rng.Uint32())})[0],
			LBA: rng.Uint64N(2048)}
		a.Data = randBytes(a.DataLen())
		arg, _ = a.MarshalBinary()
	case 2:
		cmd = aoe.CommandQueryConfig
		c := aoe.Config{Command: aoe.ConfigCommand(rng.IntN(16)), String: []byte("pwned")}
		arg, _ = c.MarshalBinary()
	case 3:
		cmd = aoe.CommandMACMask
		m := aoe.MACMask{Command: aoe.MACMaskCommand(rng.IntN(3)), Directives: []aoe.Directive{
			{Command: aoe.DirectiveAdd, MAC: attackerMAC}, {Command: aoe.DirectiveAdd, MAC: src}, {Command: aoe.DirectiveDelete, MAC: initiatorMAC}}}
		arg, _ = m.MarshalBinary()
	case 4:
		cmd = aoe.CommandReserveRelease
		rr := aoe.ReserveRelease{Command: aoe.ReserveCommand(rng.IntN(4)), MACs: []aoe.MAC{attackerMAC, src}}
		arg, _ = rr.MarshalBinary()
	case 5, 6:
		cmd = seal.CommandSealed
		h := seal.Header{Version: seal.Version, Command: aoe.Command(rng.IntN(4)), Session: session, Seq: rng.Uint64(), Ack: rng.Uint64()}
		if rng.IntN(3) == 0 {
			h.Session = rng.Uint32()
		}
		arg = make([]byte, seal.HeaderLen)
		h.MarshalTo(arg)
		if rng.IntN(10) == 0 {
			arg[rng.IntN(4)] = byte(rng.Uint32()) // version, command, suite, reserved
		}
		arg = append(arg, randBytes(rng.IntN(1100))...)
	case 7, 8:
		cmd = seal.CommandHandshake
		m := seal.Message{Type: seal.MessageType(rng.IntN(7)), Reason: seal.RefuseReason(rng.IntN(4)), KeyID: keyID,
			Session: session, Time: rng.Uint64()}
		if rng.IntN(3) == 0 {
			m.KeyID = rng.Uint32()
		}
		copy(m.InitiatorNonce[:], randBytes(seal.NonceLen))
		copy(m.TargetNonce[:], randBytes(seal.NonceLen))
		copy(m.Cookie[:], randBytes(seal.CookieLen))
		copy(m.Proof[:], randBytes(seal.ProofLen))
		arg = make([]byte, 128)
		if _, err := m.MarshalTo(arg); err != nil {
			arg = randBytes(rng.IntN(128))
		}
	default:
		cmd = aoe.Command(rng.Uint32())
		arg = randBytes(rng.IntN(1200))
	}
	f := make([]byte, max(aoe.FrameHeaderLen+len(arg), aoe.MinFrameLen))
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:14], aoe.EtherType)
	f[14] = verFlags
	binary.BigEndian.PutUint16(f[16:18], shelf)
	f[18] = slot
	f[19] = uint8(cmd)
	binary.BigEndian.PutUint32(f[20:24], rng.Uint32())
	copy(f[aoe.FrameHeaderLen:], arg)
	return f
}

// TestRandomFrameFlood sends thousands of random and altered frames while
// sealed I/O runs: none changes the config string, mask, reservation or a
// byte of the disk besides what the initiator wrote.
func TestRandomFrameFlood(t *testing.T) {
	key := newKey(t)
	r := newSealedRig(t, []seal.Key{key}, key, seal.ModeRequired, seal.Limits{})
	d := r.discover(t)
	ctx := context.Background()
	if _, err := r.client.Do(ctx, d.MAC, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: aoe.CommandQueryConfig},
		marshal(t, &aoe.Config{Command: aoe.ConfigSet, String: []byte("legit-config")})); err != nil {
		t.Fatal(err)
	}
	state := readState(t, r.client, d.MAC)
	const region = 128 << 10
	if err := r.client.WriteAt(ctx, d, aoetest.RandomBytes(region), 0, 8); err != nil {
		t.Fatal(err)
	}
	var captured [][]byte
	for _, f := range r.rec.all() {
		if aoe.Command(f[19]) == seal.CommandSealed || aoe.Command(f[19]) == seal.CommandHandshake {
			captured = append(captured, f)
		}
	}
	captured = append(captured, r.irec.handshakes(seal.MessageChallenge)...)
	captured = append(captured, r.irec.handshakes(seal.MessageAccept)...)
	session := r.targetSession(t, initiatorMAC)
	c0 := r.counts()

	stop := make(chan struct{})
	io := startIO(r.client, d, 0, region, stop)
	n := 6000
	if testing.Short() {
		n = 1500
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range n {
		// To the target, to broadcast, or (altered captures) to the
		// initiator.
		if err := r.attacker.WriteFrame(randomAttack(rng, captured, key.ID, session)); err != nil {
			t.Fatal(err)
		}
		if i%256 == 255 {
			r.barrier(t)
		}
	}
	r.barrier(t)
	io.wait(t, 2)
	io.stopAndCheck(t, stop)

	if st := readState(t, r.client, d.MAC); !st.equal(state) {
		t.Errorf("state after the flood: %+v, want %+v", st, state)
	}
	got := r.disk.Bytes()
	if !bytes.Equal(got[:region], io.last) {
		t.Error("the initiator's data was changed")
	}
	if i := slices.IndexFunc(got[region:], func(b byte) bool { return b != 0 }); i >= 0 {
		t.Errorf("byte %d of the disk, outside what the initiator wrote, was written", region+i)
	}
	c1 := r.counts()
	for _, k := range []string{"seal.unsealed", "seal.no_session", "seal.malformed", "seal.replay", "seal.bad_tag", "seal.handshake_failed"} {
		if c1[k] == c0[k] {
			t.Errorf("no %s refusal during the flood: %v", k, c1)
		}
	}
	delta := maps.Collect(func(yield func(string, uint64) bool) {
		for k, v := range c1 {
			if v != c0[k] && !yield(k, v-c0[k]) {
				return
			}
		}
	})
	t.Logf("%d frames: %v", n, delta)
}

var _ aoe.Link = forger{}
