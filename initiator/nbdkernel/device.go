package nbdkernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"sync"
	"time"

	"github.com/mdlayher/genetlink"
	"golang.org/x/sys/unix"
)

// AnyIndex as Config.Index lets the kernel pick the device: the first
// unconfigured /dev/nbdN, or a new one if all are in use.
const AnyIndex = -1

// DefaultBlockSize is the logical block size used when Config.BlockSize is
// zero: the 512-byte sector of AoE, so every AoE disk is exposed whole and
// any I/O the kernel sends maps onto whole AoE sectors.
const DefaultBlockSize = 512

// MaxConnections bounds Config.Connections.
const MaxConnections = 64

// Config describes a device to attach.
type Config struct {
	// Index is the N of /dev/nbdN, or AnyIndex. Note that the zero value
	// asks for /dev/nbd0.
	Index int
	// Size is the device size in bytes. It is rounded down to a multiple
	// of BlockSize.
	Size int64
	// BlockSize is the logical (and physical) block size the kernel
	// exposes: a power of two from 512 up to the page size (64 KiB on
	// kernels with large block size support). Zero means DefaultBlockSize.
	BlockSize int64
	// Timeout is how long a request may go unanswered before the kernel
	// gives up on the connection (NBD_ATTR_TIMEOUT, whole seconds, rounded
	// up): it marks the socket dead, requeues the request and announces
	// NBD_CMD_LINK_DEAD, after which the Device hands it a fresh socket.
	// Zero leaves the kernel default: warn every 30 s and keep waiting.
	Timeout time.Duration
	// DeadConnTimeout is how long the kernel holds new I/O while every
	// connection is dead, waiting for a reconnect
	// (NBD_ATTR_DEAD_CONN_TIMEOUT, whole seconds, rounded up). Zero
	// leaves the kernel default: fail such I/O at once. Since a Device
	// reconnects within moments, a few seconds avoids I/O errors across a
	// reconnect.
	DeadConnTimeout time.Duration
	// ServerFlags are the NBD transmission flags of the export Serve
	// serves (READ_ONLY, SEND_FLUSH, SEND_FUA, SEND_TRIM, CAN_MULTI_CONN,
	// ...). The kernel sends FLUSH only with SEND_FLUSH, FUA only with both
	// SEND_FLUSH and SEND_FUA, TRIM only with SEND_TRIM, and no writes with
	// READ_ONLY. HAS_FLAGS is added; the kernel does not need it.
	ServerFlags uint64
	// ClientFlags are ClientDestroyOnDisconnect and ClientDisconnectOnClose;
	// both are off by default, so the device behaves like one attached by
	// nbd-client: it stays until detached and then remains as an unused
	// /dev/nbdN.
	ClientFlags uint64
	// Connections is the number of sockets the kernel spreads requests
	// over (one blk-mq hardware queue each). Zero means 1. More than one
	// needs CAN_MULTI_CONN in ServerFlags: the kernel refuses otherwise.
	Connections int
	// Backend, if set, names the export (NBD_ATTR_BACKEND_IDENTIFIER): the
	// kernel shows it in /sys/block/nbdN/backend and refuses a reconfigure
	// that does not repeat it. Older kernels ignore it.
	Backend string
	// Serve serves the NBD transmission phase (no handshake: the kernel
	// starts sending requests at once, and never uses structured replies)
	// on our end of one connection, until the connection ends or ctx is
	// cancelled. It must return nil when the kernel sent NBD_CMD_DISC (a
	// requested disconnect) and an error when the connection ended in any
	// other way, end of file included: a nil return stops reconnecting.
	// It is called once per connection, concurrently for several.
	Serve func(ctx context.Context, conn net.Conn) error
	// Logger receives the device's events; nil discards them.
	Logger *slog.Logger
}

