// Package initiator is ironaoe's engine: a userspace AoE initiator that
// finds AoE targets on a set of links and turns block reads, writes and
// flushes into ATA frames to them.
//
// An Initiator broadcasts Query Config on its links, groups the answers by
// shelf.slot into Devices, and keeps listening for unsolicited announces
// for as long as Run runs. A Device has one or more targets (a MAC reached
// through a link); its Policy picks which carry the I/O: PolicyFailover
// (the default) one active target with the others on standby,
// PolicyMultipath every healthy target.
//
// Frames carry tags with bit 31 set, which the Linux aoe driver ignores, so
// a kernel initiator on the same segment is not confused by our traffic.
// Each transmission of a frame gets its own tag, and an answer counts only
// if its tag and source MAC match a transmission still awaited, so stale,
// duplicate and misdirected answers are dropped. Retransmission follows an
// adaptive timeout (2*rttavg + 8*rttdev, as the Linux driver computes it)
// between Config.RTOMin and Config.RTOMax.
//
// # Failover
//
// A target that leaves a frame unanswered for Config.ScornTimeout is
// scorned: its frames move to a healthy target at once (under failover,
// the new active one), Query Config is broadcast to find survivors, and the
// scorned target is probed until it answers, which readmits it at once.
// A target that flaps is held off: scorned again soon after its
// readmission, it is readmitted only after twice the scorn timeout, then
// four times, and so on, and until it answers ATA again it is scorned after
// half the timeout; so one that answers Query Config but never ATA cannot
// capture I/O again and again.
//
// An announce (an unsolicited Query Config response, as a target sends when
// it starts) adds its target at once and resends the frames overdue on it
// (it may have restarted). The active targets are then probed with Query
// Config, which a target answers without waiting for its storage: one that
// answers nothing within a short grace (four times its Query Config round
// trip or RTOMin, whichever is longer: 40 ms on a LAN with the defaults) is
// scorned and the announcer takes over, even one held off for flapping.
// So when a cluster manager stops a target on one node and starts it on
// another, the I/O moves within tens of milliseconds of the new one's
// announce, whatever the scorn timeout and however slow the storage. Each
// device logs these events (DeviceStats.Events) and measures how long I/O
// stalled (DeviceStats.LastStall).
//
// # Write ordering
//
// No write is acknowledged before a target acknowledged every frame of it;
// frames in flight to a scorned target are sent again to another. A write
// that had to be retransmitted or moved may still have a copy on its way
// to, or queued in, a target after it completes. Until every copy is
// answered, or ScornTimeout passes after the frame's last transmission, a
// later write overlapping it waits (a fence), so that a stray old copy
// cannot land on top of newer data. Requests queued behind such a write
// pass it.
//
// This rests on a contract with targets: a target executes a frame within
// ScornTimeout of its sending, or never. Targets that are killed or fenced
// (a dead process executes nothing more), stopped gracefully (ironblade
// answers what it has read before it exits, and the frames left in its
// socket die with it) or restarted (a new process has a new socket) keep
// it. A target process that is paused (SIGSTOP, a frozen virtual machine)
// or stalled for longer than ScornTimeout with our frames queued, and that
// resumes after the I/O moved to another path to the same storage, breaks
// it: it then executes old writes, possibly over newer ones. No initiator
// can prevent that: a cluster must fence (kill) a node before the survivor
// serves, never merely pause it, and ScornTimeout should exceed the longest
// stall the storage has. The initiator reports the breach when the old
// target answers such a copy: an error log, DeviceStats.LateWrites and an
// EventLateWrite.
//
// Reads and writes must be aligned to 512-byte sectors: unaligned ones fail
// with ErrUnaligned rather than being read-modify-written.
package initiator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Config configures an Initiator. The zero value of each optional field
// picks the documented default.
type Config struct {
	// Links are the Ethernet links to find and reach targets on. The
	// Initiator owns them: Run closes them when it returns. Required.
	Links []aoe.Link
	// DiscoverInterval is how often Query Config is broadcast again on
	// every link, to find targets that did not announce themselves.
	// Default 60s, like the Linux driver. Besides, every scorn broadcasts
	// once, and a device with no healthy target searches from every
	// ScornTimeout, backing off to DiscoverInterval.
	DiscoverInterval time.Duration
	// ScornTimeout is how long a frame may wait on a target, across its
	// retransmissions, before the target is scorned and its frames move
	// to a healthy one: with a standby target running, the I/O stall
	// when the active one dies and nothing announces itself. It also
	// bounds how long a retransmitted write fences its sectors (see the
	// package documentation). Default 1s: a tenth of the Linux driver's
	// fixed 10 s, yet hundreds of round trips even for a busy target.
	// Lower means faster failover; it should stay above the longest
	// stall the storage has (a slow fsync), as a target stalled longer
	// is scorned while it may still execute the frames it holds.
	ScornTimeout time.Duration
	// RTOMin and RTOMax bound the adaptive retransmission timeout.
	// Defaults 10ms and 1s. A frame's timeout doubles with each
	// retransmission to the same target, up to RTOMax; a frame moved to
	// another target starts from that target's timeout, and a target not
	// used yet borrows the estimate of one that was.
	RTOMin, RTOMax time.Duration
	// DeadTimeout is how long a frame may go unanswered by every target
	// before its I/O fails with ErrTimeout and the device is marked down
	// (until a target answers again). Default 180s, the Linux driver's
	// aoe_deadsecs: long enough for a cluster manager to fence a node and
	// start the target on another (commonly tens of seconds), while a
	// SAN that is gone for good does not hang applications forever. A
	// file system that gets an error for a write may abort its journal or
	// remount read-only, so on a SAN a longer wait is the safer side;
	// negative means retry forever. Whatever sits in front (the kernel
	// NBD client's timeout) must wait at least as long.
	DeadTimeout time.Duration
	// MaxWindow caps the frames outstanding on one target, whatever
	// buffer count it advertises. Default 64 (the Linux driver's
	// aoe_maxout).
	MaxWindow int
	// Policy says how a device with several targets uses them. Default
	// PolicyFailover.
	Policy Policy
	// DevicePolicies overrides Policy for the devices it names, by their
	// names ("e1.0"). Device.SetPolicy changes a device's policy later.
	DevicePolicies map[string]Policy
	// Logger receives the initiator's logs. Default slog.Default().
	Logger *slog.Logger
}

