package seal_test

// Fuzz targets of the wire format and of both sealing layers. The layers
// are driven by hand over pipeLinks, so that one input is one frame read
// and its effects are known when the read returns: no goroutine, no hub.
//
//	go test -run '^$' -fuzz '^FuzzTargetInbound$' -fuzztime 30s ./crypto/seal/

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/crypto/seal"
)

func FuzzHeader(f *testing.F) {
	f.Add(make([]byte, seal.HeaderLen), uint8(0), uint32(0), uint64(0), uint64(0))
	valid := make([]byte, seal.HeaderLen)
	h := seal.Header{Version: seal.Version, Command: aoe.CommandATA, Session: 0xdeadbeef, Seq: 1 << 63, Ack: 42}
	h.MarshalTo(valid)
	f.Add(valid, uint8(aoe.CommandQueryConfig), uint32(1), uint64(2), uint64(3))
	f.Add(append(bytes.Clone(valid), 1, 2, 3), uint8(0xf0), ^uint32(0), ^uint64(0), ^uint64(0))
	f.Add(valid[:seal.HeaderLen-1], uint8(0), uint32(0), uint64(0), uint64(0))
	for _, fr := range capturedFrames(f) {
		if len(fr) > aoe.FrameHeaderLen {
			f.Add(fr[aoe.FrameHeaderLen:], fr[19], uint32(len(fr)), uint64(0), uint64(0))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, cmd uint8, session uint32, seq, ack uint64) {
		// Bytes to header and back: the same bytes.
		var h seal.Header
		if err := h.UnmarshalBinary(data); err == nil {
			if len(data) < seal.HeaderLen || h.Version != seal.Version {
				t.Fatalf("decoded %d bytes, version %d", len(data), h.Version)
			}
			out := make([]byte, seal.HeaderLen)
			if n, err := h.MarshalTo(out); err != nil || n != seal.HeaderLen {
				t.Fatalf("MarshalTo: %d, %v", n, err)
			}
			if !bytes.Equal(out, data[:seal.HeaderLen]) {
				t.Fatalf("round trip:\n in % x\nout % x", data[:seal.HeaderLen], out)
			}
			var h2 seal.Header
			if err := h2.UnmarshalBinary(out); err != nil || h2 != h {
				t.Fatalf("decoded again: %+v, %v; want %+v", h2, err, h)
			}
		} else if len(data) >= seal.HeaderLen && data[0] == seal.Version && data[2] == 0 && data[3] == 0 {
			t.Fatalf("a version 1 header with reserved bytes clear refused: %v", err)
		}
		// Header to bytes and back: the same header.
		h = seal.Header{Version: seal.Version, Command: aoe.Command(cmd), Session: session, Seq: seq, Ack: ack}
		out := make([]byte, seal.HeaderLen)
		if _, err := h.MarshalTo(out); err != nil {
			t.Fatal(err)
		}
		var h2 seal.Header
		if err := h2.UnmarshalBinary(out); err != nil || h2 != h {
			t.Fatalf("round trip of %+v: %+v, %v", h, h2, err)
		}
		if _, err := h.MarshalTo(out[:seal.HeaderLen-1]); err == nil {
			t.Fatal("MarshalTo a short buffer succeeded")
		}
	})
}

