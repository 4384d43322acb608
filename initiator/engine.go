package initiator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Tags: aoe.TagUserland (bit 31) marks ours, so that the Linux driver
// ignores the answers; bits 16-30 count the transmissions of a frame-table
// entry, and bits 0-15 index the table. A tag thus names one transmission
// of one frame.
const (
	tagGenMax = 1<<15 - 1
	maxFrames = 1 << 16
	// maxCopies is how many transmissions of a frame are remembered, so
	// that the answer to an earlier one still completes it.
	maxCopies = 4
)

func makeTag(gen, index uint16) uint32 { return aoe.TagUserland | uint32(gen)<<16 | uint32(index) }

// opcode is what a request does.
type opcode uint8

const (
	opRead opcode = iota
	opWrite
	opFlush
	opIdentify
)

var opNames = [...]string{opRead: "read", opWrite: "write", opFlush: "flush", opIdentify: "identify"}

func (o opcode) String() string { return opNames[o] }

// request is one ReadAt, WriteAt, Flush or IDENTIFY on its way: the frames
// that carry it are cut from it one at a time as targets have room.
// Requests are pooled per device; the device's mutex guards them.
type request struct {
	op  opcode
	buf []byte
	lba uint64
	fua bool
	// total is the sectors to move (for a flush: the targets to flush);
	// carved of them have been put in frames, inflight frames are out.
	total, carved, inflight int
	flushTo                 []*target
	err                     error
	queued                  bool
	// fenced is set once the request has waited for a lingering write.
	fenced bool
	// complete is set when the last frame is done; abandoned when the
	// caller stopped waiting (its context ended).
	complete, abandoned bool
	done                chan struct{}
	next                *request
	// start is when it was submitted, for the latency histogram.
	start time.Duration
}

// frameState is the life of a frame-table entry.
type frameState uint8

const (
	frameFree frameState = iota
	// frameActive frames await an answer.
	frameActive
	// frameLingering frames are writes that completed while a copy sent
	// earlier was still unanswered. They fence off their sectors: a new
	// write overlapping them waits until every copy is answered or
	// lingerUntil passes, so the old copy cannot overwrite newer data.
	frameLingering
)

// transmission is one sending of a frame.
type transmission struct {
	gen      uint16
	cmd      uint8
	answered bool
	target   *target
	sent     time.Duration
}

// frame is one ATA command in flight: an entry of the device's frame
// table, with the packet it sends.
type frame struct {
	index uint16
	gen   uint16
	state frameState
	req   *request
	op    opcode
	cmd   uint8
	flags aoe.ATAFlags
	lba   uint64
	// sectors is the data sectors carried; off is where they sit in the
	// request's buffer.
	sectors, off int
	// target is where the frame is now; bound, for a flush, is the
	// target it is meant for.
	target, bound *target
	// pkt holds the frame as sent; its data part is filled once, when
	// the frame is cut.
	pkt    []byte
	pktLen int
	// unsent says the packet waits in the engine's send queue (see
	// engine.batching); releasing the frame withdraws it.
	unsent bool
	tx     [maxCopies]transmission
	// sends counts transmissions; unanswered those not yet answered
	// (forgotten ones included, so their count never reaches zero).
	sends, unanswered                  int
	firstSent, onTargetSince, lastSent time.Duration
	rto, lingerUntil                   time.Duration
}

// expiredCopy is a transmission of a write that was still unanswered when
// the fence guarding its sectors expired; an answer to it afterwards means
// the target executed it late, maybe over newer data.
type expiredCopy struct {
	tag     uint32
	target  *target
	lba     uint64
	sectors int
	sent    time.Duration
}

// paths is the engine's view of a device's targets, which the failover
// policy implements: where a frame goes, how long to wait for its answer,
// and what the engine learns of each target on the way. Its methods run
// under the device's mutex.
type paths interface {
	// pick returns the target for a new frame of the given size, other
	// than avoid, that has room for it now; nil when none has.
	pick(sectors int, avoid *target) *target
	// flushTarget returns where a FLUSH meant for t goes now; nil to
	// wait for room.
	flushTarget(t *target) *target
	// rto returns the retransmission timeout for a new frame to t.
	rto(t *target) time.Duration
	// heard tells that t answered; how says with what.
	heard(t *target, now time.Duration, how string)
	// waited tells that a frame has waited on t, which is not scorned,
	// for wait across its retransmissions; t may be scorned for it, and
	// its frames moved.
	waited(t *target, wait, now time.Duration)
	// progressed tells that a read or write completed well on t.
	progressed(t *target, now time.Duration)
}

