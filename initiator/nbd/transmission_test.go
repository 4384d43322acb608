package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator/nbd/nbdtest"
	"github.com/ironblade/ironblade/internal/testenv"
)

// forEachReplyMode runs f with simple and with structured replies.
func forEachReplyMode(t *testing.T, f func(t *testing.T, cfg ClientConfig)) {
	for _, structured := range []bool{false, true} {
		name := "simple"
		if structured {
			name = "structured"
		}
		t.Run(name, func(t *testing.T) { f(t, ClientConfig{Export: "mem", StructuredReplies: structured}) })
	}
}

func TestReadWrite(t *testing.T) {
	forEachReplyMode(t, func(t *testing.T, cfg ClientConfig) {
		mem, path := newMemoryServer(t)
		c := dialClient(t, path, cfg)
		if c.Structured() != cfg.StructuredReplies {
			t.Fatalf("structured = %v", c.Structured())
		}
		ctx := t.Context()
		for _, tt := range []struct {
			off  int64
			size int
		}{{0, 1}, {1, 511}, {4096, 4096}, {12345, 70000}, {1 << 20, 1 << 20}, {0, 16 << 20}, {16<<20 - 1, 1}, {100, 0}} {
			data := make([]byte, tt.size)
			for i := range data {
				data[i] = byte(rand.Uint32())
			}
			if err := c.WriteAt(ctx, data, tt.off, false); err != nil {
				t.Fatalf("write %d@%d: %v", tt.size, tt.off, err)
			}
			got := make([]byte, tt.size)
			if err := c.ReadAt(ctx, got, tt.off); err != nil {
				t.Fatalf("read %d@%d: %v", tt.size, tt.off, err)
			}
			if !bytes.Equal(got, data) || !bytes.Equal(mem.Bytes()[tt.off:tt.off+int64(tt.size)], data) {
				t.Fatalf("%d@%d: data mismatch", tt.size, tt.off)
			}
		}
	})
}

func TestCommands(t *testing.T) {
	forEachReplyMode(t, func(t *testing.T, cfg ClientConfig) {
		mem, path := newMemoryServer(t)
		c := dialClient(t, path, cfg)
		ctx := t.Context()
		ones := bytes.Repeat([]byte{1}, 8192)

		if err := c.WriteAt(ctx, ones, 0, true); err != nil || mem.FUAWrites.Load() != 1 {
			t.Fatalf("FUA write: %v, FUA writes %d", err, mem.FUAWrites.Load())
		}
		if err := c.WriteAt(ctx, ones, 0, false); err != nil || mem.FUAWrites.Load() != 1 || mem.Writes.Load() != 2 {
			t.Fatalf("write: %v", err)
		}
		if err := c.Flush(ctx); err != nil || mem.Flushes.Load() != 1 {
			t.Fatalf("flush: %v, flushes %d", err, mem.Flushes.Load())
		}
		if err := c.WriteZeroes(ctx, 100, 1000, true); err != nil || mem.FUAZeroes.Load() != 1 {
			t.Fatalf("write zeroes: %v", err)
		}
		if got := mem.Bytes(); got[99] != 1 || got[100] != 0 || got[1099] != 0 || got[1100] != 1 {
			t.Fatal("write zeroes: wrong range zeroed")
		}
		if err := c.Trim(ctx, 4096, 4096); err != nil || mem.Trims.Load() != 1 {
			t.Fatalf("trim: %v", err)
		}
		if err := c.do(ctx, cmdCache, 0, 0, 4096, nil, nil); err != nil {
			t.Fatalf("cache: %v", err)
		}
		// Zero-length requests succeed without touching the backend.
		writes := mem.Writes.Load()
		if err := c.WriteAt(ctx, nil, 5, false); err != nil || mem.Writes.Load() != writes {
			t.Fatalf("empty write: %v", err)
		}
	})
}

