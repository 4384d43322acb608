package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ironblade/ironblade/aoe"
)

// Sizes of the frame buffers.
const (
	// minBufferMTU sizes frame buffers for jumbo frames even when the
	// link starts at a smaller MTU, so raising the MTU later pays.
	minBufferMTU = 9000
	// pageSize aligns the data of every frame buffer, so O_DIRECT
	// backends can read into and write from frames without a copy.
	pageSize = 4096
	// receiveBatch is how many frames one batched read may return. Small
	// batches answer the first requests of a burst sooner, so the
	// initiator sends its next ones while the loop serves the rest
	// instead of waiting for the whole burst: at queue depth 16 over veth
	// on 2 CPUs, 4 served 6-18% more requests per second than 16, with
	// the machine busier (measured with ironbench compare).
	receiveBatch = 4
)

// A Server is an AoE target serving one Backend as one shelf.slot. Create
// it with NewServer and run it with Serve.
type Server struct {
	cfg       Config
	log       *slog.Logger
	errLog    *limitedLog
	sectors   uint64 // capacity
	firmware  uint16
	identify  [aoe.SectorSize]byte
	statePath string
	counters  counters

	// stateMu serializes changes to the config string and the lists, and
	// their saving.
	stateMu      sync.Mutex
	configString []byte
	saveErr      error // the last save's failure, nil once one succeeds
	access       atomic.Pointer[access]

	mu     sync.Mutex
	active *session // the running Serve, if any
}

// NewServer checks cfg, fills in its defaults and loads the state kept in
// cfg.StateDir.
func NewServer(cfg Config) (*Server, error) {
	sectors, err := cfg.check()
	if err != nil {
		return nil, err
	}
	cfg.setDefaults()
	log := cfg.Logger.With("shelf", cfg.Shelf, "slot", cfg.Slot)
	s := &Server{
		cfg:      cfg,
		log:      log,
		errLog:   newLimitedLog(log, time.Second),
		sectors:  sectors,
		firmware: firmwareNumber(cfg.Version),
		// Without -s a write is acknowledged before it is durable: that
		// is a volatile write cache, and initiators should flush it.
		identify: identifyData(sectors, cfg.Serial, cfg.Version, !cfg.SyncWrites),
	}
	if cfg.StateDir != "" {
		s.statePath = statePath(cfg.StateDir, cfg.Shelf, cfg.Slot)
	}
	if err := s.loadInitialState(); err != nil {
		return nil, err
	}
	return s, nil
}

// check refuses a configuration the target cannot serve, and returns the
// backend's capacity in sectors.
func (cfg *Config) check() (sectors uint64, err error) {
	if cfg.Backend == nil {
		return 0, errors.New("target: config: no backend")
	}
	if cfg.Shelf == aoe.BroadcastMajor || cfg.Slot == aoe.BroadcastMinor {
		return 0, fmt.Errorf("target: config: address %d.%d is the broadcast address", cfg.Shelf, cfg.Slot)
	}
	n := cfg.Backend.Size() / aoe.SectorSize
	if n <= 0 {
		return 0, fmt.Errorf("target: config: backend of %d bytes holds no sector", cfg.Backend.Size())
	}
	if n > aoe.MaxLBA+1 {
		return 0, fmt.Errorf("target: config: backend of %d sectors is beyond LBA48", n)
	}
	if cfg.BufferCount != 0 && (cfg.BufferCount < 2 || cfg.BufferCount > MaxBufferCount) {
		return 0, fmt.Errorf("target: config: buffer count %d outside 2 to %d", cfg.BufferCount, MaxBufferCount)
	}
	if cfg.Workers < 0 {
		return 0, fmt.Errorf("target: config: %d workers", cfg.Workers)
	}
	if len(cfg.AllowedMACs) > MaxMACMask {
		return 0, fmt.Errorf("target: config: %d allowed MACs, at most %d", len(cfg.AllowedMACs), MaxMACMask)
	}
	for _, m := range cfg.AllowedMACs {
		if m.IsMulticast() || m.IsZero() {
			return 0, fmt.Errorf("target: config: allowed MAC %s is not a station address", m)
		}
	}
	return uint64(n), nil
}

