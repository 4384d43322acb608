package aoetest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// ClientOptions configures a Client. The zero value gives the defaults.
type ClientOptions struct {
	// Timeout is how long one transmission of a request waits for its
	// answer before it is sent again. Zero means one second.
	Timeout time.Duration
	// Retries is how many times a request is sent again after its first
	// transmission timed out. Zero means 3; a negative value means none.
	Retries int
	// TagBase is added to the client's tag sequence, so that tests can
	// tell the tags of two clients apart. Every tag has aoe.TagUserland
	// set regardless (see Client).
	TagBase uint32
}

// backlogLen is how many unclaimed frames a Client keeps for Expect.
const backlogLen = 64

// A Client is a small AoE initiator for tests and load generation. It sends
// requests with unique tags, retransmits them when their answer is late,
// and matches answers by tag and source address. Tags always have
// aoe.TagUserland set (the half the Linux aoe driver leaves to userland
// tools), so a Client on a segment shared with a kernel initiator does not
// confuse it.
//
// One goroutine reads the link. Frames that answer no pending request are
// kept (up to 64, the oldest dropped first) for Expect, except late or
// duplicate answers to the client's own tags, which are discarded.
//
// ReadAt, WriteAt and the requests behind them reuse their frame buffers,
// so a steady stream of them does not allocate. A Client is safe for
// concurrent use.
type Client struct {
	link    aoe.Link
	mac     aoe.MAC
	timeout time.Duration
	retries int
	tagBase uint32
	tagSeq  atomic.Uint32

	mu         sync.Mutex
	pending    map[uint32]*call
	collectors map[uint32]chan aoe.Frame // Discover's broadcast queries
	freeCalls  []*call
	freeOps    []*op

	wmu      sync.Mutex // guards backlog and watchers
	backlog  []aoe.Frame
	watchers []*watcher

	closeOnce  sync.Once
	closeErr   error
	closing    atomic.Bool
	stopped    chan struct{} // closed when the reader goroutine returns
	stoppedErr error         // why it returned; set before stopped is closed
}

// NewClient starts a client on link; its reader goroutine runs until
// Close.
func NewClient(link aoe.Link, opts ClientOptions) *Client {
	c := &Client{
		link:       link,
		mac:        link.HardwareAddr(),
		timeout:    opts.Timeout,
		retries:    opts.Retries,
		tagBase:    opts.TagBase,
		pending:    make(map[uint32]*call),
		collectors: make(map[uint32]chan aoe.Frame),
		stopped:    make(chan struct{}),
	}
	if c.timeout <= 0 {
		c.timeout = time.Second
	}
	switch {
	case c.retries == 0:
		c.retries = 3
	case c.retries < 0:
		c.retries = 0
	}
	go c.readLoop()
	return c
}

// HardwareAddr reports the address the client sends from.
func (c *Client) HardwareAddr() aoe.MAC { return c.mac }

// Close closes the link, stops the reader and fails requests in flight
// with an error that wraps net.ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.closeErr = c.link.Close()
	})
	<-c.stopped
	return c.closeErr
}

// nextTag returns a fresh tag with aoe.TagUserland set.
func (c *Client) nextTag() uint32 {
	return aoe.TagUserland | (c.tagBase+c.tagSeq.Add(1))&(aoe.TagUserland-1)
}

// A Device is an AoE target as seen through a Query Config answer.
type Device struct {
	// MAC is the address the target answered from.
	MAC   aoe.MAC
	Shelf uint16
	Slot  uint8
	// Config is the target's Query Config answer; its String is a copy
	// the Device owns.
	Config aoe.Config
	// SectorsPerFrame is the most sectors one ATA command carries: the
	// target's figure, lowered to what the client's link MTU allows.
	SectorsPerFrame int
	// Sectors is the device's size in 512-byte sectors, filled in by
	// Identify.
	Sectors uint64
}

// String names the device the way the Linux driver does (e<shelf>.<slot>)
// with the address it answers from.
func (d Device) String() string {
	return fmt.Sprintf("e%d.%d@%v", d.Shelf, d.Slot, d.MAC)
}

