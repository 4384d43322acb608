package nbdkernel

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// attachFake attaches a device served by srv to the fake kernel k and
// detaches it when the test ends, checking that nothing is left running.
func attachFake(t *testing.T, k *fakeKernel, srv *memServer, cfg Config) *Device {
	t.Helper()
	cfg.Serve = srv.serve
	cfg.Logger = testLogger(t)
	if cfg.Size == 0 {
		cfg.Size = 1 << 20
	}
	dev, err := k.client().Attach(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() {
		if err := dev.Detach(); err != nil {
			t.Errorf("Detach: %v", err)
		}
		waitDone(t, dev)
		if n := srv.running.Load(); n != 0 {
			t.Errorf("%d Serve calls still running after Wait", n)
		}
		if n := k.open.Load(); n != 0 {
			t.Errorf("%d netlink connections left open", n)
		}
	})
	return dev
}

// attached is attachFake on a fresh fake kernel that gives out /dev/nbd3,
// once the CONNECT has been seen.
func attached(t *testing.T, cfg Config) (*fakeKernel, *memServer, *Device) {
	t.Helper()
	k := newFakeKernel(t, 3)
	srv := newMemServer(1 << 20)
	dev := attachFake(t, k, srv, cfg)
	k.waitRequest(cmdConnect)
	return k, srv, dev
}

// waitDone waits for dev to finish.
func waitDone(t *testing.T, dev *Device) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dev.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestAttachConnectRequest(t *testing.T) {
	k := newFakeKernel(t, 5)
	srv := newMemServer(1 << 20)
	dev := attachFake(t, k, srv, Config{
		Index:           AnyIndex,
		Size:            1<<20 + 100, // rounded down to whole blocks
		Timeout:         1500 * time.Millisecond,
		DeadConnTimeout: 10 * time.Second,
		ServerFlags:     flagSendFlush | flagSendFUA,
		Backend:         "aoe:e1.2",
	})
	req := k.waitRequest(cmdConnect)
	if dev.Index() != 5 || dev.Path() != "/dev/nbd5" {
		t.Errorf("device %d %s, want 5 /dev/nbd5", dev.Index(), dev.Path())
	}
	if req.version != familyVersion || req.flags != netlink.Request|netlink.Acknowledge {
		t.Errorf("header version %d flags %v", req.version, req.flags)
	}
	if _, ok := req.attrs[attrIndex]; ok {
		t.Error("NBD_ATTR_INDEX sent for AnyIndex")
	}
	u64 := func(attr uint16) uint64 {
		b, ok := req.attrs[attr]
		if !ok || len(b) != 8 {
			t.Errorf("attribute %d missing or not u64: %x", attr, b)
			return 0
		}
		return binary.NativeEndian.Uint64(b)
	}
	for attr, want := range map[uint16]uint64{
		attrSizeBytes:       1 << 20,
		attrBlockSizeBytes:  512,
		attrTimeout:         2,
		attrDeadConnTimeout: 10,
		attrServerFlags:     flagHasFlags | flagSendFlush | flagSendFUA,
		attrClientFlags:     0,
	} {
		if got := u64(attr); got != want {
			t.Errorf("attribute %d = %d, want %d", attr, got, want)
		}
	}
	if got := string(req.attrs[attrBackendIdentifier]); got != "aoe:e1.2\x00" {
		t.Errorf("backend %q", got)
	}
	if len(req.fds) != 1 {
		t.Errorf("%d sockets handed over, want 1", len(req.fds))
	}
	k.mu.Lock()
	joined := k.joined
	k.mu.Unlock()
	if len(joined) != 1 || joined[0] != fakeGroupID {
		t.Errorf("joined groups %v, want [%d]", joined, fakeGroupID)
	}
	k.roundTrip(0)
}

func TestAttachFixedIndexAndDetach(t *testing.T) {
	k := newFakeKernel(t, 0)
	srv := newMemServer(1 << 20)
	dev := attachFake(t, k, srv, Config{Index: 9})
	req := k.waitRequest(cmdConnect)
	if got := k.reqIndex(req); got != 9 || dev.Index() != 9 {
		t.Fatalf("CONNECT index %d, device %d; want 9", got, dev.Index())
	}
	k.roundTrip(0)
	if err := dev.Detach(); err != nil {
		t.Fatal(err)
	}
	req = k.waitRequest(cmdDisconnect)
	if got := k.reqIndex(req); got != 9 {
		t.Errorf("DISCONNECT index %d, want 9", got)
	}
	waitDone(t, dev)
	if err := dev.Detach(); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	k.expectNone(100 * time.Millisecond)
}

