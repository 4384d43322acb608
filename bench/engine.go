package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/initiator/rtt"
)

// Limits of the generator.
const (
	// MaxQueueDepth is the most requests the generator keeps in flight: a
	// request's slot number takes the low 12 bits of its tag.
	MaxQueueDepth = 1 << slotBits
	slotBits      = 12
	// maxTries is how many times a request is sent before the target is
	// declared dead.
	maxTries = 12
	// DefaultMinTimeout is the retransmission timeout's default floor.
	// The Linux driver's is 200 ms; a benchmark needs a lower one so that
	// a target that drops frames (vblade beyond its buffers) costs only
	// what the loss costs, yet one well above the round trips of a busy
	// target, so that slow answers are not taken for lost ones.
	DefaultMinTimeout = 10 * time.Millisecond
	// The retransmission timeout's ceiling and its value before any
	// round trip has been measured.
	maxRTO     = time.Second
	initialRTO = 100 * time.Millisecond
	// pollInterval bounds how long the generator waits for frames before
	// it looks at its context again.
	pollInterval = 100 * time.Millisecond
)

// retransmitTimer is the generator's retransmission timeout: the
// initiator's round-trip estimator, with a floor a benchmark may set.
type retransmitTimer struct {
	est   rtt.Estimator
	floor time.Duration // the least timeout; DefaultMinTimeout if 0
}

// sample adds the round trip of a request sent once (Karn's rule: a
// retransmitted request keeps its tag, so its answer may be to either
// transmission).
func (r *retransmitTimer) sample(d time.Duration) { r.est.Observe(d) }

// timeout returns the current retransmission timeout.
func (r *retransmitTimer) timeout() time.Duration {
	floor := r.floor
	if floor <= 0 {
		floor = DefaultMinTimeout
	}
	return r.est.RTO(initialRTO, floor, max(maxRTO, floor))
}

// slot is one request in flight. Its frame buffer is built once and
// reused for every request the slot carries.
type slot struct {
	index   uint32 // the slot's place in engine.slots: the tag's low bits
	tag     uint32
	busy    bool
	lba     uint64
	sectors int
	pos     int           // where the request's data sits in a Verify buffer
	first   time.Time     // first transmission
	sent    time.Time     // latest transmission
	timeout time.Duration // wait before the next retransmission, doubled each time
	tries   int
	frame   []byte // the request; resliced to its length per request
}

// engine keeps requests in flight on a link, one goroutine doing all the
// work: it allocates nothing per request. Its errors leave it to the
// caller to say which device and run failed.
type engine struct {
	link  Link
	batch aoe.BatchLink // nil when the link moves one frame a call
	dev   Device
	write bool
	slots []slot
	gen   uint32 // tag generation, bumped per request
	rtt   retransmitTimer

	inflight int
	rbufs    [][]byte
	rlens    []int
	out      [][]byte
	answer   aoe.ATA   // the answer being handled
	readDL   time.Time // the read deadline last set
	giveUp   time.Time // if set, requests still in flight then are abandoned

	// fill prepares a free slot's next request (lba, sectors and, for
	// writes, the data) and reports whether there is one.
	fill func(s *slot, now time.Time) bool
	// complete takes an answer without errors; for reads a holds the
	// data.
	complete func(s *slot, a *aoe.ATA, now time.Time) error

	retransmits uint64
	abandoned   uint64
}