// setDefaults fills in the fields of a checked configuration left zero.
func (cfg *Config) setDefaults() {
	if cfg.BufferCount == 0 {
		cfg.BufferCount = DefaultBufferCount
	}
	if cfg.Workers == 0 {
		cfg.Workers = cfg.BufferCount
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	if cfg.Serial == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "ironblade"
		}
		cfg.Serial = fmt.Sprintf("%d.%d:%s", cfg.Shelf, cfg.Slot, host)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
}

// request is one frame buffer: the receive loop reads a frame into it and
// builds the response in place, or hands it to a worker to do so; a write
// whose response waits for a sync goes on to the syncer.
type request struct {
	buf []byte // the frame is buf[:n]; the response is built in place
	n   int
	// f is the request's headers, decoded by execute; f.Arg aliases buf.
	f    aoe.Frame
	resp int  // response length
	sync bool // a write whose acknowledgement waits for a sync (counted in SyncedWrites)
	// alone is set when the request came by itself, in a read of one
	// frame: with nothing queued behind it, a durable write may hold
	// the loop for its device round trip.
	alone bool
	// received is when the loop read the frame (a session clock
	// reading), op the kind of request execute found: for the request
	// duration histogram.
	received int64
	op       timedOp
}

// session is the state of one Serve call.
type session struct {
	s           *Server
	link        aoe.Link
	batch       aoe.BatchLink // link, if it moves frames in batches
	nonblocking NonblockingBackend
	durable     DurableWriter // the backend, if it can make a write durable in one call
	mac         aoe.MAC
	maxSPF      int // sectors per frame the buffers can hold
	readBatch   int // the most frames the loop reads at once

	free   chan *request // buffers for the loop to read into
	slow   chan *request // requests for the workers
	stop   chan struct{} // closed when Serve starts to stop
	track  tracker       // frames read and not yet answered
	syncer *syncer
	clk    clock // times requests and syncs
}

// readDeadliner is implemented by links whose pending read can be ended
// without closing them.
type readDeadliner interface {
	SetReadDeadline(t time.Time) error
}

// Serve answers AoE requests from link until ctx is done. It announces the
// target first (and every AnnounceInterval). When ctx is done it stops
// reading, finishes the requests it holds, syncs the backend and returns
// nil. It returns an error if the link fails for good.
//
// One loop reads frames (in batches, if the link is a BatchLink), executes
// them and sends the responses (in one batch): a request goes from the
// link to its response without a hand-off between goroutines. Only I/O
// that waits for the device goes to Config.Workers workers (see
// NonblockingBackend), and the acknowledgements that wait for a sync to
// the syncer, which also answers FLUSH CACHE: so neither holds up the
// loop.
//
// To stop reading, Serve sets a read deadline if the link has a
// SetReadDeadline method, and otherwise closes the link once its requests
// are finished. A Server runs one Serve at a time.
func (s *Server) Serve(ctx context.Context, link aoe.Link) error {
	c, err := s.claim(link)
	if err != nil {
		return err
	}
	defer s.release()
	g := c.start()
	s.log.Info("serving", "mac", c.mac, "mtu", link.MTU(), "sectors_per_frame", c.sectorsPerFrame(),
		"sectors", s.sectors, "buffers", s.cfg.BufferCount, "workers", s.cfg.Workers,
		"sync_writes", s.cfg.SyncWrites, "read_only", s.cfg.ReadOnly)
	result, looped := c.announceUntil(ctx, g.loopDone)
	return c.shutdown(g, result, looped)
}