// DeviceFrom makes a Device from a Query Config answer, such as a target's
// announce caught with Expect.
func (c *Client) DeviceFrom(f *aoe.Frame) (Device, error) {
	if f.Command != aoe.CommandQueryConfig || !f.IsResponse() {
		return Device{}, fmt.Errorf("aoetest: device from %v frame: not a Query Config answer", f.Command)
	}
	if f.Flags&aoe.FlagError != 0 {
		return Device{}, fmt.Errorf("aoetest: device from config answer: %w", f.Error)
	}
	var cfg aoe.Config
	if err := cfg.UnmarshalBinary(f.Arg); err != nil {
		return Device{}, fmt.Errorf("aoetest: device from config answer: %w", err)
	}
	cfg.String = bytes.Clone(cfg.String)
	spf := min(int(cfg.SectorCount), aoe.SectorsPerFrame(c.link.MTU()))
	return Device{MAC: f.Src, Shelf: f.Major, Slot: f.Minor, Config: cfg, SectorsPerFrame: spf}, nil
}

// Discover broadcasts a Query Config read to every shelf and slot and
// collects the answers that arrive within wait, one Device per address,
// shelf and slot, sorted by shelf, slot and address. If ctx ends first, it
// returns what it found with ctx's error.
func (c *Client) Discover(ctx context.Context, wait time.Duration) ([]Device, error) {
	tag := c.nextTag()
	answers := make(chan aoe.Frame, 256)
	c.mu.Lock()
	c.collectors[tag] = answers
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.collectors, tag)
		c.mu.Unlock()
	}()

	var b [aoe.FrameHeaderLen + aoe.ConfigHeaderLen]byte
	f := aoe.Frame{Dst: aoe.BroadcastMAC, Src: c.mac, Header: aoe.Header{
		Version: aoe.Version, Major: aoe.BroadcastMajor, Minor: aoe.BroadcastMinor, Command: aoe.CommandQueryConfig, Tag: tag}}
	if _, err := f.MarshalHeaderTo(b[:]); err != nil {
		return nil, fmt.Errorf("aoetest: discover: %w", err)
	}
	if err := c.link.WriteFrame(b[:]); err != nil {
		return nil, fmt.Errorf("aoetest: discover: %w", err)
	}

	timer := time.NewTimer(wait)
	defer timer.Stop()
	type key struct {
		mac   aoe.MAC
		shelf uint16
		slot  uint8
	}
	seen := make(map[key]bool)
	var devs []Device
	sorted := func() []Device {
		slices.SortFunc(devs, func(a, b Device) int {
			return cmp.Or(cmp.Compare(a.Shelf, b.Shelf), cmp.Compare(a.Slot, b.Slot), bytes.Compare(a.MAC[:], b.MAC[:]))
		})
		return devs
	}
	for {
		select {
		case f := <-answers:
			d, err := c.DeviceFrom(&f)
			k := key{d.MAC, d.Shelf, d.Slot}
			if err != nil || seen[k] {
				continue
			}
			seen[k] = true
			devs = append(devs, d)
		case <-timer.C:
			return sorted(), nil
		case <-ctx.Done():
			return sorted(), fmt.Errorf("aoetest: discover: %w", ctx.Err())
		case <-c.stopped:
			return sorted(), fmt.Errorf("aoetest: discover: %w", c.stoppedErr)
		}
	}
}

// Do sends one request to dst and waits for its answer, retransmitting it
// when an answer is late. The client sets h.Tag; a zero h.Version is sent
// as aoe.Version; the other fields of h and arg go out as given. The answer
// must come from dst (any address if dst is a group address) with the
// request's tag and command. It is returned as a copy the caller owns,
// together with an error if it reports one: the aoe.Error of an answer
// with the error flag (test it with errors.Is), or an *ATAError for an ATA
// command whose status has ERR or DF set.
func (c *Client) Do(ctx context.Context, dst aoe.MAC, h aoe.Header, arg []byte) (aoe.Frame, error) {
	if h.Version == 0 {
		h.Version = aoe.Version
	}
	o := c.getOp(1)
	defer c.putOp(o)
	cl := c.getCall(aoe.FrameHeaderLen + len(arg))
	req := aoe.Frame{Dst: dst, Src: c.mac, Header: h}
	if _, err := req.MarshalHeaderTo(cl.tx); err != nil {
		c.putCall(cl)
		return aoe.Frame{}, fmt.Errorf("aoetest: %v request: %w", h.Command, err)
	}
	copy(cl.tx[aoe.FrameHeaderLen:], arg)
	if err := o.start(cl); err != nil {
		o.cancel()
		return aoe.Frame{}, fmt.Errorf("aoetest: %v to %v: %w", h.Command, dst, err)
	}
	cl, err := o.wait(ctx)
	if err != nil {
		o.cancel()
		return aoe.Frame{}, fmt.Errorf("aoetest: %v to e%d.%d@%v: %w", h.Command, h.Major, h.Minor, dst, err)
	}
	var resp aoe.Frame
	err = resp.UnmarshalBinary(bytes.Clone(cl.rx))
	c.putCall(cl)
	if err != nil {
		return aoe.Frame{}, fmt.Errorf("aoetest: %v answer: %w", h.Command, err)
	}
	return resp, answerError(&resp, arg)
}