// engine carries a device's I/O: it cuts requests into frames, gives each
// transmission its own tag, sends frames where its paths say, retransmits
// them, matches answers to transmissions and completes requests, and
// fences the sectors of writes whose stray copies may still land. The
// device's mutex guards it: its methods run with it held.
type engine struct {
	addr
	ini    *Initiator
	paths  paths
	events *eventLog

	// lba48 and flushCmd say how commands are encoded, as IDENTIFY tells:
	// EXT (48-bit) reads and writes, and FLUSH CACHE EXT or FLUSH CACHE.
	lba48    bool
	flushCmd uint8
	// frameSectors is the most data sectors a frame to any target
	// carries: packets are sized for it, to be reused rather than
	// regrown.
	frameSectors int

	// frames is the table that a tag's low 16 bits index; free lists the
	// unused entries. lingering counts completed writes whose every copy
	// is not yet accounted for (see frameLingering).
	frames    []*frame
	free      []uint16
	lingering int
	// head and tail are the queue of requests waiting to send frames;
	// spare pools finished requests.
	head, tail *request
	spare      []*request

	// batching defers sends: while it is set, send queues each encoded
	// frame in sendq, and endBatch hands the queue to the links with one
	// WriteFrames call each, rather than one system call per frame.
	// pkts is endBatch's scratch.
	batching bool
	sendq    []queuedSend
	pkts     [][]byte

	counters ioCounters
	// expired remembers the latest write copies whose fence expired
	// unanswered, to recognise a late answer (see lateAnswer).
	expired     [128]expiredCopy
	expiredNext int
}

// queuedSend is a transmission waiting in the engine's send queue: the
// gen tells it from a later one of the same frame-table entry.
type queuedSend struct {
	f   *frame
	gen uint16
}

// ioCounters are a device's figures since it was found.
type ioCounters struct {
	reads, writes, flushes  uint64
	bytesRead, bytesWritten uint64
	ioErrors                uint64
	// stale answers match no transmission awaited; duplicates repeat an
	// answer already taken; wrongSource ones carry a right tag from a
	// MAC or link the frame was not sent to.
	stale, duplicates, wrongSource uint64
	// fenced counts writes that waited for an overlapping write's
	// retransmitted copies; lateWrites counts write copies answered after
	// their fence expired.
	fenced, lateWrites uint64
	// latency holds the durations of the reads, writes and flushes
	// that succeeded, from submission to completion.
	latency [numTimedOps]latencyHistogram
}

// newRequest takes a request from the pool and fills it in.
func (e *engine) newRequest(op opcode, buf []byte, lba uint64, sectors int, fua bool) *request {
	var r *request
	if n := len(e.spare); n > 0 {
		r = e.spare[n-1]
		e.spare = e.spare[:n-1]
	} else {
		r = &request{done: make(chan struct{}, 1)}
	}
	r.op, r.buf, r.lba, r.total, r.fua = op, buf, lba, sectors, fua
	return r
}

// putRequest returns a finished request to the pool.
func (e *engine) putRequest(r *request) {
	clear(r.flushTo)
	*r = request{done: r.done, flushTo: r.flushTo[:0]}
	e.spare = append(e.spare, r)
}

// submit queues r and lets frames go.
func (e *engine) submit(r *request, now time.Duration) {
	r.start = now
	e.enqueue(r)
	e.pump(now)
}

// abandon stops r for a caller that no longer waits: answers still to
// come must not touch its buffer.
func (e *engine) abandon(r *request, err error) {
	r.abandoned = true
	r.buf = nil
	e.stopRequest(r, err)
}

// collect returns a completed request's outcome and the request to the
// pool.
func (e *engine) collect(r *request) error {
	err := r.err
	e.putRequest(r)
	return err
}

