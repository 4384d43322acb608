package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/initiator/nbd"
	"github.com/ironblade/ironblade/internal/testenv"
	"github.com/ironblade/ironblade/target"
)

// serveTarget runs an ironblade target for shelf.slot on a new hub port
// until the test ends.
func serveTarget(t *testing.T, hub *aoetest.Hub, mac aoe.MAC, shelf uint16, slot uint8, disk *aoetest.MemDisk) {
	t.Helper()
	srv, err := target.NewServer(target.Config{Shelf: shelf, Slot: slot, Backend: disk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	aoetest.ServeLink(t, hub.Port(mac, 9000), srv.Serve)
}

// testLogger logs to the test's output, at debug level with -v.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

// testWriter writes to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// hubEnvironment is an environment whose one interface, "hub0", is a port
// of hub.
func hubEnvironment(t *testing.T, hub *aoetest.Hub, stdout io.Writer) *environment {
	return &environment{
		Stdout: stdout,
		Logger: testLogger(t),
		Listen: func(iface string, _ rawlink.Config) (aoe.Link, error) {
			if iface != "hub0" {
				return nil, errors.New("no such interface")
			}
			return namedLink{hub.Port(aoe.MAC{0x02, 0, 0, 0, 0xaa, 0x01}, 9000), iface}, nil
		},
		DefaultInterfaces: func() ([]string, error) { return []string{"hub0"}, nil },
	}
}

// namedLink is a Link that tells its interface name, as rawlink.Link does.
type namedLink struct {
	aoe.Link
	name string
}

func (l namedLink) Interface() string { return l.name }

// fastEngine is engineOptions for quick tests.
func fastEngine() engineOptions {
	e := defaultEngine()
	e.Config.DiscoverInterval = 200 * time.Millisecond
	return e
}

// TestServeInMemory runs serve over an in-memory segment: a client started
// with serve gets its device (the lookup waits), I/O reaches the target, a
// device that appears later is exported too, stat sees the process, and
// cancelling serve flushes the target and returns nil.
func TestServeInMemory(t *testing.T) {
	hub := aoetest.NewHub()
	disk1 := aoetest.NewMemDisk(4 << 20)
	serveTarget(t, hub, aoe.MAC{0x02, 0, 0, 0, 0, 0x01}, 1, 0, disk1)

	dir := shortTempDir(t)
	sock, ctlDir := filepath.Join(dir, "nbd.sock"), filepath.Join(dir, "ctl")
	var stdout bytes.Buffer
	env := hubEnvironment(t, hub, &stdout)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, serveOptions{Engine: fastEngine(), Unix: sock, ControlDir: ctlDir}, env)
	}()

	var c *nbd.Client
	testenv.WaitFor(t, 5*time.Second, "the NBD socket", func() bool {
		var err error
		c, err = nbd.Dial(ctx, "unix", sock, nbd.ClientConfig{Export: "e1.0"})
		return err == nil
	})
	if c.Size() != 4<<20 {
		t.Errorf("export size %d, want %d", c.Size(), 4<<20)
	}
	data := aoetest.RandomBytes(1 << 20)
	if err := c.WriteAt(ctx, data, 512, false); err != nil {
		t.Fatal(err)
	}
	syncs := disk1.Syncs()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if disk1.Syncs() == syncs {
		t.Error("NBD flush did not reach the target")
	}
	back := make([]byte, len(data))
	if err := c.ReadAt(ctx, back, 512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) || !bytes.Equal(disk1.Bytes()[512:512+len(data)], data) {
		t.Error("data read back or on the target differs from what was written")
	}

	// A device that appears after serve started is exported too.
	disk2 := aoetest.NewMemDisk(1 << 20)
	serveTarget(t, hub, aoe.MAC{0x02, 0, 0, 0, 0, 0x02}, 2, 7, disk2)
	c2, err := nbd.Dial(ctx, "unix", sock, nbd.ClientConfig{Export: "e2.7"})
	if err != nil {
		t.Fatalf("late device: %v", err)
	}
	if c2.Size() != 1<<20 {
		t.Errorf("e2.7 size %d", c2.Size())
	}
	c2.Close()

	var out bytes.Buffer
	if err := stat(ctx, statOptions{ControlDir: ctlDir}, &environment{Stdout: &out, Logger: env.Logger}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ironaoe serve (pid", "unix:" + sock, "e1.0: up", "e2.7: up", "02:00:00:00:00:01  hub0       active"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stat output lacks %q:\n%s", want, out.String())
		}
	}

	// Stop with a client connected and writing: its writes finish, the
	// target is flushed, serve returns nil.
	if err := c.WriteAt(ctx, data, 0, false); err != nil {
		t.Fatal(err)
	}
	syncs = disk1.Syncs()
	cancel()
	testenv.WaitReturn(t, "serve", served, 10*time.Second)
	c.Close()
	if disk1.Syncs() == syncs {
		t.Error("serve did not flush the device when stopping")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NBD socket left behind: %v", err)
	}
	if socks, _ := controlSockets(ctlDir); len(socks) != 0 {
		t.Errorf("control socket left behind: %v", socks)
	}
}