// newEngine prepares qd slots addressing dev with reads or writes.
func newEngine(link Link, dev Device, qd int, write bool) (*engine, error) {
	switch {
	case qd < 1 || qd > MaxQueueDepth:
		return nil, fmt.Errorf("queue depth %d: want 1 to %d", qd, MaxQueueDepth)
	case dev.SectorsPerFrame < 1:
		return nil, fmt.Errorf("%v takes %d sectors per frame", dev, dev.SectorsPerFrame)
	}
	e := &engine{link: link, dev: dev, write: write, slots: make([]slot, qd), gen: rand.Uint32()}
	e.batch, _ = link.(aoe.BatchLink)
	nbuf := 1
	if e.batch != nil {
		nbuf = min(qd, 64)
	}
	rlen := max(link.MTU(), 9000) + aoe.EthernetHeaderLen
	e.rbufs, e.rlens = make([][]byte, nbuf), make([]int, nbuf)
	for i := range e.rbufs {
		e.rbufs[i] = make([]byte, rlen)
	}
	e.out = make([][]byte, 0, qd)

	hdr := aoe.Frame{Dst: dev.MAC, Src: link.HardwareAddr(), Header: aoe.Header{
		Version: aoe.Version, Major: dev.Shelf, Minor: dev.Slot, Command: aoe.CommandATA}}
	ata := aoe.ATA{Flags: aoe.ATAFlagExtended, CmdStatus: aoe.ATAReadSectorsExt}
	size := aoe.FrameHeaderLen + aoe.ATAHeaderLen
	if write {
		ata.Flags |= aoe.ATAFlagWrite
		ata.CmdStatus = aoe.ATAWriteSectorsExt
		size += dev.SectorsPerFrame * aoe.SectorSize
	}
	for i := range e.slots {
		f := make([]byte, max(size, aoe.MinFrameLen))
		if _, err := hdr.MarshalHeaderTo(f); err != nil {
			return nil, err
		}
		ata.MarshalHeaderTo(f[aoe.FrameHeaderLen:])
		e.slots[i].frame, e.slots[i].index = f, uint32(i)
	}
	return e, nil
}

// issue sends the request fill prepared in s. Its tag has aoe.TagUserland
// set, so that the generator can share a segment with the Linux driver, a
// generation above and the slot's index below.
func (e *engine) issue(s *slot, now time.Time) {
	e.gen++
	s.tag = aoe.TagUserland | (e.gen<<slotBits)&(aoe.TagUserland-1) | s.index
	f := s.frame
	binary.BigEndian.PutUint32(f[aoe.EthernetHeaderLen+6:], s.tag)
	arg := f[aoe.FrameHeaderLen:]
	arg[2] = uint8(s.sectors)
	lba := s.lba
	for i := 4; i < 10; i++ {
		arg[i] = byte(lba)
		lba >>= 8
	}
	s.busy, s.tries, s.first, s.sent, s.timeout = true, 1, now, now, e.rtt.timeout()
	e.inflight++
	e.out = append(e.out, f[:e.frameLen(s)])
}

// run keeps the slots busy until fill has no more work and every request
// has been answered (or abandoned at giveUp).
func (e *engine) run(ctx context.Context) error {
	now := time.Now()
	for i := range e.slots {
		if e.fill(&e.slots[i], now) {
			e.issue(&e.slots[i], now)
		}
	}
	defer e.link.SetReadDeadline(time.Time{})
	for e.inflight > 0 {
		if err := e.flush(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%d requests in flight: %w", e.inflight, err)
		}
		if !e.giveUp.IsZero() && now.After(e.giveUp) {
			e.abandon()
			break
		}
		dl := e.nextTimeout()
		if poll := now.Add(pollInterval); poll.Before(dl) {
			dl = poll
		}
		if !dl.Equal(e.readDL) {
			if err := e.link.SetReadDeadline(dl); err != nil {
				return err
			}
			e.readDL = dl
		}
		n, err := e.read()
		now = time.Now()
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("read: %w", err)
		}
		for i := range n {
			if err := e.receive(e.rbufs[i][:e.rlens[i]], now); err != nil {
				return err
			}
		}
		if err := e.retransmit(now); err != nil {
			return err
		}
	}
	return e.flush()
}

// read reads one batch of frames.
func (e *engine) read() (int, error) {
	if e.batch != nil {
		return e.batch.ReadFrames(e.rbufs, e.rlens)
	}
	n, err := e.link.ReadFrame(e.rbufs[0])
	if err != nil {
		return 0, err
	}
	e.rlens[0] = n
	return 1, nil
}