// claim makes a new session on link the server's running one, unless one
// is running.
func (s *Server) claim(link aoe.Link) (*session, error) {
	if link == nil {
		return nil, errors.New("target: serve: nil link")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active != nil {
		return nil, errors.New("target: serve: already serving")
	}
	c := s.newSession(link)
	s.active = c
	return c, nil
}

// release ends the running session's claim.
func (s *Server) release() {
	s.mu.Lock()
	s.active = nil
	s.mu.Unlock()
}

// goroutines are those of a running session, and how to stop them.
type goroutines struct {
	workers  sync.WaitGroup
	syncStop chan struct{} // closed to stop the syncer
	syncDone chan struct{} // closed when the syncer has stopped
	loopDone chan error    // the receive loop's result
}

// start starts the session's workers, syncer and receive loop.
func (c *session) start() *goroutines {
	g := &goroutines{
		syncStop: make(chan struct{}),
		syncDone: make(chan struct{}),
		loopDone: make(chan error, 1),
	}
	for range c.s.cfg.Workers {
		g.workers.Go(c.worker)
	}
	go func() {
		c.syncer.run(g.syncStop)
		close(g.syncDone)
	}()
	go func() {
		// The loop keeps one thread. Its reads block in the kernel, and
		// the scheduler would otherwise often resume it on another
		// thread, each move a futex wake-up and a context switch: at
		// queue depth 16 and 64 over veth, keeping it served about 15%
		// more requests per second (ironbench compare).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		g.loopDone <- c.loop()
	}()
	return g
}

// announceUntil announces the target now and every AnnounceInterval until
// ctx is done or the receive loop returns. It reports the loop's result
// and whether it returned.
func (c *session) announceUntil(ctx context.Context, loopDone <-chan error) (result error, looped bool) {
	s := c.s
	if err := c.announce(); err != nil {
		s.errLog.Error("announce", "announce failed", "err", err)
	}
	var tick <-chan time.Time
	if s.cfg.AnnounceInterval > 0 {
		t := time.NewTicker(s.cfg.AnnounceInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil, false
		case err := <-loopDone:
			return err, true
		case <-tick:
			if err := c.announce(); err != nil {
				s.errLog.Error("announce", "announce failed", "err", err)
			}
		}
	}
}

// shutdown stops a running session: it stops taking frames, lets the
// requests already taken finish (their responses are sent), answers the
// writes waiting for a sync, then makes everything durable. It returns
// the receive loop's result (if looped, the loop has returned it), joined
// with a failure of the final sync.
func (c *session) shutdown(g *goroutines, result error, looped bool) error {
	s := c.s
	close(c.stop)
	dl, interruptible := c.link.(readDeadliner)
	interruptible = interruptible && dl.SetReadDeadline(time.Now()) == nil
	c.track.stopAndWait()
	close(g.syncStop)
	<-g.syncDone
	if err := s.cfg.Backend.Sync(); err != nil {
		s.log.Error("final sync failed", "err", err)
		result = errors.Join(result, fmt.Errorf("target: serve: sync: %w", err))
	} else {
		s.counters.syncs.Add(1)
	}
	if !looped {
		if !interruptible {
			c.link.Close()
		}
		<-g.loopDone
	}
	if interruptible {
		_ = dl.SetReadDeadline(time.Time{})
	}
	close(c.slow)
	g.workers.Wait()
	s.log.Info("stopped serving")
	return result
}

// newSession allocates the buffers of one Serve.
func (s *Server) newSession(link aoe.Link) *session {
	c := &session{
		s:         s,
		link:      link,
		mac:       link.HardwareAddr(),
		stop:      make(chan struct{}),
		readBatch: 1,
		clk:       clock{epoch: time.Now()},
	}
	c.nonblocking, _ = s.cfg.Backend.(NonblockingBackend)
	c.durable, _ = s.cfg.Backend.(DurableWriter)
	if bl, ok := link.(aoe.BatchLink); ok {
		c.batch = bl
		c.readBatch = receiveBatch
	}
	// BufferCount requests can be at work while the loop holds a batch
	// of buffers to read into.
	count := s.cfg.BufferCount + c.readBatch
	bufLen := aoe.EthernetHeaderLen + max(link.MTU(), minBufferMTU)
	c.maxSPF = min((bufLen-ataHeadersLen)/aoe.SectorSize, 255)
	stride := (bufLen + pageSize - 1) / pageSize * pageSize
	slab := make([]byte, count*stride+pageSize)
	// Put the ATA data of every buffer on a page boundary.
	pad := (pageSize - int((uintptr(unsafe.Pointer(&slab[0]))+uintptr(ataHeadersLen))%pageSize)) % pageSize
	c.free = make(chan *request, count)
	c.slow = make(chan *request, count)
	for i := range count {
		start := pad + i*stride
		c.free <- &request{buf: slab[start : start+bufLen : start+bufLen]}
	}
	c.track.idle.L = &c.track.mu
	c.syncer = newSyncer(c, count)
	return c
}

// sectorsPerFrame is the most sectors one ATA request may move now: what
// the link's MTU allows, within what a buffer holds.
func (c *session) sectorsPerFrame() int {
	return min(aoe.SectorsPerFrame(c.link.MTU()), c.maxSPF)
}

// The receive loop passes through the scheduler every yieldInterval, well
// within the 10 ms after which the runtime preempts a goroutine that never
// does, and reads the clock for that every yieldCheck batches.
const (
	yieldInterval = 2 * time.Millisecond
	yieldCheck    = 16
)

// loop is the receive loop's state: its buffers and the scratch space of a
// batch.
type loop struct {
	c      *session
	held   []*request // buffers to read into
	bufs   [][]byte
	lens   []int
	out    [][]byte   // responses to send
	outOps []timedOp  // the ops of out's requests
	synced []*request // requests whose response waits for a sync
	slow   []*request // requests for the workers
}

// loop reads frames, executes them and sends their responses until the
// session stops (it returns nil) or the link fails for good.
func (c *session) loop() error {
	s := c.s
	lp := &loop{
		c:      c,
		held:   make([]*request, 0, c.readBatch),
		bufs:   make([][]byte, c.readBatch),
		lens:   make([]int, c.readBatch),
		out:    make([][]byte, 0, c.readBatch),
		outOps: make([]timedOp, 0, c.readBatch),
		synced: make([]*request, 0, c.readBatch),
		slow:   make([]*request, 0, c.readBatch),
	}
	defer lp.release()
	failures := 0
	lastYield := time.Now()
	for iter := 1; ; iter++ {
		if iter%yieldCheck == 0 {
			// The loop waits for frames in its own ppoll, never in
			// the scheduler, so without this the runtime's monitor
			// sees a goroutine running for 10 ms, preempts it and
			// polls again every 20 µs: thousands of wake-ups a second
			// on the target's CPU (docs/performance.md).
			if now := time.Now(); now.Sub(lastYield) >= yieldInterval {
				runtime.Gosched()
				lastYield = now
			}
		}
		if !lp.fill() {
			return nil
		}
		n, err := lp.read()
		if n > 0 {
			// One clock read per batch: its frames arrived together.
			received := c.clk.now()
			s.counters.framesIn.Add(uint64(n))
			s.counters.inFlight.Add(int64(n))
			if !c.track.acquire() {
				s.counters.dropped[dropShutdown].Add(uint64(n))
				s.counters.inFlight.Add(-int64(n))
				return nil
			}
			lp.serve(n, received)
			c.track.done()
		}
		if err == nil {
			failures = 0
			continue
		}
		select {
		case <-c.stop:
			return nil
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("target: read: %w", err)
		}
		var ne net.Error
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		// A transient failure (the interface went down, say): keep
		// trying, but not in a tight loop.
		failures++
		s.errLog.Error("read", "link read failed", "err", err)
		select {
		case <-time.After(time.Duration(min(failures, 100)) * 10 * time.Millisecond):
		case <-c.stop:
			return nil
		}
	}
}

// fill tops the loop's buffers up to a batch, waiting only if it has
// none. It reports false if the session stopped while it waited.
func (lp *loop) fill() bool {
	c := lp.c
	for len(lp.held) < c.readBatch {
		select {
		case r := <-c.free:
			lp.held = append(lp.held, r)
			continue
		default:
		}
		if len(lp.held) > 0 {
			return true
		}
		select {
		case r := <-c.free:
			lp.held = append(lp.held, r)
		case <-c.stop:
			return false
		}
	}
	return true
}

// read reads frames into the loop's buffers and returns how many.
func (lp *loop) read() (int, error) {
	c := lp.c
	if c.batch != nil {
		for i, r := range lp.held {
			lp.bufs[i] = r.buf
		}
		n, err := c.batch.ReadFrames(lp.bufs[:len(lp.held)], lp.lens)
		clear(lp.bufs)
		return max(0, min(n, len(lp.held))), err
	}
	n, err := c.link.ReadFrame(lp.held[0].buf)
	if err != nil {
		return 0, err
	}
	lp.lens[0] = n
	return 1, nil
}

// serve executes the first n frames the loop read at received. It hands
// the requests that would wait for the device to the workers and the
// writes waiting for a sync to the syncer, then sends the other
// responses. The buffers it hands over are replaced at the next fill.
func (lp *loop) serve(n int, received int64) {
	c := lp.c
	kept := 0
	for i := range n {
		r := lp.held[i]
		r.n = lp.lens[i]
		r.received = received
		// A link without batches reads one frame at a time, whatever
		// waits behind it.
		r.alone = n == 1 && c.batch != nil
		switch c.tryHandle(r) {
		case replyNow:
			lp.out = append(lp.out, r.buf[:r.resp])
			lp.outOps = append(lp.outOps, r.op)
		case replyAfterSync:
			lp.synced = append(lp.synced, r)
			continue
		case wouldBlock:
			lp.slow = append(lp.slow, r)
			continue
		}
		lp.held[kept] = r
		kept++
	}
	lp.held = append(lp.held[:kept], lp.held[n:]...)
	clear(lp.held[len(lp.held):cap(lp.held)])
	// The requests answered here, or dropped, leave the count in
	// flight now; the others when the workers or the syncer answer.
	answered := n - len(lp.slow) - len(lp.synced)
	if len(lp.slow) > 0 {
		c.track.add(len(lp.slow))
		for _, r := range lp.slow {
			c.slow <- r
		}
		clear(lp.slow)
		lp.slow = lp.slow[:0]
	}
	if len(lp.synced) > 0 {
		c.syncer.enqueue(lp.synced...)
		clear(lp.synced)
		lp.synced = lp.synced[:0]
	}
	if len(lp.out) > 0 {
		c.s.counters.observeBatch(lp.outOps, received, c.clk.now())
		c.sendAll(lp.out)
		clear(lp.out)
		lp.out = lp.out[:0]
		lp.outOps = lp.outOps[:0]
	}
	c.s.counters.inFlight.Add(-int64(answered))
}

// release returns the loop's buffers.
func (lp *loop) release() {
	for _, r := range lp.held {
		lp.c.free <- r
	}
	lp.held = lp.held[:0]
}

// worker executes the requests that wait for the device until the slow
// queue closes.
func (c *session) worker() {
	n := &c.s.counters
	for r := range c.slow {
		switch c.handle(r) {
		case replyNow:
			n.observeRequest(r.op, r.received, c.clk.now())
			c.send(r.buf[:r.resp])
			n.inFlight.Add(-1)
			c.free <- r
		case replyAfterSync:
			c.syncer.enqueue(r)
		default:
			n.inFlight.Add(-1)
			c.free <- r
		}
		c.track.done()
	}
}

// send transmits one response.
func (c *session) send(frame []byte) {
	if err := c.link.WriteFrame(frame); err != nil {
		c.s.counters.sendErrors.Add(1)
		c.s.errLog.Error("send", "send failed", "err", err)
		return
	}
	c.s.counters.framesOut.Add(1)
}

// sendAll transmits responses, in one call per batch if the link allows.
// A frame the link refuses is counted and skipped.
func (c *session) sendAll(frames [][]byte) {
	if c.batch == nil || len(frames) == 1 {
		for _, f := range frames {
			c.send(f)
		}
		return
	}
	for len(frames) > 0 {
		n, err := c.batch.WriteFrames(frames)
		n = max(0, min(n, len(frames)))
		c.s.counters.framesOut.Add(uint64(n))
		frames = frames[n:]
		if err != nil || n == 0 {
			c.s.counters.sendErrors.Add(1)
			c.s.errLog.Error("send", "send failed", "err", err)
			if len(frames) > 0 {
				frames = frames[1:]
			}
		}
	}
}

// Announce sends an unsolicited Query Config response (tag 0), as at
// start: to broadcast, or to each MAC of the mask list when it is not
// empty. It fails when the server is not serving.
func (s *Server) Announce() error {
	s.mu.Lock()
	c := s.active
	s.mu.Unlock()
	if c == nil {
		return errors.New("target: announce: not serving")
	}
	return c.announce()
}

// announce sends an unsolicited Query Config response (see Announce).
func (c *session) announce() error {
	s := c.s
	s.stateMu.Lock()
	str := s.configString
	s.stateMu.Unlock()
	var arg aoe.Config
	c.configArg(&arg, aoe.ConfigRead, str)
	frame := make([]byte, max(aoe.FrameHeaderLen+arg.Len(), aoe.MinFrameLen))
	n, err := arg.MarshalTo(frame[aoe.FrameHeaderLen:])
	if err != nil {
		return fmt.Errorf("target: announce: %w", err)
	}
	n += aoe.FrameHeaderLen
	hdr := aoe.Frame{Src: c.mac, Header: aoe.Header{
		Version: aoe.Version, Flags: aoe.FlagResponse, Major: s.cfg.Shelf, Minor: s.cfg.Slot, Command: aoe.CommandQueryConfig,
	}}
	dsts := s.access.Load().mask
	if len(dsts) == 0 {
		dsts = []aoe.MAC{aoe.BroadcastMAC}
	}
	var errs []error
	for _, dst := range dsts {
		hdr.Dst = dst
		if _, err := hdr.MarshalHeaderTo(frame); err != nil {
			return fmt.Errorf("target: announce: %w", err)
		}
		if err := c.link.WriteFrame(frame[:n]); err != nil {
			s.counters.sendErrors.Add(1)
			errs = append(errs, fmt.Errorf("target: announce to %s: %w", dst, err))
			continue
		}
		s.counters.framesOut.Add(1)
	}
	return errors.Join(errs...)
}

// tracker counts the work taken from the link and not yet answered (a
// batch in the loop, a request at a worker), so that stopping can wait
// for it.
type tracker struct {
	mu      sync.Mutex
	idle    sync.Cond
	n       int
	stopped bool
}

// acquire registers a piece of work, unless stopping has begun.
func (t *tracker) acquire() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.n++
	return true
}

// add registers n pieces of work handed on by one registered, which has not
// yet finished: so stopping waits for them too.
func (t *tracker) add(n int) {
	t.mu.Lock()
	t.n += n
	t.mu.Unlock()
}

// done unregisters a finished piece of work.
func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		t.idle.Broadcast()
	}
	t.mu.Unlock()
}

// stopAndWait refuses further work and waits for the registered.
func (t *tracker) stopAndWait() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	for t.n > 0 {
		t.idle.Wait()
	}
}