func (e *engine) enqueue(r *request) {
	r.queued = true
	if e.tail == nil {
		e.head = r
	} else {
		e.tail.next = r
	}
	e.tail = r
}

// dequeue takes r out of the queue, wherever it is.
func (e *engine) dequeue(r *request) {
	if !r.queued {
		return
	}
	var prev *request
	for q := e.head; q != nil; prev, q = q, q.next {
		if q != r {
			continue
		}
		if prev == nil {
			e.head = q.next
		} else {
			prev.next = q.next
		}
		if e.tail == q {
			e.tail = prev
		}
		break
	}
	r.next, r.queued = nil, false
}

// queued counts the requests waiting to send frames.
func (e *engine) queued() int {
	n := 0
	for r := e.head; r != nil; r = r.next {
		n++
	}
	return n
}

// stopRequest records err on r and cuts no more frames from it.
func (e *engine) stopRequest(r *request, err error) {
	if r.err == nil {
		r.err = err
	}
	if r.carved < r.total {
		if r.op == opFlush {
			for _, t := range r.flushTo[r.carved:] {
				t.dirty = true // not flushed after all
			}
		}
		r.carved = r.total
		e.dequeue(r)
	}
	e.maybeComplete(r)
}

// maybeComplete completes r once it has no frames left.
func (e *engine) maybeComplete(r *request) {
	if r.complete || r.inflight > 0 || r.carved < r.total {
		return
	}
	r.complete = true
	if r.err == nil {
		c := &e.counters
		switch r.op {
		case opRead:
			c.reads++
			c.bytesRead += uint64(r.total) * aoe.SectorSize
		case opWrite:
			c.writes++
			c.bytesWritten += uint64(r.total) * aoe.SectorSize
		case opFlush:
			c.flushes++
		}
		if r.op < numTimedOps {
			c.latency[r.op].observe(e.ini.now() - r.start)
		}
	} else if r.op != opIdentify {
		e.counters.ioErrors++
	}
	if r.abandoned {
		e.putRequest(r)
		return
	}
	r.done <- struct{}{}
}

// allocFrame takes a free frame-table entry whose packet holds the given
// data sectors, or returns nil when the table is full.
func (e *engine) allocFrame(sectors int) *frame {
	var f *frame
	if n := len(e.free); n > 0 {
		f = e.frames[e.free[n-1]]
		e.free = e.free[:n-1]
	} else {
		if len(e.frames) >= maxFrames {
			return nil
		}
		f = &frame{index: uint16(len(e.frames))}
		e.frames = append(e.frames, f)
	}
	if need := max(aoe.FrameHeaderLen+aoe.ATAHeaderLen+sectors*aoe.SectorSize, aoe.MinFrameLen); cap(f.pkt) < need {
		// Sized for the largest frame any target takes, so that it is
		// reused rather than regrown.
		f.pkt = make([]byte, max(need, aoe.FrameHeaderLen+aoe.ATAHeaderLen+e.frameSectors*aoe.SectorSize))
	}
	f.state = frameActive
	f.tx = [maxCopies]transmission{}
	f.sends, f.unanswered = 0, 0
	f.target, f.bound = nil, nil
	e.ini.frameActivated()
	return f
}

// releaseFrame returns a frame-table entry to the free list.
func (e *engine) releaseFrame(f *frame) {
	if f.state == frameLingering {
		e.lingering--
	}
	f.state = frameFree
	f.req = nil
	f.unsent = false
	f.tx = [maxCopies]transmission{}
	e.free = append(e.free, f.index)
	e.ini.frameReleased()
}

// releaseLingering ends every fence, once nothing more is sent.
func (e *engine) releaseLingering() {
	for _, f := range e.frames {
		if f.state == frameLingering {
			e.releaseFrame(f)
		}
	}
}