func FuzzMessage(f *testing.F) {
	var nonce [seal.NonceLen]byte
	copy(nonce[:], "0123456789abcdef")
	for _, m := range []seal.Message{
		{Type: seal.MessageHello, KeyID: 7, InitiatorNonce: nonce},
		{Type: seal.MessageChallenge, KeyID: 7, InitiatorNonce: nonce, TargetNonce: nonce, Time: 99},
		{Type: seal.MessageFinish, KeyID: 7, InitiatorNonce: nonce, TargetNonce: nonce, Time: 99},
		{Type: seal.MessageAccept, KeyID: 7, Session: 8, InitiatorNonce: nonce, TargetNonce: nonce},
		{Type: seal.MessageRefuse, Reason: seal.RefuseUnknownKey, KeyID: 7},
		{Type: seal.MessageRefuse, Reason: seal.RefuseNoSession, Session: 8},
	} {
		b := make([]byte, m.Len())
		if _, err := m.MarshalTo(b); err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	for _, fr := range capturedFrames(f) {
		if len(fr) > aoe.FrameHeaderLen && aoe.Command(fr[19]) == seal.CommandHandshake {
			f.Add(fr[aoe.FrameHeaderLen:])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m seal.Message
		if m.UnmarshalBinary(data) != nil {
			return
		}
		n := m.Len()
		if len(data) < n {
			t.Fatalf("%s decoded from %d bytes, its length is %d", m.Type, len(data), n)
		}
		out := make([]byte, n)
		if k, err := m.MarshalTo(out); err != nil || k != n {
			t.Fatalf("MarshalTo %s: %d, %v", m.Type, k, err)
		}
		covered := n
		if m.Type == seal.MessageAccept {
			covered -= seal.TagLen // the tag is the caller's
		}
		if !bytes.Equal(out[:covered], data[:covered]) {
			t.Fatalf("%s round trip:\n in % x\nout % x", m.Type, data[:covered], out[:covered])
		}
		var m2 seal.Message
		if err := m2.UnmarshalBinary(out); err != nil || m2 != m {
			t.Fatalf("decoded again: %+v, %v; want %+v", m2, err, m)
		}
		if _, err := m.MarshalTo(out[:n-1]); err == nil {
			t.Fatalf("MarshalTo %s into %d bytes succeeded", m.Type, n-1)
		}
	})
}

// pipeLink is a Link driven by hand: ReadFrame returns the frames queued
// in in, in order, and then errDrained; WriteFrame keeps a copy of each
// frame in out.
type pipeLink struct {
	mac     aoe.MAC
	in, out [][]byte
}

var errDrained = errors.New("pipeLink: no frame queued")

func (l *pipeLink) ReadFrame(b []byte) (int, error) {
	if len(l.in) == 0 {
		return 0, errDrained
	}
	f := l.in[0]
	l.in = l.in[1:]
	return copy(b, f), nil
}

func (l *pipeLink) WriteFrame(b []byte) error {
	l.out = append(l.out, bytes.Clone(b))
	return nil
}

func (l *pipeLink) MTU() int              { return 1500 }
func (l *pipeLink) HardwareAddr() aoe.MAC { return l.mac }
func (l *pipeLink) Close() error          { return nil }

// take returns the frames written since the last take.
func (l *pipeLink) take() [][]byte {
	out := l.out
	l.out = nil
	return out
}

// batchPipeLink is a pipeLink that moves frames in batches too.
type batchPipeLink struct{ *pipeLink }

func (l batchPipeLink) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	n := 0
	for ; n < len(bufs) && len(l.in) > 0; n++ {
		lens[n] = copy(bufs[n], l.in[0])
		l.in = l.in[1:]
	}
	if n == 0 {
		return 0, errDrained
	}
	return n, nil
}

func (l batchPipeLink) WriteFrames(frames [][]byte) (int, error) {
	for _, f := range frames {
		l.WriteFrame(f)
	}
	return len(frames), nil
}

// holdAt is the handshake step newSealedPair stops before.
type holdAt int

const (
	holdNone      holdAt = iota // a session is up
	holdChallenge               // the initiator has not read the challenge
	holdFinish                  // the target has not read the finish
	holdAccept                  // the initiator has not read the accept
)

// sealedPair is a TargetLink and an InitiatorLink facing each other over
// pipeLinks, with the frames of their handshake and of one sealed request
// and its response.
type sealedPair struct {
	tl                               *seal.TargetLink
	il                               *seal.InitiatorLink
	tp, ip                           *pipeLink
	hello, challenge, finish, accept []byte
	// request went to the target, response is its answer, not yet read
	// by the initiator; fresh is a request the target has not read.
	request, response, fresh []byte
	plainQueryReply          []byte
}

// fuzzKey is the pair's key: fixed, so that inputs mean the same in every
// run.
var fuzzKey = func() seal.Key {
	k, err := seal.NewKey(bytes.Repeat([]byte{0x42}, 32), "fuzz")
	if err != nil {
		panic(err)
	}
	return k
}()