// Defaults for Config fields left zero.
const (
	DefaultDiscoverInterval = 60 * time.Second
	DefaultScornTimeout     = time.Second
	DefaultRTOMin           = 10 * time.Millisecond
	DefaultRTOMax           = time.Second
	DefaultDeadTimeout      = 180 * time.Second
	DefaultMaxWindow        = 64
)

// queryMemory is how many of the latest Query Config requests the
// Initiator remembers the sending time of.
const queryMemory = 64

// sentQuery is a Query Config request the Initiator remembers.
type sentQuery struct {
	tag uint32
	at  time.Duration
}

// Initiator discovers AoE devices on its links and carries their I/O.
// Create one with New and start it with Run.
type Initiator struct {
	cfg   Config
	log   *slog.Logger
	links []*link
	start time.Time // origin of the monotonic clock, see now

	// devices maps deviceKey(shelf, slot) to its Device. Readers load it
	// without locking; writers copy it under mu.
	devices atomic.Pointer[map[uint32]*Device]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when devices change
	runCtx  context.Context
	running bool
	closed  bool

	// active counts frames outstanding or lingering, over all devices,
	// and checks the announce checks pending (see failover.announced);
	// the scanner sleeps while both are zero and wake rouses it.
	active, checks atomic.Int64
	wake           chan struct{}

	// queries are the latest Query Config requests sent, indexed by
	// their number (a tag's bits 0-30) modulo queryMemory.
	queryMu  sync.Mutex
	querySeq uint32
	queries  [queryMemory]sentQuery
}

// link is one of the Initiator's links with what it needs to know of it.
type link struct {
	aoe.Link
	name string
	mac  aoe.MAC
	// batch is the link as an aoe.BatchLink, or nil if it is not one.
	batch aoe.BatchLink
}