// pump cuts frames from queued requests and sends them while targets have
// room. Requests are served in order, except that one which must wait (a
// write fenced by a lingering one, a flush whose target is busy) lets
// those behind it pass: concurrent requests have no order to keep.
func (e *engine) pump(now time.Duration) {
	for r := e.head; r != nil; {
		var t *target
		if r.op == opFlush {
			if t = e.paths.flushTarget(r.flushTo[r.carved]); t == nil {
				r = r.next
				continue
			}
		} else if t = e.paths.pick(1, nil); t == nil {
			return
		}
		lba, sectors := r.lba+uint64(r.carved), 0
		switch r.op {
		case opRead, opWrite:
			sectors = min(r.total-r.carved, t.maxSectors)
		case opIdentify:
			sectors = 1
		}
		if r.op == opWrite && e.lingering > 0 && e.fenced(lba, sectors) {
			if !r.fenced {
				r.fenced = true
				e.counters.fenced++
			}
			r = r.next
			continue
		}
		f := e.cut(r, t, lba, sectors)
		if f == nil {
			return
		}
		next, done := r.next, r.carved == r.total
		if done {
			e.dequeue(r)
		}
		e.send(f, t, now, false)
		if done || !r.queued { // (send may fail the frame and stop r)
			r = next
		}
	}
}

// cut makes the next frame of r, for target t: sectors at lba, or the
// next target to flush. It returns nil when the frame table is full.
func (e *engine) cut(r *request, t *target, lba uint64, sectors int) *frame {
	f := e.allocFrame(sectors)
	if f == nil {
		return nil
	}
	f.req, f.op, f.lba, f.sectors = r, r.op, lba, sectors
	f.off = r.carved * aoe.SectorSize
	e.setCommand(f, t)
	if r.op == opFlush {
		f.bound = r.flushTo[r.carved]
		r.carved++
	} else {
		r.carved += sectors
	}
	r.inflight++
	return f
}

// fenced reports whether sectors at lba overlap a lingering write.
func (e *engine) fenced(lba uint64, sectors int) bool {
	end := lba + uint64(sectors)
	for _, f := range e.frames {
		if f.state == frameLingering && f.lba < end && lba < f.lba+uint64(f.sectors) {
			return true
		}
	}
	return false
}

// setCommand fills in a new frame's ATA command and packet data.
func (e *engine) setCommand(f *frame, t *target) {
	ext := e.lba48
	f.flags = 0
	f.pktLen = aoe.FrameHeaderLen + aoe.ATAHeaderLen
	switch f.op {
	case opRead:
		f.cmd = aoe.ATAReadSectors
		if ext {
			f.cmd = aoe.ATAReadSectorsExt
		}
	case opWrite:
		f.flags = aoe.ATAFlagWrite
		switch {
		case f.req.fua:
			f.cmd = aoe.ATAWriteFUAExt
		case ext:
			f.cmd = aoe.ATAWriteSectorsExt
		default:
			f.cmd = aoe.ATAWriteSectors
		}
		n := f.sectors * aoe.SectorSize
		copy(f.pkt[f.pktLen:f.pktLen+n], f.req.buf[f.off:f.off+n])
		f.pktLen += n
	case opFlush:
		f.cmd = e.flushCmd
		if t.flushCmd != 0 {
			f.cmd = t.flushCmd
		}
	case opIdentify:
		f.cmd = aoe.ATAIdentifyDevice
	}
	if f.cmd == aoe.ATAReadSectorsExt || f.cmd == aoe.ATAWriteSectorsExt || f.cmd == aoe.ATAWriteFUAExt {
		f.flags |= aoe.ATAFlagExtended
	}
}

// send sends a transmission of f to t, moving f there if it was
// elsewhere. A retransmission doubles the frame's timeout. In a batch the
// frame goes out at endBatch.
func (e *engine) send(f *frame, t *target, now time.Duration, retransmit bool) {
	if f.unsent {
		// Its packet is about to be encoded again: the queued copy goes
		// first, as it was.
		e.flushSends(now)
	}
	e.record(f, t, now, retransmit)
	e.encode(f, t)
	if e.batching {
		f.unsent = true
		e.sendq = append(e.sendq, queuedSend{f, f.gen})
		return
	}
	if err := t.link.WriteFrame(f.pkt[:f.pktLen]); err != nil {
		e.sendFailed(f, t, err, now)
	}
}