// answerError turns the error an answer reports, if any, into a Go error.
// arg is the request's argument.
func answerError(f *aoe.Frame, arg []byte) error {
	if f.Flags&aoe.FlagError != 0 {
		return fmt.Errorf("aoetest: %v to e%d.%d@%v: %w", f.Command, f.Major, f.Minor, f.Src, f.Error)
	}
	if f.Command != aoe.CommandATA {
		return nil
	}
	var req, resp aoe.ATA
	_ = req.UnmarshalBinary(arg) // only for the error message
	if err := resp.UnmarshalBinary(f.Arg); err != nil {
		return fmt.Errorf("aoetest: ATA answer from e%d.%d@%v: %w", f.Major, f.Minor, f.Src, err)
	}
	if err := ataStatus(&req, &resp); err != nil {
		return fmt.Errorf("aoetest: ATA to e%d.%d@%v: %w", f.Major, f.Minor, f.Src, err)
	}
	return nil
}

// ATAError is an ATA command that a target completed with ERR or DF set in
// its status register.
type ATAError struct {
	// Command is the ATA command register of the request.
	Command uint8
	// Status and Err are the status and error registers of the answer.
	Status, Err uint8
	// LBA is the address the request gave.
	LBA uint64
}

// Error describes the failed command and the registers' bits.
func (e *ATAError) Error() string {
	var bits []string
	for _, b := range []struct {
		mask uint8
		name string
	}{{aoe.ATAErrorABRT, "ABRT"}, {aoe.ATAErrorIDNF, "IDNF"}, {aoe.ATAErrorUNC, "UNC"}} {
		if e.Err&b.mask != 0 {
			bits = append(bits, b.name)
		}
	}
	return fmt.Sprintf("ATA command %#02x at LBA %d failed: status %#02x, error %#02x %v",
		e.Command, e.LBA, e.Status, e.Err, bits)
}

// ataStatus checks an ATA answer's registers.
func ataStatus(req, resp *aoe.ATA) error {
	if resp.CmdStatus&(aoe.ATAStatusError|aoe.ATAStatusDF) != 0 {
		return &ATAError{Command: req.CmdStatus, Status: resp.CmdStatus, Err: resp.FeatureError, LBA: req.LBA}
	}
	return nil
}

// ATA sends an ATA command to d and returns the answer's registers and a
// copy of its data (with any Ethernet padding). A status with ERR or DF
// set gives an *ATAError along with the answer.
func (c *Client) ATA(ctx context.Context, d Device, a aoe.ATA) (aoe.ATA, error) {
	arg, err := a.MarshalBinary()
	if err != nil {
		return aoe.ATA{}, fmt.Errorf("aoetest: ATA to %v: %w", d, err)
	}
	f, err := c.Do(ctx, d.MAC, aoe.Header{Major: d.Shelf, Minor: d.Slot, Command: aoe.CommandATA}, arg)
	var resp aoe.ATA
	if f.Arg != nil {
		if derr := resp.UnmarshalBinary(f.Arg); derr != nil && err == nil {
			err = fmt.Errorf("aoetest: ATA answer from %v: %w", d, derr)
		}
	}
	return resp, err
}

