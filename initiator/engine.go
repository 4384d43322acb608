package initiator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Tags: bit 31 marks ours (the Linux driver ignores such answers), bits
// 16-30 count the transmissions of a frame-table entry, and bits 0-15 index
// the table. A tag thus names one transmission of one frame.
const (
	tagOurs   = 1 << 31
	tagGenMax = 1<<15 - 1
	maxFrames = 1 << 16
	// maxCopies is how many transmissions of a frame are remembered, so
	// that the answer to an earlier one still completes it.
	maxCopies = 4
)

func makeTag(gen, index uint16) uint32 { return tagOurs | uint32(gen)<<16 | uint32(index) }

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
	tx     [maxCopies]transmission
	// sends counts transmissions; unanswered those not yet answered
	// (forgotten ones included, so their count never reaches zero).
	sends, unanswered                  int
	firstSent, onTargetSince, lastSent time.Duration
	rto, lingerUntil                   time.Duration
}

// getRequestLocked takes a request from the pool.
func (d *Device) getRequestLocked() *request {
	if n := len(d.spare); n > 0 {
		r := d.spare[n-1]
		d.spare = d.spare[:n-1]
		return r
	}
	return &request{done: make(chan struct{}, 1)}
}

// putRequestLocked returns a finished request to the pool.
func (d *Device) putRequestLocked(r *request) {
	clear(r.flushTo)
	*r = request{done: r.done, flushTo: r.flushTo[:0]}
	d.spare = append(d.spare, r)
}

func (d *Device) enqueueLocked(r *request) {
	r.queued = true
	if d.tail == nil {
		d.head = r
	} else {
		d.tail.next = r
	}
	d.tail = r
}

// dequeueLocked takes r out of the queue, wherever it is.
func (d *Device) dequeueLocked(r *request) {
	if !r.queued {
		return
	}
	var prev *request
	for q := d.head; q != nil; prev, q = q, q.next {
		if q != r {
			continue
		}
		if prev == nil {
			d.head = q.next
		} else {
			prev.next = q.next
		}
		if d.tail == q {
			d.tail = prev
		}
		break
	}
	r.next, r.queued = nil, false
}

// stopRequestLocked records err on r and cuts no more frames from it.
func (d *Device) stopRequestLocked(r *request, err error) {
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
		d.dequeueLocked(r)
	}
	d.maybeCompleteLocked(r)
}

// maybeCompleteLocked completes r once it has no frames left.
func (d *Device) maybeCompleteLocked(r *request) {
	if r.complete || r.inflight > 0 || r.carved < r.total {
		return
	}
	r.complete = true
	if r.err == nil {
		c := &d.counters
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
	} else if r.op != opIdentify {
		d.counters.ioErrors++
	}
	if r.abandoned {
		d.putRequestLocked(r)
		return
	}
	r.done <- struct{}{}
}

// allocFrameLocked takes a free frame-table entry whose packet holds the
// given data sectors, or returns nil when the table is full.
func (d *Device) allocFrameLocked(sectors int) *frame {
	var f *frame
	if n := len(d.free); n > 0 {
		f = d.frames[d.free[n-1]]
		d.free = d.free[:n-1]
	} else {
		if len(d.frames) >= maxFrames {
			return nil
		}
		f = &frame{index: uint16(len(d.frames))}
		d.frames = append(d.frames, f)
	}
	if need := max(aoe.FrameHeaderLen+aoe.ATAHeaderLen+sectors*aoe.SectorSize, aoe.MinFrameLen); cap(f.pkt) < need {
		// Sized for the largest frame any target takes, so that it is
		// reused rather than regrown.
		size := need
		for _, t := range d.targets {
			size = max(size, aoe.FrameHeaderLen+aoe.ATAHeaderLen+t.maxSectors*aoe.SectorSize)
		}
		f.pkt = make([]byte, size)
	}
	f.state = frameActive
	f.tx = [maxCopies]transmission{}
	f.sends, f.unanswered = 0, 0
	f.target, f.bound = nil, nil
	d.ini.frameActivated()
	return f
}

