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
	addr
	ini *Initiator
	// ready is closed once IDENTIFY has succeeded.
	ready chan struct{}

	// mu guards the rest, the engine and the failover policy included.
	mu          sync.Mutex
	state       DeviceState
	since       time.Duration
	closed      bool
	id          identity
	identified  bool
	identifying bool

	// The Device is the block device: it checks requests, tracks the
	// device's state and identity, and hands requests to its engine,
	// which carries them in frames to the targets its failover policy
	// picks. Each sees the other through a small interface: paths for
	// the engine, inflight for the failover policy.
	engine   engine
	failover failover
	// events is the failover log, which all three write to.
	events eventLog
}

// addr is a device's AoE address and name, which its parts use in frames
// and logs.
type addr struct {
	shelf uint16
	slot  uint8
	name  string
}

func deviceName(shelf uint16, slot uint8) string { return fmt.Sprintf("e%d.%d", shelf, slot) }

func newDevice(i *Initiator, shelf uint16, slot uint8) *Device {
	a := addr{shelf: shelf, slot: slot, name: deviceName(shelf, slot)}
	pn, ok := i.cfg.DevicePolicies[a.name]
	if !ok {
		pn = i.cfg.Policy
	}
	if pn == "" {
		pn = PolicyFailover
	}
	p, _ := newPolicy(pn) // checked by New
	d := &Device{addr: a, ini: i, ready: make(chan struct{}), since: i.now()}
	d.engine = engine{addr: a, ini: i, events: &d.events, flushCmd: aoe.ATAFlushCache}
	d.failover = failover{addr: a, ini: i, events: &d.events, policy: p, policyName: pn}
	d.engine.paths, d.failover.frames = &d.failover, &d.engine
	return d
}

// Policy returns how the device uses its targets.
func (d *Device) Policy() Policy {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failover.policyName
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
	now := d.ini.now()
	if d.failover.setPolicy(np, p, now) {
		d.engine.pump(now)
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

// do hands a request to the engine and waits for it to finish.
func (d *Device) do(ctx context.Context, op opcode, buf []byte, lba uint64, sectors int, fua bool) error {
	d.mu.Lock()
	if err := d.admitLocked(op, lba, sectors); err != nil {
		d.mu.Unlock()
		if err == ErrOutOfRange {
			return fmt.Errorf("initiator: %s: %s of %d sectors at LBA %d: %w", d.name, op, sectors, lba, err)
		}
		return err
	}
	r := d.engine.newRequest(op, buf, lba, sectors, fua)
	if op == opFlush {
		r.flushTo = d.failover.takeDirty(r.flushTo)
		r.total = len(r.flushTo)
		if r.total == 0 {
			d.engine.putRequest(r)
			d.mu.Unlock()
			return nil
		}
	}
	now := d.ini.now()
	d.engine.beginBatch()
	d.engine.submit(r, now)
	d.engine.endBatch(now)
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
			d.engine.abandon(r, ctx.Err())
			d.mu.Unlock()
			return ctx.Err()
		}
		d.mu.Unlock()
		<-r.done
	}
	d.mu.Lock()
	err := d.engine.collect(r)
	d.mu.Unlock()
	return err
}

// beginReceive takes the device's mutex for a batch of received answers:
// the frames they make room for are queued, and leave together at
// endReceive.
func (d *Device) beginReceive() {
	d.mu.Lock()
	d.engine.beginBatch()
}

// endReceive sends what a receive batch queued and lets the mutex go.
func (d *Device) endReceive() {
	d.engine.endBatch(d.ini.now())
	d.mu.Unlock()
}

// receiveLocked takes an ATA response for this device, in a receive batch.
// It runs once per frame and allocates nothing unless the answer is an
// error.
func (d *Device) receiveLocked(l *link, fr *aoe.Frame) {
	now := d.ini.now()
	if t := d.engine.receive(l, fr, now); t != nil {
		d.backLocked(t, now)
	}
}