// readUp reads l until its pipe is drained and returns the frames that
// went up.
func readUp(l aoe.Link) [][]byte {
	var up [][]byte
	buf := make([]byte, 16<<10)
	for {
		n, err := l.ReadFrame(buf)
		if err != nil {
			return up
		}
		up = append(up, bytes.Clone(buf[:n]))
	}
}

// onlyFrame returns the single frame of fs.
func onlyFrame(tb testing.TB, what string, fs [][]byte) []byte {
	tb.Helper()
	if len(fs) != 1 {
		tb.Fatalf("%s: %d frames", what, len(fs))
	}
	return fs[0]
}

// plainWrite is an ATA write of two sectors to the pair's device.
func plainWrite() []byte {
	f := aoe.Frame{Dst: targetMAC, Src: initiatorMAC, Header: aoe.Header{Version: aoe.Version, Major: dev.Shelf, Minor: dev.Slot,
		Command: aoe.CommandATA, Tag: 0x80000001}}
	a := aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 5,
		Data: bytes.Repeat([]byte{0xAB}, 2*aoe.SectorSize)}
	f.Arg, _ = a.MarshalBinary()
	b, _ := f.MarshalBinary()
	return b
}

// answerOf turns a request read from the target's layer into the target's
// answer: back to its sender, the R flag, and as much of it as keep says.
func answerOf(req []byte, keep int) []byte {
	r := bytes.Clone(req[:min(len(req), keep)])
	swapMACs(r)
	r[14] = aoe.Version<<4 | uint8(aoe.FlagResponse)
	return r
}

func newSealedPair(tb testing.TB, batch bool, hold holdAt) *sealedPair {
	tb.Helper()
	p := &sealedPair{tp: &pipeLink{mac: targetMAC}, ip: &pipeLink{mac: initiatorMAC}}
	var tl, il aoe.Link = p.tp, p.ip
	if batch {
		tl, il = batchPipeLink{p.tp}, batchPipeLink{p.ip}
	}
	var err error
	p.tl, err = seal.NewTargetLink(tl, seal.TargetConfig{Exports: []seal.Export{{Device: dev, Keys: []seal.Key{fuzzKey}}}, Logger: discardLog})
	if err != nil {
		tb.Fatal(err)
	}
	p.il, err = seal.NewInitiatorLink(il, seal.InitiatorConfig{DefaultKey: fuzzKey, Logger: discardLog})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.il.Close() })

	// The target announces itself, plain: the initiator starts a handshake.
	announce := make([]byte, aoe.MinFrameLen)
	af := aoe.Frame{Dst: aoe.BroadcastMAC, Src: targetMAC, Header: aoe.Header{Version: aoe.Version, Flags: aoe.FlagResponse,
		Major: dev.Shelf, Minor: dev.Slot, Command: aoe.CommandQueryConfig}}
	af.MarshalHeaderTo(announce)
	cfg := aoe.Config{BufferCount: 16, SectorCount: 2, Version: aoe.Version}
	cfg.MarshalTo(announce[aoe.FrameHeaderLen:])
	p.plainQueryReply = bytes.Clone(announce)
	copy(p.plainQueryReply[0:6], initiatorMAC[:])
	p.ip.in = [][]byte{announce}
	if up := readUp(p.il); len(up) != 0 {
		tb.Fatalf("the initiator passed up %d frames of a target that proved nothing", len(up))
	}
	p.hello = onlyFrame(tb, "hello", p.ip.take())
	p.tp.in = [][]byte{p.hello}
	readUp(p.tl)
	p.challenge = onlyFrame(tb, "challenge", p.tp.take())
	if hold == holdChallenge {
		return p
	}
	p.ip.in = [][]byte{p.challenge}
	readUp(p.il)
	p.finish = onlyFrame(tb, "finish", p.ip.take())
	if hold == holdFinish {
		return p
	}
	p.tp.in = [][]byte{p.finish}
	readUp(p.tl)
	p.accept = onlyFrame(tb, "accept", p.tp.take())
	if hold == holdAccept {
		return p
	}
	p.ip.in = [][]byte{p.accept}
	readUp(p.il)
	p.ip.take() // its authenticated query
	if err := p.il.WriteFrame(plainWrite()); err != nil {
		tb.Fatal(err)
	}
	p.request = onlyFrame(tb, "request", p.ip.take())
	p.tp.in = [][]byte{p.request}
	opened := onlyFrame(tb, "opened request", readUp(p.tl))
	if err := p.tl.WriteFrame(answerOf(opened, aoe.FrameHeaderLen+aoe.ATAHeaderLen)); err != nil {
		tb.Fatal(err)
	}
	p.response = onlyFrame(tb, "response", p.tp.take())
	if err := p.il.WriteFrame(plainWrite()); err != nil {
		tb.Fatal(err)
	}
	p.fresh = onlyFrame(tb, "fresh request", p.ip.take())
	return p
}