// Identify sends ATA IDENTIFY DEVICE to d, sets d.Sectors from the answer
// (words 100-103 if word 83 or 86 reports LBA48, else words 60-61) and
// returns the 512-byte identify data.
func (c *Client) Identify(ctx context.Context, d *Device) ([]byte, error) {
	resp, err := c.ATA(ctx, *d, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})
	if err != nil {
		return nil, fmt.Errorf("aoetest: identify: %w", err)
	}
	if len(resp.Data) < aoe.SectorSize {
		return nil, fmt.Errorf("aoetest: identify %v: %d bytes of data: %w", d, len(resp.Data), aoe.ErrShort)
	}
	id := resp.Data[:aoe.SectorSize:aoe.SectorSize]
	word := func(i int) uint16 { return binary.LittleEndian.Uint16(id[2*i:]) }
	if (word(83)|word(86))&(1<<10) != 0 {
		d.Sectors = binary.LittleEndian.Uint64(id[200:]) & aoe.MaxLBA
	} else {
		d.Sectors = uint64(binary.LittleEndian.Uint32(id[120:]))
	}
	return id, nil
}

// ReadAt reads len(p) bytes at byte offset off of d with READ SECTORS EXT,
// d.SectorsPerFrame sectors a frame and up to qd frames outstanding. off
// and len(p) must be multiples of 512. On error, p holds an unspecified
// part of the data.
func (c *Client) ReadAt(ctx context.Context, d Device, p []byte, off int64, qd int) error {
	return c.transfer(ctx, d, p, off, qd, false)
}

// WriteAt writes p at byte offset off of d with WRITE SECTORS EXT, like
// ReadAt.
func (c *Client) WriteAt(ctx context.Context, d Device, p []byte, off int64, qd int) error {
	return c.transfer(ctx, d, p, off, qd, true)
}

// Flush sends FLUSH CACHE EXT (0xEA) to d.
func (c *Client) Flush(ctx context.Context, d Device) error {
	if _, err := c.ATA(ctx, d, aoe.ATA{Flags: aoe.ATAFlagExtended, CmdStatus: aoe.ATAFlushCacheExt}); err != nil {
		return fmt.Errorf("aoetest: flush: %w", err)
	}
	return nil
}

// SendRaw writes frame to the link as it is, for tests of bad input.
func (c *Client) SendRaw(frame []byte) error {
	if err := c.link.WriteFrame(frame); err != nil {
		return fmt.Errorf("aoetest: send raw: %w", err)
	}
	return nil
}

// IsAnnouncement returns a match for Expect that accepts a target's
// announcement from the address from: an unsolicited Query Config answer,
// which has tag 0.
func IsAnnouncement(from aoe.MAC) func(*aoe.Frame) bool {
	return func(f *aoe.Frame) bool {
		return f.Src == from && f.IsResponse() && f.Command == aoe.CommandQueryConfig && f.Tag == 0
	}
}

// Expect returns the oldest kept frame that match accepts, or else waits
// for the next unclaimed one, and removes it from the backlog. The frame is
// a copy the caller owns. match runs on the client's reader goroutine (or
// Expect's own) with the client's backlog locked: it must be quick and must
// not call the Client; the frame it sees is only valid during the call.
func (c *Client) Expect(ctx context.Context, match func(*aoe.Frame) bool) (aoe.Frame, error) {
	c.wmu.Lock()
	for i := range c.backlog {
		if match(&c.backlog[i]) {
			f := c.backlog[i]
			c.backlog = slices.Delete(c.backlog, i, i+1)
			c.wmu.Unlock()
			return f, nil
		}
	}
	w := &watcher{match: match, ch: make(chan aoe.Frame, 1)}
	c.watchers = append(c.watchers, w)
	c.wmu.Unlock()

	var err error
	select {
	case f := <-w.ch:
		return f, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-c.stopped:
		err = c.stoppedErr
	}
	c.wmu.Lock()
	c.watchers = slices.DeleteFunc(c.watchers, func(x *watcher) bool { return x == w })
	c.wmu.Unlock()
	select {
	case f := <-w.ch: // matched while we gave up: the frame is ours
		return f, nil
	default:
		return aoe.Frame{}, fmt.Errorf("aoetest: expect: %w", err)
	}
}

type watcher struct {
	match func(*aoe.Frame) bool
	ch    chan aoe.Frame // capacity 1, sent to once, under wmu
}