func TestWriteZeroesEmulated(t *testing.T) {
	mem := nbdtest.NewMemory(4 << 20)
	var ex ExportMap
	ex.Add("mem", "", plainBackend{mem})
	path := serveUnix(t, &Server{Exports: &ex})
	c := dialClient(t, path, ClientConfig{Export: "mem"})
	ctx := t.Context()
	if err := c.WriteAt(ctx, bytes.Repeat([]byte{7}, 4<<20), 0, false); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteZeroes(ctx, 1000, 3<<20, true); err != nil {
		t.Fatal(err)
	}
	got := mem.Bytes()
	if got[999] != 7 || !bytes.Equal(got[1000:1000+3<<20], make([]byte, 3<<20)) || got[1000+3<<20] != 7 {
		t.Fatal("emulated write zeroes: wrong contents")
	}
	if mem.Zeroes.Load() != 0 || mem.FUAWrites.Load() != 3 {
		t.Fatalf("zeroes %d, FUA writes %d", mem.Zeroes.Load(), mem.FUAWrites.Load())
	}
	if c.Flags()&FlagSendTrim != 0 || c.Flags()&FlagSendWriteZeroes == 0 {
		t.Fatalf("flags %#x", c.Flags())
	}
	if err := c.Trim(ctx, 0, 4096); !errors.Is(err, EINVAL) {
		t.Fatalf("trim without Trimmer: %v", err)
	}
}

