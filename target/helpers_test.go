package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/testenv"
)

// Addresses used on test hubs.
var (
	targetMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x01}
	clientMAC = aoe.MAC{0x02, 0, 0, 0, 0, 0x02}
	otherMAC  = aoe.MAC{0x02, 0, 0, 0, 0, 0x03}
	thirdMAC  = aoe.MAC{0x02, 0, 0, 0, 0, 0x04}
)

const (
	testShelf = 1
	testSlot  = 2
	// testSectors is the capacity of the default test disk: 1 MiB.
	testSectors = 2048
)

// memDisk is an in-memory Backend with failure injection.
type memDisk struct {
	mu        sync.RWMutex
	data      []byte
	syncs     atomic.Int64
	syncDelay time.Duration
	failSync  atomic.Bool
	failWrite atomic.Bool
	failRead  atomic.Bool
}

func newMemDisk(sectors int) *memDisk { return &memDisk{data: make([]byte, sectors*aoe.SectorSize)} }

func (d *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if d.failRead.Load() {
		return 0, errors.New("memdisk: injected read failure")
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if off < 0 || off+int64(len(p)) > int64(len(d.data)) {
		return 0, io.EOF
	}
	return copy(p, d.data[off:]), nil
}

func (d *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if d.failWrite.Load() {
		return 0, errors.New("memdisk: injected write failure")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(d.data)) {
		return 0, errors.New("memdisk: write beyond the end")
	}
	return copy(d.data[off:], p), nil
}

func (d *memDisk) Sync() error {
	if d.syncDelay > 0 {
		// The device's flush takes this long: the latency is what the
		// tests that set it are about, so this sleep stays.
		time.Sleep(d.syncDelay)
	}
	d.syncs.Add(1)
	if d.failSync.Load() {
		return errors.New("memdisk: injected sync failure")
	}
	return nil
}

func (d *memDisk) Size() int64 { return int64(len(d.data)) }

// cachedDisk is a memDisk that is a NonblockingBackend: the I/O for which
// blocks says so (all of it when blocks is nil) would wait for the device,
// the rest is done at once. A memDisk alone sends all I/O to the workers;
// a cachedDisk executes it in the receive loop, or some of each.
type cachedDisk struct {
	*memDisk
	blocks func(off int64) bool
}

func (d *cachedDisk) TryReadAt(p []byte, off int64) (int, error) {
	return unlessBlocked(d.blocks, d.ReadAt, p, off)
}

func (d *cachedDisk) TryWriteAt(p []byte, off int64) (int, error) {
	return unlessBlocked(d.blocks, d.WriteAt, p, off)
}

// unlessBlocked is the NonblockingBackend half of the test disks: io(p,
// off) at once, or ErrWouldBlock where blocks (if set) says the I/O at off
// would wait for the device.
func unlessBlocked(blocks func(off int64) bool, io func([]byte, int64) (int, error), p []byte, off int64) (int, error) {
	if blocks != nil && blocks(off) {
		return 0, ErrWouldBlock
	}
	return io(p, off)
}

// everyOtherBlock makes a cachedDisk wait for the device for every other
// 4 KiB block.
func everyOtherBlock(off int64) bool { return off/4096%2 == 1 }

// backendKinds are the ways a test's memDisk can be served: through the
// workers, in the receive loop, or mixed.
var backendKinds = []struct {
	name string
	wrap func(*memDisk) Backend
}{
	{"workers", func(d *memDisk) Backend { return d }},
	{"inline", func(d *memDisk) Backend { return &cachedDisk{memDisk: d} }},
	{"mixed", func(d *memDisk) Backend { return &cachedDisk{memDisk: d, blocks: everyOtherBlock} }},
}

func (d *memDisk) bytes(off, n int) []byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return append([]byte(nil), d.data[off:off+n]...)
}

