package initiator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// DeviceState says whether a device can take I/O.
type DeviceState uint8

// Device states.
const (
	// DeviceFound devices have answered Query Config but not IDENTIFY yet.
	DeviceFound DeviceState = iota
	// DeviceUp devices are identified and take I/O.
	DeviceUp
	// DeviceDown devices left a frame unanswered by every target for
	// Config.DeadTimeout: their I/O fails at once with ErrTimeout until a
	// target answers again (the initiator keeps probing).
	DeviceDown
)

var deviceStateNames = [...]string{DeviceFound: "found", DeviceUp: "up", DeviceDown: "down"}

// String returns the state's name, as Stats shows it.
func (s DeviceState) String() string {
	if int(s) < len(deviceStateNames) {
		return deviceStateNames[s]
	}
	return fmt.Sprintf("DeviceState(%d)", uint8(s))
}

// MarshalText makes a DeviceState readable in JSON.
func (s DeviceState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a DeviceState's name, so that Stats decode from JSON.
func (s *DeviceState) UnmarshalText(b []byte) error {
	return unmarshalState(b, deviceStateNames[:], "device", (*uint8)(s))
}

// Device is an AoE device (a shelf.slot) reached through one or more
// targets. It is safe for concurrent use; concurrent requests are carried
// at once, up to the targets' windows. Its methods match the Backend an NBD
// server needs.
type Device struct {
	ini   *Initiator
	shelf uint16
	slot  uint8
	name  string
	// ready is closed once IDENTIFY has succeeded.
	ready chan struct{}

	mu          sync.Mutex
	state       DeviceState
	since       time.Duration
	closed      bool
	targets     []*target
	policy      policy
	policyName  Policy
	id          identity
	identified  bool
	identifying bool
	// flushCmd is FLUSH CACHE EXT when IDENTIFY says the device has it,
	// else FLUSH CACHE.
	flushCmd uint8

	// frames is the table that a tag's low 16 bits index; free lists the
	// unused entries. lingering counts completed writes whose every copy
	// is not yet accounted for (see frameLingering).
	frames    []*frame
	free      []uint16
	lingering int
	// head and tail are the queue of requests waiting to send frames.
	head, tail *request
	spare      []*request

	counters deviceCounters

	// Failover state (see failover.go). lastActive is the failover
	// policy's latest active target. announceBy, when set, announced
	// itself at announceAt while other targets were active: those that
	// stay silent are scorned. stallTarget, when set, is the target I/O
	// moved away from at stallFrom, until a read or write completes.
	events                  eventLog
	lastActive, announceBy  *target
	announceAt              time.Duration
	stallTarget             *target
	stallFrom, lastStall    time.Duration
	failovers               uint64
	searchEvery, nextSearch time.Duration
	expired                 [128]expiredCopy
	expiredNext             int
}

// deviceCounters are a device's figures since it was found.
type deviceCounters struct {
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
}

func deviceName(shelf uint16, slot uint8) string { return fmt.Sprintf("e%d.%d", shelf, slot) }

func newDevice(i *Initiator, shelf uint16, slot uint8) *Device {
	name := deviceName(shelf, slot)
	pn, ok := i.cfg.DevicePolicies[name]
	if !ok {
		pn = i.cfg.Policy
	}
	if pn == "" {
		pn = PolicyFailover
	}
	p, _ := newPolicy(pn) // checked by New
	return &Device{
		ini: i, shelf: shelf, slot: slot, name: name,
		ready: make(chan struct{}), policy: p, policyName: pn, since: i.now(),
		flushCmd: aoe.ATAFlushCache,
	}
}

// Policy returns how the device uses its targets.
func (d *Device) Policy() Policy {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.policyName
}

// SetPolicy changes how the device uses its targets, at once: frames in
// flight stay where they are, new ones follow the new policy.
func (d *Device) SetPolicy(p Policy) error {
	np, err := newPolicy(p)
	if err != nil {
		return fmt.Errorf("initiator: %s: set policy: %w", d.name, err)
	}
	if p == "" {
		p = PolicyFailover
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if p == d.policyName {
		return nil
	}
	now := d.ini.now()
	d.policy, d.policyName = np, p
	// Roles are assigned afresh: under failover, the first active one
	// of the multipath set stays active.
	keep := d.firstActiveLocked()
	for _, t := range d.targets {
		if t.healthy() && !(p == PolicyFailover && t == keep) {
			t.setState(TargetStandby, now)
		}
	}
	d.arrangeLocked(now, nil)
	d.eventLocked(now, EventPolicy, nil, fmt.Sprintf("policy %s", p))
	d.pumpLocked(now)
	return nil
}

// firstActiveLocked returns the first active target, or nil.
func (d *Device) firstActiveLocked() *target {
	for _, t := range d.targets {
		if t.state == TargetActive {
			return t
		}
	}
	return nil
}

// Name returns the device's name in the Linux driver's style, "e1.0".
func (d *Device) Name() string { return d.name }

// Shelf returns the device's shelf (AoE major) address.
func (d *Device) Shelf() uint16 { return d.shelf }

// Slot returns the device's slot (AoE minor) address.
func (d *Device) Slot() uint8 { return d.slot }

// Size returns the capacity in bytes, or 0 before IDENTIFY.
func (d *Device) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return int64(d.id.sectors) * aoe.SectorSize
}

// State returns the device's state.
func (d *Device) State() DeviceState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// ReadOnly reports false: AoE says nothing of a target being read-only (a
// vblade -r refuses writes one by one, which then fail with an IOError).
func (d *Device) ReadOnly() bool { return false }

// CanMultiConn reports true: one Device serves every connection of an NBD
// export, and Flush covers the writes completed through any of them.
func (d *Device) CanMultiConn() bool { return true }

// BlockSize reports the smallest I/O the device takes, one sector, and the
// size it prefers, a page; an NBD server advertises both and refuses
// unaligned requests itself.
func (d *Device) BlockSize() (minimum, preferred uint32) { return aoe.SectorSize, 4096 }

// ReadAt reads len(p) bytes at byte offset off. Both must be multiples of
// aoe.SectorSize (else ErrUnaligned). If ctx ends first, ReadAt returns its
// error at once and p is no longer written to.
func (d *Device) ReadAt(ctx context.Context, p []byte, off int64) error {
	return d.blockIO(ctx, opRead, p, off, false)
}

// WriteAt writes p at byte offset off; both must be multiples of
// aoe.SectorSize. With fua the data is durable when WriteAt returns: each
// frame is a WRITE FUA EXT where IDENTIFY says the device supports it,
// else the write is followed by Flush. If ctx ends first, WriteAt returns
// its error and the write may be partly done.
func (d *Device) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	d.mu.Lock()
	fuaCmd := fua && d.id.fua
	d.mu.Unlock()
	if err := d.blockIO(ctx, opWrite, p, off, fuaCmd); err != nil {
		return err
	}
	if fua && !fuaCmd {
		return d.Flush(ctx)
	}
	return nil
}