// beginBatch defers the sends until endBatch; a caller that holds the
// device's mutex across several sends (a received batch of answers, a
// request cut into frames) pays one system call per link for all of them.
func (e *engine) beginBatch() { e.batching = true }

// endBatch sends what the batch queued and ends it. A frame that a link
// refused as too large ends there, which frees room: pump then cuts
// frames again, as it would have had the send failed at once.
func (e *engine) endBatch(now time.Duration) {
	for len(e.sendq) > 0 {
		if e.flushSends(now) {
			e.pump(now)
		}
	}
	e.batching = false
}

// flushSends hands the queued frames to their links, in order, one
// WriteFrames call per run of frames on the same link. It reports whether
// a refusal ended a frame.
func (e *engine) flushSends(now time.Duration) (ended bool) {
	q := e.sendq
	for start := 0; start < len(q); {
		l := q[start].f.target.link
		end := start + 1
		for end < len(q) && q[end].f.target.link == l {
			end++
		}
		if e.sendRun(l, q[start:end], now) {
			ended = true
		}
		start = end
	}
	clear(q)
	e.sendq = q[:0]
	return ended
}

// sendRun sends queued frames that all go out on link l.
func (e *engine) sendRun(l *link, q []queuedSend, now time.Duration) (ended bool) {
	pkts := e.pkts[:0]
	run := q[:0] // the frames still to send, in place
	for _, s := range q {
		if !s.f.unsent || s.f.gen != s.gen {
			// Released while queued (the device went down), and maybe
			// cut again since.
			continue
		}
		s.f.unsent = false
		run = append(run, s)
		pkts = append(pkts, s.f.pkt[:s.f.pktLen])
	}
	all := pkts
	for len(pkts) > 0 {
		n, err := 1, error(nil)
		if l.batch != nil && len(pkts) > 1 {
			n, err = l.batch.WriteFrames(pkts)
		} else if err = l.WriteFrame(pkts[0]); err != nil {
			n = 0
		}
		if err == nil && n <= 0 {
			err = io.ErrShortWrite // (a link that sent nothing must say why)
		}
		if err == nil {
			pkts, run = pkts[min(n, len(pkts)):], run[min(n, len(run)):]
			continue
		}
		n = min(n, len(pkts)-1)
		f := run[n].f
		if e.sendFailed(f, f.target, err, now) {
			ended = true
		}
		pkts, run = pkts[n+1:], run[n+1:]
	}
	clear(all) // do not keep the packets of frames freed later
	e.pkts = all[:0]
	return ended
}

// record notes a new transmission of f to t: its tag, its target and its
// retransmission timeout.
func (e *engine) record(f *frame, t *target, now time.Duration, retransmit bool) {
	moved := f.target != nil && f.target != t
	if f.target != t {
		if f.target != nil {
			f.target.outstanding--
		}
		t.outstanding++
		f.target, f.onTargetSince = t, now
	}
	f.gen = (f.gen + 1) & tagGenMax
	f.tx[f.sends%maxCopies] = transmission{gen: f.gen, cmd: f.cmd, target: t, sent: now}
	if f.sends == 0 {
		f.firstSent = now
	}
	f.sends++
	f.unanswered++
	f.lastSent = now
	if retransmit {
		t.retransmits++
	}
	if retransmit && !moved {
		f.rto = min(2*f.rto, e.ini.cfg.RTOMax)
	} else {
		// A frame moved to another target starts from that target's
		// timeout: the backoff it earned on a dead one says nothing of
		// the new path.
		f.rto = e.paths.rto(t)
	}
	t.framesSent++
}

// encode writes f's AoE and ATA headers, for its latest transmission to
// t, into its packet.
func (e *engine) encode(f *frame, t *target) {
	h := aoe.Frame{Dst: t.mac, Src: t.link.mac, Header: aoe.Header{
		Version: aoe.Version, Major: e.shelf, Minor: e.slot, Command: aoe.CommandATA, Tag: makeTag(f.gen, f.index),
	}}
	_, _ = h.MarshalHeaderTo(f.pkt) // cannot fail: pkt is large enough, fields are in range
	lba := f.lba
	if f.flags&aoe.ATAFlagExtended == 0 && (f.op == opRead || f.op == opWrite) {
		// LBA28: address bits 24-27 go in the device register, whose
		// high bits say LBA mode (0xE0, as the Linux driver sets).
		lba = lba&aoe.MaxLBA28 | 0xE0<<24
	}
	a := aoe.ATA{Flags: f.flags, SectorCount: uint8(f.sectors), CmdStatus: f.cmd, LBA: lba}
	a.MarshalHeaderTo(f.pkt[aoe.FrameHeaderLen:])
}