// readLoop is the client's reader goroutine.
func (c *Client) readLoop() {
	defer close(c.stopped)
	buf := make([]byte, 1<<16)
	var f aoe.Frame
	for {
		n, err := c.link.ReadFrame(buf)
		if err != nil {
			if c.closing.Load() || errors.Is(err, net.ErrClosed) {
				c.stoppedErr = fmt.Errorf("client closed: %w", net.ErrClosed)
				return
			}
			time.Sleep(time.Millisecond) // a transient error; don't spin
			continue
		}
		raw := buf[:n]
		// Skip what is not for us, and our own frames (a raw socket may
		// see its outgoing broadcasts).
		if f.UnmarshalBinary(raw) != nil || (f.Dst != c.mac && !f.Dst.IsMulticast()) || f.Src == c.mac {
			continue
		}
		if f.IsResponse() && f.Tag&aoe.TagUserland != 0 {
			c.deliver(&f, raw)
			continue
		}
		c.keep(&f, raw)
	}
}

// deliver hands an answer to the request or Discover waiting for its tag.
func (c *Client) deliver(f *aoe.Frame, raw []byte) {
	c.mu.Lock()
	cl := c.pending[f.Tag]
	if cl != nil && (cl.dst == f.Src || cl.dst.IsMulticast()) && cl.cmd == f.Command {
		delete(c.pending, f.Tag)
		c.mu.Unlock()
		// cl is ours alone now; its op waits for it on cl.done, which
		// has room for every call the op has in flight.
		if cap(cl.rx) < len(raw) {
			cl.rx = make([]byte, len(raw))
		}
		cl.rx = cl.rx[:len(raw)]
		copy(cl.rx, raw)
		cl.done <- cl
		return
	}
	answers := c.collectors[f.Tag]
	c.mu.Unlock()
	if answers != nil && f.Command == aoe.CommandQueryConfig {
		select {
		case answers <- copyFrame(raw):
		default:
		}
	}
	// Anything else is a late or duplicate answer: nobody wants it.
}

// keep offers an unclaimed frame to a waiting Expect, or else to the
// backlog.
func (c *Client) keep(f *aoe.Frame, raw []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for i, w := range c.watchers {
		if w.match(f) {
			w.ch <- copyFrame(raw)
			c.watchers = slices.Delete(c.watchers, i, i+1)
			return
		}
	}
	if len(c.backlog) == backlogLen {
		c.backlog = slices.Delete(c.backlog, 0, 1)
	}
	c.backlog = append(c.backlog, copyFrame(raw))
}

// copyFrame decodes a copy of a frame that has already decoded once.
func copyFrame(raw []byte) aoe.Frame {
	var f aoe.Frame
	_ = f.UnmarshalBinary(bytes.Clone(raw))
	return f
}

// A call is one request in flight. Calls and their buffers are recycled.
type call struct {
	tag  uint32
	dst  aoe.MAC
	cmd  aoe.Command
	tx   []byte     // the request frame
	rx   []byte     // the answer, set by the reader
	done chan *call // the done channel of the op the call belongs to

	deadline time.Time
	sent     int // transmissions so far
	idx      int // position in its op's out

	// Bookkeeping of transfer.
	pos int     // where the call's data starts in the caller's buffer
	ata aoe.ATA // the request's registers (Data unused)
}

// pop takes the last item off a free list guarded by mu, or returns nil.
func pop[T any](mu *sync.Mutex, free *[]*T) *T {
	mu.Lock()
	defer mu.Unlock()
	n := len(*free)
	if n == 0 {
		return nil
	}
	v := (*free)[n-1]
	*free = (*free)[:n-1]
	return v
}

// getCall returns a recycled or new call whose tx holds size bytes.
func (c *Client) getCall(size int) *call {
	cl := pop(&c.mu, &c.freeCalls)
	if cl == nil {
		frame := max(c.link.MTU()+aoe.EthernetHeaderLen, aoe.MinFrameLen)
		cl = &call{tx: make([]byte, frame), rx: make([]byte, 0, frame)}
	}
	if cap(cl.tx) < size {
		cl.tx = make([]byte, size)
	}
	cl.tx = cl.tx[:size]
	return cl
}

// putCall recycles a call that is no longer pending.
func (c *Client) putCall(cl *call) {
	cl.done = nil
	c.mu.Lock()
	c.freeCalls = append(c.freeCalls, cl)
	c.mu.Unlock()
}