// testLogger discards logs unless the test is verbose. A fuzz test's logs
// are discarded too: a fuzz target may not log through its *testing.F.
func testLogger(t testing.TB) *slog.Logger {
	if _, fuzz := t.(*testing.F); testing.Verbose() && !fuzz {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// harness runs a Server on an in-memory hub, with a client port that
// sends requests and sorts the answers by tag.
type harness struct {
	t      *testing.T
	hub    *aoetest.Hub
	srv    *Server
	disk   *memDisk
	port   *aoetest.Port // the target's
	link   aoe.Link      // what Serve runs on (port, or a wrapper)
	client *client
	cancel context.CancelFunc
	done   chan error
}

type harnessOption func(*harnessSetup)

type harnessSetup struct {
	cfg      Config
	mtu      int
	wrapLink func(aoe.Link) aoe.Link
}

func withMTU(mtu int) harnessOption { return func(s *harnessSetup) { s.mtu = mtu } }
func withConfig(f func(*Config)) harnessOption {
	return func(s *harnessSetup) { f(&s.cfg) }
}
func withLink(wrap func(aoe.Link) aoe.Link) harnessOption {
	return func(s *harnessSetup) { s.wrapLink = wrap }
}

// newHarness starts a server (shelf 1, slot 2, a 1 MiB memDisk unless the
// options say otherwise) and a client, and consumes the start-up
// announcement. Cleanup stops the server and checks Serve returned nil.
func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	disk := newMemDisk(testSectors)
	setup := harnessSetup{
		cfg: Config{Shelf: testShelf, Slot: testSlot, Backend: disk, Logger: testLogger(t)},
		mtu: 1500,
	}
	for _, o := range opts {
		o(&setup)
	}
	switch b := setup.cfg.Backend.(type) {
	case *memDisk:
		disk = b
	case *cachedDisk:
		disk = b.memDisk
	}
	hub := aoetest.NewHub()
	h := &harness{t: t, hub: hub, disk: disk}
	h.client = newClient(t, hub, clientMAC, setup.mtu)
	h.port = hub.Port(targetMAC, setup.mtu)
	h.link = h.port
	if setup.wrapLink != nil {
		h.link = setup.wrapLink(h.port)
	}
	srv, err := NewServer(setup.cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	h.srv = srv
	h.start()
	t.Cleanup(func() { h.stop() })
	if len(setup.cfg.AllowedMACs) == 0 {
		h.client.expectAnnounce(t)
	}
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.srv.Serve(ctx, h.link) }()
}

// stop ends Serve and checks it returned nil, within 2 seconds.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Serve: %v", err)
		}
	case <-time.After(2 * time.Second):
		h.t.Errorf("Serve did not return within 2s of cancellation")
	}
}

// client is a station on a hub that sends AoE requests and routes the
// responses to whoever waits for their tag.
type client struct {
	port      *aoetest.Port
	mac       aoe.MAC
	tag       atomic.Uint32
	mu        sync.Mutex
	waiting   map[uint32]chan []byte
	announces chan []byte
	stray     chan []byte
}

func newClient(t testing.TB, hub *aoetest.Hub, mac aoe.MAC, mtu int) *client {
	c := &client{
		port:      hub.Port(mac, mtu),
		mac:       mac,
		waiting:   make(map[uint32]chan []byte),
		announces: make(chan []byte, 64),
		stray:     make(chan []byte, 1024),
	}
	c.tag.Store(0x100)
	t.Cleanup(func() { c.port.Close() })
	go c.readLoop()
	return c
}

func (c *client) readLoop() {
	buf := make([]byte, 70000)
	for {
		n, err := c.port.ReadFrame(buf)
		if err != nil {
			return
		}
		f := append([]byte(nil), buf[:n]...)
		hdr, ok := decodeHeaders(f)
		if !ok {
			select {
			case c.stray <- f:
			default:
			}
			continue
		}
		tag := hdr.Tag
		if tag == 0 && hdr.Command == aoe.CommandQueryConfig {
			select {
			case c.announces <- f:
			default:
			}
			continue
		}
		c.mu.Lock()
		ch := c.waiting[tag]
		delete(c.waiting, tag)
		c.mu.Unlock()
		if ch != nil {
			ch <- f
			continue
		}
		select {
		case c.stray <- f:
		default:
		}
	}
}

func (c *client) nextTag() uint32 { return c.tag.Add(1) }

// request builds a request frame from this client to the test target.
func (c *client) request(cmd aoe.Command, arg []byte) *aoe.Frame {
	return &aoe.Frame{
		Dst: targetMAC, Src: c.mac,
		Header: aoe.Header{Version: aoe.Version, Major: testShelf, Minor: testSlot, Command: cmd, Tag: c.nextTag()},
		Arg:    arg,
	}
}