func TestLinkDeadReconfigures(t *testing.T) {
	k, _, _ := attached(t, Config{Index: AnyIndex, Backend: "b"})

	k.kill(0, true)
	req := k.waitRequest(cmdReconfigure)
	if got := k.reqIndex(req); got != 3 {
		t.Errorf("RECONFIGURE index %d, want 3", got)
	}
	if len(req.fds) != 1 {
		t.Errorf("RECONFIGURE with %d sockets, want 1", len(req.fds))
	}
	if got := string(req.attrs[attrBackendIdentifier]); got != "b\x00" {
		t.Errorf("RECONFIGURE backend %q, want the CONNECT one", got)
	}
	k.roundTrip(0) // served on the fresh socket
	k.expectNone(300 * time.Millisecond)
}

func TestLinkDeadWhileServeIsStuck(t *testing.T) {
	k, srv, _ := attached(t, Config{Index: AnyIndex})

	// Serve blocks as if its backend hung; the kernel times the request
	// out, shuts the socket down and announces it. Only the event tells
	// us, since our Serve does not return.
	k.send(0, testCmdHang)
	// The request must be stuck in Serve when the socket dies, and only
	// Serve's backend could tell that it is: give it the time.
	time.Sleep(50 * time.Millisecond)
	k.kill(0, true)
	k.waitRequest(cmdReconfigure)
	k.roundTrip(0)

	// When the stuck call finally returns, nothing more is reconnected.
	close(srv.release)
	k.expectNone(300 * time.Millisecond)
	k.roundTrip(0)
}

func TestServeErrorReconfigures(t *testing.T) {
	k, _, _ := attached(t, Config{Index: AnyIndex})

	// No LINK_DEAD: our Serve fails and closes its end; the kernel's
	// receive thread would see the hang-up.
	k.send(0, testCmdFail)
	k.waitRequest(cmdReconfigure)
	k.roundTrip(0)
	k.expectNone(300 * time.Millisecond)
}

func TestSpuriousLinkDead(t *testing.T) {
	k, _, _ := attached(t, Config{Index: AnyIndex})

	k.linkDead(4) // another device
	k.linkDead(3) // ours, but every socket is alive
	k.expectNone(300 * time.Millisecond)
	k.roundTrip(0)
}

func TestRejectedSocketRetried(t *testing.T) {
	k, _, _ := attached(t, Config{Index: AnyIndex})

	k.mu.Lock()
	k.dropReconfigure = 1
	k.mu.Unlock()
	k.kill(0, true)
	k.waitRequest(cmdReconfigure) // dropped by the kernel
	k.waitRequest(cmdReconfigure) // taken
	k.roundTrip(0)
	k.expectNone(300 * time.Millisecond)
}

func TestMultipleConnections(t *testing.T) {
	k := newFakeKernel(t, 3)
	srv := newMemServer(1 << 20)
	attachFake(t, k, srv, Config{Index: AnyIndex, Connections: 3, ServerFlags: flagCanMultiConn})
	if req := k.waitRequest(cmdConnect); len(req.fds) != 3 {
		t.Fatalf("CONNECT with %d sockets, want 3", len(req.fds))
	}
	for i := range 3 {
		k.roundTrip(i)
	}
	k.kill(1, true)
	if req := k.waitRequest(cmdReconfigure); len(req.fds) != 1 {
		t.Errorf("RECONFIGURE with %d sockets, want 1", len(req.fds))
	}
	for i := range 3 {
		k.roundTrip(i)
	}
	k.expectNone(300 * time.Millisecond)
}

func TestExternalDisconnectEndsWait(t *testing.T) {
	k, _, dev := attached(t, Config{Index: AnyIndex, Connections: 2, ServerFlags: flagCanMultiConn})
	k.disconnect() // nbd-client -d from elsewhere
	waitDone(t, dev)
	k.expectNone(100 * time.Millisecond) // no RECONFIGURE, no DISCONNECT
}

func TestDeviceTornDownEndsWait(t *testing.T) {
	k, _, dev := attached(t, Config{Index: AnyIndex})
	k.mu.Lock()
	k.configured = false
	k.mu.Unlock()
	k.kill(0, true)
	k.waitRequest(cmdStatus)
	waitDone(t, dev)
	k.expectNone(100 * time.Millisecond)
}

func TestWaitHonoursContext(t *testing.T) {
	k := newFakeKernel(t, 3)
	dev := attachFake(t, k, newMemServer(1<<20), Config{Index: AnyIndex})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := dev.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want deadline exceeded", err)
	}
	k.roundTrip(0) // still served
}

func TestAttachErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(k *fakeKernel)
		cfg   Config
		want  string
		is    error
	}{
		{name: "module not loaded", setup: func(k *fakeKernel) { k.noFamily = true },
			want: "modprobe nbd", is: ErrNotLoaded},
		{name: "device busy", setup: func(k *fakeKernel) { k.connectErrno = int(unix.EBUSY) },
			cfg: Config{Index: 2}, want: "nbd2", is: unix.EBUSY},
		{name: "not root", setup: func(k *fakeKernel) { k.connectErrno = int(unix.EPERM) },
			want: "CAP_SYS_ADMIN", is: unix.EPERM},
		{name: "no serve", cfg: Config{Size: 1 << 20}, want: "Serve"},
		{name: "zero size", cfg: Config{Size: -1}, want: "size"},
		{name: "smaller than a block", cfg: Config{Size: 4095, BlockSize: 4096}, want: "smaller"},
		{name: "block size not power of two", cfg: Config{BlockSize: 1536}, want: "power of two"},
		{name: "block size too small", cfg: Config{BlockSize: 256}, want: "power of two"},
		{name: "index below any", cfg: Config{Index: -2}, want: "out of range"},
		{name: "index too large", cfg: Config{Index: 1 << 20}, want: "out of range"},
		{name: "negative timeout", cfg: Config{Timeout: -time.Second}, want: "negative"},
		{name: "wide server flags", cfg: Config{ServerFlags: 1 << 16}, want: "16-bit"},
		{name: "unknown client flags", cfg: Config{ClientFlags: 1 << 5}, want: "client flags"},
		{name: "multi-conn not allowed", cfg: Config{Connections: 2}, want: "CAN_MULTI_CONN"},
		{name: "too many connections", cfg: Config{Connections: MaxConnections + 1, ServerFlags: flagCanMultiConn}, want: "out of range"},
		{name: "NUL in backend", cfg: Config{Backend: "a\x00b"}, want: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel(t, 0)
			if tt.setup != nil {
				tt.setup(k)
			}
			cfg := tt.cfg
			if cfg.Size == 0 {
				cfg.Size = 1 << 20
			}
			if tt.name != "no serve" {
				cfg.Serve = newMemServer(0).serve
			}
			dev, err := k.client().Attach(context.Background(), cfg)
			if err == nil {
				dev.Detach()
				t.Fatal("Attach succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			if n := k.open.Load(); n != 0 {
				t.Errorf("%d netlink connections left open", n)
			}
		})
	}
}

func TestAttachCancelledContext(t *testing.T) {
	k := newFakeKernel(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := k.client().Attach(ctx, Config{Size: 1 << 20, Serve: newMemServer(0).serve})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Attach = %v, want context canceled", err)
	}
	k.expectNone(50 * time.Millisecond)
}

func TestClientControl(t *testing.T) {
	k := newFakeKernel(t, 4)
	c := k.client()
	if err := c.Available(); err != nil {
		t.Fatalf("Available: %v", err)
	}
	k.mu.Lock()
	k.configured = true
	k.mu.Unlock()

	st, err := c.Status(4)
	if err != nil || st != (DeviceStatus{Index: 4, Connected: true}) {
		t.Errorf("Status(4) = %+v, %v", st, err)
	}
	if req := k.waitRequest(cmdStatus); k.reqIndex(req) != 4 {
		t.Errorf("STATUS index %d, want 4", k.reqIndex(req))
	}
	if _, err := c.Status(6); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Status(6) = %v, want ErrNoDevice", err)
	}
	k.waitRequest(cmdStatus)
	list, err := c.List()
	if err != nil || len(list) != 1 || list[0].Index != 4 {
		t.Errorf("List = %+v, %v", list, err)
	}
	if req := k.waitRequest(cmdStatus); k.reqIndex(req) != -1 {
		t.Errorf("STATUS for all sent index %d", k.reqIndex(req))
	}

	if err := c.Detach(4); err != nil {
		t.Errorf("Detach(4): %v", err)
	}
	if req := k.waitRequest(cmdDisconnect); k.reqIndex(req) != 4 || req.flags != netlink.Request|netlink.Acknowledge {
		t.Errorf("DISCONNECT index %d flags %v", k.reqIndex(req), req.flags)
	}
	if err := c.Detach(6); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Detach(6) = %v, want ErrNoDevice", err)
	}
	if err := c.Detach(-1); err == nil {
		t.Error("Detach(-1) succeeded")
	}
	if _, err := c.Status(maxIndex + 1); err == nil {
		t.Error("Status out of range succeeded")
	}

	k.mu.Lock()
	k.noFamily = true
	k.mu.Unlock()
	if err := c.Available(); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Available without module = %v, want ErrNotLoaded", err)
	}
	if n := k.open.Load(); n != 0 {
		t.Errorf("%d netlink connections left open", n)
	}
}