// TestServeNamedOnly checks that serve with named devices exports those
// only, and that discover reports both.
func TestServeNamedOnly(t *testing.T) {
	hub := aoetest.NewHub()
	serveTarget(t, hub, aoe.MAC{0x02, 0, 0, 0, 0, 0x01}, 1, 0, aoetest.NewMemDisk(1<<20))
	serveTarget(t, hub, aoe.MAC{0x02, 0, 0, 0, 0, 0x02}, 1, 1, aoetest.NewMemDisk(2<<20))

	var stdout bytes.Buffer
	env := hubEnvironment(t, hub, &stdout)
	if err := discover(context.Background(), discoverOptions{Engine: fastEngine(), JSON: false, Wait: 200 * time.Millisecond}, env); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"e1.0    02:00:00:00:00:01  hub0       64       17             0x", "1 MiB", "e1.1", "2 MiB"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("discover output lacks %q:\n%s", want, stdout.String())
		}
	}

	sock := filepath.Join(shortTempDir(t), "nbd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, serveOptions{Engine: fastEngine(), Unix: sock, Devices: []deviceAddr{{1, 1}}}, env)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	var c *nbd.Client
	testenv.WaitFor(t, 5*time.Second, "the NBD socket", func() bool {
		var err error
		c, err = nbd.Dial(ctx, "unix", sock, nbd.ClientConfig{Export: "e1.1"})
		return err == nil
	})
	c.Close()
	start := time.Now()
	if _, err := nbd.Dial(ctx, "unix", sock, nbd.ClientConfig{Export: "e1.0"}); err == nil {
		t.Error("serve e1.1 also exported e1.0")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing a device not named took %v: it should not wait for it", d)
	}
}

// TestExportSetLookupWaits runs in a synctest bubble: the waits take no
// real time, and the fake clock moves only while every goroutine waits, so
// the durations measured are exactly the waits'.
func TestExportSetLookupWaits(t *testing.T) {
	synctest.Test(t, testExportSetLookupWaits)
}

func testExportSetLookupWaits(t *testing.T) {
	stop := make(chan struct{})
	e := newExportSet(nil, time.Second, stop)
	backend := &nbdBackendStub{}
	// e1.0 is added once a Lookup waits for it; later waits are not heard.
	asked := make(chan string, 1)
	e.asked = func(name string) {
		select {
		case asked <- name:
		default:
		}
	}
	go func() {
		<-asked
		e.add("e1.0", "", backend)
	}()
	if b, ok := e.Lookup("e1.0"); !ok || b != backend {
		t.Errorf("Lookup(e1.0) = %v, %v after it was added", b, ok)
	}
	for _, name := range []string{"", "1.0", "etherd/e1.0", "foo"} {
		start := time.Now()
		if _, ok := e.Lookup(name); ok || time.Since(start) > 100*time.Millisecond {
			t.Errorf("Lookup(%q) = %v after %v; want an immediate miss", name, ok, time.Since(start))
		}
	}
	start := time.Now()
	if _, ok := e.Lookup("e1.1"); ok || time.Since(start) < time.Second {
		t.Errorf("Lookup(e1.1) = %v after %v; want a miss after the wait", ok, time.Since(start))
	}
	close(stop)
	start = time.Now()
	if _, ok := e.Lookup("e1.2"); ok || time.Since(start) > 100*time.Millisecond {
		t.Errorf("Lookup after stop = %v after %v; want an immediate miss", ok, time.Since(start))
	}
	named := newExportSet([]deviceAddr{{3, 4}}, time.Second, nil)
	if named.expected("e1.0") || !named.expected("e3.4") {
		t.Error("a set of named devices expects the wrong ones")
	}
}

// nbdBackendStub is an empty nbd.Backend.
type nbdBackendStub struct{ nbd.Backend }