// An op is a set of calls issued and awaited by one goroutine, with one
// retransmission timer for all of them.
type op struct {
	c     *Client
	done  chan *call // answered calls; room for the op's whole window
	out   []*call    // calls not yet received from done
	timer *time.Timer
	armed bool // timer is running
}

// getOp returns a recycled or new op with room for window calls.
func (c *Client) getOp(window int) *op {
	o := pop(&c.mu, &c.freeOps)
	if o == nil {
		t := time.NewTimer(time.Hour)
		t.Stop()
		o = &op{c: c, timer: t}
	}
	if cap(o.done) < window {
		o.done = make(chan *call, window)
	}
	return o
}

// putOp recycles an op; it must have no calls out.
func (c *Client) putOp(o *op) {
	o.timer.Stop()
	o.armed = false
	c.mu.Lock()
	c.freeOps = append(c.freeOps, o)
	c.mu.Unlock()
}

// start assigns cl a tag, registers it and sends it. The frame in cl.tx
// must be complete but for the tag. After an error the caller must cancel
// the op.
func (o *op) start(cl *call) error {
	c := o.c
	cl.done, cl.sent = o.done, 0
	copy(cl.dst[:], cl.tx[0:6])
	cl.cmd = aoe.Command(cl.tx[aoe.EthernetHeaderLen+5])
	cl.tag = c.nextTag()
	binary.BigEndian.PutUint32(cl.tx[aoe.EthernetHeaderLen+6:], cl.tag)
	c.mu.Lock()
	c.pending[cl.tag] = cl
	c.mu.Unlock()
	cl.idx = len(o.out)
	o.out = append(o.out, cl)
	return o.send(cl, time.Now())
}

// send transmits cl (again) and sets its deadline.
func (o *op) send(cl *call, now time.Time) error {
	cl.sent++
	cl.deadline = now.Add(o.c.timeout)
	if !o.armed {
		o.timer.Reset(o.c.timeout)
		o.armed = true
	}
	if err := o.c.link.WriteFrame(cl.tx); err != nil && permanent(err) {
		return fmt.Errorf("send: %w", err)
	}
	// Other write errors (a full socket buffer) count as a lost frame.
	return nil
}

// permanent reports whether a write error will not go away by retrying.
func permanent(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, aoe.ErrFrameTooLarge) || errors.Is(err, syscall.EMSGSIZE)
}

// wait returns the next answered call, which is the caller's to recycle,
// retransmitting late calls meanwhile. After an error the caller must
// cancel the op.
func (o *op) wait(ctx context.Context) (*call, error) {
	for {
		select {
		case cl := <-o.done:
			last := o.out[len(o.out)-1]
			o.out[cl.idx], last.idx = last, cl.idx
			o.out = o.out[:len(o.out)-1]
			return cl, nil
		case <-o.timer.C:
			o.armed = false
			if err := o.expire(); err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d answers: %w", len(o.out), ctx.Err())
		case <-o.c.stopped:
			return nil, o.c.stoppedErr
		}
	}
}

// expire retransmits the calls whose deadline passed, fails when one has
// used all its tries, and rearms the timer for the earliest deadline. The
// timer may fire before any deadline (its call was answered meanwhile):
// then it just rearms.
func (o *op) expire() error {
	now := time.Now()
	var next time.Time
	for _, cl := range o.out {
		if now.Before(cl.deadline) {
			if next.IsZero() || cl.deadline.Before(next) {
				next = cl.deadline
			}
			continue
		}
		if cl.sent > o.c.retries {
			return fmt.Errorf("tag %#x: %w after %d tries", cl.tag, aoe.ErrNoResponse, cl.sent)
		}
		if err := o.send(cl, now); err != nil {
			return err
		}
		if next.IsZero() || cl.deadline.Before(next) {
			next = cl.deadline
		}
	}
	if !next.IsZero() {
		o.timer.Reset(next.Sub(now))
		o.armed = true
	}
	return nil
}

// cancel withdraws every call still out, waiting for those the reader has
// already claimed, and recycles them.
func (o *op) cancel() {
	c := o.c
	claimed := 0
	c.mu.Lock()
	for _, cl := range o.out {
		if c.pending[cl.tag] == cl {
			delete(c.pending, cl.tag)
		} else {
			claimed++ // in o.done, or about to be
		}
	}
	c.mu.Unlock()
	for ; claimed > 0; claimed-- {
		<-o.done
	}
	for _, cl := range o.out {
		c.putCall(cl)
	}
	o.out = o.out[:0]
}