// capturedFrames are the frames of a handshake and of a sealed request and
// response, for seed corpora.
func capturedFrames(tb testing.TB) [][]byte {
	p := newSealedPair(tb, false, holdNone)
	return [][]byte{p.hello, p.challenge, p.finish, p.accept, p.request, p.response, p.fresh, p.plainQueryReply}
}

// alter returns genuine with data xored into it, as long as data: zeros of
// genuine's length give genuine itself, and the fuzzer's changes to them
// are changes to genuine.
func alter(genuine, data []byte) []byte {
	out := bytes.Clone(data)
	for i := range min(len(out), len(genuine)) {
		out[i] ^= genuine[i]
	}
	return out
}

// Fuzz input modes: how data becomes the frame read (the mode's low two
// bits), and whether it is read in a batch (modeBatch). Other bits are
// ignored.
const (
	modeRaw     = 0 // data is the frame
	modeSealed  = 1 // data alters a sealed request (target) or response (initiator) not yet read
	modeMessage = 2 // data alters the finish (target) or accept (initiator), held back
	modeEarly   = 3 // data alters the hello (target) or challenge (initiator), held back
	modeBatch   = 0x80
)

func addSeeds(f *testing.F, alterable func(p *sealedPair) [4][]byte) {
	p := newSealedPair(f, false, holdNone)
	genuine := alterable(p)
	for _, fr := range [][]byte{p.hello, p.challenge, p.finish, p.accept, p.request, p.response, p.fresh, p.plainQueryReply, nil, make([]byte, 24)} {
		f.Add(uint8(modeRaw), fr)
		f.Add(uint8(modeRaw|modeBatch), fr)
	}
	for mode := 1; mode < 4; mode++ {
		n := len(genuine[mode])
		zero := make([]byte, n)
		f.Add(uint8(mode), zero)
		f.Add(uint8(mode|modeBatch), zero)
		f.Add(uint8(mode), make([]byte, n+1))
		f.Add(uint8(mode), make([]byte, n-1))
		// A bit of each byte of a handshake message, of each field of a
		// sealed frame.
		positions := []int{0, 6, 12, 14, 15, 16, 18, 19, 20, 24, 25, 26, 27, 28, 32, 39, 40, 47, 48, n - seal.TagLen, n - 1}
		if mode != modeSealed {
			positions = positions[:0]
			for i := range n {
				positions = append(positions, i)
			}
		}
		for _, i := range positions {
			flip := make([]byte, n)
			flip[i] = 1
			f.Add(uint8(mode), flip)
		}
	}
}

// fuzzFrame sets up the pair for a fuzz input: mode picks the frame to
// start from (a raw one, or one of frames(p), held back by hold for
// modeMessage) and whether the link reads in batches; the returned frame is
// data itself (raw) or the genuine frame altered by data.
func fuzzFrame(t *testing.T, mode uint8, data []byte, holdMessage holdAt, frames func(*sealedPair) [4][]byte) (p *sealedPair, genuine, frame []byte) {
	h := holdNone
	switch mode & 3 {
	case modeMessage:
		h = holdMessage
	case modeEarly:
		h = holdChallenge
	}
	p = newSealedPair(t, mode&modeBatch != 0, h)
	genuine = frames(p)[mode&3]
	frame = data
	if mode&3 != modeRaw {
		frame = alter(genuine, data)
	}
	return p, genuine, frame
}