func TestTransmissionFlags(t *testing.T) {
	mem := nbdtest.NewMemory(1024)
	tests := []struct {
		name string
		b    Backend
		want uint16
	}{
		{"full", mem, FlagHasFlags | FlagSendFlush | FlagSendFUA | FlagSendWriteZeroes | FlagSendTrim | FlagCanMultiConn},
		{"plain", plainBackend{mem}, FlagHasFlags | FlagSendFlush | FlagSendFUA | FlagSendWriteZeroes},
		{"read-only", nbdtest.NewReadOnlyMemory(nil), FlagHasFlags | FlagSendFlush | FlagReadOnly | FlagCanMultiConn},
	}
	for _, tt := range tests {
		if got := TransmissionFlags(tt.b); got != tt.want {
			t.Errorf("%s: flags %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

// errBackend fails every call with err.
type errBackend struct {
	Backend
	err error
}

func (b errBackend) ReadAt(context.Context, []byte, int64) error        { return b.err }
func (b errBackend) WriteAt(context.Context, []byte, int64, bool) error { return b.err }
func (b errBackend) Flush(context.Context) error                        { return b.err }

func TestErrors(t *testing.T) {
	forEachReplyMode(t, func(t *testing.T, cfg ClientConfig) {
		mem := nbdtest.NewMemory(1 << 20)
		var ex ExportMap
		ex.Add("mem", "", mem)
		ex.Add("ro", "", nbdtest.NewReadOnlyMemory(make([]byte, 1<<20)))
		ex.Add("nospace", "", errBackend{mem, fmt.Errorf("wrapped: %w", ENOSPC)})
		ex.Add("erofs", "", errBackend{mem, &fsError{syscall.EROFS}})
		path := serveUnix(t, &Server{Exports: &ex, MaxPayload: 64 << 10})
		ctx := t.Context()
		c := dialClient(t, path, cfg)
		buf := make([]byte, 4096)
		tests := []struct {
			name string
			c    *Client
			do   func(c *Client) error
			want Errno
		}{
			{"read past end", c, func(c *Client) error { return c.ReadAt(ctx, buf, 1<<20-100) }, EINVAL},
			{"read at huge offset", c, func(c *Client) error { return c.ReadAt(ctx, buf, 1<<62) }, EINVAL},
			{"write past end", c, func(c *Client) error { return c.WriteAt(ctx, buf, 1<<20-100, false) }, ENOSPC},
			{"zeroes past end", c, func(c *Client) error { return c.WriteZeroes(ctx, 1<<20, 1, false) }, ENOSPC},
			{"trim past end", c, func(c *Client) error { return c.Trim(ctx, 1<<20-1, 2) }, EINVAL},
			{"read above max payload", c, func(c *Client) error { return c.ReadAt(ctx, make([]byte, 128<<10), 0) }, EINVAL},
			{"write above max payload", c, func(c *Client) error { return c.WriteAt(ctx, make([]byte, 128<<10), 0, false) }, EINVAL},
			{"unknown command", c, func(c *Client) error { return c.do(ctx, 99, 0, 0, 0, nil, nil) }, EINVAL},
			{"block status", c, func(c *Client) error { return c.do(ctx, 7, 0, 0, 512, nil, nil) }, EINVAL},
			{"bad flag", c, func(c *Client) error { return c.do(ctx, cmdWrite, cmdFlagNoHole, 0, 4, buf[:4], nil) }, EINVAL},
			{"unknown flag", c, func(c *Client) error { return c.do(ctx, cmdFlush, 1<<9, 0, 0, nil, nil) }, EINVAL},
			{"flush with length", c, func(c *Client) error { return c.do(ctx, cmdFlush, 0, 0, 1, nil, nil) }, EINVAL},
			{"write read-only", dialClient(t, path, ClientConfig{Export: "ro", StructuredReplies: cfg.StructuredReplies}),
				func(c *Client) error { return c.WriteAt(ctx, buf, 0, false) }, EPERM},
			{"zeroes read-only", nil, func(c *Client) error { return c.WriteZeroes(ctx, 0, 512, false) }, EPERM},
			{"trim read-only", nil, func(c *Client) error { return c.Trim(ctx, 0, 512) }, EPERM},
			{"backend Errno", dialClient(t, path, ClientConfig{Export: "nospace", StructuredReplies: cfg.StructuredReplies}),
				func(c *Client) error { return c.WriteAt(ctx, buf, 0, false) }, ENOSPC},
			{"backend EROFS", dialClient(t, path, ClientConfig{Export: "erofs", StructuredReplies: cfg.StructuredReplies}),
				func(c *Client) error { return c.Flush(ctx) }, EPERM},
		}
		var last *Client
		for _, tt := range tests {
			if tt.c != nil {
				last = tt.c
			}
			if err := tt.do(last); !errors.Is(err, tt.want) {
				t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
			}
		}
		// Every error left the connection usable.
		if err := c.WriteAt(ctx, buf, 0, false); err != nil {
			t.Fatalf("after errors: %v", err)
		}

		mem.FailNext.Store(1)
		err := c.ReadAt(ctx, buf, 0)
		if !errors.Is(err, EIO) {
			t.Fatalf("backend failure: %v", err)
		}
		if cfg.StructuredReplies && !strings.Contains(err.Error(), nbdtest.ErrInjected.Error()) {
			t.Fatalf("structured error lacks the message: %v", err)
		}
	})
}

type fsError struct{ errno syscall.Errno }

func (e *fsError) Error() string { return "fs: " + e.errno.Error() }
func (e *fsError) Unwrap() error { return e.errno }

// minBlockBackend has a 512-byte minimum block size.
type minBlockBackend struct{ *nbdtest.Memory }

func (minBlockBackend) BlockSize() (uint32, uint32) { return 512, 8192 }

func TestBlockSizeAlignment(t *testing.T) {
	var ex ExportMap
	ex.Add("mem", "", minBlockBackend{nbdtest.NewMemory(1 << 20)})
	path := serveUnix(t, &Server{Exports: &ex})
	c := dialClient(t, path, ClientConfig{Export: "mem"})
	if mn, pref, mx := c.BlockSize(); mn != 512 || pref != 8192 || mx != DefaultMaxPayload {
		t.Fatalf("block sizes %d %d %d", mn, pref, mx)
	}
	ctx := t.Context()
	if err := c.ReadAt(ctx, make([]byte, 512), 100); !errors.Is(err, EINVAL) {
		t.Fatalf("unaligned offset: %v", err)
	}
	if err := c.WriteAt(ctx, make([]byte, 100), 0, false); !errors.Is(err, EINVAL) {
		t.Fatalf("unaligned length: %v", err)
	}
	if err := c.ReadAt(ctx, make([]byte, 1024), 512); err != nil {
		t.Fatalf("aligned: %v", err)
	}
}

// gate is a backend whose reads and writes wait for release, counting how
// many wait at once.
type gate struct {
	*nbdtest.Memory
	release  chan struct{}
	inside   atomic.Int32
	maxInner atomic.Int32
}

func newGate(size int64) *gate {
	return &gate{Memory: nbdtest.NewMemory(size), release: make(chan struct{})}
}

func (g *gate) wait(ctx context.Context) error {
	n := g.inside.Add(1)
	defer g.inside.Add(-1)
	for {
		m := g.maxInner.Load()
		if n <= m || g.maxInner.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	return g.Memory.ReadAt(ctx, p, off)
}

func (g *gate) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	return g.Memory.WriteAt(ctx, p, off, fua)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, what, cond)
}

func TestConcurrentRequests(t *testing.T) {
	g := newGate(1 << 20)
	var ex ExportMap
	ex.Add("mem", "", g)
	path := serveUnix(t, &Server{Exports: &ex, MaxInFlight: 8})
	c := dialClient(t, path, ClientConfig{Export: "mem", StructuredReplies: true})
	ctx := t.Context()

	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			data := bytes.Repeat([]byte{byte(i)}, 4096)
			if err := c.WriteAt(ctx, data, int64(i)*4096, false); err != nil {
				errs <- err
				return
			}
			got := make([]byte, 4096)
			if err := c.ReadAt(ctx, got, int64(i)*4096); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, data) {
				errs <- fmt.Errorf("block %d: data mismatch", i)
			}
		})
	}
	waitFor(t, "8 requests inside the backend", func() bool { return g.inside.Load() == 8 })
	// A ninth must not get in: give it the time to, which is the subject.
	time.Sleep(20 * time.Millisecond)
	if m := g.maxInner.Load(); m != 8 {
		t.Fatalf("%d requests in flight, want the bound 8", m)
	}
	close(g.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// gatedSession serves a gate as "mem" and returns a raw connection in the
// transmission phase on it.
func gatedSession(t *testing.T) (*gate, *rawConn) {
	g := newGate(1 << 20)
	var ex ExportMap
	ex.Add("mem", "", g)
	r := dialRaw(t, serveUnix(t, &Server{Exports: &ex}))
	r.greet(clientFixedNewstyle | clientNoZeroes)
	r.goInto("mem")
	return g, r
}

func TestRepliesOutOfOrder(t *testing.T) {
	g, r := gatedSession(t)
	r.request(0, cmdRead, 1, 0, 512, nil) // waits in the gate
	waitFor(t, "read in backend", func() bool { return g.inside.Load() == 1 })
	r.request(0, cmdFlush, 2, 0, 0, nil)
	if errno, cookie := r.simpleReply(); errno != 0 || cookie != 2 {
		t.Fatalf("first reply: errno %d cookie %d, want the flush (2)", errno, cookie)
	}
	close(g.release)
	if errno, cookie := r.simpleReply(); errno != 0 || cookie != 1 {
		t.Fatalf("second reply: errno %d cookie %d", errno, cookie)
	}
	r.recv(512)
}

func TestDisconnectFinishesInFlight(t *testing.T) {
	g, r := gatedSession(t)
	r.request(cmdFlagFUA, cmdWrite, 9, 4096, 4, []byte("data"))
	waitFor(t, "write in backend", func() bool { return g.inside.Load() == 1 })
	r.request(0, cmdDisc, 10, 0, 0, nil)
	// The disconnect must be read while the write is inside: nothing
	// shows that it has been, so give the reader the time.
	time.Sleep(20 * time.Millisecond)
	close(g.release)
	if errno, cookie := r.simpleReply(); errno != 0 || cookie != 9 {
		t.Fatalf("reply: errno %d cookie %d", errno, cookie)
	}
	r.expectClosed()
	if string(g.Bytes()[4096:4100]) != "data" || g.FUAWrites.Load() != 1 {
		t.Fatal("write before DISC was not completed")
	}
}

func TestShutdown(t *testing.T) {
	g := newGate(1 << 20)
	var ex ExportMap
	ex.Add("mem", "", g)
	path := socketPath(t)
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, &Server{Exports: &ex}, l)

	r := dialRaw(t, path)
	r.greet(clientFixedNewstyle | clientNoZeroes)
	r.goInto("mem")
	r.request(0, cmdRead, 3, 0, 512, nil)
	waitFor(t, "read in backend", func() bool { return g.inside.Load() == 1 })
	idle := dialRaw(t, path) // in the handshake
	idle.greet(clientFixedNewstyle)

	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	if errno, cookie := r.simpleReply(); errno != ESHUTDOWN || cookie != 3 {
		t.Fatalf("reply: errno %d cookie %d, want ESHUTDOWN", errno, cookie)
	}
	r.expectClosed()
	idle.expectClosed()
	<-stopped
}