// configResponse adds or refreshes the target that sent a Query Config
// response for this device; announce says it was unsolicited (tag 0), as a
// target sends when it starts. rtt, unless negative, is how long the
// target took to answer our request. The first healthy target starts
// IDENTIFY.
func (d *Device) configResponse(l *link, mac aoe.MAC, c *aoe.Config, announce bool, rtt time.Duration) {
	d.mu.Lock()
	now := d.ini.now()
	t, isNew := d.failover.learn(l, mac, c, announce, rtt, now)
	d.engine.frameSectors = d.failover.maxSectors()
	how := "Query Config"
	if announce {
		how = "an announce"
	}
	d.failover.heard(t, now, how)
	d.backLocked(t, now)
	if announce {
		d.failover.announced(t, now)
	}
	identify := !d.identified && !d.identifying && t.healthy()
	if identify {
		d.identifying = true
	}
	state, maxSectors, window := t.state, t.maxSectors, t.window
	d.engine.pump(now)
	d.mu.Unlock()

	if isNew {
		d.ini.log.Info("initiator: found target", "device", d.name, "target", mac, "link", l.name,
			"state", state, "window", window, "sectors_per_frame", maxSectors, "firmware", c.FirmwareVersion)
		if maxSectors == 0 {
			d.ini.log.Warn("initiator: target unusable: link MTU too small for one sector", "device", d.name, "target", mac, "link", l.name, "mtu", l.MTU())
		}
	}
	if identify {
		ctx := d.ini.runContext()
		if ctx == nil {
			ctx = context.Background()
		}
		go d.identify(ctx)
	}
}

// backLocked brings a down device back, as target t answered.
func (d *Device) backLocked(t *target, now time.Duration) {
	if d.state != DeviceDown {
		return
	}
	d.setStateLocked(DeviceFound, now)
	if d.identified {
		d.setStateLocked(DeviceUp, now)
	}
	d.events.note(now, EventDeviceUp, t, "")
	d.ini.log.Info("initiator: device back", "device", d.name, "target", t.mac)
}

// downLocked marks the device down after DeadTimeout and fails all its
// I/O; it comes back when a target answers.
func (d *Device) downLocked(now time.Duration) {
	if d.state != DeviceDown {
		d.ini.log.Error("initiator: device down: no target answered", "device", d.name, "for", d.ini.cfg.DeadTimeout)
		d.events.note(now, EventDeviceDown, nil, fmt.Sprintf("no target answered for %v", d.ini.cfg.DeadTimeout))
	}
	d.setStateLocked(DeviceDown, now)
	d.engine.failAll(ErrTimeout)
}

func (d *Device) setStateLocked(s DeviceState, now time.Duration) {
	if d.state != s {
		d.state, d.since = s, now
	}
}

// scan runs the device's timers: the engine's retransmissions and fences,
// then the failover policy's, then sends what they made room for.
func (d *Device) scan(now time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.engine.beginBatch()
	for d.engine.scan(now) { // (once down, the device has no frame left to stop at)
		d.downLocked(now)
	}
	d.failover.scan(now)
	d.engine.pump(now)
	d.engine.endBatch(now)
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
			d.identifyDone(id)
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

// identifyDone records what IDENTIFY said and makes the device ready.
func (d *Device) identifyDone(id identity) {
	d.mu.Lock()
	d.setIdentityLocked(id)
	d.identifying = false
	if d.state == DeviceFound {
		d.setStateLocked(DeviceUp, d.ini.now())
	}
	d.mu.Unlock()
	close(d.ready)
	d.ini.notify()
	d.ini.log.Info("initiator: device identified", "device", d.name, "bytes", int64(id.sectors)*aoe.SectorSize,
		"model", id.model, "serial", id.serial, "lba48", id.lba48, "fua", id.fua, "flush_ext", id.flushExt)
}

// setIdentityLocked records the device's identity, which also says how
// the engine encodes its commands.
func (d *Device) setIdentityLocked(id identity) {
	d.id, d.identified = id, true
	d.engine.lba48 = id.lba48
	if id.flushExt {
		d.engine.flushCmd = aoe.ATAFlushCacheExt
	}
}

// shutdown fails everything in progress once Run has ended.
func (d *Device) shutdown() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.engine.failAll(ErrClosed)
	d.engine.releaseLingering()
}