// FuzzTargetInbound reads arbitrary frames through a TargetLink holding a
// session: none makes it panic, and none is opened unless it is the
// initiator's frame to the byte; a finish that makes a session is the
// initiator's, in every field the handshake binds.
func FuzzTargetInbound(f *testing.F) {
	frames := func(p *sealedPair) [4][]byte { return [4][]byte{nil, p.fresh, p.finish, p.hello} }
	addSeeds(f, frames)
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		p, genuine, frame := fuzzFrame(t, mode, data, holdFinish, frames)
		st0 := p.tl.Stats()
		var up [][]byte
		if mode&modeBatch != 0 {
			// A batch: the frame, then a plain query that goes up.
			query := bytes.Clone(p.plainQueryReply)
			swapMACs(query)
			query[14] = aoe.Version << 4
			p.tp.in = [][]byte{frame, query}
			bufs, lens := [][]byte{make([]byte, 16<<10), make([]byte, 16<<10)}, make([]int, 2)
			for {
				n, err := p.tl.ReadFrames(bufs, lens)
				for i := range n {
					up = append(up, bytes.Clone(bufs[i][:lens[i]]))
				}
				if err != nil || n == 0 {
					break
				}
			}
		} else {
			p.tp.in = [][]byte{frame}
			up = readUp(p.tl)
		}
		st := p.tl.Stats()
		if st.FramesOpened != st0.FramesOpened && !bytes.Equal(frame, genuine) {
			t.Fatalf("the target opened a frame that is not the initiator's:\n% x\ngenuine:\n% x", frame, genuine)
		}
		if st.Handshakes != st0.Handshakes {
			checkFinish(t, frame, p.finish)
		}
		// Answer what went up, as the target would: the layer seals or
		// drops the answers.
		for _, u := range up {
			if len(u) >= aoe.FrameHeaderLen && u[14]&uint8(aoe.FlagResponse) == 0 {
				p.tl.WriteFrame(answerOf(u, len(u)))
				p.tl.WriteFrames([][]byte{answerOf(u, aoe.FrameHeaderLen), answerOf(u, len(u))})
			}
		}
	})
}

// checkFinish fails unless frame, a finish that made a session, is the
// genuine one in what the handshake binds: stations, device and message.
func checkFinish(t *testing.T, frame, genuine []byte) {
	t.Helper()
	var m, g seal.Message
	if len(frame) < aoe.FrameHeaderLen || m.UnmarshalBinary(frame[aoe.FrameHeaderLen:]) != nil || g.UnmarshalBinary(genuine[aoe.FrameHeaderLen:]) != nil {
		t.Fatalf("a session from a frame that is no finish: % x", frame)
	}
	m.Reason, g.Reason = 0, 0   // not bound, not used in a finish
	m.Session, g.Session = 0, 0 // likewise
	if m != g || !bytes.Equal(frame[0:12], genuine[0:12]) || !bytes.Equal(frame[16:20], genuine[16:20]) {
		t.Fatalf("a session from an altered finish:\n% x\ngenuine:\n% x", frame, genuine)
	}
}