// blockIO checks a byte range and carries it as whole sectors.
func (d *Device) blockIO(ctx context.Context, op opcode, p []byte, off int64, fua bool) error {
	if len(p) == 0 {
		return nil
	}
	if off < 0 || off%aoe.SectorSize != 0 || len(p)%aoe.SectorSize != 0 {
		return fmt.Errorf("initiator: %s: %s of %d bytes at offset %d: %w", d.name, op, len(p), off, ErrUnaligned)
	}
	return d.do(ctx, op, p, uint64(off)/aoe.SectorSize, len(p)/aoe.SectorSize, fua)
}

// Flush makes every write completed before the call durable: it sends a
// FLUSH to each target that acknowledged writes since its last flush, and
// returns when all have confirmed. A FLUSH meant for a scorned target goes
// to a healthy one instead (which, as another path to the same storage,
// flushes the same cache).
func (d *Device) Flush(ctx context.Context) error {
	return d.do(ctx, opFlush, nil, 0, 0, false)
}

// do queues a request, lets frames go, and waits for it to finish.
func (d *Device) do(ctx context.Context, op opcode, buf []byte, lba uint64, sectors int, fua bool) error {
	d.mu.Lock()
	if err := d.admitLocked(op, lba, sectors); err != nil {
		d.mu.Unlock()
		if err == ErrOutOfRange {
			return fmt.Errorf("initiator: %s: %s of %d sectors at LBA %d: %w", d.name, op, sectors, lba, err)
		}
		return err
	}
	r := d.getRequestLocked()
	r.op, r.buf, r.lba, r.total, r.fua = op, buf, lba, sectors, fua
	if op == opFlush {
		for _, t := range d.targets {
			if t.dirty {
				t.dirty = false
				r.flushTo = append(r.flushTo, t)
			}
		}
		r.total = len(r.flushTo)
		if r.total == 0 {
			d.putRequestLocked(r)
			d.mu.Unlock()
			return nil
		}
	}
	d.enqueueLocked(r)
	d.pumpLocked(d.ini.now())
	d.mu.Unlock()
	return d.wait(ctx, r)
}

// admitLocked says whether the device can take a request now.
func (d *Device) admitLocked(op opcode, lba uint64, sectors int) error {
	switch {
	case d.closed:
		return ErrClosed
	case d.state == DeviceDown:
		return ErrTimeout
	case op == opIdentify:
		return nil
	case !d.identified:
		return ErrNotReady
	case op != opFlush && (lba > d.id.sectors || uint64(sectors) > d.id.sectors-lba):
		return ErrOutOfRange
	}
	return nil
}

// wait waits for r to complete, or abandons it when ctx ends first.
func (d *Device) wait(ctx context.Context, r *request) error {
	select {
	case <-r.done:
	case <-ctx.Done():
		d.mu.Lock()
		if !r.complete {
			r.abandoned = true
			r.buf = nil // answers still to come must not touch the caller's buffer
			d.stopRequestLocked(r, ctx.Err())
			d.mu.Unlock()
			return ctx.Err()
		}
		d.mu.Unlock()
		<-r.done
	}
	d.mu.Lock()
	err := r.err
	d.putRequestLocked(r)
	d.mu.Unlock()
	return err
}