// normalize validates c and fills in its defaults.
func (c Config) normalize() (Config, error) {
	if c.Serve == nil {
		return c, errors.New("no Serve function")
	}
	if c.Index != AnyIndex {
		if err := checkIndex(c.Index); err != nil {
			return c, err
		}
	}
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.BlockSize < 512 || c.BlockSize > 64<<10 || bits.OnesCount64(uint64(c.BlockSize)) != 1 {
		return c, fmt.Errorf("block size %d is not a power of two from 512 to 65536", c.BlockSize)
	}
	if c.Size <= 0 {
		return c, fmt.Errorf("device size %d is not positive", c.Size)
	}
	if c.Size < c.BlockSize {
		return c, fmt.Errorf("device size %d is smaller than one %d-byte block", c.Size, c.BlockSize)
	}
	c.Size -= c.Size % c.BlockSize
	if c.Timeout < 0 || c.DeadConnTimeout < 0 {
		return c, errors.New("negative timeout")
	}
	if c.ServerFlags > 0xffff {
		return c, fmt.Errorf("server flags %#x do not fit the 16-bit NBD transmission flags", c.ServerFlags)
	}
	c.ServerFlags |= flagHasFlags
	if c.ClientFlags&^knownClientFlags != 0 {
		return c, fmt.Errorf("unknown client flags %#x", c.ClientFlags&^knownClientFlags)
	}
	if c.Connections == 0 {
		c.Connections = 1
	}
	if c.Connections < 0 || c.Connections > MaxConnections {
		return c, fmt.Errorf("connection count %d out of range 1..%d", c.Connections, MaxConnections)
	}
	if c.Connections > 1 && c.ServerFlags&flagCanMultiConn == 0 {
		return c, fmt.Errorf("%d connections need NBD_FLAG_CAN_MULTI_CONN in the server flags", c.Connections)
	}
	if len(c.Backend) > 255 {
		return c, errors.New("backend identifier longer than 255 bytes")
	}
	for i := range len(c.Backend) {
		if c.Backend[i] == 0 {
			return c, errors.New("backend identifier contains a NUL byte")
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// seconds converts a timeout to the kernel's whole seconds, rounding up.
func seconds(d time.Duration) uint64 {
	return uint64((d + time.Second - 1) / time.Second)
}

// Attach creates the socket pairs, hands their kernel ends to the nbd driver
// with NBD_CMD_CONNECT and starts serving ours; /dev/nbdN (see Device.Path)
// is usable when it returns. From then on the Device keeps the connections
// up: whenever the kernel drops one (NBD_CMD_LINK_DEAD, or our end ending
// with an error) it hands over a fresh socket with NBD_CMD_RECONFIGURE,
// until the device is detached. ctx bounds the attach only; it is checked
// before the kernel is asked, since a CONNECT cannot be taken back halfway.
func (c *Client) Attach(ctx context.Context, cfg Config) (*Device, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, fmt.Errorf("nbdkernel: attach: %w", err)
	}
	conn, fam, err := c.open()
	if err != nil {
		return nil, fmt.Errorf("nbdkernel: attach: %w", err)
	}
	defer conn.Close()

	// Join the multicast group before connecting, so that no LINK_DEAD
	// event is missed; the socket queues them until the supervisor reads.
	monitor := c.joinMonitor(fam, cfg.Logger)
	var pairs []pair
	fail := func(err error) (*Device, error) {
		closePairs(pairs)
		closeMonitor(monitor)
		return nil, fmt.Errorf("nbdkernel: attach: %w", err)
	}
	if pairs, err = newPairs(cfg.Connections); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	index, err := connect(conn, fam, cfg, kernelFDs(pairs))
	// The kernel has its own references now, or none if it failed.
	closeKernelEnds(pairs)
	if err != nil {
		return fail(err)
	}

	d := &Device{
		index:     index,
		client:    c,
		family:    fam,
		cfg:       cfg,
		log:       cfg.Logger.With("device", fmt.Sprintf("/dev/nbd%d", index)),
		monitor:   monitor,
		events:    make(chan event),
		detachReq: make(chan chan error),
		stopped:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	d.ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	d.log.Info("nbd device attached", "size", cfg.Size, "block_size", cfg.BlockSize,
		"connections", cfg.Connections, "server_flags", fmt.Sprintf("%#x", cfg.ServerFlags))
	st := &supervisor{d: d, links: make(map[uint64]*link)}
	for _, p := range pairs {
		st.start(p.conn)
	}
	if monitor != nil {
		d.wg.Add(1)
		go d.watch()
	}
	go st.run()
	return d, nil
}

// joinMonitor opens a connection subscribed to the nbd multicast group, or
// returns nil (logged) if that fails: the Device then still reconnects when
// a connection's Serve ends with an error, just without the kernel's hint.
func (c *Client) joinMonitor(fam genetlink.Family, log *slog.Logger) Conn {
	var group uint32
	found := false
	for _, g := range fam.Groups {
		if g.Name == multicastGroup {
			group, found = g.ID, true
		}
	}
	if !found {
		log.Warn("nbd family has no multicast group; not watching for dead links", "group", multicastGroup)
		return nil
	}
	mon, err := c.dial()
	if err != nil {
		log.Warn("cannot watch for dead links", "err", err)
		return nil
	}
	if err := mon.JoinGroup(group); err != nil {
		mon.Close()
		log.Warn("cannot watch for dead links", "err", err)
		return nil
	}
	return mon
}

// closeMonitor closes a monitor connection, if any.
func closeMonitor(mon Conn) {
	if mon != nil {
		mon.Close()
	}
}

// connect sends NBD_CMD_CONNECT and returns the index of the device.
func connect(conn Conn, fam genetlink.Family, cfg Config, fds []int) (int, error) {
	req := connectRequest{
		index:              cfg.Index,
		sizeBytes:          uint64(cfg.Size),
		blockSizeBytes:     uint64(cfg.BlockSize),
		timeoutSec:         seconds(cfg.Timeout),
		deadConnTimeoutSec: seconds(cfg.DeadConnTimeout),
		serverFlags:        cfg.ServerFlags,
		clientFlags:        cfg.ClientFlags,
		backend:            cfg.Backend,
		fds:                fds,
	}
	attrs, err := req.encode()
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	msgs, err := execute(conn, fam, cmdConnect, attrs)
	if err != nil {
		if cfg.Index != AnyIndex {
			return 0, fmt.Errorf("connect nbd%d: %w", cfg.Index, err)
		}
		return 0, fmt.Errorf("connect: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Command != cmdConnect {
			continue
		}
		index, err := decodeIndex(m.Data)
		if err != nil {
			return 0, fmt.Errorf("connect: decode reply: %w", err)
		}
		return index, nil
	}
	// The kernel connected but could not allocate its reply.
	if cfg.Index != AnyIndex {
		return cfg.Index, nil
	}
	return 0, errors.New("connect: the kernel did not report which device it connected")
}

// Device is an attached /dev/nbdN whose connections this process serves.
type Device struct {
	index  int
	client *Client
	family genetlink.Family
	cfg    Config
	log    *slog.Logger

	// ctx is given to Serve; cancel ends it when the device is torn down.
	ctx    context.Context
	cancel context.CancelFunc

	monitor   Conn            // joined to the multicast group, or nil
	events    chan event      // serve goroutines and the monitor to the supervisor
	detachReq chan chan error // Detach to the supervisor
	stopped   chan struct{}   // closed when the supervisor stops reading events
	done      chan struct{}   // closed when everything has ended
	wg        sync.WaitGroup  // serve goroutines and the monitor
}

// Index returns the N of /dev/nbdN.
func (d *Device) Index() int { return d.index }

// Path returns the device node, /dev/nbdN.
func (d *Device) Path() string { return fmt.Sprintf("/dev/nbd%d", d.index) }

// Wait blocks until the device has been detached — by Detach, by another
// process (Detach(index), nbd-client -d) or by the kernel tearing it down —
// and every goroutine it started has ended; then it returns nil. If ctx ends
// first it returns ctx's error and the device stays attached and served.
func (d *Device) Wait(ctx context.Context) error {
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Detach disconnects the device (NBD_CMD_DISCONNECT) and waits until its
// connections have been served to the end. Serve calls still running
// detachGrace later are cancelled. Detaching a device that is already gone
// does nothing.
func (d *Device) Detach() error {
	reply := make(chan error, 1)
	select {
	case d.detachReq <- reply:
	case <-d.done:
		return nil
	}
	err := <-reply
	<-d.done
	if err != nil {
		return fmt.Errorf("nbdkernel: detach %s: %w", d.Path(), err)
	}
	return nil
}

// Timings of the supervisor.
const (
	// minRepairDelay lets the kernel notice a dead socket (and our own
	// end's goroutine finish) before a repair counts what is still alive.
	minRepairDelay = 50 * time.Millisecond
	// maxRepairDelay caps the back-off between repairs that do not stick.
	maxRepairDelay = 5 * time.Second
	// repairQuiet is how long without repairs resets the back-off.
	repairQuiet = 30 * time.Second
	// detachGrace is how long Serve calls get to end after a disconnect
	// before they are cancelled.
	detachGrace = 5 * time.Second
)

// eventKind says what an event reports.
type eventKind int

const (
	evServeEnded eventKind = iota // a Serve call returned
	evLinkDead                    // the kernel announced a dead link of ours
	evResync                      // multicast events may have been lost
)

// event is a message to the supervisor.
type event struct {
	kind eventKind
	id   uint64 // evServeEnded: which link
	err  error  // evServeEnded: what Serve returned
}

// send delivers ev to the supervisor unless it has stopped.
func (d *Device) send(ev event) {
	select {
	case d.events <- ev:
	case <-d.stopped:
	}
}

// watch reads the multicast group and reports LINK_DEAD events for this
// device.
func (d *Device) watch() {
	defer d.wg.Done()
	for {
		msgs, _, err := d.monitor.Receive()
		if err != nil {
			select {
			case <-d.stopped:
				return
			default:
			}
			if errors.Is(err, unix.ENOBUFS) {
				d.send(event{kind: evResync})
				continue
			}
			d.log.Warn("stopped watching for dead links", "err", err)
			return
		}
		for _, m := range msgs {
			if m.Header.Command != cmdLinkDead {
				continue
			}
			index, err := decodeIndex(m.Data)
			if err != nil {
				d.log.Debug("undecodable LINK_DEAD event", "err", err)
				continue
			}
			if index == d.index {
				d.send(event{kind: evLinkDead})
			}
		}
	}
}

// link is one connection: our end of a socket the kernel holds.
type link struct {
	id   uint64
	conn *net.UnixConn
	dead bool // its peer hung up: no longer counts as live
}

// supervisor keeps the device's connections up. Its state belongs to the
// goroutine running run.
type supervisor struct {
	d        *Device
	links    map[uint64]*link // every link whose Serve is still running
	nextID   uint64
	draining bool // a disconnect is under way: no more repairs
	gone     bool // the kernel no longer has the device configured
	delay    time.Duration
	lastTry  time.Time // last repair attempt
	timer    *time.Timer
	timerC   <-chan time.Time
}

// start serves c in a new goroutine.
func (s *supervisor) start(c *net.UnixConn) {
	s.nextID++
	l := &link{id: s.nextID, conn: c}
	s.links[l.id] = l
	d := s.d
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := d.cfg.Serve(d.ctx, c)
		c.Close()
		d.send(event{kind: evServeEnded, id: l.id, err: err})
	}()
}

// live counts the links not known to be dead.
func (s *supervisor) live() int {
	n := 0
	for _, l := range s.links {
		if !l.dead {
			n++
		}
	}
	return n
}

// run is the supervisor's loop.
func (s *supervisor) run() {
	d := s.d
	var force <-chan time.Time
	forced := false
	for !s.draining || len(s.links) > 0 {
		if s.draining && !forced && force == nil {
			t := time.NewTimer(detachGrace)
			defer t.Stop()
			force = t.C
		}
		select {
		case ev := <-d.events:
			s.handle(ev)
		case reply := <-d.detachReq:
			reply <- s.detach()
		case <-s.timerC:
			s.timerC = nil
			s.tick()
		case <-force:
			force, forced = nil, true
			d.log.Warn("connections still served after disconnect; cancelling them")
			s.closeAll()
		}
	}
	s.finish()
}

// handle processes one event.
func (s *supervisor) handle(ev event) {
	d := s.d
	switch ev.kind {
	case evServeEnded:
		l := s.links[ev.id]
		delete(s.links, ev.id)
		switch {
		case s.draining:
		case l != nil && l.dead:
			// Already written off and replaced by repair.
		case ev.err == nil:
			d.log.Info("kernel disconnected the device")
			s.draining = true
		default:
			d.log.Warn("connection ended; reconnecting", "err", ev.err)
			s.scheduleRepair()
		}
	case evLinkDead:
		if !s.draining {
			d.log.Warn("kernel reports a dead connection; reconnecting")
			s.scheduleRepair()
		}
	case evResync:
		if !s.draining {
			d.log.Debug("multicast overrun; checking connections")
			s.scheduleRepair()
		}
	}
}

// scheduleRepair arms the repair timer unless it is armed. Repairs that
// follow each other within repairQuiet back off exponentially, so a link
// that fails again at once is not hammered.
func (s *supervisor) scheduleRepair() {
	if s.timerC != nil {
		return
	}
	if time.Since(s.lastTry) > repairQuiet {
		s.delay = minRepairDelay
	} else {
		s.delay = min(2*s.delay, maxRepairDelay)
	}
	if s.timer == nil {
		s.timer = time.NewTimer(s.delay)
	} else {
		s.timer.Reset(s.delay)
	}
	s.timerC = s.timer.C
}

// tick repairs the connections, and tries again later while that is not
// done.
func (s *supervisor) tick() {
	if s.draining {
		return
	}
	s.lastTry = time.Now()
	s.repair()
	switch {
	case s.gone:
		s.d.log.Info("device no longer configured in the kernel")
		s.draining = true
		s.closeAll()
	case s.live() < s.d.cfg.Connections:
		s.scheduleRepair()
	}
}

// repair hands the kernel a fresh socket for each connection that died.
func (s *supervisor) repair() {
	d := s.d
	for _, l := range s.links {
		if !l.dead && peerHungUp(l.conn) {
			// Our end may be stuck in a backend call; the kernel has
			// moved on, so stop counting it and unblock its Serve.
			l.dead = true
			l.conn.Close()
		}
	}
	need := d.cfg.Connections - s.live()
	if need <= 0 {
		return
	}
	conn, err := d.client.dial()
	if err != nil {
		d.log.Warn("reconnect: dial generic netlink", "err", err)
		return
	}
	defer conn.Close()
	st, err := status(conn, d.family, d.index)
	switch {
	case errors.Is(err, ErrNoDevice):
		s.gone = true
		return
	case err != nil:
		d.log.Warn("reconnect: status", "err", err)
		return
	case !st.Connected:
		s.gone = true
		return
	}
	pairs, err := newPairs(need)
	if err != nil {
		d.log.Warn("reconnect", "err", err)
		return
	}
	err = reconfigure(conn, d.family, d.index, d.cfg.Backend, kernelFDs(pairs))
	closeKernelEnds(pairs)
	if err != nil {
		closePairs(pairs)
		d.log.Warn("reconnect: reconfigure", "err", err)
		return
	}
	// The kernel takes a socket only in place of a dead one and silently
	// drops the rest; a dropped socket is released by now, which hangs up
	// our end of it.
	taken := 0
	for _, p := range pairs {
		if peerHungUp(p.conn) {
			p.conn.Close()
			continue
		}
		s.start(p.conn)
		taken++
	}
	d.log.Info("reconnected", "sockets", taken, "offered", need)
}

// detach disconnects the device on behalf of Detach.
func (s *supervisor) detach() error {
	if s.draining {
		return nil
	}
	s.draining = true
	d := s.d
	conn, err := d.client.dial()
	if err == nil {
		defer conn.Close()
		err = disconnect(conn, d.family, d.index)
	}
	if err != nil {
		// Without the kernel's NBD_CMD_DISC our Serve calls would wait
		// forever; end them here.
		s.closeAll()
	}
	return err
}

// closeAll cancels every Serve call and closes its connection.
func (s *supervisor) closeAll() {
	s.d.cancel()
	for _, l := range s.links {
		l.conn.Close()
	}
}

// finish releases everything once no Serve call is left.
func (s *supervisor) finish() {
	d := s.d
	close(d.stopped)
	if s.timer != nil {
		s.timer.Stop()
	}
	closeMonitor(d.monitor)
	d.cancel()
	d.wg.Wait()
	d.log.Info("nbd device detached")
	close(d.done)
}