// transfer does ReadAt and WriteAt.
func (c *Client) transfer(ctx context.Context, d Device, p []byte, off int64, qd int, write bool) error {
	what := "read"
	cmd := uint8(aoe.ATAReadSectorsExt)
	flags := aoe.ATAFlagExtended
	if write {
		what, cmd, flags = "write", aoe.ATAWriteSectorsExt, flags|aoe.ATAFlagWrite
	}
	switch {
	case off < 0 || off%aoe.SectorSize != 0 || len(p)%aoe.SectorSize != 0:
		return fmt.Errorf("aoetest: %s %v: offset %d, length %d: not whole sectors", what, d, off, len(p))
	case uint64(off)/aoe.SectorSize+uint64(len(p))/aoe.SectorSize > aoe.MaxLBA:
		return fmt.Errorf("aoetest: %s %v: offset %d, length %d: beyond LBA48", what, d, off, len(p))
	case d.SectorsPerFrame < 1:
		return fmt.Errorf("aoetest: %s %v: device takes %d sectors per frame", what, d, d.SectorsPerFrame)
	case qd < 1:
		return fmt.Errorf("aoetest: %s %v: queue depth %d", what, d, qd)
	}
	spf := min(d.SectorsPerFrame, 255)
	o := c.getOp(qd)
	defer c.putOp(o)
	hdr := aoe.Frame{Dst: d.MAC, Src: c.mac, Header: aoe.Header{Version: aoe.Version, Major: d.Shelf, Minor: d.Slot, Command: aoe.CommandATA}}
	next, lba := 0, uint64(off)/aoe.SectorSize
	for {
		for next < len(p) && len(o.out) < qd {
			n := min(len(p)-next, spf*aoe.SectorSize)
			size := aoe.FrameHeaderLen + aoe.ATAHeaderLen
			if write {
				size += n
			}
			cl := c.getCall(size)
			cl.pos = next
			cl.ata = aoe.ATA{Flags: flags, SectorCount: uint8(n / aoe.SectorSize), CmdStatus: cmd, LBA: lba}
			if _, err := hdr.MarshalHeaderTo(cl.tx); err != nil {
				c.putCall(cl)
				o.cancel()
				return fmt.Errorf("aoetest: %s %v: %w", what, d, err)
			}
			cl.ata.MarshalHeaderTo(cl.tx[aoe.FrameHeaderLen:])
			if write {
				copy(cl.tx[aoe.FrameHeaderLen+aoe.ATAHeaderLen:], p[next:next+n])
			}
			if err := o.start(cl); err != nil {
				o.cancel()
				return fmt.Errorf("aoetest: %s %v: %w", what, d, err)
			}
			next += n
			lba += uint64(n / aoe.SectorSize)
		}
		if len(o.out) == 0 {
			return nil
		}
		cl, err := o.wait(ctx)
		if err == nil {
			err = c.complete(cl, p, write)
			c.putCall(cl)
		}
		if err != nil {
			o.cancel()
			return fmt.Errorf("aoetest: %s %v: %w", what, d, err)
		}
	}
}

// complete checks the answer to one frame of a transfer and, for a read,
// copies its data out.
func (c *Client) complete(cl *call, p []byte, write bool) error {
	var f aoe.Frame
	var a aoe.ATA
	if err := f.UnmarshalBinary(cl.rx); err != nil {
		return err
	}
	if f.Flags&aoe.FlagError != 0 {
		return fmt.Errorf("LBA %d: %w", cl.ata.LBA, f.Error)
	}
	if err := a.UnmarshalBinary(f.Arg); err != nil {
		return err
	}
	if err := ataStatus(&cl.ata, &a); err != nil {
		return err
	}
	if write {
		return nil
	}
	n := cl.ata.DataLen()
	if len(a.Data) < n {
		return fmt.Errorf("LBA %d: %d of %d bytes: %w", cl.ata.LBA, len(a.Data), n, aoe.ErrShort)
	}
	copy(p[cl.pos:cl.pos+n], a.Data)
	return nil
}
