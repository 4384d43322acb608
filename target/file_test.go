package target

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/internal/testenv"
)

// tempFile makes a file of n bytes of a pattern and returns its path and
// content.
func tempFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	content := pattern(n, 11)
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, content
}

func openFile(t *testing.T, path string, opt FileOptions) *FileBackend {
	t.Helper()
	b, err := OpenFile(path, opt)
	if err != nil {
		t.Fatalf("OpenFile(%+v): %v", opt, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestFileBackendWindow(t *testing.T) {
	path, content := tempFile(t, 64<<10)
	for _, tc := range []struct {
		opt      FileOptions
		wantSize int64
	}{
		{FileOptions{}, 64 << 10},
		{FileOptions{Offset: 4096}, 60 << 10},
		{FileOptions{Offset: 4096, Length: 16384}, 16384},
		{FileOptions{Offset: 512, Length: 1000}, 512}, // whole sectors only
	} {
		b := openFile(t, path, tc.opt)
		if b.Size() != tc.wantSize {
			t.Errorf("%+v: size %d, want %d", tc.opt, b.Size(), tc.wantSize)
		}
		got := make([]byte, 512)
		if _, err := b.ReadAt(got, 0); err != nil || !bytes.Equal(got, content[tc.opt.Offset:tc.opt.Offset+512]) {
			t.Errorf("%+v: first sector wrong (%v)", tc.opt, err)
		}
		// Reads stop at the window's end.
		n, err := b.ReadAt(make([]byte, 1024), b.Size()-512)
		if n != 512 || err != io.EOF {
			t.Errorf("%+v: read across the end: %d, %v", tc.opt, n, err)
		}
		if _, err := b.ReadAt(got, b.Size()); err != io.EOF {
			t.Errorf("%+v: read at the end: %v", tc.opt, err)
		}
		if _, err := b.WriteAt(got, b.Size()-256); err == nil {
			t.Errorf("%+v: write across the end accepted", tc.opt)
		}
	}

	b := openFile(t, path, FileOptions{Offset: 4096, Length: 16384})
	data := pattern(1024, 99)
	if _, err := b.WriteAt(data, 512); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	onDisk, _ := os.ReadFile(path)
	if !bytes.Equal(onDisk[4096+512:4096+1536], data) {
		t.Error("write landed elsewhere")
	}
	if !bytes.Equal(onDisk[:4096+512], content[:4096+512]) || !bytes.Equal(onDisk[4096+1536:], content[4096+1536:]) {
		t.Error("write touched bytes outside its range")
	}
}

func TestFileBackendErrors(t *testing.T) {
	path, _ := tempFile(t, 8192)
	tiny, _ := tempFile(t, 100)
	for _, tc := range []struct {
		name string
		path string
		opt  FileOptions
	}{
		{"missing", filepath.Join(t.TempDir(), "nope"), FileOptions{}},
		{"directory", t.TempDir(), FileOptions{}},
		{"character device", "/dev/null", FileOptions{}},
		{"offset beyond the end", path, FileOptions{Offset: 9000}},
		{"length beyond the end", path, FileOptions{Offset: 4096, Length: 8192}},
		{"negative offset", path, FileOptions{Offset: -1}},
		{"less than a sector", tiny, FileOptions{}},
	} {
		if b, err := OpenFile(tc.path, tc.opt); err == nil {
			b.Close()
			t.Errorf("%s: opened", tc.name)
		}
	}

	ro := openFile(t, path, FileOptions{ReadOnly: true})
	if _, err := ro.WriteAt(make([]byte, 512), 0); !errors.Is(err, os.ErrPermission) {
		t.Errorf("write to a read-only backend: %v", err)
	}
	if _, err := ro.ReadAt(make([]byte, 512), 0); err != nil {
		t.Errorf("read from a read-only backend: %v", err)
	}
}

// openDirect opens path with O_DIRECT or skips the test where the file
// system does not support it.
func openDirect(t *testing.T, path string, opt FileOptions) *FileBackend {
	t.Helper()
	opt.Direct = true
	b, err := OpenFile(path, opt)
	if err != nil && strings.Contains(err.Error(), "not supported") {
		t.Skipf("O_DIRECT unsupported on the temp dir's file system: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestFileBackendDirect exercises O_DIRECT with aligned and unaligned
// buffers and offsets, with the device's own alignment and with 4096-byte
// blocks (which make 512-byte writes read-modify-write), against a
// reference copy.
func TestFileBackendDirect(t *testing.T) {
	for _, forceAlign := range []int64{0, 4096} {
		path, content := tempFile(t, 256<<10)
		b := openDirect(t, path, FileOptions{Offset: 8192, Length: 128 << 10})
		if forceAlign > 0 {
			b.align = forceAlign
		}
		ref := append([]byte(nil), content[8192:8192+128<<10]...)
		rng := rand.New(rand.NewPCG(1, uint64(forceAlign)))
		aligned := alignedBuffer(64 << 10)
		for i := range 300 {
			sectors := 1 + rng.IntN(40)
			off := int64(rng.IntN(256-sectors)) * 512
			var p []byte
			if rng.IntN(2) == 0 {
				p = aligned[:sectors*512]
			} else {
				p = make([]byte, sectors*512+1)[1:] // deliberately misaligned
			}
			if rng.IntN(2) == 0 {
				for j := range p {
					p[j] = byte(rng.Uint32())
				}
				if _, err := b.WriteAt(p, off); err != nil {
					t.Fatalf("op %d: write %d sectors at %d: %v", i, sectors, off, err)
				}
				copy(ref[off:], p)
				continue
			}
			if _, err := b.ReadAt(p, off); err != nil {
				t.Fatalf("op %d: read %d sectors at %d: %v", i, sectors, off, err)
			}
			if !bytes.Equal(p, ref[off:off+int64(len(p))]) {
				t.Fatalf("op %d (align %d): read %d sectors at %d: wrong data", i, b.align, sectors, off)
			}
		}
		onDisk, _ := os.ReadFile(path)
		if !bytes.Equal(onDisk[8192:8192+128<<10], ref) || !bytes.Equal(onDisk[:8192], content[:8192]) ||
			!bytes.Equal(onDisk[8192+128<<10:], content[8192+128<<10:]) {
			t.Errorf("align %d: file content differs from the reference", b.align)
		}
	}
}

// TestFileBackendDirectConcurrentPartialWrites has writers hit different
// sectors of the same 4096-byte blocks at once: no write may be lost to
// another's read-modify-write.
func TestFileBackendDirectConcurrentPartialWrites(t *testing.T) {
	path, _ := tempFile(t, 64<<10)
	b := openDirect(t, path, FileOptions{})
	b.align = 4096
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				block := int64(i % 16)
				p := bytes.Repeat([]byte{byte(w + 1)}, 512)
				if _, err := b.WriteAt(p, block*4096+int64(w)*512); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := make([]byte, 64<<10)
	if _, err := b.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	for block := range 16 {
		for w := range 8 {
			s := got[block*4096+w*512:][:512]
			if !bytes.Equal(s, bytes.Repeat([]byte{byte(w + 1)}, 512)) {
				t.Fatalf("block %d sector %d lost its write", block, w)
			}
		}
	}
}

func TestFileBackendDirectWindowAlignment(t *testing.T) {
	path, _ := tempFile(t, 64<<10)
	b := openDirect(t, path, FileOptions{})
	if b.align <= 512 {
		// Only a device with larger blocks refuses a 512-aligned window.
		t.Skipf("direct I/O alignment here is %d", b.align)
	}
	if _, err := OpenFile(path, FileOptions{Direct: true, Offset: 512}); err == nil {
		t.Error("window off the device's blocks accepted")
	}
}

// TestFileBackendTry checks the non-blocking I/O the receive loop uses:
// reads of cached data succeed, reads the page cache cannot serve and
// direct I/O report ErrWouldBlock, and neither allocates.
func TestFileBackendTry(t *testing.T) {
	path, content := tempFile(t, 64<<10)
	b := openFile(t, path, FileOptions{Offset: 4096})
	p := make([]byte, 1024)
	// Just written by tempFile: in the page cache.
	if n, err := b.TryReadAt(p, 512); err != nil || n != len(p) || !bytes.Equal(p, content[4096+512:][:1024]) {
		t.Fatalf("TryReadAt of cached data: %d, %v (right data: %v)", n, err, bytes.Equal(p, content[4096+512:][:1024]))
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = b.TryReadAt(p, 512) }); allocs != 0 && !raceEnabled {
		t.Errorf("TryReadAt: %v allocations", allocs)
	}
	for _, off := range []int64{-512, 60 << 10, 64 << 10} {
		if _, err := b.TryReadAt(p, off); !errors.Is(err, ErrWouldBlock) {
			t.Errorf("TryReadAt at %d, out of the window: %v, want ErrWouldBlock (for ReadAt to report)", off, err)
		}
	}
	data := pattern(1024, 99)
	if _, err := b.TryWriteAt(data, 8192); err != nil {
		t.Fatalf("TryWriteAt: %v", err)
	}
	if _, err := b.ReadAt(p, 8192); err != nil || !bytes.Equal(p, data) {
		t.Fatalf("read after TryWriteAt: %v", err)
	}

	ro := openFile(t, path, FileOptions{ReadOnly: true})
	if _, err := ro.TryWriteAt(data, 0); err == nil || errors.Is(err, ErrWouldBlock) {
		t.Errorf("TryWriteAt on a read-only backend: %v", err)
	}
	d := openDirect(t, path, FileOptions{})
	if _, err := d.TryReadAt(p, 0); !errors.Is(err, ErrWouldBlock) {
		t.Errorf("direct TryReadAt: %v, want ErrWouldBlock", err)
	}
	if _, err := d.TryWriteAt(data, 0); !errors.Is(err, ErrWouldBlock) {
		t.Errorf("direct TryWriteAt: %v, want ErrWouldBlock", err)
	}

	// Out of the page cache, the data needs the device. FADV_DONTNEED is
	// advice (on a busy machine a page may stay), and a read with
	// RWF_NOWAIT starts the readahead it may not wait for: on a fast disk
	// that read can complete in time and the call succeed. So eviction and
	// read are tried again until one read needs the device. Each try uses
	// a new backend: its mapping must not fault the page back in, where
	// advice cannot drop it. (Last, as it ends the test when it fails.)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Second, "TryReadAt of evicted data to report ErrWouldBlock", func() bool {
		cold := openFile(t, path, FileOptions{Offset: 4096})
		defer cold.Close()
		if err := unix.Fadvise(int(cold.fd), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		n, err := cold.TryReadAt(p, 16384)
		switch {
		case errors.Is(err, ErrWouldBlock):
			return true
		case err != nil:
			t.Fatalf("TryReadAt of evicted data: %v, want ErrWouldBlock", err)
		case n != len(p) || !bytes.Equal(p, content[4096+16384:][:len(p)]):
			t.Fatalf("TryReadAt of evicted data returned %d bytes, not the file's", n)
		}
		return false
	})
}

// TestSessionBuffersPageAligned checks that the data of every frame
// buffer starts on a page, so O_DIRECT I/O needs no bounce buffer.
func TestSessionBuffersPageAligned(t *testing.T) {
	c, _ := newTestSession(t, Config{BufferCount: 8})
	for range cap(c.free) {
		r := <-c.free
		data := r.ataData(1)
		if uintptr(unsafe.Pointer(&data[0]))%pageSize != 0 {
			t.Fatal("frame data not page-aligned")
		}
		if len(r.buf) < aoe.EthernetHeaderLen+9000 {
			t.Fatalf("frame buffer of %d bytes", len(r.buf))
		}
	}
}

// TestFileBackendBlockDevice serves a loop device, whose size comes from
// BLKGETSIZE64.
func TestFileBackendBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for losetup")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	path, content := tempFile(t, 1<<20)
	out, err := exec.Command("losetup", "--find", "--show", path).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	for _, direct := range []bool{false, true} {
		b, err := OpenFile(dev, FileOptions{Offset: 4096, Direct: direct})
		if err != nil {
			t.Fatalf("OpenFile(%s, direct %v): %v", dev, direct, err)
		}
		if b.Size() != 1<<20-4096 {
			t.Errorf("size %d", b.Size())
		}
		got := make([]byte, 1024)
		if _, err := b.ReadAt(got, 512); err != nil || !bytes.Equal(got, content[4096+512:4096+1536]) {
			t.Errorf("direct %v: read: %v", direct, err)
		}
		data := pattern(512, byte(7+boolByte(direct)))
		if _, err := b.WriteAt(data, 4096); err != nil {
			t.Fatalf("direct %v: write: %v", direct, err)
		}
		if err := b.Sync(); err != nil {
			t.Errorf("sync: %v", err)
		}
		if _, err := b.ReadAt(got[:512], 4096); err != nil || !bytes.Equal(got[:512], data) {
			t.Errorf("direct %v: read back: %v", direct, err)
		}
		b.Close()
	}
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