// releaseFrameLocked returns a frame-table entry to the free list.
func (d *Device) releaseFrameLocked(f *frame) {
	if f.state == frameLingering {
		d.lingering--
	}
	f.state = frameFree
	f.req = nil
	f.tx = [maxCopies]transmission{}
	d.free = append(d.free, f.index)
	d.ini.frameReleased()
}

// pumpLocked cuts frames from queued requests and sends them while targets
// have room. Requests are served in order, except that one which must wait
// (a write fenced by a lingering one, a flush whose target is busy) lets
// those behind it pass: concurrent requests have no order to keep.
func (d *Device) pumpLocked(now time.Duration) {
	for r := d.head; r != nil; {
		var t *target
		if r.op == opFlush {
			if t = d.flushTargetLocked(r.flushTo[r.carved]); t == nil {
				r = r.next
				continue
			}
		} else if t = d.policy.pick(d.targets, 1, nil); t == nil {
			return
		}
		lba, sectors := r.lba+uint64(r.carved), 0
		switch r.op {
		case opRead, opWrite:
			sectors = min(r.total-r.carved, t.maxSectors)
		case opIdentify:
			sectors = 1
		}
		if r.op == opWrite && d.lingering > 0 && d.fencedLocked(lba, sectors) {
			if !r.fenced {
				r.fenced = true
				d.counters.fenced++
			}
			r = r.next
			continue
		}
		f := d.allocFrameLocked(sectors)
		if f == nil {
			return
		}
		f.req, f.op, f.lba, f.sectors = r, r.op, lba, sectors
		f.off = r.carved * aoe.SectorSize
		d.setCommandLocked(f, t)
		if r.op == opFlush {
			f.bound = r.flushTo[r.carved]
			r.carved++
		} else {
			r.carved += sectors
		}
		r.inflight++
		next, done := r.next, r.carved == r.total
		if done {
			d.dequeueLocked(r)
		}
		d.sendLocked(f, t, now, false)
		if done || !r.queued { // (sendLocked may fail the frame and stop r)
			r = next
		}
	}
}

// flushTargetLocked returns where a flush for t goes now: t itself, or a
// healthy target when t is scorned; nil to wait for room.
func (d *Device) flushTargetLocked(t *target) *target {
	if t.state == TargetScorned && anyHealthy(d.targets) {
		return d.policy.pick(d.targets, 0, nil)
	}
	if t.window > 0 && t.hasRoom() {
		return t
	}
	return nil
}

// fencedLocked reports whether sectors at lba overlap a lingering write.
func (d *Device) fencedLocked(lba uint64, sectors int) bool {
	end := lba + uint64(sectors)
	for _, f := range d.frames {
		if f.state == frameLingering && f.lba < end && lba < f.lba+uint64(f.sectors) {
			return true
		}
	}
	return false
}