// send transmits f and returns a channel that gets the response with its
// tag.
func (c *client) send(t testing.TB, f *aoe.Frame) chan []byte {
	t.Helper()
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal request: %v", err)
	}
	return c.sendRaw(t, f.Tag, b)
}

func (c *client) sendRaw(t testing.TB, tag uint32, b []byte) chan []byte {
	t.Helper()
	ch := make(chan []byte, 1)
	c.mu.Lock()
	c.waiting[tag] = ch
	c.mu.Unlock()
	if err := c.port.WriteFrame(b); err != nil {
		t.Fatalf("send request: %v", err)
	}
	return ch
}

// roundTrip sends f and returns the decoded response.
func (c *client) roundTrip(t testing.TB, f *aoe.Frame) *aoe.Frame {
	t.Helper()
	return awaitResponse(t, c.send(t, f))
}

func awaitResponse(t testing.TB, ch chan []byte) *aoe.Frame {
	t.Helper()
	select {
	case b := <-ch:
		var resp aoe.Frame
		if err := resp.UnmarshalBinary(b); err != nil {
			t.Fatalf("decode response: %v", err)
		}
		return &resp
	case <-time.After(3 * time.Second):
		t.Fatalf("no response")
		return nil
	}
}

// expectNoResponse sends f and checks that nothing comes back for it.
func (c *client) expectNoResponse(t testing.TB, f *aoe.Frame) {
	t.Helper()
	ch := c.send(t, f)
	select {
	case b := <-ch:
		t.Fatalf("unexpected response % x", b[:min(len(b), 40)])
	case <-time.After(100 * time.Millisecond):
	}
	c.mu.Lock()
	delete(c.waiting, f.Tag)
	c.mu.Unlock()
}

func (c *client) expectAnnounce(t testing.TB) *aoe.Frame {
	t.Helper()
	select {
	case b := <-c.announces:
		var f aoe.Frame
		if err := f.UnmarshalBinary(b); err != nil {
			t.Fatalf("decode announcement: %v", err)
		}
		return &f
	case <-time.After(3 * time.Second):
		t.Fatalf("no announcement")
		return nil
	}
}

// ata builds an ATA request argument.
func ataArg(t testing.TB, a aoe.ATA) []byte {
	t.Helper()
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal ATA: %v", err)
	}
	return b
}

func decodeATA(t testing.TB, f *aoe.Frame) *aoe.ATA {
	t.Helper()
	var a aoe.ATA
	if err := a.UnmarshalBinary(f.Arg); err != nil {
		t.Fatalf("decode ATA response: %v", err)
	}
	return &a
}

func decodeConfig(t testing.TB, f *aoe.Frame) *aoe.Config {
	t.Helper()
	var c aoe.Config
	if err := c.UnmarshalBinary(f.Arg); err != nil {
		t.Fatalf("decode config response: %v", err)
	}
	return &c
}

// readCmd and writeCmd build LBA48 read and write requests.
func readReq(c *client, t testing.TB, lba uint64, count uint8) *aoe.Frame {
	return c.request(aoe.CommandATA, ataArg(t, aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: count, CmdStatus: aoe.ATAReadSectorsExt, LBA: lba}))
}

func writeReq(c *client, t testing.TB, lba uint64, data []byte) *aoe.Frame {
	return c.request(aoe.CommandATA, ataArg(t, aoe.ATA{
		Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: uint8(len(data) / aoe.SectorSize),
		CmdStatus: aoe.ATAWriteSectorsExt, LBA: lba, Data: data,
	}))
}

// decodeHeaders decodes a frame's headers; ok is false if it is not an
// AoE frame.
func decodeHeaders(b []byte) (f aoe.Frame, ok bool) {
	return f, f.UnmarshalBinary(b) == nil
}

// frameTag returns an AoE frame's tag, or 0 if b is not an AoE frame.
func frameTag(b []byte) uint32 {
	f, _ := decodeHeaders(b)
	return f.Tag
}

