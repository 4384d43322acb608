package nbdkernel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/internal/testenv"
)

// TestKernel attaches a memory export to the real nbd driver, does direct
// I/O on /dev/nbdN, kills the connection and checks that I/O resumes over
// the socket handed over by RECONFIGURE, then detaches.
func TestKernel(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("kernel nbd module not loaded (modprobe nbd); this test runs where it is: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("attaching an nbd device needs root (CAP_SYS_ADMIN)")
	}
	const size = 16 << 20
	srv := newMemServer(size)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dev, err := Attach(ctx, Config{
		Index:           AnyIndex,
		Size:            size,
		Timeout:         10 * time.Second,
		DeadConnTimeout: 10 * time.Second,
		ServerFlags:     flagSendFlush | flagSendFUA | flagSendTrim,
		Backend:         "ironblade-test",
		Serve:           srv.serve,
		Logger:          testLogger(t),
	})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	detached := false
	t.Cleanup(func() {
		if !detached {
			dev.Detach()
			dev.Wait(ctx)
		}
	})
	t.Logf("attached %s", dev.Path())
	waitSysfs(t, dev.Index(), "size", strconv.Itoa(size/512))
	if b, err := os.ReadFile(fmt.Sprintf("/sys/block/nbd%d/backend", dev.Index())); err == nil {
		if got := strings.TrimSpace(string(b)); got != "ironblade-test" {
			t.Errorf("sysfs backend %q, want ironblade-test", got)
		}
	}
	if st, err := Status(dev.Index()); err != nil || !st.Connected {
		t.Errorf("Status = %+v, %v; want connected", st, err)
	}

	f, err := os.OpenFile(dev.Path(), os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const off, n = 3 * 4096, 1 << 20
	want := pageAligned(t, n)
	for i := range want {
		want[i] = byte(i*7 + i>>9)
	}
	if _, err := f.WriteAt(want, off); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	srv.mu.Lock()
	stored := bytes.Equal(srv.data[off:off+n], want)
	srv.mu.Unlock()
	if !stored {
		t.Fatal("export does not hold what was written")
	}
	if srv.flushes.Load() == 0 {
		t.Error("fsync sent no NBD_CMD_FLUSH")
	}
	got := pageAligned(t, n)
	readBack := func(when string) {
		t.Helper()
		clear(got)
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatalf("read %s: %v", when, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %s: data differs", when)
		}
	}
	readBack("after write")

	// Our end goes away: the kernel marks the socket dead and announces
	// it; I/O waits (DeadConnTimeout) until the Device reconnects.
	srv.closeConns()
	readBack("after reconnect")

	if err := dev.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if err := dev.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	detached = true
	f.Close()
	testenv.WaitFor(t, 5*time.Second, "the device to be disconnected after Detach", func() bool {
		st, err := Status(dev.Index())
		return err != nil || !st.Connected
	})
}

// waitSysfs waits for /sys/block/nbd<index>/<attr> to read want.
func waitSysfs(t *testing.T, index int, attr, want string) {
	t.Helper()
	path := fmt.Sprintf("/sys/block/nbd%d/%s", index, attr)
	var b []byte
	var err error
	defer func() {
		if t.Failed() {
			t.Logf("%s = %q (%v), want %q", path, b, err, want)
		}
	}()
	testenv.WaitFor(t, 5*time.Second, path+" to read "+want, func() bool {
		b, err = os.ReadFile(path)
		return err == nil && strings.TrimSpace(string(b)) == want
	})
}

// pageAligned returns an n-byte buffer fit for O_DIRECT.
func pageAligned(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}