// flush sends the requests queued by issue and retransmit. A frame the
// kernel refuses for want of room is as good as lost: it is retransmitted
// when its time comes.
func (e *engine) flush() error {
	if len(e.out) == 0 {
		return nil
	}
	var err error
	if e.batch != nil {
		_, err = e.batch.WriteFrames(e.out)
	} else {
		for _, f := range e.out {
			if err = e.link.WriteFrame(f); err != nil {
				break
			}
		}
	}
	clear(e.out)
	e.out = e.out[:0]
	if err != nil && (errors.Is(err, net.ErrClosed) || errors.Is(err, aoe.ErrFrameTooLarge)) {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// nextTimeout returns when the earliest request in flight is due for
// retransmission.
func (e *engine) nextTimeout() time.Time {
	var next time.Time
	for i := range e.slots {
		s := &e.slots[i]
		if s.busy {
			if due := s.sent.Add(s.timeout); next.IsZero() || due.Before(next) {
				next = due
			}
		}
	}
	return next
}

// retransmit resends the requests whose answer is late, with the timeout
// doubled each time, and fails once one has used all its tries.
func (e *engine) retransmit(now time.Time) error {
	for i := range e.slots {
		s := &e.slots[i]
		if !s.busy || now.Before(s.sent.Add(s.timeout)) {
			continue
		}
		if s.tries >= maxTries {
			return fmt.Errorf("LBA %d (tag %#x): %w after %d tries", s.lba, s.tag, aoe.ErrNoResponse, s.tries)
		}
		s.tries++
		s.sent = now
		s.timeout = min(2*s.timeout, max(maxRTO, s.timeout))
		e.retransmits++
		e.out = append(e.out, s.frame[:e.frameLen(s)])
	}
	return nil
}

// frameLen is the length of s's request frame, padded to the Ethernet
// minimum.
func (e *engine) frameLen(s *slot) int {
	n := aoe.FrameHeaderLen + aoe.ATAHeaderLen
	if e.write {
		n += s.sectors * aoe.SectorSize
	}
	return max(n, aoe.MinFrameLen)
}

// abandon gives up on every request in flight.
func (e *engine) abandon() {
	for i := range e.slots {
		if e.slots[i].busy {
			e.slots[i].busy = false
			e.abandoned++
		}
	}
	e.inflight = 0
}

// receive matches a frame to its slot, hands a good answer to complete and
// refills the slot. Frames that answer nothing in flight (late duplicates,
// other traffic) are ignored.
func (e *engine) receive(b []byte, now time.Time) error {
	if len(b) < aoe.FrameHeaderLen+aoe.ATAHeaderLen ||
		binary.BigEndian.Uint16(b[12:14]) != aoe.EtherType ||
		b[aoe.EthernetHeaderLen]&uint8(aoe.FlagResponse) == 0 ||
		aoe.Command(b[aoe.EthernetHeaderLen+5]) != aoe.CommandATA ||
		[6]byte(b[6:12]) != e.dev.MAC {
		return nil
	}
	tag := binary.BigEndian.Uint32(b[aoe.EthernetHeaderLen+6:])
	idx := int(tag & (MaxQueueDepth - 1))
	if idx >= len(e.slots) || !e.slots[idx].busy || e.slots[idx].tag != tag {
		return nil
	}
	s := &e.slots[idx]
	if s.tries == 1 {
		e.rtt.sample(now.Sub(s.sent))
	}
	s.busy = false
	e.inflight--
	if b[aoe.EthernetHeaderLen]&uint8(aoe.FlagError) != 0 {
		return fmt.Errorf("LBA %d: %w", s.lba, aoe.Error(b[aoe.EthernetHeaderLen+1]))
	}
	a := &e.answer // a field: handed to complete, a local would escape
	if err := a.UnmarshalBinary(b[aoe.FrameHeaderLen:]); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	if a.CmdStatus&(aoe.ATAStatusError|aoe.ATAStatusDF) != 0 {
		return fmt.Errorf("LBA %d: ATA status %#02x, error %#02x", s.lba, a.CmdStatus, a.FeatureError)
	}
	if !e.write && len(a.Data) < s.sectors*aoe.SectorSize {
		return fmt.Errorf("LBA %d: %d of %d bytes: %w", s.lba, len(a.Data), s.sectors*aoe.SectorSize, aoe.ErrShort)
	}
	if err := e.complete(s, a, now); err != nil {
		return err
	}
	if e.fill(s, now) {
		e.issue(s, now)
	}
	return nil
}