// FuzzInitiatorInbound reads arbitrary frames through an InitiatorLink
// holding a session (or in the middle of a handshake): none makes it
// panic, no response is opened and no session made unless the frame is
// the target's to the byte (what the tag covers).
func FuzzInitiatorInbound(f *testing.F) {
	frames := func(p *sealedPair) [4][]byte { return [4][]byte{nil, p.response, p.accept, p.challenge} }
	addSeeds(f, frames)
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		p, genuine, frame := fuzzFrame(t, mode, data, holdAccept, frames)
		st0 := p.il.Stats()
		p.ip.in = [][]byte{frame}
		if mode&modeBatch != 0 {
			bufs, lens := [][]byte{make([]byte, 16<<10)}, make([]int, 1)
			for {
				if _, err := p.il.ReadFrames(bufs, lens); err != nil {
					break
				}
			}
		} else {
			readUp(p.il)
		}
		st := p.il.Stats()
		if st.FramesOpened != st0.FramesOpened && !bytes.Equal(frame, genuine) {
			t.Fatalf("the initiator opened a response that is not the target's:\n% x\ngenuine:\n% x", frame, genuine)
		}
		if st.Handshakes != st0.Handshakes {
			// An accept verifies by its tag, which covers all of it.
			const acceptEnd = aoe.FrameHeaderLen + 12 + 2*seal.NonceLen + seal.TagLen
			if len(frame) < acceptEnd || !bytes.Equal(frame[:acceptEnd], genuine[:acceptEnd]) {
				t.Fatalf("a session from an altered accept:\n% x\ngenuine:\n% x", frame, genuine)
			}
		}
		for _, out := range p.ip.take() {
			if len(out) < aoe.FrameHeaderLen+2 || aoe.Command(out[19]) != seal.CommandHandshake || seal.MessageType(out[25]) != seal.MessageFinish {
				continue
			}
			// A finish answers a challenge whose proof verified: the
			// target's, in what the proof binds.
			var m, g seal.Message
			if len(frame) < aoe.FrameHeaderLen || m.UnmarshalBinary(frame[aoe.FrameHeaderLen:]) != nil || g.UnmarshalBinary(p.challenge[aoe.FrameHeaderLen:]) != nil {
				t.Fatalf("a finish for a frame that is no challenge: % x", frame)
			}
			if m.Proof != g.Proof || m.InitiatorNonce != g.InitiatorNonce || m.TargetNonce != g.TargetNonce || m.KeyID != g.KeyID ||
				!bytes.Equal(frame[6:12], p.challenge[6:12]) || binary.BigEndian.Uint16(frame[16:18]) != dev.Shelf || frame[18] != dev.Slot {
				t.Fatalf("a finish for an altered challenge:\n% x\ngenuine:\n% x", frame, p.challenge)
			}
		}
	})
}

// TestSealedPairGenuineFrames checks the fuzz targets' harness: the
// genuine frames, unaltered, do what the targets' checks guard (a frame
// opened, a session made, a finish sent), so those checks can fail.
func TestSealedPairGenuineFrames(t *testing.T) {
	for _, batch := range []bool{false, true} {
		p := newSealedPair(t, batch, holdNone)
		opened := p.tl.Stats().FramesOpened
		p.tp.in = [][]byte{p.fresh}
		if up := readUp(p.tl); len(up) != 1 || p.tl.Stats().FramesOpened != opened+1 {
			t.Errorf("batch %v: the fresh request: %d frames up, %d opened", batch, len(up), p.tl.Stats().FramesOpened-opened)
		}
		p.ip.in = [][]byte{p.response}
		if up := readUp(p.il); len(up) != 1 || p.il.Stats().FramesOpened != 1 {
			t.Errorf("batch %v: the response: %d frames up, %d opened", batch, len(up), p.il.Stats().FramesOpened)
		}

		p = newSealedPair(t, batch, holdFinish)
		p.tp.in = [][]byte{p.finish}
		readUp(p.tl)
		if st := p.tl.Stats(); st.Handshakes != 1 {
			t.Errorf("batch %v: the finish made %d sessions", batch, st.Handshakes)
		}

		p = newSealedPair(t, batch, holdAccept)
		p.ip.in = [][]byte{p.accept}
		readUp(p.il)
		if st := p.il.Stats(); st.Handshakes != 1 {
			t.Errorf("batch %v: the accept made %d sessions", batch, st.Handshakes)
		}

		p = newSealedPair(t, batch, holdChallenge)
		p.ip.in = [][]byte{p.challenge}
		readUp(p.il)
		if out := p.ip.take(); len(out) != 1 || seal.MessageType(out[0][25]) != seal.MessageFinish {
			t.Errorf("batch %v: the challenge was answered with %d frames", batch, len(out))
		}
	}
}