// setCommandLocked fills in a new frame's ATA command and packet data.
func (d *Device) setCommandLocked(f *frame, t *target) {
	ext := d.id.lba48
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
		f.cmd = d.flushCmd
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

// sendLocked sends a transmission of f to t, moving f there if it was
// elsewhere. A retransmission doubles the frame's timeout.
func (d *Device) sendLocked(f *frame, t *target, now time.Duration, retransmit bool) {
	cfg := &d.ini.cfg
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
		f.rto = min(2*f.rto, cfg.RTOMax)
	} else {
		// A frame moved to another target starts from that target's
		// timeout: the backoff it earned on a dead one says nothing of
		// the new path.
		f.rto = d.rtoLocked(t)
	}
	t.framesSent++

	h := aoe.Frame{Dst: t.mac, Src: t.link.mac, Header: aoe.Header{
		Version: aoe.Version, Major: d.shelf, Minor: d.slot, Command: aoe.CommandATA, Tag: makeTag(f.gen, f.index),
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
	if err := t.link.WriteFrame(f.pkt[:f.pktLen]); err != nil {
		t.errors++
		if errors.Is(err, aoe.ErrFrameTooLarge) {
			// The link's MTU dropped: carry less from now on and fail
			// this frame rather than resend what cannot pass.
			t.maxSectors = min(t.maxSectors, aoe.SectorsPerFrame(t.link.MTU()))
			d.finishFrameLocked(f, d.ioErrorLocked(f, t, errFrameTooLarge), now)
			return
		}
		// Otherwise (no buffer space, interface down) the retransmission
		// timer tries again.
		if d.ini.log.Enabled(context.Background(), slog.LevelDebug) {
			d.ini.log.Debug("initiator: send failed", "device", d.name, "target", t.mac, "link", t.link.name, "err", err)
		}
	}
}

// ioErrorLocked describes a failure of frame f on target t.
func (d *Device) ioErrorLocked(f *frame, t *target, err error) *IOError {
	return &IOError{Device: d.name, Target: t.mac, Op: f.op.String(), LBA: f.lba, Sectors: f.sectors, Err: err}
}

// finishFrameLocked ends an active frame: it counts toward its request, and
// either leaves the table or, for a good write with copies still out,
// lingers as a fence.
func (d *Device) finishFrameLocked(f *frame, err error, now time.Duration) {
	r := f.req
	f.target.outstanding--
	if err == nil && f.op == opWrite && f.unanswered > 0 {
		f.state = frameLingering
		f.lingerUntil = d.lingerUntilLocked(f)
		f.req = nil
		d.lingering++
	} else {
		d.releaseFrameLocked(f)
	}
	if f.op == opFlush && err != nil {
		f.bound.dirty = true
	}
	r.inflight--
	if err != nil {
		if r.err == nil && !r.abandoned {
			d.ini.log.Warn("initiator: I/O error", "device", d.name, "err", err)
		}
		d.stopRequestLocked(r, err)
		return
	}
	d.maybeCompleteLocked(r)
}

// lingerUntilLocked is when a completed write's unanswered copies stop
// fencing its sectors: ScornTimeout after the frame's latest transmission.
// The engine's contract with targets is that a target executes a frame
// within ScornTimeout of its sending or never (one that holds a frame
// longer is scorned); a shorter guess would let a target that reorders
// work, such as one with parallel workers and a stalled disk, apply a
// stray copy late. Counting from the latest transmission rather than from
// each unanswered copy's own gives a margin to targets that bend the
// contract, such as one that was scorned but is alive.
func (d *Device) lingerUntilLocked(f *frame) time.Duration {
	return f.lastSent + d.ini.cfg.ScornTimeout
}

// handleATA takes an ATA response for this device. It runs once per frame
// and allocates nothing unless the answer is an error.
func (d *Device) handleATA(l *link, fr *aoe.Frame) {
	index, gen := uint16(fr.Tag), uint16(fr.Tag>>16)&tagGenMax
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.ini.now()
	if int(index) >= len(d.frames) {
		d.counters.stale++
		return
	}
	f := d.frames[index]
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
		d.counters.stale++
		d.lateAnswerLocked(fr.Tag, fr.Src, now)
		return
	case tx.target.mac != fr.Src || tx.target.link != l:
		d.counters.wrongSource++
		return
	case tx.answered:
		d.counters.duplicates++
		return
	}
	t := tx.target
	tx.answered = true
	f.unanswered--
	t.rtt.observe(now - tx.sent)
	d.heardLocked(t, now, "ATA")
	if f.state == frameLingering {
		if f.unanswered == 0 {
			d.releaseFrameLocked(f)
			d.pumpLocked(now)
		}
		return
	}

	err, retry := d.checkAnswerLocked(f, tx, t, fr)
	if retry {
		d.sendLocked(f, t, now, false)
		return
	}
	if err != nil {
		t.errors++
	} else {
		t.answered()
		t.lastATA = now
		if d.stallTarget != nil && (f.op == opRead || f.op == opWrite) {
			d.endStallLocked(t, now)
		}
	}
	d.finishFrameLocked(f, err, now)
	d.pumpLocked(now)
}

// checkAnswerLocked takes what an answer to f says: data for a read, an
// error, or (retry) that f must go again with another command.
func (d *Device) checkAnswerLocked(f *frame, tx *transmission, t *target, fr *aoe.Frame) (err error, retry bool) {
	if fr.Flags&aoe.FlagError != 0 {
		e := d.ioErrorLocked(f, t, nil)
		e.AoE = fr.Error
		return e, false
	}
	var a aoe.ATA
	if a.UnmarshalBinary(fr.Arg) != nil {
		return d.ioErrorLocked(f, t, errShortResponse), false
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
		e := d.ioErrorLocked(f, t, nil)
		e.Status, e.ATAError = a.CmdStatus, a.FeatureError
		return e, false
	}
	switch f.op {
	case opRead, opIdentify:
		n := f.sectors * aoe.SectorSize
		if len(a.Data) < n {
			return d.ioErrorLocked(f, t, errShortResponse), false
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

// scan retransmits frames whose timeout passed, scorns targets that left a
// frame waiting too long and moves their frames, expires fences, fails
// frames nobody answered for DeadTimeout, and looks after scorned targets:
// probing them, readmitting them when a hold-off ends, and searching for
// others while none is healthy.
func (d *Device) scan(now time.Duration) {
	cfg := &d.ini.cfg
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.frames {
		switch f.state {
		case frameLingering:
			if now >= f.lingerUntil {
				d.expireLocked(f)
			}
		case frameActive:
			if cfg.DeadTimeout > 0 && now-f.firstSent > cfg.DeadTimeout {
				d.downLocked(now)
				continue
			}
			t := f.target
			if t.state != TargetScorned && now-f.onTargetSince > d.scornAfterLocked(t) {
				d.scornLocked(t, now, fmt.Sprintf("a frame went unanswered for %v", d.scornAfterLocked(t)), nil)
				if f.target != t {
					continue // moved already
				}
			}
			if t.state == TargetScorned {
				if nt := d.policy.pick(d.targets, f.sectors, t); nt != nil && nt.healthy() {
					d.sendLocked(f, nt, now, true)
					continue
				}
			}
			if now-f.lastSent >= f.rto {
				t.timedOut(now, f.rto)
				d.sendLocked(f, t, now, true)
			}
		}
	}
	d.checkAnnounceLocked(now)
	probe := d.probeInterval()
	for _, t := range d.targets {
		if t.state != TargetScorned {
			continue
		}
		// Held off, it kept answering probes: readmit it now.
		if now >= t.holdUntil && t.lastHeard > t.scornedAt && now-t.lastHeard <= 2*probe && t.usable(1) {
			d.readmitLocked(t, now, "probes during its hold-off")
			continue
		}
		if now-t.lastProbe >= probe {
			t.lastProbe = now
			_ = d.ini.sendQuery(t.link, t.mac, d.shelf, d.slot)
		}
	}
	d.searchLocked(now)
	if d.head != nil {
		d.pumpLocked(now)
	}
}

// downLocked marks the device down after DeadTimeout and fails all its
// I/O; it comes back when a target answers.
func (d *Device) downLocked(now time.Duration) {
	if d.state != DeviceDown {
		d.ini.log.Error("initiator: device down: no target answered", "device", d.name, "for", d.ini.cfg.DeadTimeout)
		d.eventLocked(now, EventDeviceDown, nil, fmt.Sprintf("no target answered for %v", d.ini.cfg.DeadTimeout))
	}
	d.setStateLocked(DeviceDown, now)
	d.failAllLocked(ErrTimeout)
}

// failAllLocked fails every active frame and queued request with err.
func (d *Device) failAllLocked(err error) {
	now := d.ini.now()
	for _, f := range d.frames {
		if f.state == frameActive {
			d.finishFrameLocked(f, err, now)
		}
	}
	for d.head != nil {
		d.stopRequestLocked(d.head, err)
	}
}