// sendFailed handles a link's refusal of f. Only a frame too large for
// the link fails at once (ended); otherwise (no buffer space, interface
// down) the retransmission timer tries again.
func (e *engine) sendFailed(f *frame, t *target, err error, now time.Duration) (ended bool) {
	t.errors++
	if errors.Is(err, aoe.ErrFrameTooLarge) {
		// The link's MTU dropped: carry less from now on and fail this
		// frame rather than resend what cannot pass.
		t.maxSectors = min(t.maxSectors, aoe.SectorsPerFrame(t.link.MTU()))
		e.finishFrame(f, e.ioError(f, t, errFrameTooLarge), now)
		return true
	}
	if e.ini.log.Enabled(context.Background(), slog.LevelDebug) {
		e.ini.log.Debug("initiator: send failed", "device", e.name, "target", t.mac, "link", t.link.name, "err", err)
	}
	return false
}

// ioError describes a failure of frame f on target t.
func (e *engine) ioError(f *frame, t *target, err error) *IOError {
	return &IOError{Device: e.name, Target: t.mac, Op: f.op.String(), LBA: f.lba, Sectors: f.sectors, Err: err}
}

// finishFrame ends an active frame: it counts toward its request, and
// either leaves the table or, for a good write with copies still out,
// lingers as a fence.
func (e *engine) finishFrame(f *frame, err error, now time.Duration) {
	r := f.req
	f.target.outstanding--
	if err == nil && f.op == opWrite && f.unanswered > 0 {
		f.state = frameLingering
		f.lingerUntil = e.lingerUntil(f)
		f.req = nil
		e.lingering++
	} else {
		e.releaseFrame(f)
	}
	if f.op == opFlush && err != nil {
		f.bound.dirty = true
	}
	r.inflight--
	if err != nil {
		if r.err == nil && !r.abandoned {
			e.ini.log.Warn("initiator: I/O error", "device", e.name, "err", err)
		}
		e.stopRequest(r, err)
		return
	}
	e.maybeComplete(r)
}

// lingerUntil is when a completed write's unanswered copies stop fencing
// its sectors: ScornTimeout after the frame's latest transmission. The
// engine's contract with targets is that a target executes a frame within
// ScornTimeout of its sending or never (one that holds a frame longer is
// scorned); a shorter guess would let a target that reorders work, such
// as one with parallel workers and a stalled disk, apply a stray copy
// late. Counting from the latest transmission rather than from each
// unanswered copy's own gives a margin to targets that bend the contract,
// such as one that was scorned but is alive.
func (e *engine) lingerUntil(f *frame) time.Duration {
	return f.lastSent + e.ini.cfg.ScornTimeout
}

// receive takes an ATA response for this device and returns the target
// it came from, or nil when it answers no transmission awaited. It runs
// once per frame and allocates nothing unless the answer is an error.
func (e *engine) receive(l *link, fr *aoe.Frame, now time.Duration) *target {
	f, tx := e.match(l, fr, now)
	if tx == nil {
		return nil
	}
	t := tx.target
	tx.answered = true
	f.unanswered--
	t.rtt.Observe(now - tx.sent)
	// Later copies were sent: this one was slow, not lost, and those
	// sent to the same target were needless (counted at the frame's
	// first answer only).
	grew := false
	if tx.gen != f.gen {
		needless := 0
		if f.target == t && f.state == frameActive {
			needless = int((f.gen - tx.gen) & tagGenMax)
		}
		grew = t.slowCopyAnswered(f.index, f.firstSent, tx.sent, needless)
	}
	e.paths.heard(t, now, "ATA")
	if f.state == frameLingering {
		if f.unanswered == 0 {
			e.releaseFrame(f)
			e.pump(now)
		} else if grew {
			e.pump(now)
		}
		return t
	}

	err, retry := e.checkAnswer(f, tx, t, fr)
	if retry {
		e.send(f, t, now, false)
		return t
	}
	if err != nil {
		t.errors++
	} else {
		t.answered()
		t.lastATA = now
		if f.op == opRead || f.op == opWrite {
			e.paths.progressed(t, now)
		}
	}
	e.finishFrame(f, err, now)
	e.pump(now)
	return t
}