func TestByteBudget(t *testing.T) {
	mem := nbdtest.NewMemory(8 << 20)
	var ex ExportMap
	ex.Add("mem", "", mem)
	path := serveUnix(t, &Server{Exports: &ex, MaxBufferedBytes: 1 << 20})
	c := dialClient(t, path, ClientConfig{Export: "mem"})
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			buf := make([]byte, 768<<10) // two never fit together
			if i%2 == 0 {
				if err := c.WriteAt(ctx, buf, int64(i)*(512<<10), false); err != nil {
					t.Error(err)
				}
				return
			}
			if err := c.ReadAt(ctx, buf, int64(i)*(256<<10)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// A request larger than the whole budget is served alone.
	if err := c.ReadAt(ctx, make([]byte, 4<<20), 0); err != nil {
		t.Fatal(err)
	}
}

func TestBadClientsDoNotDisturbOthers(t *testing.T) {
	mem, path := newMemoryServer(t)
	ctx := t.Context()
	good := dialClient(t, path, ClientConfig{Export: "mem", StructuredReplies: true})

	stop := make(chan struct{})
	goodDone := make(chan error, 1)
	go func() {
		data := bytes.Repeat([]byte{0x5a}, 64<<10)
		got := make([]byte, len(data))
		for i := 0; ; i++ {
			select {
			case <-stop:
				goodDone <- nil
				return
			default:
			}
			off := int64(i%64) * int64(len(data))
			if err := good.WriteAt(ctx, data, off, false); err != nil {
				goodDone <- err
				return
			}
			if err := good.ReadAt(ctx, got, off); err != nil || !bytes.Equal(got, data) {
				goodDone <- fmt.Errorf("read back: %v", err)
				return
			}
		}
	}()

	bad := []struct {
		name string
		run  func(r *rawConn)
	}{
		{"garbage", func(r *rawConn) { r.send(bytes.Repeat([]byte{0xff}, 4096)) }},
		{"truncated greeting reply", func(r *rawConn) { r.recv(18); r.send([]byte{0, 0}); r.c.Close() }},
		{"wrong request magic", func(r *rawConn) {
			r.greet(clientFixedNewstyle | clientNoZeroes)
			r.goInto("mem")
			r.send(bytes.Repeat([]byte{0xab}, requestLen))
		}},
		{"huge write", func(r *rawConn) {
			r.greet(clientFixedNewstyle | clientNoZeroes)
			r.goInto("mem")
			r.request(0, cmdWrite, 1, 0, 1<<31, nil)
		}},
		{"truncated write", func(r *rawConn) {
			r.greet(clientFixedNewstyle | clientNoZeroes)
			r.goInto("mem")
			r.request(0, cmdWrite, 1, 0, 1<<20, make([]byte, 1000))
			r.c.(interface{ CloseWrite() error }).CloseWrite()
		}},
		{"truncated request", func(r *rawConn) {
			r.greet(clientFixedNewstyle | clientNoZeroes)
			r.goInto("mem")
			r.send(be32(magicRequest), []byte{0, 0})
			r.c.(interface{ CloseWrite() error }).CloseWrite()
		}},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			r := dialRaw(t, path)
			b.run(r)
			r.expectClosed()
		})
	}
	close(stop)
	if err := <-goodDone; err != nil {
		t.Fatalf("good client: %v", err)
	}
	if mem.Writes.Load() == 0 {
		t.Fatal("good client made no progress")
	}
}