// configResponse adds or refreshes the target that sent a Query Config
// response for this device; announce says it was unsolicited (tag 0), as a
// target sends when it starts. rtt, unless negative, is how long the
// target took to answer our request.
func (d *Device) configResponse(l *link, mac aoe.MAC, c *aoe.Config, announce bool, rtt time.Duration) {
	i := d.ini
	d.mu.Lock()
	now := i.now()
	var t *target
	for _, x := range d.targets {
		if x.mac == mac && x.link == l {
			t = x
			break
		}
	}
	isNew := t == nil
	if isNew {
		t = &target{dev: d, link: l, mac: mac, state: TargetStandby, since: now}
		d.targets = append(d.targets, t)
	}
	t.bufferCount, t.firmware = c.BufferCount, c.FirmwareVersion
	if t.configString != string(c.String) {
		t.configString = string(c.String)
	}
	t.window = min(max(int(c.BufferCount), 1), i.cfg.MaxWindow)
	// A scorned target that announces itself has started again: the
	// window it advertises is free. The timeouts that cut it were those
	// of the frames sent to it while it was down, not congestion; kept,
	// they would throttle the I/O it takes over for many round trips.
	if isNew || (announce && t.state == TargetScorned) || t.cwnd > t.window {
		t.cwnd, t.acks = t.window, 0
	}
	if rtt >= 0 && !announce && (t.queryRTT == 0 || rtt < t.queryRTT) {
		t.queryRTT = max(rtt, 1) // (0 means none yet)
	}
	linkSectors := aoe.SectorsPerFrame(l.MTU())
	sectors := int(c.SectorCount)
	if sectors == 0 {
		sectors = linkSectors
	}
	t.maxSectors = min(sectors, linkSectors)
	how := "Query Config"
	if announce {
		how = "an announce"
		t.announcedAt = now
		t.announces++
		d.eventLocked(now, EventAnnounce, t, "")
		if t.queryRTT == 0 {
			// Learn how fast it answers Query Config, for when it is
			// active and another target announces itself (see
			// announceGrace).
			_ = i.sendQuery(l, mac, d.shelf, d.slot)
		}
	}
	if isNew {
		d.eventLocked(now, EventTargetAdded, t, fmt.Sprintf("window %d, %d sectors per frame", t.window, t.maxSectors))
		d.arrangeLocked(now, nil)
	}
	d.heardLocked(t, now, how)
	if announce {
		d.announcedLocked(t, now)
	}
	identify := !d.identified && !d.identifying && t.healthy()
	if identify {
		d.identifying = true
	}
	state, maxSectors, window := t.state, t.maxSectors, t.window
	d.pumpLocked(now)
	d.mu.Unlock()

	if isNew {
		i.log.Info("initiator: found target", "device", d.name, "target", mac, "link", l.name,
			"state", state, "window", window, "sectors_per_frame", maxSectors, "firmware", c.FirmwareVersion)
		if maxSectors == 0 {
			i.log.Warn("initiator: target unusable: link MTU too small for one sector", "device", d.name, "target", mac, "link", l.name, "mtu", l.MTU())
		}
	}
	if identify {
		ctx := i.runContext()
		if ctx == nil {
			ctx = context.Background()
		}
		go d.identify(ctx)
	}
}

func (d *Device) setStateLocked(s DeviceState, now time.Duration) {
	if d.state != s {
		d.state, d.since = s, now
	}
}

// identify sends IDENTIFY DEVICE until it succeeds or ctx ends, then marks
// the device ready.
func (d *Device) identify(ctx context.Context) {
	buf := make([]byte, aoe.SectorSize)
	backoff := 100 * time.Millisecond
	for {
		err := d.do(ctx, opIdentify, buf, 0, 1, false)
		var id identity
		if err == nil {
			id, err = parseIdentify(buf)
		}
		if err == nil {
			d.mu.Lock()
			d.id, d.identified, d.identifying = id, true, false
			if id.flushExt {
				d.flushCmd = aoe.ATAFlushCacheExt
			}
			if d.state == DeviceFound {
				d.setStateLocked(DeviceUp, d.ini.now())
			}
			d.mu.Unlock()
			close(d.ready)
			d.ini.notify()
			d.ini.log.Info("initiator: device identified", "device", d.name, "bytes", int64(id.sectors)*aoe.SectorSize,
				"model", id.model, "serial", id.serial, "lba48", id.lba48, "fua", id.fua, "flush_ext", id.flushExt)
			return
		}
		if ctx.Err() != nil {
			d.mu.Lock()
			d.identifying = false
			d.mu.Unlock()
			return
		}
		d.ini.log.Warn("initiator: identify failed; retrying", "device", d.name, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// shutdown fails everything in progress once Run has ended.
func (d *Device) shutdown() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.failAllLocked(ErrClosed)
	for _, f := range d.frames {
		if f.state == frameLingering {
			d.releaseFrameLocked(f)
		}
	}
}