// match finds the frame and transmission an answer is to, by its tag, its
// source MAC and the link it came in on. It counts the answers that match
// none: stale ones (reporting a write executed after its fence expired),
// those from the wrong source and duplicates.
func (e *engine) match(l *link, fr *aoe.Frame, now time.Duration) (*frame, *transmission) {
	index, gen := uint16(fr.Tag), uint16(fr.Tag>>16)&tagGenMax
	if int(index) >= len(e.frames) {
		e.counters.stale++
		return nil, nil
	}
	f := e.frames[index]
	var tx *transmission
	if f.state != frameFree {
		for k := range f.tx {
			if f.tx[k].target != nil && f.tx[k].gen == gen {
				tx = &f.tx[k]
				break
			}
		}
	}
	switch {
	case tx == nil:
		e.counters.stale++
		e.lateAnswer(fr.Tag, fr.Src, now)
		return nil, nil
	case tx.target.mac != fr.Src || tx.target.link != l:
		e.counters.wrongSource++
		return nil, nil
	case tx.answered:
		e.counters.duplicates++
		return nil, nil
	}
	return f, tx
}

// checkAnswer takes what an answer to f says: data for a read, an error,
// or (retry) that f must go again with another command.
func (e *engine) checkAnswer(f *frame, tx *transmission, t *target, fr *aoe.Frame) (err error, retry bool) {
	if fr.Flags&aoe.FlagError != 0 {
		ioe := e.ioError(f, t, nil)
		ioe.AoE = fr.Error
		return ioe, false
	}
	var a aoe.ATA
	if a.UnmarshalBinary(fr.Arg) != nil {
		return e.ioError(f, t, errShortResponse), false
	}
	if a.CmdStatus&(aoe.ATAStatusError|aoe.ATAStatusDF) != 0 {
		if f.op == opFlush && tx.cmd == aoe.ATAFlushCacheExt && a.FeatureError&aoe.ATAErrorABRT != 0 {
			// FLUSH CACHE EXT refused (vblade does): use FLUSH CACHE
			// with this target from now on.
			t.flushCmd = aoe.ATAFlushCache
			if f.cmd == aoe.ATAFlushCacheExt {
				f.cmd = aoe.ATAFlushCache
				return nil, true
			}
			return nil, false // a later copy already asks the right way
		}
		ioe := e.ioError(f, t, nil)
		ioe.Status, ioe.ATAError = a.CmdStatus, a.FeatureError
		return ioe, false
	}
	switch f.op {
	case opRead, opIdentify:
		n := f.sectors * aoe.SectorSize
		if len(a.Data) < n {
			return e.ioError(f, t, errShortResponse), false
		}
		if f.req.buf != nil { // nil once the caller gave up
			copy(f.req.buf[f.off:f.off+n], a.Data[:n])
		}
	case opWrite:
		if !f.req.fua {
			t.dirty = true
		}
	}
	return nil, false
}

// scan expires fences and retransmits or moves the frames whose timeout
// passed. It stops at a frame that no target answered for DeadTimeout and
// reports it (dead): the device then goes down, failing every frame, and
// scans again for the fences.
func (e *engine) scan(now time.Duration) (dead bool) {
	deadTimeout := e.ini.cfg.DeadTimeout
	for _, f := range e.frames {
		switch f.state {
		case frameLingering:
			if now >= f.lingerUntil {
				e.expire(f)
			}
		case frameActive:
			if deadTimeout > 0 && now-f.firstSent > deadTimeout {
				return true
			}
			e.retransmit(f, now)
		}
	}
	return false
}