func TestWriteOverMaxPayloadIsDrained(t *testing.T) {
	var ex ExportMap
	ex.Add("mem", "", nbdtest.NewMemory(1<<20))
	path := serveUnix(t, &Server{Exports: &ex, MaxPayload: 4096})
	r := dialRaw(t, path)
	r.greet(clientFixedNewstyle | clientNoZeroes)
	r.goInto("mem")
	r.request(0, cmdWrite, 1, 0, 8192, make([]byte, 8192))
	r.request(0, cmdRead, 2, 0, 16, nil)
	got := map[uint64]Errno{}
	for range 2 {
		errno, cookie := r.simpleReply()
		got[cookie] = errno
		if cookie == 2 && errno == 0 {
			r.recv(16)
		}
	}
	if got[1] != EINVAL || got[2] != 0 {
		t.Fatalf("replies %v", got)
	}
}

func TestServeTransmission(t *testing.T) {
	mem := nbdtest.NewMemory(1 << 20)
	srv := &Server{Logger: testLogger(t)}
	client, server := socketPair(t) // as the kernel's nbd driver connects
	client.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan error, 1)
	go func() { done <- srv.ServeTransmission(t.Context(), server, mem) }()

	r := &rawConn{t: t, c: client, br: bufioReader(client)}
	r.request(cmdFlagFUA, cmdWrite, 1, 512, 5, []byte("hello"))
	if errno, cookie := r.simpleReply(); errno != 0 || cookie != 1 {
		t.Fatalf("write: errno %d cookie %d (server: %v)", errno, cookie, <-done)
	}
	r.request(0, cmdRead, 2, 512, 5, nil)
	if errno, _ := r.simpleReply(); errno != 0 {
		t.Fatalf("read: errno %d", errno)
	}
	if got := r.recv(5); string(got) != "hello" || mem.FUAWrites.Load() != 1 {
		t.Fatalf("read %q", got)
	}
	r.request(0, cmdDisc, 3, 0, 0, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeTransmission did not return after DISC")
	}
}

func TestListenUnix(t *testing.T) {
	path := socketPath(t)
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path); err == nil {
		t.Fatal("second listener on a live socket succeeded")
	}
	// Leave a stale socket file behind, as a crashed server would.
	l.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	l.Close()
	l, err = ListenUnix(path)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	defer l.Close()

	file := socketPath(t)
	if err := writeFile(file); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(file); err == nil {
		t.Fatal("ListenUnix replaced a regular file")
	}
}

func TestErrnoNames(t *testing.T) {
	for _, e := range []Errno{EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN, 1234} {
		if !strings.HasPrefix(e.Error(), "nbd: ") {
			t.Errorf("%d: %q", e, e.Error())
		}
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(EINVAL))
	if b != [4]byte{0, 0, 0, 22} {
		t.Fatal("EINVAL is not 22")
	}
}