// New checks cfg and returns an Initiator that does nothing until Run.
func New(cfg Config) (*Initiator, error) {
	if len(cfg.Links) == 0 {
		return nil, errors.New("initiator: new: no links")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.DiscoverInterval, DefaultDiscoverInterval)
	def(&cfg.ScornTimeout, DefaultScornTimeout)
	def(&cfg.RTOMin, DefaultRTOMin)
	def(&cfg.RTOMax, DefaultRTOMax)
	def(&cfg.DeadTimeout, DefaultDeadTimeout)
	if cfg.MaxWindow == 0 {
		cfg.MaxWindow = DefaultMaxWindow
	}
	switch {
	case cfg.DiscoverInterval < 0 || cfg.ScornTimeout < 0 || cfg.RTOMin < 0 || cfg.RTOMax < 0:
		return nil, errors.New("initiator: new: negative interval or timeout")
	case cfg.RTOMin > cfg.RTOMax:
		return nil, fmt.Errorf("initiator: new: RTOMin %v above RTOMax %v", cfg.RTOMin, cfg.RTOMax)
	case cfg.MaxWindow < 1 || cfg.MaxWindow > maxFrames/2:
		return nil, fmt.Errorf("initiator: new: MaxWindow %d out of range 1-%d", cfg.MaxWindow, maxFrames/2)
	}
	if _, err := newPolicy(cfg.Policy); err != nil {
		return nil, fmt.Errorf("initiator: new: %w", err)
	}
	for name, p := range cfg.DevicePolicies {
		var shelf uint16
		var slot uint8
		if n, err := fmt.Sscanf(name, "e%d.%d", &shelf, &slot); n != 2 || err != nil || deviceName(shelf, slot) != name ||
			shelf == aoe.BroadcastMajor || slot == aoe.BroadcastMinor {
			return nil, fmt.Errorf("initiator: new: DevicePolicies: %q is not a device name like e1.0", name)
		}
		if _, err := newPolicy(p); err != nil {
			return nil, fmt.Errorf("initiator: new: DevicePolicies[%s]: %w", name, err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	i := &Initiator{
		cfg:     cfg,
		log:     cfg.Logger,
		start:   time.Now(),
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
	for n, l := range cfg.Links {
		if l == nil {
			return nil, fmt.Errorf("initiator: new: link %d is nil", n)
		}
		bl, _ := l.(aoe.BatchLink)
		i.links = append(i.links, &link{Link: l, name: linkName(l, n), mac: l.HardwareAddr(), batch: bl})
	}
	empty := map[uint32]*Device{}
	i.devices.Store(&empty)
	return i, nil
}

// linkName names a link for logs and Stats: its interface name when it
// tells one (as rawlink.Link does), else its position in Config.Links.
func linkName(l aoe.Link, n int) string {
	if named, ok := aoe.LinkAs[interface{ Interface() string }](l); ok {
		return named.Interface()
	}
	return fmt.Sprintf("link%d", n)
}

// now is the time since the Initiator was made, from the monotonic clock.
func (i *Initiator) now() time.Duration { return time.Since(i.start) }

// wallTime turns a reading of now back into a wall-clock time.
func (i *Initiator) wallTime(d time.Duration) time.Time {
	if d == 0 {
		return time.Time{}
	}
	return i.start.Add(d).Round(0)
}

// Run reads frames on every link, broadcasts discovery now and every
// Config.DiscoverInterval, and retransmits what goes unanswered, until ctx
// is done. It then closes the links, fails any I/O still in progress with
// ErrClosed and returns nil. It may be called once.
func (i *Initiator) Run(ctx context.Context) error {
	i.mu.Lock()
	if i.running || i.closed {
		i.mu.Unlock()
		return errors.New("initiator: run: already running or finished")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	i.running, i.runCtx = true, ctx
	i.mu.Unlock()

	var wg sync.WaitGroup
	for _, l := range i.links {
		wg.Go(func() { i.readLoop(ctx, l) })
	}
	wg.Go(func() { i.scanLoop(ctx) })
	wg.Go(func() { i.discoverLoop(ctx) })
	<-ctx.Done()
	for _, l := range i.links {
		if err := l.Close(); err != nil {
			i.log.Warn("initiator: close link", "link", l.name, "err", err)
		}
	}
	wg.Wait()

	i.mu.Lock()
	i.running, i.closed = false, true
	i.mu.Unlock()
	for _, d := range *i.devices.Load() {
		d.shutdown()
	}
	return nil
}

// readLoop handles every frame one link receives.
func (i *Initiator) readLoop(ctx context.Context, l *link) {
	// A batch as large as a target's default window takes a whole
	// window's answers in one call, and sends what they make room for in
	// one more.
	const batch = DefaultMaxWindow
	bufSize := func() int { return max(l.MTU()+aoe.EthernetHeaderLen, 9216+aoe.EthernetHeaderLen) }
	bufs := make([][]byte, batch)
	for n := range bufs {
		bufs[n] = make([]byte, bufSize())
	}
	lens := make([]int, batch)
	var lastErr time.Duration
	for {
		var n int
		var err error
		if l.batch != nil {
			n, err = l.batch.ReadFrames(bufs, lens)
		} else {
			lens[0], err = l.ReadFrame(bufs[0])
			n = 1
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A link error (interface down, say) should not spin: log
			// now and then, and retry after a pause.
			if now := i.now(); now-lastErr > 10*time.Second {
				lastErr = now
				i.log.Warn("initiator: read failed; retrying", "link", l.name, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		// Consecutive answers for one device are taken under one hold of
		// its mutex, and the frames they make room for leave together
		// when it is let go.
		var held *Device
		for k := 0; k < n; k++ {
			held = i.takeFrame(l, bufs[k][:lens[k]], held)
		}
		if held != nil {
			held.endReceive()
		}
		if want := bufSize(); len(bufs[0]) < want { // the MTU grew
			for k := range bufs {
				bufs[k] = make([]byte, want)
			}
		}
	}
}

// handleFrame dispatches one received frame.
func (i *Initiator) handleFrame(l *link, b []byte) {
	if d := i.takeFrame(l, b, nil); d != nil {
		d.endReceive()
	}
}

// takeFrame dispatches one received frame. held is a device whose mutex
// the caller holds, in a receive batch (see Device.beginReceive), or nil;
// takeFrame returns the one it holds afterwards, which the caller ends.
// It must not allocate for ATA responses: it runs once per frame.
func (i *Initiator) takeFrame(l *link, b []byte, held *Device) *Device {
	var f aoe.Frame
	// The version is not checked: vblade announces with version 0, and a
	// response's tag and source say enough.
	if f.UnmarshalBinary(b) != nil || !f.IsResponse() {
		return held
	}
	if f.Dst != l.mac && !f.Dst.IsMulticast() {
		return held // a promiscuous interface shows others' traffic too
	}
	switch f.Command {
	case aoe.CommandATA:
		if f.Tag&aoe.TagUserland == 0 {
			return held // a kernel initiator's, or a stray
		}
		d := i.lookup(f.Major, f.Minor)
		if d == nil {
			return held
		}
		if d != held {
			if held != nil {
				held.endReceive()
			}
			d.beginReceive()
		}
		d.receiveLocked(l, &f)
		return d
	case aoe.CommandQueryConfig:
		if held != nil {
			held.endReceive()
		}
		i.handleConfig(l, &f)
	}
	return nil
}

func deviceKey(shelf uint16, slot uint8) uint32 { return uint32(shelf)<<8 | uint32(slot) }

func (i *Initiator) lookup(shelf uint16, slot uint8) *Device {
	return (*i.devices.Load())[deviceKey(shelf, slot)]
}

// handleConfig takes a Query Config response, solicited or not: it adds the
// device and target it announces, or refreshes them.
func (i *Initiator) handleConfig(l *link, f *aoe.Frame) {
	if f.Major == aoe.BroadcastMajor || f.Minor == aoe.BroadcastMinor || f.Src.IsMulticast() || f.Src.IsZero() {
		return
	}
	if f.Flags&aoe.FlagError != 0 {
		i.log.Debug("initiator: Query Config refused", "device", deviceName(f.Major, f.Minor), "target", f.Src, "link", l.name, "err", f.Error)
		return
	}
	var c aoe.Config
	if err := c.UnmarshalBinary(f.Arg); err != nil {
		i.log.Debug("initiator: bad Query Config response", "target", f.Src, "link", l.name, "err", err)
		return
	}
	rtt, ok := i.queryAge(f.Tag, i.now())
	if !ok {
		rtt = -1
	}
	d := i.lookup(f.Major, f.Minor)
	if d == nil {
		d = i.addDevice(f.Major, f.Minor)
	}
	d.configResponse(l, f.Src, &c, f.Tag == 0, rtt)
}

// addDevice returns the device at shelf.slot, creating it.
func (i *Initiator) addDevice(shelf uint16, slot uint8) *Device {
	i.mu.Lock()
	defer i.mu.Unlock()
	old := *i.devices.Load()
	key := deviceKey(shelf, slot)
	if d := old[key]; d != nil {
		return d
	}
	d := newDevice(i, shelf, slot)
	m := make(map[uint32]*Device, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[key] = d
	i.devices.Store(&m)
	i.notifyLocked()
	i.log.Info("initiator: found device", "device", d.name)
	return d
}

// notify wakes callers of Device waiting for a change.
func (i *Initiator) notify() {
	i.mu.Lock()
	i.notifyLocked()
	i.mu.Unlock()
}

func (i *Initiator) notifyLocked() {
	close(i.changed)
	i.changed = make(chan struct{})
}

// Discover broadcasts Query Config on every link now and waits for answers
// for the given time (or until ctx is done). Run must be running to
// receive them. It fails only if the query could be sent on no link.
func (i *Initiator) Discover(ctx context.Context, wait time.Duration) error {
	i.mu.Lock()
	running := i.running
	i.mu.Unlock()
	if !running {
		return errors.New("initiator: discover: Run is not running to hear answers")
	}
	if err := i.broadcast(aoe.BroadcastMajor, aoe.BroadcastMinor); err != nil {
		return err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// broadcast sends a Query Config for shelf.slot (or the broadcast address)
// on every link.
func (i *Initiator) broadcast(shelf uint16, slot uint8) error {
	var errs []error
	for _, l := range i.links {
		if err := i.sendQuery(l, aoe.BroadcastMAC, shelf, slot); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(i.links) {
		return fmt.Errorf("initiator: discover: %w", errors.Join(errs...))
	}
	for _, err := range errs {
		i.log.Warn("initiator: discover", "err", err)
	}
	return nil
}

// sendQuery sends one Query Config read request.
func (i *Initiator) sendQuery(l *link, dst aoe.MAC, shelf uint16, slot uint8) error {
	var buf [aoe.MinFrameLen]byte
	f := aoe.Frame{
		Dst: dst, Src: l.mac,
		Header: aoe.Header{Version: aoe.Version, Major: shelf, Minor: slot, Command: aoe.CommandQueryConfig, Tag: i.queryTag()},
	}
	if _, err := f.MarshalHeaderTo(buf[:]); err != nil {
		return err
	}
	c := aoe.Config{Command: aoe.ConfigRead}
	if _, err := c.MarshalTo(buf[aoe.FrameHeaderLen:]); err != nil {
		return err
	}
	if err := l.WriteFrame(buf[:]); err != nil {
		return fmt.Errorf("query config on %s: %w", l.name, err)
	}
	return nil
}

// queryTag numbers a new Query Config request and notes when it leaves.
// The tag has aoe.TagUserland set, which keeps the Linux driver from
// taking the answers for its own, and the number in bits 0-30, so that an
// answer says which request it answers and so how long the target took
// (see queryAge).
func (i *Initiator) queryTag() uint32 {
	i.queryMu.Lock()
	defer i.queryMu.Unlock()
	i.querySeq = (i.querySeq + 1) &^ aoe.TagUserland
	tag := aoe.TagUserland | i.querySeq
	i.queries[i.querySeq%queryMemory] = sentQuery{tag: tag, at: i.now()}
	return tag
}

// queryAge returns how long before now the Query Config request with the
// given tag was sent, if it is one of the latest queryMemory.
func (i *Initiator) queryAge(tag uint32, now time.Duration) (time.Duration, bool) {
	if tag&aoe.TagUserland == 0 {
		return 0, false
	}
	i.queryMu.Lock()
	q := i.queries[(tag&^aoe.TagUserland)%queryMemory]
	i.queryMu.Unlock()
	if q.tag != tag || q.at > now {
		return 0, false
	}
	return now - q.at, true
}

func (i *Initiator) discoverLoop(ctx context.Context) {
	t := time.NewTicker(i.cfg.DiscoverInterval)
	defer t.Stop()
	for {
		if err := i.broadcast(aoe.BroadcastMajor, aoe.BroadcastMinor); err != nil && ctx.Err() == nil {
			i.log.Warn("initiator: discovery broadcast failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// scanTick is how often the scanner looks for frames to retransmit: a
// fraction of the smallest timeout, within [1ms, 20ms].
func (i *Initiator) scanTick() time.Duration {
	return min(max(i.cfg.RTOMin/4, time.Millisecond), 20*time.Millisecond)
}

// scanLoop retransmits, moves and expires frames. One goroutine scans every
// device's few frames each tick, rather than arming a timer per frame, and
// slows down while nothing is outstanding.
func (i *Initiator) scanLoop(ctx context.Context) {
	tick := i.scanTick()
	// Idle, it still looks now and then, to probe scorned targets.
	idle := min(i.cfg.ScornTimeout/2, 500*time.Millisecond)
	t := time.NewTimer(tick)
	defer t.Stop()
	for {
		if i.active.Load() == 0 && i.checks.Load() == 0 {
			t.Reset(idle)
			select {
			case <-ctx.Done():
				return
			case <-i.wake:
			case <-t.C:
			}
		}
		t.Reset(tick)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := i.now()
		for _, d := range *i.devices.Load() {
			d.scan(now)
		}
	}
}

// frameActivated counts a frame going outstanding and rouses the scanner.
func (i *Initiator) frameActivated() {
	if i.active.Add(1) == 1 {
		i.rouse()
	}
}

// rouse wakes the scanner if it sleeps.
func (i *Initiator) rouse() {
	select {
	case i.wake <- struct{}{}:
	default:
	}
}

func (i *Initiator) frameReleased() { i.active.Add(-1) }

// Devices returns the devices found so far, in no particular order.
func (i *Initiator) Devices() []*Device {
	m := *i.devices.Load()
	ds := make([]*Device, 0, len(m))
	for _, d := range m {
		ds = append(ds, d)
	}
	return ds
}

// Device returns the device at shelf.slot once it has been found and
// identified, waiting for that until ctx is done. Until the device answers
// it asks for it with Query Config on every link, at growing intervals, so
// it need not wait for the next discovery round. Run must be running.
func (i *Initiator) Device(ctx context.Context, shelf uint16, slot uint8) (*Device, error) {
	if shelf == aoe.BroadcastMajor || slot == aoe.BroadcastMinor {
		return nil, fmt.Errorf("initiator: device e%d.%d: not a device address", shelf, slot)
	}
	ask := time.NewTimer(0)
	defer ask.Stop()
	interval := 250 * time.Millisecond
	for {
		i.mu.Lock()
		changed, closed := i.changed, i.closed
		i.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		d := i.lookup(shelf, slot)
		if d != nil {
			select {
			case <-d.ready:
				return d, nil
			default:
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("initiator: device %s: %w", deviceName(shelf, slot), ctx.Err())
		case <-changed:
		case <-ask.C:
			// Ask again and again (backing off) while nothing answers: a
			// target may be starting up.
			if d == nil {
				if err := i.broadcast(shelf, slot); err != nil {
					i.log.Warn("initiator: device query", "device", deviceName(shelf, slot), "err", err)
				}
			}
			ask.Reset(interval)
			interval = min(2*interval, 5*time.Second)
		}
	}
}

// runContext returns Run's context, or nil before Run.
func (i *Initiator) runContext() context.Context {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.runCtx
}