// ataStatus returns the status register of an ATA response frame, or 0 if
// b is not one.
func ataStatus(b []byte) uint8 {
	var a aoe.ATA
	f, ok := decodeHeaders(b)
	if !ok || f.Command != aoe.CommandATA || a.UnmarshalBinary(f.Arg) != nil {
		return 0
	}
	return a.CmdStatus
}

// checkResponse checks the common header of a response.
func checkResponse(t testing.TB, f *aoe.Frame, wantErr aoe.Error) {
	t.Helper()
	if !f.IsResponse() {
		t.Errorf("response without R flag: %+v", f.Header)
	}
	if f.Version != aoe.Version {
		t.Errorf("response version %d", f.Version)
	}
	if f.Major != testShelf || f.Minor != testSlot {
		t.Errorf("response from %d.%d", f.Major, f.Minor)
	}
	if f.Src != targetMAC {
		t.Errorf("response from %s", f.Src)
	}
	gotErr := aoe.Error(0)
	if f.Flags&aoe.FlagError != 0 {
		gotErr = f.Error
	}
	if gotErr != wantErr {
		t.Errorf("response error %d (flags %#x), want %d", gotErr, f.Flags, wantErr)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>9)
	}
	return b
}

// waitFor waits up to 2 seconds for cond.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 2*time.Second, what, cond)
}

// newTestSession returns a session of a new server (shelf 1, slot 2, a
// memDisk unless cfg has a backend) that is not serving, on a link that
// discards what is sent. Tests call its handler directly.
func newTestSession(t testing.TB, cfg Config) (*session, *memDisk) {
	t.Helper()
	disk := newMemDisk(testSectors)
	if cfg.Backend == nil {
		cfg.Backend = disk
	}
	cfg.Shelf, cfg.Slot = testShelf, testSlot
	cfg.Logger = testLogger(t)
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return s.newSession(&discardLink{mac: targetMAC, mtu: 1500}), disk
}

// batchPort makes a hub port a BatchLink: a pump moves its frames to a
// queue, and ReadFrames waits for one and takes those queued behind it,
// as recvmmsg does. It lets the target's loops see backlogs.
type batchPort struct {
	*aoetest.Port
	frames chan []byte
	done   chan struct{}
}

func newBatchPort(p *aoetest.Port) *batchPort {
	l := &batchPort{Port: p, frames: make(chan []byte, 1024), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			buf := make([]byte, 70000)
			n, err := p.ReadFrame(buf)
			if err != nil {
				return
			}
			l.frames <- buf[:n]
		}
	}()
	return l
}

func (l *batchPort) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	select {
	case f := <-l.frames:
		lens[0] = copy(bufs[0], f)
	case <-l.done:
		return 0, fmt.Errorf("batch port: %w", net.ErrClosed)
	}
	n := 1
	for n < len(bufs) {
		select {
		case f := <-l.frames:
			lens[n] = copy(bufs[n], f)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

func (l *batchPort) ReadFrame(b []byte) (int, error) {
	var lens [1]int
	_, err := l.ReadFrames([][]byte{b}, lens[:])
	return lens[0], err
}

func (l *batchPort) WriteFrames(frames [][]byte) (int, error) {
	for i, f := range frames {
		if err := l.WriteFrame(f); err != nil {
			return i, err
		}
	}
	return len(frames), nil
}

// discardLink is a Link that never receives and drops what is sent.
type discardLink struct {
	mac aoe.MAC
	mtu int
}

func (l *discardLink) ReadFrame(b []byte) (int, error) { select {} }
func (l *discardLink) WriteFrame(b []byte) error       { return nil }
func (l *discardLink) MTU() int                        { return l.mtu }
func (l *discardLink) HardwareAddr() aoe.MAC           { return l.mac }
func (l *discardLink) Close() error                    { return nil }

// writeConcurrently runs writers goroutines, each writing perWriter
// sectors of its own one after the other, each write waiting for its
// successful answer: writers writes stay in flight.
func writeConcurrently(t *testing.T, h *harness, writers, perWriter int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				resp := h.client.roundTrip(t, writeReq(h.client, t, uint64(w*perWriter+i), pattern(512, byte(i))))
				if a := decodeATA(t, resp); a.CmdStatus != aoe.ATAStatusDRDY {
					t.Errorf("write %d of writer %d: status %#x", i, w, a.CmdStatus)
				}
			}
		})
	}
	wg.Wait()
}