// retransmit sends an active frame again if it must: to a healthy target
// if its own is scorned (told how long the frame waited, the paths may
// scorn it now), else to the same target once its timeout passed.
func (e *engine) retransmit(f *frame, now time.Duration) {
	t := f.target
	if t.state != TargetScorned {
		e.paths.waited(t, now-f.onTargetSince, now)
		if f.target != t {
			return // moved already
		}
	}
	if t.state == TargetScorned {
		if nt := e.paths.pick(f.sectors, t); nt != nil && nt.healthy() {
			e.send(f, nt, now, true)
			return
		}
	}
	if now-f.lastSent >= f.rto {
		t.timedOut(now, f.rto, f.index, f.firstSent)
		e.send(f, t, now, true)
	}
}

// failAll fails every active frame and queued request with err.
func (e *engine) failAll(err error) {
	now := e.ini.now()
	for _, f := range e.frames {
		if f.state == frameActive {
			e.finishFrame(f, err, now)
		}
	}
	for e.head != nil {
		e.stopRequest(e.head, err)
	}
}

// expire ends a lingering write's fence, remembering its unanswered
// copies to recognise a late answer.
func (e *engine) expire(f *frame) {
	for k := range f.tx {
		tx := &f.tx[k]
		if tx.target == nil || tx.answered {
			continue
		}
		e.expired[e.expiredNext] = expiredCopy{tag: makeTag(tx.gen, f.index), target: tx.target, lba: f.lba, sectors: f.sectors, sent: tx.sent}
		e.expiredNext = (e.expiredNext + 1) % len(e.expired)
	}
	e.releaseFrame(f)
}

// lateAnswer checks whether an answer that matches no awaited
// transmission is from a write copy whose fence expired, and reports it.
func (e *engine) lateAnswer(tag uint32, src aoe.MAC, now time.Duration) {
	for k := range e.expired {
		c := &e.expired[k]
		if c.target == nil || c.tag != tag || c.target.mac != src {
			continue
		}
		e.counters.lateWrites++
		c.target.lateWrites++
		detail := fmt.Sprintf("write of %d sectors at LBA %d answered %v after it was sent", c.sectors, c.lba, (now - c.sent).Round(time.Millisecond))
		e.events.note(now, EventLateWrite, c.target, detail)
		e.ini.log.Error("initiator: a target executed a write after its fence expired; newer data at those sectors may be overwritten",
			"device", e.name, "target", c.target.mac, "lba", c.lba, "sectors", c.sectors, "age", now-c.sent)
		*c = expiredCopy{}
		return
	}
}

// The engine's side of inflight, for the failover policy.

// oldestOn returns when the frame waiting longest on t arrived there; ok
// is false when no frame waits on t.
func (e *engine) oldestOn(t *target) (since time.Duration, ok bool) {
	from := time.Duration(-1)
	for _, f := range e.frames {
		if f.state == frameActive && f.target == t && (from < 0 || f.onTargetSince < from) {
			from = f.onTargetSince
		}
	}
	return from, from >= 0
}

// moveOff sends the frames waiting on t to the healthy targets the paths
// pick for them where there is room; the others stay, with a fresh wait.
func (e *engine) moveOff(t *target, now time.Duration) (moved, kept int) {
	for _, f := range e.frames {
		if f.state != frameActive || f.target != t {
			continue
		}
		if nt := e.paths.pick(f.sectors, t); nt != nil && nt.healthy() {
			e.send(f, nt, now, true)
			moved++
		} else {
			f.onTargetSince = now
			kept++
		}
	}
	return moved, kept
}

// restartWaits gives the frames waiting on t a fresh scorn timeout.
func (e *engine) restartWaits(t *target, now time.Duration) {
	for _, f := range e.frames {
		if f.state == frameActive && f.target == t {
			f.onTargetSince = now
		}
	}
}

// resendOverdue sends again at once the frames on t last sent at least
// after ago.
func (e *engine) resendOverdue(t *target, after, now time.Duration) {
	for _, f := range e.frames {
		if f.state == frameActive && f.target == t && now-f.lastSent >= after {
			e.send(f, t, now, true)
		}
	}
}
